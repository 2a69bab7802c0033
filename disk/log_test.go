package disk

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testOptions(dir))
	var appended [][]byte
	var want int64
	for i := range 500 {
		b := testBatch(t, uint64(i), 1+i%5, 10+i%200, int64(1000+i))
		res, err := l.Append(b)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		n := int64(1 + i%5)
		if res.BaseOffset != want || res.LastOffset != want+n-1 || res.NextOffset != want+n {
			t.Fatalf("Append %d: %+v, want base %d", i, res, want)
		}
		want += n
		appended = append(appended, b)
	}
	if l.NextOffset() != want {
		t.Fatalf("NextOffset %d, want %d", l.NextOffset(), want)
	}
	check := func(l *Log) {
		t.Helper()
		got := readAll(t, l, 1000)
		if len(got) != len(appended) {
			t.Fatalf("read %d batches, appended %d", len(got), len(appended))
		}
		var base int64
		for i, g := range got {
			if err := sameBatch(g.bytes, appended[i], base); err != nil {
				t.Fatalf("batch %d: %v", i, err)
			}
			base += int64(1 + i%5)
		}
	}
	check(l)
	if segs := len(*l.segs.Load()); segs < 3 {
		t.Fatalf("%d segments; the test wants several", segs)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, testOptions(dir))
	defer l.Close()
	rec := l.Recovery()
	if rec.InvalidPosition != -1 || rec.BytesTruncated != 0 || rec.IndexesRebuilt != 0 || rec.SegmentsScanned != 1 {
		t.Fatalf("clean reopen reported %+v", rec)
	}
	if l.NextOffset() != want || l.SyncedOffset() != want {
		t.Fatalf("after reopen NextOffset %d SyncedOffset %d, want %d", l.NextOffset(), l.SyncedOffset(), want)
	}
	check(l)
	// Appends continue with the next offset.
	res, err := l.Append(testBatch(t, 9999, 2, 10, 1))
	if err != nil || res.BaseOffset != want {
		t.Fatalf("Append after reopen: %+v %v, want base %d", res, err, want)
	}
}

func TestReadBounds(t *testing.T) {
	l := mustOpen(t, testOptions(t.TempDir()))
	defer l.Close()
	for i := range 10 {
		if _, err := l.Append(testBatch(t, uint64(i), 3, 20, 0)); err != nil {
			t.Fatal(err)
		}
	}
	// An offset inside a batch returns that whole batch.
	v, err := l.Read(4, 1)
	if err != nil {
		t.Fatal(err)
	}
	if v.BaseOffset != 3 || v.NextOffset != 6 || batchID(t, v.Data) != 1 {
		t.Fatalf("Read(4) = base %d next %d", v.BaseOffset, v.NextOffset)
	}
	v.Release()
	// maxBytes 0 still returns one whole batch; a large one returns everything.
	v, _ = l.Read(0, 0)
	if v.NextOffset != 3 {
		t.Fatalf("Read(0, 0).NextOffset = %d", v.NextOffset)
	}
	v.Release()
	v, _ = l.Read(0, 1<<20)
	if v.NextOffset != 30 {
		t.Fatalf("Read(0, 1MiB).NextOffset = %d", v.NextOffset)
	}
	v.Release()
	v, err = l.Read(30, 100)
	if err != nil || len(v.Data) != 0 || v.NextOffset != 30 {
		t.Fatalf("Read at the end: %v %d bytes next %d", err, len(v.Data), v.NextOffset)
	}
	if _, err := l.Read(31, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read past the end: %v", err)
	}
	if _, err := l.Read(-1, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read below the start: %v", err)
	}
}

func TestAppendRejects(t *testing.T) {
	l := mustOpen(t, testOptions(t.TempDir()))
	defer l.Close()
	b := testBatch(t, 1, 2, 10, 0)
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"empty":     {nil, ErrInvalidBatch},
		"truncated": {b[:len(b)-1], ErrInvalidBatch},
		"garbage":   {make([]byte, 100), ErrInvalidBatch},
		"too large": {make([]byte, 65<<10), ErrTooLarge},
	} {
		if _, err := l.Append(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if l.NextOffset() != 0 {
		t.Fatalf("rejected appends moved NextOffset to %d", l.NextOffset())
	}
}

func TestOffsetForTimestamp(t *testing.T) {
	l := mustOpen(t, testOptions(t.TempDir()))
	defer l.Close()
	// Timestamps rise by 10 per batch of 2 records, across several segments.
	for i := range 400 {
		if _, err := l.Append(testBatch(t, uint64(i), 2, 200, int64(i*10))); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ts, want int64 }{{-5, 0}, {0, 0}, {1, 2}, {10, 2}, {15, 4}, {1230, 246}, {3990, 798}, {3991, 800}} {
		got, err := l.OffsetForTimestamp(tc.ts)
		if err != nil || got != tc.want {
			t.Errorf("OffsetForTimestamp(%d) = %d, %v; want %d", tc.ts, got, err, tc.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for name, o := range map[string]Options{
		"no dir":         {},
		"tiny segment":   {Dir: "x", SegmentBytes: 100},
		"unaligned":      {Dir: "x", SegmentBytes: 4096*3 + 1},
		"huge segment":   {Dir: "x", SegmentBytes: 2 << 30},
		"batch too big":  {Dir: "x", SegmentBytes: 8192, MaxBatchBytes: 8193},
		"small interval": {Dir: "x", IndexInterval: 1},
		"negative":       {Dir: "x", RetentionBytes: -1},
		"age too long":   {Dir: "x", RetentionAge: MaxRetentionAge + 1},
	} {
		if err := o.Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := (Options{Dir: "x"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLeftoversRemoved(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testOptions(dir))
	if _, err := l.Append(testBatch(t, 1, 1, 10, 0)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// A crash while creating a segment leaves a .tmp; an empty .log is as good as missing;
	// an index without a segment is an orphan.
	for _, name := range []string{segmentName(77) + tmpSuffix, spareName, segmentName(5000), indexName(9000)} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l = mustOpen(t, testOptions(dir))
	defer l.Close()
	if got := len(l.Recovery().Removed); got != 4 {
		t.Fatalf("removed %v", l.Recovery().Removed)
	}
	if l.NextOffset() != 1 {
		t.Fatalf("NextOffset %d", l.NextOffset())
	}
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		if n.Name() != segmentName(0) && n.Name() != indexName(0) {
			t.Errorf("left behind: %s", n.Name())
		}
	}
}

// TestRollDoesNotSync: creating a segment, whether the roll makes it or the housekeeper
// pre-creates it as the spare, makes no fdatasync. The data written into it is made durable by the
// flusher with its length; a creation fdatasync on a busy disk waited behind the writeback of
// everything appended before it, on the appender that rolled (docs/benchmarks.md).
func TestRollDoesNotSync(t *testing.T) {
	fs := &faultFS{}
	o := testOptions(t.TempDir())
	o.FS = fs
	o.FlushInterval = time.Hour // no background sync during the test
	o.FlushBytes = 1 << 30
	l := mustOpen(t, o)
	defer l.Close()
	before := fs.segSyncs.Load() // Open's recovery syncs the tail
	b := testBatch(t, 1, 4, 1000, 0)
	for seg := 0; len(*l.segs.Load()) < 4; seg++ {
		if seg > 1000 {
			t.Fatal("no rolls")
		}
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		waitHousekeeper(t, l) // lets it pre-create the spare as segments fill
	}
	if n := len(*l.segs.Load()); n < 4 {
		t.Fatalf("%d segments", n)
	}
	if got := fs.segSyncs.Load() - before; got != 0 {
		t.Fatalf("%d fdatasyncs while rolling with nobody asking for a sync, want 0", got)
	}
	// The data is still made durable on demand.
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if fs.segSyncs.Load() == before {
		t.Fatal("Sync made no fdatasync")
	}
}
