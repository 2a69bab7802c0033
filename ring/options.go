package ring

import (
	"errors"
	"fmt"
)

// WaitStrategy says how a side that cannot proceed waits: the consumer in
// Wait and Take when the ring is empty, a producer in Put when it is full.
type WaitStrategy uint8

const (
	// WaitPark spins Options.Spins times, yields Options.Yields times, then
	// parks: the consumer until a producer publishes or the ring is closed,
	// a producer in Put until a quarter of the ring is free or the ring is
	// closed. It is the zero value and the default: an idle ring costs no
	// CPU, and on a machine with fewer free cores than goroutines the
	// waiting side gives its core to the side it waits for.
	WaitPark WaitStrategy = iota
	// WaitYield spins Options.Spins times, then calls runtime.Gosched between
	// re-checks. It never blocks in the kernel. Use it where a hand-off is
	// hot and the goroutines outnumber the cores (4 producers on 2 cores).
	WaitYield
	// WaitSpin re-checks in a tight loop and never yields. It gives the
	// lowest latency only when every producer and the consumer own a core;
	// with more runnable goroutines than cores the spinner steals the CPU
	// from the goroutine it waits for until the scheduler preempts it.
	WaitSpin
)

// String returns the strategy's name.
func (s WaitStrategy) String() string {
	switch s {
	case WaitPark:
		return "park"
	case WaitYield:
		return "yield"
	case WaitSpin:
		return "spin"
	}
	return fmt.Sprintf("WaitStrategy(%d)", uint8(s))
}

// Defaults applied by NewSPSC and NewMPSC to zero-valued Options fields.
const (
	DefaultCapacity = 1024
	DefaultSpins    = 32
	DefaultYields   = 16
	// MaxCapacity bounds Options.Capacity. Sequences are uint64 and never
	// wrap; the bound only keeps a typo from allocating the machine.
	MaxCapacity = 1 << 30
)

// Errors returned by Options.Validate.
var (
	ErrCapacity = errors.New("ring: capacity must be a power of two")
	ErrOptions  = errors.New("ring: invalid options")
)

// Options configures a ring. The zero value is valid: every zero field takes
// its default.
type Options struct {
	// Capacity is the number of slots, a power of two in [1, MaxCapacity].
	// Positions map to slots with a mask, never a division.
	// Default DefaultCapacity.
	Capacity int

	// Wait is the wait strategy for Wait, Take and Put. Default WaitPark.
	Wait WaitStrategy

	// Spins is the number of paced re-checks a waiting consumer makes
	// before its first yield (WaitYield, WaitPark); a producer waiting on a
	// full ring makes an eighth as many. Default DefaultSpins.
	Spins int

	// Yields is the number of runtime.Gosched re-checks between spinning
	// and parking (WaitPark only); a producer on a full ring also keeps
	// yielding until the consumer has released nothing for 50 µs. Default
	// DefaultYields.
	Yields int

	// Waker, if set, lets an event loop be the consumer. The loop calls Arm
	// before it goes idle; the first producer to publish after a successful
	// Arm calls Waker, once per Arm. Waker runs on the producer's goroutine,
	// after the entry is published: it must be cheap and must not block
	// (gnet's Conn.Wake, which queues a task on the loop, is the intended
	// use). It is also called by Close when the consumer is armed.
	Waker func()
}

// Validate reports whether o, after defaults, describes a usable ring.
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.Capacity < 1 || o.Capacity > MaxCapacity || o.Capacity&(o.Capacity-1) != 0 {
		return fmt.Errorf("%w in [1, %d], got %d", ErrCapacity, MaxCapacity, o.Capacity)
	}
	if o.Wait > WaitSpin {
		return fmt.Errorf("%w: unknown wait strategy %d", ErrOptions, uint8(o.Wait))
	}
	if o.Spins < 0 || o.Yields < 0 {
		return fmt.Errorf("%w: negative Spins (%d) or Yields (%d)", ErrOptions, o.Spins, o.Yields)
	}
	return nil
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.Capacity == 0 {
		o.Capacity = DefaultCapacity
	}
	if o.Spins == 0 {
		o.Spins = DefaultSpins
	}
	if o.Yields == 0 {
		o.Yields = DefaultYields
	}
	return o
}

// takeRelease is how many entries Take returns before it releases their
// slots to the producers: an eighth of the ring, between 1 and 64.
func takeRelease(capacity int) uint64 { return uint64(min(max(capacity/8, 1), 64)) }
