package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// produceTo produces n records to partition p, values "p/i" for i in [from, from+n).
func produceTo(t testing.TB, pr *Producer, p int32, from, n int) {
	t.Helper()
	ctx := testCtx(t)
	for i := from; i < from+n; i++ {
		if err := pr.Produce(ctx, Record{Partition: p, Value: fmt.Appendf(nil, "%d/%d", p, i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := pr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRebalanceDoesNotRedeliverWhatWasProcessed: member A processes all 200 records of 2 partitions
// with its automatic commit far off; B joins. The partition that moves to B reaches it only after A
// has committed what it processed, so B's first record is the first one produced after, not one A
// processed.
func TestRebalanceDoesNotRedeliverWhatWasProcessed(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "rb", 2)
	ctx := testCtx(t)
	pr, err := c.Producer("rb", WithPartitioner(ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	produceTo(t, pr, 0, 0, 100)
	produceTo(t, pr, 1, 0, 100)

	a, err := c.Subscribe(ctx, "rb", WithGroup("rg"), WithAutoCommit(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	for i := range 200 {
		if _, err := a.Next(ctx); err != nil {
			t.Fatalf("A's record %d: %v", i, err)
		}
	}
	// Calling Next again counts the 200th as processed; nothing more comes.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if _, err := a.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("A's 201st record: %v, want none", err)
	}
	cancel()

	c2 := dialT(t, b.addr)
	bm, err := c2.Subscribe(ctx, "rb", WithGroup("rg"), WithAutoCommit(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer bm.Close(ctx)
	waitFor(t, "B to hold a partition", func() bool { return len(bm.Assigned()) == 1 && len(a.Assigned()) == 1 })
	moved := bm.Assigned()[0]
	produceTo(t, pr, moved, 100, 20)
	for i := range 20 {
		m, err := bm.Next(ctx)
		if err != nil {
			t.Fatalf("B's record %d: %v", i, err)
		}
		if m.Partition != moved || m.Offset != int64(100+i) {
			t.Fatalf("B's record %d is partition %d offset %d (%s), want partition %d offset %d: A processed it",
				i, m.Partition, m.Offset, m.Value, moved, 100+i)
		}
	}
}

// TestRebalanceChurnDuplicatesStayNearZero: 2,000 records produced over about two seconds while 20
// members join and leave the group one after the other (each leaving cleanly: its handler stops, then
// it closes), beside one member that stays. Every record is processed (at least once) and the
// duplicates are a handful, not the records processed since each automatic commit.
func TestRebalanceChurnDuplicatesStayNearZero(t *testing.T) {
	const (
		parts   = 4
		records = 2000
		members = 20
	)
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "churn", parts)
	ctx := testCtx(t)

	var mu sync.Mutex
	counts := map[string]int{}
	processed := func(m *Message) error {
		mu.Lock()
		counts[string(m.Value)]++
		mu.Unlock()
		return nil
	}
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(counts)
	}

	type member struct {
		cons   *Consumer
		cancel context.CancelFunc
		done   chan error
	}
	join := func() *member {
		cons, err := c.Subscribe(ctx, "churn", WithGroup("cg"), WithAutoCommit(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		mctx, cancel := context.WithCancel(ctx)
		m := &member{cons: cons, cancel: cancel, done: make(chan error, 1)}
		go func() { m.done <- cons.Consume(mctx, processed) }()
		return m
	}
	leave := func(m *member) {
		m.cancel()
		if err := <-m.done; !errors.Is(err, context.Canceled) {
			t.Errorf("a leaving member's Consume: %v", err)
		}
		if err := m.cons.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	}

	stay := join()
	defer leave(stay)
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		pr, err := c.Producer("churn", WithPartitioner(ManualPartitioner()))
		if err != nil {
			t.Error(err)
			return
		}
		for i := range records {
			if err := pr.Produce(ctx, Record{Partition: int32(i % parts), Value: fmt.Appendf(nil, "r%05d", i)}, nil); err != nil {
				t.Error(err)
				return
			}
			if i%100 == 99 {
				if err := pr.Flush(ctx); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(100 * time.Millisecond) // pacing, so the churn meets a steady stream
			}
		}
	}()
	var live []*member
	for range members {
		live = append(live, join())
		time.Sleep(50 * time.Millisecond)
		if len(live) > 2 { // members come and go: two live at most besides the one that stays
			leave(live[0])
			live = live[1:]
		}
	}
	<-prodDone
	if t.Failed() {
		return
	}
	deadline := time.Now().Add(20 * time.Second)
	for distinct() < records && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, m := range live {
		leave(m)
	}
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, n := range counts {
		dups += n - 1
	}
	t.Logf("%d records, %d processed at least once, %d duplicates, %d members joined and left", records, len(counts), dups, members)
	if len(counts) != records {
		t.Fatalf("%d of %d records processed: records were lost", len(counts), records)
	}
	if dups > records/100 {
		t.Fatalf("%d duplicates over %d records, want at most %d", dups, records, records/100)
	}
}
