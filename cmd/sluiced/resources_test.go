package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// These tests hold the broker to its resource bounds (docs/architecture.md, "Memory bounds") against
// clients that misbehave on purpose, each over a raw connection where the Go client would not.

// rawSession dials the broker, says hello and sends the extra request frames built by reqs. The
// connection is closed when the test ends.
func rawSession(t *testing.T, b *broker, reqs ...func([]byte) []byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, start := wire.BeginFrame(nil, wire.OpHello, 0, 1)
	req = wire.EndFrame((&wire.Hello{Version: wire.ProtocolVersion}).Append(req), start)
	for _, r := range reqs {
		req = r(req)
	}
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	return conn
}

// subscribeFrame appends a Subscribe request with correlation id corr.
func subscribeFrame(corr uint32, m wire.Subscribe) func([]byte) []byte {
	return func(b []byte) []byte {
		b, start := wire.BeginFrame(b, wire.OpSubscribe, 0, corr)
		return wire.EndFrame(m.Append(b), start)
	}
}

// stalledConsumers opens n raw consumers of topic that grant 4 GiB of credit and never read.
func stalledConsumers(t *testing.T, b *broker, topic string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		rawSession(t, b, subscribeFrame(2, wire.Subscribe{SubID: 1, Topic: topic, Partition: -1,
			Start: wire.StartEarliest, Credit: 1<<32 - 1}))
	}
}

// TestManyStalledConsumersKeepMemoryBounded: the outbound bound holds for the broker as a whole, not
// per consumer: eight consumers that grant credit and stop reading while 192 MiB are produced keep
// sluiced under the documented bound.
func TestManyStalledConsumersKeepMemoryBounded(t *testing.T) {
	b := startBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "flood", 2)
	stalledConsumers(t, b, "flood", 8)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := c.Producer("flood", client.WithDurability(wire.DurabilityWritten), client.WithMaxBatchBytes(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("m", 4096))
	const n = 48 << 10 // 192 MiB
	var peak int64
	for i := 0; i < n; i++ {
		if err := p.Produce(ctx, client.Record{Value: value}, nil); err != nil {
			t.Fatal(err)
		}
		if i%2048 == 0 {
			peak = max(peak, rssAnon(t, b.cmd.Process.Pid))
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Deliveries to the stalled consumers run until every one is paused; sample for a while.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		peak = max(peak, rssAnon(t, b.cmd.Process.Pid))
	}
	t.Logf("sluiced anonymous RSS peak %d MiB with 8 stalled consumers and 192 MiB produced", peak>>20)
	if peak > memoryBound {
		t.Fatalf("sluiced anonymous RSS reached %d MiB, bound %d MiB", peak>>20, memoryBound>>20)
	}
	cons, err := c.Subscribe(ctx, "flood", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	for i := 0; i < n; i++ {
		if _, err := cons.Next(ctx); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}
