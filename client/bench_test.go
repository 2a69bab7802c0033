package client

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// BenchmarkProducer measures the asynchronous produce path against an in-process broker: records/s
// and allocations per record (0 in steady state: batches, builders and futures are recycled).
//
//	go test -run '^$' -bench BenchmarkProducer -benchmem ./client/
func BenchmarkProducer(b *testing.B) {
	for _, size := range []int{100, 1000} {
		for _, mode := range []string{"callback", "future"} {
			b.Run(fmt.Sprintf("%s/value=%d", mode, size), func(b *testing.B) {
				benchProducer(b, size, mode == "future")
			})
		}
	}
}

func benchProducer(b *testing.B, size int, futures bool) {
	br := startBroker(b, nil)
	c := dialT(b, br.addr)
	createTopic(b, c, "bench", 4)
	p, err := c.Producer("bench", WithDurability(wire.DurabilityWritten))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rec := Record{Key: nil, Value: make([]byte, size)}
	var failed atomic.Int64
	done := func(r Result) { // one func value for every record: no closure per call
		if r.Err != nil {
			failed.Add(1)
		}
	}
	// Futures are waited for in windows, so many are in flight at once.
	const window = 4096
	pending := make([]*Future, 0, window)
	drain := func() {
		for _, f := range pending {
			if _, err := f.Wait(ctx); err != nil {
				failed.Add(1)
			}
		}
		pending = pending[:0]
	}
	// Warm up: grow the builders, the write buffer and the pools to their steady-state sizes.
	for range 20000 {
		_ = p.Produce(ctx, rec, done)
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if futures {
			f, err := p.Send(ctx, rec)
			if err != nil {
				b.Fatal(err)
			}
			if pending = append(pending, f); len(pending) == window {
				drain()
			}
		} else if err := p.Produce(ctx, rec, done); err != nil {
			b.Fatal(err)
		}
	}
	drain()
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d records failed", n)
	}
	_ = p.Close(ctx)
}

// BenchmarkConsumer measures Next over records already stored: records/s and allocations per record.
//
//	go test -run '^$' -bench BenchmarkConsumer -benchmem ./client/
func BenchmarkConsumer(b *testing.B) {
	br := startBroker(b, nil)
	c := dialT(b, br.addr)
	createTopic(b, c, "bench", 1)
	p, err := c.Producer("bench")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rec := Record{Value: make([]byte, 100)}
	n := b.N + 10000
	for range n {
		if err := p.Produce(ctx, rec, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	cons, err := c.Subscribe(ctx, "bench", WithStartEarliest())
	if err != nil {
		b.Fatal(err)
	}
	for range 10000 { // warm up
		if _, err := cons.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(100)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := cons.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
