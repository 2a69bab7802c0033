package disk

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// residentBytes counts the bytes of the mapping b whose pages are in memory (mincore).
func residentBytes(t *testing.T, b []byte) int {
	t.Helper()
	vec := make([]byte, (len(b)+pageSize-1)/pageSize)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	n := 0
	for _, v := range vec {
		if v&1 != 0 {
			n += pageSize
		}
	}
	return n
}

// dropCache evicts a file's pages from the page cache, as after a reboot.
func dropCache(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// TestOpenReadsWhatWasWritten: reopening a 64 MiB segment that holds one small batch brings in at
// most a few allocation steps of pages, not the segment: recovery checks that the bytes after the
// end of the log are zero without reading the file's holes, and the pre-toucher leaves an idle
// tail alone. A fresh log holds no pre-touched pages either until its first append.
func TestOpenReadsWhatWasWritten(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(dir)
	o.SegmentBytes = 64 << 20
	const bound = 4 << 20

	l := mustOpen(t, o)
	housekeeperPass(t, l)
	if n := residentBytes(t, l.active.Load().data); n > bound {
		t.Errorf("fresh log: %d bytes of its segment resident, want at most %d", n, bound)
	}
	if _, err := l.Append(testBatch(t, 1, 3, 100, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	dropCache(t, filepath.Join(dir, segmentName(0)))

	l = mustOpen(t, o)
	defer l.Close()
	housekeeperPass(t, l)
	housekeeperPass(t, l)
	if n := residentBytes(t, l.active.Load().data); n > bound {
		t.Errorf("reopened log: %d bytes of its 64 MiB segment resident, want at most %d", n, bound)
	}
	if got := readAll(t, l, 1<<20); len(got) != 1 || batchID(t, got[0].bytes) != 1 {
		t.Fatalf("read back %d batches", len(got))
	}
}

// TestRecoveryFindsStaleBytesPastAHole: a non-zero byte in a data region after a hole past the end
// of the log (a later batch written back while an earlier page was not) is still found and cut:
// skipping holes must not skip data.
func TestRecoveryFindsStaleBytesPastAHole(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(dir)
	o.SegmentBytes = 64 << 20
	l := mustOpen(t, o)
	if _, err := l.Append(testBatch(t, 1, 1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, segmentName(0))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	const stale = 40 << 20 // well past the allocated steps: a hole before it
	if _, err := f.WriteAt([]byte{0xAB, 0xCD}, stale); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, o)
	defer l.Close()
	rec := l.Recovery()
	if rec.Reason == "" || rec.BytesTruncated < 2 {
		t.Fatalf("recovery %+v: the stale bytes were not found", rec)
	}
	if b := l.active.Load().data[stale : stale+2]; b[0] != 0 || b[1] != 0 {
		t.Fatalf("stale bytes still there: %x", b)
	}
	if got := readAll(t, l, 1<<20); len(got) != 1 {
		t.Fatalf("read back %d batches, want 1", len(got))
	}
}

// TestIdleLogHousekeeperSleeps: the housekeeper of a log nobody writes stops its periodic pass (at
// 2,000 idle partitions a 50 ms tick each was 40,000 wake-ups a second), and an append still gets
// indexed without a tick: the flusher wakes it after the sync round.
func TestIdleLogHousekeeperSleeps(t *testing.T) {
	o := testOptions(t.TempDir())
	l := mustOpen(t, o)
	defer l.Close()
	housekeeperPass(t, l)
	time.Sleep(3 * idleTick) // let the first idle passes stop the tick
	before := l.hkPasses.Load()
	time.Sleep(10 * idleTick)
	if n := l.hkPasses.Load() - before; n > 1 {
		t.Fatalf("idle log: %d housekeeper passes in %v", n, 10*idleTick)
	}
	if _, err := l.Append(testBatch(t, 1, 1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.active.Load().maxTs.Load() == math.MinInt64 {
		if time.Now().After(deadline) {
			t.Fatal("the append was not indexed within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
