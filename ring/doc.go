// Package ring provides bounded, lock-free rings that hand typed entries
// from producer goroutines to one consumer goroutine without allocating:
// SPSC for one producer, MPSC for many. They follow the LMAX Disruptor's
// sequencers and Aeron's publications: power-of-two capacity indexed with a
// mask, cache-line padded positions, cached gating positions, claim then
// publish with release/acquire ordering, batched claim and batched
// consumption, and a pluggable wait strategy.
//
// # Positions and slots
//
// Positions are uint64 counters that only grow; position p lives in slot
// p & (cap-1). They never wrap in practice (2^64 hand-offs at 10^9/s take
// 584 years), so "full" is tail-head == cap and "empty" is tail == head,
// with no wasted slot and no lap bit.
//
//	                  head = 13                 tail = 18
//	                     v                          v
//	position  ... | 12 |  13 |  14 |  15 |  16 |  17 |  18 | ...
//	        consumed     <- published (SPSC) ->       free: the producer's
//	                     <- claimed (MPSC) -->        next position
//
//	slot = position & mask, cap = mask+1 = 8, free = cap - (tail-head) = 3
//	  slot    0    1    2    3    4    5    6    7
//	       +----+----+----+----+----+----+----+----+
//	       | 16 | 17 | -- | -- | -- | 13 | 14 | 15 |
//	       +----+----+----+----+----+----+----+----+
//	                  18   19   20  <- the next claims; 20 reuses 12's slot
//
// The SPSC struct, one padded block per writer (cacheLine = 128 bytes):
//
//	+-----------------------------------+  written by
//	| pad                               |
//	| tail          | headCache         |  producer (consumer reads tail)
//	| head                              |  consumer (producer reads head)
//	| next released tailCache lastLook  |  consumer only
//	| state         | blocked           |  consumer / producer on its way to park
//	| closed wake waker opts buf        |  read-mostly (closed: once, by Close)
//	| pad                               |
//	+-----------------------------------+
//
// head is the position released to the producer, next the consumer's own
// read position. Take releases in runs (an eighth of the ring, at most 64)
// and whenever it has taken every entry it knows of, not once per entry:
// while the consumer works through a backlog, each release is a cache-line
// transfer the producer would wait on. Poll and Drain release once per call.
//
// MPSC pads tail (CASed by every producer), headCache (shared by the
// producers, read on every claim, rarely written), head and next apart, and
// prefixes every slot with a publication mark. A run of n entries claimed
// from p (one by Offer, a batch by OfferBatch) is marked once, in p's slot,
// with its end, as an Aeron frame's length precedes and covers its body:
//
//	slot: +----------------+---------------------+
//	      | seq uint64     | v T                 |
//	      +----------------+---------------------+
//	      seq > p  <=>  the entries for positions [p, seq) are published
//	      (slots inside a run keep older marks, never above their position)
//
// # Memory ordering
//
// Go's sync/atomic operations are sequentially consistent, which includes
// release (Store) and acquire (Load): a Load that observes a Store makes
// every write before the Store visible after the Load. Entries are written
// and read with plain memory operations, ordered only by these.
//
// Publication (SPSC tail, MPSC marks) is a release store and nothing more
// where the platform allows (fence.go): on linux/amd64 outside the race
// detector a plain MOV, where Go's Store would be an XCHG, a full fence that
// makes every hand-off wait for the producer's cache lines to reach it.
//
// The consumer never reads a slot before it is published. SPSC: the producer
// writes slots [t, t+n) and then stores tail = t+n; the consumer reads slot p
// only after a load of tail returned more than p (tailCache holds such a
// value, so it is never ahead of the real tail). MPSC: the producer that
// claimed [p, p+n) writes the slots and then stores seq = p+n in p's slot;
// the consumer reads slots [p, p+n) only after loading a mark above p from
// p's slot (it remembers the end of the run it read, so it loads one mark
// per run). A mark left from an earlier lap was set at a position q <= p-cap
// for a run of at most cap entries, so it is at most p and never passes for
// this lap's; the consumer stops at the first unpublished position even if
// later runs are published.
//
// The producer never overwrites an unconsumed slot. The consumer reads and
// clears slots [h, h+n) and then stores head = h+n; a producer writes
// position p only after a load of head returned more than p-cap (headCache
// holds such a value and is never ahead of head), i.e. after the consumer's
// last access to that slot happened. MPSC producers also claim p with a CAS
// on tail that succeeds for one producer only, so no two producers write one
// position.
//
// # Waiting and waking
//
// Options.Wait picks the wait strategy: WaitSpin, WaitYield (spin, then
// runtime.Gosched) or WaitPark (spin, yield, then park). Options has
// defaults for every zero field and a Validate method.
//
// A parking consumer stores state = parked, re-checks the ring and Close,
// and only then blocks on a one-slot channel; a producer stores its
// publication, then loads state, and only if it is not running CASes it back
// and sends a token. Both sides store, then load the other's variable, and
// both are fenced in between, so at least one sees the other's store: either
// the consumer finds the entry or the producer finds the consumer parked,
// and no wake-up is lost. The fences: the consumer's Store of state is
// sequentially consistent. A producer's publication (SPSC tail, MPSC mark),
// a release store, is not, so before it blocks on a re-check that found
// nothing the consumer calls heavyFence (Linux membarrier), which makes
// every running thread of the process execute a fence, and re-checks once
// more; where that is unavailable, publication is a sequentially consistent
// Store instead. An MPSC producer's claim, a compare-and-swap on tail, is a
// full fence before its state load, so the MPSC consumer fences only if it
// sees a claim at or after its position (tail != next): a producer that
// claims after that look sees the announcement. It never spins waiting for
// a claimed slot to be marked, which on a machine whose cores are all taken
// could last a whole time slice of the preempted producer.
// While the consumer runs, a producer's cost is one load of a line that stays
// shared in its cache. The CAS on state lets exactly one producer send per
// park. A token sent after the consumer cancelled a park makes the next park
// return at once: a spurious wake-up, which every wait loop tolerates by
// re-checking.
//
// A spinning consumer pauses between looks, a few to 256 iterations of a
// register loop: each look at an empty ring takes the producer's line away
// from it, and pausing lets a run of entries arrive per look. It also paces
// itself while entries keep coming: a look that found fewer than 32 new
// entries (SPSC: a load of tail; MPSC: the run since the consumer last found
// the next slot unpublished) means the consumer is ahead of its producers,
// and it pauses 128 iterations before the next look.
//
// An event loop consumes the same way with Arm and Options.Waker instead of
// blocking: Arm stores state = armed and re-checks; the first producer to
// publish afterwards calls Waker once (for gnet, Conn.Wake), and the loop
// drains the ring when the wake-up runs, then Arms again before idling.
//
// Under WaitPark a producer in Put that finds the ring full parks too, on a
// sync.Cond, but only once it has yielded Yields times and the consumer has
// released nothing for 50 µs: while head moves, space is coming, and a
// goroutine woken by the consumer waits behind it on its processor. A
// parking producer counts itself in blocked, re-checks head, then waits; the
// consumer stores head, then loads blocked, and broadcasts once a quarter of
// the ring is free, so one wake-up buys a run of publishes, or once it has
// released a quarter of the ring since it saw the producer parked, so a
// producer is not left parked while others keep the ring full. While no
// producer is parked this costs the consumer one load per batch.
//
// # Clearing and allocation
//
// If T holds pointers, the consumer zeroes each slot after reading it, so an
// entry does not keep their targets alive while its slot waits for the next
// lap; slots of pointer-free types are left as they are, sparing a store to
// a line the producer writes next. Entries are stored by value in a slice of
// T (no interface boxing); after NewSPSC and NewMPSC, no method allocates.
//
// # Constants
//
// No constant of this package is persisted or sent over the wire, so none is
// frozen by compatibility. What callers may rely on: capacity is a power of
// two, fixed at creation; positions are uint64 and never wrap; an MPSC slot
// is marked with position+1. cacheLine (128), DefaultCapacity, DefaultSpins,
// DefaultYields, the producers' wake-up threshold (a quarter of the ring),
// Take's release run, the spinning pause, the consumer's pacing and a
// producer's 50 µs before parking are tuning constants.
package ring
