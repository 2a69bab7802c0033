package disk

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// TestConcurrentAppends runs several appenders and readers at once across segment rolls: every
// batch must be stored exactly once, at the offsets its Append returned, intact, with offsets
// dense and increasing; readers must only ever see whole valid batches below NextOffset.
func TestConcurrentAppends(t *testing.T) {
	const writers, perWriter = 4, 400
	o := testOptions(t.TempDir())
	l := mustOpen(t, o)
	defer l.Close()

	type ack struct {
		res AppendResult
		b   []byte
	}
	acks := make([][]ack, writers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range perWriter {
				id := uint64(w)<<32 | uint64(i)
				b := testBatch(t, id, 1+rng.IntN(4), rng.IntN(600), int64(i))
				if rng.IntN(8) == 0 { // sometimes two batches in one append
					b = append(b, testBatch(t, id|1<<31, 1, 30, int64(i))...)
				}
				res, err := l.Append(b)
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				if w == 0 && i%50 == 0 {
					if err := l.WaitSynced(context.Background(), res.NextOffset); err != nil {
						t.Errorf("WaitSynced: %v", err)
					}
				}
				acks[w] = append(acks[w], ack{res, b})
			}
		}()
	}
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			off := int64(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				end := l.NextOffset()
				v, err := l.Read(off, 1000+r*5000)
				if err != nil {
					t.Errorf("reader: Read(%d): %v", off, err)
					return
				}
				next := off
				for data := v.Data; len(data) > 0; {
					h, err := wire.ValidateBatch(data, 0)
					if err != nil || h.BaseOffset != next {
						t.Errorf("reader at %d: base %d, %v", next, h.BaseOffset, err)
						v.Release()
						return
					}
					next = h.LastOffset() + 1
					data = data[h.Size():]
				}
				if v.NextOffset != next || next > l.NextOffset() || (len(v.Data) == 0 && off < end) {
					t.Errorf("reader: view %d..%d, end %d", off, v.NextOffset, end)
				}
				v.Release()
				off = next
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if t.Failed() {
		return
	}

	byBase := map[int64][]byte{}
	var total int64
	for w := range acks {
		var last int64 = -1
		for _, a := range acks[w] {
			if a.res.BaseOffset <= last {
				t.Fatalf("writer %d: offsets went backwards", w)
			}
			last = a.res.LastOffset
			byBase[a.res.BaseOffset] = a.b
			total += a.res.NextOffset - a.res.BaseOffset
		}
	}
	if l.NextOffset() != total {
		t.Fatalf("NextOffset %d, appended %d offsets", l.NextOffset(), total)
	}
	got := readAll(t, l, 1<<20)
	seen := map[uint64]bool{}
	for i := 0; i < len(got); i++ {
		b, ok := byBase[got[i].base]
		if !ok {
			t.Fatalf("stored batch at %d was not returned by any Append", got[i].base)
		}
		// Compare the append's batches one by one.
		for p := 0; p < len(b); i++ {
			size, _ := wire.BatchSize(b[p:])
			if err := sameBatch(got[i].bytes, b[p:p+size], got[i].base); err != nil {
				t.Fatalf("batch at %d: %v", got[i].base, err)
			}
			id := batchID(t, got[i].bytes)
			if seen[id] {
				t.Fatalf("batch %x stored twice", id)
			}
			seen[id] = true
			p += size
		}
		i--
	}
	if want := writers * perWriter; len(seen) < want {
		t.Fatalf("%d batches stored, want at least %d", len(seen), want)
	}
	if err := l.Sync(); err != nil || l.SyncedOffset() != total {
		t.Fatalf("Sync: %v, synced %d of %d", err, l.SyncedOffset(), total)
	}
}

// waitIndexed waits until the housekeeper has indexed every sealed segment.
func waitIndexed(t *testing.T, l *Log) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		done := true
		segs := *l.segs.Load()
		for _, s := range segs[:len(segs)-1] {
			done = done && s.indexDone.Load()
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("sealed segments not indexed after 10s")
		}
		l.kickHousekeeper()
		time.Sleep(time.Millisecond)
	}
}

func TestRetentionBySizeKeepsReaderViews(t *testing.T) {
	o := testOptions(t.TempDir())
	o.RetentionBytes = 3 * int64(o.SegmentBytes)
	o.CheckInterval = time.Hour // the test enforces retention itself
	l := mustOpen(t, o)
	defer l.Close()
	// A reader holds the first segment before retention runs.
	for i := range 20 {
		if _, err := l.Append(testBatch(t, uint64(i), 2, 800, 0)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := l.Read(0, 4096)
	if err != nil {
		t.Fatal(err)
	}
	held := append([]byte(nil), v.Data...)
	first := (*l.segs.Load())[0].path
	for i := 20; len(*l.segs.Load()) < 8; i++ {
		if _, err := l.Append(testBatch(t, uint64(i), 2, 800, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	segs := *l.segs.Load()
	if len(segs) != 3 {
		t.Fatalf("%d segments after retention, want 3", len(segs))
	}
	if l.StartOffset() != segs[0].base || l.StartOffset() == 0 {
		t.Fatalf("StartOffset %d", l.StartOffset())
	}
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted segment still linked: %v", err)
	}
	if _, err := l.Read(0, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read of a deleted offset: %v", err)
	}
	// The view still reads the deleted segment's bytes.
	if string(v.Data) != string(held) || batchID(t, v.Data) != 0 {
		t.Fatal("view changed after its segment was deleted")
	}
	v.Release()
	got := readAll(t, l, 1<<20)
	if got[0].base != l.StartOffset() || got[len(got)-1].base+2 != l.NextOffset() {
		t.Fatalf("reads after retention cover %d..%d", got[0].base, got[len(got)-1].base)
	}
	// A reopen sees the same start.
	start := l.StartOffset()
	l.Close()
	l2 := mustOpen(t, o)
	defer l2.Close()
	if l2.StartOffset() != start {
		t.Fatalf("StartOffset after reopen %d, want %d", l2.StartOffset(), start)
	}
}

func TestRetentionByAge(t *testing.T) {
	o := testOptions(t.TempDir())
	o.RetentionAge = time.Hour
	o.CheckInterval = time.Hour
	l := mustOpen(t, o)
	defer l.Close()
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	for i := 0; len(*l.segs.Load()) < 3; i++ {
		if _, err := l.Append(testBatch(t, uint64(i), 1, 900, old+int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	keepFrom := l.NextOffset()
	for i := 0; len(*l.segs.Load()) < 5; i++ {
		if _, err := l.Append(testBatch(t, uint64(i), 1, 900, time.Now().UnixMilli())); err != nil {
			t.Fatal(err)
		}
	}
	waitIndexed(t, l)
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	// The segment holding keepFrom-1 has old data but also new: only wholly old ones go.
	if s := l.StartOffset(); s > keepFrom || s == 0 {
		t.Fatalf("StartOffset %d, want in (0, %d]", s, keepFrom)
	}
	if n := len(*l.segs.Load()); n != 4 && n != 3 {
		t.Fatalf("%d segments left", n)
	}
	if err := l.TruncateBefore(l.NextOffset()); err != nil {
		t.Fatal(err)
	}
	if n := len(*l.segs.Load()); n != 1 {
		t.Fatalf("TruncateBefore left %d segments", n)
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir() + "/p0"
	o := testOptions(dir)
	l := mustOpen(t, o)
	if _, err := l.Append(testBatch(t, 1, 1, 10, 0)); err != nil {
		t.Fatal(err)
	}
	v, _ := l.Read(0, 100)
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory survived Remove: %v", err)
	}
	if batchID(t, v.Data) != 1 {
		t.Fatal("view lost its data")
	}
	v.Release()
	if _, err := l.Append(testBatch(t, 2, 1, 10, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Remove: %v", err)
	}
}

// A record stamped in the future does not hold back retention by age: a segment's retention time
// caps each batch's timestamp at the log's clock when the batch was indexed, and that bound is kept
// in the index file across a reopen.
func TestRetentionByAgeIgnoresFutureTimestamps(t *testing.T) {
	t0 := time.Now().UnixMilli()
	var clock atomic.Int64
	clock.Store(t0)
	o := testOptions(t.TempDir())
	o.RetentionAge = 2 * time.Second
	o.CheckInterval = time.Hour // the test enforces retention itself
	o.Clock = func() time.Time { return time.UnixMilli(clock.Load()) }
	l := mustOpen(t, o)
	hourAgo, yearAhead := t0-time.Hour.Milliseconds(), t0+365*24*time.Hour.Milliseconds()
	if _, err := l.Append(testBatch(t, 0, 1, 900, yearAhead)); err != nil {
		t.Fatal(err)
	}
	// 160 records stamped an hour ago, then more until the last of them is in a sealed segment.
	for i := 1; i <= 160 || len(*l.segs.Load()) < 2 || l.active.Load().base < 161; i++ {
		if _, err := l.Append(testBatch(t, uint64(i), 1, 900, hourAgo)); err != nil {
			t.Fatal(err)
		}
	}
	waitIndexed(t, l)
	active := l.active.Load().base
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	clock.Store(t0 + 1500) // reopen: the index files carry each segment's retention time
	l = mustOpen(t, o)
	defer l.Close()
	if r := l.Recovery(); r.IndexesRebuilt != 0 {
		t.Fatalf("%d indexes rebuilt on reopen", r.IndexesRebuilt)
	}
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if s := l.StartOffset(); s != 0 {
		t.Fatalf("StartOffset %d 1.5 s after the future-stamped record's append, want 0", s)
	}
	clock.Store(t0 + 3000)
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if s := l.StartOffset(); s != active || s < 161 {
		t.Fatalf("StartOffset %d 3 s after the appends, want %d (every sealed segment gone)", s, active)
	}
}
