package client

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// replyEater forwards connections to the broker; on the first one it forwards requests but swallows
// every reply and cuts the connection after a moment, so the broker stores batches whose answers never
// arrive and the producer resends them on its next connection.
type replyEater struct {
	ln    net.Listener
	conns int
	mu    sync.Mutex
}

func newReplyEater(t *testing.T, target string) *replyEater {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &replyEater{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns++
			first := r.conns == 1
			r.mu.Unlock()
			go func() { io.Copy(b, c); b.Close() }()
			if !first {
				go func() { io.Copy(c, b); c.Close() }()
				continue
			}
			go func() {
				// Pass the first two replies (hello, the producer's describe), then eat the rest and
				// cut the line.
				dec := wire.NewDecoder(wire.DefaultMaxFrame)
				buf := make([]byte, 64<<10)
				passed := 0
				for passed < 2 {
					n, err := b.Read(buf)
					if err != nil {
						c.Close()
						return
					}
					var out []byte
					_ = dec.Feed(buf[:n], func(f wire.Frame) error {
						if passed < 2 {
							var hdr [wire.FrameHeaderSize]byte
							wire.PutFrameHeader(hdr[:], f.Op, f.Flags, f.Corr, len(f.Body))
							out = append(append(out, hdr[:]...), f.Body...)
							passed++
						}
						return nil
					})
					c.Write(out)
				}
				go io.Copy(io.Discard, b)
				time.Sleep(300 * time.Millisecond)
				c.Close()
				b.Close()
			}()
		}
	}()
	return r
}

func produceThroughEater(t *testing.T, idempotent bool) int64 {
	b := startBroker(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := dialT(t, b.addr)
	if err := admin.CreateTopic(ctx, TopicConfig{Name: "once", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DescribeTopic(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	eater := newReplyEater(t, b.addr)
	c, err := Dial(ctx, eater.ln.Addr().String(), WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []ProducerOption{WithDurability(wire.DurabilityWritten), WithLinger(time.Millisecond), WithRetries(5)}
	if idempotent {
		opts = append(opts, WithIdempotence())
	}
	p, err := c.Producer("once", opts...)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := 0; i < n; i++ {
		if err := p.Produce(ctx, Record{Value: []byte("exactly once")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := admin.DescribeTopic(ctx, "once")
	if err != nil {
		t.Fatal(err)
	}
	return info.Partitions[0].EndOffset
}

// TestIdempotentProducerSurvivesLostReplies: with idempotence, batches resent after a lost connection
// are stored once; without it, the same run stores duplicates (which is what makes this a test).
func TestIdempotentProducerSurvivesLostReplies(t *testing.T) {
	if got := produceThroughEater(t, true); got != 200 {
		t.Fatalf("idempotent producer stored %d records, want exactly 200", got)
	}
	if got := produceThroughEater(t, false); got <= 200 {
		t.Fatalf("plain producer stored %d records through lost replies; the proxy did not force a resend", got)
	}
}
