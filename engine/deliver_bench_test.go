package engine

import (
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// deliverLoop prepares a one-partition topic of 1,000 batches of 100 records and a subscription
// over it, and returns a step that takes one delivery (at most 16 KiB), rewinding at the end.
func deliverLoop(tb testing.TB, txn bool) func() {
	o := testOptions(tb)
	o.SegmentBytes = 64 << 20
	e := openEngine(tb, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "d", Partitions: 1}); err != nil {
		tb.Fatal(err)
	}
	p := e.TopicByName("d").Partition(0)
	bb := wire.NewBatchBuilder(8 << 10)
	for i := range 1000 {
		bb.Reset()
		if txn {
			bb.SetProducer(1, 0, int32(i*100))
		}
		for range 100 {
			bb.Append(nil, []byte("a record value of some forty bytes ....."), nil, 1)
		}
		batch, err := bb.Build()
		if err != nil {
			tb.Fatal(err)
		}
		if txn {
			wire.MarkTransactional(batch)
		}
		if _, _, err := p.Append(batch); err != nil {
			tb.Fatal(err)
		}
	}
	if txn {
		if err := e.EndTxn(1, 0, true); err != nil {
			tb.Fatal(err)
		}
	}
	s, _, err := e.Subscribe(wire.Subscribe{Topic: "d", Partition: 0, Start: wire.StartEarliest, Credit: 1 << 30}, nopOwner{})
	if err != nil {
		tb.Fatal(err)
	}
	return func() {
		d, ok, err := s.Next(16 << 10)
		if err != nil {
			tb.Fatal(err)
		}
		if !ok {
			s.cursors[0].next = 0
			s.ReadyAll()
			s.credit = 1 << 30
			return
		}
		d.Release()
	}
}

// BenchmarkSubscriptionNext is the stream delivery path (Subscription.Next and Release, 16 KiB
// deliveries of 100-record batches) on a partition that never saw a transaction, and, for
// comparison, on one whose records are one committed transaction.
func BenchmarkSubscriptionNext(b *testing.B) {
	for _, txn := range []bool{false, true} {
		name := "plain"
		if txn {
			name = "committed-txn"
		}
		b.Run(name, func(b *testing.B) {
			step := deliverLoop(b, txn)
			b.ReportAllocs()
			for b.Loop() {
				step()
			}
		})
	}
}
