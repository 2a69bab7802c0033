package ring

import (
	"errors"
	"testing"
	"time"
	"unsafe"
)

var kinds = []string{"spsc", "mpsc"}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want error
	}{
		{"zero value takes defaults", Options{}, nil},
		{"capacity 1", Options{Capacity: 1}, nil},
		{"capacity 64", Options{Capacity: 64}, nil},
		{"max capacity", Options{Capacity: MaxCapacity}, nil},
		{"capacity not a power of two", Options{Capacity: 12}, ErrCapacity},
		{"negative capacity", Options{Capacity: -8}, ErrCapacity},
		{"capacity too large", Options{Capacity: MaxCapacity << 1}, ErrCapacity},
		{"unknown wait strategy", Options{Wait: WaitSpin + 1}, ErrOptions},
		{"negative spins", Options{Spins: -1}, ErrOptions},
		{"negative yields", Options{Yields: -1}, ErrOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tc.want)
			}
			if tc.want == nil && tc.o.Capacity > 1<<16 {
				return // valid, but not worth allocating in a test
			}
			_, errS := NewSPSC[int](tc.o)
			_, errM := NewMPSC[int](tc.o)
			if !errors.Is(errS, tc.want) || !errors.Is(errM, tc.want) || (tc.want == nil) != (errS == nil && errM == nil) {
				t.Fatalf("NewSPSC: %v, NewMPSC: %v, want %v", errS, errM, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	for _, kind := range kinds {
		r := newRing[int](t, kind, Options{})
		if r.Cap() != DefaultCapacity {
			t.Errorf("%s: Cap() = %d, want DefaultCapacity %d", kind, r.Cap(), DefaultCapacity)
		}
		w := waiterOf(r)
		if w.wait != WaitPark || w.spins != DefaultSpins || w.yields != DefaultYields {
			t.Errorf("%s: wait %v spins %d yields %d, want park %d %d", kind, w.wait, w.spins, w.yields, DefaultSpins, DefaultYields)
		}
	}
}

// TestBatchWrap fills, partly drains and refills a small ring so batches
// straddle the end of the buffer, checking counts, Len and order.
func TestBatchWrap(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			r := newRing[int](t, kind, Options{Capacity: 8})
			next, want := 0, 0
			batch := func(n int) []int {
				vs := make([]int, n)
				for i := range vs {
					vs[i] = next + i
				}
				return vs
			}
			offer := func(n, wantN int) {
				t.Helper()
				if got := r.OfferBatch(batch(n)); got != wantN {
					t.Fatalf("OfferBatch(%d) = %d, want %d", n, got, wantN)
				}
				next += wantN
			}
			drain := func(n, wantN int) {
				t.Helper()
				dst := make([]int, n)
				got := r.Drain(dst)
				if got != wantN {
					t.Fatalf("Drain(%d) = %d, want %d", n, got, wantN)
				}
				for _, v := range dst[:got] {
					if v != want {
						t.Fatalf("drained %d, want %d", v, want)
					}
					want++
				}
			}
			offer(10, 8) // partial claim: 8 of 10
			offer(1, 0)  // full
			if r.Offer(-1) {
				t.Fatal("Offer into a full ring returned true")
			}
			if r.Len() != 8 {
				t.Fatalf("Len() = %d, want 8", r.Len())
			}
			drain(3, 3)
			offer(5, 3) // wraps: slots 0..2
			for lap := 0; lap < 50; lap++ {
				drain(5, 5) // straddles the end on most laps
				offer(7, 5)
			}
			n := r.Poll(100, func(p *int) {
				if *p != want {
					t.Fatalf("polled %d, want %d", *p, want)
				}
				want++
			})
			if n != 8 || r.Len() != 0 {
				t.Fatalf("Poll drained %d, Len() = %d; want 8 and 0", n, r.Len())
			}
			if r.Poll(0, func(*int) { t.Fatal("Poll(0) called fn") }) != 0 || r.Drain(nil) != 0 || r.OfferBatch(nil) != 0 {
				t.Fatal("zero-sized Poll, Drain or OfferBatch did something")
			}
		})
	}
}

// TestSlotsCleared checks that consumption zeroes the slot, so the ring
// does not keep a consumed entry's pointers alive.
func TestSlotsCleared(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			r := newRing[*int](t, kind, Options{Capacity: 8})
			for lap := 0; lap < 3; lap++ {
				for i := 0; i < 8; i++ {
					r.Offer(new(int))
				}
				r.Poll(3, func(**int) {})
				r.Drain(make([]*int, 3))
				r.Take()
				r.Take()
			}
			var live int
			switch r := r.(type) {
			case *SPSC[*int]:
				for _, p := range r.buf {
					if p != nil {
						live++
					}
				}
			case *MPSC[*int]:
				for i := range r.slots {
					if r.slots[i].v != nil {
						live++
					}
				}
			}
			if live != 0 {
				t.Fatalf("%d consumed slots still hold a pointer", live)
			}
		})
	}
}

// TestHasPointers checks which slot types are cleared once consumed.
func TestHasPointers(t *testing.T) {
	type plain struct { // fields exported: only reflection reads them
		A int64
		B [4]uint32
		C struct{ F float64 }
	}
	type withString struct {
		A int
		S string
	}
	for _, c := range []struct {
		name      string
		got, want bool
	}{
		{"uint64", hasPointers[uint64](), false},
		{"plain struct", hasPointers[plain](), false},
		{"[0]*int", hasPointers[[0]*int](), false},
		{"*int", hasPointers[*int](), true},
		{"string", hasPointers[string](), true},
		{"[]byte", hasPointers[[]byte](), true},
		{"struct with string", hasPointers[withString](), true},
		{"[2]any", hasPointers[[2]any](), true},
		{"func()", hasPointers[func()](), true},
		{"map", hasPointers[map[int]int](), true},
		{"chan", hasPointers[chan int](), true},
	} {
		if c.got != c.want {
			t.Errorf("hasPointers[%s] = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestClosedRingDrainsThenFails(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			r := newRing[int](t, kind, Options{Capacity: 8})
			r.Offer(1)
			r.OfferBatch([]int{2, 3})
			if !r.Close() || r.Close() {
				t.Fatal("Close: want true once, then false")
			}
			if !r.Closed() {
				t.Fatal("Closed() = false after Close")
			}
			if r.Offer(4) || r.Put(4) || r.OfferBatch([]int{4}) != 0 {
				t.Fatal("a producer method succeeded on a closed ring")
			}
			for want := 1; want <= 3; want++ {
				if v, ok := r.Take(); !ok || v != want {
					t.Fatalf("Take() = %d, %v; want %d, true", v, ok, want)
				}
			}
			if v, ok := r.Take(); ok {
				t.Fatalf("Take() on a closed, empty ring = %d, true", v)
			}
			if r.Wait() {
				t.Fatal("Wait() on a closed, empty ring = true")
			}
		})
	}
}

func TestArmWithoutWakerPanics(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			r := newRing[int](t, kind, Options{})
			defer func() {
				if recover() == nil {
					t.Fatal("Arm without Options.Waker did not panic")
				}
			}()
			r.Arm()
		})
	}
}

// TestLayout checks that fields written by different goroutines are at
// least a cache line apart, and that the padding arithmetic holds.
func TestLayout(t *testing.T) {
	apart := func(name string, a, b uintptr) {
		t.Helper()
		if b < a+cacheLine {
			t.Errorf("%s: offsets %d and %d are closer than %d bytes", name, a, b, cacheLine)
		}
	}
	var s SPSC[int]
	apart("SPSC start..tail", 0, unsafe.Offsetof(s.tail))
	apart("SPSC tail..head", unsafe.Offsetof(s.tail), unsafe.Offsetof(s.head))
	apart("SPSC head..next", unsafe.Offsetof(s.head), unsafe.Offsetof(s.next))
	apart("SPSC next..state", unsafe.Offsetof(s.next), unsafe.Offsetof(s.w)+unsafe.Offsetof(s.w.state))
	apart("SPSC state..config", unsafe.Offsetof(s.w)+unsafe.Offsetof(s.w.state), unsafe.Offsetof(s.w)+unsafe.Offsetof(s.w.closed))
	apart("SPSC config..end", unsafe.Offsetof(s.mask), unsafe.Sizeof(s))
	var m MPSC[int]
	apart("MPSC start..tail", 0, unsafe.Offsetof(m.tail))
	apart("MPSC tail..headCache", unsafe.Offsetof(m.tail), unsafe.Offsetof(m.headCache))
	apart("MPSC headCache..head", unsafe.Offsetof(m.headCache), unsafe.Offsetof(m.head))
	apart("MPSC head..next", unsafe.Offsetof(m.head), unsafe.Offsetof(m.next))
	apart("MPSC next..state", unsafe.Offsetof(m.next), unsafe.Offsetof(m.w)+unsafe.Offsetof(m.w.state))
	apart("MPSC state..config", unsafe.Offsetof(m.w)+unsafe.Offsetof(m.w.state), unsafe.Offsetof(m.w)+unsafe.Offsetof(m.w.closed))
	apart("MPSC config..end", unsafe.Offsetof(m.mask), unsafe.Sizeof(m))
}

// TestNoAllocs checks that hand-offs allocate nothing, for an entry type
// that holds a pointer.
func TestNoAllocs(t *testing.T) {
	type ack struct {
		conn *int
		seq  uint64
	}
	conn := new(int)
	for _, kind := range kinds {
		r := newRing[ack](t, kind, Options{Capacity: 64, Waker: func() {}})
		batch := []ack{{conn, 1}, {conn, 2}, {conn, 3}}
		dst := make([]ack, 8)
		var sum uint64
		fn := func(p *ack) { sum += p.seq }
		allocs := testing.AllocsPerRun(1000, func() {
			r.Offer(ack{conn, 0})
			r.Put(ack{conn, 0})
			r.OfferBatch(batch)
			r.Poll(2, fn)
			r.Drain(dst)
			r.Offer(ack{conn, 0})
			r.Take()
			r.Arm()
			r.Offer(ack{conn, 0}) // calls Waker
			r.Wait()
			r.Poll(1, fn)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per hand-off cycle, want 0", kind, allocs)
		}
	}
}

// TestSpinTakesTime checks that the compiler keeps spin's empty loop: 2^24
// iterations take milliseconds (at least one per cycle), and an optimized
// away loop would take nanoseconds. Noise can only make it slower.
func TestSpinTakesTime(t *testing.T) {
	start := time.Now()
	spin(1 << 24)
	if d := time.Since(start); d < time.Millisecond {
		t.Fatalf("spin(1<<24) took %v: the loop was optimized away", d)
	}
}
