package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// TestWorkQueueAgainstBroker: competing consumers share a queue; a nacked record and a record whose
// handler failed come back, and every record is acked exactly once in the end.
func TestWorkQueueAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "work", 2)
	ctx := testCtx(t)
	p, err := c.Producer("work")
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	produceN(t, p, 0, n)
	w1, err := c.Subscribe(ctx, "work", WithGroup("crew"), WithQueue(5*time.Second, 5), WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	w2, err := c.Subscribe(ctx, "work", WithGroup("crew"), WithQueue(5*time.Second, 5), WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]int{}
	nacked := false
	failed := false
	errBusy := errors.New("busy")
	deadline := time.Now().Add(20 * time.Second)
	for len(done) < n && time.Now().Before(deadline) {
		for _, w := range []*Consumer{w1, w2} {
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			m, err := w.Next(short)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			v := string(m.Value)
			switch {
			case !nacked:
				nacked = true
				if err := m.Nack(0); err != nil {
					t.Fatal(err)
				}
			case !failed:
				// Settle through a clone: a Message kept past Next still acks and nacks.
				failed = true
				m2 := m.Clone()
				if err := m2.Nack(0); err != nil {
					t.Fatal(err)
				}
			default:
				done[v]++
				if err := m.Ack(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if len(done) != n {
		t.Fatalf("%d of %d records acked", len(done), n)
	}
	for v, k := range done {
		if k != 1 {
			t.Fatalf("%s acked %d times", v, k)
		}
	}
	// Consume in queue mode: a handler error nacks the record and Consume carries on; it comes back.
	produceN(t, p, n, 1)
	want := fmt.Sprintf("v%06d", n)
	var got []string
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = w1.Consume(short, func(m *Message) error {
		got = append(got, string(m.Value))
		if len(got) == 1 {
			return errBusy
		}
		cancel() // the redelivery was handled: stop
		return nil
	})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume returned %v, want it to carry on past the handler error until ctx ends", err)
	}
	if !slices.Equal(got, []string{want, want}) {
		t.Fatalf("consume saw %v, want %s twice", got, want)
	}
}

// TestWorkQueueConsumeCarriesOn: a handler error nacks that record and Consume goes on with the
// others; the failed record comes back to the same (only) member and is processed in the end.
func TestWorkQueueConsumeCarriesOn(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "work", 1)
	ctx := testCtx(t)
	p, err := c.Producer("work")
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	produceN(t, p, 0, n)
	w, err := c.Subscribe(ctx, "work", WithGroup("crew"), WithQueue(5*time.Second, 5), WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	done := map[string]bool{}
	run, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err = w.Consume(run, func(m *Message) error {
		v := string(m.Value)
		seen[v]++
		if seen[v] == 1 && (v == "v000000" || v == "v000003") {
			return errors.New("transient")
		}
		done[v] = true
		if len(done) == n {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume returned %v before every record was processed (%d of %d)", err, len(done), n)
	}
	for i := range n {
		v := fmt.Sprintf("v%06d", i)
		want := 1
		if i == 0 || i == 3 {
			want = 2
		}
		if seen[v] != want {
			t.Fatalf("%s handled %d times, want %d (%v)", v, seen[v], want, seen)
		}
	}
}

// TestWorkQueueSlowHandlerNotRedelivered is the visibility-clock case: default options, a 2 s ack
// timeout, and every record acked 300 ms after Next returned it. Each record must be delivered once:
// its clock may not start while it waits in the client behind the records before it.
func TestWorkQueueSlowHandlerNotRedelivered(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "work", 1)
	ctx := testCtx(t)
	p, err := c.Producer("work")
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	produceN(t, p, 0, n)
	w, err := c.Subscribe(ctx, "work", WithGroup("crew"), WithQueue(2*time.Second, 5), WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	deliveries := map[string]int{}
	acked := 0
	for acked < n {
		wait, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := w.Next(wait)
		cancel()
		if err != nil {
			t.Fatalf("after %d acks: %v", acked, err)
		}
		v := string(m.Value)
		deliveries[v]++
		if deliveries[v] > 1 {
			t.Fatalf("%s delivered %d times (records acked so far %d)", v, deliveries[v], acked)
		}
		time.Sleep(300 * time.Millisecond) // the handler's work
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	// Nothing comes back once the ack timeout has passed for every record.
	wait, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	if m, err := w.Next(wait); err == nil {
		t.Fatalf("%s delivered again after it was acked", m.Value)
	}
}

// TestAckSyncIsDurable: once AckSync returns, the settlement is on disk. The data directory is copied
// at that moment, as a crash would leave it, and an engine opened on the copy delivers the queue's
// records from the first one not acked.
func TestAckSyncIsDurable(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "jobs", 1)
	ctx := testCtx(t)
	p, err := c.Producer("jobs")
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, p, 0, 10)
	w, err := c.Subscribe(ctx, "jobs", WithGroup("crew"), WithQueue(time.Minute, 5), WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 5; i++ {
		m, err := w.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Offset != i {
			t.Fatalf("offset %d, want %d", m.Offset, i)
		}
		if err := m.AckSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	snap := t.TempDir()
	if err := os.CopyFS(snap, os.DirFS(b.dir)); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Open(engine.Options{DataDir: snap, MemoryDir: filepath.Join(snap, "mem2"), SegmentBytes: 8 << 20, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	sub, err := eng.SubscribeLocal(wire.Subscribe{Topic: "jobs", Partition: -1, Mode: wire.ModeQueue, Group: "crew",
		Start: wire.StartEarliest, Credit: 1 << 20, AckTimeoutMs: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	d, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var it wire.RecordIter
	if _, err := it.Reset(d.Batches()); err != nil {
		t.Fatal(err)
	}
	var r wire.Record
	if !it.Next(&r) {
		t.Fatalf("empty delivery: %v", it.Err())
	}
	if r.Offset != 5 {
		t.Fatalf("after 5 synced acks the queue delivers offset %d first, want 5", r.Offset)
	}
}
