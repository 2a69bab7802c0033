package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// dialFrom connects to s from the loopback address ip (any of 127.0.0.0/8 on Linux), so a test can
// play clients at several source addresses.
func dialFrom(t testing.TB, s *Server, ip string) *rawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, dec: wire.NewDecoder(wire.DefaultMaxFrame), buf: make([]byte, 64<<10)}
}

// hugeHeader is the header of a frame announcing size bytes in all, with no body.
func hugeHeader(size int, op wire.Op) []byte {
	h := make([]byte, wire.FrameHeaderSize)
	wire.PutFrameHeader(h, op, 0, 1, size-wire.FrameHeaderSize)
	return h
}

// TestPreAuthFramesAreSmall: before its handshake completes (before Hello, and after Hello while
// authentication is pending) a connection announcing a frame just under the 16 MiB maximum is
// refused from the header with CodeFrameTooLarge and closed, without the broker waiting for (and
// buffering) its body. Sixteen such connections at once, as in the report that pinned 351 MiB.
// Once authenticated, the same connection may send frames above the pre-auth limit.
func TestPreAuthFramesAreSmall(t *testing.T) {
	s, _ := startServer(t, func(o *Options) { o.Tokens = map[string]string{"tok": "alice"} })
	hello := mustAppendMsg(nil, wire.OpHello, 0, 1, &wire.Hello{Version: wire.ProtocolVersion, ClientID: "x"})
	body := make([]byte, 1<<20) // the start of the body; the rest never comes
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		c := dial(t, s)
		var msg []byte
		if i%2 == 1 {
			msg = append(msg, hello...) // handshaken, not authenticated
		}
		msg = append(append(msg, hugeHeader(wire.DefaultMaxFrame-1, wire.OpProduce)...), body...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = c.c.Write(msg)
		}()
		go func() {
			errs <- expectClosedWithErr(c, wire.CodeFrameTooLarge)
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()

	// After authenticating, a frame above the pre-auth limit is served.
	c := dial(t, s)
	c.hello()
	corr := c.send(wire.OpAuth, 0, &wire.Auth{Mechanism: "token", Payload: []byte("tok")})
	c.expectReply(corr, nil)
	bb := wire.NewBatchBuilder(256 << 10)
	bb.Append(nil, make([]byte, 200<<10), nil, 1)
	batch, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	corr = c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("big"), Batches: batch})
	c.expectReply(corr, nil)
}

// expectClosedWithErr reads until the broker closes c, and reports an error unless an error frame
// with code came first, or if the connection is still open after 10 s.
func expectClosedWithErr(c *rawConn, code wire.Code) error {
	saw := false
	deadline := time.Now().Add(10 * time.Second)
	for {
		if time.Now().After(deadline) {
			return fmt.Errorf("connection still open after 10 s, want it closed with %v", code)
		}
		f, err := c.next()
		if err != nil {
			if !saw {
				return fmt.Errorf("connection ended (%v) without an error frame with %v", err, code)
			}
			return nil
		}
		var eb wire.ErrorBody
		if f.Op == wire.OpError && eb.Decode(f.Body) == nil {
			if eb.Code != code || f.Corr != 0 {
				return fmt.Errorf("error %v corr %d (%s), want %v with id 0", eb.Code, f.Corr, eb.Message, code)
			}
			saw = true
		}
	}
}

// TestHandshakeTimeout: a connection that says Hello and pings but never authenticates is closed
// with CodeTimeout once HandshakeTimeout has passed (pings do not extend it); an authenticated one
// is not.
func TestHandshakeTimeout(t *testing.T) {
	s, _ := startServer(t, func(o *Options) {
		o.Tokens = map[string]string{"tok": "alice"}
		o.HandshakeTimeout = 300 * time.Millisecond
	})
	good := dial(t, s)
	good.hello()
	corr := good.send(wire.OpAuth, 0, &wire.Auth{Mechanism: "token", Payload: []byte("tok")})
	good.expectReply(corr, nil)

	idle := dial(t, s)
	idle.hello()
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // keep pinging, as the connections of the report did
		b := mustAppendMsg(nil, wire.OpPing, 0, 9, &wire.Ping{Nonce: 1})
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := idle.c.Write(b); err != nil {
					return
				}
			}
		}
	}()
	if err := expectClosedWithErr(idle, wire.CodeTimeout); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("unauthenticated connection closed after %v, handshake timeout 300ms", d)
	}
	corr = good.send(wire.OpPing, 0, &wire.Ping{Nonce: 2})
	good.expectReply(corr, nil)
}

// helloPing opens a connection from ip that says Hello and pings, never authenticating. It reports
// whether the broker served it (false: refused with CodeThrottled).
func helloPing(t *testing.T, s *Server, ip string) (*rawConn, bool) {
	t.Helper()
	c := dialFrom(t, s, ip)
	b := mustAppendMsg(nil, wire.OpHello, 0, 1, &wire.Hello{Version: wire.ProtocolVersion})
	b = mustAppendMsg(b, wire.OpPing, 0, 2, &wire.Ping{Nonce: 7})
	_, _ = c.c.Write(b) // a refused connection may be closed before the write
	f, err := c.next()
	if err != nil {
		t.Fatalf("from %s: %v before any frame", ip, err)
	}
	var eb wire.ErrorBody
	if f.Op == wire.OpError {
		if eb.Decode(f.Body) != nil || eb.Code != wire.CodeThrottled {
			t.Fatalf("from %s: error %v (%s), want throttled", ip, eb.Code, eb.Message)
		}
		return c, false
	}
	if f.Op != wire.OpHello {
		t.Fatalf("from %s: %v, want the hello reply", ip, f.Op)
	}
	if f = c.mustNext(); f.Op != wire.OpPing {
		t.Fatalf("from %s: %v, want the ping reply", ip, f.Op)
	}
	return c, true
}

// TestUnauthenticatedCannotCrowdOutClients: connections that say Hello and ping but never
// authenticate are held to MaxUnauthenticatedPerAddr per source address and MaxUnauthenticated in
// all, below MaxConnections; with every unauthenticated slot taken, a client holding a valid token
// still connects (the oldest unauthenticated connection makes room) and works.
func TestUnauthenticatedCannotCrowdOutClients(t *testing.T) {
	s, _ := startServer(t, func(o *Options) {
		o.Tokens = map[string]string{"tok": "alice"}
		o.MaxConnections = 40
		o.MaxUnauthenticated = 16
		o.MaxUnauthenticatedPerAddr = 8
	})
	served := 0
	for range 20 {
		if _, ok := helloPing(t, s, "127.0.0.2"); ok {
			served++
		}
	}
	if served != 8 {
		t.Fatalf("one address got %d unauthenticated connections served, limit 8", served)
	}
	// Four more addresses fill the total many times over: the oldest are evicted, the count holds.
	var conns []*rawConn
	for i := range 4 {
		for range 8 {
			c, ok := helloPing(t, s, fmt.Sprintf("127.0.0.%d", 3+i))
			if !ok {
				t.Fatalf("127.0.0.%d refused under its own limit", 3+i)
			}
			conns = append(conns, c)
			if n := s.Stats().Unauthenticated.Load(); n > 16 {
				t.Fatalf("%d unauthenticated connections, limit 16", n)
			}
		}
	}
	if err := expectClosedWithErr(conns[0], wire.CodeThrottled); err != nil {
		t.Fatalf("the oldest unauthenticated connection: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.Addr().String(), client.WithAuthToken("tok"), client.WithLogger(quiet))
	if err != nil {
		t.Fatalf("a client with a valid token was locked out: %v", err)
	}
	defer c.Close()
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic(ctx, client.TopicConfig{Name: "works", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
}

// TestSubscriptionFailureEndsOnlyThatSubscription: a subscription whose topic is deleted under it is
// ended with a SubEnded push naming it; the connection stays, and its other subscription keeps
// receiving.
func TestSubscriptionFailureEndsOnlyThatSubscription(t *testing.T) {
	s, e := startServer(t, nil)
	for _, name := range []string{"good", "bad"} {
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, s)
	c.hello()
	corr := c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("bad"), Batches: batchOf(t, 2, "a")})
	c.expectReply(corr, nil)
	corr = c.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 1, Topic: "good", Partition: 0, Start: wire.StartLatest, Credit: 1 << 20})
	c.expectReply(corr, nil)
	corr = c.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 2, Topic: "bad", Partition: 0, Start: wire.StartLatest, Credit: 1 << 20})
	c.expectReply(corr, nil)
	if err := e.DeleteTopic("bad"); err != nil {
		t.Fatal(err)
	}
	f := c.mustNext()
	var se wire.SubEnded
	if f.Op != wire.OpSubEnded || f.Corr != 0 || se.Decode(f.Body) != nil || se.SubID != 2 {
		t.Fatalf("got %v corr %d %+v, want sub-ended for subscription 2", f.Op, f.Corr, se)
	}
	if se.Code != wire.CodeUnknownTopic || !strings.Contains(se.Message, "bad") {
		t.Fatalf("sub-ended %+v", se)
	}
	// The connection and subscription 1 carry on.
	corr = c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("good"), Batches: batchOf(t, 1, "g")})
	c.expectReply(corr, nil)
	f = c.mustNext()
	var d wire.Deliver
	if f.Op != wire.OpDeliver || d.Decode(f.Body) != nil || d.SubID != 1 {
		t.Fatalf("got %v, want a delivery for subscription 1", f.Op)
	}
	corr = c.send(wire.OpUnsubscribe, 0, &wire.SubID{SubID: 2})
	if f = c.mustNext(); f.Op != wire.OpError || f.Corr != corr {
		t.Fatalf("unsubscribe of the ended subscription: %v corr %d", f.Op, f.Corr)
	}
}

// TestDeliveriesFitTheClientsMaxFrame: a consumer that announced a 65,536-byte maximum frame gets
// no larger frame: deliveries of small batches are cut to fit, and a batch larger than its maximum
// ends that subscription with CodeBatchTooLarge, on that subscription, while the connection stays.
func TestDeliveriesFitTheClientsMaxFrame(t *testing.T) {
	s, e := startServer(t, nil)
	for _, name := range []string{"fit", "other"} {
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	p := dial(t, s)
	p.hello()
	produce := func(topic string, b []byte) {
		t.Helper()
		corr := p.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte(topic), Batches: b})
		p.expectReply(corr, nil)
	}
	small := 0
	for range 40 { // 160 KiB of 4 KiB records: more than one frame's worth
		bb := wire.NewBatchBuilder(8 << 10)
		bb.Append(nil, make([]byte, 4<<10), nil, 1)
		b, err := bb.Build()
		if err != nil {
			t.Fatal(err)
		}
		produce("fit", b)
		small++
	}
	bb := wire.NewBatchBuilder(512 << 10)
	bb.Append(nil, make([]byte, 400<<10), nil, 1)
	big, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	produce("fit", big)

	const maxFrame = 65536
	c := dial(t, s)
	c.dec = wire.NewDecoder(maxFrame) // a larger frame fails the read
	corr := c.send(wire.OpHello, 0, &wire.Hello{Version: wire.ProtocolVersion, MaxFrame: maxFrame})
	c.expectReply(corr, nil)
	corr = c.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 5, Topic: "other", Partition: 0, Start: wire.StartLatest, Credit: 1 << 20})
	c.expectReply(corr, nil)
	corr = c.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 6, Topic: "fit", Partition: 0, Start: wire.StartEarliest, Credit: 1 << 30})
	c.expectReply(corr, nil)
	var it wire.RecordIter
	var r wire.Record
	records := 0
	for {
		f, err := c.next()
		if err != nil {
			t.Fatalf("after %d records: %v", records, err)
		}
		if f.Op == wire.OpSubEnded {
			var se wire.SubEnded
			if se.Decode(f.Body) != nil || se.SubID != 6 || se.Code != wire.CodeBatchTooLarge {
				t.Fatalf("sub-ended %+v", se)
			}
			break
		}
		var d wire.Deliver
		if f.Op != wire.OpDeliver || d.Decode(f.Body) != nil || d.SubID != 6 {
			t.Fatalf("unexpected %v", f.Op)
		}
		for rest := d.Batches; len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				t.Fatal(err)
			}
			rest = rest[h.Size():]
			for it.Next(&r) {
				records++
			}
		}
	}
	if records != small {
		t.Fatalf("%d records before the oversized batch, want %d", records, small)
	}
	// The connection carries on: its other subscription receives.
	produce("other", batchOf(t, 1, "o"))
	f := c.mustNext()
	var d wire.Deliver
	if f.Op != wire.OpDeliver || d.Decode(f.Body) != nil || d.SubID != 5 {
		t.Fatalf("got %v, want a delivery for subscription 5", f.Op)
	}
}

// TestRepliesFitTheClientsMaxFrame: a response larger than the client's announced maximum frame
// (here the list of 300 groups with long names, about 75 KB, to a client that accepts 65,536) is
// not sent: the request is answered with CodeFrameTooLarge and the connection stays.
func TestRepliesFitTheClientsMaxFrame(t *testing.T) {
	s, e := startServer(t, nil)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 300)
	for i := range 300 {
		e.CommitOffset(fmt.Sprintf("%03d-%s", i, strings.Repeat("g", 240)), "t", 0, 0, func(err error) { done <- err })
	}
	for range 300 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	const maxFrame = 65536
	c := dial(t, s)
	c.dec = wire.NewDecoder(maxFrame) // a larger frame fails the read
	corr := c.send(wire.OpHello, 0, &wire.Hello{Version: wire.ProtocolVersion, MaxFrame: maxFrame})
	c.expectReply(corr, nil)
	corr = c.send(wire.OpListGroups, 0, nil)
	f, err := c.next()
	if err != nil {
		t.Fatalf("list-groups: %v", err)
	}
	var eb wire.ErrorBody
	if f.Op != wire.OpError || f.Corr != corr || eb.Decode(f.Body) != nil || eb.Code != wire.CodeFrameTooLarge {
		t.Fatalf("list-groups answered %v corr %d (%v), want frame too large for %d", f.Op, f.Corr, eb.Code, corr)
	}
	corr = c.send(wire.OpPing, 0, &wire.Ping{Nonce: 3})
	c.expectReply(corr, nil)
	// A client with the default maximum gets the list.
	d := dial(t, s)
	d.hello()
	corr = d.send(wire.OpListGroups, 0, nil)
	var gl wire.GroupList
	d.expectReply(corr, &gl)
	if len(gl.Groups) != 300 {
		t.Fatalf("%d groups", len(gl.Groups))
	}
}
