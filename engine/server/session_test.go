package server

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// closingConn is a transport whose writes fail the way gnet's do on a reset connection: the failing
// Write runs OnClose (here: the session's close) before it returns.
type closingConn struct {
	in     []byte
	onFail func()
	writes int
}

func (c *closingConn) Peek(n int) ([]byte, error) {
	if n > len(c.in) {
		return nil, errors.New("short")
	}
	return c.in[:n], nil
}
func (c *closingConn) Discard(n int) (int, error) { c.in = c.in[n:]; return n, nil }
func (c *closingConn) InboundBuffered() int       { return len(c.in) }
func (c *closingConn) OutboundBuffered() int      { return 0 }
func (c *closingConn) Write(b []byte) (int, error) {
	c.writes++
	c.onFail()
	return 0, errors.New("write: connection reset by peer")
}
func (c *closingConn) Writev(bs [][]byte) (int, error)                  { return c.Write(nil) }
func (c *closingConn) AsyncWrite(b []byte, cb gnet.AsyncCallback) error { return nil }
func (c *closingConn) Wake(cb gnet.AsyncCallback) error                 { return nil }
func (c *closingConn) Close() error                                     { return nil }
func (c *closingConn) RemoteAddr() net.Addr                             { return &net.TCPAddr{} }

// TestWriteThatClosesEndsOnTraffic: when a write fails, gnet closes the connection inside the write
// (OnClose runs, closing the session's inbox) and returns to onTraffic. onTraffic must then return;
// it used to poll the closed inbox for ever (Arm is false on a closed ring), spinning the event loop
// at full CPU so that no other connection of that loop was served (issue 11, item 12: consumers
// dropping their connections when their topic was deleted).
func TestWriteThatClosesEndsOnTraffic(t *testing.T) {
	srv, _ := startServer(t, nil)
	hello, start := wire.BeginFrame(nil, wire.OpHello, 0, 1)
	hello = wire.EndFrame((&wire.Hello{Version: wire.ProtocolVersion, MaxFrame: wire.DefaultMaxFrame}).Append(hello), start)
	ping, start := wire.BeginFrame(nil, wire.OpPing, 0, 2)
	ping = wire.EndFrame((&wire.Ping{Nonce: 7}).Append(ping), start)
	c := &closingConn{in: append(hello, ping...)}
	ss, err := newSession(srv, c)
	if err != nil {
		t.Fatal(err)
	}
	c.onFail = ss.close // what gnet's OnClose does
	done := make(chan gnet.Action, 1)
	go func() { done <- ss.onTraffic() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("onTraffic did not return after its connection closed during a write")
	}
	if c.writes != 1 {
		t.Errorf("%d writes on the connection, want 1 (nothing after it closed)", c.writes)
	}
}

// TestAutoCreateRunsOffTheLoop: a produce that must auto-create its topic (mkdir, fsync,
// a segment's fallocate) does not stall the loop: while the creation is held up, another connection
// of the same (only) loop gets its pings answered; once it completes, the parked frames are served
// in order, and a frame behind them on the same connection is answered after them.
func TestAutoCreateRunsOffTheLoop(t *testing.T) {
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	orig := autoCreate
	autoCreate = func(e *engine.Engine, name string) error {
		started.Done()
		<-release
		return orig(e, name)
	}
	defer func() { autoCreate = orig }()
	s, e := startServer(t, func(o *Options) { o.Loops = 1 })

	slow := dial(t, s)
	slow.hello()
	pcorr := slow.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Partition: 0, Topic: []byte("fresh"), Batches: batchOf(t, 2, "a")})
	pingCorr := slow.send(wire.OpPing, 0, &wire.Ping{Nonce: 5})
	sub := dial(t, s)
	sub.hello()
	scorr := sub.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Partition: -1, Topic: []byte("other"), Batches: batchOf(t, 1, "b")})
	started.Wait() // both creations are held up

	other := dial(t, s)
	other.hello()
	for i := 0; i < 3; i++ {
		corr := other.send(wire.OpPing, 0, &wire.Ping{Nonce: uint64(i)})
		_ = other.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		other.expectReply(corr, new(wire.Ping))
	}
	if e.TopicByName("fresh") != nil {
		t.Fatal("the topic exists before its creation was released")
	}
	close(release)
	var pr wire.ProduceReply
	slow.expectReply(pcorr, &pr)
	if pr.BaseOffset != 0 || pr.LastOffset != 1 {
		t.Fatalf("produce reply %+v", pr)
	}
	slow.expectReply(pingCorr, new(wire.Ping)) // after the produce it followed
	var or wire.ProduceReply
	sub.expectReply(scorr, &or)
	if e.TopicByName("other") == nil || or.BaseOffset != 0 {
		t.Fatalf("second produce reply %+v", or)
	}
}
