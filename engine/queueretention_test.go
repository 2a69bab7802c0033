package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// produceSized publishes n records of size bytes each to partition 0 of topic, one record a batch.
func produceSized(t *testing.T, e *Engine, topic string, n, size int) {
	t.Helper()
	b := wire.NewBatchBuilder(size + 256)
	for i := 0; i < n; i++ {
		b.Reset()
		b.Append(nil, []byte(strings.Repeat("x", size)), nil, time.Now().UnixMilli())
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.Publish(context.Background(), topic, 0, batch, wire.DurabilityWritten); err != nil {
			t.Fatal(err)
		}
	}
}

// Records a member holds when retention removes them stop counting against the queue: the floor,
// the dispatch position and the tracked state follow the log start at once (another member gets
// the retained records, though the first one's visibility timeout is a minute away and its holds
// filled the partition's tracking bound), the persisted state follows within the janitor's
// interval, a new member's start is never below the log start, and an ack of a removed record is
// ignored.
func TestWorkQueueHeldRecordsRemovedByRetention(t *testing.T) {
	o := testOptions(t)
	o.SegmentBytes, o.MaxBatchBytes = 64<<10, 32<<10
	o.QueueMaxTracked = 100
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1, SegmentBytes: 64 << 10, RetentionBytes: 160 << 10}); err != nil {
		t.Fatal(err)
	}
	produceSized(t, e, "q", 100, 1000)
	spec := queueSpec(time.Minute, 5)
	spec.MaxAckPending = 100
	a, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := takeAll(t, a, 100, false); len(got) != 100 {
		t.Fatalf("the first member took %d records, want 100", len(got))
	}
	produceSized(t, e, "q", 900, 1000)
	p := e.TopicByName("q").Partition(0)
	if err := p.log.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	start := p.StartOffset()
	if start <= 100 {
		t.Fatalf("log start %d: the test needs retention past the held records", start)
	}

	// The persisted state follows the log start without any member asking.
	deadline := time.Now().Add(10 * time.Second)
	for {
		done := make(chan error, 1)
		e.queues.store.sync(true, func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		var sts []queueState
		raw, err := os.ReadFile(filepath.Join(o.DataDir, "offsets", "queues.json"))
		if err != nil || json.Unmarshal(raw, &sts) != nil || len(sts) != 1 {
			t.Fatalf("queues.json: %v %s", err, raw)
		}
		if st := sts[0]; st.Floor >= start && st.Next >= start && len(st.Unsettled) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("persisted queue state %s after retention moved the log start to %d", raw, start)
		}
		time.Sleep(20 * time.Millisecond)
	}

	b, starts, err := e.Subscribe(spec, nopOwner{})
	if err != nil {
		t.Fatal(err)
	}
	if len(starts) != 1 || starts[0].Offset < start {
		t.Fatalf("a new member starts at %v, below the log start %d", starts, start)
	}
	b.Close()
	if err := a.Ack(0, 0, 1, 2); err != nil {
		t.Fatalf("ack of records retention removed: %v", err)
	}
	l, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := takeAll(t, l, int(1000-start), true)
	if len(got) != int(1000-start) || got[0] != start || got[len(got)-1] != 999 {
		t.Fatalf("the second member got %d records (%v..), want %d..999", len(got), got[:min(3, len(got))], start)
	}
	if n := e.metrics.QueueRecordsExpired.Load(); n != uint64(start) {
		t.Fatalf("%d records counted expired, want %d (100 held, the rest never dispatched)", n, start)
	}
}
