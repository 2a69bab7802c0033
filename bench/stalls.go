package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Stall watching (Config.WatchStalls): a goroutine sleeps StallTick at a time through the measured
// window and counts every wake-up at least StallMin later than due. On this project's VM the host
// now and then holds every guest CPU at once (its CPU quota: docs/benchmarks.md, "The fsync tail is
// the host's CPU quota"), and a message in flight then waits however well the target does: the
// watcher measures those windows in the same run as the latencies they inflate. A late wake-up also
// follows from every CPU being busy with threads the scheduler prefers; the wake-ups alone cannot
// tell the two apart, the steal time read beside them (Stalls.Steal) can.
//
// It sleeps with time.Sleep, parked, holding no processor: a thread locked and asleep in nanosleep
// (as the pacer sleeps) keeps its P until sysmon takes it back, and with two Ps that held the floor's
// consumer off a processor for milliseconds (the floor's p99 at 20 000 msg/s went from 70 µs to
// 7-9 ms). Go's timers wake here in steps of about a millisecond, hence a tick of 1 ms and stalls
// counted from 2 ms late.
const (
	StallTick = time.Millisecond
	StallMin  = 2 * time.Millisecond
)

// Stalls summarises the late wake-ups of the stall watcher over the measured window, and the
// machine's CPU time over it as the kernel accounts it (Linux's /proc/stat; zero elsewhere).
type Stalls struct {
	Count  int64         `json:"count"`    // wake-ups at least StallMin late
	Total  time.Duration `json:"total_ns"` // their lateness, summed
	Max    time.Duration `json:"max_ns"`   // the latest
	Window time.Duration `json:"window_ns"`
	// CPUTime is the machine's CPU time over the window as /proc/stat counts it, every CPU's, in
	// every state; Steal is the part of it a hypervisor ran something else on the guest's CPUs (the
	// steal column): on this project's VM, the host's CPU quota (docs/benchmarks.md, "The fsync tail
	// is the host's CPU quota"). The kernel counts in 10 ms ticks and, under load, short of the
	// window times the CPUs (by 5-20% seen here), so the steal share is an estimate. CPUTime 0: not
	// known (not Linux, or /proc/stat unreadable).
	CPUTime time.Duration `json:"cpu_time_ns"`
	Steal   time.Duration `json:"steal_ns"`
}

// add counts one wake-up late by late, if it is a stall.
func (s *Stalls) add(late time.Duration) {
	if late < StallMin {
		return
	}
	s.Count++
	s.Total += late
	s.Max = max(s.Max, late)
}

// Share is the fraction of the window spent in stalls: above about 1%, a run's p99 can be the
// machine's alone.
func (s Stalls) Share() float64 {
	if s.Window <= 0 {
		return 0
	}
	return float64(s.Total) / float64(s.Window)
}

// StealShare is the fraction of the machine's CPU time over the window that the hypervisor took
// (Steal over CPUTime), 0 when unknown.
func (s Stalls) StealShare() float64 {
	if s.CPUTime <= 0 {
		return 0
	}
	return float64(s.Steal) / float64(s.CPUTime)
}

// Summary is the stalls on one line, as `sluice bench --stalls` prints them after the table.
func (s Stalls) Summary(target string) string {
	line := fmt.Sprintf("stalls (same run, %s): %d wake-ups %s or more late, %s in all (%.2f%% of the %s window), longest %s",
		target, s.Count, FormatLatency(StallMin), FormatLatency(s.Total), 100*s.Share(), s.Window, FormatLatency(s.Max))
	if s.CPUTime > 0 {
		line += fmt.Sprintf("; steal %.1f%% of the CPU time", 100*s.StealShare())
	}
	return line
}

// watchStalls watches from the schedule time from to end (Now's clock) and sends the summary on the returned channel; it gives up early when stop reports true.
func watchStalls(from, end int64, stop func() bool) <-chan Stalls {
	out := make(chan Stalls, 1)
	go func() {
		var s Stalls
		var cpu0 cpuTimes
		started := false
		for now := Now(); now < end && !stop(); {
			due := now + int64(StallTick)
			time.Sleep(StallTick)
			now = Now()
			if due >= from {
				if !started {
					cpu0, started = readCPUTimes(), true
				}
				s.add(time.Duration(now - due))
			}
		}
		if cpu1 := readCPUTimes(); started && cpu0.total > 0 && cpu1.total > cpu0.total {
			s.CPUTime, s.Steal = cpu1.total-cpu0.total, cpu1.steal-cpu0.steal
		}
		s.Window = time.Duration(end - from)
		out <- s
	}()
	return out
}

// cpuTimes is the machine's CPU time since boot, over all CPUs and states, and the part stolen.
type cpuTimes struct{ total, steal time.Duration }

// parseCPUStat reads the aggregate "cpu" line of /proc/stat (proc(5): user nice system idle iowait
// irq softirq steal guest guest_nice, in ticks of hz a second; guest time is already counted in
// user and nice, so the total is the first eight). It returns zero times if the line is missing or
// short.
func parseCPUStat(stat []byte, hz int64) cpuTimes {
	for _, line := range strings.Split(string(stat), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		var ticks [8]int64
		for i := range ticks {
			n, err := strconv.ParseInt(f[1+i], 10, 64)
			if err != nil {
				return cpuTimes{}
			}
			ticks[i] = n
		}
		var total int64
		for _, n := range ticks {
			total += n
		}
		tick := time.Second / time.Duration(hz)
		return cpuTimes{total: time.Duration(total) * tick, steal: time.Duration(ticks[7]) * tick}
	}
	return cpuTimes{}
}
