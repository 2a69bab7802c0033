package mqtt

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server/servertest"
)

// engineOptions names engine.Options where a test sets the engine up.
type engineOptions = engine.Options

// testBroker is an engine and an MQTT listener on a loopback port, over one data directory.
type testBroker struct {
	t    *testing.T
	dir  string
	e    *engine.Engine
	srv  *Server
	eo   engine.Options
	opts Options
}

// startBroker opens an engine (auto-creating topics, one partition each unless set) and a listener.
func startBroker(t *testing.T, setEngine func(*engine.Options), setOpts func(*Options)) *testBroker {
	t.Helper()
	dir := t.TempDir()
	b := &testBroker{t: t, dir: dir}
	b.eo = engine.Options{DataDir: dir, MemoryDir: filepath.Join(dir, "mem"), SegmentBytes: 4 << 20,
		AutoCreateTopics: true, DefaultPartitions: 1, Logger: servertest.Logger()}
	if setEngine != nil {
		setEngine(&b.eo)
	}
	b.opts = Options{Addr: "127.0.0.1:0", Loops: 2, Logger: servertest.Logger()}
	if setOpts != nil {
		setOpts(&b.opts)
	}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *testBroker) start() {
	b.t.Helper()
	e, err := engine.Open(b.eo)
	if err != nil {
		b.t.Fatal(err)
	}
	o := b.opts
	o.Engine = e
	srv, err := Start(o)
	if err != nil {
		e.Close()
		b.t.Fatal(err)
	}
	b.e, b.srv = e, srv
	b.opts.Addr = srv.Addr().String() // a restart listens on the same port
}

func (b *testBroker) stop() {
	if b.srv != nil {
		_ = b.srv.Close()
		_ = b.e.Close()
		b.srv, b.e = nil, nil
	}
}

// restart closes the listener and the engine and opens both again on the same data directory.
func (b *testBroker) restart() {
	b.stop()
	b.start()
}

// client is a paho (MQTT 5) client with its received messages on a channel.
type client struct {
	*paho.Client
	msgs chan *paho.Publish
}

// dial connects an MQTT 5 client. connect may adjust the CONNECT packet.
func (b *testBroker) dial(id string, connect func(*paho.Connect)) (*client, *paho.Connack, error) {
	b.t.Helper()
	nc, err := net.DialTimeout("tcp", b.srv.Addr().String(), 5*time.Second)
	if err != nil {
		b.t.Fatal(err)
	}
	c := &client{msgs: make(chan *paho.Publish, 1000)}
	c.Client = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}}})
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if connect != nil {
		connect(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		return nil, ca, err
	}
	b.t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

// mustDial is dial that fails the test on a refusal.
// awaitPubacksIn waits (10 s at most) until the broker has read n PUBACKs since it started: a
// client's acknowledgements have reached it. paho sends a PUBACK from another goroutine than the
// one that disconnects, and a DISCONNECT written first leaves the message unacknowledged, due again
// on resume (MQTT's at-least-once, not a broker fault).
func (b *testBroker) awaitPubacksIn(n uint64) {
	b.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); b.srv.stats.packetsIn[packets.Puback].Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.t.Fatalf("the broker read %d PUBACKs in 10 s, want %d", b.srv.stats.packetsIn[packets.Puback].Load(), n)
		}
	}
}

func (b *testBroker) mustDial(id string, connect func(*paho.Connect)) *client {
	b.t.Helper()
	c, _, err := b.dial(id, connect)
	if err != nil {
		b.t.Fatalf("connect %s: %v", id, err)
	}
	return c
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (c *client) sub(t *testing.T, filter string, qos byte) byte {
	t.Helper()
	sa, err := c.Subscribe(ctx10(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		if sa != nil && len(sa.Reasons) == 1 {
			return sa.Reasons[0]
		}
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

func (c *client) pub(t *testing.T, topic string, qos byte, payload string) *paho.PublishResponse {
	t.Helper()
	r, err := c.Publish(ctx10(t), &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return r
}

// next waits for the next message, failing after 10 s.
func (c *client) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
		return nil
	}
}

// none checks that no message arrives within d.
func (c *client) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message on %s: %q", m.Topic, m.Payload)
	case <-time.After(d):
	}
}

// TestQoS0RoundTrip: a QoS 0 PUBLISH reaches a subscriber of its topic, and is stored in the
// mapped Sluice topic with the MQTT headers.
func TestQoS0RoundTrip(t *testing.T) {
	b := startBroker(t, nil, nil)
	sub := b.mustDial("sub", nil)
	if code := sub.sub(t, "sensors/eu/temp", 0); code != 0 {
		t.Fatalf("suback %#x", code)
	}
	pub := b.mustDial("pub", nil)
	pub.pub(t, "sensors/eu/temp", 0, "21.5")
	m := sub.next(t)
	if m.Topic != "sensors/eu/temp" || string(m.Payload) != "21.5" || m.QoS != 0 {
		t.Fatalf("got %s %q qos %d", m.Topic, m.Payload, m.QoS)
	}
	l, err := b.e.SubscribeLocal(wireSub("sensors.eu.temp"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := l.NextRecord(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Value) != "21.5" {
		t.Fatalf("record value %q", r.Value)
	}
	for k, want := range map[string]string{HeaderTopic: "sensors/eu/temp", HeaderQoS: "0", HeaderClientID: "pub"} {
		if v, ok := r.Header(k); !ok || string(v) != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
}
