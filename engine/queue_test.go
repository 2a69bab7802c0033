package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// queueTopic creates topic "q" of one partition and stores n records in it at written durability.
func queueTopic(t *testing.T, e *Engine, n int) {
	t.Helper()
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "q", 1, n, wire.DurabilityWritten)
}

// takeAll reads deliveries from l until it has want records (waiting up to 5 s for each), then
// checks for 300 ms that nothing more comes; acking with ack. It returns the offsets, sorted.
func takeAll(t *testing.T, l *Local, want int, ack bool) []int64 {
	t.Helper()
	var got []int64
	for len(got) < want {
		_, offs, _, ok := takeRecords(t, l, 5*time.Second)
		if !ok {
			break
		}
		got = append(got, offs...)
		if ack {
			if err := l.Ack(0, offs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, offs, _, ok := takeRecords(t, l, 300*time.Millisecond); ok {
		got = append(got, offs...)
	}
	slices.Sort(got)
	return got
}

func queueSpec(timeout time.Duration, maxDeliveries uint16) wire.Subscribe {
	return wire.Subscribe{Topic: "q", Partition: -1, Group: "workers", Mode: wire.ModeQueue,
		Start: wire.StartEarliest, AckTimeoutMs: uint32(timeout.Milliseconds()), MaxDeliveries: maxDeliveries}
}

// TestWorkQueueSurvivesRestart: 40 records, the odd offsets acked, the engine closed and opened
// again: only the 20 unacked records come back, not the acked ones above the first unacked record.
func TestWorkQueueSurvivesRestart(t *testing.T) {
	o := testOptions(t)
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	queueTopic(t, e, 40)
	l, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for len(got) < 40 {
		_, offs, _, ok := takeRecords(t, l, time.Second)
		if !ok {
			t.Fatalf("got %d of 40 records", len(got))
		}
		got = append(got, offs...)
	}
	var odd []int64
	for off := int64(1); off < 40; off += 2 {
		odd = append(odd, off)
	}
	if err := l.Ack(0, odd...); err != nil {
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
	got = takeAll(t, l, 20, false)
	var want []int64
	for off := int64(0); off < 40; off += 2 {
		want = append(want, off)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after restart delivered %v, want the 20 unacked even offsets %v", got, want)
	}
}

// corruptBatch is a CRC-valid batch of n records whose attributes say gzip and whose body is not.
func corruptBatch(t *testing.T, n int) []byte {
	t.Helper()
	b := wire.NewBatchBuilder(1024)
	for i := range n {
		b.Append(nil, []byte("poison "+strconv.Itoa(i)), nil, 1700000000000)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	out = append([]byte(nil), out...)
	out[22] |= byte(wire.CodecGzip) // attributes (int16 at 21): the low bits are the codec
	binary.BigEndian.PutUint32(out[17:], wire.BatchCRC(out))
	return out
}

// appendRaw stores batch in partition 0 of topic straight through the log, as a broker that
// accepted it before produce-time checks would have.
func appendRaw(t *testing.T, e *Engine, topic string, batch []byte) {
	t.Helper()
	if _, err := e.TopicByName(topic).Partition(0).log.Append(batch); err != nil {
		t.Fatal(err)
	}
}

// dlqRecords reads every record of topic's dead-letter topic.
func dlqRecords(t *testing.T, e *Engine, topic string, n int) []wire.Record {
	t.Helper()
	name := DeadLetterTopic(topic)
	deadline := time.Now().Add(10 * time.Second)
	for e.TopicByName(name) == nil || e.TopicByName(name).Partition(0).NextOffset() < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("dead-letter topic %s never got %d records", name, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: name, Partition: 0, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []wire.Record
	for len(out) < n {
		d, err := l.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var it wire.RecordIter
		for rest := d.Batches(); len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				t.Fatal(err)
			}
			rest = rest[h.Size():]
			var r wire.Record
			for it.Next(&r) {
				out = append(out, cloneRecord(r))
			}
		}
	}
	return out
}

// cloneRecord copies r out of its delivery, by encoding it into a batch of its own.
func cloneRecord(r wire.Record) wire.Record {
	hdrs := r.AppendHeaders(nil)
	for i := range hdrs {
		hdrs[i].Key, hdrs[i].Value = slices.Clone(hdrs[i].Key), slices.Clone(hdrs[i].Value)
	}
	b := wire.NewBatchBuilder(256)
	b.Append(slices.Clone(r.Key), slices.Clone(r.Value), hdrs, r.Timestamp)
	raw, _ := b.Build()
	raw = slices.Clone(raw)
	var it wire.RecordIter
	var c wire.Record
	if _, err := it.Reset(raw); err != nil || !it.Next(&c) {
		panic("clone")
	}
	c.Offset = r.Offset
	return c
}

func header(r wire.Record, k string) string {
	v, _ := r.Header(k)
	return string(v)
}

// TestWorkQueueUndecodableToDeadLetter: a stored batch that cannot be decompressed is never handed to
// a member; it goes to the dead-letter topic whole, with a reason, and is settled, and the records
// around it are delivered as usual.
func TestWorkQueueUndecodableToDeadLetter(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "q", 1, 3, wire.DurabilityWritten) // 0..2
	bad := corruptBatch(t, 3)
	appendRaw(t, e, "q", bad)                        // 3..5
	produce(t, e, "q", 1, 2, wire.DurabilityWritten) // 6..7
	l, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := takeAll(t, l, 5, true); !slices.Equal(got, []int64{0, 1, 2, 6, 7}) {
		t.Fatalf("delivered %v, want 0..2 and 6..7", got)
	}
	recs := dlqRecords(t, e, "q", 1)
	r := recs[0]
	if !strings.HasPrefix(header(r, "sluice-dlq-reason"), "undecodable") || header(r, "sluice-dlq-offset") != "3" ||
		header(r, "sluice-dlq-last-offset") != "5" {
		t.Fatalf("dead letter headers: reason %q offset %q last %q", header(r, "sluice-dlq-reason"),
			header(r, "sluice-dlq-offset"), header(r, "sluice-dlq-last-offset"))
	}
	if h, err := wire.ParseBatchHeader(r.Value); err != nil || h.RecordCount != 3 || h.Size() != len(bad) {
		t.Fatalf("dead letter value is not the stored batch: %v %+v", err, h)
	}
	waitCommitted(t, e, "q", 8)
}

// waitCommitted waits for the queue's committed floor on partition 0 to reach want.
func waitCommitted(t *testing.T, e *Engine, topic string, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.CommittedOffset("workers", topic, 0) != want {
		if time.Now().After(deadline) {
			t.Fatalf("committed floor %d, want %d", e.CommittedOffset("workers", topic, 0), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkQueueUndecodableRedelivery: a record due for redelivery (here restored after a restart)
// whose batch cannot be decoded goes to the dead-letter topic instead of failing the member.
func TestWorkQueueUndecodableRedelivery(t *testing.T) {
	o := testOptions(t)
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	appendRaw(t, e, "q", corruptBatch(t, 2))         // 0..1
	produce(t, e, "q", 1, 1, wire.DurabilityWritten) // 2
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// The queue had dispatched 0..1 and holds them unsettled.
	st := []queueState{{OffsetKey: OffsetKey{Group: "workers", Topic: "q"}, Floor: 0, Next: 2, Unsettled: [][2]int64{{0, 2}}}}
	if err := os.WriteFile(filepath.Join(o.DataDir, "offsets", "queues.json"), mustJSON(st), 0o644); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, o)
	l, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, offs, _, ok := takeRecords(t, l, 2*time.Second)
	if !ok || !slices.Equal(offs, []int64{2}) {
		t.Fatalf("delivered %v, want offset 2 alone", offs)
	}
	if err := l.Ack(0, 2); err != nil {
		t.Fatal(err)
	}
	recs := dlqRecords(t, e, "q", 2)
	var srcs []string
	for _, r := range recs {
		if !strings.HasPrefix(header(r, "sluice-dlq-reason"), "undecodable") {
			t.Fatalf("reason %q", header(r, "sluice-dlq-reason"))
		}
		srcs = append(srcs, header(r, "sluice-dlq-offset"))
	}
	slices.Sort(srcs)
	if !slices.Equal(srcs, []string{"0", "1"}) {
		t.Fatalf("dead letters for offsets %v, want 0 and 1", srcs)
	}
	waitCommitted(t, e, "q", 3)
}

// TestDeadLetterTopicName: the dead-letter topic of any valid name is a valid name, and a queue on a
// 249-byte topic dead-letters its records.
func TestDeadLetterTopicName(t *testing.T) {
	for _, n := range []int{1, 245, 246, 247, 249} {
		name := strings.Repeat("t", n)
		dlq := DeadLetterTopic(name)
		if err := validTopicName(dlq); err != nil || len(dlq) > 249 || !strings.HasSuffix(dlq, DeadLetterSuffix) {
			t.Fatalf("DeadLetterTopic(%d bytes) = %q (%d bytes): %v", n, dlq, len(dlq), err)
		}
	}
	a, b := strings.Repeat("a", 240)+"x", strings.Repeat("a", 240)+"y"
	if DeadLetterTopic(a) == DeadLetterTopic(b) {
		t.Fatal("long names sharing a prefix share a dead-letter topic")
	}
	e := openEngine(t, testOptions(t))
	name := strings.Repeat("q", 248)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, name, 1, 1, wire.DurabilityWritten)
	spec := queueSpec(time.Minute, 1)
	spec.Topic = name
	l, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, offs, _, ok := takeRecords(t, l, time.Second); !ok || len(offs) != 1 {
		t.Fatalf("delivery %v", offs)
	}
	if err := l.Nack(0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, offs, _, ok := takeRecords(t, l, 300*time.Millisecond); ok {
		t.Fatalf("a record at its delivery limit was delivered again: %v", offs)
	}
	r := dlqRecords(t, e, name, 1)[0]
	if header(r, "sluice-dlq-reason") != "max-deliveries" || string(r.Value) != "value 0/0" {
		t.Fatalf("dead letter %q reason %q", r.Value, header(r, "sluice-dlq-reason"))
	}
	waitCommitted(t, e, name, 1)
}

// TestDeadLetterOffTheCaller: dead-lettering never runs topic creation on the goroutine that takes
// records (a gnet loop in the broker): with topic administration blocked, Next still returns.
func TestDeadLetterOffTheCaller(t *testing.T) {
	e := openEngine(t, testOptions(t))
	queueTopic(t, e, 1)
	l, err := e.SubscribeLocal(queueSpec(time.Minute, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, offs, _, ok := takeRecords(t, l, time.Second); !ok || len(offs) != 1 {
		t.Fatalf("delivery %v", offs)
	}
	if err := l.Nack(0, 0, 0); err != nil { // due again, at its delivery limit
		t.Fatal(err)
	}
	produce(t, e, "q", 1, 1, wire.DurabilityWritten)
	e.adminMu.Lock() // topic creation (mkdir, fsync, fallocate) cannot finish
	type result struct {
		offs []int64
		ok   bool
	}
	done := make(chan result, 1)
	go func() {
		_, offs, _, ok := takeRecords(t, l, 5*time.Second)
		done <- result{offs, ok}
	}()
	select {
	case r := <-done:
		e.adminMu.Unlock()
		if !r.ok || !slices.Equal(r.offs, []int64{1}) {
			t.Fatalf("delivered %v, want offset 1", r.offs)
		}
	case <-time.After(3 * time.Second):
		e.adminMu.Unlock()
		<-done
		t.Fatal("taking records waited for the dead-letter topic to be created")
	}
	dlqRecords(t, e, "q", 1)
}

// TestWorkQueueDeletedTopicForgotten: deleting a topic drops its queues' state, in memory and on
// disk; a topic created under the same name starts a fresh queue, after a restart too, and no
// floor of the old topic is committed.
func TestWorkQueueDeletedTopicForgotten(t *testing.T) {
	o := testOptions(t)
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	queueTopic(t, e, 10)
	l, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	if _, offs, _, ok := takeRecords(t, l, time.Second); !ok || len(offs) != 10 {
		t.Fatalf("delivery %v", offs)
	}
	if err := l.Ack(0, 0, 1, 2, 5, 7); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, e, "q", 3)
	if err := e.DeleteTopic("q"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(o.DataDir, "offsets", "queues.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sts []queueState
	if err := json.Unmarshal(raw, &sts); err != nil || len(sts) != 0 {
		t.Fatalf("queue state after the delete: %s (%v)", raw, err)
	}
	l.Close()
	time.Sleep(3 * janitorInterval) // the janitor runs: it must commit nothing for the old topic
	if got := e.CommittedOffset("workers", "q", 0); got != -1 {
		t.Fatalf("committed floor %d for a deleted topic", got)
	}
	queueTopic(t, e, 4)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, o)
	l, err = e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := takeAll(t, l, 4, false); !slices.Equal(got, []int64{0, 1, 2, 3}) {
		t.Fatalf("the recreated topic's queue delivered %v, want 0..3", got)
	}
}

// BenchmarkQueueRedeliver: one work-queue redelivery out of 1000 due records: take the record (a
// one-record batch built for it) and nack it, due again at once.
func BenchmarkQueueRedeliver(b *testing.B) {
	e := openEngine(b, testOptions(b))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	produce(b, e, "q", 1, 1000, wire.DurabilityWritten)
	s, _, err := e.Subscribe(queueSpec(time.Hour, 0xffff), nopOwner{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var offs []int64
	for len(offs) < 1000 {
		s.AddCredit(1 << 30)
		s.ReadyAll()
		d, ok, err := s.Next(1 << 20)
		if !ok || err != nil {
			b.Fatalf("first deliveries: %d records, %v", len(offs), err)
		}
		for rest := d.Batches(); len(rest) > 0; {
			h, err := wire.ParseBatchHeader(rest)
			if err != nil {
				b.Fatal(err)
			}
			for off := h.BaseOffset; off <= h.LastOffset(); off++ {
				offs = append(offs, off)
			}
			rest = rest[h.Size():]
		}
		d.Release()
	}
	if err := s.Nack(0, len(offs), func(i int) int64 { return offs[i] }, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.AddCredit(1 << 20)
		s.ReadyAll()
		d, ok, err := s.Next(1 << 20)
		if !ok || err != nil {
			b.Fatalf("redelivery: %v %v", ok, err)
		}
		h, _ := wire.ParseBatchHeader(d.Batches())
		d.Release()
		if err := s.Nack(0, 1, func(int) int64 { return h.BaseOffset }, 0); err != nil {
			b.Fatal(err)
		}
	}
}
