package mqtt

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// heldClient is a paho (MQTT 5) client that stops acknowledging while hold is set: its handler
// passes a message on and then waits for release before paho sends the PUBACK.
type heldClient struct {
	*client
	hold    atomic.Bool
	release chan struct{} // closed to acknowledge again
}

// dialHeld connects an MQTT 5 client with receive maximum recvMax, a clean session unless connect
// (which may adjust the CONNECT packet) says otherwise.
func (b *testBroker) dialHeld(id string, recvMax uint16, connect func(*paho.Connect)) *heldClient {
	b.t.Helper()
	nc, err := net.DialTimeout("tcp", b.srv.Addr().String(), 5*time.Second)
	if err != nil {
		b.t.Fatal(err)
	}
	h := &heldClient{client: &client{msgs: make(chan *paho.Publish, 1000)}, release: make(chan struct{})}
	h.Client = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			h.msgs <- pr.Packet
			if h.hold.Load() {
				select {
				case <-h.release:
				case <-time.After(30 * time.Second): // never past the test
				}
			}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if connect != nil {
		connect(cp)
	}
	if cp.Properties == nil {
		cp.Properties = &paho.ConnectProperties{}
	}
	cp.Properties.ReceiveMaximum = &recvMax
	if _, err := h.Connect(ctx, cp); err != nil {
		nc.Close()
		b.t.Fatalf("connect %s: %v", id, err)
	}
	b.t.Cleanup(func() {
		if h.hold.Load() {
			select {
			case <-h.release:
			default:
				close(h.release)
			}
		}
		_ = h.Disconnect(&paho.Disconnect{})
	})
	return h
}

// TestSharedWildcardGroup: the members of a shared wildcard subscription (a consumer group over a
// pattern) receive every record of every matching topic, one created after they subscribed
// included, exactly once between them while no one leaves; when one leaves, the other takes its
// topics and receives everything published afterwards, and loses none of the records it had been
// dealt but not yet sent when the group was dealt again (QoS 1).
func TestSharedWildcardGroup(t *testing.T) {
	b := startBroker(t, nil, nil) // one partition a topic: the members split the topics
	p := b.mustDial("pub", nil)
	p.pub(t, "sensors/a/temp", 1, "warm")
	p.pub(t, "sensors/b/temp", 1, "warm")
	w1 := b.mustDial("w1", nil)
	w2 := b.dialHeld("w2", 1, nil) // a window of one: a record held while it does not acknowledge
	const filter = "$share/g/sensors/+/temp"
	if code := w1.sub(t, filter, 1); code != 1 {
		t.Fatalf("w1 subscribe: %#x", code)
	}
	if code := w2.sub(t, filter, 1); code != 1 {
		t.Fatalf("w2 subscribe: %#x", code)
	}
	topics := []string{"sensors/a/temp", "sensors/b/temp", "sensors/c/temp"} // c is created below

	// collect reads from both members until every payload of want was seen, within 20 s.
	type got struct {
		by    map[string][]*client // payload -> the members that received it, in order
		owner map[string]*client   // topic -> the member that received its latest record
	}
	collect := func(want map[string]bool) got {
		t.Helper()
		g := got{by: map[string][]*client{}, owner: map[string]*client{}}
		missing := len(want)
		deadline := time.After(20 * time.Second)
		for missing > 0 {
			var m *paho.Publish
			var from *client
			select {
			case m = <-w1.msgs:
				from = w1
			case m = <-w2.msgs:
				from = w2.client
			case <-deadline:
				var lost []string
				for w := range want {
					if len(g.by[w]) == 0 {
						lost = append(lost, w)
					}
				}
				t.Fatalf("%d of %d records never delivered: %v", missing, len(want), lost)
			}
			s := string(m.Payload)
			if !want[s] {
				t.Fatalf("unexpected record %q on %s", s, m.Topic)
			}
			if len(g.by[s]) == 0 {
				missing--
			}
			g.by[s] = append(g.by[s], from)
			g.owner[m.Topic] = from
		}
		return g
	}

	// sensors/c/temp appears now, by its first record. The members' pattern subscriptions each take
	// the new topic in and the group is dealt again; a record of it delivered to one member before
	// that and dealt to the other by it may come twice (QoS 1 is at least once). Wait for the first
	// record, and for the dealing to settle, before phase 1 counts deliveries.
	p.pub(t, "sensors/c/temp", 1, "warm")
	select {
	case <-w1.msgs:
	case <-w2.msgs:
	case <-time.After(20 * time.Second):
		t.Fatal("the first record of sensors/c/temp never delivered")
	}
	for settle := time.After(500 * time.Millisecond); ; {
		var m *paho.Publish
		select {
		case m = <-w1.msgs:
		case m = <-w2.msgs:
		case <-settle:
		}
		if m == nil {
			break
		}
		if string(m.Payload) != "warm" { // the first record again is allowed, nothing else
			t.Fatalf("unexpected record %q on %s", m.Payload, m.Topic)
		}
	}

	// Phase 1: nobody leaves; each record goes to exactly one member.
	want := map[string]bool{}
	for i := range 10 {
		for _, tp := range topics {
			s := fmt.Sprintf("%s/1/%d", tp, i)
			want[s] = true
			p.pub(t, tp, 1, s)
		}
		p.pub(t, "sensors/a/hum", 1, "not matched")
	}
	g := collect(want)
	w1.none(t, 300*time.Millisecond)
	w2.none(t, 0)
	n1, n2 := 0, 0
	for s, by := range g.by {
		if len(by) != 1 {
			t.Fatalf("%q delivered %d times", s, len(by))
		}
		if by[0] == w1 {
			n1++
		} else {
			n2++
		}
	}
	if n1 == 0 || n2 == 0 {
		t.Fatalf("the group was not shared: w1 got %d, w2 %d", n1, n2)
	}
	var w2Topics []string
	for _, tp := range topics {
		if g.owner[tp] == w2.client {
			w2Topics = append(w2Topics, tp)
		}
	}
	if len(w2Topics) == 0 {
		t.Fatal("w2 holds no topic after phase 1")
	}

	// Phase 2: w2 stops acknowledging, so records of its topics wait on the broker (its window is
	// full); then w1 leaves, and the group is dealt again while w2 holds them.
	w2.hold.Store(true)
	before := map[string]bool{}
	for i := range 10 {
		for _, tp := range w2Topics {
			s := fmt.Sprintf("%s/2/%d", tp, i)
			before[s] = true
			p.pub(t, tp, 1, s)
		}
	}
	var first string
	select {
	case m := <-w2.msgs: // the first of them, unacknowledged
		first = string(m.Payload)
	case <-time.After(10 * time.Second):
		t.Fatal("w2 got nothing of phase 2")
	}
	if !before[first] {
		t.Fatalf("w2 got %q first in phase 2", first)
	}
	_ = w1.Disconnect(&paho.Disconnect{})
	after := map[string]bool{}
	for i := range 10 {
		for _, tp := range topics {
			s := fmt.Sprintf("%s/3/%d", tp, i)
			after[s] = true
			p.pub(t, tp, 1, s)
		}
	}
	close(w2.release)
	// Everything of phase 2 and after reaches w2 (the first record of phase 2 was read above).
	rest := map[string]bool{}
	for s := range before {
		rest[s] = true
	}
	for s := range after {
		rest[s] = true
	}
	delete(rest, first)
	g = collect(rest)
	for s, by := range g.by {
		for _, c := range by {
			if c != w2.client {
				t.Fatalf("%q went to w1 after it left", s)
			}
		}
	}
	w2.none(t, 300*time.Millisecond)
}

// TestPersistentWildcardNewTopic: a persistent session's wildcard subscription (the only member of
// its group over the pattern) loses nothing when a matching topic is created while it holds
// records it could not send yet (its window full), and gets the new topic's records too.
func TestPersistentWildcardNewTopic(t *testing.T) {
	b := startBroker(t, nil, nil)
	expiry := uint32(3600)
	p := b.mustDial("pub", nil)
	p.pub(t, "pn/a", 1, "warm")
	dev := b.dialHeld("dev", 1, func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	})
	if code := dev.sub(t, "pn/+", 1); code != 1 {
		t.Fatalf("subscribe: %#x", code)
	}
	dev.hold.Store(true)
	want := map[string]bool{}
	for i := range 10 {
		s := fmt.Sprintf("a%d", i)
		want[s] = true
		p.pub(t, "pn/a", 1, s)
	}
	first := string(dev.next(t).Payload) // unacknowledged: the rest waits on the broker
	if !want[first] {
		t.Fatalf("got %q first", first)
	}
	delete(want, first)
	for i := range 10 {
		s := fmt.Sprintf("b%d", i)
		want[s] = true
		p.pub(t, "pn/b", 1, s) // the first creates the topic: the group is dealt again
	}
	close(dev.release)
	deadline := time.After(20 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-dev.msgs:
			delete(want, string(m.Payload))
		case <-deadline:
			t.Fatalf("never delivered: %v", want)
		}
	}
}
