package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// Issue 21, items 3 and 6: the client lives within the limits the broker announces in the handshake
// (its batch limit, its idle timeout), against the daemon itself.

// TestProduceUnderTheBrokersBatchLimit (item 3): with sluiced --max-batch-bytes 65536, a producer left
// at its default 1 MiB batches stores every record, in order: it sizes its batches under the limit
// the broker announced. (Before, batches of up to 1 MiB were refused whole: every record failed.)
func TestProduceUnderTheBrokersBatchLimit(t *testing.T) {
	const n = 20_000
	b := startBroker(t, t.TempDir(), "--max-batch-bytes", "65536")
	c := dialBroker(t, b)
	createTopic(t, c, "limited", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A long linger lets batches grow to the cap whatever the machine's load.
	p, err := c.Producer("limited", client.WithLinger(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		failed error
		nfail  int
	)
	for i := range n {
		err := p.Produce(ctx, client.Record{Key: []byte(keyOf(i)), Value: []byte(valueOf(i))}, func(r client.Result) {
			if r.Err != nil {
				mu.Lock()
				nfail++
				failed = r.Err
				mu.Unlock()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if nfail > 0 {
		t.Fatalf("%d of %d records failed, the last with: %v", nfail, n, failed)
	}
	k := newChecker(t)
	consumeAll(t, c, "limited", n, k) // every record once, in order
}

// TestCreateTopicSegmentBelowBatchLimit (item 3, second part): a segment size below the broker's
// batch limit is an invalid request, not an internal error.
func TestCreateTopicSegmentBelowBatchLimit(t *testing.T) {
	b := startBroker(t, t.TempDir())
	c := dialBroker(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cfg := range []client.TopicConfig{
		{Name: "small", SegmentBytes: 65536},
		{Name: "small-mem", SegmentBytes: 65536, Flags: wire.TopicMemory},
	} {
		err := c.CreateTopic(ctx, cfg)
		if !errors.Is(err, wire.CodeInvalidRequest) {
			t.Fatalf("create %s with segment bytes 65536: %v, want invalid request", cfg.Name, err)
		}
	}
}

// TestSlowHandlerOutlastsTheIdleTimeout (item 6): with sluiced --idle-timeout 1s and a group member
// whose handler takes 1.5 s per record (the client's ping interval left at its 15 s default), every
// record is handled once and committed. The client pings within the idle timeout the broker
// announced. (Before, the broker closed the silent connection during the first record, the member
// rejoined at the committed offset 0 and handled offset 0 again, for ever.)
func TestSlowHandlerOutlastsTheIdleTimeout(t *testing.T) {
	b := startBroker(t, t.TempDir(), "--idle-timeout", "1s")
	c := dialBroker(t, b)
	accepted := b.metric(t, "sluice_connections_accepted_total", "") // startBroker's probe and c's
	slowGroup(t, c, "slow", 1500*time.Millisecond)
	if n := b.metric(t, "sluice_connections_accepted_total", "") - accepted; n != 0 {
		t.Fatalf("the client connected %d more times: its connection went idle", n)
	}
}

// TestHandledBeforeReconnectIsCommitted (item 6, second part): a record the handler finished after
// the connection was lost and the member rejoined is committed, not handled again. Pings are off
// and the broker's idle timeout (1 s) is shorter than the handler (2 s), so the connection drops
// during every record.
func TestHandledBeforeReconnectIsCommitted(t *testing.T) {
	b := startBroker(t, t.TempDir(), "--idle-timeout", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, b.addr, client.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond),
		client.WithPingInterval(-1), client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	accepted := b.metric(t, "sluice_connections_accepted_total", "")
	slowGroup(t, c, "unpinged", 2*time.Second)
	if n := b.metric(t, "sluice_connections_accepted_total", "") - accepted; n < 3 {
		t.Fatalf("the client connected %d more times, want one reconnection per record at least", n)
	}
}

// slowGroup produces 3 records to a fresh one-partition topic and consumes them as a group member
// whose handler takes d per record. It fails when a record is handled twice or the records are not
// all handled within a bound, and checks that the group committed offset 3.
func slowGroup(t *testing.T, c *client.Client, topic string, d time.Duration) {
	t.Helper()
	const n = 3
	createTopic(t, c, topic, 1)
	produceN(t, c, topic, n, wire.DurabilityWritten)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons, err := c.Subscribe(ctx, topic, client.WithGroup("g-"+topic), client.WithStartCommitted(),
		client.WithAutoCommit(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	handled := map[int64]int{}
	cctx, stop := context.WithTimeout(ctx, time.Duration(n)*d+20*time.Second)
	defer stop()
	err = cons.Consume(cctx, func(m *client.Message) error {
		handled[m.Offset]++
		if handled[m.Offset] > 1 {
			stop()
			return fmt.Errorf("offset %d handled %d times", m.Offset, handled[m.Offset])
		}
		time.Sleep(d) // the application's slow work
		if m.Offset == n-1 {
			stop()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || len(handled) != n {
		t.Fatalf("consume ended with %v after handling %v (offset: times), want offsets 0..%d once each", err, handled, n-1)
	}
	if err := cons.Close(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := c.DescribeGroup(ctx, "g-"+topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Offsets) != 1 || info.Offsets[0].Committed != n {
		t.Fatalf("group offsets %+v, want offset %d committed", info.Offsets, n)
	}
}

// TestConsumeStopsWhenItsContextEnds (item 6, last part): Consume returns promptly once its context
// ends, even with records still buffered. (Before, it handed every buffered record to the handler.)
func TestConsumeStopsWhenItsContextEnds(t *testing.T) {
	const n = 500
	b := startBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "buffered", 1)
	produceN(t, c, "buffered", n, wire.DurabilityWritten)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := c.Subscribe(ctx, "buffered", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	cctx, stop := context.WithCancel(ctx)
	handled := 0
	start := time.Now()
	err = cons.Consume(cctx, func(m *client.Message) error {
		handled++
		if handled == 10 {
			stop() // the records after it are buffered already (one delivery holds them all)
		}
		time.Sleep(10 * time.Millisecond)
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("consume returned %v, want context.Canceled", err)
	}
	if handled != 10 {
		t.Fatalf("the handler ran %d times (%v), want 10: it ran on after the context ended", handled, time.Since(start))
	}
}
