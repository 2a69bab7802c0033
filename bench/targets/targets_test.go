package targets

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/bench"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
)

var quiet = servertest.Logger()

// startBroker serves a fresh engine on loopback for the addr target.
func startBroker(t *testing.T) string {
	t.Helper()
	srv, _ := servertest.Start(t, nil, nil)
	return srv.Addr().String()
}

// shortRun is a small open-loop run: every message must arrive exactly once.
func shortRun(durability string) bench.Config {
	return bench.Config{
		Rate: 2000, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond,
		PayloadSize: 100, Durability: durability, DrainTimeout: 20 * time.Second,
	}
}

func checkCounts(t *testing.T, res *bench.Result) {
	t.Helper()
	if res.Sent == 0 || res.Sent != res.Scheduled {
		t.Errorf("sent %d of %d scheduled", res.Sent, res.Scheduled)
	}
	if res.Received != res.Sent || res.Lost != 0 || res.Unsent != 0 {
		t.Errorf("sent %d, received %d, lost %d, unsent %d", res.Sent, res.Received, res.Lost, res.Unsent)
	}
	if res.Measured == 0 {
		t.Errorf("nothing measured")
	}
}

func TestTargetsCarryEveryRecord(t *testing.T) {
	addr := startBroker(t)
	opts := Options{Dir: t.TempDir(), Addr: addr, Logger: quiet}
	reg := bench.NewRegistry()
	Register(reg, opts)
	for _, name := range []string{EmbeddedName, TCPName, AddrName} {
		for _, d := range []string{bench.DurabilityNone, bench.DurabilityWritten, bench.DurabilityFsync} {
			t.Run(name+"/"+d, func(t *testing.T) {
				tg, err := reg.New(name)
				if err != nil {
					t.Fatal(err)
				}
				res, err := bench.Run(context.Background(), tg, shortRun(d))
				if err != nil {
					t.Fatal(err)
				}
				checkCounts(t, res)
			})
		}
	}
}

// Several producers and partitions, keyed messages, linger, one consumer per partition, closed loop.
func TestTargetsShapes(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Logger: quiet}
	shapes := []struct {
		name string
		cfg  func(*bench.Config)
	}{
		{"keyed-3p-2prod-1cons", func(c *bench.Config) {
			c.Partitions, c.Producers, c.KeyDist, c.KeyCount = 3, 2, bench.KeysUniform, 64
		}},
		{"2p-2cons-fsync", func(c *bench.Config) {
			c.Partitions, c.Consumers, c.Producers, c.Durability = 2, 2, 2, bench.DurabilityFsync
		}},
		{"3cons-2p", func(c *bench.Config) { c.Partitions, c.Consumers = 2, 3 }},
		{"linger-small-batches", func(c *bench.Config) {
			c.Linger, c.BatchBytes, c.Durability = 2*time.Millisecond, 512, bench.DurabilityWritten
		}},
		{"closed-loop", func(c *bench.Config) {
			c.Mode, c.Rate, c.Duration, c.BatchBytes = bench.ClosedLoop, 0, 200*time.Millisecond, 16<<10
		}},
	}
	for _, tg := range []func() bench.Target{
		func() bench.Target { return NewEmbedded(opts) },
		func() bench.Target { return NewTCP(opts) },
	} {
		for _, s := range shapes {
			target := tg()
			t.Run(target.Name()+"/"+s.name, func(t *testing.T) {
				cfg := shortRun(bench.DurabilityWritten)
				s.cfg(&cfg)
				res, err := bench.Run(context.Background(), target, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Mode == bench.ClosedLoop {
					res.Scheduled = res.Sent // closed loop schedules what it sends
				}
				checkCounts(t, res)
			})
		}
	}
}

func TestUnsupportedSplit(t *testing.T) {
	for _, target := range []bench.Target{NewEmbedded(Options{Dir: t.TempDir()}), NewTCP(Options{Dir: t.TempDir()})} {
		cfg := bench.Config{Partitions: 4, Consumers: 2}.WithDefaults()
		err := target.Open(context.Background(), cfg)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: open with 2 consumers over 4 partitions: %v, want ErrConfig", target.Name(), err)
		}
		_ = target.Close()
	}
	if err := NewAddr(Options{}).Open(context.Background(), bench.Config{}.WithDefaults()); !errors.Is(err, ErrConfig) {
		t.Errorf("addr target without an address: %v, want ErrConfig", err)
	}
}

// The addr target removes the topic it made.
func TestAddrDeletesItsTopic(t *testing.T) {
	addr := startBroker(t)
	tg := NewAddr(Options{Addr: addr, Logger: quiet})
	if _, err := bench.Run(context.Background(), tg, shortRun(bench.DurabilityWritten)); err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(context.Background(), addr, client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	topics, err := c.ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 0 {
		t.Errorf("topics left behind: %v", topics)
	}
}

func TestDurableGate(t *testing.T) {
	g := newDurableGate(2)
	if !g.wait(0, -1) {
		t.Fatal("wait below the watermark blocked or failed")
	}
	var wg sync.WaitGroup
	got := make(chan int64, 100)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for off := int64(0); off < 100; off++ {
			if !g.wait(1, off) {
				t.Error("gate closed early")
				return
			}
			got <- off
		}
	}()
	for next := int64(1); next <= 100; next++ {
		g.advance(1, next)
		g.advance(1, next-1) // never lowers
	}
	wg.Wait()
	if len(got) != 100 {
		t.Fatalf("released %d offsets, want 100", len(got))
	}
	done := make(chan bool)
	go func() { done <- g.wait(0, 5) }()
	g.close()
	if <-done {
		t.Fatal("wait returned true after close")
	}
}

func ExampleRegister() {
	reg := bench.NewRegistry()
	Register(reg, Options{})
	fmt.Println(reg.Names())
	// Output: [addr embedded floor relay spsc tcp]
}

// TestAddrTargetAuthenticates: the addr target presents Options.AuthToken (sluice bench --token) to a
// broker that requires one; without it the run fails at its first connection.
func TestAddrTargetAuthenticates(t *testing.T) {
	srv, _ := servertest.Start(t, nil, func(o *server.Options) { o.Tokens = map[string]string{"s3cret": "bench"} })
	addr := srv.Addr().String()
	if _, err := bench.Run(context.Background(), NewAddr(Options{Addr: addr, Logger: quiet, Timeout: 5 * time.Second}), shortRun(bench.DurabilityWritten)); err == nil {
		t.Fatal("a run without the token succeeded against a broker that requires one")
	}
	res, err := bench.Run(context.Background(), NewAddr(Options{Addr: addr, Logger: quiet, AuthToken: "s3cret", Timeout: 5 * time.Second}), shortRun(bench.DurabilityWritten))
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, res)
}

// TestDefaultBatchBytes: runs that drive the Go client (and the relay beside them) default to the
// client's own batch cap, the embedded target to bench's, each raised to hold a larger payload; the
// suite's scenarios, its throughput ceiling included, use them.
func TestDefaultBatchBytes(t *testing.T) {
	clientCap := client.DefaultProducerOptions().MaxBatchBytes
	benchCap := bench.Config{}.WithDefaults().BatchBytes
	if clientCap == benchCap {
		t.Fatalf("client and bench defaults are both %d: the test cannot tell them apart", clientCap)
	}
	for name, want := range map[string]int{
		TCPName: clientCap, AddrName: clientCap, bench.RelayName: clientCap,
		EmbeddedName: benchCap, bench.FloorName: benchCap, bench.SPSCName: benchCap,
	} {
		if got := DefaultBatchBytes(name, 100); got != want {
			t.Errorf("DefaultBatchBytes(%q, 100) = %d, want %d", name, got, want)
		}
		if big := want + 1; DefaultBatchBytes(name, big) != big {
			t.Errorf("DefaultBatchBytes(%q, %d) = %d: a batch would not hold one payload", name, big, DefaultBatchBytes(name, big))
		}
	}
	for _, s := range Suite(TCPName, EmbeddedName) {
		if want := DefaultBatchBytes(s.Config.Target, s.Config.PayloadSize); s.Config.BatchBytes != want {
			t.Errorf("suite scenario %s: batch bytes %d, want %d", s.Name, s.Config.BatchBytes, want)
		}
	}
}
