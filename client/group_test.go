package client

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func produceN(t testing.TB, p *Producer, from, n int) {
	t.Helper()
	ctx := testCtx(t)
	for i := from; i < from+n; i++ {
		if err := p.Produce(ctx, Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("v%06d", i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGroupCommitAndResumeAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "g1", 4)
	ctx := testCtx(t)
	p, err := c.Producer("g1")
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, p, 0, 400)

	a, err := c.Subscribe(ctx, "g1", WithGroup("workers"), WithAutoCommit(-1))
	if err != nil {
		t.Fatal(err)
	}
	s := newSeen(t)
	consumeN(t, a, s, 400)
	if got := a.Assigned(); !slices.Equal(got, []int32{0, 1, 2, 3}) {
		t.Fatalf("sole member holds %v", got)
	}
	if a.Generation() == 0 {
		t.Fatal("no generation after an assignment")
	}
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ti, err := c.DescribeTopic(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range ti.Partitions {
		off, err := c.FetchOffset(ctx, "workers", "g1", pi.Partition)
		if err != nil || off != pi.EndOffset {
			t.Fatalf("partition %d: committed %d (%v), end %d", pi.Partition, off, err, pi.EndOffset)
		}
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}

	produceN(t, p, 400, 100)
	bm, err := c.Subscribe(ctx, "g1", WithGroup("workers"), WithAutoCommit(-1))
	if err != nil {
		t.Fatal(err)
	}
	s2 := newSeen(t)
	consumeN(t, bm, s2, 100)
	for v := range s2.vals {
		var i int
		fmt.Sscanf(v, "v%06d", &i)
		if i < 400 {
			t.Fatalf("record %d delivered again after its commit", i)
		}
	}
	gi, err := c.DescribeGroup(ctx, "workers")
	if err != nil || len(gi.Members) != 1 {
		t.Fatalf("describe group: %+v %v", gi, err)
	}
}

func TestGroupRebalanceAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	// Default pings: the broker pushes an Assign to an idle connection itself.
	c := dialT(t, b.addr)
	createTopic(t, c, "g2", 4)
	ctx := testCtx(t)
	a, err := c.Subscribe(ctx, "g2", WithGroup("pool"), WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	c2 := dialT(t, b.addr) // a second connection, as a second process would have
	bm, err := c2.Subscribe(ctx, "g2", WithGroup("pool"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a split assignment", func() bool {
		x, y := a.Assigned(), bm.Assigned()
		all := slices.Sorted(slices.Values(append(slices.Clone(x), y...)))
		return len(x) == 2 && len(y) == 2 && slices.Equal(all, []int32{0, 1, 2, 3})
	})
	p, err := c.Producer("g2")
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, p, 0, 400)

	s := newSeen(t)
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, cons := range []*Consumer{a, bm} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = cons.Consume(cctx, func(m *Message) error {
				if !slices.Contains(cons.Assigned(), m.Partition) {
					t.Errorf("record of partition %d at a member holding %v", m.Partition, cons.Assigned())
				}
				s.add(m)
				if s.count() == 400 {
					cancel()
				}
				return nil
			})
		}()
	}
	wg.Wait()
	if s.count() != 400 {
		t.Fatalf("%d records of 400", s.count())
	}

	// The member that leaves hands its partitions to the one that stays.
	if err := bm.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the remaining member to take every partition", func() bool {
		return slices.Equal(a.Assigned(), []int32{0, 1, 2, 3})
	})
	produceN(t, p, 400, 100)
	s2 := newSeen(t)
	consumeN(t, a, s2, 100)
	for v := range s2.vals {
		var i int
		fmt.Sscanf(v, "v%06d", &i)
		if i < 400 {
			// Consume counted every record bm handled as processed and Close committed them, so the
			// partitions a inherits start after them.
			t.Fatalf("record %d delivered again after the member that processed it left", i)
		}
	}
}
