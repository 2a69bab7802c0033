package ring

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitState spins until the consumer's state is want or the deadline
// passes, and reports whether it got there.
func waitState(w *waiter, want uint32, deadline time.Time) bool {
	for w.state.Load() != want {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	return true
}

// parkCycles is how many park/wake cycles each wake-up test runs.
const parkCycles = 3000

func waiterOf[T any](r anyRing[T]) *waiter {
	switch r := r.(type) {
	case *SPSC[T]:
		return &r.w
	case *MPSC[T]:
		return &r.w
	}
	panic("unknown ring type")
}

// window lets producers publish at the two instants where a wake-up can be
// lost. Through the consumer's idle hook, a producer publishes after the
// consumer's last look at the ring but before it announces parked or armed:
// the producer sees running and sends nothing, so only the consumer's
// re-check after the announce finds the entry. By waiting for the announced
// state, a producer publishes between the announce and the block: only the
// producer's check of the state wakes the consumer.
type window struct {
	w    *waiter
	stop <-chan struct{} // closed at the test's deadline
	req  chan struct{}   // the hook offers the window here
	done chan struct{}   // and waits here until the producer has published
	hits atomic.Int64    // entries published through the hook
	seen atomic.Int64    // entries published after seeing the announce

	// acked[id] counts producer id's entries consumed. A producer waits
	// for its entry to be consumed before the next, so a lost wake-up is
	// not rescued by a later publish: the consumer stays blocked and the
	// test fails at its deadline.
	acked []atomic.Int64
}

func newWindow(w *waiter, stop <-chan struct{}, producers int) *window {
	win := &window{w: w, stop: stop, req: make(chan struct{}), done: make(chan struct{}),
		acked: make([]atomic.Int64, producers)}
	w.idleHook = func() {
		// Give a producer that is on its way to the window a moment to
		// get there: the consumer may reach it right after consuming.
		wait := time.NewTimer(100 * time.Microsecond)
		defer wait.Stop()
		select {
		case win.req <- struct{}{}:
			select {
			case <-win.done:
				win.hits.Add(1)
			case <-stop:
			}
		case <-wait.C: // no producer wants the window
		case <-stop:
		}
	}
	return win
}

// publish runs put in a randomly chosen timing: in the hook's window (1/2),
// after the consumer announced state (3/8), or at once (1/8). A producer
// waiting for the window gives up on it when it finds the state announced,
// in case the hook ran before the producer listened and the consumer went on
// to block. It reports false at the deadline.
func (win *window) publish(rng *rand.Rand, state uint32, put func() bool) bool {
	switch k := rng.IntN(8); {
	case k < 4:
		poll := time.NewTimer(time.Millisecond)
		defer poll.Stop()
		for {
			select {
			case <-win.req:
				ok := put()
				win.done <- struct{}{}
				return ok
			case <-win.stop:
				return false
			case <-poll.C:
				if win.w.state.Load() == state {
					return put()
				}
				poll.Reset(time.Millisecond)
			}
		}
	case k < 7:
		for win.w.state.Load() != state {
			select {
			case <-win.stop:
				return false
			default:
				runtime.Gosched()
			}
		}
		win.seen.Add(1)
	}
	return put()
}

// startProducers runs producers goroutines that each publish perProducer
// entries through put, one at a time, each in a window chosen by publish
// (state is what the consumer announces: parked or armed) and each only
// after the previous one was consumed. It returns a function that waits for
// them.
func (win *window) startProducers(seed uint64, producers, perProducer int, state uint32, put func(uint64) bool) (wait func()) {
	var wg sync.WaitGroup
	for id := range producers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(id)+1))
			for seq := range perProducer {
				if !win.publish(rng, state, func() bool { return put(entry(id, seq)) }) || !win.awaitAck(id, seq) {
					return
				}
			}
		})
	}
	return wg.Wait
}

// awaitAck waits until producer id's entry seq has been consumed, and
// reports false at the deadline.
func (win *window) awaitAck(id, seq int) bool {
	for win.acked[id].Load() <= int64(seq) {
		select {
		case <-win.stop:
			return false
		default:
			runtime.Gosched()
		}
	}
	return true
}

// ack records the consumption of v.
func (win *window) ack(v uint64) { win.acked[v>>32].Add(1) }

// check fails the test if the windows were not exercised: then it tested
// nothing about wake-ups.
func (win *window) check(t *testing.T, cycles int) {
	t.Helper()
	if h, s := win.hits.Load(), win.seen.Load(); h < int64(cycles/4) || s < int64(cycles/4) {
		t.Errorf("of %d entries, %d were published before the announce and %d after it; want at least a quarter each", cycles, h, s)
	}
}

// testParkWake runs park/wake cycles between producers and a consumer in
// Take, publishing in the windows where a wake-up can be lost. A lost
// wake-up leaves the consumer blocked: the watchdog then closes the ring,
// Take returns false and the test fails instead of hanging.
func testParkWake(t *testing.T, kind string, producers int) {
	seed := testSeed(t)
	r := newRing[uint64](t, kind, Options{Capacity: 8, Wait: WaitPark, Spins: 1, Yields: 1})
	stop := make(chan struct{})
	var timedOut atomic.Bool
	watchdog := time.AfterFunc(10*time.Second, func() { timedOut.Store(true); close(stop); r.Close() })
	defer watchdog.Stop()
	win := newWindow(waiterOf(r), stop, producers)

	perProducer := parkCycles / producers
	wait := win.startProducers(seed, producers, perProducer, parked, r.Put)
	c := &orderChecker{t: t, next: make([]int, producers)}
	for c.got < producers*perProducer {
		v, ok := r.Take()
		if !ok {
			t.Errorf("lost wake-up: consumer still parked after %d of %d entries (timed out: %v)",
				c.got, producers*perProducer, timedOut.Load())
			break
		}
		c.check(v)
		win.ack(v)
	}
	wait()
	win.check(t, producers*perProducer)
}

func TestSPSCParkWake(t *testing.T) { testParkWake(t, "spsc", 1) }

func TestMPSCParkWake(t *testing.T) {
	for _, producers := range []int{1, 4} {
		t.Run(fmt.Sprintf("producers=%d", producers), func(t *testing.T) { testParkWake(t, "mpsc", producers) })
	}
}

// testArmWake drives a ring the way an event loop does: drain, Arm, sleep
// until the Waker fires, repeat, with entries published in the windows where
// a wake-up can be lost. It checks that none is lost and that Waker runs at
// most once per Arm.
func testArmWake(t *testing.T, kind string, producers int) {
	seed := testSeed(t)
	loop := make(chan struct{}, 1) // the event loop's own wake-up queue
	var wakes atomic.Int64
	r := newRing[uint64](t, kind, Options{Capacity: 8, Waker: func() {
		wakes.Add(1)
		select {
		case loop <- struct{}{}:
		default:
		}
	}})
	stop := make(chan struct{})
	watchdog := time.AfterFunc(10*time.Second, func() { close(stop); r.Close() })
	defer watchdog.Stop()
	win := newWindow(waiterOf(r), stop, producers)

	perProducer := parkCycles / producers
	wait := win.startProducers(seed, producers, perProducer, armed, r.Put)
	c := &orderChecker{t: t, next: make([]int, producers)}
	check := func(p *uint64) { c.check(*p); win.ack(*p) }
	arms := 0
loop:
	for c.got < producers*perProducer {
		if r.Poll(64, check) > 0 {
			continue
		}
		arms++
		if !r.Arm() {
			continue
		}
		select {
		case <-loop:
		case <-stop:
			t.Errorf("lost wake-up: armed loop not woken after %d of %d entries", c.got, producers*perProducer)
			break loop
		}
	}
	wait()
	if n := wakes.Load(); n > int64(arms) {
		t.Errorf("Waker called %d times for %d Arm calls, want at most one per Arm", n, arms)
	}
	win.check(t, producers*perProducer)
}

func TestSPSCArmWake(t *testing.T) { testArmWake(t, "spsc", 1) }

func TestMPSCArmWake(t *testing.T) {
	for _, producers := range []int{1, 4} {
		t.Run(fmt.Sprintf("producers=%d", producers), func(t *testing.T) { testArmWake(t, "mpsc", producers) })
	}
}

func TestCloseWakesParkedConsumer(t *testing.T) {
	for _, kind := range []string{"spsc", "mpsc"} {
		t.Run(kind, func(t *testing.T) {
			r := newRing[int](t, kind, Options{Capacity: 8, Spins: 1, Yields: 1})
			w := waiterOf(r)
			done := make(chan bool)
			go func() {
				_, ok := r.Take()
				done <- ok
			}()
			if !waitState(w, parked, time.Now().Add(5*time.Second)) {
				t.Fatal("consumer did not park on an empty ring")
			}
			if !r.Close() {
				t.Fatal("Close of an open ring returned false")
			}
			select {
			case ok := <-done:
				if ok {
					t.Fatal("Take on a closed, empty ring returned ok")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not wake the parked consumer")
			}
		})
	}
}

func TestCloseCallsWakerOfArmedConsumer(t *testing.T) {
	for _, kind := range []string{"spsc", "mpsc"} {
		t.Run(kind, func(t *testing.T) {
			var wakes atomic.Int64
			r := newRing[int](t, kind, Options{Capacity: 8, Waker: func() { wakes.Add(1) }})
			if !r.Arm() {
				t.Fatal("Arm on an empty open ring returned false")
			}
			r.Close()
			if n := wakes.Load(); n != 1 {
				t.Fatalf("Waker called %d times by Close of an armed ring, want 1", n)
			}
			if r.Arm() {
				t.Fatal("Arm on a closed ring returned true")
			}
		})
	}
}

func TestCloseUnblocksPut(t *testing.T) {
	for _, kind := range []string{"spsc", "mpsc"} {
		for _, wait := range []WaitStrategy{WaitPark, WaitYield, WaitSpin} {
			t.Run(kind+"/"+wait.String(), func(t *testing.T) {
				r := newRing[int](t, kind, Options{Capacity: 2, Wait: wait, Spins: 1, Yields: 1})
				r.Put(1)
				r.Put(2)
				done := make(chan bool)
				go func() { done <- r.Put(3) }()
				time.Sleep(10 * time.Millisecond) // let Put reach its back-off
				r.Close()
				select {
				case ok := <-done:
					if ok {
						t.Fatal("Put into a full ring returned true after Close")
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Close did not unblock Put on a full ring")
				}
			})
		}
	}
}

// TestMPSCParksWithClaimPending claims a position and marks it only later,
// as a producer preempted between the two would. The consumer must neither
// spin until the mark lands (on a machine whose cores are all busy, the
// producer may not run for a whole time slice) nor miss it: it fences
// (heavyFence) and blocks, and the producer's mark and state load, the rest
// of Offer, wake it. Arm, likewise, lets the loop sleep, and the publish
// calls Waker.
func TestMPSCParksWithClaimPending(t *testing.T) {
	var wakes atomic.Int64
	r, err := NewMPSC[uint64](Options{Capacity: 8, Wait: WaitPark, Spins: 1, Yields: 1,
		Waker: func() { wakes.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	// finish is the rest of Offer after the claim: mark, then wake.
	finish := func(pos, v uint64) {
		r.publish(pos, []uint64{v})
		if r.w.state.Load() != running {
			r.w.signal()
		}
	}

	pos, n := r.claim(1)
	if n != 1 {
		t.Fatalf("claimed %d positions, want 1", n)
	}
	if !r.Arm() {
		t.Fatal("Arm kept the loop awake while a claim was pending")
	}
	finish(pos, 41)
	if wakes.Load() != 1 {
		t.Fatalf("Waker called %d times after the mark, want 1", wakes.Load())
	}
	if v, ok := r.Take(); !ok || v != 41 {
		t.Fatalf("Take = %d, %v; want 41, true", v, ok)
	}

	pos, _ = r.claim(1)
	var announces atomic.Int64
	r.w.idleHook = func() { announces.Add(1) }
	got := make(chan uint64, 1)
	go func() {
		v, _ := r.Take()
		got <- v
	}()
	if !waitState(&r.w, parked, time.Now().Add(10*time.Second)) {
		t.Fatal("consumer did not park with a claim pending")
	}
	before := announces.Load()
	time.Sleep(20 * time.Millisecond)
	if a := announces.Load(); a != before || r.w.state.Load() != parked {
		t.Fatalf("consumer announced %d more parks in 20 ms with a claim pending: it spun instead of blocking", a-before)
	}
	finish(pos, 42)
	select {
	case v := <-got:
		if v != 42 {
			t.Fatalf("took %d, want 42", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("entry marked after the consumer parked was never taken")
	}
}

// awaitBlocked waits until n producers are parked on a full ring, or fails
// the test after 5 s.
func awaitBlocked(t *testing.T, w *waiter, n int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for w.blocked.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d producers parked after 5 s, want %d", w.blocked.Load(), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestPutParksAndWakes: a producer in Put on a full ring whose consumer
// releases nothing parks (WaitPark), and the consumer's releases wake it.
func TestPutParksAndWakes(t *testing.T) {
	for _, kind := range []string{"spsc", "mpsc"} {
		t.Run(kind, func(t *testing.T) {
			r := newRing[int](t, kind, Options{Capacity: 8, Wait: WaitPark, Spins: 1, Yields: 1})
			for i := range 8 {
				r.Put(i)
			}
			done := make(chan bool)
			go func() { done <- r.Put(8) }()
			awaitBlocked(t, waiterOf(r), 1)
			for want := range 9 {
				v, ok := r.Take()
				if !ok || v != want {
					t.Fatalf("Take = %d, %v; want %d, true", v, ok, want)
				}
				if want == 1 { // a quarter of the ring free: the producer must wake
					select {
					case ok := <-done:
						if !ok {
							t.Fatal("Put returned false on an open ring")
						}
					case <-time.After(5 * time.Second):
						t.Fatal("parked producer not woken with a quarter of the ring free")
					}
				}
			}
		})
	}
}

// TestParkedProducerWokenUnderRefill: another producer refills every slot
// the consumer releases, so the ring never has a quarter free; the parked
// producer is still woken once the consumer has released a quarter of the
// ring since it parked, rather than waiting for the ring to drain.
func TestParkedProducerWokenUnderRefill(t *testing.T) {
	r, err := NewMPSC[int](Options{Capacity: 8, Wait: WaitPark, Spins: 1, Yields: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		r.Put(i)
	}
	woken := make(chan bool, 1)
	go func() { woken <- r.Put(-1) }() // parks: nothing is released
	awaitBlocked(t, &r.w, 1)
	// Release one slot at a time and refill it at once (this goroutine is
	// the other producer): free never exceeds one of eight, below resume
	// (two). The consumer sees the producer parked at its first release and
	// must wake it resume releases later, at the third.
	const releases = 3
	for i := 1; i <= releases; i++ {
		if _, ok := r.Take(); !ok {
			t.Fatal("Take on an open ring returned false")
		}
		if i < releases && !r.Offer(100+i) {
			t.Fatalf("refill after release %d failed: the parked producer was woken with one slot free", i)
		}
	}
	select {
	case ok := <-woken:
		if !ok {
			t.Fatal("Put returned false on an open ring")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("parked producer still parked after %d releases with the ring refilled each time", releases)
	}
}
