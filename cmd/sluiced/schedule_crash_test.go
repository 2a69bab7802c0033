package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// TestScheduledRecordsCrashLoop produces records held back by a deliver-at time, records with a
// short TTL and plain records with priorities into a work queue, consumes and acks some for a
// random while (leaving the TTL records held, unsettled), and SIGKILLs the broker, round after round. Against the real binary it checks: no
// record is delivered before its deliver-at time; after a restart, no record whose TTL had ended
// by the time the broker started again is delivered; and in the end every delayed and every plain
// record was delivered (none lost). SLUICE_SOAK=1 runs more rounds and records.
func TestScheduledRecordsCrashLoop(t *testing.T) {
	rounds, perRound := 3, 30
	if os.Getenv("SLUICE_SOAK") != "" {
		rounds, perRound = 20, 150
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 17))
	b := startBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "sched", 2)
	c.Close()

	type rec struct {
		deliverAt time.Time // zero: none
		ttl       time.Duration
		delivered bool
	}
	recs := map[string]*rec{}
	var latest time.Time // the latest deliver-at
	var restarted time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// consume takes records from the queue for d, acking each, and checks each one. It returns at d,
	// or when the broker goes away.
	consume := func(round int, c *client.Client, d time.Duration, done func() bool) {
		t.Helper()
		cons, err := c.Subscribe(ctx, "sched", client.WithGroup("workers"), client.WithQueue(time.Minute, 0),
			client.WithMaxAckPending(50), client.WithStartEarliest())
		if err != nil {
			t.Fatalf("round %d: subscribe: %v", round, err)
		}
		end := time.Now().Add(d)
		for time.Now().Before(end) && (done == nil || !done()) {
			wait := time.Now().Add(500 * time.Millisecond)
			if end.Before(wait) {
				wait = end
			}
			short, cancel := context.WithDeadline(ctx, wait)
			m, err := cons.Next(short)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			if err != nil {
				return // the broker went away
			}
			now := time.Now()
			r := recs[string(m.Value)]
			if r == nil {
				t.Fatalf("round %d (seed %d): unknown record %q", round, seed, m.Value)
			}
			if !r.deliverAt.IsZero() && now.Before(r.deliverAt) {
				t.Fatalf("round %d (seed %d): %s delivered at %v, %v before its deliver-at time", round, seed, m.Value,
					now.Format(time.StampMilli), r.deliverAt.Sub(now))
			}
			if r.ttl > 0 && !restarted.IsZero() && !m.Timestamp.Add(r.ttl).After(restarted) {
				t.Fatalf("round %d (seed %d): %s delivered after a restart at %v, its TTL ended at %v", round, seed, m.Value,
					restarted.Format(time.StampMilli), m.Timestamp.Add(r.ttl).Format(time.StampMilli))
			}
			r.delivered = true
			if r.ttl == 0 {
				_ = m.Ack() // TTL records stay held, unsettled through the kill: the restart must find them expired
			}
		}
		_ = cons.Close(ctx)
	}

	for round := 0; round < rounds; round++ {
		c := dialBroker(t, b)
		p, err := c.Producer("sched", client.WithDurability(wire.DurabilityFsync), client.WithLinger(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var failed error
		for i := 0; i < perRound; i++ {
			v := fmt.Sprintf("r%d-%d", round, i)
			r := &rec{}
			var hdrs []client.Header
			switch i % 3 {
			case 0:
				r.deliverAt = time.Now().Add(time.Duration(300+rng.IntN(2500)) * time.Millisecond)
				if r.deliverAt.After(latest) {
					latest = r.deliverAt
				}
				hdrs = append(hdrs, client.DeliverAtHeader(r.deliverAt), client.PriorityHeader(rng.IntN(10)))
			case 1:
				r.ttl = time.Duration(100+rng.IntN(1500)) * time.Millisecond
				hdrs = append(hdrs, client.TTLHeader(r.ttl))
			default:
				hdrs = append(hdrs, client.PriorityHeader(rng.IntN(10)))
			}
			recs[v] = r
			err := p.Produce(ctx, client.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(v), Headers: hdrs}, func(res client.Result) {
				if res.Err != nil {
					mu.Lock()
					failed = res.Err
					mu.Unlock()
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(ctx); err != nil || failed != nil {
			t.Fatalf("round %d: produce: %v %v", round, err, failed)
		}
		consume(round, c, time.Duration(200+rng.IntN(1500))*time.Millisecond, nil)
		c.Close()
		b.kill()
		restarted = time.Now()
		b.start()
	}
	// Every delayed and plain record comes, at or after its time.
	missing := func() []string {
		var out []string
		for v, r := range recs {
			if r.ttl == 0 && !r.delivered {
				out = append(out, v)
			}
		}
		return out
	}
	c = dialBroker(t, b)
	consume(rounds, c, time.Until(latest)+20*time.Second, func() bool { return len(missing()) == 0 })
	if m := missing(); len(m) > 0 {
		t.Fatalf("seed %d: %d records never delivered: %v", seed, len(m), m)
	}
}
