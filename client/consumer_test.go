package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/wire"
)

func TestStartPositionsAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "pos", 1)
	ctx := testCtx(t)
	p, err := c.Producer("pos")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 10 {
		if _, err := p.Publish(ctx, Record{Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	first := func(opts ...ConsumerOption) *Message {
		t.Helper()
		cons, err := c.Subscribe(ctx, "pos", opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cons.Close(context.Background()) })
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := first(WithStartEarliest()); m.Offset != 0 || !m.Timestamp.Equal(base) {
		t.Fatalf("earliest: offset %d at %v", m.Offset, m.Timestamp)
	}
	if m := first(WithStartOffset(7)); m.Offset != 7 {
		t.Fatalf("offset 7: got %d", m.Offset)
	}
	if m := first(WithStartTime(base.Add(4*time.Minute + time.Second))); m.Offset != 5 {
		t.Fatalf("time: got offset %d", m.Offset)
	}
	latest, err := c.Subscribe(ctx, "pos", WithStartLatest())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx, Record{Value: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	m, err := latest.Next(ctx)
	if err != nil || m.Offset != 10 || string(m.Value) != "new" {
		t.Fatalf("latest: %v %v", m, err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := latest.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next with nothing to read: %v", err)
	}
	if _, err := c.Subscribe(ctx, "nope", WithStartEarliest()); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("subscribe to an unknown topic: %v", err)
	}
	if _, err := c.Subscribe(ctx, "pos", WithGroup("g"), WithPartition(0)); !errors.Is(err, ErrOptions) {
		t.Fatalf("group with a partition: %v", err)
	}
}

// TestCreditBoundsBuffering: a consumer that does not read holds at most its credit window (plus
// one batch of overdraft) and still receives everything once it reads.
func TestCreditBoundsBuffering(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "credit", 1)
	ctx := testCtx(t)
	p, err := c.Producer("credit", WithMaxBatchBytes(2<<10))
	if err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 200)
	const n = 2000 // ~450 KB in ~2 KB batches
	for range n {
		if err := p.Produce(ctx, Record{Value: value}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	const window = 16 << 10
	cons, err := c.Subscribe(ctx, "credit", WithStartEarliest(), WithCredit(window))
	if err != nil {
		t.Fatal(err)
	}
	queued := func() int {
		cons.mu.Lock()
		defer cons.mu.Unlock()
		total := 0
		for _, d := range cons.queue[cons.qhead:] {
			total += len(d.data)
		}
		return total
	}
	waitFor(t, "the first deliveries", func() bool { return queued() > 0 })
	time.Sleep(100 * time.Millisecond) // room for the broker to overrun the window, if it would
	if q := queued(); q > window+4<<10 {
		t.Fatalf("%d bytes queued with a %d byte window", q, window)
	}
	for i := range n {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if m.Offset != int64(i) {
			t.Fatalf("record %d at offset %d", i, m.Offset)
		}
		if q := queued(); q > window+4<<10 {
			t.Fatalf("%d bytes queued with a %d byte window", q, window)
		}
	}
}

func TestAutoCommitAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "auto", 1)
	ctx := testCtx(t)
	p, err := c.Producer("auto")
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, p, 0, 10)
	cons, err := c.Subscribe(ctx, "auto", WithGroup("ac"), WithAutoCommit(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := cons.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Next returned offsets 0..4; the fifth is not processed until the next Next.
	waitFor(t, "offset 4 committed", func() bool {
		off, err := c.FetchOffset(ctx, "ac", "auto", 0)
		return err == nil && off == 4
	})
	time.Sleep(30 * time.Millisecond)
	if off, _ := c.FetchOffset(ctx, "ac", "auto", 0); off != 4 {
		t.Fatalf("committed %d while record 4 is in the application's hands", off)
	}
	// Consume marks a record processed when its handler returns nil; a handler error stops it
	// without committing that record.
	stop := errors.New("stop")
	err = cons.Consume(ctx, func(m *Message) error {
		if m.Offset == 7 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("consume: %v", err)
	}
	if err := cons.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if off, _ := c.FetchOffset(ctx, "ac", "auto", 0); off != 7 {
		t.Fatalf("committed %d after close, want 7", off)
	}
}

func TestAuthTokenAgainstBroker(t *testing.T) {
	b := startBroker(t, func(o *server.Options) { o.Tokens = map[string]string{"s3cret": "alice"} })
	ctx := testCtx(t)
	if _, err := Dial(ctx, b.addr, WithLogger(quiet)); !errors.Is(err, ErrHandshake) || !errors.Is(err, wire.CodeAuthFailed) {
		t.Fatalf("dial without a token: %v", err)
	}
	if _, err := Dial(ctx, b.addr, WithLogger(quiet), WithAuthToken("wrong")); !errors.Is(err, wire.CodeAuthFailed) {
		t.Fatalf("dial with a wrong token: %v", err)
	}
	c := dialT(t, b.addr, WithAuthToken("s3cret"))
	createTopic(t, c, "authed", 1)
}

func TestOptionsValidate(t *testing.T) {
	ctx := testCtx(t)
	for _, opt := range []Option{WithMaxFrame(1 << 10), WithDialTimeout(0), WithReconnectBackoff(time.Second, time.Millisecond), WithClientID(string(make([]byte, 300))), WithPingInterval(0)} {
		if _, err := Dial(ctx, "127.0.0.1:1", opt); !errors.Is(err, ErrOptions) {
			t.Fatalf("invalid option accepted: %v", err)
		}
	}
	po := DefaultProducerOptions()
	po.MaxInFlight = -1
	if err := po.Validate(); !errors.Is(err, ErrOptions) {
		t.Fatalf("producer options: %v", err)
	}
	co := DefaultConsumerOptions()
	co.Credit = 10
	if err := co.Validate(); !errors.Is(err, ErrOptions) {
		t.Fatalf("consumer options: %v", err)
	}
}
