// Package maxprocs sets the broker's GOMAXPROCS: the CPUs the process may use, plus Spare.
//
// Why spare Ps. A goroutine in a blocking system call keeps its P (Go 1.26: the P stays running,
// bound to the thread in the call) until sysmon retakes it, and sysmon retakes it only after at least
// one of its ticks (20 µs, backing off to 10 ms while it finds nothing to do), and then only when the
// P's run queue holds work or no other P is idle or spinning. A goroutine made runnable meanwhile goes
// to the run queue of the P of whoever woke it. With GOMAXPROCS equal to the CPUs (2 here), one P
// running a busy goroutine (a spin-paced producer, a gnet event loop) and the other held by an
// fdatasync or a page-population madvise leave no P for a woken consumer: it waits for sysmon, for
// the call to return or for the busy goroutine to yield, milliseconds. The bench's trace analysis
// counted 24-46 such waits of the embedded consumer (runnable > 500 µs with no idle P, the other P in
// a system call or running) per 4-second run at 20,000 msg/s; with two spare Ps, 0-2
// (docs/benchmarks.md, 2026-11-29 "Spare Ps"). Spare Ps cost nothing while idle; the kernel still
// decides which threads have the CPUs, so the blocking work itself runs on low-priority threads
// (disk/lowprio.go).
package maxprocs

import (
	"os"
	"runtime"
)

// Spare is how many Ps beyond the CPUs the broker runs: one for a thread in a blocking system call
// (a sync, a page population), one for a busy loop, so that a woken goroutine finds an idle P.
const Spare = 2

// Set sets GOMAXPROCS to the runtime's default (the CPUs the process may use, cgroup limits included)
// plus Spare, and returns a function that restores the previous setting. It changes nothing when the
// GOMAXPROCS environment variable is set: the operator's value stands. Setting GOMAXPROCS stops the
// runtime from following later changes of the CPU limit (Go 1.25 and later) while it is in force;
// restoring a previous setting equal to the default gives that back.
func Set() (restore func()) {
	if os.Getenv("GOMAXPROCS") != "" {
		return func() {}
	}
	prev := runtime.GOMAXPROCS(0)
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)
	n := def + Spare
	runtime.GOMAXPROCS(n)
	return func() {
		switch {
		case runtime.GOMAXPROCS(0) != n:
			// changed since: leave it
		case prev == def:
			runtime.SetDefaultGOMAXPROCS()
		default:
			runtime.GOMAXPROCS(prev)
		}
	}
}
