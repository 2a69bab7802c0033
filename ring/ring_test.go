package ring

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("ring.seed", 0, "seed for the randomized ring tests; 0 takes $SLUICE_RING_SEED, else the clock")

// testSeed returns the seed of a randomized test and logs how to replay it.
// A replay repeats every random choice (batch sizes, operations, yields);
// the goroutine interleaving is the scheduler's.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		if s := os.Getenv("SLUICE_RING_SEED"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("SLUICE_RING_SEED=%q: %v", s, err)
			}
			seed = v
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test -race ./ring -run '%s' -ring.seed=%d)", seed, t.Name(), seed)
	return seed
}

// anyRing is the method set SPSC and MPSC share, so one test drives both.
type anyRing[T any] interface {
	Offer(T) bool
	OfferBatch([]T) int
	Put(T) bool
	Poll(int, func(*T)) int
	Drain([]T) int
	Take() (T, bool)
	Wait() bool
	Arm() bool
	Len() int
	Cap() int
	Close() bool
	Closed() bool
}

var (
	_ anyRing[int] = (*SPSC[int])(nil)
	_ anyRing[int] = (*MPSC[int])(nil)
)

func newRing[T any](t testing.TB, kind string, o Options) anyRing[T] {
	t.Helper()
	var (
		r   anyRing[T]
		err error
	)
	switch kind {
	case "spsc":
		r, err = NewSPSC[T](o)
	case "mpsc":
		r, err = NewMPSC[T](o)
	default:
		t.Fatalf("unknown ring kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// entry encodes a producer id and that producer's sequence number.
func entry(id, seq int) uint64 { return uint64(id)<<32 | uint64(seq) }

// orderChecker verifies that every producer's entries arrive exactly once
// and in order. Consumer goroutine only.
type orderChecker struct {
	t    *testing.T
	next []int
	got  int
	bad  int
}

func (c *orderChecker) check(v uint64) {
	id, seq := int(v>>32), int(uint32(v))
	c.got++
	if id >= len(c.next) || seq != c.next[id] {
		if c.bad++; c.bad <= 5 {
			want := -1
			if id < len(c.next) {
				want = c.next[id]
			}
			c.t.Errorf("entry %d: producer %d seq %d, want seq %d", c.got, id, seq, want)
		}
		return
	}
	c.next[id]++
}

// stress runs producers goroutines that each publish perProducer entries by
// randomly chosen means (Offer, Put, OfferBatch with random sizes, random
// yields) while the test goroutine consumes by randomly chosen means (Poll,
// Drain, Take, Wait), and checks exactly-once, per-producer order delivery.
// A lost entry or wake-up fails the test at the deadline instead of hanging.
func stress(t *testing.T, seed uint64, kind string, o Options, producers, perProducer int) {
	r := newRing[uint64](t, kind, o)
	size := r.Cap()
	total := producers * perProducer
	var timedOut atomic.Bool
	watchdog := time.AfterFunc(15*time.Second, func() { timedOut.Store(true); r.Close() })
	defer watchdog.Stop()

	var wg sync.WaitGroup
	for id := range producers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(id)+1))
			batch := make([]uint64, 0, 2*size)
			for seq := 0; seq < perProducer; {
				if rng.IntN(16) == 0 {
					runtime.Gosched()
				}
				switch rng.IntN(4) {
				case 0: // Offer, yielding while full
					for !r.Offer(entry(id, seq)) {
						if r.Closed() {
							return
						}
						runtime.Gosched()
					}
					seq++
				case 1:
					if !r.Put(entry(id, seq)) {
						if !timedOut.Load() {
							t.Errorf("producer %d: Put failed on an open ring", id)
						}
						return
					}
					seq++
				default: // a batch of 1..2*cap, offered until all of it is in
					n := min(1+rng.IntN(2*size), perProducer-seq)
					batch = batch[:0]
					for k := range n {
						batch = append(batch, entry(id, seq+k))
					}
					for rest := batch; len(rest) > 0; {
						k := r.OfferBatch(rest)
						if k == 0 {
							if r.Closed() {
								return
							}
							runtime.Gosched()
						}
						rest = rest[k:]
					}
					seq += n
				}
			}
		})
	}

	c := &orderChecker{t: t, next: make([]int, producers)}
	rng := rand.New(rand.NewPCG(seed, 0))
	dst := make([]uint64, 2*size)
	check := func(p *uint64) { c.check(*p) }
	for c.got < total && !t.Failed() {
		if rng.IntN(16) == 0 {
			runtime.Gosched()
		}
		switch rng.IntN(4) {
		case 0:
			r.Poll(1+rng.IntN(2*size), check)
		case 1:
			n := r.Drain(dst[:1+rng.IntN(len(dst))])
			for _, v := range dst[:n] {
				c.check(v)
			}
		case 2:
			v, ok := r.Take()
			if !ok {
				t.Errorf("Take: ring closed (timed out: %v) after %d of %d entries", timedOut.Load(), c.got, total)
				break
			}
			c.check(v)
		default:
			if !r.Wait() {
				t.Errorf("Wait: ring closed (timed out: %v) after %d of %d entries", timedOut.Load(), c.got, total)
				break
			}
			if r.Poll(1<<30, check) == 0 {
				t.Errorf("Poll after Wait returned 0")
			}
		}
	}
	wg.Wait()
	if timedOut.Load() {
		t.Fatalf("timed out after %d of %d entries", c.got, total)
	}
	if c.got != total {
		t.Fatalf("received %d entries, want %d", c.got, total)
	}
	if n := r.Len(); n != 0 {
		t.Fatalf("Len = %d after draining, want 0", n)
	}
}

// stressEntries sizes the stress runs to keep the package under ~20 s with
// -race on 2 cores; every run still wraps a capacity-8 ring thousands of
// times.
const stressEntries = 50000

func TestSPSCExactlyOnceInOrder(t *testing.T) {
	seed := testSeed(t)
	for _, size := range []int{8, 64} {
		for _, w := range []WaitStrategy{WaitPark, WaitYield, WaitSpin} {
			t.Run(fmt.Sprintf("cap=%d/%s", size, w), func(t *testing.T) {
				// Few spins and yields, so Park really parks.
				stress(t, seed, "spsc", Options{Capacity: size, Wait: w, Spins: 4, Yields: 4}, 1, stressEntries)
			})
		}
	}
}

func TestMPSCExactlyOnceInOrder(t *testing.T) {
	seed := testSeed(t)
	for _, size := range []int{8, 64} {
		for _, producers := range []int{1, 2, 3, 8} {
			waits := []WaitStrategy{WaitPark, WaitYield}
			if producers == 1 {
				// A spinning producer and consumer need a core each;
				// with more producers than cores they mostly spin.
				waits = append(waits, WaitSpin)
			}
			for _, w := range waits {
				t.Run(fmt.Sprintf("cap=%d/producers=%d/%s", size, producers, w), func(t *testing.T) {
					stress(t, seed, "mpsc", Options{Capacity: size, Wait: w, Spins: 4, Yields: 4}, producers, stressEntries/producers)
				})
			}
		}
	}
}
