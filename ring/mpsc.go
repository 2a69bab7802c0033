package ring

import (
	"sync/atomic"
	"unsafe"
)

// slot is one MPSC entry with its publication mark in front of it, as an
// Aeron frame's length precedes its body: the consumer's acquire load of seq
// and its read of v usually touch the same cache line.
type slot[T any] struct {
	// seq marks a published run, as an Aeron frame's length covers the
	// frame: the slot of position p holds p+n once the n entries claimed
	// from p (1 by Offer, a batch by OfferBatch) are written, stored with
	// release by their producer. The entry at p is published if and only if
	// the mark of p's slot exceeds p: slots inside a run keep older marks,
	// and a mark set on an earlier lap, at q <= p-cap for a run of at most
	// cap, is at most p.
	seq atomic.Uint64
	v   T
}

// MPSC is a bounded ring with any number of producer goroutines and one
// consumer goroutine. Any goroutine may call the producer methods (Offer,
// OfferBatch, Put); at most one goroutine at a time the consumer methods
// (Poll, Drain, Take, Wait, Arm); Len, Cap, Closed and Close are safe from
// any goroutine.
//
// Producers claim positions with a compare-and-swap on tail, write their
// slots, then mark each slot published. The consumer reads in position
// order and stops at the first slot not yet marked, so a slow producer holds
// back the entries claimed after its own, never corrupts them.
//
// Create it with NewMPSC; the zero value is not usable.
type MPSC[T any] struct {
	_ [cacheLine]byte // off the cache line of whatever precedes the ring

	// tail is the next position to claim. Every producer CASes it; its line
	// bounces between producers and nothing else lives on it.
	tail atomic.Uint64
	_    [cacheLine - unsafe.Sizeof(atomic.Uint64{})]byte

	// headCache is the producers' shared last view of head, never ahead of
	// it. It is read on every claim and written only when it says the ring
	// is full, so it sits on its own line that stays shared in every
	// producer's cache instead of riding the tail's bouncing line. Stores
	// may race and move it backwards; a stale value only makes a producer
	// re-read head sooner.
	headCache atomic.Uint64
	_         [cacheLine - unsafe.Sizeof(atomic.Uint64{})]byte

	// head is the released position: only the consumer stores it, after
	// the slots before it are read and cleared; producers load it when
	// headCache says the ring is full.
	head atomic.Uint64
	_    [cacheLine - unsafe.Sizeof(atomic.Uint64{})]byte

	// The consumer's private line, so that its stores do not take head's
	// line from the producers. next is the next position to read, ahead of
	// head by the entries Take has returned but not yet released (fewer than
	// takeRelease); released is the consumer's copy of head. marked is the
	// end of the last published run the consumer read a mark of: entries
	// before it are published. caughtUp is the position at which the
	// consumer last found the next slot unpublished (see paceRun).
	next     uint64
	released uint64
	marked   uint64
	caughtUp uint64
	_        [cacheLine - 4*unsafe.Sizeof(uint64(0))]byte

	w waiter // wake-up state on its own line, then read-mostly config

	// Read-mostly: written before the ring is shared.
	slots       []slot[T] // len is a power of two
	mask        uint64    // len(slots) - 1
	takeRelease uint64    // Take releases slots to the producers this many at a time
	clearSlots  bool      // T holds pointers: clear consumed slots so they keep nothing alive

	_ [cacheLine]byte // off the cache line of whatever follows
}

// NewMPSC returns an empty multi-producer, single-consumer ring.
func NewMPSC[T any](o Options) (*MPSC[T], error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	r := &MPSC[T]{
		slots:       make([]slot[T], o.Capacity),
		mask:        uint64(o.Capacity - 1),
		takeRelease: takeRelease(o.Capacity),
		clearSlots:  hasPointers[T](),
	}
	r.w.init(o)
	return r, nil
}

// Cap returns the number of slots.
func (r *MPSC[T]) Cap() int { return len(r.slots) }

// Len returns the number of positions claimed by producers and not yet
// released by the consumer, including claims whose entries are still being
// written (Take releases in runs; see Take). It is a snapshot that may be
// stale by the time it returns.
func (r *MPSC[T]) Len() int {
	h := r.head.Load() // head first: then tail >= h
	return int(min(r.tail.Load()-h, uint64(len(r.slots))))
}

// Closed reports whether Close has been called.
func (r *MPSC[T]) Closed() bool { return r.w.isClosed() }

// Close closes the ring and wakes a parked or armed consumer. Producers then
// fail: Offer and Put return false, OfferBatch returns 0. The consumer still
// drains what was published; Wait and Take return false once the ring is
// closed and empty. Close is idempotent and reports whether this call closed
// the ring. An entry offered concurrently with Close may or may not be
// delivered; stop the producers first if that matters.
func (r *MPSC[T]) Close() bool { return r.w.close() }

// claim reserves up to want (>= 1) consecutive positions and returns the
// first and how many; n == 0 means the ring is full. The claim never passes
// head+cap, so a claimed slot's previous entry has been consumed.
func (r *MPSC[T]) claim(want uint64) (t, n uint64) {
	size := uint64(len(r.slots))
	want = min(want, size)
	for {
		// headCache before tail: headCache <= head <= tail at every
		// instant, so hc <= t and t-hc does not underflow. It may exceed
		// size, though: other producers may have claimed far past a stale
		// headCache. Hence the test is t-hc > size-want, never the
		// unsigned size-(t-hc) >= want, which wraps.
		hc := r.headCache.Load()
		t = r.tail.Load()
		n = want
		if t-hc > size-want {
			h := r.head.Load() // acquire: the consumer is done with slots before h
			if h > t {
				continue // t is stale: other claims moved tail past it
			}
			if h > hc {
				r.headCache.Store(h)
			}
			// h was loaded after t, so h >= t-size: no wrap here.
			n = min(want, size-(t-h))
			if n == 0 {
				return t, 0
			}
		}
		if r.tail.CompareAndSwap(t, t+n) {
			return t, n
		}
	}
}

// publish writes vs at positions p, p+1, ... and marks the run published in the
// slot of p. The mark is a release store, with no fence: the claim's
// compare-and-swap on tail, before it, is the producer's half of the
// parking handshake (see inFlight).
func (r *MPSC[T]) publish(p uint64, vs []T) {
	for k := range vs {
		r.slots[(p+uint64(k))&r.mask].v = vs[k]
	}
	storeRelease(&r.slots[p&r.mask].seq, p+uint64(len(vs))) // the writes of v happen before it
}

// Offer publishes v if there is a free slot, without waiting. It returns
// false if the ring is full or closed.
func (r *MPSC[T]) Offer(v T) bool {
	if r.w.isClosed() {
		return false
	}
	t, n := r.claim(1)
	if n == 0 {
		return false
	}
	s := &r.slots[t&r.mask]
	s.v = v
	storeRelease(&s.seq, t+1) // publish, for one entry
	if r.w.state.Load() != running {
		r.w.signal()
	}
	return true
}

// OfferBatch claims as many slots as are free for the leading entries of vs
// with one compare-and-swap, publishes them with one mark, and returns how
// many (0 if the ring is full or closed). The entries of one batch are
// consecutive in the ring. The caller keeps vs.
func (r *MPSC[T]) OfferBatch(vs []T) int {
	if len(vs) == 0 || r.w.isClosed() {
		return 0
	}
	t, n := r.claim(uint64(len(vs)))
	if n > 0 {
		r.publish(t, vs[:n])
	}
	if n > 0 && r.w.state.Load() != running {
		r.w.signal()
	}
	return int(n)
}

// Put publishes v, waiting for a free slot by the wait strategy. It returns
// false, without publishing, if the ring is or becomes closed.
func (r *MPSC[T]) Put(v T) bool {
	if r.Offer(v) {
		return true
	}
	return r.w.put(func() bool { return r.Offer(v) }, r.hasSpace, &r.head)
}

// hasSpace reports whether a slot is free. Any goroutine.
func (r *MPSC[T]) hasSpace() bool {
	h := r.head.Load() // head first: then tail >= h
	return r.tail.Load()-h < uint64(len(r.slots))
}

// consumed releases the slots before h to the producers (head = h) and
// wakes parked producers (see waiter.freed).
func (r *MPSC[T]) consumed(h uint64) {
	r.next, r.released = h, h
	r.head.Store(h) // release: reads and clears of the slots happen before it
	if r.w.blocked.Load() != 0 {
		r.w.freed(h, uint64(len(r.slots))-(r.tail.Load()-h))
	}
}

// release hands the producers the slots Take has returned and not yet
// released, before the consumer waits or arms.
func (r *MPSC[T]) release() {
	if r.next != r.released {
		r.consumed(r.next)
	}
}

// Poll calls fn on up to limit published entries in order and returns how
// many. It does not wait, and stops at the first slot claimed but not yet
// published. The pointer is into the ring's slot and valid only during the
// call: copy what must outlive it. fn must not call methods of r. A slot of
// a type holding pointers is cleared after fn returns, so it keeps nothing
// alive, and head moves once for the whole batch.
func (r *MPSC[T]) Poll(limit int, fn func(*T)) int {
	h := r.next
	var zero T
	n := uint64(0)
	for lim := uint64(max(limit, 0)); n < lim; {
		end := min(r.published(h+n), h+lim)
		if end == h+n {
			break
		}
		for ; h+n < end; n++ {
			s := &r.slots[(h+n)&r.mask]
			fn(&s.v)
			if r.clearSlots {
				s.v = zero
			}
		}
	}
	if n > 0 {
		r.consumed(h + n)
	}
	return int(n)
}

// Drain copies up to len(dst) published entries into dst in order, clears
// their slots (if T holds pointers), and returns how many. It does not
// wait, and stops at the first slot claimed but not yet published.
func (r *MPSC[T]) Drain(dst []T) int {
	h := r.next
	var zero T
	n := uint64(0)
	for lim := uint64(len(dst)); n < lim; {
		end := min(r.published(h+n), h+lim)
		if end == h+n {
			break
		}
		for ; h+n < end; n++ {
			s := &r.slots[(h+n)&r.mask]
			dst[n] = s.v
			if r.clearSlots {
				s.v = zero
			}
		}
	}
	if n > 0 {
		r.consumed(h + n)
	}
	return int(n)
}

// published returns the end of the published run that position p (at or
// after next) is in, or p if the entry at p is not published yet. Consumer
// only. The acquire load of a mark makes the run's entries visible.
func (r *MPSC[T]) published(p uint64) uint64 {
	if p < r.marked {
		return r.marked
	}
	if e := r.slots[p&r.mask].seq.Load(); e > p {
		r.marked = e
		return e
	}
	return p
}

// ready reports whether the entry at next is published. Consumer only.
func (r *MPSC[T]) ready() bool { return r.published(r.next) > r.next }

// Wait blocks, by the wait strategy, until the next entry is published or
// the ring is closed. It returns true if an entry is ready to Poll or Drain,
// false if the ring is closed and empty.
func (r *MPSC[T]) Wait() bool {
	if r.ready() {
		return true
	}
	r.release()
	if r.next-r.caughtUp < paceRun {
		spin(pacePause) // a short run since the last time: let more arrive
	}
	r.caughtUp = r.next
	return r.w.await(r.ready, r.inFlight)
}

// inFlight reports whether a position at or after next is claimed: its
// entry is published or soon will be (see waiter.settle). A producer claims
// with a compare-and-swap on tail (a full fence) and loads state after it,
// so a producer whose claim the consumer did not see will see the
// consumer's announcement; one whose claim it saw may have loaded state
// before, and the consumer fences before it blocks.
func (r *MPSC[T]) inFlight() bool { return r.tail.Load() != r.next }

// Take waits, by the wait strategy, for the next entry and returns it. ok is
// false if the ring is closed and empty. Like SPSC.Take, it releases slots
// to the producers in runs, and whenever the next entry is not yet
// published.
func (r *MPSC[T]) Take() (v T, ok bool) {
	if !r.ready() && !r.Wait() {
		return v, false
	}
	h := r.next
	s := &r.slots[h&r.mask]
	v = s.v
	if r.clearSlots {
		var zero T
		s.v = zero
	}
	r.next = h + 1
	if h+1-r.released >= r.takeRelease || !r.ready() {
		r.consumed(h + 1)
	}
	return v, true
}

// Arm prepares an event-loop consumer to go idle. It returns true if the
// consumer may sleep: the next publish (or Close) calls Options.Waker once.
// It returns false if an entry was published or the ring closed in the
// meantime: the consumer must poll again instead of sleeping. A false Arm may
// still be followed by one Waker call, if a producer saw the arm first. Arm
// panics if Options.Waker is nil.
func (r *MPSC[T]) Arm() bool {
	r.release()
	return r.w.arm(r.ready, r.inFlight)
}
