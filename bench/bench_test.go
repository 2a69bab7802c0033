package bench

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDeliver is the consumer's per-message cost: decode the stamps, read the clock, record twice.
func BenchmarkDeliver(b *testing.B) {
	r := newRecorder(time.Minute)
	p := make([]byte, 128)
	StampIntended(p, Now())
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		r.deliver(p)
	}
}

// BenchmarkFloorHandoff is one message through the floor target: copy into a pooled buffer, channel
// hand-off to the consumer goroutine, record. The floor's allocation-free claim rests on this.
func BenchmarkFloorHandoff(b *testing.B) {
	t := NewFloorTarget()
	cfg := Config{PayloadSize: 128}.WithDefaults()
	if err := t.Open(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	r := newRecorder(time.Minute)
	if err := t.Consume(0, r.deliver); err != nil {
		b.Fatal(err)
	}
	p := t.Producer(0)
	payload := make([]byte, cfg.PayloadSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	var n int64
	for b.Loop() {
		n++
		StampIntended(payload, Now())
		if err := p.Send(nil, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	for r.received.Load() < n {
		time.Sleep(time.Millisecond)
	}
	if err := t.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkNow is one read of the harness clock: the pacer reads it at least once per message and
// the recorder once per receipt, so it bounds the rate one sender can pace and the finest latency
// the harness can tell apart.
func BenchmarkNow(b *testing.B) {
	var sink int64
	for b.Loop() {
		sink += Now()
	}
	_ = sink
}

// BenchmarkSPSCHandoff is one message through the busy-poll floor: copy into a slab slot, publish its
// number on the ring, a spinning consumer records it. 0 allocs/op.
func BenchmarkSPSCHandoff(b *testing.B) {
	t := NewSPSCFloorTarget()
	cfg := Config{PayloadSize: 100}.WithDefaults()
	if err := t.Open(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	r := newRecorder(time.Minute)
	if err := t.Consume(0, r.deliver); err != nil {
		b.Fatal(err)
	}
	p := t.Producer(0)
	payload := make([]byte, cfg.PayloadSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	var n int64
	for b.Loop() {
		n++
		StampIntended(payload, Now())
		if err := p.Send(nil, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	for r.received.Load() < n {
		time.Sleep(time.Millisecond)
	}
	if err := t.Close(); err != nil {
		b.Fatal(err)
	}
}
