package disk

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/wire"
)

// diskUsage is what du reports for dir: the blocks allocated to its files, in bytes.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		n += blocks(filepath.Join(dir, e.Name()))
	}
	return n
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// housekeeperPass returns once the housekeeper has run a whole pass that started after the call:
// it takes a wake-up (the pass starts), then a second one, which it takes only when that pass is
// done.
func housekeeperPass(t *testing.T, l *Log) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for range 2 {
		l.kickHousekeeper()
		for len(l.hkWake) > 0 {
			if time.Now().After(deadline) {
				t.Fatal("the housekeeper did not run for 10s")
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// TestIdleLogAllocatesOneStep: a fresh log with the default 64 MiB segments holds one allocation
// step on disk, not a segment, and keeps to it after a small append and across a reopen (recovery
// does not extend the tail to the segment size).
func TestIdleLogAllocatesOneStep(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, Logger: quietLogger()}
	l := mustOpen(t, o)
	defer func() { l.Close() }()
	const slack = 64 << 10 // the file system's own metadata blocks
	check := func(when string) {
		t.Helper()
		if du := diskUsage(t, dir); du < AllocStep || du > AllocStep+slack {
			t.Fatalf("%s: du %d bytes, want one step (%d)", when, du, AllocStep)
		}
	}
	check("fresh log")
	if _, err := l.Append(testBatch(t, 1, 1, 100, 0)); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	housekeeperPass(t, l)
	check("after one append")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, o)
	check("reopened")
	if l.NextOffset() != 1 {
		t.Fatalf("NextOffset %d after reopen", l.NextOffset())
	}
}

// TestNewLogsDoNotExhaustSpace is issue 12's scenario on a disk of two segments: several new,
// barely used logs take a step each, and the log that was there keeps appending past a roll.
func TestNewLogsDoNotExhaustSpace(t *testing.T) {
	root := t.TempDir()
	o := testOptions("")
	fs := &quotaFS{capacity: 2 * int64(o.SegmentBytes)}
	var logs []*Log
	defer func() {
		for _, l := range logs {
			l.Close()
		}
	}()
	for i := range 8 {
		o := testOptions(filepath.Join(root, string(rune('a'+i))))
		o.FS = fs
		l, err := Open(o)
		if err != nil {
			t.Fatalf("opening log %d with %d of %d bytes used: %v", i, fs.Used(), fs.capacity, err)
		}
		logs = append(logs, l)
		if _, err := l.Append(testBatch(t, uint64(i), 1, 10, 0)); err != nil {
			t.Fatalf("first append to log %d: %v", i, err)
		}
	}
	first := logs[0]
	for i := 0; first.Size() < int64(o.SegmentBytes)+int64(o.SegmentBytes)/4; i++ {
		if _, err := first.Append(testBatch(t, uint64(100+i), 1, 1000, 0)); err != nil {
			t.Fatalf("append %d to the first log after %d bytes, %d of %d bytes used: %v", i, first.Size(), fs.Used(), fs.capacity, err)
		}
	}
	if n := len(*first.segs.Load()); n < 2 {
		t.Fatalf("%d segments; the test wants a roll", n)
	}
}

// TestDiskFillsUp fills a small disk from four concurrent appenders: every append either succeeds
// or fails with ErrNoSpace (no SIGBUS: an append never writes past a segment's reserved blocks),
// the disk ends up nearly all used by data, everything acknowledged is intact, and appends resume
// once space returns.
func TestDiskFillsUp(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(dir)
	fs := &quotaFS{capacity: 5*int64(o.SegmentBytes) + 3*4096}
	o.FS = fs
	l := mustOpen(t, o)
	type ack struct {
		base  int64
		batch []byte
	}
	var mu sync.Mutex
	var acks []ack
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				b := testBatch(t, uint64(w)<<32|uint64(i), 1+i%3, 50+(i*37+w*101)%900, 0)
				res, err := l.Append(b)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acks = append(acks, ack{res.BaseOffset, b})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrNoSpace) || !errors.Is(err, unix.ENOSPC) || !strings.HasPrefix(err.Error(), "disk: no space") {
			t.Fatalf("Append on a full disk: %v", err)
		}
	}
	const slack = 16 << 10 // extent-tree blocks the file system may add beyond the data's
	if used := fs.Used(); used > fs.capacity+slack {
		t.Fatalf("%d bytes allocated on a disk of %d", used, fs.capacity)
	}
	// The real disk is not full, so a write into a hole (past what fallocate reserved) would not
	// raise SIGBUS here but allocate a block the quota never granted: count them.
	segBlocks := func() (n int64) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), logSuffix) || strings.HasSuffix(e.Name(), logSuffix+tmpSuffix) {
				n += blocks(filepath.Join(dir, e.Name()))
			}
		}
		return n
	}
	if n := segBlocks(); n > fs.capacity+slack {
		t.Fatalf("segment files hold %d bytes of blocks on a disk of %d: something wrote past the allocation", n, fs.capacity)
	}
	if size := l.Size(); size < fs.capacity*3/4 {
		t.Fatalf("only %d bytes of data on a disk of %d when it was full", size, fs.capacity)
	}
	if _, err := l.Append(testBatch(t, 1<<40, 1, 1000, 0)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Append on a still full disk: %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	check := func(l *Log) {
		t.Helper()
		got := readAll(t, l, 1<<20)
		byBase := map[int64][]byte{}
		for _, g := range got {
			byBase[g.base] = g.bytes
		}
		for _, a := range acks {
			if err := sameBatch(byBase[a.base], a.batch, a.base); err != nil {
				t.Fatalf("acknowledged batch at %d: %v", a.base, err)
			}
		}
		if len(got) != len(acks) {
			t.Fatalf("%d batches stored, %d acknowledged", len(got), len(acks))
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, o) // on the full disk
	defer func() { l.Close() }()
	if r := l.Recovery(); r.InvalidPosition != -1 {
		t.Fatalf("recovery after a full disk found damage: %+v", r)
	}
	check(l)
	fs.mu.Lock()
	fs.capacity += 2 * int64(o.SegmentBytes) // space returns
	fs.mu.Unlock()
	for i := range 100 {
		b := testBatch(t, uint64(2<<40+i), 1, 1000, 0)
		res, err := l.Append(b)
		if err != nil {
			t.Fatalf("Append %d after space returned: %v", i, err)
		}
		acks = append(acks, ack{res.BaseOffset, b})
	}
	check(l)
}

// copyLog copies a live log's directory as a process crash leaves it (the page cache keeps whatever
// was written through the mappings), keeping each segment file's length and its allocated blocks:
// the copy of a file allocated from 0 to A (its first hole) is allocated from 0 to alloc(A), a
// hole after that, and holds the source's non-zero pages.
func copyLog(t *testing.T, from, to string, alloc func(name string, a int64) int64) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(src)
		if err != nil {
			t.Fatal(err)
		}
		a, err := unix.Seek(int(src.Fd()), 0, unix.SEEK_HOLE)
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := dst.Truncate(int64(len(b))); err != nil {
			t.Fatal(err)
		}
		if a = alloc(e.Name(), a); a > 0 {
			if err := unix.Fallocate(int(dst.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, a); err != nil {
				t.Fatal(err)
			}
		}
		for p := 0; p < len(b); p += pageSize {
			if page := b[p:min(len(b), p+pageSize)]; !allZero(page) {
				if _, err := dst.WriteAt(page, int64(p)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// batchOfSize returns a valid one-record batch of exactly n bytes.
func batchOfSize(t *testing.T, id uint64, n int) []byte {
	t.Helper()
	for v := max(0, n-120); v <= n; v++ {
		if b := testBatch(t, id, 1, v, 0); len(b) == n {
			return b
		}
	}
	t.Fatalf("no batch of %d bytes", n)
	return nil
}

// TestRecoverPartiallyAllocated recovers a log left by a crash while its tail segment was
// allocated only part way. The file's length is SegmentBytes (or, for the short file, the end of the
// data) and says nothing about where the data ends or what is allocated. Recovery keeps every
// batch, allocates the tail only to the end of its data rounded up to a step, and appends then
// allocate the rest step by step and roll; a second reopen is clean.
func TestRecoverPartiallyAllocated(t *testing.T) {
	for _, tc := range []struct {
		name string
		// end is where the data ends (0: wherever the batches end). exact cuts the copied tail's
		// allocation to the data's end; short also cuts the file's length there.
		end          int
		exact, short bool
	}{
		{"allocated ahead of the data", 0, false, false},
		{"data ends at the allocated end", 3 * 4096, true, false},
		{"file ends at the data's end", 3 * 4096, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t.TempDir())
			live := mustOpen(t, o)
			defer live.Close()
			step := allocStep(o.SegmentBytes)
			var batches [][]byte
			var pos int
			stop := 2*step + step/2
			if tc.end > 0 {
				stop = tc.end
			}
			for i := 0; pos < stop; i++ {
				b := testBatch(t, uint64(i), 1+i%2, 40+i*13%300, 0)
				if tc.end > 0 && tc.end-pos-len(b) < 200 {
					b = batchOfSize(t, uint64(i), tc.end-pos)
				}
				if _, err := live.Append(b); err != nil {
					t.Fatal(err)
				}
				batches = append(batches, b)
				pos += len(b)
			}
			if tc.end > 0 && pos != tc.end {
				t.Fatalf("data ends at %d, want %d", pos, tc.end)
			}
			crashed := t.TempDir()
			copyLog(t, live.Dir(), crashed, func(name string, a int64) int64 {
				if name == segmentName(0) && tc.exact {
					return int64(pos)
				}
				return a
			})
			tail := filepath.Join(crashed, segmentName(0))
			if tc.short {
				if err := os.Truncate(tail, int64(pos)); err != nil {
					t.Fatal(err)
				}
			}
			if b := blocks(tail); b < int64(pos) || b >= int64(o.SegmentBytes) {
				t.Fatalf("crashed tail file with %d bytes allocated; the test wants between the data end %d and %d", b, pos, o.SegmentBytes)
			}

			o.Dir = crashed
			l := mustOpen(t, o)
			defer func() { l.Close() }()
			if r := l.Recovery(); r.InvalidPosition != -1 || r.BatchesKept != len(batches) {
				t.Fatalf("recovery %+v, want %d batches kept and no damage", r, len(batches))
			}
			checkPrefix(t, l, batches, len(batches))
			// Recovery allocates to the data's end rounded up to a step; the housekeeper may have
			// gone AllocAheadBytes further since (the writer is past half of the first step).
			lo, hi := roundUp(pos, step), roundUp(pos+4*step, step)
			if alloc := int(l.active.Load().allocated.Load()); alloc < lo || alloc > hi {
				t.Fatalf("recovered tail allocated to %d, want from %d to %d", alloc, lo, hi)
			}
			if b := blocks(tail); b < int64(lo) || b > int64(hi) {
				t.Fatalf("recovered tail file with %d bytes allocated, want from %d to %d", b, lo, hi)
			}
			if size := fileSize(t, tail); size != int64(o.SegmentBytes) {
				t.Fatalf("recovered tail file of %d bytes, want %d", size, o.SegmentBytes)
			}
			// Appends continue through the rest of the segment, step by step, and into the next.
			for i := 0; len(*l.segs.Load()) < 2; i++ {
				b := testBatch(t, uint64(1000+i), 2, 300+i*7%500, 0)
				if _, err := l.Append(b); err != nil {
					t.Fatalf("append %d after recovery: %v", i, err)
				}
				batches = append(batches, b)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, o)
			if r := l.Recovery(); r.InvalidPosition != -1 {
				t.Fatalf("second recovery found damage: %+v", r)
			}
			checkPrefix(t, l, batches, len(batches))
		})
	}
}

// TestAppendAtAllocatedEnd: with no headroom (the housekeeper extends a file only once the writer
// stands exactly at its allocated end), appenders that reach the end extend the file themselves,
// step by step, through a segment and into the next.
func TestAppendAtAllocatedEnd(t *testing.T) {
	o := testOptions(t.TempDir())
	o.AllocAheadBytes = 1
	l := mustOpen(t, o)
	defer l.Close()
	var appended [][]byte
	for len(*l.segs.Load()) < 3 {
		b := testBatch(t, uint64(len(appended)), 1+len(appended)%4, 100+len(appended)*53%1500, 0)
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		appended = append(appended, b)
	}
	if hits := l.limitHits.Load(); hits < 8 {
		t.Fatalf("%d appends reached the allocated end in %d appends over two segments of %d steps", hits, len(appended), o.SegmentBytes/int(l.step))
	}
	checkPrefix(t, l, appended, len(appended))
}

// TestAppendDoesNotAllocate: the append path stays allocation-free when appenders reserve blocks
// themselves (no headroom, so they reach the allocated end every few appends).
func TestAppendDoesNotAllocate(t *testing.T) {
	o := testOptions(t.TempDir())
	// 4 MiB segments in steps of 256 KiB: the run (600 appends of 2 KiB) reserves a few steps, and
	// neither rolls nor reaches half the segment, where the housekeeper creates the spare file.
	o.SegmentBytes = 4 << 20
	o.AllocAheadBytes = 1
	l := mustOpen(t, o)
	defer l.Close()
	b := testBatch(t, 1, 2, 1000, 0)
	before := l.limitHits.Load()
	if allocs := testing.AllocsPerRun(600, func() {
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("Append allocates %.1f times per call", allocs)
	}
	if hits := l.limitHits.Load() - before; hits < 3 {
		t.Fatalf("only %d appends reserved blocks themselves", hits)
	}
}

// minorFaults is the process's minor page faults so far (getrusage).
func minorFaults(t *testing.T) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt
}

// Large appends reach the segment through pwritev, not stores into its mapping: writing 16 MiB in
// 32 KiB appends (with pre-faulting limited to a page ahead) takes far fewer page faults than the
// 4,096 pages written (a store into the mapping faults every page it is first to touch). What
// remains are the pre-toucher's page, the indexer's and the readers' read faults (fault-around maps
// 16 pages each) and the runtime's own. The bytes read back through the mapping are the batches
// with their base offsets patched.
func TestAppendWritesWithoutFaultingTheMapping(t *testing.T) {
	o := testOptions(t.TempDir())
	o.SegmentBytes, o.MaxBatchBytes = 32<<20, 1<<20
	o.PretouchBytes = pageSize
	l := mustOpen(t, o)
	defer l.Close()
	b := testBatch(t, 1, 16, 2000, 0) // 32 KiB: at least pwriteMin
	n := (16 << 20) / len(b)
	runtime.GC()
	before := minorFaults(t)
	for range n {
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	if len(b) < pwriteMin {
		t.Fatalf("a %d-byte batch is not written with pwritev", len(b))
	}
	faults := minorFaults(t) - before
	pages := int64(n * len(b) / pageSize)
	t.Logf("%d minor faults appending %d pages", faults, pages)
	if faults > pages/4 {
		t.Fatalf("%d minor faults appending %d pages: appends fault the mapping in", faults, pages)
	}
	if allocs := testing.AllocsPerRun(50, func() {
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("a pwritev append allocates %.1f times", allocs)
	}
	n += 51 // AllocsPerRun's warm-up run and its 50
	var next int64
	for next < l.NextOffset() {
		v, err := l.Read(next, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for p := 0; p < len(v.Data); {
			h, err := wire.ValidateBatch(v.Data[p:], 0)
			if err != nil || h.BaseOffset != next {
				v.Release()
				t.Fatalf("batch at offset %d: base %d, %v", next, h.BaseOffset, err)
			}
			next += int64(h.RecordCount)
			p += h.Size()
		}
		v.Release()
	}
	if next != int64(16*n) {
		t.Fatalf("read %d records, appended %d", next, 16*n)
	}
}

// A writer of large appends only (pwritev) has its pages pre-faulted for a segment's first 4 MiB
// (pretouchIdle), then no more; one that makes small appends keeps them pre-faulted. 16 MiB of
// 32 KiB appends with the default PretouchBytes (1 MiB) fault in well under half the 4,096 pages;
// pre-faulting them all faults every page.
func TestLargeAppendsAreNotPrefaulted(t *testing.T) {
	o := testOptions(t.TempDir())
	o.SegmentBytes, o.MaxBatchBytes = 32<<20, 1<<20
	l := mustOpen(t, o)
	defer l.Close()
	b := testBatch(t, 1, 16, 2000, 0) // 32 KiB: at least pwriteMin
	n := (16 << 20) / len(b)
	runtime.GC()
	before := minorFaults(t)
	for i := range n {
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		if i%32 == 0 {
			waitHousekeeper(t, l) // let the pre-toucher keep up, as it would if it were needed
		}
	}
	faults := minorFaults(t) - before
	pages := int64(n * len(b) / pageSize)
	t.Logf("%d minor faults appending %d pages", faults, pages)
	if faults > pages/2 {
		t.Fatalf("%d minor faults appending %d pages: the pages of large appends are pre-faulted", faults, pages)
	}

	// Small appends turn it back on: the pages ahead of the claim get faulted in.
	small := testBatch(t, 2, 2, 1000, 0)
	before = minorFaults(t)
	for range 64 {
		if _, err := l.Append(small); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for minorFaults(t)-before < 128 {
		if time.Now().After(deadline) {
			t.Fatalf("%d faults after small appends: the pre-toucher did not resume", minorFaults(t)-before)
		}
		waitHousekeeper(t, l)
	}
}

// waitHousekeeper wakes the housekeeper and waits (10 s at most) for one full pass after that.
func waitHousekeeper(t *testing.T, l *Log) {
	t.Helper()
	start := l.hkPasses.Load()
	deadline := time.Now().Add(10 * time.Second)
	for l.hkPasses.Load() < start+2 {
		if time.Now().After(deadline) {
			t.Fatal("the housekeeper did not run")
		}
		l.kickHousekeeper()
		time.Sleep(time.Millisecond)
	}
}

// TestFastWriterSpareReservedWhole: a writer that fills segments fast gets its next segment
// pre-created at once and reserved whole, so nothing reserves blocks of the file it writes while it
// writes it (no fallocate contends with its pwritev for the inode); a slow writer's spare keeps its
// first step.
func TestFastWriterSpareReservedWhole(t *testing.T) {
	o := testOptions(t.TempDir())
	o.SegmentBytes = 4 << 20 // step 256 KiB
	l := mustOpen(t, o)
	defer l.Close()
	b := testBatch(t, 1, 4, 16<<10, 0) // 64 KiB appends
	appendUntil := func(segs int) {
		t.Helper()
		for i := 0; len(*l.segs.Load()) < segs; i++ {
			if i > 10000 {
				t.Fatal("no roll")
			}
			if _, err := l.Append(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	spareBlocks := func() int64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			housekeeperPass(t, l)
			l.mu.Lock()
			sp := l.spare
			l.mu.Unlock()
			if sp != nil {
				return blocks(filepath.Join(o.Dir, spareName))
			}
			if time.Now().After(deadline) {
				t.Fatal("no spare after 10s")
			}
		}
	}
	appendUntil(3) // two segments filled well within fastFill: a fast writer
	if got := spareBlocks(); got < int64(o.SegmentBytes) {
		t.Fatalf("a fast writer's spare holds %d bytes of blocks, want the whole %d", got, o.SegmentBytes)
	}
	// The segment made of it is written to its end without reserving anything.
	appendUntil(4)
	s := l.active.Load()
	hits := l.limitHits.Load()
	if a := s.allocated.Load(); a != uint32(len(s.data)) {
		t.Fatalf("segment from a whole spare reserved to %d, want %d", a, len(s.data))
	}
	appendUntil(5)
	if h := l.limitHits.Load() - hits; h != 0 {
		t.Fatalf("%d appends reserved blocks in a segment reserved whole", h)
	}

	// A slow writer: the last segment took longer than fastFill to fill, and the active one is
	// old. Its spare, once due, keeps the first step.
	l2 := mustOpen(t, Options{Dir: t.TempDir(), SegmentBytes: 4 << 20, Logger: quietLogger()})
	defer l2.Close()
	l2.fillNanos.Store(int64(time.Minute))
	s2 := l2.active.Load()
	s2.activeAt = time.Now().Add(-time.Minute).UnixNano() // before the housekeeper reads it (below)
	for pos := 0; pos < len(s2.data)/2; pos += len(b) {
		if _, err := l2.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		housekeeperPass(t, l2)
		l2.mu.Lock()
		sp := l2.spare
		l2.mu.Unlock()
		if sp != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no spare after 10s")
		}
	}
	if got := blocks(filepath.Join(l2.dir, spareName)); got != int64(allocStep(4<<20)) {
		t.Fatalf("a slow writer's spare holds %d bytes of blocks, want one step (%d)", got, allocStep(4<<20))
	}
}

// TestNoPagesAheadOfLargeWriter: a writer of large appends only (pwritev), read back as it writes,
// leaves no page of the unwritten rest of its segment in the page cache once past its first
// segment: nothing pre-faults them, so no fault of the pre-toucher's starts the kernel's read-ahead
// of zeroed pages ahead of the writer (segment.smallWriter). A writer of small appends has pages
// ahead of its claim made resident in its second segment too, from its start.
func TestNoPagesAheadOfLargeWriter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		valSize   int
		wantAhead bool
	}{
		{"large appends", 2000, false}, // 16 records: 32 KiB batches, at least pwriteMin
		{"small appends", 100, true},   // 16 records: 2 KiB batches, through the mapping
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t.TempDir())
			o.SegmentBytes, o.MaxBatchBytes = 16<<20, 1<<20
			l := mustOpen(t, o)
			defer l.Close()
			b := testBatch(t, 1, 16, tc.valSize, 0)
			var read int64
			var sum byte
			readUp := func() { // a consumer at the tail: touch every page appended since the last call
				for read < l.NextOffset() {
					v, err := l.Read(read, 1<<20)
					if err != nil {
						t.Fatal(err)
					}
					for i := 0; i < len(v.Data); i += pageSize {
						sum += v.Data[i]
					}
					read = v.NextOffset
					v.Release()
				}
			}
			for i := 0; len(*l.segs.Load()) < 2 || committedPos(l.active.Load()) < 6<<20; i++ {
				if _, err := l.Append(b); err != nil {
					t.Fatal(err)
				}
				if i%16 == 0 {
					readUp()
					waitHousekeeper(t, l)
				}
			}
			readUp()
			waitHousekeeper(t, l)
			s := l.active.Load()
			from := roundUp(int(committedPos(s)), pageSize) + pageSize // past the page the last append ends in
			ahead := residentPages(t, s.data[from:])
			t.Logf("%d pages resident past the claim of segment %d (sum %d)", ahead, len(*l.segs.Load()), sum)
			if tc.wantAhead && ahead == 0 {
				t.Fatal("no page ahead of a small writer's claim is resident: the pre-toucher did not run in its second segment")
			}
			if !tc.wantAhead && ahead > 0 {
				t.Fatalf("%d pages ahead of a large writer's claim are in the page cache: pre-faulted or read ahead", ahead)
			}
		})
	}
}

// residentPages counts the pages of b (page-aligned, in a file mapping) in the page cache (mincore).
func residentPages(t *testing.T, b []byte) int {
	t.Helper()
	vec := make([]byte, (len(b)+pageSize-1)/pageSize)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// committedPos is the position up to which s holds published batches.
func committedPos(s *segment) uint32 {
	pos, _ := unpack(s.committed.Load())
	return pos
}
