package mqtt

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sluicemq/sluice/engine/server/servertest"
)

// TestSessionExpiry: a session expires its expiry interval after its connection ended: a
// reconnect after it finds no session, and its file is gone.
func TestSessionExpiry(t *testing.T) {
	b := startBroker(t, nil, nil)
	expiry := uint32(1)
	persistent := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	dev := b.mustDial("dev", persistent)
	dev.sub(t, "exp", 1)
	_ = dev.Disconnect(&paho.Disconnect{})
	deadline := time.Now().Add(10 * time.Second)
	for offlineSeen := false; ; {
		_, offline := b.srv.Sessions()
		if offline == 1 {
			offlineSeen = true // let go; now wait for it to expire
		}
		if offlineSeen && offline == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session not expired within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		files, _ := filepath.Glob(filepath.Join(b.dir, "mqtt", "sessions", "*.json"))
		if len(files) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session files left after expiry: %v", files)
		}
		time.Sleep(50 * time.Millisecond) // the drop runs off the ticker
	}
	_, ca, err := b.dial("dev", persistent)
	if err != nil || ca.SessionPresent {
		t.Fatalf("after expiry: %v, session present %v", err, ca != nil && ca.SessionPresent)
	}
	if n := b.srv.Stats().SessionsExpired.Load(); n != 1 {
		t.Fatalf("sessions expired %d", n)
	}
}

// TestWillDelay: an MQTT 5 will with a delay is published after it; a reconnect within it cancels
// the will.
func TestWillDelay(t *testing.T) {
	b := startBroker(t, nil, nil)
	watch := b.willWatcher(t, "wd")
	// "back" reconnects within its delay, which is long enough for a loaded machine; "lost" does not.
	expiry, delays := uint32(60), map[string]uint32{"back": 5, "lost": 1}
	connect := func(id string) func(*paho.Connect) {
		return func(cp *paho.Connect) {
			delay := delays[id]
			cp.CleanStart = false
			cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
			cp.WillMessage = &paho.WillMessage{Topic: "wd/" + id, QoS: 1, Payload: []byte(id + " gone")}
			cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
		}
	}
	drop := func(id string) {
		nc, err := net.Dial("tcp", b.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: nc})
		cp := &paho.Connect{ClientID: id, KeepAlive: 30}
		connect(id)(cp)
		if _, err := c.Connect(ctx10(t), cp); err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	backDropped := time.Now()
	drop("back")
	b.mustDial("back", connect("back")) // within the delay: no will
	start := time.Now()
	drop("lost")
	m := watch.next(t)
	if string(m.Payload) != "lost gone" {
		t.Fatalf("will %q", m.Payload)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("will after %v, before its delay", el)
	}
	// "back" reconnected: its will stays unpublished past its delay.
	watch.none(t, time.Until(backDropped.Add(6*time.Second)))
}

// TestWillDelayTakeover: a client that connects again while its first connection is still open
// (session takeover) is back within its will delay: the will of the connection taken over is not
// published (it was at once, before: the takeover counted as the session ending).
func TestWillDelayTakeover(t *testing.T) {
	b := startBroker(t, nil, nil)
	watch := b.willWatcher(t, "tk")
	expiry, delay := uint32(60), uint32(5)
	connect := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
		cp.WillMessage = &paho.WillMessage{Topic: "tk/dev", QoS: 1, Payload: []byte("dev gone")}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	}
	b.mustDial("dev", connect)
	b.mustDial("dev", connect) // takes the session over from the first, still open
	watch.none(t, 1500*time.Millisecond)
}

// TestWillCleanStart: a client that comes back with a clean start ends its old session, and a
// delayed will goes out when its session ends (MQTT 5 3.1.2.5): at the reconnection, well before its
// 10 s delay. Resuming the session instead (TestWillDelay) drops it.
func TestWillCleanStart(t *testing.T) {
	b := startBroker(t, nil, nil)
	watch := b.willWatcher(t, "cs")
	expiry, delay := uint32(60), uint32(10)
	nc, err := net.Dial("tcp", b.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: "dev", Conn: nc})
	cp := &paho.Connect{ClientID: "dev", KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		WillMessage:    &paho.WillMessage{Topic: "cs/dev", QoS: 1, Payload: []byte("dev gone")},
		WillProperties: &paho.WillProperties{WillDelayInterval: &delay}}
	if _, err := c.Connect(ctx10(t), cp); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	watch.none(t, 300*time.Millisecond) // delayed
	start := time.Now()
	b.mustDial("dev", func(cp *paho.Connect) { cp.CleanStart = true })
	if m := watch.next(t); string(m.Payload) != "dev gone" {
		t.Fatalf("got %q", m.Payload)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("will %v after the clean start: it waited for its delay", el)
	}
}

// TestTLS: the TLS listener serves the same protocol.
func TestTLS(t *testing.T) {
	cert, pool := servertest.SelfSigned(t)
	b := startBroker(t, nil, func(o *Options) {
		o.TLSAddr = "127.0.0.1:0"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	nc, err := tls.Dial("tcp", b.srv.TLSAddr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *paho.Publish, 1)
	var extra atomic.Int32 // deliveries past the first: a handler that blocked on them would stall paho
	c := paho.NewClient(paho.ClientConfig{ClientID: "tls", Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case got <- pr.Packet:
			default:
				extra.Add(1)
			}
			return true, nil
		}}})
	if _, err := c.Connect(ctx10(t), &paho.Connect{ClientID: "tls", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx10(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "sec/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx10(t), &paho.Publish{Topic: "sec/x", QoS: 1, Payload: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Topic != "sec/x" {
			t.Fatalf("got %s", m.Topic)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message over TLS")
	}
	if n := extra.Load(); n > 0 {
		t.Fatalf("the message was delivered %d more times", n)
	}
}

// willWatcher connects "watch", creates topic prefix/dev (where the will tests' "dev" leaves its
// will) and subscribes to prefix/+ at QoS 1.
func (b *testBroker) willWatcher(t *testing.T, prefix string) *client {
	t.Helper()
	watch := b.mustDial("watch", nil)
	watch.pub(t, prefix+"/dev", 0, "x")
	watch.sub(t, prefix+"/+", 1)
	return watch
}
