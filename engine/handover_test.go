package engine

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// reassignCounter is a subscription owner that counts the assignment changes it is told of; the
// test applies them itself, as the owner's goroutine would.
type reassignCounter struct{ n atomic.Int32 }

func (*reassignCounter) Wake(*Cursor)             {}
func (o *reassignCounter) Reassign(*Subscription) { o.n.Add(1) }

// assigned applies s's assignment and returns it as partition → start offset.
func assigned(s *Subscription) map[int32]int64 {
	out := map[int32]int64{}
	for _, po := range s.ApplyAssignment().Partitions {
		out[po.Partition] = po.Offset
	}
	return out
}

// handOverSetup opens an engine with GroupRevokeTimeout revoke, a topic "h" of 2 partitions with 100
// records each, and member A of group g holding both; then member B joins. It returns A and B with
// their owners, after checking that A was told at once to give one partition up and B got nothing.
func handOverSetup(t *testing.T, revoke time.Duration) (e *Engine, a, b *Subscription, oa, ob *reassignCounter, moved int32) {
	t.Helper()
	o := testOptions(t)
	o.GroupRevokeTimeout = revoke
	e = openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "h", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "h", 2, 100, wire.DurabilityWritten)
	spec := wire.Subscribe{Topic: "h", Partition: -1, Group: "g", Start: wire.StartCommitted}
	oa, ob = &reassignCounter{}, &reassignCounter{}
	a, _, err := e.Subscribe(spec, oa)
	if err != nil {
		t.Fatal(err)
	}
	if got := assigned(a); len(got) != 2 || got[0] != 0 || got[1] != 0 {
		t.Fatalf("A's first assignment %v, want both partitions at 0", got)
	}
	// A reads on without committing (say its automatic commit has not run yet); B joins.
	b, _, err = e.Subscribe(spec, ob)
	if err != nil {
		t.Fatal(err)
	}
	ga, gb := assigned(a), assigned(b)
	if len(ga) != 1 || len(gb) != 0 {
		t.Fatalf("after B joined: A holds %v and B %v, want A told at once to keep one partition, B given nothing yet", ga, gb)
	}
	for p := range ga {
		moved = 1 - p
	}
	return e, a, b, oa, ob, moved
}

// TestGroupHandOverWaitsForTheOldMembersCommit: a partition moving from A to B reaches B only once
// A has committed it, and B starts at that commit, not at the group's older position.
func TestGroupHandOverWaitsForTheOldMembersCommit(t *testing.T) {
	e, _, b, _, ob, moved := handOverSetup(t, time.Minute)
	seen := ob.n.Load()
	if info, err := e.DescribeGroup("g"); err != nil || len(info.Members) != 2 || len(info.Members[1].Partitions) != 0 {
		t.Fatalf("describe before the hand-back: %+v, %v", info, err)
	}
	done := make(chan error, 1)
	e.CommitOffset("g", "h", moved, 60, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ob.n.Load() == seen {
		t.Fatal("B was not told of the partition A handed back")
	}
	if got := assigned(b); len(got) != 1 || got[moved] != 60 {
		t.Fatalf("B's assignment after A's commit: %v, want partition %d at 60", got, moved)
	}
}

// TestGroupHandOverWithoutACommit: offset -1 hands the partition back storing nothing; B starts at
// the group's committed offset (none: the earliest record).
func TestGroupHandOverWithoutACommit(t *testing.T) {
	e, _, b, _, _, moved := handOverSetup(t, time.Minute)
	done := make(chan error, 1)
	e.CommitOffset("g", "h", moved, HandBackOffset, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := assigned(b); len(got) != 1 || got[moved] != 0 {
		t.Fatalf("B's assignment after A's hand-back: %v, want partition %d at 0", got, moved)
	}
	if off := e.CommittedOffset("g", "h", moved); off != -1 {
		t.Fatalf("a hand-back stored offset %d", off)
	}
}

// TestGroupHandOverWhenTheOldMemberLeaves: a member that leaves hands its partitions over at once.
func TestGroupHandOverWhenTheOldMemberLeaves(t *testing.T) {
	_, a, b, _, _, _ := handOverSetup(t, time.Minute)
	a.Close()
	if got := assigned(b); len(got) != 2 {
		t.Fatalf("B's assignment after A left: %v, want both partitions", got)
	}
}

// TestGroupHandOverTimesOut: a member that never hands the partition back loses it to B after
// GroupRevokeTimeout, not before.
func TestGroupHandOverTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _, b, _, ob, moved := handOverSetup(t, 5*time.Second)
		seen := ob.n.Load()
		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		if ob.n.Load() != seen || len(assigned(b)) != 0 {
			t.Fatal("B was given the partition before the revoke timeout")
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if got := assigned(b); len(got) != 1 || got[moved] != 0 {
			t.Fatalf("B's assignment after the timeout: %v, want partition %d at 0", got, moved)
		}
		e.Close()
	})
}

// TestGroupHandOverNegativeTimeoutIsImmediate: GroupRevokeTimeout < 0 hands partitions over at once.
func TestGroupHandOverNegativeTimeoutIsImmediate(t *testing.T) {
	o := testOptions(t)
	o.GroupRevokeTimeout = -1
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "h", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	spec := wire.Subscribe{Topic: "h", Partition: -1, Group: "g"}
	a, _, err := e.Subscribe(spec, nopOwner{})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := e.Subscribe(spec, nopOwner{})
	if err != nil {
		t.Fatal(err)
	}
	if ga, gb := assigned(a), assigned(b); len(ga) != 1 || len(gb) != 1 {
		t.Fatalf("A holds %v and B %v, want one partition each at once", ga, gb)
	}
}

// TestLocalMembersHandOverOnApplying: embedded members hand a partition back as they apply the
// assignment that takes it, so the next drain of the new member finds it.
func TestLocalMembersHandOverOnApplying(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "h", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	spec := wire.Subscribe{Topic: "h", Partition: -1, Group: "g"}
	a, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.drain()
	b.drain()
	if pa, pb := a.partitions(), b.partitions(); len(pa) != 1 || len(pb) != 1 {
		t.Fatalf("A holds %v and B %v, want one partition each", pa, pb)
	}
}
