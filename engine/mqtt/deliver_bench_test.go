package mqtt

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// captureTransport is a nullTransport that keeps the last write (a copy), to decode it.
type captureTransport struct {
	nullTransport
	last []byte
}

func (t *captureTransport) Write(b []byte) (int, error) {
	t.last = append(t.last[:0], b...)
	return len(b), nil
}

// deliverRig is a connected connection (protocol version v) with a plain subscription at qos to
// bench.x and one record of it carrying the headers an MQTT 5 PUBLISH with properties makes.
type deliverRig struct {
	br   *testBroker
	c    *conn
	tr   *captureTransport
	es   *engSub
	part *engine.Partition
	rec  wire.Record
	it   wire.RecordIter
}

func newDeliverRig(tb testing.TB, v, qos byte) *deliverRig {
	br := startBroker(&testing.T{}, nil, nil)
	t, err := br.e.CreateTopic(wire.TopicConfig{Name: "bench.x", Partitions: 1})
	if err != nil {
		tb.Fatal(err)
	}
	r := &deliverRig{br: br, tr: &captureTransport{}, part: t.Partition(0)}
	c := newConn(br.srv, r.tr)
	c.version, c.clientID, c.sess, c.window = v, "bench", newSession("bench"), 64
	c.connected.Store(true)
	r.c = c
	ms := &mqttSub{spec: subSpec{Filter: "bench/x", QoS: qos, ID: 7}, filter: "bench/x"}
	r.es = &engSub{c: c, ms: ms, name: "bench.x"}
	var bb wire.BatchBuilder
	bb.Append(nil, make([]byte, 100), []wire.Header{
		{Key: []byte(HeaderTopic), Value: []byte("bench/x")},
		{Key: []byte(HeaderQoS), Value: []byte{'0' + qos}},
		{Key: []byte(HeaderClientID), Value: []byte("dev-1")},
		{Key: []byte(HeaderPacketID), Value: []byte("12")},
		{Key: []byte(HeaderContentType), Value: []byte("application/json")},
		{Key: []byte(HeaderCorrelation), Value: []byte("c1")},
		{Key: []byte(HeaderPayloadFormat), Value: []byte("1")},
		{Key: []byte(wire.HeaderTTL), Value: []byte("3600000")},
		{Key: []byte("site"), Value: []byte("eu")},
	}, time.Now().UnixMilli())
	batch, err := bb.Build()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := r.it.Reset(batch); err != nil {
		tb.Fatal(err)
	}
	if !r.it.Next(&r.rec) {
		tb.Fatal("no record")
	}
	return r
}

// deliver sends the record, writes the turn's output and, at QoS 1, takes the PUBACK.
func (r *deliverRig) deliver(tb testing.TB) {
	if !r.c.out.send(r.es, r.part, &r.rec) {
		tb.Fatal("no room")
	}
	r.c.flush()
	for id := range r.c.out.inflight {
		r.c.out.acked(id, packets.Puback, 0)
	}
}

// TestDeliverAllocs: a delivery (PUBLISH written into the connection's output) allocates nothing,
// on MQTT 3.1.1 and 5 (properties from the record's headers), at QoS 0 and 1; the MQTT 5 frame
// decodes with the codec into the properties the headers make.
func TestDeliverAllocs(t *testing.T) {
	for _, v := range []byte{4, 5} {
		for _, qos := range []byte{0, 1} {
			r := newDeliverRig(t, v, qos)
			r.deliver(t) // warm the caches: the mapped-back name, the props buffer, the free list
			if n := testing.AllocsPerRun(200, func() { r.deliver(t) }); n != 0 {
				t.Errorf("MQTT %d QoS %d: %v allocs per delivery, want 0", v, qos, n)
			}
			hdr, body, _, err := readFrame(r.tr.last, maxMQTTPacket)
			if err != nil {
				t.Fatal(err)
			}
			pk := &packets.Packet{ProtocolVersion: v}
			if err := pk.FixedHeader.Decode(hdr); err != nil {
				t.Fatal(err)
			}
			pk.FixedHeader.Remaining = len(body)
			if err := pk.PublishDecode(body); err != nil {
				t.Fatalf("MQTT %d QoS %d: decode: %v", v, qos, err)
			}
			if pk.TopicName != "bench/x" || len(pk.Payload) != 100 || pk.FixedHeader.Qos != qos || (qos > 0) != (pk.PacketID != 0) {
				t.Fatalf("MQTT %d QoS %d: %+v topic %q id %d payload %d", v, qos, pk.FixedHeader, pk.TopicName, pk.PacketID, len(pk.Payload))
			}
			if v == 5 {
				p := pk.Properties
				if p.ContentType != "application/json" || string(p.CorrelationData) != "c1" || !p.PayloadFormatFlag ||
					p.PayloadFormat != 1 || p.MessageExpiryInterval == 0 || p.MessageExpiryInterval > 3600 ||
					len(p.SubscriptionIdentifier) != 1 || p.SubscriptionIdentifier[0] != 7 ||
					len(p.User) != 1 || p.User[0].Key != "site" || p.User[0].Val != "eu" {
					t.Fatalf("MQTT 5 properties %+v", p)
				}
			}
			r.br.stop()
		}
	}
}

// BenchmarkDeliver writes one 100-byte record as a PUBLISH into a connection's output (MQTT 3.1.1
// and 5, the latter with content type, correlation data, payload format, message expiry, a
// subscription identifier and a user property), at QoS 0 and 1 (with its PUBACK). It should report
// 0 allocs/op.
func BenchmarkDeliver(b *testing.B) {
	for _, tc := range []struct {
		name   string
		v, qos byte
	}{{"v311-qos0", 4, 0}, {"v311-qos1", 4, 1}, {"v5-qos0", 5, 0}, {"v5-qos1", 5, 1}} {
		b.Run(tc.name, func(b *testing.B) {
			r := newDeliverRig(b, tc.v, tc.qos)
			defer r.br.stop()
			b.ReportAllocs()
			for b.Loop() {
				r.deliver(b)
			}
		})
	}
}
