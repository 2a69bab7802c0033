package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
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
