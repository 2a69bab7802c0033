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
	// Consume in queue mode: a handler error nacks the record and stops; it comes back.
	produceN(t, p, n, 1)
	want := fmt.Sprintf("v%06d", n)
	var got []string
	for _, w := range []*Consumer{w1, w2, w1, w2} {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := w.Consume(short, func(m *Message) error {
			got = append(got, string(m.Value))
			if len(got) == 1 {
				return errBusy
			}
			return nil
		})
		cancel()
		if err != nil && !errors.Is(err, errBusy) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		if len(got) == 2 {
			break
		}
	}
	if !slices.Equal(got, []string{want, want}) {
		t.Fatalf("consume saw %v, want %s twice", got, want)
	}
}
