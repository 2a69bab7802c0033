// Package maxprocs sets the broker's GOMAXPROCS: the CPUs the process may use, plus one P for each
// event loop, plus Spare.
//
// Why more Ps than CPUs. A goroutine in a blocking system call keeps its P (Go 1.26: the P stays
// running, bound to the thread in the call) until sysmon retakes it, and sysmon retakes it only after
// at least one of its ticks (20 µs, backing off to 10 ms while it finds nothing to do), and then only
// when the P's run queue holds work or no other P is idle or spinning. A goroutine made runnable
// meanwhile goes to the run queue of the P of whoever woke it. The broker has such callers all the
// time: each gnet event loop waits for its sockets in a blocking epoll_wait (gnet polls the kernel
// itself, not through Go's netpoller) and takes a P again at every event; the flusher's fdatasync and
// the housekeeper's madvise block for milliseconds. With GOMAXPROCS equal to the CPUs (2 here), the
// loops alone hold every P, and any other goroutine woken (a consumer, a client's reader, the
// flusher) waits for sysmon. Measured with bench/tailtools/waits on `sluice bench` traces
// (docs/benchmarks.md, 2026-11-29 "Spare Ps"), goroutines runnable > 500 µs with no idle P per 4-second
// run at 20,000 msg/s: tcp (2 loops) 1229-1410 at GOMAXPROCS 2, 204-289 at 4 (most with both loops in
// epoll_wait), 59-64 at 6, 9-15 at 8; p99 best at 6 (4.7-5.9 ms against 10-17 ms at 4 and 16-41 ms at
// 8, where the extra running threads queue for the CPUs instead). Embedded (no loops): 24-46 at 2,
// 0-2 at 4. Idle Ps cost nothing; the kernel still decides which threads have the CPUs, so the
// blocking work itself runs on low-priority threads where it can (disk/lowprio.go).
package maxprocs

import (
	"os"
	"runtime"
)

// Spare is how many Ps beyond the CPUs and the event loops the broker runs: one for a thread in a
// blocking disk call (a sync, a page population), one for a busy goroutine (a spin-paced producer),
// so that a woken goroutine finds an idle P.
const Spare = 2

// Set sets GOMAXPROCS to the runtime's default (the CPUs the process may use, cgroup limits included)
// plus loops (the event loops that wait in blocking system calls: the native listener's gnet loops)
// plus Spare, and returns a function that restores the previous setting. It changes nothing when the
// GOMAXPROCS environment variable is set: the operator's value stands. Setting GOMAXPROCS stops the
// runtime from following later changes of the CPU limit (Go 1.25 and later) while it is in force;
// restoring a previous setting equal to the default gives that back.
func Set(loops int) (restore func()) {
	if os.Getenv("GOMAXPROCS") != "" {
		return func() {}
	}
	prev := runtime.GOMAXPROCS(0)
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)
	n := def + max(loops, 0) + Spare
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
