package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// txnBatch builds a transactional batch of producer pid with the given values.
func txnBatch(t *testing.T, pid int64, epoch int16, seq int32, values ...string) []byte {
	t.Helper()
	b := wire.NewBatchBuilder(1024)
	b.SetProducer(pid, epoch, seq)
	for _, v := range values {
		b.Append(nil, []byte(v), nil, 1)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	out = append([]byte(nil), out...)
	wire.MarkTransactional(out)
	return out
}

func plainBatch(t *testing.T, values ...string) []byte {
	t.Helper()
	b := wire.NewBatchBuilder(1024)
	for _, v := range values {
		b.Append(nil, []byte(v), nil, 1)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), out...)
}

func appendTo(t *testing.T, e *Engine, topic string, part int32, batch []byte) {
	t.Helper()
	if _, _, err := e.TopicByName(topic).Partition(part).Append(batch); err != nil {
		t.Fatalf("append to %s/%d: %v", topic, part, err)
	}
}

// subscribeAll opens a subscription from the earliest offset on every partition of topic.
func subscribeAll(t *testing.T, e *Engine, topic string) *Local {
	t.Helper()
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: topic, Partition: -1, Start: wire.StartEarliest, Credit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// values reads deliveries from l for up to wait and returns the record values seen; it fails the
// test on a control record delivered.
func values(t *testing.T, l *Local, wait time.Duration, until func([]string) bool) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var out []string
	var it wire.RecordIter
	var r wire.Record
	for until == nil || !until(out) {
		d, err := l.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for rest := d.Batches(); len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				t.Fatal(err)
			}
			if h.IsControl() {
				t.Fatalf("a control batch was delivered at offset %d", h.BaseOffset)
			}
			rest = rest[h.Size():]
			for it.Next(&r) {
				out = append(out, string(r.Value))
			}
		}
	}
	return out
}

func has(vals []string, v string) bool {
	for _, x := range vals {
		if x == v {
			return true
		}
	}
	return false
}

func untilHas(v string) func([]string) bool { return func(s []string) bool { return has(s, v) } }

// Three partitions of two topics: nothing of the transaction is visible until EndTxn, then all of
// it is, and no marker is ever delivered.
func TestTxnCommitVisibleAtOnceAcrossTopics(t *testing.T) {
	e := openEngine(t, testOptions(t))
	for _, name := range []string{"a", "b"} {
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 2}); err != nil {
			t.Fatal(err)
		}
	}
	const pid = 77
	appendTo(t, e, "a", 0, plainBatch(t, "before-a0"))
	appendTo(t, e, "a", 0, txnBatch(t, pid, 0, 0, "t-a0-1", "t-a0-2"))
	appendTo(t, e, "a", 1, txnBatch(t, pid, 0, 0, "t-a1"))
	appendTo(t, e, "b", 0, txnBatch(t, pid, 0, 0, "t-b0"))
	appendTo(t, e, "a", 0, plainBatch(t, "after-a0")) // behind the open transaction: held back too
	la, lb := subscribeAll(t, e, "a"), subscribeAll(t, e, "b")

	got := values(t, la, 300*time.Millisecond, nil)
	if len(got) != 1 || got[0] != "before-a0" {
		t.Fatalf("before the commit, topic a delivered %q, want only before-a0", got)
	}
	if got := values(t, lb, 100*time.Millisecond, nil); len(got) != 0 {
		t.Fatalf("before the commit, topic b delivered %q", got)
	}
	if lso := e.TopicByName("a").Partition(0).StableOffset(); lso != 1 {
		t.Fatalf("a/0 LSO %d, want 1 (the transaction's first offset)", lso)
	}
	if err := e.EndTxn(pid, 0, true); err != nil {
		t.Fatal(err)
	}
	got = values(t, la, 10*time.Second, func(s []string) bool { return len(s) == 4 })
	for _, v := range []string{"t-a0-1", "t-a0-2", "t-a1", "after-a0"} {
		if !has(got, v) {
			t.Fatalf("after the commit topic a delivered %q, missing %s", got, v)
		}
	}
	if got := values(t, lb, 10*time.Second, untilHas("t-b0")); !has(got, "t-b0") {
		t.Fatalf("after the commit topic b delivered %q", got)
	}
	p := e.TopicByName("a").Partition(0)
	if p.StableOffset() != p.NextOffset() {
		t.Fatalf("LSO %d after the commit, end %d", p.StableOffset(), p.NextOffset())
	}
	// The same producer's next transaction continues its sequence.
	appendTo(t, e, "b", 0, txnBatch(t, pid, 0, 1, "t2"))
	if err := e.EndTxn(pid, 0, true); err != nil {
		t.Fatal(err)
	}
	if got := values(t, lb, 10*time.Second, untilHas("t2")); !has(got, "t2") {
		t.Fatalf("second transaction: %q", got)
	}
}

// An aborted transaction is never delivered, before or after a restart (the aborted ranges are
// rebuilt from the markers), while what surrounds it is.
func TestTxnAbortNeverVisible(t *testing.T) {
	o := testOptions(t)
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "a", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	appendTo(t, e, "a", 0, txnBatch(t, 5, 0, 0, "x1"))
	appendTo(t, e, "a", 1, txnBatch(t, 5, 0, 0, "x2"))
	appendTo(t, e, "a", 0, plainBatch(t, "plain"))
	if err := e.EndTxn(5, 0, false); err != nil {
		t.Fatal(err)
	}
	appendTo(t, e, "a", 1, plainBatch(t, "end"))
	check := func(e *Engine) {
		t.Helper()
		got := values(t, subscribeAll(t, e, "a"), 10*time.Second, func(s []string) bool { return has(s, "end") && has(s, "plain") })
		if has(got, "x1") || has(got, "x2") || len(got) != 2 {
			t.Fatalf("delivered %q: want plain and end only", got)
		}
	}
	check(e)
	// The aborted ranges, for a Kafka listener: one per partition, producer 5 from offset 0.
	for part := int32(0); part < 2; part++ {
		got := e.TopicByName("a").Partition(part).AbortedTxns(nil, 0, 100)
		if len(got) != 1 || got[0].ProducerID != 5 || got[0].FirstOffset != 0 {
			t.Fatalf("partition %d: aborted %+v", part, got)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	check(openEngine(t, o))
}

// A transaction left open by a crash (the engine closed without EndTxn) is aborted at the next Open.
func TestTxnRecoveryAbortsUndecided(t *testing.T) {
	o := testOptions(t)
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "a", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		appendTo(t, e, "a", p, txnBatch(t, 9, 0, 0, fmt.Sprintf("u%d", p)))
	}
	appendTo(t, e, "a", 2, plainBatch(t, "end"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, o)
	got := values(t, subscribeAll(t, e, "a"), 10*time.Second, untilHas("end"))
	if len(got) != 1 {
		t.Fatalf("after recovery delivered %q, want only end", got)
	}
	for p := int32(0); p < 3; p++ {
		if part := e.TopicByName("a").Partition(p); part.StableOffset() != part.NextOffset() {
			t.Fatalf("partition %d: LSO %d, end %d: the transaction is still open", p, part.StableOffset(), part.NextOffset())
		}
	}
}

// A commit cut short after its decision is durable (here after the first of three markers, and
// before any) is completed at the next Open: every partition's part becomes visible.
func TestTxnRecoveryCompletesDecidedCommit(t *testing.T) {
	for _, stop := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("after %d markers", stop), func(t *testing.T) {
			o := testOptions(t)
			e := openEngine(t, o)
			if _, err := e.CreateTopic(wire.TopicConfig{Name: "a", Partitions: 2}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.CreateTopic(wire.TopicConfig{Name: "b", Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			appendTo(t, e, "a", 0, txnBatch(t, 3, 0, 0, "c-a0"))
			appendTo(t, e, "a", 1, txnBatch(t, 3, 0, 0, "c-a1"))
			appendTo(t, e, "b", 0, txnBatch(t, 3, 0, 0, "c-b0"))
			txnCrashHook = func(stage int) bool { return stage == stop }
			t.Cleanup(func() { txnCrashHook = nil })
			if err := e.EndTxn(3, 0, true); err != nil {
				t.Fatal(err)
			}
			txnCrashHook = nil
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e = openEngine(t, o)
			got := values(t, subscribeAll(t, e, "a"), 10*time.Second, func(s []string) bool { return len(s) == 2 })
			if !has(got, "c-a0") || !has(got, "c-a1") {
				t.Fatalf("topic a after recovery: %q", got)
			}
			if got := values(t, subscribeAll(t, e, "b"), 10*time.Second, untilHas("c-b0")); len(got) != 1 {
				t.Fatalf("topic b after recovery: %q", got)
			}
			// Recovery emptied the transaction log; a later transaction of the producer is undecided
			// and aborted by the next crash, not committed by the old record.
			appendTo(t, e, "b", 0, txnBatch(t, 3, 0, 1, "later"))
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e = openEngine(t, o)
			appendTo(t, e, "b", 0, plainBatch(t, "end"))
			if got := values(t, subscribeAll(t, e, "b"), 10*time.Second, untilHas("end")); has(got, "later") {
				t.Fatalf("an undecided transaction was delivered: %q", got)
			}
		})
	}
}

// Producers cannot write control batches, and one request's transactional batches are of one producer.
func TestTxnProduceChecks(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "a", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := e.TopicByName("a").Partition(0)
	ctrl := wire.AppendControlBatch(nil, 1, 0, true, 1)
	if _, _, err := p.Append(ctrl); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("a produced control batch: %v, want CodeInvalidRequest", err)
	}
	two := append(txnBatch(t, 1, 0, 0, "a"), txnBatch(t, 2, 0, 0, "b")...)
	if _, _, err := p.Append(two); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("two producers in one request: %v, want CodeInvalidRequest", err)
	}
	if p.NextOffset() != 0 {
		t.Fatalf("refused batches were stored: end %d", p.NextOffset())
	}
}

// A transaction open longer than TxnTimeout is aborted by the broker.
func TestTxnTimeoutAborts(t *testing.T) {
	o := testOptions(t)
	o.TxnTimeout = time.Millisecond
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "a", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	appendTo(t, e, "a", 0, txnBatch(t, 4, 0, 0, "abandoned"))
	appendTo(t, e, "a", 0, plainBatch(t, "end"))
	got := values(t, subscribeAll(t, e, "a"), 20*time.Second, untilHas("end"))
	if has(got, "abandoned") {
		t.Fatalf("an abandoned transaction was delivered: %q", got)
	}
}

// Work-queue members read committed data too: nothing past an open transaction's first batch, no
// aborted batch, no marker; the skipped offsets settle like acked ones.
func TestTxnWorkQueueReadsCommitted(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	appendTo(t, e, "q", 0, txnBatch(t, 1, 0, 0, "aborted"))
	appendTo(t, e, "q", 0, txnBatch(t, 2, 0, 0, "committed"))
	if err := e.EndTxn(1, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := e.EndTxn(2, 0, true); err != nil {
		t.Fatal(err)
	}
	appendTo(t, e, "q", 0, plainBatch(t, "plain"))
	appendTo(t, e, "q", 0, txnBatch(t, 3, 0, 0, "open"))
	appendTo(t, e, "q", 0, plainBatch(t, "behind"))
	l, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := values(t, l, 500*time.Millisecond, nil)
	if len(got) != 2 || !has(got, "committed") || !has(got, "plain") {
		t.Fatalf("queue member got %q before the open transaction ended, want committed and plain", got)
	}
	if err := e.EndTxn(3, 0, true); err != nil {
		t.Fatal(err)
	}
	got = values(t, l, 10*time.Second, func(s []string) bool { return len(s) == 2 })
	if !has(got, "open") || !has(got, "behind") {
		t.Fatalf("after the commit the queue member got %q", got)
	}
}
