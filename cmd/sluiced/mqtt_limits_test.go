package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestMQTTLimitFlags: the --mqtt-* limit flags reach the listener. --mqtt-max-connections 2 lets two
// connections in and closes a third before anything is read from it; --mqtt-max-packet,
// --mqtt-receive-maximum and --mqtt-max-keepalive are what an MQTT 5 client is told in CONNACK;
// --mqtt-max-sessions 1 refuses a second persistent session with 0x97 (quota exceeded).
func TestMQTTLimitFlags(t *testing.T) {
	maddr := freePort(t)
	b := startBroker(t, t.TempDir(), "--mqtt-listen", maddr, "--mqtt-max-connections", "2",
		"--mqtt-max-packet", "4KiB", "--mqtt-receive-maximum", "7", "--mqtt-max-keepalive", "20s",
		"--mqtt-max-sessions", "1", "--mqtt-max-inflight", "3", "--mqtt-max-session-expiry", "1h")
	waitListening(t, maddr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// MQTT 5: the CONNACK properties. This is one connection of the two allowed, and a persistent
	// session (the one allowed).
	nc, err := net.DialTimeout("tcp", maddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	expiry := uint32(3600)
	c := paho.NewClient(paho.ClientConfig{ClientID: "lim-a", Conn: nc})
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: "lim-a", CleanStart: true, KeepAlive: 600,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, b.log())
	}
	p := ack.Properties
	switch {
	case p == nil || p.MaximumPacketSize == nil || *p.MaximumPacketSize != 4096:
		t.Errorf("CONNACK Maximum Packet Size %v, want 4096", p)
	case p.ReceiveMaximum == nil || *p.ReceiveMaximum != 7:
		t.Errorf("CONNACK Receive Maximum %v, want 7", p.ReceiveMaximum)
	case p.ServerKeepAlive == nil || *p.ServerKeepAlive != 20:
		t.Errorf("CONNACK Server Keep Alive %v, want 20", p.ServerKeepAlive)
	}
	defer c.Disconnect(&paho.Disconnect{})

	// A second persistent session is past --mqtt-max-sessions 1 (its connection then closes, so
	// the connection count is back at one).
	nc2, err := net.DialTimeout("tcp", maddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c2 := paho.NewClient(paho.ClientConfig{ClientID: "lim-b", Conn: nc2})
	ack2, err := c2.Connect(ctx, &paho.Connect{ClientID: "lim-b", CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err == nil || ack2 == nil || ack2.ReasonCode != 0x97 {
		t.Fatalf("second persistent session: err %v, CONNACK %+v; want refused with 0x97", err, ack2)
	}
	nc2.Close()

	// Connections: one more is let in (a clean 3.1.1 session, CONNACK 0), the one after it closed.
	dial := func(id string) (net.Conn, *bufio.Reader) {
		conn, err := net.DialTimeout("tcp", maddr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = conn.Write(mqttConnect311(id)) // a refused one may be closed already
		return conn, bufio.NewReader(conn)
	}
	var connack [4]byte
	// The refused lim-b connection may still be counted for a moment: retry the second one.
	deadline := time.Now().Add(20 * time.Second)
	var conn2 net.Conn
	for conn2 == nil {
		conn, r := dial("lim-c")
		if _, err := io.ReadFull(r, connack[:]); err == nil {
			if connack != [4]byte{0x20, 2, 0, 0} {
				t.Fatalf("CONNACK % x, want 20 02 00 00", connack)
			}
			conn2 = conn
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a second connection was not let in\n%s", b.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer conn2.Close()
	conn3, r3 := dial("lim-d")
	defer conn3.Close()
	n, err := io.ReadFull(r3, connack[:])
	if err == nil || (!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err)) {
		t.Fatalf("third connection: read %d bytes (% x), err %v; want it closed", n, connack[:n], err)
	}
	if v := b.metric(t, "sluice_mqtt_connections_refused_total", ""); v < 1 {
		t.Errorf("sluice_mqtt_connections_refused_total = %d, want at least 1", v)
	}
}

// isReset reports a connection reset by the peer (a close with unread data).
func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}
