package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// commitWait commits through the engine and waits for the answer.
func commitWait(t *testing.T, e *Engine, group, topic string, p int32, off int64) error {
	t.Helper()
	done := make(chan error, 1)
	e.CommitOffset(group, topic, p, off, func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("commit not answered")
		return nil
	}
}

// TestCommitBeyondEndIsRefused (issue 11, item 3): a committed offset is the next offset the group
// reads, so it may be the partition's end but not beyond it.
func TestCommitBeyondEndIsRefused(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "c", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "c", 1, 10, wire.DurabilityWritten)
	if err := commitWait(t, e, "g", "c", 0, 1010); !errors.Is(err, wire.CodeOffsetOutOfRange) {
		t.Fatalf("commit 1010 on a partition ending at 10: %v, want CodeOffsetOutOfRange", err)
	}
	if err := commitWait(t, e, "g", "c", 0, 11); !errors.Is(err, wire.CodeOffsetOutOfRange) {
		t.Fatalf("commit 11: %v, want CodeOffsetOutOfRange", err)
	}
	if got := e.CommittedOffset("g", "c", 0); got != -1 {
		t.Fatalf("a refused commit was stored: %d", got)
	}
	for _, off := range []int64{0, 5, 10} {
		if err := commitWait(t, e, "g", "c", 0, off); err != nil {
			t.Fatalf("commit %d: %v", off, err)
		}
	}
}

// TestOutOfRangeCommittedOffsetResets is the scenario: the group holds offset 1010 on a
// partition ending at 10 (committed before commits were checked, or by an earlier incarnation of the
// topic); records 10-19 are produced while no member is connected; then a member joins. It used to be
// clamped to the end at join time (20) and delivered nothing, ever. The member's reset policy decides:
// earliest (the default) delivers everything retained, latest starts at the end, error ends the
// subscription with CodeOffsetOutOfRange. Group describe reports the stored offset and the end, so the
// lag it shows is not a silent 0.
func TestOutOfRangeCommittedOffsetResets(t *testing.T) {
	for _, tc := range []struct {
		reset wire.OffsetReset
		from  int64 // where the member starts; -1: the subscription fails
	}{
		{wire.ResetEarliest, 0},
		{wire.ResetLatest, 20},
		{wire.ResetError, -1},
	} {
		t.Run(map[wire.OffsetReset]string{0: "earliest", 1: "latest", 2: "error"}[tc.reset], func(t *testing.T) {
			e := openEngine(t, testOptions(t))
			if _, err := e.CreateTopic(wire.TopicConfig{Name: "r", Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			produce(t, e, "r", 1, 10, wire.DurabilityWritten)
			done := make(chan error, 1)
			e.offsets.Commit(OffsetKey{Group: "g", Topic: "r", Partition: 0}, 1010, func(err error) { done <- err })
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			produce(t, e, "r", 1, 10, wire.DurabilityWritten) // offsets 10-19, no member connected
			info, err := e.DescribeGroup("g")
			if err != nil || len(info.Offsets) != 1 || info.Offsets[0].Committed != 1010 || info.Offsets[0].End != 20 {
				t.Fatalf("describe: %+v %v", info, err)
			}

			l, err := e.SubscribeLocal(wire.Subscribe{Topic: "r", Partition: -1, Group: "g", Start: wire.StartCommitted, Reset: tc.reset})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tc.from < 0 {
				if _, err := l.Next(ctx); !errors.Is(err, wire.CodeOffsetOutOfRange) {
					t.Fatalf("Next: %v, want CodeOffsetOutOfRange", err)
				}
				return
			}
			l.drain()
			if got := l.Position(0); got != tc.from {
				t.Fatalf("member starts at %d, want %d", got, tc.from)
			}
			if tc.from == 20 {
				return
			}
			d, err := l.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var it wire.RecordIter
			if _, err := it.Reset(d.Batches()); err != nil {
				t.Fatal(err)
			}
			var r wire.Record
			if !it.Next(&r) || r.Offset != 0 {
				t.Fatalf("first record delivered at %d, want 0", r.Offset)
			}
		})
	}
}

// TestStartOffsetOutOfRange: an explicit start offset beyond the end follows the reset policy too; it
// is no longer clamped to the end.
func TestStartOffsetOutOfRange(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "s", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "s", 1, 10, wire.DurabilityWritten)
	spec := wire.Subscribe{Topic: "s", Partition: 0, Start: wire.StartOffset, StartValue: 50}
	for reset, want := range map[wire.OffsetReset]int64{wire.ResetEarliest: 0, wire.ResetLatest: 10} {
		spec.Reset = reset
		l, err := e.SubscribeLocal(spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Position(0); got != want {
			t.Errorf("reset %d: starts at %d, want %d", reset, got, want)
		}
		l.Close()
	}
	spec.Reset = wire.ResetError
	if _, err := e.SubscribeLocal(spec); !errors.Is(err, wire.CodeOffsetOutOfRange) {
		t.Fatalf("reset error: %v, want CodeOffsetOutOfRange", err)
	}
	spec.StartValue = 7
	l, err := e.SubscribeLocal(spec)
	if err != nil || l.Position(0) != 7 {
		t.Fatalf("in range: %v", err)
	}
	l.Close()
}

// TestDeletedTopicCommitsDoNotReachItsSuccessor (issue 11, item 12): offsets committed for a deleted
// topic by its still-connected consumers must not land on a topic recreated under the same name, and a
// group member of the deleted topic ends even when it held no partition.
func TestDeletedTopicCommitsDoNotReachItsSuccessor(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "d", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "d", 1, 100, wire.DurabilityWritten)
	spec := wire.Subscribe{Topic: "d", Partition: -1, Group: "g", Start: wire.StartCommitted}
	a, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := e.SubscribeLocal(spec) // one partition, two members: b holds none
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Commit(ctx, 0, 60); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteTopic("d"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "d", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "d", 1, 100, wire.DurabilityWritten) // the new topic is long enough for 60
	if err := a.Commit(ctx, 0, 60); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("commit from the deleted topic's member: %v, want CodeUnknownTopic", err)
	}
	if got := e.CommittedOffset("g", "d", 0); got != -1 {
		t.Fatalf("the recreated topic inherited offset %d", got)
	}
	for name, l := range map[string]*Local{"a": a, "b (no partition)": b} {
		if _, err := l.Next(ctx); !errors.Is(err, wire.CodeUnknownTopic) {
			t.Errorf("member %s of the deleted topic: Next %v, want CodeUnknownTopic", name, err)
		}
	}
}
