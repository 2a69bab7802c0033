package client

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// countingProxy forwards loopback connections to addr and counts the bytes clients send. It stops
// with the test.
func countingProxy(t *testing.T, addr string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				return
			}
			mu.Lock()
			conns = append(conns, c, b)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(countingWriter{b, &sent}, c)
				b.Close()
			}()
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, b)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String(), &sent
}

// countingWriter forwards to w and counts the bytes, so the count is current while the connection
// is open.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (cw countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n.Add(int64(n))
	return n, err
}

// TestSubscribeFilterTooLong: a CEL filter longer than a str16 (70,000 bytes) fails the subscribe
// with wire.ErrFieldTooLong before anything is sent, and the connection stays usable.
func TestSubscribeFilterTooLong(t *testing.T) {
	b := startBroker(t, nil)
	addr, sent := countingProxy(t, b.addr)
	c := dialT(t, addr)
	createTopic(t, c, "cel", 1)
	ctx := testCtx(t)
	// A round trip first, so every byte sent so far has crossed the proxy.
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	before := sent.Load()
	_, err := c.Subscribe(ctx, "cel", WithFilterCEL(strings.Repeat("a", 70000)))
	if !errors.Is(err, wire.ErrFieldTooLong) {
		t.Fatalf("subscribe with a 70,000-byte filter: %v, want ErrFieldTooLong", err)
	}
	// The ping's answer means every byte written before it has crossed the proxy: only pings
	// (18 bytes each) may have, not a subscribe carrying the filter cut to 65,535 bytes.
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("ping after the refused subscribe: %v", err)
	}
	if d := sent.Load() - before; d > 1000 {
		t.Errorf("%d bytes sent by the refused subscribe and a ping", d)
	}
	cons, err := c.Subscribe(ctx, "cel", WithFilterCEL(`key == b"k"`))
	if err != nil {
		t.Fatalf("a normal subscribe after the refused one: %v", err)
	}
	_ = cons.Close(ctx)
}
