package client

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// quiet discards logs; set SLUICE_TEST_LOG=1 to see them.
var quiet = servertest.Logger()

// broker is a real engine and server in-process, restartable on the same address and data.
type broker struct {
	t     testing.TB
	dir   string
	addr  string
	eng   *engine.Engine
	srv   *server.Server
	sopts func(*server.Options)
	eopts func(*engine.Options) // when set, adjusts the engine's options at each start
}

func startBroker(t testing.TB, sopts func(*server.Options)) *broker {
	t.Helper()
	return startBrokerEngine(t, nil, sopts)
}

// startBrokerEngine is startBroker with the engine's options adjusted by eopts (nil for none).
func startBrokerEngine(t testing.TB, eopts func(*engine.Options), sopts func(*server.Options)) *broker {
	t.Helper()
	b := &broker{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", sopts: sopts, eopts: eopts}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) start() {
	b.t.Helper()
	eo := engine.Options{DataDir: b.dir, MemoryDir: filepath.Join(b.dir, "mem"),
		SegmentBytes: 8 << 20, Logger: quiet}
	if b.eopts != nil {
		b.eopts(&eo)
	}
	eng, err := engine.Open(eo)
	if err != nil {
		b.t.Fatal(err)
	}
	o := server.Options{Addr: b.addr, Engine: eng, Loops: 2, Logger: quiet}
	if b.sopts != nil {
		b.sopts(&o)
	}
	var srv *server.Server
	for i := 0; ; i++ { // a restart may find the port still held for a moment
		srv, err = server.Start(o)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		eng.Close()
		b.t.Fatal(err)
	}
	b.eng, b.srv = eng, srv
	b.addr = srv.Addr().String()
}

func (b *broker) stop() {
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
	if b.eng != nil {
		_ = b.eng.Close()
		b.eng = nil
	}
}

func (b *broker) restart() {
	b.t.Helper()
	b.stop()
	b.start()
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialT(t testing.TB, addr string, opts ...Option) *Client {
	t.Helper()
	// A short dial timeout: while the broker restarts, a connection may be accepted and never
	// served (reported to the server's author), and the attempt then lasts the whole timeout.
	opts = append([]Option{WithLogger(quiet), WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond),
		WithDialTimeout(time.Second)}, opts...)
	c, err := Dial(testCtx(t), addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func createTopic(t testing.TB, c *Client, name string, partitions uint32) {
	t.Helper()
	if err := c.CreateTopic(testCtx(t), TopicConfig{Name: name, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
}

func mustListen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

var _ = wire.ProtocolVersion
