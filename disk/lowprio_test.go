package disk

import (
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestRunLowRunsAtNice19: runLow runs its function on a thread at nice 19 and returns after it, and
// the caller's own thread keeps its priority.
func TestRunLowRunsAtNice19(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadNice()
	var got int
	ran := false
	runLow(func() { got, ran = threadNice(), true })
	if !ran {
		t.Fatal("runLow returned before its function ran")
	}
	if got != lowNice {
		t.Errorf("runLow's function ran at nice %d, want %d", got, lowNice)
	}
	if after := threadNice(); after != before {
		t.Errorf("caller's thread went from nice %d to %d", before, after)
	}
}

// TestPopulateInLowChunks: populate prefaults a range on low-priority threads, in madvise calls of at
// most populateChunk bytes that together cover the range once, in order.
func TestPopulateInLowChunks(t *testing.T) {
	size := 1<<20 + 3*pageSize // not a multiple of the chunk
	data, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	type call struct{ off, n, nice int }
	var mu sync.Mutex
	var calls []call
	prefaultHook = func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		off := int(uintptr(unsafe.Pointer(&b[0])) - uintptr(unsafe.Pointer(&data[0])))
		calls = append(calls, call{off, len(b), threadNice()})
	}
	defer func() { prefaultHook = nil }()
	for _, write := range []bool{false, true} {
		calls = nil
		populate(data, write)
		mu.Lock()
		next := 0
		for _, c := range calls {
			if c.off != next || c.n > populateChunk || c.nice != lowNice {
				t.Errorf("write=%v: madvise of [%d, +%d) at nice %d; want it to start at %d, span at most %d, run at nice %d",
					write, c.off, c.n, c.nice, next, populateChunk, lowNice)
			}
			next = c.off + c.n
		}
		if next != size {
			t.Errorf("write=%v: madvise calls covered %d of %d bytes (%d calls)", write, next, size, len(calls))
		}
		mu.Unlock()
	}
}

// TestHousekeepingRunsAtLowPriority: the housekeeper starts writeback (for a sync waiter) from a
// nice-19 thread, never from a normal one (it did so from its own goroutine's thread, at the
// process's priority).
func TestHousekeepingRunsAtLowPriority(t *testing.T) {
	fs := &faultFS{}
	fs.writebackNice.Store(100)
	l, _ := appendForWriteback(t, fs, true)
	awaitWriteback(t, l, fs)
	if got := fs.writebackNice.Load(); got != lowNice {
		t.Errorf("StartWriteback called from a thread at nice %d (the highest priority seen), want only nice %d", got, lowNice)
	}
}

// TestRunLowInSynctestBubble: a caller inside a testing/synctest bubble (as engine's script tests
// open logs) gets its call run and the bubble ends: the low threads and their channels live outside
// any bubble. Before, the pool's goroutines started in the first caller's bubble, which then could
// not end, and a channel made in a bubble was used from outside it.
func TestRunLowInSynctestBubble(t *testing.T) {
	for range 2 { // the first bubble may start the threads; the second uses them
		synctest.Test(t, func(t *testing.T) {
			got := -1
			runLow(func() { got = threadNice() })
			if got != lowNice {
				t.Errorf("runLow's function ran at nice %d, want %d", got, lowNice)
			}
		})
	}
}
