package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

func testOptions(t testing.TB) Options {
	dir := t.TempDir()
	return Options{
		DataDir:      dir,
		MemoryDir:    filepath.Join(dir, "mem"),
		SegmentBytes: 1 << 20,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func openEngine(t testing.TB, o Options) *Engine {
	t.Helper()
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// record is what the tests produce and expect back.
type record struct {
	key, value string
	partition  int32
	offset     int64
}

// buildBatch encodes records into one batch.
func buildBatch(t testing.TB, b *wire.BatchBuilder, recs []record) []byte {
	t.Helper()
	b.Reset()
	for _, r := range recs {
		b.Append([]byte(r.key), []byte(r.value), []wire.Header{{Key: []byte("h"), Value: []byte(r.key)}}, 1700000000000)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// produce publishes n records per partition in batches of 10 and returns them with their offsets.
func produce(t testing.TB, e *Engine, topic string, parts, n int, d wire.Durability) map[int32][]record {
	t.Helper()
	b := wire.NewBatchBuilder(4096)
	out := map[int32][]record{}
	for p := int32(0); p < int32(parts); p++ {
		for i := 0; i < n; i += 10 {
			var recs []record
			for j := i; j < min(i+10, n); j++ {
				recs = append(recs, record{key: fmt.Sprintf("k%d-%d", p, j), value: fmt.Sprintf("value %d/%d", p, j), partition: p})
			}
			base, last, err := e.Publish(context.Background(), topic, p, buildBatch(t, b, recs), d)
			if err != nil {
				t.Fatal(err)
			}
			if last-base != int64(len(recs)-1) {
				t.Fatalf("offsets %d..%d for %d records", base, last, len(recs))
			}
			for k := range recs {
				recs[k].offset = base + int64(k)
			}
			out[p] = append(out[p], recs...)
		}
	}
	return out
}

// consume reads from l until it has want records per partition (skipping records below from[p]),
// checking order and contents.
func consume(t testing.TB, l *Local, want map[int32][]record, from map[int32]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[int32]int{}
	total, need := 0, 0
	for p, rs := range want {
		need += len(rs) - int(from[p])
	}
	var it wire.RecordIter
	var r wire.Record
	for total < need {
		d, err := l.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d records: %v", total, need, err)
		}
		p := d.Partition.ID()
		for rest := d.Batches(); len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				t.Fatal(err)
			}
			rest = rest[h.Size():]
			for it.Next(&r) {
				if r.Offset < from[p]+int64(got[p]) {
					continue // a batch delivered whole may start before the position
				}
				exp := want[p][from[p]+int64(got[p])]
				if r.Offset != exp.offset || string(r.Key) != exp.key || string(r.Value) != exp.value {
					t.Fatalf("partition %d: got offset %d %q=%q, want offset %d %q=%q", p, r.Offset, r.Key, r.Value, exp.offset, exp.key, exp.value)
				}
				if hv, ok := r.Header("h"); !ok || string(hv) != exp.key {
					t.Fatalf("header h = %q, want %q", hv, exp.key)
				}
				got[p]++
				total++
			}
			if it.Err() != nil {
				t.Fatal(it.Err())
			}
		}
	}
}

func TestPublishSubscribeLocal(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "orders", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	want := produce(t, e, "orders", 4, 500, wire.DurabilityWritten)
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "orders", Partition: -1, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	consume(t, l, want, nil)

	// Records produced after the consumer caught up wake it.
	more := map[int32][]record{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		more = produce(t, e, "orders", 4, 30, wire.DurabilityWritten)
	}()
	<-done
	from := map[int32]int64{}
	for p := range more {
		from[p] = 500
	}
	all := map[int32][]record{}
	for p := range want {
		all[p] = append(append([]record{}, want[p]...), more[p]...)
	}
	consume(t, l, all, from)
}

func TestRestartKeepsEverything(t *testing.T) {
	o := testOptions(t)
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "t", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	want := produce(t, e, "t", 3, 200, wire.DurabilityWritten)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openEngine(t, o)
	if got := e2.Topics(); len(got) != 1 || got[0].Name != "t" || got[0].Partitions != 3 {
		t.Fatalf("topics after restart: %+v", got)
	}
	l, err := e2.SubscribeLocal(wire.Subscribe{Topic: "t", Partition: -1, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	consume(t, l, want, nil)
}

func TestFsyncDurabilityWaitsForSync(t *testing.T) {
	o := testOptions(t)
	o.FlushInterval = 5 * time.Millisecond
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "d", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	b := wire.NewBatchBuilder(1024)
	for i := 0; i < 20; i++ {
		_, last, err := e.Publish(context.Background(), "d", 0, buildBatch(t, b, []record{{key: "k", value: "v"}}), wire.DurabilityFsync)
		if err != nil {
			t.Fatal(err)
		}
		if synced := e.TopicByName("d").Partition(0).SyncedOffset(); synced <= last {
			t.Fatalf("fsync publish of offset %d returned with synced offset %d", last, synced)
		}
	}
}

func TestGroupSharesPartitionsAndResumes(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "g", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	want := produce(t, e, "g", 4, 40, wire.DurabilityWritten)
	spec := wire.Subscribe{Topic: "g", Partition: -1, Group: "workers", Start: wire.StartCommitted}
	a, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	a.drain()
	b.drain()
	pa, pb := a.partitions(), b.partitions()
	if len(pa) != 2 || len(pb) != 2 {
		t.Fatalf("assignment a=%v b=%v, want two partitions each", pa, pb)
	}
	seen := map[int32]bool{}
	for _, p := range append(pa, pb...) {
		if seen[p] {
			t.Fatalf("partition %d assigned twice: a=%v b=%v", p, pa, pb)
		}
		seen[p] = true
	}
	// b consumes its share and commits half way; then leaves. a takes over from the commits.
	bwant := map[int32][]record{}
	for _, p := range pb {
		bwant[p] = want[p]
	}
	consume(t, b, bwant, nil)
	for _, p := range pb {
		if err := b.Commit(context.Background(), p, 20); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	a.drain()
	if got := a.partitions(); len(got) != 4 {
		t.Fatalf("after b left, a holds %v", got)
	}
	awant, from := map[int32][]record{}, map[int32]int64{}
	for p := range want {
		awant[p] = want[p]
	}
	for _, p := range pb {
		from[p] = 20
	}
	consume(t, a, awant, from)
	info, err := e.DescribeGroup("workers")
	if err != nil {
		t.Fatal(err)
	}
	// The two partitions b committed, and the two it never read, whose lag counts from the log start.
	if len(info.Members) != 1 || len(info.Offsets) != 4 {
		t.Fatalf("describe group: %+v", info)
	}
	for _, o := range info.Offsets {
		if want := from[o.Partition]; o.Committed != want || o.End != 40 {
			t.Fatalf("offset %+v, want committed %d end 40", o, want)
		}
	}
	a.Close()
}

func (l *Local) partitions() []int32 {
	var ps []int32
	for _, c := range l.sub.cursors {
		ps = append(ps, c.part.id)
	}
	return ps
}

func TestTopicAdmin(t *testing.T) {
	e := openEngine(t, testOptions(t))
	for _, name := range []string{"", "a/b", "..", "x.deleted", string(bytes.Repeat([]byte("n"), 250))} {
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name}); !errors.Is(err, wire.CodeInvalidRequest) {
			t.Errorf("create %q: %v, want invalid request", name, err)
		}
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "a"}); !errors.Is(err, wire.CodeTopicExists) {
		t.Fatalf("second create: %v", err)
	}
	if got := e.TopicByName("a").Partitions(); got != 4 {
		t.Fatalf("default partitions %d", got)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "mem", Partitions: 1, Flags: wire.TopicMemory}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "mem", 1, 10, wire.DurabilityFsync)
	if info := e.TopicByName("mem").Info(); info.Partitions[0].EndOffset != 10 {
		t.Fatalf("memory topic end %d", info.Partitions[0].EndOffset)
	}
	// A memory topic's segments live in the memory directory, sized for RAM.
	segs, _ := filepath.Glob(filepath.Join(e.opts.MemoryDir, "mem", "0", "*.log"))
	if len(segs) == 0 {
		t.Fatalf("no segment of the memory topic under %s", e.opts.MemoryDir)
	}
	if st, err := os.Stat(segs[0]); err != nil || st.Size() != min(e.opts.SegmentBytes, e.opts.MemorySegmentBytes) {
		t.Fatalf("memory segment %s: size %d, want %d (%v)", segs[0], st.Size(), e.opts.MemorySegmentBytes, err)
	}
	if disk, _ := filepath.Glob(filepath.Join(e.opts.DataDir, "topics", "mem", "0", "*.log")); len(disk) != 0 {
		t.Fatalf("memory topic wrote segments to the data directory: %v", disk)
	}
	e.CommitOffset("g", "a", 0, 7, func(error) {})
	if err := e.DeleteTopic("a"); err != nil {
		t.Fatal(err)
	}
	if got := e.CommittedOffset("g", "a", 0); got != -1 {
		t.Fatalf("a deleted topic's committed offset survives: %d", got)
	}
	if err := e.DeleteTopic("a"); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("second delete: %v", err)
	}
	if _, _, err := e.Publish(context.Background(), "a", 0, nil, wire.DurabilityWritten); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("publish to deleted topic: %v", err)
	}
}

func TestAppendRejectsCorruptBatch(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "c", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	b := wire.NewBatchBuilder(1024)
	good := buildBatch(t, b, []record{{key: "k", value: "v"}})
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] ^= 0xff
	p := e.TopicByName("c").Partition(0)
	if _, _, err := p.Append(bad); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("corrupt batch: %v", err)
	}
	if _, _, err := p.Append(append(append([]byte(nil), good...), bad...)); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("good then corrupt: %v", err)
	}
	if p.NextOffset() != 0 {
		t.Fatalf("a rejected append stored records: next offset %d", p.NextOffset())
	}
}

// TestMillionRecordsEmbedded is the end-to-end scenario through the embedded API: 1,000,000 keyed
// records over 4 partitions, a restart, then every record back in per-partition order, intact.
func TestMillionRecordsEmbedded(t *testing.T) {
	const n, parts = 1_000_000, 4
	o := testOptions(t)
	o.SegmentBytes = 8 << 20
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "m", Partitions: parts}); err != nil {
		t.Fatal(err)
	}
	// Keys pick partitions; each partition's batches carry its records in produce order.
	builders := make([]*wire.BatchBuilder, parts)
	for i := range builders {
		builders[i] = wire.NewBatchBuilder(64 << 10)
	}
	flush := func(p int) {
		b, err := builders[p].Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.Publish(context.Background(), "m", int32(p), b, wire.DurabilityWritten); err != nil {
			t.Fatal(err)
		}
		builders[p].Reset()
	}
	var key, val []byte
	for i := 0; i < n; i++ {
		key = fmt.Appendf(key[:0], "key-%d", i%1000)
		val = fmt.Appendf(val[:0], "value-%d", i)
		p := (i % 1000) % parts
		builders[p].Append(key, val, nil, int64(i))
		if builders[p].Count() == 500 {
			flush(p)
		}
	}
	for p := range builders {
		if builders[p].Count() > 0 {
			flush(p)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, o)
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "m", Partition: -1, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	next := make([]int64, parts)  // next offset per partition
	lastIdx := make([]int, parts) // last record index per partition
	for i := range lastIdx {
		lastIdx[i] = -1
	}
	var it wire.RecordIter
	var r wire.Record
	for got := 0; got < n; {
		d, err := l.Next(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", got, err)
		}
		p := d.Partition.ID()
		for rest := d.Batches(); len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				t.Fatal(err)
			}
			rest = rest[h.Size():]
			for it.Next(&r) {
				var idx int
				if _, err := fmt.Sscanf(string(r.Value), "value-%d", &idx); err != nil {
					t.Fatal(err)
				}
				if r.Offset != next[p] || idx <= lastIdx[p] || string(r.Key) != fmt.Sprintf("key-%d", idx%1000) || (idx%1000)%parts != int(p) {
					t.Fatalf("partition %d offset %d (want %d): record %d %q after %d", p, r.Offset, next[p], idx, r.Key, lastIdx[p])
				}
				next[p]++
				lastIdx[p] = idx
				got++
			}
		}
	}
}
