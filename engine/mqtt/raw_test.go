package mqtt

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
)

// rawWrite encodes pk (protocol version v) and writes it.
func rawWrite(t *testing.T, nc net.Conn, v byte, pk *packets.Packet) {
	t.Helper()
	pk.ProtocolVersion = v
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Publish:
		err = pk.PublishEncode(&b)
	case packets.Pubrel:
		pk.FixedHeader.Qos = 1
		err = pk.PubrelEncode(&b)
	case packets.Puback:
		err = pk.PubackEncode(&b)
	case packets.Pubrec:
		err = pk.PubrecEncode(&b)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&b)
	case packets.Subscribe:
		pk.FixedHeader.Qos = 1
		err = pk.SubscribeEncode(&b)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// rawRead reads the next packet (protocol version v), exactly its bytes, failing after 10 s.
func rawRead(t *testing.T, nc net.Conn, v byte) *packets.Packet {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	one := make([]byte, 1)
	var head []byte
	for {
		if _, err := readFull(nc, one); err != nil {
			t.Fatalf("read: %v", err)
		}
		head = append(head, one[0])
		if len(head) >= 2 && head[len(head)-1]&0x80 == 0 {
			break
		}
	}
	size, hlen, err := frameSize(head, maxMQTTPacket)
	if err != nil || size == 0 {
		t.Fatalf("header % x: %v", head, err)
	}
	body := make([]byte, size-hlen)
	if _, err := readFull(nc, body); err != nil {
		t.Fatalf("read: %v", err)
	}
	pk := &packets.Packet{ProtocolVersion: v}
	if err := pk.FixedHeader.Decode(head[0]); err != nil {
		t.Fatal(err)
	}
	pk.FixedHeader.Remaining = len(body)
	switch pk.FixedHeader.Type {
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestQoS2InboundOnce: a QoS 2 PUBLISH sent again (DUP) before PUBREL is acknowledged and not
// stored again; PUBREL is answered with PUBCOMP, and an unknown one with 0x92.
func TestQoS2InboundOnce(t *testing.T) {
	b := startBroker(t, nil, nil)
	nc := rawConnect(t, b, 5, 30)
	pub := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: "once", PacketID: 7, Payload: []byte("x")}
	rawWrite(t, nc, 5, pub)
	if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Pubrec || a.PacketID != 7 || a.ReasonCode != 0 {
		t.Fatalf("first PUBREC: %+v", a.FixedHeader)
	}
	pub.FixedHeader.Dup = true
	rawWrite(t, nc, 5, pub)
	if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Pubrec || a.PacketID != 7 {
		t.Fatalf("second PUBREC: %+v", a.FixedHeader)
	}
	rawWrite(t, nc, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: 7})
	if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Pubcomp || a.PacketID != 7 || a.ReasonCode != 0 {
		t.Fatalf("PUBCOMP: %+v code %#x", a.FixedHeader, a.ReasonCode)
	}
	rawWrite(t, nc, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: 7})
	if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Pubcomp || a.ReasonCode != 0x92 {
		t.Fatalf("PUBCOMP of an unknown id: %+v code %#x", a.FixedHeader, a.ReasonCode)
	}
	if n := b.e.TopicByName("once").Partition(0).NextOffset(); n != 1 {
		t.Fatalf("%d records stored, want 1", n)
	}
}

// TestRedeliveryWithDup: QoS 1 deliveries a persistent session did not acknowledge are sent again
// on reconnect, with DUP set.
func TestRedeliveryWithDup(t *testing.T) {
	b := startBroker(t, nil, nil)
	p := b.mustDial("pub", nil)
	p.pub(t, "dup", 1, "0")
	connect := func() net.Conn {
		nc := rawDial(t, b)
		body := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 4, 0x00 /* clean session 0 */, 0, 30, 0x00, 0x03, 'd', 'e', 'v'}
		_, _ = nc.Write(append([]byte{0x10, byte(len(body))}, body...))
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		ack := make([]byte, 4)
		if _, err := readFull(nc, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("CONNACK % x %v", ack, err)
		}
		return nc
	}
	nc := connect()
	rawWrite(t, nc, 4, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "dup", Qos: 1}}})
	if a := rawRead(t, nc, 4); a.FixedHeader.Type != packets.Suback {
		t.Fatalf("SUBACK: %+v", a.FixedHeader)
	}
	p.pub(t, "dup", 1, "1")
	m := rawRead(t, nc, 4)
	if m.FixedHeader.Type != packets.Publish || string(m.Payload) != "1" || m.FixedHeader.Dup {
		t.Fatalf("first delivery: %+v %q", m.FixedHeader, m.Payload)
	}
	nc.Close() // no PUBACK
	nc = connect()
	m = rawRead(t, nc, 4)
	if m.FixedHeader.Type != packets.Publish || string(m.Payload) != "1" || !m.FixedHeader.Dup {
		t.Fatalf("redelivery: %+v %q", m.FixedHeader, m.Payload)
	}
	rawWrite(t, nc, 4, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: m.PacketID})
	p.pub(t, "dup", 1, "2")
	if m = rawRead(t, nc, 4); string(m.Payload) != "2" || m.FixedHeader.Dup {
		t.Fatalf("next delivery: %+v %q", m.FixedHeader, m.Payload)
	}
}

// TestSharedSubscription: members of a share group split a topic's partitions, each record going
// to one of them.
func TestSharedSubscription(t *testing.T) {
	b := startBroker(t, func(o *engineOptions) { o.DefaultPartitions = 4 }, nil)
	p := b.mustDial("pub", nil)
	p.pub(t, "jobs", 1, "warm") // creates the topic with 4 partitions
	w1 := b.mustDial("w1", nil)
	w2 := b.mustDial("w2", nil)
	for _, w := range []*client{w1, w2} {
		if code := w.sub(t, "$share/workers/jobs", 1); code != 1 {
			t.Fatalf("shared subscribe: %#x", code)
		}
	}
	// Publish from many client ids: the partition is the client id's hash.
	const n = 40
	for i := range n {
		c := b.mustDial("dev"+string(rune('a'+i%26))+string(rune('a'+i/26)), nil)
		c.pub(t, "jobs", 1, "j")
		_ = c.Disconnect(&paho.Disconnect{})
	}
	got := map[*client]int{}
	deadline := time.After(15 * time.Second)
	for got[w1]+got[w2] < n {
		select {
		case <-w1.msgs:
			got[w1]++
		case <-w2.msgs:
			got[w2]++
		case <-deadline:
			t.Fatalf("got %d and %d of %d", got[w1], got[w2], n)
		}
	}
	if got[w1] == 0 || got[w2] == 0 {
		t.Fatalf("one member got everything: %d and %d", got[w1], got[w2])
	}
	w1.none(t, 300*time.Millisecond)
	w2.none(t, 0)
}

// TestSharedWildcard: a shared subscription over a wildcard is a consumer group over a pattern:
// each record goes to one member.
func TestSharedWildcard(t *testing.T) {
	b := startBroker(t, nil, nil)
	p := b.mustDial("pub", nil)
	p.pub(t, "sw/a", 1, "warm")
	w1, w2 := b.mustDial("w1", nil), b.mustDial("w2", nil)
	if code := w1.sub(t, "$share/g/sw/+", 1); code != 1 {
		t.Fatalf("shared wildcard subscribe: %#x, want 1", code)
	}
	if code := w2.sub(t, "$share/g/sw/+", 1); code != 1 {
		t.Fatalf("second member: %#x", code)
	}
	p.pub(t, "sw/a", 1, "job")
	select {
	case m := <-w1.msgs:
		if string(m.Payload) != "job" {
			t.Fatalf("w1 got %q", m.Payload)
		}
		w2.none(t, 300*time.Millisecond)
	case m := <-w2.msgs:
		if string(m.Payload) != "job" {
			t.Fatalf("w2 got %q", m.Payload)
		}
		w1.none(t, 300*time.Millisecond)
	case <-time.After(10 * time.Second):
		t.Fatal("no member got the record")
	}
}

// TestTakeover: a second connection with a client id closes the first (MQTT 5: DISCONNECT 0x8E).
func TestTakeover(t *testing.T) {
	b := startBroker(t, nil, nil)
	gone := make(chan byte, 1)
	nc, err := net.Dial("tcp", b.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	first := paho.NewClient(paho.ClientConfig{ClientID: "same", Conn: nc,
		OnServerDisconnect: func(d *paho.Disconnect) { gone <- d.ReasonCode }})
	if _, err := first.Connect(ctx10(t), &paho.Connect{ClientID: "same", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	second := b.mustDial("same", nil)
	select {
	case code := <-gone:
		if code != 0x8E {
			t.Fatalf("disconnect reason %#x", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first connection not disconnected")
	}
	second.sub(t, "t", 0)
	second.pub(t, "t", 0, "x")
	second.next(t)
}

// TestPublishThenCloseAtOnce: a client that sends CONNECT (with a will), a retained PUBLISH and a
// PUBLISH to topics that do not exist yet, and DISCONNECT, and closes without reading anything (as
// mosquitto_pub does), has both stored and its will not published.
func TestPublishThenCloseAtOnce(t *testing.T) {
	b := startBroker(t, nil, nil)
	watch := b.mustDial("watch", nil)
	watch.sub(t, "hand/#", 0)
	var out bytes.Buffer
	connect := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "quick",
			WillFlag: true, WillTopic: "hand/will", WillPayload: []byte("gone")}}
	if err := connect.ConnectEncode(&out); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*packets.Packet{
		{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: "hand/kept", Payload: []byte("r")},
		{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "hand/new", Payload: []byte("n")},
	} {
		p.ProtocolVersion = 4
		if err := p.PublishEncode(&out); err != nil {
			t.Fatal(err)
		}
	}
	out.Write([]byte{0xE0, 0x00}) // DISCONNECT
	nc := rawDial(t, b)
	if _, err := nc.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	got := map[string]string{}
	for range 2 {
		m := watch.next(t)
		got[m.Topic] = string(m.Payload)
	}
	if got["hand/kept"] != "r" || got["hand/new"] != "n" {
		t.Fatalf("got %v", got)
	}
	watch.none(t, 500*time.Millisecond) // no will
	if b.srv.Retained() != 1 {
		t.Fatalf("%d retained", b.srv.Retained())
	}
}

// TestResubscribeKeepsPosition: a resumed 3.1.1 session that subscribes again to its filter (as
// mosquitto_sub does on every connect) and acknowledges gets each message once: the acknowledgement
// commits, and the next session resumes after it.
func TestResubscribeKeepsPosition(t *testing.T) {
	b := startBroker(t, nil, nil)
	p := b.mustDial("pub", nil)
	p.pub(t, "rs", 1, "0")
	session := func(want string) {
		nc := rawDial(t, b)
		body := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 30, 0x00, 0x03, 'd', 'e', 'v'}
		_, _ = nc.Write(append([]byte{0x10, byte(len(body))}, body...))
		rawWrite(t, nc, 4, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: "rs", Qos: 1}}})
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		ack := make([]byte, 4)
		if _, err := readFull(nc, ack); err != nil || ack[0] != 0x20 {
			t.Fatalf("CONNACK % x %v", ack, err)
		}
		for {
			m := rawRead(t, nc, 4)
			if m.FixedHeader.Type == packets.Suback {
				if want == "" {
					break
				}
				continue
			}
			if m.FixedHeader.Type != packets.Publish || string(m.Payload) != want {
				t.Fatalf("got %+v %q, want %q", m.FixedHeader, m.Payload, want)
			}
			var out bytes.Buffer
			a := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: m.PacketID, ProtocolVersion: 4}
			_ = a.PubackEncode(&out)
			out.Write([]byte{0xE0, 0x00})
			_, _ = nc.Write(out.Bytes())
			break
		}
		nc.Close()
	}
	session("") // subscribes
	p.pub(t, "rs", 1, "1")
	session("1")
	p.pub(t, "rs", 1, "2")
	session("2")
	b.restart()
	p = b.mustDial("pub", nil)
	p.pub(t, "rs", 1, "3")
	session("3")
}

// TestDupResendStoredOnce: a QoS 1 PUBLISH resent with DUP (as a client does when it did not get
// the PUBACK, here across a broker restart) is acknowledged and not stored again; a DUP with the
// same packet id and another payload is a new message.
func TestDupResendStoredOnce(t *testing.T) {
	b := startBroker(t, nil, nil)
	publish := func(nc net.Conn, id uint16, payload string, dup bool) {
		rawWrite(t, nc, 4, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Dup: dup},
			TopicName: "dd", PacketID: id, Payload: []byte(payload)})
		if a := rawRead(t, nc, 4); a.FixedHeader.Type != packets.Puback || a.PacketID != id {
			t.Fatalf("PUBACK: %+v", a.FixedHeader)
		}
	}
	records := func() int64 { return b.e.TopicByName("dd").Partition(0).NextOffset() }
	nc := rawConnect(t, b, 4, 30)
	publish(nc, 5, "x", false)
	publish(nc, 5, "x", true)
	if n := records(); n != 1 {
		t.Fatalf("%d records after a resend, want 1", n)
	}
	publish(nc, 5, "other", true)
	if n := records(); n != 2 {
		t.Fatalf("%d records after a DUP of another payload, want 2", n)
	}
	publish(nc, 9, "y", false)
	b.restart()
	nc = rawConnect(t, b, 4, 30)
	publish(nc, 9, "y", true)
	if n := records(); n != 3 {
		t.Fatalf("%d records after a resend across a restart, want 3", n)
	}
	if n := b.srv.Stats().DuplicatesDropped.Load(); n != 1 {
		t.Fatalf("duplicates dropped %d since the restart, want 1", n)
	}
}
