package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// TestStartByTimestampLandsOnTheRecord: one batch of 100 records, record i stamped t0 + 10·i ms; every
// way of starting at t0 + 500 ms (a plain subscription, a group without a committed offset, a work
// queue) starts at offset 50, the first record stamped at or after it, for every codec.
func TestStartByTimestampLandsOnTheRecord(t *testing.T) {
	const t0 = 1_700_000_000_000
	for _, codec := range []wire.Codec{wire.CodecNone, wire.CodecGzip, wire.CodecSnappy, wire.CodecZstd} {
		t.Run(codec.String(), func(t *testing.T) {
			e := openEngine(t, testOptions(t))
			if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			bb := wire.NewBatchBuilder(8192)
			bb.SetCompression(codec)
			for i := range 100 {
				bb.Append(nil, fmt.Appendf(nil, "value-%d", i), nil, t0+10*int64(i))
			}
			batch, err := bb.Build()
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.Publish(context.Background(), "q", 0, batch, wire.DurabilityWritten); err != nil {
				t.Fatal(err)
			}
			for name, spec := range map[string]wire.Subscribe{
				"plain": {Topic: "q", Partition: -1},
				"group": {Topic: "q", Partition: -1, Group: "g"},
				"queue": {Topic: "q", Partition: -1, Group: "w", Mode: wire.ModeQueue, AckTimeoutMs: 60_000, MaxDeliveries: 5, MaxAckPending: 1000},
			} {
				spec.Start, spec.StartValue = wire.StartTimestamp, t0+500
				s, starts, err := e.Subscribe(spec, nopOwner{})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if s.Grouped() {
					a, _ := s.ApplyAssignment()
					starts = a.Partitions // a member's partitions come with its assignment
				}
				if len(starts) != 1 || starts[0].Offset != 50 {
					t.Errorf("%s: starts %+v, want offset 50", name, starts)
				}
			}
			// A queue member is dispatched records from there on, none before.
			l, err := e.SubscribeLocal(wire.Subscribe{Topic: "q", Partition: -1, Group: "w2", Mode: wire.ModeQueue,
				Start: wire.StartTimestamp, StartValue: t0 + 500, AckTimeoutMs: 60_000, MaxDeliveries: 5, MaxAckPending: 1000})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			_, offs, vals, ok := takeRecords(t, l, 5*time.Second)
			if !ok || len(offs) == 0 || offs[0] != 50 || vals[0] != "value-50" {
				t.Fatalf("queue delivered offsets %v (values %v), want the first at 50", offs, vals[:min(len(vals), 3)])
			}
		})
	}
}

// nopOwner is a subscription owner that ignores wake-ups.
type nopOwner struct{}

func (nopOwner) Wake(*Cursor)           {}
func (nopOwner) Reassign(*Subscription) {}
