package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestStreamResumesAfterBrokerRestart: a plain consumer resumes every partition at its position, so
// it sees each stored offset exactly once, in order, across a restart.
func TestStreamResumesAfterBrokerRestart(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "s", 3)
	ctx := testCtx(t)
	p, err := c.Producer("s")
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, p, 0, 300)
	cons, err := c.Subscribe(ctx, "s", WithStartEarliest(), WithCredit(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	next := map[int32]int64{}
	read := func(n int) {
		t.Helper()
		for range n {
			m, err := cons.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m.Offset != next[m.Partition] {
				t.Fatalf("partition %d: offset %d, want %d", m.Partition, m.Offset, next[m.Partition])
			}
			next[m.Partition]++
		}
	}
	read(150)
	b.restart()
	produceN(t, p, 300, 300) // waits for the reconnection
	read(450)
	var total int64
	for _, n := range next {
		total += n
	}
	if total != 600 {
		t.Fatalf("%d records", total)
	}
}

// TestGroupLosesNothingAcrossBrokerRestart: a group member with committed offsets keeps consuming
// through a broker restart in the middle of a stream produced concurrently; every record arrives
// (at least once).
func TestGroupLosesNothingAcrossBrokerRestart(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "r", 4)
	ctx := testCtx(t)
	p, err := c.Producer("r", WithLinger(time.Millisecond), WithRetries(20))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := c.Subscribe(ctx, "r", WithGroup("survivors"), WithAutoCommit(20*time.Millisecond), WithCredit(16<<10))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	var produceErr error
	var wg sync.WaitGroup
	restarted := make(chan struct{})
	wg.Add(1)
	go func() { // the producer runs through the restart
		defer wg.Done()
		var mu sync.Mutex
		for i := range n {
			if i == n/2 {
				<-restarted
			}
			err := p.Produce(ctx, Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("v%06d", i))}, func(r Result) {
				if r.Err != nil {
					mu.Lock()
					produceErr = fmt.Errorf("record %d: %w", i, r.Err)
					mu.Unlock()
				}
			})
			if err != nil {
				produceErr = err
				return
			}
		}
		if err := p.Flush(ctx); err != nil {
			produceErr = err
		}
	}()
	s := newSeen(t)
	s.t = nil // duplicates (and so repeated offsets) are allowed here
	dup, didRestart := 0, false
	cctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	for len(s.vals) < n {
		m, err := cons.Next(cctx)
		if err != nil {
			t.Fatalf("after %d records: %v", len(s.vals), err)
		}
		if s.vals[string(m.Value)] {
			dup++
		}
		s.vals[string(m.Value)] = true
		if len(s.vals) == n/4 && !didRestart {
			b.restart()
			close(restarted)
			didRestart = true
		}
	}
	wg.Wait()
	if produceErr != nil {
		t.Fatal(produceErr)
	}
	if err := cons.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var committed int64
	for part := int32(0); part < 4; part++ {
		off, err := c.FetchOffset(ctx, "survivors", "r", part)
		if err != nil {
			t.Fatal(err)
		}
		committed += off
	}
	ti, err := c.DescribeTopic(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	var end int64
	for _, pi := range ti.Partitions {
		end += pi.EndOffset
	}
	if committed != end {
		t.Fatalf("committed %d of %d stored records", committed, end)
	}
	t.Logf("%d records, %d stored, %d delivered twice", n, end, dup)
}
