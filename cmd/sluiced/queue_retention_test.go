package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// TestWorkQueueAfterRetention: a work queue whose dispatch position retention removed resumes at
// the log start. A queue member subscribes and leaves (the queue starts at 0), 1,000 records of
// 1,000 bytes go to a topic with 64 KiB segments and 160 KiB retention, and once retention has moved
// the log start a new member gets every retained record, on one connection that is never dropped;
// the records skipped are counted in sluice_queue_records_expired_total. A failed subscribe on the
// same connection does not close it either.
func TestWorkQueueAfterRetention(t *testing.T) {
	b := startBroker(t, t.TempDir(), "--max-batch-bytes", "32768")
	c := dialBroker(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, client.TopicConfig{Name: "jobs", Partitions: 1, SegmentBytes: 64 << 10, RetentionBytes: 160 << 10}); err != nil {
		t.Fatal(err)
	}
	accepted := b.metric(t, "sluice_connections_accepted_total", "")
	queue := []client.ConsumerOption{client.WithGroup("workers"), client.WithQueue(time.Minute, 0),
		client.WithMaxAckPending(1000), client.WithStartEarliest()}
	first, err := c.Subscribe(ctx, "jobs", queue...)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}

	p, err := c.Producer("jobs", client.WithDurability(wire.DurabilityWritten), client.WithMaxBatchBytes(32<<10))
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("x", 1000))
	futs := make([]*client.Future, 0, 1000)
	for i := 0; i < 1000; i++ { // sent together: the producer packs them in batches up to the limit
		f, err := p.Send(ctx, client.Record{Value: value})
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Retention runs on the broker's housekeeper: wait, with a deadline, for the log start to move.
	var start int64
	for deadline := time.Now().Add(30 * time.Second); ; {
		info, err := c.DescribeTopic(ctx, "jobs")
		if err != nil {
			t.Fatal(err)
		}
		if start = info.Partitions[0].StartOffset; start > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention did not move the log start in 30 s: %+v", info.Partitions)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A subscribe that fails (a start below the log start, with reset "error") is answered with an
	// error for that request alone: the connection stays (checked with the accepted count below).
	if _, err := c.Subscribe(ctx, "jobs", client.WithPartition(0), client.WithStartOffset(0),
		client.WithOffsetReset(wire.ResetError)); !errors.Is(err, wire.CodeOffsetOutOfRange) {
		t.Fatalf("subscribe below the log start with reset error: %v", err)
	}
	cons, err := c.Subscribe(ctx, "jobs", queue...)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{}
	for len(got) < int(1000-start) {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d records from %d: %v\n%s", len(got), 1000-start, start, err, b.log())
		}
		if m.Offset < start {
			t.Fatalf("offset %d delivered, below the log start %d", m.Offset, start)
		}
		got[m.Offset] = true
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.metric(t, "sluice_connections_accepted_total", ""); n != accepted {
		t.Fatalf("%d connections accepted, want %d: the client reconnected\n%s", n, accepted, b.log())
	}
	if n := b.metric(t, "sluice_queue_records_expired_total", ""); n < start {
		t.Fatalf("sluice_queue_records_expired_total %d, want at least the %d records below the log start", n, start)
	}
}
