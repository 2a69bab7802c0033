package engine

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// takeRecords reads one delivery from l and returns its records' offsets and values.
func takeRecords(t *testing.T, l *Local, wait time.Duration) (p int32, offs []int64, vals []string, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	d, err := l.Next(ctx)
	if err != nil {
		return 0, nil, nil, false
	}
	var it wire.RecordIter
	var r wire.Record
	for rest := d.Batches(); len(rest) > 0; {
		h, err := it.Reset(rest)
		if err != nil {
			t.Fatal(err)
		}
		rest = rest[h.Size():]
		for it.Next(&r) {
			offs = append(offs, r.Offset)
			vals = append(vals, string(r.Value))
		}
	}
	return d.Partition.ID(), offs, vals, true
}

func queueSpec(timeout time.Duration, maxDeliveries uint16) wire.Subscribe {
	return wire.Subscribe{Topic: "q", Partition: -1, Group: "workers", Mode: wire.ModeQueue,
		Start: wire.StartEarliest, AckTimeoutMs: uint32(timeout.Milliseconds()), MaxDeliveries: maxDeliveries}
}

func TestWorkQueueCompetingConsumers(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "q", 2, 100, wire.DurabilityWritten)
	a, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[2]int64]string{}
	counts := map[*Local]int{}
	for len(seen) < 200 {
		progress := false
		for _, l := range []*Local{a, b} {
			p, offs, _, ok := takeRecords(t, l, 50*time.Millisecond)
			if !ok {
				continue
			}
			progress = true
			for _, o := range offs {
				k := [2]int64{int64(p), o}
				if _, dup := seen[k]; dup {
					t.Fatalf("partition %d offset %d delivered to two members", p, o)
				}
				seen[k] = ""
			}
			counts[l] += len(offs)
			if err := l.Ack(p, offs...); err != nil {
				t.Fatal(err)
			}
		}
		if !progress {
			t.Fatalf("queue stalled at %d of 200", len(seen))
		}
	}
	if counts[a] == 0 || counts[b] == 0 {
		t.Fatalf("one member got everything: %v", counts)
	}
	// Everything acked: nothing is redelivered.
	if _, offs, _, ok := takeRecords(t, a, 100*time.Millisecond); ok {
		t.Fatalf("acked records delivered again: %v", offs)
	}
	a.Close()
	b.Close()
}

func TestWorkQueueRedeliveryAndDeadLetter(t *testing.T) {
	o := testOptions(t)
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "q", 1, 3, wire.DurabilityWritten)
	l, err := e.SubscribeLocal(queueSpec(150*time.Millisecond, 3))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, offs, _, ok := takeRecords(t, l, time.Second)
	if !ok || len(offs) != 3 {
		t.Fatalf("first delivery %v", offs)
	}
	if err := l.Ack(0, 0); err != nil { // ack 0, nack 1, ignore 2
		t.Fatal(err)
	}
	if err := l.Nack(0, 0, 1); err != nil {
		t.Fatal(err)
	}
	_, offs, vals, ok := takeRecords(t, l, time.Second)
	if !ok || len(offs) != 1 || offs[0] != 1 || vals[0] != "value 0/1" {
		t.Fatalf("after the nack got %v %v, want offset 1 alone", offs, vals)
	}
	// Offset 2 was never acked: after the visibility timeout it comes back.
	_, offs, _, ok = takeRecords(t, l, 2*time.Second)
	if !ok || len(offs) != 1 || (offs[0] != 1 && offs[0] != 2) {
		t.Fatalf("redelivery after the timeout: %v", offs)
	}
	// Keep failing 1 and 2: after 3 deliveries each they go to the dead-letter topic.
	deadline := time.Now().Add(5 * time.Second)
	for e.TopicByName("q"+DeadLetterSuffix) == nil || e.TopicByName("q"+DeadLetterSuffix).Partition(0).NextOffset() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("records never reached the dead-letter topic")
		}
		if _, offs, _, ok := takeRecords(t, l, 300*time.Millisecond); ok {
			if err := l.Nack(0, 0, offs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	dlq, err := e.SubscribeLocal(wire.Subscribe{Topic: "q" + DeadLetterSuffix, Partition: 0, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	d, err := dlq.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var it wire.RecordIter
	var r wire.Record
	if _, err := it.Reset(d.Batches()); err != nil || !it.Next(&r) {
		t.Fatalf("dead letter: %v", err)
	}
	src, _ := r.Header("sluice-dlq-offset")
	n, _ := r.Header("sluice-dlq-deliveries")
	if off, _ := strconv.Atoi(string(src)); off != 1 && off != 2 || string(n) != "3" {
		t.Fatalf("dead letter headers offset=%s deliveries=%s", src, n)
	}
	// Everything is settled now: the floor passed all three records.
	time.Sleep(2 * janitorInterval)
	if got := e.CommittedOffset("workers", "q", 0); got != 3 {
		t.Fatalf("committed floor %d, want 3", got)
	}
}

func TestWorkQueueSurvivesRestart(t *testing.T) {
	o := testOptions(t)
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "q", 1, 10, wire.DurabilityWritten)
	l, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	_, offs, _, ok := takeRecords(t, l, time.Second)
	if !ok || len(offs) != 10 {
		t.Fatalf("delivery %v", offs)
	}
	if err := l.Ack(0, 0, 1, 2, 3, 5); err != nil { // 4 stays owed: the floor stops at 4
		t.Fatal(err)
	}
	l.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, o)
	l, err = e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got []int64
	for len(got) < 6 {
		_, offs, _, ok := takeRecords(t, l, time.Second)
		if !ok {
			t.Fatalf("after restart got %v, want 4..9", got)
		}
		for _, o := range offs {
			if o >= 4 {
				got = append(got, o)
			}
		}
	}
	if got[0] != 4 || got[5] != 9 {
		t.Fatalf("after restart %v, want offsets 4..9 (at least once from the committed floor)", got)
	}
}
