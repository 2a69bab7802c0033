//go:build linux

package bench

import (
	"os"

	"log/slog"

	"golang.org/x/sys/unix"
)

// lowerTimerSlack sets the calling thread's timer slack to 1 ns. Linux lets a sleeping thread's wake-up
// slip by its timer slack (50 µs by default) so that wake-ups can be coalesced; a pacer wants none of that.
// The setting is per thread, so the caller must hold runtime.LockOSThread.
func lowerTimerSlack() {
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
		slog.Debug("bench: cannot lower timer slack", "err", err)
	}
}

// sleepNs sleeps the calling thread for about ns nanoseconds with nanosleep(2). The Go runtime's own
// timers wake in steps of about a millisecond on the project's VMs; nanosleep with 1 ns of slack wakes
// within tens of microseconds. An interrupted sleep (EINTR, e.g. a preemption signal) returns early; the
// pacer re-reads the clock and sleeps again.
func sleepNs(ns int64) {
	ts := unix.NsecToTimespec(ns)
	_ = unix.Nanosleep(&ts, nil)
}

// fdatasync flushes f's data (and the metadata needed to read it back) to stable storage.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// readCPUTimes reads the machine's CPU time from /proc/stat (zero if it cannot). The kernel reports
// it in USER_HZ ticks, 100 a second on every Linux architecture Go supports.
func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	return parseCPUStat(b, 100)
}
