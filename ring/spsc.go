package ring

import (
	"sync/atomic"
	"unsafe"
)

// SPSC is a bounded ring with one producer goroutine and one consumer
// goroutine. At most one goroutine at a time may call the producer methods
// (Offer, OfferBatch, Put) and at most one the consumer methods (Poll, Drain,
// Take, Wait, Arm); Len, Cap, Closed and Close are safe from any goroutine.
//
// Create it with NewSPSC; the zero value is not usable.
type SPSC[T any] struct {
	_ [cacheLine]byte // off the cache line of whatever precedes the ring

	// Producer's line. tail is the next position to write; only the
	// producer stores it, with a release store after the slots are written.
	// headCache is the producer's last view of head, never ahead of it; the
	// producer re-reads head only when headCache says the ring is full, so
	// while there is room it does not touch the consumer's line at all.
	tail      atomic.Uint64
	headCache uint64
	_         [cacheLine - unsafe.Sizeof(atomic.Uint64{}) - unsafe.Sizeof(uint64(0))]byte

	// head is the released position: only the consumer stores it, after
	// the slots before it are read and cleared, and the producer loads it
	// when headCache says the ring is full. It has a line of its own, so
	// the consumer's private stores below do not take it from the producer.
	head atomic.Uint64
	_    [cacheLine - unsafe.Sizeof(atomic.Uint64{})]byte

	// Consumer's private line. next is the next position to read, ahead of
	// head by the entries Take has returned but not yet released (fewer than
	// takeRelease). released is the consumer's copy of head, so deciding
	// whether to release does not touch head's line. tailCache is the
	// consumer's last view of tail, never ahead of it; lastLook is how many
	// new entries the load that set it found (see paceRun).
	next      uint64
	released  uint64
	tailCache uint64
	lastLook  uint64
	_         [cacheLine - 4*unsafe.Sizeof(uint64(0))]byte

	w waiter // wake-up state on its own line, then read-mostly config

	// Read-mostly: written before the ring is shared.
	buf         []T    // len is a power of two
	mask        uint64 // len(buf) - 1
	takeRelease uint64 // Take releases slots to the producer this many at a time
	clearSlots  bool   // T holds pointers: clear consumed slots so they keep nothing alive

	_ [cacheLine]byte // off the cache line of whatever follows
}

// NewSPSC returns an empty single-producer, single-consumer ring.
func NewSPSC[T any](o Options) (*SPSC[T], error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	r := &SPSC[T]{
		buf:         make([]T, o.Capacity),
		mask:        uint64(o.Capacity - 1),
		takeRelease: takeRelease(o.Capacity),
		clearSlots:  hasPointers[T](),
	}
	r.w.init(o)
	return r, nil
}

// Cap returns the number of slots.
func (r *SPSC[T]) Cap() int { return len(r.buf) }

// Len returns the number of entries published and not yet released by the
// consumer (Take releases in runs; see Take). From any goroutine but the two
// owners it is a snapshot that may be stale.
func (r *SPSC[T]) Len() int {
	h := r.head.Load() // head first: then tail >= h
	return int(min(r.tail.Load()-h, uint64(len(r.buf))))
}

// Closed reports whether Close has been called.
func (r *SPSC[T]) Closed() bool { return r.w.isClosed() }

// Close closes the ring and wakes a parked or armed consumer. Producers then
// fail: Offer and Put return false, OfferBatch returns 0. The consumer still
// drains what was published; Wait and Take return false once the ring is
// closed and empty. Close is idempotent and reports whether this call closed
// the ring. An entry published concurrently with Close may or may not be
// delivered; stop the producer first if that matters.
func (r *SPSC[T]) Close() bool { return r.w.close() }

// free returns how many slots the producer may write at t, up to want,
// re-reading head only when headCache shows fewer than want free.
func (r *SPSC[T]) free(t, want uint64) uint64 {
	size := uint64(len(r.buf))
	if f := size - (t - r.headCache); f >= want {
		return f
	}
	r.headCache = r.head.Load() // acquire: the consumer is done with slots before head
	return size - (t - r.headCache)
}

// Offer publishes v if there is a free slot, without waiting. It returns
// false if the ring is full or closed.
func (r *SPSC[T]) Offer(v T) bool {
	if r.w.isClosed() {
		return false
	}
	t := r.tail.Load() // our own variable: no other goroutine stores it
	if r.free(t, 1) == 0 {
		return false
	}
	r.buf[t&r.mask] = v
	publishStore(&r.tail, t+1)
	if r.w.state.Load() != running {
		r.w.signal()
	}
	return true
}

// OfferBatch publishes as many leading entries of vs as there are free
// slots, with one release store for the whole batch, and returns how many it
// published (0 if the ring is full or closed). The caller keeps vs.
func (r *SPSC[T]) OfferBatch(vs []T) int {
	if len(vs) == 0 || r.w.isClosed() {
		return 0
	}
	t := r.tail.Load()
	n := min(r.free(t, uint64(len(vs))), uint64(len(vs)))
	if n == 0 {
		return 0
	}
	i := t & r.mask
	c := copy(r.buf[i:], vs[:n]) // up to the end of the buffer,
	copy(r.buf, vs[c:n])         // then the wrapped part from slot 0
	publishStore(&r.tail, t+n)
	if r.w.state.Load() != running {
		r.w.signal()
	}
	return int(n)
}

// Put publishes v, waiting for a free slot by the wait strategy. It returns
// false, without publishing, if the ring is or becomes closed.
func (r *SPSC[T]) Put(v T) bool {
	if r.Offer(v) {
		return true
	}
	return r.w.put(func() bool { return r.Offer(v) }, r.hasSpace, &r.head)
}

// hasSpace reports whether a slot is free. Any goroutine.
func (r *SPSC[T]) hasSpace() bool {
	h := r.head.Load() // head first: then tail >= h
	return r.tail.Load()-h < uint64(len(r.buf))
}

// consumed releases the slots before h to the producer (head = h) and wakes
// parked producers (see waiter.freed).
func (r *SPSC[T]) consumed(h uint64) {
	r.next, r.released = h, h
	r.head.Store(h) // release: reads and clears of the slots happen before it
	if r.w.blocked.Load() != 0 {
		r.w.freed(h, uint64(len(r.buf))-(r.tail.Load()-h))
	}
}

// release hands the producer the slots Take has returned and not yet
// released. The consumer calls it before it waits or arms: a producer
// waiting for space must see every slot the consumer is done with.
func (r *SPSC[T]) release() {
	if r.next != r.released {
		r.consumed(r.next)
	}
}

// available returns how many entries the consumer may read at h, up to
// want, re-reading tail only when tailCache shows fewer than want.
func (r *SPSC[T]) available(h, want uint64) uint64 {
	if a := r.tailCache - h; a >= want {
		return a
	}
	t := r.tail.Load() // acquire: slots before tail are written
	r.lastLook, r.tailCache = t-r.tailCache, t
	return t - h
}

// Poll calls fn on up to limit published entries in order and returns how
// many. It does not wait. The pointer is into the ring's slot and valid only
// during the call: copy what must outlive it. fn must not call methods of r.
// A slot of a type holding pointers is cleared after fn returns, so it keeps
// nothing alive, and head moves once for the whole batch.
func (r *SPSC[T]) Poll(limit int, fn func(*T)) int {
	if limit <= 0 {
		return 0
	}
	h := r.next
	n := min(r.available(h, uint64(limit)), uint64(limit))
	var zero T
	for k := uint64(0); k < n; k++ {
		p := &r.buf[(h+k)&r.mask]
		fn(p)
		if r.clearSlots {
			*p = zero
		}
	}
	if n > 0 {
		r.consumed(h + n)
	}
	return int(n)
}

// Drain copies up to len(dst) published entries into dst in order, clears
// their slots (if T holds pointers), and returns how many. It does not wait.
func (r *SPSC[T]) Drain(dst []T) int {
	if len(dst) == 0 {
		return 0
	}
	h := r.next
	n := min(r.available(h, uint64(len(dst))), uint64(len(dst)))
	if n == 0 {
		return 0
	}
	i := h & r.mask
	end := min(i+n, uint64(len(r.buf)))
	c := copy(dst, r.buf[i:end])
	copy(dst[c:n], r.buf)
	if r.clearSlots {
		clear(r.buf[i:end])
		clear(r.buf[:n-uint64(c)])
	}
	r.consumed(h + n)
	return int(n)
}

// ready reports whether an entry is published at next. Consumer only.
func (r *SPSC[T]) ready() bool { return r.available(r.next, 1) > 0 }

// Wait blocks, by the wait strategy, until an entry is published or the ring
// is closed. It returns true if an entry is ready to Poll or Drain, false if
// the ring is closed and empty.
func (r *SPSC[T]) Wait() bool {
	if r.next == r.tailCache && r.lastLook < paceRun {
		spin(pacePause) // the last look at tail found a short run: let more arrive
	}
	if r.ready() {
		return true
	}
	r.release()
	return r.w.await(r.ready, r.inFlight)
}

// inFlight reports whether a publish may be on its way past the consumer's
// announcement (see waiter.settle): always, as no claim precedes an SPSC
// publish for the consumer to see.
func (r *SPSC[T]) inFlight() bool { return true }

// Take waits, by the wait strategy, for the next entry and returns it. ok is
// false if the ring is closed and empty.
//
// Take releases slots to the producer in runs (an eighth of the ring, at
// most 64) rather than one by one, and whenever it has taken every entry it
// knows to be published: a store the producer must see is a cache-line
// transfer between cores, and one per entry would cost more than the
// hand-off itself while the consumer has a backlog. Until then Len still
// counts the entries Take returned.
func (r *SPSC[T]) Take() (v T, ok bool) {
	if r.next == r.tailCache && !r.Wait() { // Wait re-reads tail first
		return v, false
	}
	h := r.next
	p := &r.buf[h&r.mask]
	v = *p
	if r.clearSlots {
		var zero T
		*p = zero
	}
	r.next = h + 1
	if h+1 == r.tailCache || h+1-r.released >= r.takeRelease {
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
func (r *SPSC[T]) Arm() bool {
	r.release()
	return r.w.arm(r.ready, r.inFlight)
}
