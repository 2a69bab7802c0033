package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/ring"
)

// SPSCName is the registry name of the busy-poll floor ([SPSCFloorTarget]).
const SPSCName = "spsc"

// spscDepth is each pair's ring capacity, as floorDepth is the channel floor's.
const spscDepth = 1024

// SPSCFloorTarget is the busy-poll floor: the hand-off an embedded target with a spinning consumer
// (sluice bench --target embedded --spin-consumer) is measured against, with no broker. Each
// producer–consumer pair has a ring.SPSC of slot numbers over a slab of payload slots, two per ring
// slot. A send copies the payload into the pair's next slot and publishes its number, spinning while
// the ring is full; a consumer never parks: with one producer it takes from its ring with the ring's
// own spinning wait (ring.WaitSpin: Take, which paces its looks at the producer's line), with several
// it polls their rings in turn; it hands each payload to deliver in place, from the slot. Nothing is
// allocated per message. Its latency is the harness's
// own (pacing, clock reads, one copy, the histogram record) plus the cache-line transfers between
// the producer's core and the consumer's: what any in-process transport pays at least.
//
// Slot k of a pair is slab slot k mod 2×spscDepth, rewritten only by send k+2×spscDepth. That send
// comes after the ring took k+2×spscDepth-1, when at most spscDepth numbers were unreleased, so the
// consumer had released k+spscDepth-1, which it did only after taking k+1 (Take releases at most 64
// at a time) or after Poll's deliver of it returned: deliver(k) was over.
type SPSCFloorTarget struct {
	cfg   Config
	pairs [][]*spscPair // [producer][consumer]
	done  atomic.Bool   // set by Close: consumers return, producers fail
	wg    sync.WaitGroup
}

// spscPair is one producer's channel to one consumer.
type spscPair struct {
	r    *ring.SPSC[uint32]
	slab []byte // 2×spscDepth payload slots
	size int    // PayloadSize
	seq  uint32 // the next send's number; producer only
}

// NewSPSCFloorTarget returns an unopened busy-poll floor.
func NewSPSCFloorTarget() *SPSCFloorTarget { return &SPSCFloorTarget{} }

// Name implements Target.
func (t *SPSCFloorTarget) Name() string { return SPSCName }

// Open implements Target: one ring and slab per producer–consumer pair.
func (t *SPSCFloorTarget) Open(_ context.Context, cfg Config) error {
	t.cfg = cfg.WithDefaults()
	t.pairs = make([][]*spscPair, t.cfg.Producers)
	for i := range t.pairs {
		t.pairs[i] = make([]*spscPair, t.cfg.Consumers)
		for j := range t.pairs[i] {
			r, err := ring.NewSPSC[uint32](ring.Options{Capacity: spscDepth, Wait: ring.WaitSpin})
			if err != nil {
				return fmt.Errorf("bench: spsc floor: %w", err)
			}
			t.pairs[i][j] = &spscPair{r: r, slab: make([]byte, 2*spscDepth*t.cfg.PayloadSize), size: t.cfg.PayloadSize}
		}
	}
	return nil
}

// Producer implements Target. Keyed messages go to the consumer their key hashes to; unkeyed ones
// go round robin, as with the channel floor.
func (t *SPSCFloorTarget) Producer(i int) Producer {
	return &spscProducer{t: t, pairs: t.pairs[i], rr: i}
}

// Consume implements Target: a goroutine that polls consumer i's rings until Close.
func (t *SPSCFloorTarget) Consume(i int, deliver func(payload []byte)) error {
	pairs := make([]*spscPair, len(t.pairs))
	polls := make([]func(*uint32), len(t.pairs)) // made once: a closure per poll would allocate
	for p := range t.pairs {
		q := t.pairs[p][i]
		pairs[p] = q
		polls[p] = func(slot *uint32) {
			off := int(*slot) * q.size
			deliver(q.slab[off : off+q.size : off+q.size])
		}
	}
	t.wg.Add(1)
	if len(pairs) == 1 {
		q := pairs[0]
		go func() {
			defer t.wg.Done()
			for {
				slot, ok := q.r.Take() // spins until an entry or Close
				if !ok {
					return
				}
				off := int(slot) * q.size
				deliver(q.slab[off : off+q.size : off+q.size])
			}
		}()
		return nil
	}
	go func() {
		defer t.wg.Done()
		var idle idleYield
		for {
			n := 0
			for p, q := range pairs {
				n += q.r.Poll(64, polls[p])
			}
			if n > 0 {
				idle.reset()
				continue
			}
			if t.done.Load() {
				return
			}
			idle.pause()
		}
	}()
	return nil
}

// idleYield is a spinning side's yield of its P, as a spinning engine.Local's: once it has spun
// without progress for spinYieldAfter ns, then once per spinYieldAfter. The yield lets goroutines
// that wait for a P run when every P is busy; made more often (every 256 looks, as before) it costs
// the spinner tens of microseconds off its P each time, on this machine, for nothing: an unlocked
// goroutine's yield came back after 20 µs on average under load (docs/benchmarks.md, "Busy-poll:
// what takes a core from a spinner"). The zero value is ready; one per goroutine.
type idleYield struct {
	looks int   // pauses since the last clock read
	since int64 // Now() when the spinning began or the P was last yielded; 0: not spinning
}

// spinYieldAfter is how long a side spins without progress before it yields its P (ns).
const spinYieldAfter = 1e6

// spinClockEvery is how many pauses a spinning side makes between clock reads.
const spinClockEvery = 16

// yieldP yields the P. A variable for tests, which count the yields.
var yieldP = runtime.Gosched

// reset records progress: the next pause starts a new spin.
func (y *idleYield) reset() { y.looks, y.since = 0, 0 }

// pause is one fruitless look.
func (y *idleYield) pause() {
	if y.looks++; y.looks%spinClockEvery != 0 {
		return
	}
	now := Now()
	switch {
	case y.since == 0:
		y.since = now
	case now-y.since >= spinYieldAfter:
		yieldP()
		y.since = Now()
	}
}

// Close implements Target: it stops the consumers and waits for them.
func (t *SPSCFloorTarget) Close() error {
	t.done.Store(true)
	for _, row := range t.pairs {
		for _, q := range row {
			q.r.Close() // ends a consumer spinning in Take
		}
	}
	t.wg.Wait()
	return nil
}

type spscProducer struct {
	t     *SPSCFloorTarget
	pairs []*spscPair // this producer's, one per consumer
	rr    int
}

func (p *spscProducer) Send(key, payload []byte) error {
	var q *spscPair
	if key == nil {
		p.rr++
		q = p.pairs[p.rr%len(p.pairs)]
	} else {
		q = p.pairs[fnv1a(key)%uint32(len(p.pairs))]
	}
	slot := q.seq & (2*spscDepth - 1)
	off := int(slot) * q.size
	copy(q.slab[off:off+q.size], payload)
	if !q.r.Offer(slot) {
		var idle idleYield // the ring is full: spin until the consumer frees a slot
		for !q.r.Offer(slot) {
			if p.t.done.Load() {
				return ErrClosed
			}
			idle.pause()
		}
	}
	q.seq++
	return nil
}

func (p *spscProducer) Flush() error { return nil }
