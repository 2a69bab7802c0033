package kafka

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/wire"
)

// crossRecords is how many records each direction of the cross-protocol test moves.
const crossRecords = 5000

// TestCrossProtocol: one topic is one topic. Records kgo produced through the Kafka listener are
// read by Sluice's Go client through the native listener with the same keys, values, headers,
// timestamps and offsets; records Sluice's client produced are read by kgo the same way.
func TestCrossProtocol(t *testing.T) {
	s, e := startBroker(t, nil)
	native, err := server.Start(server.Options{Addr: "127.0.0.1:0", Engine: e, Loops: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { native.Close() })
	createTopic(t, e, "k2s", 4)
	createTopic(t, e, "s2k", 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc, err := client.Dial(ctx, native.Addr().String(), client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()

	t.Run("kgo to sluice", func(t *testing.T) {
		kc := newClient(t, s, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic("k2s"))
		want := produceAll(t, kc, "k2s", crossRecords)
		got := map[int32][]*kgo.Record{}
		for p := range int32(4) {
			cons, err := sc.Subscribe(ctx, "k2s", client.WithPartition(p), client.WithStartEarliest())
			if err != nil {
				t.Fatal(err)
			}
			for len(got[p]) < len(want[p]) {
				m, err := cons.Next(ctx)
				if err != nil {
					t.Fatalf("partition %d after %d records: %v", p, len(got[p]), err)
				}
				r := &kgo.Record{Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp,
					Key: append([]byte(nil), m.Key...), Value: append([]byte(nil), m.Value...)}
				m.Headers(func(k, v []byte) bool {
					r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(k), Value: append([]byte(nil), v...)})
					return true
				})
				got[p] = append(got[p], r)
			}
			cons.Close(ctx)
		}
		sameRecords(t, want, got)
	})

	t.Run("sluice to kgo", func(t *testing.T) {
		prod, err := sc.Producer("s2k", client.WithDurability(wire.DurabilityFsync))
		if err != nil {
			t.Fatal(err)
		}
		recs := make([]*kgo.Record, crossRecords)
		futs := make([]*client.Future, crossRecords)
		for i := range crossRecords {
			r := testRecord("s2k", i)
			f, err := prod.Send(ctx, client.Record{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp,
				Headers: []client.Header{{Key: []byte(r.Headers[0].Key), Value: r.Headers[0].Value}}})
			if err != nil {
				t.Fatal(err)
			}
			recs[i], futs[i] = r, f
		}
		want := map[int32][]*kgo.Record{}
		for i, f := range futs {
			res, err := f.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r := recs[i]
			r.Partition, r.Offset = res.Partition, res.Offset
			want[r.Partition] = append(want[r.Partition], r)
		}
		for p := range want {
			slices.SortFunc(want[p], func(a, b *kgo.Record) int { return int(a.Offset - b.Offset) })
		}
		prod.Close(ctx)
		sameRecords(t, want, consumeAll(t, s, "s2k", crossRecords))
	})
}
