package engine

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// TestLocalReleaseThenClose follows the Delivery doc ("Release it when done") and then closes the
// subscription, and releases twice: neither may release the segment more often than it was acquired.
func TestLocalReleaseThenClose(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "r", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "r", 1, 20, wire.DurabilityWritten)
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "r", Partition: 0, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := l.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.Release()
	d.Release()
	l.Close() // releases the held delivery again

	// The segment's references balance: the engine closes (and unmaps) without a panic.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLocalRecordsSkipBeforeStart: a subscription starting inside a stored batch sees records from
// its start offset on, through NextRecord and PollRecord; Delivery.From says where that is.
func TestLocalRecordsSkipBeforeStart(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "s", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	want := produce(t, e, "s", 1, 30, wire.DurabilityWritten)[0] // batches of 10: 0-9, 10-19, 20-29
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, start := range []int64{0, 5, 10, 17, 29} {
		l, err := e.SubscribeLocal(wire.Subscribe{Topic: "s", Partition: 0, Start: wire.StartOffset, StartValue: start})
		if err != nil {
			t.Fatal(err)
		}
		for off := start; off < 30; off++ {
			var r *Record
			if off%2 == 0 {
				r, err = l.NextRecord(ctx)
			} else {
				r, err = l.PollRecord()
			}
			if err != nil || r == nil {
				t.Fatalf("start %d: record %d: %v, %v", start, off, r, err)
			}
			exp := want[off]
			if r.Offset != off || r.Partition != 0 || string(r.Key) != exp.key || string(r.Value) != exp.value || r.Timestamp != 1700000000000 {
				t.Fatalf("start %d: got %d %q=%q at %d, want %d %q=%q", start, r.Offset, r.Key, r.Value, r.Timestamp, off, exp.key, exp.value)
			}
			if h, ok := r.Header("h"); !ok || string(h) != exp.key {
				t.Fatalf("start %d: header h = %q, %v", start, h, ok)
			}
		}
		if r, err := l.PollRecord(); r != nil || err != nil {
			t.Fatalf("start %d: after the end: %v, %v", start, r, err)
		}
		l.Close()
	}
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "s", Partition: 0, Start: wire.StartOffset, StartValue: 17})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := l.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.From() != 17 || wire.BaseOffset(d.Batches()) != 10 {
		t.Fatalf("delivery from %d, first batch at %d: want 17 and 10", d.From(), wire.BaseOffset(d.Batches()))
	}
}

// TestLocalPollNeverBlocks: Poll and PollRecord answer nil at once when nothing is ready, and see a
// record as soon as its publish returns, with and without Spin.
func TestLocalPollNeverBlocks(t *testing.T) {
	for _, spin := range []bool{false, true} {
		e := openEngine(t, testOptions(t))
		if _, err := e.CreateTopic(wire.TopicConfig{Name: "p", Partitions: 2}); err != nil {
			t.Fatal(err)
		}
		l, err := e.SubscribeLocalWith(wire.Subscribe{Topic: "p", Partition: -1, Start: wire.StartEarliest}, LocalOptions{Spin: spin})
		if err != nil {
			t.Fatal(err)
		}
		if d, err := l.Poll(); d != nil || err != nil {
			t.Fatalf("spin %v: Poll of an empty topic: %v, %v", spin, d, err)
		}
		pubs := make([]*Publisher, 2)
		for i := range pubs {
			if pubs[i], err = e.Publisher("p", int32(i), wire.DurabilityWritten); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 10 {
			part := int32(i % 2)
			off, err := pubs[part].PublishRecord(context.Background(), []byte("k"), []byte{byte(i)})
			if err != nil || off != int64(i/2) {
				t.Fatalf("publish %d: offset %d, %v", i, off, err)
			}
			r, err := l.PollRecord()
			if err != nil || r == nil || r.Partition != part || r.Offset != off || r.Value[0] != byte(i) {
				t.Fatalf("spin %v: record %d: %+v, %v", spin, i, r, err)
			}
			if r, err := l.PollRecord(); r != nil || err != nil {
				t.Fatalf("spin %v: after record %d: %v, %v", spin, i, r, err)
			}
		}
		if spin && l.inbox.Len() != 0 {
			t.Fatalf("spinning subscription: %d wake-ups posted by publishes, want none", l.inbox.Len())
		}
		l.Close()
		if _, err := l.Poll(); !errors.Is(err, ErrSubscriptionClosed) {
			t.Fatalf("Poll after Close: %v", err)
		}
		l.Close()
	}
}

// TestLocalSpinNext: a spinning Next returns a record published by another goroutine while it
// waits, and returns ctx's error when ctx ends first.
func TestLocalSpinNext(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "n", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	l, err := e.SubscribeLocalWith(wire.Subscribe{Topic: "n", Partition: 0, Start: wire.StartLatest}, LocalOptions{Spin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if r, err := l.NextRecord(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NextRecord with nothing published: %v, %v", r, err)
	}
	pub, err := e.Publisher("n", 0, wire.DurabilityWritten)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	go func() {
		for i := range n {
			if _, err := pub.PublishRecord(context.Background(), nil, []byte{byte(i)}); err != nil {
				panic(err)
			}
		}
	}()
	ctx, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	for i := range n {
		r, err := l.NextRecord(ctx)
		if err != nil || r.Offset != int64(i) || r.Value[0] != byte(i) {
			t.Fatalf("record %d: %+v, %v", i, r, err)
		}
	}
}

// TestPublisher: a Publisher refuses what Engine.Publish would, waits for the fdatasync at fsync,
// and fails once its topic is deleted, even if the name comes back.
func TestPublisher(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.Publisher("none", 0, wire.DurabilityWritten); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	for _, part := range []int32{-1, 2} {
		if _, err := e.Publisher("t", part, wire.DurabilityWritten); !errors.Is(err, wire.CodeUnknownPartition) {
			t.Fatalf("partition %d: %v", part, err)
		}
	}
	if _, err := e.Publisher("t", 0, wire.DurabilityFsync+1); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("bad durability: %v", err)
	}
	pub, err := e.Publisher("t", 1, wire.DurabilityFsync)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		off, err := pub.PublishRecord(ctx, []byte("k"), []byte("v"), wire.Header{Key: []byte("a"), Value: []byte("b")})
		if err != nil || off != int64(i) {
			t.Fatalf("publish %d: %d, %v", i, off, err)
		}
		if synced := pub.Partition().SyncedOffset(); synced <= off {
			t.Fatalf("fsync publish of offset %d returned with the synced offset at %d", off, synced)
		}
	}
	if got := e.TopicByName("t").Partition(0).NextOffset(); got != 0 {
		t.Fatalf("partition 0 holds %d records, want 0", got)
	}
	if err := e.DeleteTopic("t"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.PublishRecord(ctx, nil, []byte("late")); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("publish to a deleted topic: %v", err)
	}
}

// TestLocalPublishPollAllocs: publishing a record with a Publisher and taking it with PollRecord
// allocates nothing, spinning or not (BenchmarkLocalPublishPoll measures the same loop).
func TestLocalPublishPollAllocs(t *testing.T) {
	for _, spin := range []bool{false, true} {
		e := openEngine(t, testOptions(t))
		pub, l := publishPollPair(t, e, spin)
		value := make([]byte, 100)
		ctx := context.Background()
		step := func() {
			off, err := pub.PublishRecord(ctx, nil, value)
			if err != nil {
				t.Fatal(err)
			}
			r, err := l.PollRecord()
			if err != nil || r == nil || r.Offset != off {
				t.Fatalf("poll after publishing %d: %v, %v", off, r, err)
			}
		}
		for range 100 {
			step() // warm: the builder and the ready queue reach their sizes
		}
		if n := testing.AllocsPerRun(1000, step); n != 0 {
			t.Fatalf("spin %v: %v allocations per publish and poll, want 0", spin, n)
		}
		l.Close()
	}
}

// publishPollPair makes topic "b" of one partition, a written-durability Publisher on it and a Local
// reading it from its end.
func publishPollPair(t testing.TB, e *Engine, spin bool) (*Publisher, *Local) {
	t.Helper()
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "b", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	pub, err := e.Publisher("b", 0, wire.DurabilityWritten)
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.SubscribeLocalWith(wire.Subscribe{Topic: "b", Partition: 0, Start: wire.StartLatest}, LocalOptions{Spin: spin})
	if err != nil {
		t.Fatal(err)
	}
	return pub, l
}

// TestLocalSpinQueueAndGroup: a spinning Local also serves a work queue (whose dispatch keeps the
// wake-ups) and a group member (whose partitions arrive through the inbox).
func TestLocalSpinQueueAndGroup(t *testing.T) {
	e := openEngine(t, testOptions(t))
	queueTopic(t, e, 12) // topic "q", one partition, 12 records
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, spec := range []wire.Subscribe{
		queueSpec(time.Minute, 5),
		{Topic: "q", Partition: -1, Group: "g", Start: wire.StartEarliest},
	} {
		l, err := e.SubscribeLocalWith(spec, LocalOptions{Spin: true})
		if err != nil {
			t.Fatal(err)
		}
		if l.sub.polled != (spec.Mode != wire.ModeQueue) {
			t.Fatalf("mode %d: polled %v", spec.Mode, l.sub.polled)
		}
		for i := range int64(12) {
			r, err := l.NextRecord(ctx)
			if err != nil || r.Offset != i {
				t.Fatalf("mode %d: record %d: %+v, %v", spec.Mode, i, r, err)
			}
			if spec.Mode == wire.ModeQueue {
				if err := l.Ack(r.Partition, r.Offset); err != nil {
					t.Fatal(err)
				}
			}
		}
		short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
		if r, err := l.NextRecord(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("mode %d: after the last record: %+v, %v", spec.Mode, r, err)
		}
		stop()
		l.Close()
	}
}

// TestLocalSpinTopicDeleted: a spinning Local, whose cursors never announce that they wait, still
// ends with CodeUnknownTopic when its topic is deleted.
func TestLocalSpinTopicDeleted(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "d", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	produce(t, e, "d", 2, 10, wire.DurabilityWritten)
	l, err := e.SubscribeLocalWith(wire.Subscribe{Topic: "d", Partition: -1, Start: wire.StartEarliest}, LocalOptions{Spin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 20 {
		if _, err := l.NextRecord(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := l.PollRecord(); r != nil || err != nil {
		t.Fatalf("caught up: %v, %v", r, err)
	}
	if err := e.DeleteTopic("d"); err != nil {
		t.Fatal(err)
	}
	if r, err := l.NextRecord(ctx); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("after the delete: %v, %v", r, err)
	}
}

// TestLocalSpinYieldsRarely: a spinning Next that finds nothing yields its P (so that goroutines
// waiting for one run with every P busy), but only after spinYieldAfter of empty polls and then once
// per spinYieldAfter, not every few microseconds: a yielded P can be held by a goroutine in a
// blocking system call while records wait.
func TestLocalSpinYieldsRarely(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "y", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	l, err := e.SubscribeLocalWith(wire.Subscribe{Topic: "y", Partition: 0, Start: wire.StartLatest}, LocalOptions{Spin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var yields []time.Time
	prev := spinYield
	spinYield = func() { yields = append(yields, time.Now()); runtime.Gosched() }
	defer func() { spinYield = prev }()
	const spinFor = 50 * time.Millisecond
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), spinFor)
	defer cancel()
	if r, err := l.NextRecord(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NextRecord with nothing published: %v, %v", r, err)
	}
	if len(yields) == 0 {
		t.Fatalf("no yield in %v of empty polls", time.Since(start))
	}
	last := start
	for i, at := range yields {
		if gap := at.Sub(last); gap < spinYieldAfter {
			t.Fatalf("yield %d of %d came %v after the previous one (or the start), want >= %v",
				i, len(yields), gap, spinYieldAfter)
		}
		last = at
	}
	t.Logf("%d yields in %v", len(yields), time.Since(start))
}

// PublishRecord stores its builder's batch without validating it again: what it stores must still be
// a batch ValidateProduced accepts, a record with wire.HeaderTTL must mark the partition (as an
// Append does, TestTTLMarkOnlyWithTTLHeader), and a record over MaxBatchBytes must be refused with
// wire.ErrBatchTooLarge and store nothing.
func TestPublishRecordStoresValidBatches(t *testing.T) {
	o := testOptions(t)
	o.MaxBatchBytes = 4096
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	pub, err := e.Publisher("t", 0, wire.DurabilityWritten)
	if err != nil {
		t.Fatal(err)
	}
	p := pub.Partition()
	ctx := context.Background()
	h := func(k, v string) wire.Header { return wire.Header{Key: []byte(k), Value: []byte(v)} }
	if _, err := pub.PublishRecord(ctx, []byte("k"), []byte("v"), h("sluice-ttlx", "1"), h(wire.HeaderPriority, "3")); err != nil {
		t.Fatal(err)
	}
	if p.ttlRecords.Load() {
		t.Fatal("marked as holding TTL records without a TTL header")
	}
	if _, err := pub.PublishRecord(ctx, nil, []byte("v"), h("a", "b"), h(wire.HeaderTTL, "1000")); err != nil {
		t.Fatal(err)
	}
	if !p.ttlRecords.Load() {
		t.Fatal("not marked after a record with a TTL header")
	}
	if _, err := os.Stat(p.ttlMark); err != nil {
		t.Fatalf("mark file: %v", err)
	}
	if _, err := pub.PublishRecord(ctx, nil, make([]byte, 4096)); !errors.Is(err, wire.ErrBatchTooLarge) {
		t.Fatalf("a record over MaxBatchBytes: %v, want ErrBatchTooLarge", err)
	}
	if next := p.NextOffset(); next != 2 {
		t.Fatalf("next offset %d after two stored records and one refused, want 2", next)
	}
	v, err := p.log.Read(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	n := 0
	for rest := v.Data; len(rest) > 0; n++ {
		bh, err := wire.ValidateProduced(rest, o.MaxBatchBytes)
		if err != nil {
			t.Fatalf("stored batch %d: %v", n, err)
		}
		rest = rest[bh.Size():]
	}
	if n != 2 {
		t.Fatalf("%d batches stored, want 2", n)
	}
}
