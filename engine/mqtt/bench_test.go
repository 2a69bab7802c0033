package mqtt

import (
	"bytes"
	"net"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/panjf2000/gnet/v2"

	"github.com/sluicemq/sluice/wire"
)

// nullTransport is a transport that takes every write and has no input: the connection code
// driven without a socket.
type nullTransport struct{ out int }

func (*nullTransport) Peek(int) ([]byte, error)      { return nil, nil }
func (*nullTransport) Discard(int) (int, error)      { return 0, nil }
func (*nullTransport) InboundBuffered() int          { return 0 }
func (*nullTransport) OutboundBuffered() int         { return 0 }
func (t *nullTransport) Write(b []byte) (int, error) { t.out += len(b); return len(b), nil }
func (*nullTransport) Wake(gnet.AsyncCallback) error { return nil }
func (*nullTransport) Close() error                  { return nil }
func (*nullTransport) RemoteAddr() net.Addr          { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// BenchmarkPublishQoS0 serves an MQTT 3.1.1 QoS 0 PUBLISH of 100 bytes on a connected connection:
// decode into the reused packet, the cached topic mapping, the record built in the reused batch
// builder, the append. It should report 0 allocs/op.
func BenchmarkPublishQoS0(b *testing.B) {
	br := startBroker(&testing.T{}, nil, nil)
	defer br.stop()
	if _, err := br.e.CreateTopic(wire.TopicConfig{Name: "bench.x", Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	c := newConn(br.srv, &nullTransport{})
	c.version, c.clientID, c.sess = 4, "bench", newSession("bench")
	c.connected.Store(true)
	var buf bytes.Buffer
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "bench/x", Payload: make([]byte, 100), ProtocolVersion: 4}
	if err := pk.PublishEncode(&buf); err != nil {
		b.Fatal(err)
	}
	frame := buf.Bytes()
	hdr, body, _, _ := readFrame(frame, 1<<20)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		c.handle(hdr, body)
	}
	if c.dead {
		b.Fatal("connection closed")
	}
}
