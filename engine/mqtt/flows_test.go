package mqtt

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sluicemq/sluice/wire"
)

// TestQoS12RoundTrip: QoS 1 and 2 PUBLISHes are acknowledged and delivered at the lower of the
// published and subscribed QoS; an fsync durability floor acknowledges after the fdatasync.
func TestQoS12RoundTrip(t *testing.T) {
	b := startBroker(t, nil, func(o *Options) { o.MinDurability = wire.DurabilityFsync })
	sub := b.mustDial("sub", nil)
	sub.sub(t, "q/2", 2)
	sub.sub(t, "q/1", 1)
	pub := b.mustDial("pub", nil)
	for _, tc := range []struct {
		topic        string
		pubQoS, want byte
	}{{"q/2", 2, 2}, {"q/2", 1, 1}, {"q/1", 2, 1}, {"q/1", 0, 0}} {
		r := pub.pub(t, tc.topic, tc.pubQoS, "m")
		if tc.pubQoS > 0 && r.ReasonCode != 0 {
			t.Fatalf("%s qos %d: reason %#x", tc.topic, tc.pubQoS, r.ReasonCode)
		}
		m := sub.next(t)
		if m.Topic != tc.topic || m.QoS != tc.want {
			t.Fatalf("%s published at %d: delivered %s at %d, want %d", tc.topic, tc.pubQoS, m.Topic, m.QoS, tc.want)
		}
	}
	if p := b.e.TopicByName("q.2").Partition(0); p.SyncedOffset() < 2 {
		t.Fatalf("q.2 synced to %d after two acknowledged publishes", p.SyncedOffset())
	}
}

// TestWildcards: '+' and '#' subscriptions, "a/#" matching "a", and a subscription to a topic
// that does not exist yet getting its first record.
func TestWildcards(t *testing.T) {
	b := startBroker(t, nil, nil)
	pub := b.mustDial("pub", nil)
	pub.pub(t, "w/x/temp", 1, "before") // the topic exists before the subscriptions
	plus := b.mustDial("plus", nil)
	plus.sub(t, "w/+/temp", 0)
	hash := b.mustDial("hash", nil)
	hash.sub(t, "w/#", 0)
	exact := b.mustDial("exact", nil)
	exact.sub(t, "w/new/topic", 1) // created by the publish below
	pub.pub(t, "w/y/temp", 1, "1")
	pub.pub(t, "w", 1, "2")
	pub.pub(t, "w/y/hum", 1, "3")
	pub.pub(t, "w/new/topic", 1, "4")
	if m := plus.next(t); m.Topic != "w/y/temp" || string(m.Payload) != "1" {
		t.Fatalf("w/+/temp got %s %q", m.Topic, m.Payload)
	}
	plus.none(t, 300*time.Millisecond)
	got := map[string]bool{}
	for range 4 {
		m := hash.next(t)
		got[m.Topic+"="+string(m.Payload)] = true
	}
	for _, want := range []string{"w/y/temp=1", "w=2", "w/y/hum=3", "w/new/topic=4"} {
		if !got[want] {
			t.Errorf("w/# missed %s (got %v)", want, got)
		}
	}
	if m := exact.next(t); m.Topic != "w/new/topic" || string(m.Payload) != "4" {
		t.Fatalf("w/new/topic got %s %q", m.Topic, m.Payload)
	}
}

// TestRetained: a retained message is delivered to a later subscriber with the retain flag, the
// latest wins, it survives a restart, and an empty retained PUBLISH clears it.
func TestRetained(t *testing.T) {
	b := startBroker(t, nil, nil)
	pub := b.mustDial("pub", nil)
	for _, v := range []string{"old", "new"} {
		if _, err := pub.Publish(ctx10(t), &paho.Publish{Topic: "r/dev1/state", QoS: 1, Retain: true, Payload: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	s1 := b.mustDial("s1", nil)
	s1.sub(t, "r/+/state", 1)
	if m := s1.next(t); !m.Retain || string(m.Payload) != "new" || m.Topic != "r/dev1/state" {
		t.Fatalf("retained: %s %q retain %v", m.Topic, m.Payload, m.Retain)
	}
	s1.none(t, 200*time.Millisecond)
	b.restart()
	s2 := b.mustDial("s2", nil)
	s2.sub(t, "r/#", 0)
	if m := s2.next(t); !m.Retain || string(m.Payload) != "new" {
		t.Fatalf("after restart: %q retain %v", m.Payload, m.Retain)
	}
	pub = b.mustDial("pub", nil)
	if _, err := pub.Publish(ctx10(t), &paho.Publish{Topic: "r/dev1/state", QoS: 1, Retain: true}); err != nil {
		t.Fatal(err)
	}
	s3 := b.mustDial("s3", nil)
	s3.sub(t, "r/#", 0)
	s3.none(t, 300*time.Millisecond)
	if n := b.srv.Retained(); n != 0 {
		t.Fatalf("%d retained after the clear", n)
	}
}

// TestPersistentSession: a session with an expiry keeps its subscription and the QoS 1 messages
// published while its client was away, across a reconnect and across an engine restart.
func TestPersistentSession(t *testing.T) {
	b := startBroker(t, nil, nil)
	expiry := uint32(3600)
	persistent := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	pub := b.mustDial("pub", nil)
	pub.pub(t, "p/x", 1, "0") // the topic exists
	dev := b.mustDial("dev", persistent)
	dev.sub(t, "p/x", 1)
	pub.pub(t, "p/x", 1, "1")
	if m := dev.next(t); string(m.Payload) != "1" {
		t.Fatalf("got %q", m.Payload)
	}
	_ = dev.Disconnect(&paho.Disconnect{})
	pub.pub(t, "p/x", 1, "2")
	dev, ca, err := b.dial("dev", persistent)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("reconnect: %v, session present %v", err, ca != nil && ca.SessionPresent)
	}
	// QoS 1 is at least once: paho acknowledges after its handler returns, so the DISCONNECT may go
	// out before the PUBACK of "1", which then comes again, first.
	if m := nextAfterRepeats(t, dev, "1"); string(m.Payload) != "2" {
		t.Fatalf("after reconnect got %q, want 2", m.Payload)
	}
	_ = dev.Disconnect(&paho.Disconnect{})
	pub.pub(t, "p/x", 1, "3")
	b.restart()
	dev, ca, err = b.dial("dev", persistent)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("after restart: %v, session present %v", err, ca != nil && ca.SessionPresent)
	}
	if m := nextAfterRepeats(t, dev, "2"); string(m.Payload) != "3" {
		t.Fatalf("after restart got %q, want 3", m.Payload)
	}
	dev.none(t, 200*time.Millisecond)
	// A clean start drops the session: a persistent connection after it finds none.
	_ = dev.Disconnect(&paho.Disconnect{})
	clean, ca, err := b.dial("dev", nil)
	if err != nil || ca.SessionPresent {
		t.Fatalf("clean start: %v, session present %v", err, ca != nil && ca.SessionPresent)
	}
	_ = clean.Disconnect(&paho.Disconnect{})
	b.mustDial("pub2", nil).pub(t, "p/x", 1, "4") // pub's connection went with the restart
	dev, ca, err = b.dial("dev", persistent)
	if err != nil || ca.SessionPresent {
		t.Fatalf("after the clean start: %v, session present %v", err, ca != nil && ca.SessionPresent)
	}
	dev.none(t, 300*time.Millisecond)
}

// TestWill: a connection that drops without DISCONNECT has its will published; one that
// disconnects normally does not.
func TestWill(t *testing.T) {
	b := startBroker(t, nil, nil)
	watch := b.mustDial("watch", nil)
	pub := b.mustDial("pub", nil)
	pub.pub(t, "status/dev", 0, "x") // the topic exists
	watch.sub(t, "status/+", 1)
	watch.next(t)
	will := func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "status/dev", QoS: 1, Payload: []byte("gone")}
	}
	nice := b.mustDial("nice", will)
	_ = nice.Disconnect(&paho.Disconnect{})
	nc, err := net.Dial("tcp", b.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rough := paho.NewClient(paho.ClientConfig{ClientID: "rough", Conn: nc})
	cp := &paho.Connect{ClientID: "rough", CleanStart: true, KeepAlive: 30}
	will(cp)
	if _, err := rough.Connect(ctx10(t), cp); err != nil {
		t.Fatal(err)
	}
	nc.Close() // no DISCONNECT
	if m := watch.next(t); string(m.Payload) != "gone" || m.Topic != "status/dev" {
		t.Fatalf("will: %s %q", m.Topic, m.Payload)
	}
	watch.none(t, 300*time.Millisecond)
}

// TestKeepAlive: a client silent for 1.5 times its keep-alive is disconnected (MQTT 5: with
// DISCONNECT 0x8D).
func TestKeepAlive(t *testing.T) {
	b := startBroker(t, nil, nil)
	nc := rawConnect(t, b, 5, 1) // keep-alive 1 s
	start := time.Now()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := nc.Read(buf)
	if err != nil || n < 3 || buf[0] != 0xE0 || buf[2] != 0x8D {
		t.Fatalf("want DISCONNECT 0x8D, got % x %v", buf[:n], err)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("disconnected after %v, before 1.5 x keep-alive", el)
	}
}

// rawConnect dials and sends a CONNECT (protocol level version, keep-alive ka seconds, clean,
// client id "raw"), reads the CONNACK and returns the connection.
func rawConnect(t *testing.T, b *testBroker, version byte, ka uint16) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", b.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	body := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', version, 0x02, byte(ka >> 8), byte(ka)}
	if version == 5 {
		body = append(body, 0x00) // no properties
	}
	body = append(body, 0x00, 0x03, 'r', 'a', 'w')
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
	return nc
}

func readFull(nc net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := nc.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// waitClosed reads nc until EOF (or an error), failing after 10 s; it returns what was read.
func waitClosed(t *testing.T, nc net.Conn) []byte {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out []byte
	buf := make([]byte, 256)
	for {
		n, err := nc.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection still open after 10 s")
			}
			return out
		}
	}
}

var _ = context.Background

// TestPersistentWildcardSession: a persistent session's wildcard subscription gets, on resume,
// what was published while it was away, to topics that existed and to topics created meanwhile,
// across a restart too, and nothing it had acknowledged.
func TestPersistentWildcardSession(t *testing.T) {
	b := startBroker(t, func(o *engineOptions) { o.DefaultPartitions = 2 }, nil)
	expiry := uint32(3600)
	persistent := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	pub := b.mustDial("pub", nil)
	pub.pub(t, "pw/old", 1, "history") // before the subscription: never delivered
	dev := b.mustDial("dev", persistent)
	dev.sub(t, "pw/+", 1)
	pub.pub(t, "pw/old", 1, "live")
	if m := dev.next(t); string(m.Payload) != "live" {
		t.Fatalf("got %q", m.Payload)
	}
	b.awaitPubacksIn(1) // "live" acknowledged: not due again on resume
	_ = dev.Disconnect(&paho.Disconnect{})
	pub.pub(t, "pw/old", 1, "away1")
	pub.pub(t, "pw/new", 1, "away2") // a topic created while away
	expect := func(want ...string) {
		t.Helper()
		got := map[string]bool{}
		for range want {
			got[string(dev.next(t).Payload)] = true
		}
		for _, w := range want {
			if !got[w] {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
		dev.none(t, 300*time.Millisecond)
	}
	dev = b.mustDial("dev", persistent)
	expect("away1", "away2")
	b.awaitPubacksIn(3)
	_ = dev.Disconnect(&paho.Disconnect{})
	pub.pub(t, "pw/new", 1, "away3")
	b.restart()
	dev = b.mustDial("dev", persistent)
	expect("away3")
}

// nextAfterRepeats is c's next message other than a redelivery of the one whose payload is last (at
// most one: a QoS 1 message sent again because its PUBACK did not reach the broker before the client
// went away).
func nextAfterRepeats(t *testing.T, c *client, last string) *paho.Publish {
	t.Helper()
	m := c.next(t)
	if string(m.Payload) == last {
		m = c.next(t)
	}
	return m
}
