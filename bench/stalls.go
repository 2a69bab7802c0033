package bench

import (
	"fmt"
	"time"
)

// Stall watching (Config.WatchStalls): a goroutine sleeps StallTick at a time through the measured
// window and counts every wake-up at least StallMin later than due. On this project's VM the host
// now and then holds every guest CPU at once (docs/benchmarks.md, "The fsync tail is the VM's"), and
// a message in flight then waits however well the target does: the watcher measures those windows in
// the same run as the latencies they inflate. A late wake-up also follows from every CPU being busy
// with threads the scheduler prefers; the watcher cannot tell the two apart.
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

// Stalls summarises the late wake-ups of the stall watcher over the measured window.
type Stalls struct {
	Count  int64         `json:"count"`    // wake-ups at least StallMin late
	Total  time.Duration `json:"total_ns"` // their lateness, summed
	Max    time.Duration `json:"max_ns"`   // the latest
	Window time.Duration `json:"window_ns"`
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

// Summary is the stalls on one line, as `sluice bench --stalls` prints them after the table.
func (s Stalls) Summary(target string) string {
	return fmt.Sprintf("stalls (same run, %s): %d wake-ups %s or more late, %s in all (%.2f%% of the %s window), longest %s",
		target, s.Count, FormatLatency(StallMin), FormatLatency(s.Total), 100*s.Share(), s.Window, FormatLatency(s.Max))
}

// watchStalls watches from the schedule time from to end (Now's clock) and sends the summary on the returned channel; it gives up early when stop reports true.
func watchStalls(from, end int64, stop func() bool) <-chan Stalls {
	out := make(chan Stalls, 1)
	go func() {
		var s Stalls
		for now := Now(); now < end && !stop(); {
			due := now + int64(StallTick)
			time.Sleep(StallTick)
			now = Now()
			if due >= from {
				s.add(time.Duration(now - due))
			}
		}
		s.Window = time.Duration(end - from)
		out <- s
	}()
	return out
}
