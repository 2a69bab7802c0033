package mqtt

import (
	"net"
	"testing"
	"time"
)

func rawDial(t *testing.T, b *testBroker) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", b.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// TestBadInputClosesOnlyThatConnection: an oversized remaining length (MQTT 5: DISCONNECT 0x95),
// a malformed packet (0x81), a first packet that is not CONNECT and a fifth remaining-length byte
// each close their connection; another client goes on publishing and receiving.
func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	b := startBroker(t, nil, func(o *Options) { o.MaxPacketSize = 1024 })
	good := b.mustDial("good", nil)
	good.sub(t, "g", 0)
	cases := []struct {
		name    string
		version byte // 0: no CONNECT first
		send    []byte
		reason  byte // the DISCONNECT reason expected (MQTT 5), 0 for none
	}{
		{"oversized", 5, []byte{0x30, 0xD0, 0x0F, 0x00, 0x01, 'g'}, 0x95},
		{"malformed subscribe", 5, []byte{0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x05}, 0x81},
		{"subscribe without filters", 5, []byte{0x82, 0x03, 0x00, 0x01, 0x00}, 0x82},
		{"five length bytes", 4, []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, 0},
		{"publish first", 0, []byte{0x30, 0x04, 0x00, 0x01, 'g', 'x'}, 0},
		{"server packet type", 4, []byte{0x90, 0x03, 0x00, 0x01, 0x00}, 0},
	}
	for _, tc := range cases {
		var nc net.Conn
		if tc.version == 0 {
			nc = rawDial(t, b)
		} else {
			nc = rawConnect(t, b, tc.version, 30)
		}
		if _, err := nc.Write(tc.send); err != nil {
			t.Fatal(err)
		}
		got := waitClosed(t, nc)
		if tc.reason != 0 && (len(got) < 3 || got[0] != 0xE0 || got[2] != tc.reason) {
			t.Errorf("%s: got % x, want DISCONNECT %#x", tc.name, got, tc.reason)
		}
		good.pub(t, "g", 0, tc.name)
		if m := good.next(t); string(m.Payload) != tc.name {
			t.Fatalf("%s: the other client got %q", tc.name, m.Payload)
		}
	}
	if n := b.srv.Stats().ProtocolErrors.Load(); n < uint64(len(cases)) {
		t.Errorf("protocol errors %d, want >= %d", n, len(cases))
	}
}

// TestConnectionLimit: past MaxConnections a connection is closed at once; the others serve.
func TestConnectionLimit(t *testing.T) {
	b := startBroker(t, nil, func(o *Options) { o.MaxConnections = 2 })
	c1 := b.mustDial("c1", nil)
	b.mustDial("c2", nil)
	nc := rawDial(t, b)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := nc.Read(make([]byte, 8)); err == nil {
		t.Fatalf("third connection read %d bytes, want closed", n)
	}
	c1.sub(t, "l", 0)
	c1.pub(t, "l", 0, "x")
	c1.next(t)
	if n := b.srv.Stats().Refused.Load(); n != 1 {
		t.Fatalf("refused %d", n)
	}
}
