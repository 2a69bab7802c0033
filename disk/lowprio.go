package disk

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Low-priority threads.
//
// Some of the housekeeper's system calls do kernel work that holds a core for milliseconds:
// madvise(MADV_POPULATE_WRITE/READ) allocates, zeroes and maps page-cache pages (with ext4's
// page_mkwrite for each), and sync_file_range walks and submits dirty pages. On a machine with
// few cores the thread doing that work delays whichever thread the kernel would otherwise run on
// that core, an appender or a consumer that just woke: the scheduler lets a running nice-0 thread
// finish its slice before a woken nice-0 thread of the same weight. Those calls therefore run on
// low-priority threads: lowThreads OS threads, each locked to a goroutine of this pool for the life
// of the process and set to nice 19 (setpriority(PRIO_PROCESS, tid): per thread on Linux), whose
// virtual deadline lies far enough out that a woken nice-0 thread is picked first. Measured on this
// project's 2-core VM (kernel 6.18, PREEMPT_NONE; docs/benchmarks.md 2026-11-29 "Low-priority
// housekeeping"): a nice-0 thread sleeping 200 µs on the core of a thread populating file pages woke
// p99 4.1-4.8 ms late with the populating thread at nice 0, 2.4-3.5 ms at nice 19, 0.2-0.6 ms with
// nothing populating. SCHED_IDLE did no better than nice 19 (2.4-3.3 ms) and can starve the thread
// for seconds on a saturated machine, while it holds the mapping's lock (mmap_lock, read) that a
// roll's munmap and mmap wait for; a nice-19 thread always gets a share.
//
// A thread's priority is lowered once and never raised, and the thread runs nothing else: an
// unprivileged process may lower a thread's priority but not raise it back (RLIMIT_NICE), so the
// pool's goroutines never unlock their threads, and a low thread never returns to the Go
// scheduler's pool of threads that run ordinary goroutines.
//
// Only calls that hold no lock an appender or a syncing producer can wait for go to the pool:
// fallocate (segment.extend) holds allocMu, which an appender that reaches the allocated end takes,
// and fdatasync (the flusher) is waited for by fsync-level producers, so both stay on their
// goroutine's own thread at normal priority.

// lowThreads is the number of low-priority threads. The housekeepers of every log in the process
// share them; what they do is ahead of need (pre-faulting, starting writeback), so a queue behind a
// busy thread costs an appender at most the page faults it then takes itself.
const lowThreads = 2

// lowNice is the nice value of the low-priority threads: the lowest there is.
const lowNice = 19

// lowCall is one call for a low-priority thread: fn runs there, then done is unlocked.
type lowCall struct {
	fn func()
	// done is locked by the caller before the call is sent and unlocked by the low thread after fn
	// returned; the caller waits by locking it again. A mutex rather than a channel because the
	// caller may run inside a testing/synctest bubble (engine's script tests open logs there) and the
	// low threads never do: a channel made in a bubble must not be used from outside it, a mutex may.
	done sync.Mutex
}

// lowCalls carries calls to the dispatcher (lowDispatch). Made at package initialisation, outside
// any synctest bubble, so that a caller in a bubble may send on it. Unbuffered: a call waits until
// the dispatcher takes it.
var lowCalls = make(chan *lowCall)

func init() {
	// Started here, outside any synctest bubble, like the threads it starts: a goroutine started from
	// a bubble belongs to it, and the bubble could then never end. Until the first call it is one
	// parked goroutine and no thread.
	go lowDispatch()
}

// lowDispatch starts the low-priority threads at the first call, then hands each call to a free one.
func lowDispatch() {
	c := <-lowCalls
	work := make(chan *lowCall) // unbuffered: the dispatcher waits for a free thread
	for range lowThreads {
		go lowThread(work)
	}
	for {
		work <- c
		c = <-lowCalls
	}
}

// lowThread runs calls on a thread of its own at nice lowNice. If setpriority fails (it may not, for
// an unprivileged process lowering its own thread) the calls run at normal priority.
func lowThread(work <-chan *lowCall) {
	// Locked for good: the thread's priority is never raised again (see above), so the thread must
	// never run another goroutine, and exits with this one if it ever returns.
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), lowNice)
	for c := range work {
		c.fn()
		c.done.Unlock()
	}
}

// runLow runs fn on a low-priority thread and returns when it has returned. The caller's goroutine
// is parked meanwhile; the low thread's goroutine holds a P while fn is in a system call, as any
// goroutine does (docs/architecture.md, "Threads and who owns what": the broker runs with spare Ps).
// It allocates (the call and fn's closure): housekeeping only, never the append path.
func runLow(fn func()) {
	c := &lowCall{fn: fn}
	c.done.Lock()
	lowCalls <- c
	c.done.Lock() // unlocked by the low thread once fn has returned
}
