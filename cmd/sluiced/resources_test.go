package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server"
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

// readFrame reads one whole frame from conn, failing the test after 20 s.
func readFrame(t *testing.T, conn net.Conn) wire.Frame {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	hb := make([]byte, wire.FrameHeaderSize)
	if _, err := io.ReadFull(conn, hb); err != nil {
		t.Fatalf("reading a frame header from %v: %v", conn.LocalAddr(), err)
	}
	h, err := wire.ParseFrameHeader(hb, wire.DefaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, h.Size-wire.FrameHeaderSize)
	if _, err := io.ReadFull(conn, body); err != nil {
		t.Fatalf("reading a frame body: %v", err)
	}
	return wire.Frame{Op: h.Op, Flags: h.Flags, Corr: h.Corr, Body: body}
}

// answers reads frames until it has the answer to each correlation id in [first, last] and returns
// the error code of each (CodeOK for a success), skipping deliveries.
func answers(t *testing.T, conn net.Conn, first, last uint32) map[uint32]wire.Code {
	t.Helper()
	got := map[uint32]wire.Code{}
	for len(got) < int(last-first+1) {
		f := readFrame(t, conn)
		if f.Flags&wire.FlagResponse == 0 || f.Corr < first || f.Corr > last {
			continue
		}
		if f.Op == wire.OpError {
			var e wire.ErrorBody
			if err := e.Decode(f.Body); err != nil {
				t.Fatal(err)
			}
			got[f.Corr] = e.Code
			continue
		}
		got[f.Corr] = wire.CodeOK
	}
	return got
}

// subscribeMany sends n subscribes of topic with subscription ids and correlation ids from base on
// conn, then a ping, and returns the answers to the subscribes and whether the ping was answered.
func subscribeMany(t *testing.T, conn net.Conn, topic string, base uint32, n int) map[uint32]wire.Code {
	t.Helper()
	var req []byte
	for i := 0; i < n; i++ {
		req = subscribeFrame(base+uint32(i), wire.Subscribe{SubID: base + uint32(i), Topic: topic, Partition: 0,
			Start: wire.StartLatest, Credit: 1 << 20})(req)
	}
	req, start := wire.BeginFrame(req, wire.OpPing, 0, base+uint32(n))
	req = wire.EndFrame((&wire.Ping{Nonce: 1}).Append(req), start)
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	return answers(t, conn, base, base+uint32(n))
}

// TestSubscriptionsCappedPerConnectionAndPrincipal: a connection cannot open more than its cap of
// subscriptions (default 1000), nor a principal more than its cap across connections; the refused
// subscribe answers CodeThrottled and the connection carries on (the ping after it is answered).
func TestSubscriptionsCappedPerConnectionAndPrincipal(t *testing.T) {
	b := startBroker(t, t.TempDir(), "--max-subscriptions-per-principal", "1500")
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(b.log())
		}
	})
	c := dialBroker(t, b)
	createTopic(t, c, "subs", 1)

	conn := rawSession(t, b)
	got := subscribeMany(t, conn, "subs", 2, 1200)
	ok, throttled := 0, 0
	for corr, code := range got {
		switch {
		case corr == 2+1200 && code != wire.CodeOK:
			t.Fatalf("ping after the refused subscribes answered %v", code)
		case corr == 2+1200:
		case code == wire.CodeOK:
			ok++
		case code == wire.CodeThrottled:
			throttled++
		default:
			t.Fatalf("subscribe %d answered %v", corr, code)
		}
	}
	if ok != 1000 || throttled != 200 {
		t.Fatalf("one connection: %d subscribes accepted and %d throttled, want 1000 and 200", ok, throttled)
	}

	// With authentication, alice's two connections share her 1500.
	b2 := startBroker(t, t.TempDir(), "--max-subscriptions-per-principal", "1500", "--token", "secret=alice")
	admin, err := client.Dial(context.Background(), b2.addr, client.WithAuthToken("secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	createTopic(t, admin, "subs", 1)
	auth := func(req []byte) []byte {
		req, start := wire.BeginFrame(req, wire.OpAuth, 0, 1)
		return wire.EndFrame((&wire.Auth{Mechanism: "token", Payload: []byte("secret")}).Append(req), start)
	}
	accepted := 0
	defer func() {
		if t.Failed() {
			t.Log(b2.log())
		}
	}()
	for i := 0; i < 2; i++ {
		conn := rawSession(t, b2, auth)
		for corr, code := range subscribeMany(t, conn, "subs", 2, 1000) {
			if corr != 2+1000 && code == wire.CodeOK {
				accepted++
			} else if corr != 2+1000 && code != wire.CodeThrottled {
				t.Fatalf("subscribe %d answered %v", corr, code)
			}
		}
	}
	if accepted != 1500 {
		t.Fatalf("principal alice holds %d subscriptions over two connections, cap 1500", accepted)
	}
}

// TestReplyInboxesOfDeadClientsAreDeleted: requesters whose connections die (closed without a word,
// as a SIGKILLed process's are) leave no inbox topic and no memory segment behind once the grace
// period has passed; a requester that is still connected keeps its inbox.
func TestReplyInboxesOfDeadClientsAreDeleted(t *testing.T) {
	b := startBroker(t, t.TempDir(), "--inbox-grace", "1s")
	c := dialBroker(t, b)
	createTopic(t, c, "rpc", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A responder answers every request.
	resp, err := c.Subscribe(ctx, "rpc", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close(ctx)
	go func() {
		for {
			m, err := resp.Next(ctx)
			if err != nil {
				return
			}
			_ = c.Reply(ctx, m, client.Record{Value: []byte("pong")})
		}
	}()

	live := dialBroker(t, b)
	if _, err := live.Request(ctx, "rpc", client.Record{Value: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		// The dead requesters are raw connections doing what client.Request does, then dropped.
		name := fmt.Sprintf("%sdead%02d", server.InboxPrefix, i)
		conn := rawSession(t, b, func(req []byte) []byte {
			req, start := wire.BeginFrame(req, wire.OpCreateTopic, 0, 2)
			return wire.EndFrame((&wire.TopicConfig{Name: name, Partitions: 1, Flags: wire.TopicMemory}).Append(req), start)
		})
		if got := answers(t, conn, 2, 2); got[2] != wire.CodeOK {
			t.Fatalf("creating inbox %s: %v", name, got[2])
		}
		if _, err := conn.Write(subscribeFrame(3, wire.Subscribe{SubID: 1, Topic: name, Partition: 0, Start: wire.StartEarliest, Credit: 1 << 20})(nil)); err != nil {
			t.Fatal(err)
		}
		if got := answers(t, conn, 3, 3); got[3] != wire.CodeOK {
			t.Fatalf("subscribing to inbox %s: %v", name, got[3])
		}
		conn.(*net.TCPConn).SetLinger(0) // a reset, as the kernel sends for a killed process
		conn.Close()
	}
	inboxes := func() []string {
		topics, err := c.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tp := range topics {
			if strings.HasPrefix(tp.Name, server.InboxPrefix) {
				names = append(names, tp.Name)
			}
		}
		return names
	}
	// The live requester and the responder (Reply produces through its client's requester) keep
	// theirs.
	if names := inboxes(); len(names) != 12 {
		t.Fatalf("inboxes before the grace period: %v", names)
	}
	segments := func() []string {
		left, _ := filepath.Glob(filepath.Join(b.memoryDir(t), server.InboxPrefix+"dead*"))
		return left
	}
	if len(segments()) != 10 {
		t.Fatalf("memory segments of the dead inboxes before the grace period: %v", segments())
	}
	deadline := time.Now().Add(20 * time.Second)
	for (len(inboxes()) > 2 || len(segments()) > 0) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if names := inboxes(); len(names) != 2 || strings.Contains(strings.Join(names, ","), "dead") {
		t.Fatalf("inboxes left 20 s after their owners died (grace 1 s): %v", names)
	}
	// A late reply to a dead inbox does not bring it back as an ordinary topic (auto-creation is on).
	late, err := c.Producer(server.InboxPrefix+"dead00", client.WithDurability(wire.DurabilityWritten))
	if err == nil {
		lateCtx, lateCancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = late.Publish(lateCtx, client.Record{Value: []byte("late")})
		lateCancel()
	}
	if err == nil {
		t.Fatal("a reply to a deleted inbox was accepted")
	}
	if names := inboxes(); len(names) != 2 {
		t.Fatalf("inboxes after a late reply: %v", names)
	}
	// The live requester's inbox still works, and no dead inbox left memory segments behind.
	if _, err := live.Request(ctx, "rpc", client.Record{Value: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	if left := segments(); len(left) != 0 {
		t.Fatalf("memory segments of dead inboxes left: %v", left)
	}
}

// memoryDir is where the broker keeps memory-only topics: engine.Options' default for its data
// directory.
func (b *broker) memoryDir(t *testing.T) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		return filepath.Join(b.data, "memory")
	}
	abs, err := filepath.Abs(b.data)
	if err != nil {
		t.Fatal(err)
	}
	h := fnv.New64a()
	h.Write([]byte(abs))
	return filepath.Join("/dev/shm", fmt.Sprintf("sluice-%016x", h.Sum64()))
}

// bombBatch is a gzip batch of n empty records: a few hundred bytes on the wire that inflate to n
// records (and, with value bytes of zeros each, n*value bytes).
func bombBatch(t *testing.T, n, value int) []byte {
	t.Helper()
	b := wire.NewBatchBuilder(n*(value+16) + 1024)
	v := make([]byte, value)
	for range n {
		b.Append(nil, v, nil, 1700000000000)
	}
	plain, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	const hdr = 61 // the v2 batch header; the records follow
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	zw.Write(plain[hdr:])
	zw.Close()
	out := append(append([]byte(nil), plain[:hdr]...), z.Bytes()...)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))     // batch length
	binary.BigEndian.PutUint16(out[21:], uint16(wire.CodecGzip)) // attributes: gzip
	binary.BigEndian.PutUint32(out[17:], wire.BatchCRC(out))
	return out
}

// produceFrame appends a Produce request of batch to topic's partition 0.
func produceFrame(corr uint32, topic string, batch []byte) func([]byte) []byte {
	return func(b []byte) []byte {
		b, start := wire.BeginFrame(b, wire.OpProduce, 0, corr)
		return wire.EndFrame((&wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte(topic), Batches: batch}).Append(b), start)
	}
}

// discard reads and drops whatever conn receives until it is closed.
func discard(conn net.Conn) { go io.Copy(io.Discard, conn) }

// TestResourceSoak runs every hostile client together against one broker while a good producer and
// consumer carry on: pre-authentication partial frames, connections opening thousands of
// subscriptions, queue members that read and never ack, decompression bombs, and consumers that
// grant credit and stop reading. The broker's anonymous RSS stays under the documented bound the
// whole time, and the good consumer receives every record the good producer was acknowledged for.
// 20 s here; SLUICE_SOAK=1 (make soak) runs it for 5 minutes.
func TestResourceSoak(t *testing.T) {
	run := 20 * time.Second
	if os.Getenv("SLUICE_SOAK") != "" {
		run = 5 * time.Minute
	}
	b := startBroker(t, t.TempDir(), "--token", "good=alice", "--retention-bytes", "134217728")
	ctx, cancel := context.WithTimeout(context.Background(), run+3*time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, b.addr, client.WithAuthToken("good"), client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tp := range []struct {
		name  string
		parts uint32
	}{{"good", 2}, {"flood", 2}, {"work", 1}, {"subs", 1}} {
		createTopic(t, c, tp.name, tp.parts)
	}
	auth := func(req []byte) []byte {
		req, start := wire.BeginFrame(req, wire.OpAuth, 0, 1)
		return wire.EndFrame((&wire.Auth{Mechanism: "token", Payload: []byte("good")}).Append(req), start)
	}
	hostileCtx, stopHostile := context.WithTimeout(ctx, run)
	defer stopHostile()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopHostile()

	// Pre-authentication partial frames: a header announcing 16 MiB and part of the body, or three
	// bytes of a header, and then nothing.
	for i := range 32 {
		conn, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		partial := []byte{0, 0}
		if i%2 == 0 {
			partial = binary.BigEndian.AppendUint32(nil, wire.DefaultMaxFrame-4)
			partial = append(partial, byte(wire.OpHello), 0, 0, 0, 0, 1)
			partial = append(partial, make([]byte, 256<<10)...)
		}
		if _, err := conn.Write(partial); err != nil {
			t.Fatal(err)
		}
	}
	// Many subscriptions: four connections of the same principal ask for 5,000 each.
	for range 4 {
		conn := rawSession(t, b, auth)
		discard(conn)
		var req []byte
		for i := range 5000 {
			req = subscribeFrame(uint32(2+i), wire.Subscribe{SubID: uint32(1 + i), Topic: "subs", Partition: 0,
				Start: wire.StartLatest, Credit: 1 << 20})(req)
		}
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
	}
	// Never-acking queue members, asking to hold 2^31 records each, reading everything.
	for i := range 4 {
		conn := rawSession(t, b, auth, subscribeFrame(2, wire.Subscribe{SubID: 1, Topic: "work", Partition: -1,
			Group: "hoarders", Mode: wire.ModeQueue, Start: wire.StartEarliest, Credit: 1<<32 - 1,
			AckTimeoutMs: uint32(time.Hour.Milliseconds()), MaxAckPending: 1 << 31}))
		if i%2 == 0 {
			discard(conn)
		} // the others stall as well
	}
	// Stalled consumers of the flood.
	for range 8 {
		rawSession(t, b, auth, subscribeFrame(2, wire.Subscribe{SubID: 1, Topic: "flood", Partition: -1,
			Start: wire.StartEarliest, Credit: 1<<32 - 1}))
	}
	// Decompression bombs into the work queue and the flood, every 250 ms.
	bombs := [][]byte{bombBatch(t, 200_000, 0), bombBatch(t, 1, 32<<20)}
	bomber := rawSession(t, b, auth)
	discard(bomber)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint32(0); hostileCtx.Err() == nil; i++ {
			bomb := bombs[i%2]
			topic := []string{"work", "flood"}[i/2%2]
			if _, err := bomber.Write(produceFrame(2+i, topic, bomb)(nil)); err != nil {
				return
			}
			select {
			case <-hostileCtx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	// Producers feeding the flood (4 KiB records, 2 MiB/s after a 64 MiB burst) and the work queue.
	wg.Add(1)
	go func() {
		defer wg.Done()
		flood, _ := c.Producer("flood", client.WithDurability(wire.DurabilityWritten), client.WithMaxBatchBytes(256<<10))
		work, _ := c.Producer("work", client.WithDurability(wire.DurabilityWritten))
		value := []byte(strings.Repeat("m", 4096))
		for i := 0; hostileCtx.Err() == nil; i++ {
			if flood.Produce(hostileCtx, client.Record{Value: value}, nil) != nil {
				return
			}
			if i%8 == 0 && work.Produce(hostileCtx, client.Record{Value: value[:1024]}, nil) != nil {
				return
			}
			if i > 16<<10 && i%512 == 0 {
				time.Sleep(time.Second)
			}
		}
	}()

	// The good pair: every record acknowledged to the producer reaches the consumer, in order per
	// partition.
	cons, err := c.Subscribe(ctx, "good", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	var mu sync.Mutex
	received := map[string]int{}
	consErr := make(chan error, 1)
	go func() {
		last := map[int32]int64{}
		for {
			m, err := cons.Next(ctx)
			if err != nil {
				consErr <- err
				return
			}
			if prev, ok := last[m.Partition]; ok && m.Offset != prev+1 {
				consErr <- fmt.Errorf("partition %d: offset %d after %d", m.Partition, m.Offset, prev)
				return
			}
			last[m.Partition] = m.Offset
			mu.Lock()
			received[string(m.Value)]++
			mu.Unlock()
		}
	}()
	prod, err := c.Producer("good", client.WithDurability(wire.DurabilityWritten))
	if err != nil {
		t.Fatal(err)
	}
	var peak int64
	acked := 0
	for i := 0; hostileCtx.Err() == nil; i++ {
		if _, err := prod.Publish(ctx, client.Record{Key: []byte(keyOf(i)), Value: []byte(valueOf(i))}); err != nil {
			t.Fatalf("good record %d: %v", i, err)
		}
		acked++
		if i%50 == 0 {
			peak = max(peak, rssAnon(t, b.cmd.Process.Pid))
		}
	}
	peak = max(peak, rssAnon(t, b.cmd.Process.Pid))
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n == acked {
			break
		}
		select {
		case err := <-consErr:
			t.Fatalf("good consumer after %d of %d records: %v", n, acked, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("good consumer has %d of the %d records acknowledged to the good producer", n, acked)
		}
	}
	for i := 0; i < acked; i++ {
		if received[valueOf(i)] != 1 {
			t.Fatalf("good record %d received %d times", i, received[valueOf(i)])
		}
	}
	peak = max(peak, rssAnon(t, b.cmd.Process.Pid))
	t.Logf("%d good records through in %v beside the hostile clients; sluiced anonymous RSS peak %d MiB", acked, run, peak>>20)
	if peak > memoryBound {
		t.Fatalf("sluiced anonymous RSS reached %d MiB, bound %d MiB", peak>>20, memoryBound>>20)
	}
}

// TestReplyInboxSurvivesReconnect: a client that reconnects and resubscribes to its inbox keeps it,
// whether its new connection subscribes after the old one is gone or before the broker has seen it
// go; once the last of them is gone, the inbox is deleted after the grace period.
func TestReplyInboxSurvivesReconnect(t *testing.T) {
	b := startBroker(t, t.TempDir(), "--inbox-grace", "1s")
	c := dialBroker(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const name = server.InboxPrefix + "reconnecting"
	create := func(req []byte) []byte {
		req, start := wire.BeginFrame(req, wire.OpCreateTopic, 0, 2)
		return wire.EndFrame((&wire.TopicConfig{Name: name, Partitions: 1, Flags: wire.TopicMemory}).Append(req), start)
	}
	subscribe := subscribeFrame(3, wire.Subscribe{SubID: 1, Topic: name, Partition: 0, Start: wire.StartEarliest, Credit: 1 << 20})
	exists := func() bool {
		topics, err := c.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tp := range topics {
			if tp.Name == name {
				return true
			}
		}
		return false
	}
	first := rawSession(t, b, create)
	if got := answers(t, first, 2, 2); got[2] != wire.CodeOK {
		t.Fatalf("creating the inbox: %v", got[2])
	}
	// The second connection subscribes while the first is still open, then the first goes.
	second := rawSession(t, b, subscribe)
	if got := answers(t, second, 3, 3); got[3] != wire.CodeOK {
		t.Fatalf("resubscribing: %v", got[3])
	}
	first.Close()
	time.Sleep(2500 * time.Millisecond) // more than the grace period: the inbox must still be there
	if !exists() {
		t.Fatal("the inbox was deleted while a reconnected client held it")
	}
	// The third subscribes after the second is gone, within the grace period.
	second.Close()
	third := rawSession(t, b, subscribe)
	if got := answers(t, third, 3, 3); got[3] != wire.CodeOK {
		t.Fatalf("resubscribing: %v", got[3])
	}
	time.Sleep(2500 * time.Millisecond)
	if !exists() {
		t.Fatal("the inbox was deleted while a reconnected client held it")
	}
	third.Close()
	for deadline := time.Now().Add(20 * time.Second); exists(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the inbox outlived its last connection by 20 s (grace 1 s)")
		}
	}
}
