package ring

import "sync/atomic"

// Publication and the asymmetric fence.
//
// A producer publishes with storeRelease: every write before it (the slot)
// is visible to a goroutine whose atomic load observes the stored value. On
// amd64 that is a plain MOV, as x86 never reorders a store with earlier
// stores; Go's atomic Store is an XCHG instead, a full fence that drains the
// store buffer and, across cores, waits for every cache line the producer
// wrote to arrive in its cache. Paid once per hand-off, the fence doubled
// the cost of a single-entry SPSC hand-off on a 2-core machine.
//
// Without the fence a producer's load of the consumer's state may complete
// before its publication is visible to the consumer (x86 reorders a load
// ahead of earlier stores), which would break the Dekker handshake that
// parks the consumer (see waiter). The fence moves to the side that parks:
// after storing parked or armed and finding nothing, the consumer calls
// heavyFence, which returns only after every running thread of the process
// has executed a full fence (Linux membarrier,
// MEMBARRIER_CMD_PRIVATE_EXPEDITED), and re-checks. A producer's
// publication made before that point is then visible to the re-check, and a
// producer's state load after it sees the consumer's announcement. It costs
// the consumer about a microsecond, on a path that is about to block anyway,
// and an MPSC consumer pays it only with a claim outstanding (waiter.settle).
//
// Where membarrier is unavailable (another OS or architecture, an old
// kernel, a seccomp filter, or the race detector, which must see every
// synchronizing access), publication is Go's sequentially consistent Store
// and heavyFence is never needed.

// publishStore stores tail = v for an SPSC producer: with release ordering
// when the consumer's announcement fences (asymmetric), otherwise
// sequentially consistent, as the Dekker handshake then needs.
func publishStore(tail *atomic.Uint64, v uint64) {
	if asymmetric {
		storeRelease(tail, v)
	} else {
		tail.Store(v)
	}
}
