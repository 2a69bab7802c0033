package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// TestTLSListenerServesTheProtocol: the same broker serves plain TCP and TLS; records produced over
// one come back over the other.
func TestTLSListenerServesTheProtocol(t *testing.T) {
	cert, pool := servertest.SelfSigned(t)
	s, _ := servertest.Start(t, func(o *engine.Options) { o.AutoCreateTopics = true }, func(o *server.Options) {
		o.TLSAddr = "127.0.0.1:0"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secure, err := client.Dial(ctx, s.TLSAddr().String(), client.WithTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer secure.Close()
	plain, err := client.Dial(ctx, s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := secure.CreateTopic(ctx, client.TopicConfig{Name: "tls", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	p, err := secure.Producer("tls", client.WithDurability(wire.DurabilityFsync))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := 0; i < n; i++ {
		if err := p.Produce(ctx, client.Record{Key: []byte{byte(i)}, Value: []byte("secret")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{plain, secure} {
		cons, err := c.Subscribe(ctx, "tls", client.WithStartEarliest())
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			m, err := cons.Next(ctx)
			if err != nil || string(m.Value) != "secret" {
				t.Fatalf("record %d: %v %q", i, err, m.Value)
			}
		}
		cons.Close(ctx)
	}
	// A plaintext client on the TLS port gets nothing it can use and does not disturb the broker.
	raw, err := net.Dial("tcp", s.TLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	hello, start := wire.BeginFrame(nil, wire.OpHello, 0, 1)
	hello = wire.EndFrame((&wire.Hello{Version: wire.ProtocolVersion}).Append(hello), start)
	raw.Write(hello)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if n, _ := raw.Read(buf); n >= wire.FrameHeaderSize && wire.Op(buf[4]) == wire.OpHello {
		t.Fatal("the TLS port answered a plaintext hello")
	}
	raw.Close()
	if _, err := secure.Ping(ctx); err != nil {
		t.Fatalf("TLS client after the plaintext probe: %v", err)
	}
}

// closedWith reads nc until the broker closes it (at most 10 s) and returns the code of the last
// error frame it sent, CodeOK if none.
func closedWith(t *testing.T, nc net.Conn) wire.Code {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	dec := wire.NewDecoder(wire.DefaultMaxFrame)
	buf := make([]byte, 4096)
	code := wire.CodeOK
	for {
		n, err := nc.Read(buf)
		if ferr := dec.Feed(buf[:n], func(f wire.Frame) error {
			var eb wire.ErrorBody
			if f.Op == wire.OpError && f.Corr == 0 && eb.Decode(f.Body) == nil {
				code = eb.Code
			}
			return nil
		}); ferr != nil {
			t.Fatal(ferr)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after 10 s (last error code %v)", code)
			}
			return code
		}
	}
}

// TestTLSPreAuthLimits: the TLS listener holds connections that have not authenticated to the same
// bounds as plain TCP: a frame header above the pre-auth limit is refused at once, a handshake that
// does not complete in time is closed (pings or not, and a peer that never even finishes the TLS
// handshake), and a client with a valid token is served.
func TestTLSPreAuthLimits(t *testing.T) {
	cert, pool := servertest.SelfSigned(t)
	s, _ := servertest.Start(t, func(o *engine.Options) { o.AutoCreateTopics = true }, func(o *server.Options) {
		o.TLSAddr = "127.0.0.1:0"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
		o.Tokens = map[string]string{"tok": "alice"}
		o.HandshakeTimeout = 500 * time.Millisecond
	})
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	hello, start := wire.BeginFrame(nil, wire.OpHello, 0, 1)
	hello = wire.EndFrame((&wire.Hello{Version: wire.ProtocolVersion}).Append(hello), start)

	// A header announcing a frame just under 16 MiB, before and after Hello: refused from the header.
	for _, pre := range [][]byte{nil, hello} {
		nc, err := tls.Dial("tcp", s.TLSAddr().String(), clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		hdr := make([]byte, wire.FrameHeaderSize)
		wire.PutFrameHeader(hdr, wire.OpProduce, 0, 2, wire.DefaultMaxFrame-1-wire.FrameHeaderSize)
		msg := append(append(append([]byte(nil), pre...), hdr...), make([]byte, 256<<10)...)
		go func() { _, _ = nc.Write(msg) }()
		if code := closedWith(t, nc); code != wire.CodeFrameTooLarge {
			t.Fatalf("a 16 MiB header over TLS (hello first: %v) closed with %v, want frame too large", pre != nil, code)
		}
		nc.Close()
	}

	// Hello and pings, no Auth: closed with CodeTimeout.
	nc, err := tls.Dial("tcp", s.TLSAddr().String(), clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ping, start := wire.BeginFrame(nil, wire.OpPing, 0, 2)
	ping = wire.EndFrame((&wire.Ping{Nonce: 1}).Append(ping), start)
	if _, err := nc.Write(append(append([]byte(nil), hello...), ping...)); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if code := closedWith(t, nc); code != wire.CodeTimeout {
		t.Fatalf("an unauthenticated TLS connection closed with %v, want timeout", code)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("closed after %v, handshake timeout 500ms", d)
	}

	// A peer that opens TCP and never starts TLS is dropped too.
	raw, err := net.Dial("tcp", s.TLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatal("the broker wrote to a peer that never started TLS")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a peer that never started TLS was held open for 10 s")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.TLSAddr().String(), client.WithTLS(clientTLS), client.WithAuthToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(700 * time.Millisecond) // past the handshake timeout: an authenticated client stays
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
