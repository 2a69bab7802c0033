package ring

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Benchmarks compare the rings with a buffered channel of the same capacity
// (benchCap entries), hand-off by hand-off, in one run: the machine is
// shared, so compare ratios within a run, not figures across runs.
//
//	go test -run '^$' -bench . -benchtime 1s ./ring/
//
// ns/op and ops/s are per entry. The rings run under WaitPark (spin, yield,
// then park) and WaitYield (spin, then runtime.Gosched). WaitSpin is left
// out: on the 2-core machine a busy-spinning consumer holds a core that the
// producers need. WaitYield is no better once the machine is shared: a
// goroutine that yields still holds its OS thread, and when other processes
// leave us less than two cores the side it waits for is not running at all.
// WaitPark gives the core back, as a channel does.

const (
	benchCap   = 1024
	benchBatch = 64
)

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// share splits n entries among producers; producer 0 takes the remainder.
func share(n, producers, id int) int {
	k := n / producers
	if id == 0 {
		k += n % producers
	}
	return k
}

// runProducers starts producers goroutines running fn(id, count) and returns
// a wait function.
func runProducers(n, producers int, fn func(id, count int)) func() {
	var wg sync.WaitGroup
	for id := range producers {
		wg.Go(func() { fn(id, share(n, producers, id)) })
	}
	return wg.Wait
}

// benchRingSingle: producers Put one entry at a time, the consumer Takes
// one at a time.
func benchRingSingle(b *testing.B, r anyRing[uint64], producers int) {
	b.ReportAllocs()
	b.ResetTimer()
	wait := runProducers(b.N, producers, func(id, count int) {
		for i := range count {
			r.Put(uint64(i))
		}
	})
	var sum uint64
	for range b.N {
		v, _ := r.Take()
		sum += v
	}
	wait()
	b.StopTimer()
	reportOps(b)
	sink.Add(sum)
}

// benchRingBatch: producers OfferBatch benchBatch entries at a time, the
// consumer Waits and then Drains up to benchBatch at a time.
func benchRingBatch(b *testing.B, r anyRing[uint64], producers int) {
	b.ReportAllocs()
	b.ResetTimer()
	wait := runProducers(b.N, producers, func(id, count int) {
		var batch [benchBatch]uint64
		var f fullWait // outside the loop: through the interface below it escapes
		for count > 0 {
			rest := batch[:min(count, benchBatch)]
			for i := range rest {
				rest[i] = uint64(count - i)
			}
			count -= len(rest)
			for len(rest) > 0 {
				n := r.OfferBatch(rest)
				if n == 0 {
					r.(interface{ pause(*fullWait) }).pause(&f)
				}
				rest = rest[n:]
			}
		}
	})
	var dst [benchBatch]uint64
	var sum uint64
	for got := 0; got < b.N; {
		r.Wait()
		n := r.Drain(dst[:])
		for _, v := range dst[:n] {
			sum += v
		}
		got += n
	}
	wait()
	b.StopTimer()
	reportOps(b)
	sink.Add(sum)
}

// pause backs off a producer whose OfferBatch found the ring full, by the
// ring's wait strategy, as Put does.
func (r *SPSC[T]) pause(f *fullWait) { r.w.fullPause(f, r.head.Load(), r.hasSpace) }

func (r *MPSC[T]) pause(f *fullWait) { r.w.fullPause(f, r.head.Load(), r.hasSpace) }

// sink keeps results alive so the compiler cannot drop the work.
var sink atomic.Uint64

func benchChanSingle(b *testing.B, producers int) {
	ch := make(chan uint64, benchCap)
	b.ReportAllocs()
	b.ResetTimer()
	wait := runProducers(b.N, producers, func(id, count int) {
		for i := range count {
			ch <- uint64(i)
		}
	})
	var sum uint64
	for range b.N {
		sum += <-ch
	}
	wait()
	b.StopTimer()
	reportOps(b)
	sink.Add(sum)
}

// benchChanBatch is the channel's batched hand-off: a channel has no batch
// claim, so a batch travels as one array value (copied, not allocated), and
// the channel holds benchCap/benchBatch batches: the same benchCap entries.
func benchChanBatch(b *testing.B, producers int) {
	type batch struct {
		n  int
		vs [benchBatch]uint64
	}
	ch := make(chan batch, benchCap/benchBatch)
	b.ReportAllocs()
	b.ResetTimer()
	wait := runProducers(b.N, producers, func(id, count int) {
		var bt batch
		for count > 0 {
			bt.n = min(count, benchBatch)
			for i := range bt.n {
				bt.vs[i] = uint64(count - i)
			}
			count -= bt.n
			ch <- bt
		}
	})
	var sum uint64
	for got := 0; got < b.N; {
		bt := <-ch
		for _, v := range bt.vs[:bt.n] {
			sum += v
		}
		got += bt.n
	}
	wait()
	b.StopTimer()
	reportOps(b)
	sink.Add(sum)
}

func mustSPSC(b *testing.B, o Options) *SPSC[uint64] {
	r, err := NewSPSC[uint64](o)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func mustMPSC(b *testing.B, o Options) *MPSC[uint64] {
	r, err := NewMPSC[uint64](o)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkHandoff measures throughput from 1 and 4 producers to one
// consumer, single and batched, for the channel and the rings under WaitPark
// (the default) and WaitYield.
func BenchmarkHandoff(b *testing.B) {
	for _, producers := range []int{1, 4} {
		p := fmt.Sprintf("producers=%d", producers)
		for _, mode := range []string{"single", "batch"} {
			if mode == "single" {
				b.Run(p+"/single/chan", func(b *testing.B) { benchChanSingle(b, producers) })
			} else {
				b.Run(p+"/batch/chan", func(b *testing.B) { benchChanBatch(b, producers) })
			}
			for _, w := range []WaitStrategy{WaitPark, WaitYield} {
				o := Options{Capacity: benchCap, Wait: w}
				run := benchRingSingle
				if mode == "batch" {
					run = benchRingBatch
				}
				if producers == 1 {
					b.Run(p+"/"+mode+"/spsc-"+w.String(), func(b *testing.B) { run(b, mustSPSC(b, o), 1) })
				}
				b.Run(p+"/"+mode+"/mpsc-"+w.String(), func(b *testing.B) { run(b, mustMPSC(b, o), producers) })
			}
		}
	}
}

// BenchmarkLatency measures one-way hand-off latency, from the producer's
// clock read before the publish to the consumer's after the receive, one
// entry in flight at a time, and reports its p50 and p99 from an HDR
// histogram. busy: the producer sends as soon as the previous entry is
// consumed, so the consumer is still spinning or yielding (rings: WaitYield).
// idle: the producer waits idleGap between entries, so the consumer has gone
// to sleep (rings: WaitPark; the channel parks its receiver too) and every
// hand-off pays a wake-up. ns/op includes the pacing and is not a latency.
func BenchmarkLatency(b *testing.B) {
	const idleGap = 50 * time.Microsecond
	for _, mode := range []string{"busy", "idle"} {
		o := Options{Capacity: benchCap, Wait: WaitYield}
		gap := time.Duration(0)
		if mode == "idle" {
			o.Wait, gap = WaitPark, idleGap
		}
		b.Run(mode+"/chan", func(b *testing.B) {
			ch := make(chan int64, benchCap)
			benchLatency(b, gap, func(v int64) { ch <- v }, func() int64 { return <-ch })
		})
		b.Run(mode+"/spsc", func(b *testing.B) {
			r := mustSPSC(b, o)
			benchLatency(b, gap, func(v int64) { r.Put(uint64(v)) }, func() int64 { v, _ := r.Take(); return int64(v) })
		})
		b.Run(mode+"/mpsc", func(b *testing.B) {
			r := mustMPSC(b, o)
			benchLatency(b, gap, func(v int64) { r.Put(uint64(v)) }, func() int64 { v, _ := r.Take(); return int64(v) })
		})
	}
}

var epoch = time.Now()

func benchLatency(b *testing.B, gap time.Duration, send func(int64), recv func() int64) {
	h := hdrhistogram.New(1, int64(time.Second), 3) // allocated once, before timing
	var consumed atomic.Int64
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		defer close(done)
		for range b.N {
			sent := recv()
			h.RecordValue(int64(time.Since(epoch)) - sent)
			consumed.Add(1)
		}
	}()
	for i := range b.N {
		if gap > 0 {
			// Spin rather than sleep: a timer's wake-up jitter would
			// dwarf the gap.
			for t := time.Now(); time.Since(t) < gap; {
			}
		}
		send(int64(time.Since(epoch)))
		for consumed.Load() <= int64(i) {
			runtime.Gosched()
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-ns")
	b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-ns")
}

// BenchmarkLineTransfer measures the machine's limit under the single-entry
// hand-off: the time for a cache line written on one core to be read and
// written back on another. Two goroutines take turns incrementing one
// counter, each waiting (spinning, yielding now and then) for the other's
// increment, so every op is one transfer of the line. A consumer reading
// 8-byte entries that a producer on another core wrote pays one transfer
// per 8 entries at least, whatever the ring does.
func BenchmarkLineTransfer(b *testing.B) {
	var turn struct {
		_ [cacheLine]byte
		n atomic.Int64
		_ [cacheLine]byte
	}
	player := func(parity int64, until int64) {
		for {
			v := turn.n.Load()
			if v >= until {
				return
			}
			if v&1 == parity {
				turn.n.Store(v + 1)
				continue
			}
			for i := 0; turn.n.Load() == v; i++ {
				if i&1023 == 1023 {
					runtime.Gosched() // the other player may not be running
				}
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	done := make(chan struct{})
	go func() { player(1, int64(b.N)); close(done) }()
	player(0, int64(b.N))
	<-done
}
