package client

import (
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
