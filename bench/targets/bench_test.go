package targets

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/bench"
)

// benchSend pushes b.N 100-byte messages through target, flushing every 32 (a burst), and waits until
// the consumer has them all: the per-message cost end to end, with the target's allocations counted.
func benchSend(b *testing.B, target bench.Target, durability string) {
	cfg := bench.Config{PayloadSize: 100, Durability: durability}.WithDefaults()
	if err := target.Open(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	if err := target.Consume(0, func([]byte) { got.Add(1) }); err != nil {
		b.Fatal(err)
	}
	p := target.Producer(0)
	payload := make([]byte, cfg.PayloadSize)
	send := func(n int) {
		for i := range n {
			if err := p.Send(nil, payload); err != nil {
				b.Fatal(err)
			}
			if i%32 == 31 {
				if err := p.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := p.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	wait := func(n int64) {
		for got.Load() < n {
			time.Sleep(50 * time.Microsecond)
		}
	}
	send(10000) // warm up: builders, pools and buffers reach their steady size
	wait(10000)
	b.SetBytes(int64(cfg.PayloadSize))
	b.ReportAllocs()
	b.ResetTimer()
	send(b.N)
	wait(10000 + int64(b.N))
	b.StopTimer()
	if err := target.Close(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkEmbeddedSend(b *testing.B) {
	for _, d := range []string{bench.DurabilityWritten, bench.DurabilityFsync} {
		b.Run(d, func(b *testing.B) { benchSend(b, NewEmbedded(Options{Dir: b.TempDir(), Logger: quiet}), d) })
	}
}

func BenchmarkTCPSend(b *testing.B) {
	for _, d := range []string{bench.DurabilityNone, bench.DurabilityWritten, bench.DurabilityFsync} {
		b.Run(d, func(b *testing.B) { benchSend(b, NewTCP(Options{Dir: b.TempDir(), Logger: quiet}), d) })
	}
}
