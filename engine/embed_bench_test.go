package engine

import (
	"context"
	"sync/atomic"
	"testing"
)

// BenchmarkLocalPublishPoll is the busy-poll transport's per-message cost: a Publisher appends one
// 100-byte record at written durability and a Local takes it with PollRecord.
//
//   - same-goroutine: publish then poll on one goroutine (the cost of the two calls, no hand-off);
//   - spin: a publishing goroutine and a consumer spinning on PollRecord (b.N records handed from one
//     to the other; on a machine with a core for each).
//
// Both report 0 allocs/op: the record iterator, the builder and the ready queue are reused
// (TestLocalPublishPollAllocs holds the same loop to it).
func BenchmarkLocalPublishPoll(b *testing.B) {
	b.Run("same-goroutine", func(b *testing.B) {
		e := openEngine(b, benchOptions(b))
		pub, l := publishPollPair(b, e, true)
		defer l.Close()
		value := make([]byte, 100)
		ctx := context.Background()
		b.SetBytes(int64(len(value)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pub.PublishRecord(ctx, nil, value); err != nil {
				b.Fatal(err)
			}
			if r, err := l.PollRecord(); r == nil || err != nil {
				b.Fatal("nothing polled", err)
			}
		}
	})
	b.Run("spin", func(b *testing.B) {
		e := openEngine(b, benchOptions(b))
		pub, l := publishPollPair(b, e, true)
		defer l.Close()
		value := make([]byte, 100)
		b.SetBytes(int64(len(value)))
		b.ReportAllocs()
		var failed atomic.Bool
		n := b.N
		b.ResetTimer()
		go func() {
			for range n {
				if _, err := pub.PublishRecord(context.Background(), nil, value); err != nil {
					failed.Store(true)
					return
				}
			}
		}()
		for got := 0; got < n && !failed.Load(); {
			r, err := l.PollRecord()
			if err != nil {
				b.Fatal(err)
			}
			if r != nil {
				got++
			}
		}
		if failed.Load() {
			b.Fatal("publish failed")
		}
	})
}

// benchOptions are testOptions with segments large enough that a benchmark rolls rarely.
func benchOptions(b *testing.B) Options {
	o := testOptions(b)
	o.SegmentBytes = 64 << 20
	return o
}
