package engine

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// TestWorkQueueTrackedStateBounded: members that read and never ack hold at most the partition's
// QueueMaxTracked records between them, each at most QueueMaxAckPendingLimit whatever it asks for.
func TestWorkQueueTrackedStateBounded(t *testing.T) {
	o := testOptions(t)
	o.QueueMaxTracked, o.QueueMaxAckPendingLimit = 500, 200
	e := openEngine(t, o)
	queueTopic(t, e, 2000)
	total := 0
	for range 4 {
		spec := queueSpec(time.Hour, 5)
		spec.MaxAckPending = 1 << 31
		l, err := e.SubscribeLocal(spec)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		held := 0
		for {
			_, offs, _, ok := takeRecords(t, l, 500*time.Millisecond)
			if !ok {
				break
			}
			held += len(offs)
		}
		if held > 200 {
			t.Fatalf("a member asking for 2^31 holds %d records, limit 200", held)
		}
		total += held
	}
	if total != 500 {
		t.Fatalf("members hold %d records between them, want the partition's bound of 500", total)
	}
}

// TestWorkQueueHugeClaimedBatchCostsOneEntry: a stored batch that claims two million records and
// cannot be decoded is tracked as one dead-letter run, not per claimed record.
func TestWorkQueueHugeClaimedBatchCostsOneEntry(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	batch := corruptBatch(t, 1)
	binary.BigEndian.PutUint32(batch[23:], 2_000_000-1) // lastOffsetDelta
	binary.BigEndian.PutUint32(batch[57:], 2_000_000)   // record count: claims 2,000,000 records
	binary.BigEndian.PutUint32(batch[17:], wire.BatchCRC(batch))
	appendRaw(t, e, "q", batch)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l, err := e.SubscribeLocal(queueSpec(time.Hour, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := takeAll(t, l, 1, false); len(got) != 0 {
		t.Fatalf("delivered %v from an undecodable batch", got)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Fatalf("the heap grew by %d MiB for one batch claiming 2,000,000 records", grew>>20)
	}
}

// TestWorkQueueSweepIgnoresUnexpired: the janitor's sweep costs what expired, not what is pending:
// with 100,000 records pending and none due, a sweep visits none of them.
func TestWorkQueueSweepIgnoresUnexpired(t *testing.T) {
	o := testOptions(t)
	o.QueueMaxAckPendingLimit = 100_000
	e := openEngine(t, o)
	queueTopic(t, e, 100_000)
	spec := queueSpec(time.Hour, 5)
	spec.MaxAckPending = 100_000
	l, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := len(takeAll(t, l, 100_000, false)); got != 100_000 {
		t.Fatalf("took %d records, want 100000", got)
	}
	const sweeps = 50
	start := time.Now()
	for range sweeps {
		e.queues.sweep(false)
	}
	per := time.Since(start) / sweeps
	t.Logf("one sweep with 100,000 records pending: %v", per)
	if per > 2*time.Millisecond {
		t.Fatalf("one sweep with 100,000 records pending took %v: it scans what has not expired", per)
	}
}

// gzipBatch is a gzip batch of n records with value bytes of zeros each.
func gzipBatch(t *testing.T, n, value int) []byte {
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
	zw := gzip.NewWriter(&z)
	zw.Write(plain[hdr:])
	zw.Close()
	out := append(append([]byte(nil), plain[:hdr]...), z.Bytes()...)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint16(out[21:], uint16(wire.CodecGzip))
	binary.BigEndian.PutUint32(out[17:], wire.BatchCRC(out))
	return out
}

// TestWorkQueueLargeInflateNotPinned: a queue partition that inflates a large compressed batch to
// check or re-encode it does not keep the inflated buffer for the rest of its life.
func TestWorkQueueLargeInflateNotPinned(t *testing.T) {
	o := testOptions(t)
	// Inflation is bounded by the batch limit: raise it so the 6 MiB record can be delivered.
	o.SegmentBytes, o.MaxBatchBytes = 16<<20, 8<<20
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	appendRaw(t, e, "q", gzipBatch(t, 1, 6<<20))
	appendRaw(t, e, "q", gzipBatch(t, 4, 3<<19))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	spec := queueSpec(time.Hour, 5)
	spec.MaxAckPending = 2 // the second batch is re-encoded, two of its records at a time
	l, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, offs, _, ok := takeRecords(t, l, 5*time.Second); !ok || len(offs) != 1 {
		t.Fatalf("first delivery %v, want the large record", offs)
	}
	if err := l.Ack(0, 0); err != nil {
		t.Fatal(err)
	}
	if _, offs, _, ok := takeRecords(t, l, 5*time.Second); !ok || len(offs) != 2 {
		t.Fatalf("second delivery %v, want two records", offs)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 5<<20 {
		t.Fatalf("the heap kept %d MiB after the queue inflated a 6 MiB batch and re-encoded a 3 MiB one", grew>>20)
	}
}

// logRecords is a slog.Handler that hands every record logged to the test through its channel,
// dropping what does not fit.
type logRecords chan slog.Record

func (c logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (c logRecords) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c logRecords) WithGroup(string) slog.Handler            { return c }
func (c logRecords) Handle(_ context.Context, r slog.Record) error {
	select {
	case c <- r:
	default:
	}
	return nil
}

// waitLog waits up to 10 s for a record with message msg and returns its "err" attribute.
func waitLog(t *testing.T, logs logRecords, msg string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-logs:
			if r.Message != msg {
				continue
			}
			var errText string
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "err" {
					errText = a.Value.String()
				}
				return true
			})
			return errText
		case <-timeout:
			t.Fatalf("no %q logged in 10 s", msg)
			return ""
		}
	}
}

// TestWorkQueueFloorCommitErrorLogged: a floor the offset store refuses is logged, and committed
// again by a later sweep once the store takes commits.
func TestWorkQueueFloorCommitErrorLogged(t *testing.T) {
	logs := make(logRecords, 64)
	o := testOptions(t)
	o.Logger = slog.New(logs)
	e := openEngine(t, o)
	queueTopic(t, e, 3)
	s, _, err := e.Subscribe(queueSpec(time.Minute, 5), nopOwner{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddCredit(1 << 20)
	s.ReadyAll()
	d, ok, err := s.Next(1 << 20)
	if !ok || err != nil {
		t.Fatalf("first delivery: %v %v", ok, err)
	}
	d.Release()
	injected := errors.New("injected offsets failure")
	e.offsets.mu.Lock()
	e.offsets.failed = injected
	e.offsets.mu.Unlock()
	if err := s.Ack(0, 3, func(i int) int64 { return int64(i) }); err != nil {
		t.Fatal(err)
	}
	e.queues.sweep(false)
	if got := waitLog(t, logs, "work queue floor not committed"); got != injected.Error() {
		t.Fatalf("a refused floor commit logged err %q, want %q", got, injected.Error())
	}
	e.offsets.mu.Lock()
	e.offsets.failed = nil
	e.offsets.mu.Unlock()
	e.queues.sweep(false)
	deadline := time.Now().Add(10 * time.Second)
	for e.CommittedOffset("workers", "q", 0) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("floor committed %d after the store recovered, want 3", e.CommittedOffset("workers", "q", 0))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
