package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// countingHandler counts log records whose message contains match.
type countingHandler struct {
	match string
	n     *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// rawProduce writes batches to topic over a connection of its own, for a batch the Go producer
// would never build.
func rawProduce(t *testing.T, addr, topic string, batches ...[]byte) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req, start := wire.BeginFrame(nil, wire.OpHello, 0, 1)
	req = wire.EndFrame((&wire.Hello{Version: wire.ProtocolVersion}).Append(req), start)
	for i, b := range batches {
		req, start = wire.BeginFrame(req, wire.OpProduce, 0, uint32(2+i))
		req = wire.EndFrame((&wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte(topic), Batches: b}).Append(req), start)
	}
	if _, err := nc.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	dec := wire.NewDecoder(wire.DefaultMaxFrame)
	buf := make([]byte, 4096)
	replies := 0
	for replies < 1+len(batches) {
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
		if err := dec.Feed(buf[:n], func(f wire.Frame) error {
			if f.Op == wire.OpError {
				return fmt.Errorf("produce to %s answered with an error", topic)
			}
			replies++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func buildBatch(t *testing.T, values ...string) []byte {
	t.Helper()
	b := wire.NewBatchBuilder(1024)
	for _, v := range values {
		b.Append(nil, []byte(v), nil, 1700000000000)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), out...)
}

// TestFailingSubscriptionDoesNotCycleTheConnection: a consumer whose topic is deleted under it is
// ended alone: the broker sends SubEnded for that subscription, Next returns the error, the client
// never redials, and another consumer on the same connection keeps receiving. (The report: an id-0
// error per failed subscription made the client redial 3,500-5,400 times in 3 s.) The client's
// back-off on repeated retriable endings is client.TestRepeatedSubscriptionEndingsBackOff.
func TestFailingSubscriptionDoesNotCycleTheConnection(t *testing.T) {
	s, e := servertest.Start(t, nil, nil)
	for _, name := range []string{"poisoned", "healthy"} {
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	rawProduce(t, s.Addr().String(), "poisoned", buildBatch(t, "a"))

	var resubscribes atomic.Int64
	log := slog.New(countingHandler{match: "subscription ended; resubscribing", n: &resubscribes})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.Addr().String(), client.WithReconnectBackoff(10*time.Millisecond, 500*time.Millisecond), client.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	accepted := s.Stats().Accepted.Load()

	healthy, err := c.Subscribe(ctx, "healthy", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.Close(ctx)
	poisoned, err := c.Subscribe(ctx, "poisoned", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer poisoned.Close(ctx)
	if m, err := poisoned.Next(ctx); err != nil || string(m.Value) != "a" {
		t.Fatalf("first record: %v", err)
	}
	if err := e.DeleteTopic("poisoned"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	nctx, ncancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = poisoned.Next(nctx)
	ncancel()
	var pe *wire.ProtocolError
	if err == nil || !errors.As(err, &pe) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on the failing subscription: %v, want the broker's error", err)
	}
	t.Logf("failing subscription: %v after %v, %d resubscribes", err, time.Since(start).Round(time.Millisecond), resubscribes.Load())

	// The other consumer on the same connection carries on.
	p, err := c.Producer("healthy", client.WithDurability(wire.DurabilityWritten))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, client.Record{Value: []byte("still here")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := healthy.Next(ctx); err != nil || string(m.Value) != "still here" {
		t.Fatalf("the healthy consumer: %v", err)
	}
	if n := s.Stats().Accepted.Load() - accepted; n != 0 {
		t.Fatalf("the client redialled %d times while one subscription failed", n)
	}
	if n := resubscribes.Load(); n != 0 {
		t.Fatalf("%d resubscribes after a final ending (topic deleted), want none", n)
	}
}

// TestConsumerWithSmallMaxFrame: a consumer announcing a 64 KiB maximum frame reads a topic with a
// 400 KB record: it receives the small records before it, cut to fit, then Next reports
// CodeBatchTooLarge, with no reconnection. (The report: a 412,506-byte delivery to a client that
// announced 65,536, which then reconnected 8,480 times in 5 s.)
func TestConsumerWithSmallMaxFrame(t *testing.T) {
	s, _ := servertest.Start(t, func(o *engine.Options) { o.AutoCreateTopics = true }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	big, err := client.Dial(ctx, s.Addr().String(), client.WithLogger(servertest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	if err := big.CreateTopic(ctx, client.TopicConfig{Name: "wide", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := big.Producer("wide", client.WithDurability(wire.DurabilityWritten), client.WithMaxBatchBytes(16<<10))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 { // 160 KiB in batches of at most 16 KiB: more than one 64 KiB frame's worth
		if err := p.Produce(ctx, client.Record{Value: []byte(strings.Repeat("s", 4<<10) + fmt.Sprint(i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	p, err = big.Producer("wide", client.WithDurability(wire.DurabilityWritten), client.WithMaxBatchBytes(512<<10))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, client.Record{Value: []byte(strings.Repeat("B", 400_000))}, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}

	small, err := client.Dial(ctx, s.Addr().String(), client.WithMaxFrame(65536), client.WithLogger(servertest.Logger()),
		client.WithReconnectBackoff(10*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	accepted := s.Stats().Accepted.Load()
	cons, err := small.Subscribe(ctx, "wide", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	for i := range 40 {
		m, err := cons.Next(ctx)
		if err != nil || !strings.HasSuffix(string(m.Value), fmt.Sprint(i)) {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	nctx, ncancel := context.WithTimeout(ctx, 10*time.Second)
	defer ncancel()
	if _, err := cons.Next(nctx); !errors.Is(err, wire.CodeBatchTooLarge) {
		t.Fatalf("Next at the 400 KB record: %v, want CodeBatchTooLarge", err)
	}
	if n := s.Stats().Accepted.Load() - accepted; n != 0 {
		t.Fatalf("the client redialled %d times", n)
	}
	if _, err := small.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
