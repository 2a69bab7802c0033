package ring

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/sluicemq/sluice/internal/atomicutil"
)

// cacheLine is the padding unit between fields written by different goroutines
// (atomicutil.CacheLine says why 128 bytes).
const cacheLine = atomicutil.CacheLine

// Consumer states, held in waiter.state.
const (
	running uint32 = iota // consumer is (or will soon be) looking at the ring
	parked                // consumer is, or is about to be, blocked on waiter.wake
	armed                 // consumer is an idle event loop; call Waker
)

// waiter is the wake-up half of a ring, shared by SPSC and MPSC. It sits on
// its own cache lines: producers read state after every publish, and the
// consumer writes it only on its way to idle, so while the consumer is busy
// the line stays shared in every producer's cache and the check is one load
// that hits.
//
// The protocol is Dekker's. The consumer stores parked (or armed), then
// re-reads the ring; a producer stores its publication, then reads state.
// Go's atomics are sequentially consistent, so at least one of the two sees
// the other's store: either the consumer sees the entry and does not block,
// or the producer sees parked and wakes it. A wake-up is never lost.
//
// The embedding ring puts a full cache line of padding in front of a waiter.
type waiter struct {
	// state is running, parked or armed. The consumer moves it away from
	// running; whoever moves it back (one producer's CAS, Close, or the
	// consumer cancelling) owes the wake-up if the CAS took it from parked
	// or armed, so exactly one signal is sent per park or Arm.
	state atomic.Uint32
	// blocked counts producers parked in Put on a full ring (WaitPark).
	// Producers change it only on their way into and out of a park; the
	// consumer loads it after each batch, a hit while it is zero.
	blocked atomic.Int32
	_       [cacheLine - unsafe.Sizeof(atomic.Uint32{}) - unsafe.Sizeof(atomic.Int32{})]byte

	// Read-mostly configuration, written once before the ring is shared
	// (closed is written once more, by Close).
	closed atomic.Uint32
	// wake carries a parked consumer's wake-up. One buffered slot: a
	// producer's send never blocks, and a token sent just after the consumer
	// cancelled its park is left for the next park, which then returns at
	// once and re-checks (a spurious wake-up, never a lost one).
	wake   chan struct{}
	waker  func()
	wait   WaitStrategy
	spins  int
	yields int
	// resume is how many free slots the consumer waits for before it
	// wakes parked producers: a quarter of the ring, so a producer's
	// wake-up buys a run of publishes, not one.
	resume uint64
	// wakeAt is the consumer's: the position past which it wakes parked
	// producers even if the ring has not drained to resume free slots
	// (0: none parked when it last looked). See freed.
	wakeAt uint64

	// mu and space park producers on a full ring. space.L is &mu.
	mu    sync.Mutex
	space sync.Cond

	// idleHook, if set, runs on the consumer just before it announces
	// parked or armed. Tests only: they publish from it to land an entry
	// between the consumer's last look at the ring and its announce, the
	// window that the re-check after the announce exists for.
	idleHook func()
}

func (w *waiter) init(o Options) {
	w.wake = make(chan struct{}, 1)
	w.waker = o.Waker
	w.wait = o.Wait
	w.spins = o.Spins
	w.yields = o.Yields
	w.resume = uint64(max(1, o.Capacity/4))
	w.space.L = &w.mu
}

// signal wakes the consumer if it has parked or armed. Producers call it
// after publishing, only when a load of state saw something other than
// running, so a producer pays one load while the consumer is running.
func (w *waiter) signal() {
	s := w.state.Load()
	if s == running || !w.state.CompareAndSwap(s, running) {
		return // running, or another producer took this wake-up
	}
	if s == armed {
		if w.waker != nil {
			w.waker()
		}
		return
	}
	select {
	case w.wake <- struct{}{}:
	default: // a token is already pending: the consumer will wake
	}
}

// announce is the consumer's first step to parking (s == parked) or arming
// (s == armed). The consumer must re-check the ring and closed after it, then
// either cancel or block.
func (w *waiter) announce(s uint32) {
	if w.idleHook != nil {
		w.idleHook()
	}
	w.state.Store(s)
}

// cancel takes back an announce after the re-check found work. If a producer
// got there first, its wake-up is already on its way: a token in wake (a
// spurious return from the next park) or a Waker call.
func (w *waiter) cancel(s uint32) { w.state.CompareAndSwap(s, running) }

// block waits for a wake-up after an announce(parked) whose re-check found
// nothing.
func (w *waiter) block() {
	<-w.wake
	// After a producer's wake-up state is running already; after a stale
	// token it is still parked, and the consumer is awake now.
	w.state.Store(running)
}

// consumerPause is the consumer's step i of waiting for an entry. It returns
// true when the caller should park now (announce, re-check, block).
func (w *waiter) consumerPause(i int) (park bool) {
	switch {
	case w.wait == WaitSpin || i < w.spins:
		backoff(i)
		return false
	case w.wait == WaitYield || i < w.spins+w.yields:
		runtime.Gosched()
		return false
	}
	return true
}

// fullWait is a producer's progress through waiting for space.
type fullWait struct {
	i     int       // the pause step
	head  uint64    // the consumer's released position at the producer's last look
	still time.Time // when its yields ran out with head at that position (zero: not yet)
}

// parkAfter is how long a producer on a full ring yields without seeing the
// consumer release a slot before it parks (WaitPark).
const parkAfter = 50 * time.Microsecond

// fullPause is a producer's pause after an offer found the ring full; head
// is the ring's head now. The producer spins an eighth as long as the
// consumer would, then yields, and parks (until hasSpace) only once it has
// yielded Yields times and the consumer has released nothing for parkAfter.
// A move of head starts the sequence again, with the short spin: space has
// just been freed.
//
// While head moves the consumer is running and space is coming, and parking
// would only add a wake-up, a costly one: Go puts a goroutine woken by the
// consumer on the consumer's own processor, behind the consumer, which does
// not yield while it has entries, so a producer woken there sat idle for
// milliseconds. With 4 producers on 2 cores, parking after 16 yields (a few
// microseconds) made hand-offs 1.6x slower than never parking; parking only
// after parkAfter without progress costs nothing measurable. The short spin
// is for the same cores: a full ring frees only when the consumer runs, and
// with more goroutines than cores a spinning producer holds the core the
// consumer needs (1.2x to 1.5x faster than with the consumer's spin count).
func (w *waiter) fullPause(f *fullWait, head uint64, hasSpace func() bool) {
	if head != f.head {
		f.head, f.still, f.i = head, time.Time{}, 0
	}
	switch {
	case w.wait == WaitSpin || f.i < w.spins/8:
	case w.wait == WaitYield || f.i < w.spins/8+w.yields || !f.stillFor(parkAfter):
		runtime.Gosched()
	default:
		w.blockForSpace(hasSpace)
	}
	f.i++
}

// stillFor reports whether head has been still for d, starting the clock
// at the first call after head moved: the clock is read only once the
// yields are spent, not on every pause.
func (f *fullWait) stillFor(d time.Duration) bool {
	if f.still.IsZero() {
		f.still = time.Now()
		return false
	}
	return time.Since(f.still) >= d
}

// blockForSpace parks a producer until hasSpace or the ring is closed. The
// producer counts itself in blocked before it looks at head, and the
// consumer stores head before it loads blocked (wakeProducers), so either
// the producer sees the space or the consumer sees the producer: the
// Dekker pattern again. The consumer broadcasts under mu, so a producer
// between its check and space.Wait cannot miss it.
func (w *waiter) blockForSpace(hasSpace func() bool) {
	w.mu.Lock()
	w.blocked.Add(1)
	for !hasSpace() && !w.isClosed() {
		w.space.Wait()
	}
	w.blocked.Add(-1)
	w.mu.Unlock()
}

// freed is the consumer's report, after storing head = h, that producers
// are parked (blocked != 0) and free slots are now free. It wakes them once
// resume slots are free, or once the consumer has released resume more
// slots since it first saw them parked: while other producers keep the
// ring full it may never drain to resume free, and a parked producer must
// not wait for ever (TestParkedProducerWokenUnderRefill). A wakeAt left
// from an earlier park only wakes the next one early.
func (w *waiter) freed(h, free uint64) {
	if w.wakeAt == 0 {
		w.wakeAt = h + w.resume
	}
	if free >= w.resume || h >= w.wakeAt {
		w.wakeAt = 0
		w.wakeProducers()
	}
}

// wakeProducers wakes every producer parked in blockForSpace. The consumer
// calls it by way of freed; Close calls it unconditionally.
func (w *waiter) wakeProducers() {
	w.mu.Lock()
	w.space.Broadcast()
	w.mu.Unlock()
}

// close marks the ring closed and wakes a parked or armed consumer. It
// reports whether this call closed the ring.
func (w *waiter) close() bool {
	if !w.closed.CompareAndSwap(0, 1) {
		return false
	}
	w.signal()
	w.wakeProducers()
	return true
}

func (w *waiter) isClosed() bool { return w.closed.Load() != 0 }

func (w *waiter) mustWaker() {
	if w.waker == nil {
		panic("ring: Arm needs Options.Waker")
	}
}

// put is Put's slow path, shared by both rings: offer until it succeeds or
// the ring closes, pausing by fullPause. The closures do not escape, so a
// blocked Put allocates nothing either.
func (w *waiter) put(offer, hasSpace func() bool, head *atomic.Uint64) bool {
	f := fullWait{head: head.Load()}
	for !w.isClosed() {
		w.fullPause(&f, head.Load(), hasSpace)
		if offer() {
			return true
		}
	}
	return false
}

// settle is the consumer's last step before it blocks (s == parked) or
// sleeps as an armed event loop (s == armed): it announces s and re-checks
// the ring and Close. It reports whether the consumer may block or sleep;
// if not, it has taken the announcement back.
//
// ready reports an entry at the consumer's position. inFlight reports
// whether a publication may be on its way whose producer's state load may
// have passed the announcement: publication is a plain release store
// (fence.go), so the store may still sit in its core's store buffer while
// the load that follows it runs. For SPSC that is always possible; for
// MPSC only while a position at or after next is claimed, since a claim is
// a compare-and-swap, a full fence, and a producer that claims after the
// consumer's look loads state after the announcement. Only then does the
// consumer pay heavyFence, after which the publication is visible to ready
// or the producer's state load sees the announcement.
func (w *waiter) settle(s uint32, ready, inFlight func() bool) bool {
	w.announce(s)
	if !ready() && !w.isClosed() {
		if !inFlight() {
			return true
		}
		heavyFence()
		if !ready() && !w.isClosed() {
			return true
		}
	}
	w.cancel(s)
	return false
}

// await is Wait for both rings (ready and inFlight as for settle).
func (w *waiter) await(ready, inFlight func() bool) bool {
	for i := 0; ; i++ {
		if ready() {
			return true
		}
		if w.isClosed() {
			return ready() // entries published before Close are delivered
		}
		if w.consumerPause(i) && w.settle(parked, ready, inFlight) {
			w.block()
		}
	}
}

// arm is Arm for both rings (ready and inFlight as for settle).
func (w *waiter) arm(ready, inFlight func() bool) bool {
	w.mustWaker()
	return w.settle(armed, ready, inFlight)
}

// backoff is a spinning consumer's pause before its re-check i of an empty
// ring, growing from a few to 256 iterations of spin (tens of nanoseconds).
// Re-reading the producer's cache line in a tight loop would take the line
// from the producer between its stores, slowing the very publish the
// consumer waits for; pausing lets entries accumulate, so the consumer then
// reads a run of them with one look at the producer's line.
func backoff(i int) { spin(8 << min(i, 5)) }

// Pacing. A consumer whose last look at the producers' side found fewer
// than paceRun new entries is ahead of its producers: it spins pacePause
// iterations before it looks again, so that entries arrive in runs rather
// than one per look. Each look takes a line the producer is writing (SPSC:
// tail; MPSC: the next slot) into the consumer's cache, and the producer's
// next store must take it back: two cross-core transfers, several times the
// cost of the hand-off itself. Paced, a single-entry SPSC hand-off is about
// 1.5x faster, and its one-way latency lower (benchmarks.md).
const (
	paceRun   = 32
	pacePause = 128
)

// spin is a busy loop of n iterations on registers: a pause that touches no
// memory and issues no fence. (The compiler keeps a loop with no effects;
// TestSpinTakesTime checks that it still does.)
//
//go:noinline
func spin(n int) {
	for j := 0; j < n; j++ {
	}
}
