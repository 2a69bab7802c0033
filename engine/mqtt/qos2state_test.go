package mqtt

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// rawConnectPersistent connects an MQTT 5 client id with clean start 0 and a session expiry of an
// hour, and returns the connection and whether CONNACK said session present.
func rawConnectPersistent(t *testing.T, b *testBroker, id string) (net.Conn, bool) {
	t.Helper()
	nc, err := net.Dial("tcp", b.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	body := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 5, 0x00, 0, 30,
		5, 0x11, 0, 0, 0x0E, 0x10} // properties: session expiry 3600 s
	body = append(body, 0, byte(len(id)))
	body = append(body, id...)
	if _, err := nc.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 2)
	if _, err := readFull(nc, hdr); err != nil || hdr[0] != 0x20 {
		t.Fatalf("CONNACK: % x %v", hdr, err)
	}
	rest := make([]byte, hdr[1])
	if _, err := readFull(nc, rest); err != nil || rest[1] != 0 {
		t.Fatalf("CONNACK: % x %v", rest, err)
	}
	_ = nc.SetReadDeadline(time.Time{})
	return nc, rest[0]&1 == 1
}

// TestQoS2StateAcrossRestart: a persistent session's QoS 2 state survives a broker restart. Inbound:
// a PUBLISH stored and PUBRECed before the restart and resent after it (without DUP, so the DUP
// look-up does not catch it) is acknowledged and not stored again, and its PUBREL is answered with
// PUBCOMP 0 (not 0x92, packet id not found); an id released before the restart is free for a new
// message. Outbound: a delivery PUBRECed before the restart has its PUBREL sent again after it.
func TestQoS2StateAcrossRestart(t *testing.T) {
	b := startBroker(t, nil, nil)
	pub := func(nc net.Conn, id uint16, payload string) {
		t.Helper()
		rawWrite(t, nc, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2},
			TopicName: "q2", PacketID: id, Payload: []byte(payload)})
		if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Pubrec || a.PacketID != id || a.ReasonCode != 0 {
			t.Fatalf("PUBREC %d: %+v code %#x", id, a.FixedHeader, a.ReasonCode)
		}
	}
	rel := func(nc net.Conn, id uint16) {
		t.Helper()
		rawWrite(t, nc, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: id})
		if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Pubcomp || a.PacketID != id || a.ReasonCode != 0 {
			t.Fatalf("PUBCOMP %d: %+v code %#x", id, a.FixedHeader, a.ReasonCode)
		}
	}
	records := func() int64 { return b.e.TopicByName("q2").Partition(0).NextOffset() }

	// The subscriber: a persistent session at QoS 2 that PUBRECs one delivery.
	sub, _ := rawConnectPersistent(t, b, "q2-sub")
	rawWrite(t, sub, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "q2-out", Qos: 2}}})
	if a := rawRead(t, sub, 5); a.FixedHeader.Type != packets.Suback {
		t.Fatalf("SUBACK: %+v", a.FixedHeader)
	}

	nc, _ := rawConnectPersistent(t, b, "q2-pub")
	pub(nc, 3, "a")
	pub(nc, 4, "b")
	rel(nc, 4)
	rawWrite(t, nc, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2},
		TopicName: "q2-out", PacketID: 9, Payload: []byte("out")})
	if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Pubrec {
		t.Fatalf("PUBREC: %+v", a.FixedHeader)
	}
	rel(nc, 9)
	d := rawRead(t, sub, 5)
	if d.FixedHeader.Type != packets.Publish || d.FixedHeader.Qos != 2 || string(d.Payload) != "out" {
		t.Fatalf("delivery: %+v %q", d.FixedHeader, d.Payload)
	}
	rawWrite(t, sub, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: d.PacketID})
	if a := rawRead(t, sub, 5); a.FixedHeader.Type != packets.Pubrel || a.PacketID != d.PacketID {
		t.Fatalf("PUBREL: %+v", a.FixedHeader)
	}
	if n := records(); n != 2 {
		t.Fatalf("%d records before the restart, want 2", n)
	}

	b.restart()
	nc, present := rawConnectPersistent(t, b, "q2-pub")
	if !present {
		t.Fatal("session not present after the restart")
	}
	pub(nc, 3, "a") // a resend without DUP: stored already
	if n := records(); n != 2 {
		t.Fatalf("%d records after a resend across the restart, want 2", n)
	}
	rel(nc, 3)
	pub(nc, 4, "c") // released before the restart: a new message
	rel(nc, 4)
	if n := records(); n != 3 {
		t.Fatalf("%d records after a new message with a released id, want 3", n)
	}
	sub, _ = rawConnectPersistent(t, b, "q2-sub")
	if a := rawRead(t, sub, 5); a.FixedHeader.Type != packets.Pubrel || a.PacketID != d.PacketID {
		t.Fatalf("after the restart: %+v id %d, want PUBREL %d", a.FixedHeader, a.PacketID, d.PacketID)
	}
	rawWrite(t, sub, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: d.PacketID})
}

// TestQoS2FlowLogTornTail: a flow log ending in a torn record (a crash during its write) is read
// up to it, and compacted before the next record is appended, so later records stay aligned.
func TestQoS2FlowLogTornTail(t *testing.T) {
	b := startBroker(t, nil, nil)
	pub := func(nc net.Conn, id uint16) {
		t.Helper()
		rawWrite(t, nc, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2},
			TopicName: "torn", PacketID: id, Payload: []byte("x")})
		if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Pubrec || a.PacketID != id {
			t.Fatalf("PUBREC %d: %+v", id, a.FixedHeader)
		}
	}
	rel := func(nc net.Conn, id uint16) {
		t.Helper()
		rawWrite(t, nc, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: id})
		if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Pubcomp || a.PacketID != id || a.ReasonCode != 0 {
			t.Fatalf("PUBCOMP %d: %+v code %#x", id, a.FixedHeader, a.ReasonCode)
		}
	}
	nc, _ := rawConnectPersistent(t, b, "torn")
	pub(nc, 3)
	name := b.srv.sessions.flowFile("torn")
	b.stop()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{flowIn}); err != nil { // a record cut after its first byte
		t.Fatal(err)
	}
	f.Close()
	b.start()
	nc, _ = rawConnectPersistent(t, b, "torn")
	pub(nc, 5)
	rel(nc, 3)
	b.restart()
	nc, _ = rawConnectPersistent(t, b, "torn")
	rel(nc, 5)
}

// TestRedeliveryWithDupAcrossRestart: a QoS 1 delivery a persistent session did not acknowledge is
// sent again with DUP set after a broker restart too (what was sent is stored with the session).
func TestRedeliveryWithDupAcrossRestart(t *testing.T) {
	b := startBroker(t, nil, nil)
	p := b.mustDial("pub", nil)
	nc, _ := rawConnectPersistent(t, b, "dev")
	rawWrite(t, nc, 5, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "rdup", Qos: 1}}})
	if a := rawRead(t, nc, 5); a.FixedHeader.Type != packets.Suback {
		t.Fatalf("SUBACK: %+v", a.FixedHeader)
	}
	p.pub(t, "rdup", 1, "1")
	m := rawRead(t, nc, 5)
	if m.FixedHeader.Type != packets.Publish || string(m.Payload) != "1" || m.FixedHeader.Dup {
		t.Fatalf("first delivery: %+v %q", m.FixedHeader, m.Payload)
	}
	nc.Close() // no PUBACK
	b.restart()
	nc, present := rawConnectPersistent(t, b, "dev")
	if !present {
		t.Fatal("session not present after the restart")
	}
	m = rawRead(t, nc, 5)
	if m.FixedHeader.Type != packets.Publish || string(m.Payload) != "1" || !m.FixedHeader.Dup {
		t.Fatalf("redelivery after the restart: %+v %q", m.FixedHeader, m.Payload)
	}
}
