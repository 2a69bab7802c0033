package engine

import (
	"errors"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

func idemBatch(t *testing.T, pid int64, epoch int16, seq int32, n int) []byte {
	t.Helper()
	b := wire.NewBatchBuilder(1024)
	b.SetProducer(pid, epoch, seq)
	for i := 0; i < n; i++ {
		b.Append(nil, []byte("v"), nil, 1)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), out...)
}

func TestIdempotentProducerDedup(t *testing.T) {
	o := testOptions(t)
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "i", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := e.TopicByName("i").Partition(0)
	expect := func(batch []byte, wantBase, wantLast int64) {
		t.Helper()
		base, last, err := p.Append(batch)
		if err != nil || base != wantBase || last != wantLast {
			t.Fatalf("append: %d..%d %v, want %d..%d", base, last, err, wantBase, wantLast)
		}
	}
	first := idemBatch(t, 42, 0, 0, 3)
	expect(first, 0, 2)
	expect(first, 0, 2) // a resend: answered with the original offsets, not stored again
	second := idemBatch(t, 42, 0, 3, 2)
	expect(second, 3, 4)
	expect(idemBatch(t, 7, 0, 100, 1), 5, 5) // another producer, first seen mid-stream
	if p.NextOffset() != 6 {
		t.Fatalf("end offset %d, want 6: duplicates were stored", p.NextOffset())
	}
	if _, _, err := p.Append(idemBatch(t, 42, 0, 9, 1)); !errors.Is(err, wire.CodeOutOfOrderSequence) {
		t.Fatalf("sequence gap: %v", err)
	}
	expect(idemBatch(t, 42, 1, 0, 1), 6, 6) // a new epoch starts a new session
	if _, _, err := p.Append(idemBatch(t, 42, 0, 5, 1)); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("stale epoch: %v", err)
	}
	// Batches without a producer id are never deduplicated.
	plain := wire.NewBatchBuilder(256)
	plain.Append(nil, []byte("x"), nil, 1)
	pb, _ := plain.Build()
	pb = append([]byte(nil), pb...)
	expect(pb, 7, 7)
	expect(pb, 8, 8)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart the state is rebuilt from the log: a resend is still recognised.
	e = openEngine(t, o)
	p = e.TopicByName("i").Partition(0)
	expect(idemBatch(t, 42, 1, 0, 1), 6, 6) // the epoch-1 batch resent: recognised, not stored
	if _, _, err := p.Append(second); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("epoch 0 after restart: %v, want fenced", err)
	}
	expect(idemBatch(t, 42, 1, 1, 2), 9, 10)
	if p.NextOffset() != 11 {
		t.Fatalf("end offset %d after restart, want 11", p.NextOffset())
	}
}

// TestIdempotentResendOfAFullWindow: a producer with 16 batches in flight (the Go client's default)
// whose answers were all lost resends the 16; each is answered with the offsets it was stored at,
// also after a restart, and nothing is stored twice.
func TestIdempotentResendOfAFullWindow(t *testing.T) {
	o := testOptions(t)
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "w", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	const window = 16
	var batches [][]byte
	for i := range window {
		b := idemBatch(t, 9, 0, int32(2*i), 2)
		batches = append(batches, b)
		if base, _, err := e.TopicByName("w").Partition(0).Append(b); err != nil || base != int64(2*i) {
			t.Fatalf("batch %d: base %d, %v", i, base, err)
		}
	}
	resend := func(e *Engine) {
		t.Helper()
		p := e.TopicByName("w").Partition(0)
		for i, b := range batches {
			base, last, err := p.Append(b)
			if err != nil || base != int64(2*i) || last != int64(2*i+1) {
				t.Fatalf("resent batch %d: %d..%d %v, want %d..%d", i, base, last, err, 2*i, 2*i+1)
			}
		}
		if p.NextOffset() != 2*window {
			t.Fatalf("end offset %d, want %d: a resend was stored again", p.NextOffset(), 2*window)
		}
	}
	resend(e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	resend(openEngine(t, o))
}
