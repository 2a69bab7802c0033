package engine

import (
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// BenchmarkQueueRedeliver: one work-queue redelivery out of 1000 due records: take the record (a
// one-record batch built for it) and nack it, due again at once.
func BenchmarkQueueRedeliver(b *testing.B) {
	e := openEngine(b, testOptions(b))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	produce(b, e, "q", 1, 1000, wire.DurabilityWritten)
	s, _, err := e.Subscribe(queueSpec(time.Hour, 0xffff), nopOwner{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var offs []int64
	for len(offs) < 1000 {
		s.AddCredit(1 << 30)
		s.ReadyAll()
		d, ok, err := s.Next(1 << 20)
		if !ok || err != nil {
			b.Fatalf("first deliveries: %d records, %v", len(offs), err)
		}
		for rest := d.Batches(); len(rest) > 0; {
			h, err := wire.ParseBatchHeader(rest)
			if err != nil {
				b.Fatal(err)
			}
			for off := h.BaseOffset; off <= h.LastOffset(); off++ {
				offs = append(offs, off)
			}
			rest = rest[h.Size():]
		}
		d.Release()
	}
	if err := s.Nack(0, len(offs), func(i int) int64 { return offs[i] }, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.AddCredit(1 << 20)
		s.ReadyAll()
		d, ok, err := s.Next(1 << 20)
		if !ok || err != nil {
			b.Fatalf("redelivery: %v %v", ok, err)
		}
		h, _ := wire.ParseBatchHeader(d.Batches())
		d.Release()
		if err := s.Nack(0, 1, func(int) int64 { return h.BaseOffset }, 0); err != nil {
			b.Fatal(err)
		}
	}
}
