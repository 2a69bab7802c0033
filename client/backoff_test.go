package client

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// TestShortLivedConnectionsBackOff: a broker that completes every handshake and then at once closes
// the connection with a fatal error is redialled with the growing backoff, not in a tight loop (a
// successful dial does not reset the backoff until the connection has stayed up a while).
func TestShortLivedConnectionsBackOff(t *testing.T) {
	ln := mustListen(t)
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
				f, err := readFrame(nc, wire.DefaultMaxFrame)
				if err != nil || f.Op != wire.OpHello {
					return
				}
				out, start := wire.BeginFrame(nil, wire.OpHello, wire.FlagResponse, f.Corr)
				out = wire.EndFrame((&wire.HelloReply{Version: wire.ProtocolVersion, ServerID: "flaky"}).Append(out), start)
				out = wire.AppendError(out, 0, wire.CodeInternal, "going away")
				_, _ = nc.Write(out)
			}()
		}
	}()
	c, err := Dial(testCtx(t), ln.Addr().String(), WithLogger(quiet), WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the measurement window
	c.Close()
	// 10, 20, 40, 80, 160, then 200 ms (±25%) between dials: about 8 in a second.
	t.Logf("%d connections in 1 s", accepted.Load())
	if n := accepted.Load(); n > 20 {
		t.Fatalf("%d connections in 1 s to a broker that drops each at once", n)
	}
}

// TestRepeatedSubscriptionEndingsBackOff: a broker that ends a subscription with the same retriable
// error every time it is opened (here CodeStorageFailed, pushed right after the SubscribeReply) gets a
// bounded number of resubscribes, spaced by a growing back-off, on the one connection; then Next
// returns the error. (The report: an id-0 error per failure made the client redial 3,500-5,400 times
// in 3 s.)
func TestRepeatedSubscriptionEndingsBackOff(t *testing.T) {
	var mu sync.Mutex
	var subscribes []time.Time
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {
		switch f.Op {
		case wire.OpDescribe:
			fc.describe(f, 1)
		case wire.OpSubscribe:
			var spec wire.Subscribe
			_ = spec.Decode(f.Body)
			mu.Lock()
			subscribes = append(subscribes, time.Now())
			mu.Unlock()
			fc.reply(f, &wire.SubscribeReply{SubID: spec.SubID, Starts: []wire.PartitionOffset{{Partition: 0, Offset: 0}}})
			fc.write(wire.OpSubEnded, 0, 0, &wire.SubEnded{SubID: spec.SubID, Code: wire.CodeStorageFailed, Message: "segment read failed"})
		case wire.OpPing:
			var p wire.Ping
			_ = p.Decode(f.Body)
			fc.reply(f, &p)
		}
	})
	c := dialT(t, fb.addr(), WithReconnectBackoff(20*time.Millisecond, 400*time.Millisecond))
	ctx := testCtx(t)
	cons, err := c.Subscribe(ctx, "t", WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	_, err = cons.Next(ctx)
	if !errors.Is(err, wire.CodeStorageFailed) {
		t.Fatalf("Next: %v, want the broker's CodeStorageFailed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := len(subscribes); n < 2 || n > maxSubRestarts+1 {
		t.Fatalf("%d subscribes, want 2..%d", n, maxSubRestarts+1)
	}
	for i := 2; i < len(subscribes); i++ {
		if gap, prev := subscribes[i].Sub(subscribes[i-1]), subscribes[i-1].Sub(subscribes[i-2]); gap < prev {
			t.Fatalf("resubscribe %d came %v after the last, sooner than the %v before it", i, gap, prev)
		}
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if n := len(fb.conns); n != 1 {
		t.Fatalf("%d connections: the client redialled while one subscription failed", n)
	}
}
