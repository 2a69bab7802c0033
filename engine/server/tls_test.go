package server_test

import (
	"context"
	"crypto/tls"
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
