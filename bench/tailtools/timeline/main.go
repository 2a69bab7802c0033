// Command timeline reads a `sluice bench --trace` file goroutine by goroutine. By default it prints
// every goroutine state change (and GC or stop-the-world range) in a window, one line each: time
// from the window's start (µs), processor, goroutine (by its start function), the change, and where
// it happened (the innermost frame of this module or gnet, after the runtime's or the system call's
// own). That is for following one record through the hand-offs of docs/architecture.md ("Goroutine
// hand-offs on the TCP path").
//
// -busy prints instead each goroutine's time running and in system calls over the window, and the
// system calls by goroutine and site. A system call's time includes any time its thread waited for a
// CPU, so it is wall time, not processor time.
//
// -gaps N prints instead every stretch of more than N µs in which no goroutine of the process changed
// state: the process, or the whole machine, was stalled (docs/benchmarks.md, "The fsync tail is the
// host's CPU quota").
//
// Usage: go run ./timeline [-from ms] [-for µs] [-busy | -gaps µs] TRACE
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/exp/trace"

	"github.com/sluicemq/sluice/bench/tailtools/internal/tracefile"
)

func main() {
	from := flag.Float64("from", 1000, "window start, ms from the trace's first event")
	span := flag.Float64("for", 300, "window length, µs")
	busy := flag.Bool("busy", false, "print each goroutine's time running and in system calls over the window")
	gaps := flag.Float64("gaps", 0, "print the stretches longer than this many µs with no goroutine state change")
	r := tracefile.Open("timeline [-from ms] [-for µs] [-busy | -gaps µs] TRACE")
	w := &walk{from: *from * 1e3, to: *from*1e3 + *span, name: map[trace.GoID]string{}}
	switch {
	case *busy:
		w.acct = newAccount()
	case *gaps > 0:
		w.gapOver = *gaps
	}
	for {
		e, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if !w.event(e) {
			break
		}
	}
	if w.acct != nil {
		w.acct.print(w.name, *span/1e3)
	}
}

// walk is one pass over the trace; times are µs from its first event.
type walk struct {
	from, to float64
	name     map[trace.GoID]string // goroutines by the outermost frame seen, their start function
	origin   trace.Time
	acct     *account // -busy
	gapOver  float64  // -gaps
	last     float64  // -gaps: the previous state change
}

// event handles e and reports whether to read on.
func (w *walk) event(e trace.Event) bool {
	if w.origin == 0 {
		w.origin = e.Time()
	}
	t := float64(e.Time()-w.origin) / 1e3
	if t > w.to {
		return false
	}
	switch e.Kind() {
	case trace.EventRangeBegin, trace.EventRangeEnd, trace.EventRangeActive:
		if w.acct == nil && w.gapOver == 0 && t >= w.from {
			fmt.Printf("%9.1f  P%-2d  %s %s\n", t-w.from, e.Proc(), e.Kind(), e.Range().Name)
		}
		return true
	case trace.EventStateTransition:
	default:
		return true
	}
	st := e.StateTransition()
	if st.Resource.Kind != trace.ResourceGoroutine {
		return true
	}
	g := st.Resource.Goroutine()
	var frames []string
	for fr := range st.Stack.Frames() {
		frames = append(frames, fr.Func)
	}
	if w.name[g] == "" && len(frames) > 0 {
		w.name[g] = short(frames[len(frames)-1])
	}
	before, after := st.Goroutine()
	switch {
	case t < w.from:
		if w.acct != nil {
			w.acct.forget(g)
		}
		w.last = t
	case w.acct != nil:
		w.acct.change(g, w.name[g], before, after, e.Time(), site(frames))
	case w.gapOver > 0:
		if t-w.last > w.gapOver {
			fmt.Printf("no state change for %6.0f µs from %9.1f ms\n", t-w.last, w.last/1e3)
		}
		w.last = t
	default:
		by := ""
		if waker := e.Goroutine(); waker != g && waker != trace.NoGoroutine {
			by = " by " + w.name[waker]
		}
		fmt.Printf("%9.1f  P%-2d  %-34s %s -> %s%s  %s\n", t-w.from, e.Proc(), fmt.Sprintf("%s#%d", w.name[g], g),
			before, after, by, site(frames))
	}
	return true
}

// account sums, per goroutine, the time spent running and in system calls (-busy).
type account struct {
	since          map[trace.GoID]trace.Time // when g last started running or entered a system call
	sysSite        map[trace.GoID]string     // where g's system call in progress was made
	running, insys map[trace.GoID]int64      // nanoseconds
	bySite         map[string]int64          // system call nanoseconds by goroutine and site
}

func newAccount() *account {
	return &account{since: map[trace.GoID]trace.Time{}, sysSite: map[trace.GoID]string{},
		running: map[trace.GoID]int64{}, insys: map[trace.GoID]int64{}, bySite: map[string]int64{}}
}

func (a *account) forget(g trace.GoID) { delete(a.since, g) }

func (a *account) change(g trace.GoID, name string, before, after trace.GoState, now trace.Time, site string) {
	if t0, ok := a.since[g]; ok {
		d := int64(now - t0)
		switch before {
		case trace.GoRunning:
			a.running[g] += d
		case trace.GoSyscall:
			a.insys[g] += d
			a.bySite[fmt.Sprintf("%s#%d %s", name, g, a.sysSite[g])] += d
		}
	}
	a.since[g] = now
	if after == trace.GoSyscall {
		a.sysSite[g] = site
	}
}

func (a *account) print(name map[trace.GoID]string, windowMs float64) {
	pct := func(ns int64) float64 { return float64(ns) / 1e4 / windowMs }
	var gs []trace.GoID
	for g := range a.running {
		gs = append(gs, g)
	}
	for g := range a.insys {
		if _, ok := a.running[g]; !ok {
			gs = append(gs, g)
		}
	}
	sort.Slice(gs, func(i, j int) bool {
		return a.running[gs[i]]+a.insys[gs[i]] > a.running[gs[j]]+a.insys[gs[j]]
	})
	fmt.Printf("%-44s %8s %8s  (%% of the %.0f ms window)\n", "goroutine", "running", "syscall", windowMs)
	for _, g := range gs[:min(len(gs), 15)] {
		fmt.Printf("%-44s %7.1f%% %7.1f%%\n", fmt.Sprintf("%s#%d", name[g], g), pct(a.running[g]), pct(a.insys[g]))
	}
	sites := make([]string, 0, len(a.bySite))
	for s := range a.bySite {
		sites = append(sites, s)
	}
	sort.Slice(sites, func(i, j int) bool { return a.bySite[sites[i]] > a.bySite[sites[j]] })
	fmt.Println("system calls by goroutine and site:")
	for _, s := range sites[:min(len(sites), 15)] {
		fmt.Printf("  %6.1f%%  %s\n", pct(a.bySite[s]), s)
	}
}

// site names where a state change happened: the innermost frame of this module or gnet, after the
// innermost frame itself when that is another package's (a system call, the runtime's park).
func site(frames []string) string {
	own := ""
	for _, fr := range frames {
		if strings.Contains(fr, "sluice") || strings.Contains(fr, "gnet") {
			own = short(fr)
			break
		}
	}
	if len(frames) > 0 && !strings.Contains(frames[0], "sluice") {
		return short(frames[0]) + " < " + own
	}
	return own
}

func short(fn string) string {
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		fn = fn[i+1:]
	}
	return fn
}
