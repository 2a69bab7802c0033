// Command waits reads a Go execution trace (`sluice bench --trace FILE`) and reports each time a
// goroutine stayed runnable longer than a threshold before it ran, classified by whether a P was idle
// when it was made runnable:
//
//   - "idle P available": the goroutine had a P to run on and waited for its OS thread to get a CPU
//     (the kernel's doing: other threads of the process, other processes, the woken thread's CPU).
//   - "no idle P": every P was held, each by a running goroutine or by one in a system call (named),
//     so the goroutine waited for sysmon to retake a P, for the call to return or for a holder to yield.
//
// It also sums the time goroutines spent in system calls, by call site, with the p50, p99 and
// longest of each site's calls.
//
// Usage: go run ./waits [-t µs] [-g name-substring] [-n details] TRACE
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"golang.org/x/exp/trace"

	"github.com/sluicemq/sluice/bench/tailtools/internal/tracefile"
)

type syscall struct {
	g          trace.GoID
	p          trace.ProcID // the P the call holds; -1 once it was retaken
	start, end trace.Time
	site       string
}

type wait struct {
	g       trace.GoID
	t0, t1  trace.Time
	waker   trace.GoID
	idleP   int
	holders string
}

func main() {
	thresh := flag.Int64("t", 500, "report waits longer than this many µs")
	filter := flag.String("g", "Consume", "only goroutines whose start function contains this")
	show := flag.Int("n", 10, "print this many of the longest waits in detail")
	long := flag.Int64("long", 0, "list every system call longer than this many µs, in time order (0: none)")
	r := tracefile.Open("waits [-t µs] [-g name] [-n details] [-long µs] TRACE")

	name := map[trace.GoID]string{}
	running := map[trace.ProcID]trace.GoID{}
	pstate := map[trace.ProcID]trace.ProcState{}
	insys := map[trace.GoID]syscall{}
	runnable := map[trace.GoID]wait{}
	var calls []syscall
	var waits []wait
	var origin trace.Time
	for {
		e, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err == nil && origin == 0 {
			origin = e.Time()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if e.Kind() != trace.EventStateTransition {
			continue
		}
		st := e.StateTransition()
		if st.Resource.Kind == trace.ResourceProc {
			_, to := st.Proc()
			p := st.Resource.Proc()
			pstate[p] = to
			if to != trace.ProcRunning { // retaken from a goroutine in a system call, or stopped
				for g, c := range insys {
					if c.p == p {
						c.p = -1
						insys[g] = c
					}
				}
			}
			continue
		}
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		g := st.Resource.Goroutine()
		from, to := st.Goroutine()
		var frames []string
		for fr := range st.Stack.Frames() {
			frames = append(frames, fr.Func)
		}
		if name[g] == "" && len(frames) > 0 {
			name[g] = short(frames[len(frames)-1])
		}
		switch {
		case to == trace.GoRunnable:
			w := wait{g: g, t0: e.Time(), waker: e.Goroutine()}
			var hs []string
			for p, s := range pstate {
				if s != trace.ProcRunning {
					w.idleP++
					continue
				}
				h := "?"
				if rg, ok := running[p]; ok {
					h = name[rg]
				}
				for sg, c := range insys {
					if c.p == p {
						h = "SYSCALL " + name[sg] + " " + c.site
					}
				}
				hs = append(hs, h)
			}
			sort.Strings(hs)
			w.holders = strings.Join(hs, " | ")
			runnable[g] = w
		case to == trace.GoSyscall:
			site := ""
			if len(frames) > 0 {
				site = short(frames[0])
				for _, fr := range frames[1:] {
					if strings.Contains(fr, "sluice") {
						site += " < " + short(fr)
						break
					}
				}
			}
			insys[g] = syscall{g: g, p: e.Proc(), start: e.Time(), site: site}
		}
		if from == trace.GoSyscall {
			if c, ok := insys[g]; ok {
				c.end = e.Time()
				calls = append(calls, c)
				delete(insys, g)
			}
		}
		if to == trace.GoRunning {
			running[e.Proc()] = g
			if w, ok := runnable[g]; ok && from == trace.GoRunnable {
				w.t1 = e.Time()
				if int64(w.t1-w.t0) > *thresh*1000 && strings.Contains(name[g], *filter) {
					waits = append(waits, w)
				}
			}
			delete(runnable, g)
		}
		if from == trace.GoRunning && to != trace.GoRunning && running[e.Proc()] == g {
			delete(running, e.Proc())
		}
	}

	sort.Slice(waits, func(i, j int) bool { return waits[i].t1-waits[i].t0 > waits[j].t1-waits[j].t0 })
	fmt.Printf("waits > %d µs of goroutines matching %q: %d\n", *thresh, *filter, len(waits))
	classes := map[string]int{}
	idle := 0
	for i, w := range waits {
		if w.idleP > 0 {
			idle++
		} else {
			classes[w.holders]++
		}
		if i < *show {
			fmt.Printf("  %s waited %d µs (made runnable by %s): %d idle P; held: %s\n",
				name[w.g], (w.t1-w.t0)/1000, name[w.waker], w.idleP, w.holders)
		}
	}
	fmt.Printf("idle P available (waiting for a CPU): %d\n", idle)
	fmt.Printf("no idle P: %d\n", len(waits)-idle)
	type kv struct {
		k string
		v int
	}
	var cl []kv
	for k, v := range classes {
		cl = append(cl, kv{k, v})
	}
	sort.Slice(cl, func(i, j int) bool { return cl[i].v > cl[j].v })
	for _, c := range cl {
		fmt.Printf("  %5d  %s\n", c.v, c.k)
	}

	total := map[string]trace.Time{}
	count := map[string]int{}
	durs := map[string][]trace.Time{}
	for _, c := range calls {
		k := name[c.g] + ": " + c.site
		total[k] += c.end - c.start
		count[k]++
		durs[k] = append(durs[k], c.end-c.start)
	}
	var sl []kv
	for k, v := range total {
		sl = append(sl, kv{k, int(v / 1000)})
	}
	sort.Slice(sl, func(i, j int) bool { return sl[i].v > sl[j].v })
	if *long > 0 {
		fmt.Printf("system calls longer than %d µs (start ms from the trace's start, duration µs):\n", *long)
		for _, c := range calls { // in order of their ends
			if d := int64(c.end-c.start) / 1000; d > *long {
				fmt.Printf("  %9.1f %7d  %s: %s\n", float64(c.start-origin)/1e6, d, name[c.g], c.site)
			}
		}
	}
	fmt.Println("time in system calls (ms, calls; per call p50 / p99 / max µs):")
	for i, s := range sl {
		if i == 15 {
			break
		}
		d := durs[s.k]
		slices.Sort(d)
		q := func(p float64) int64 { return int64(d[min(len(d)-1, int(p*float64(len(d))))]) / 1000 }
		fmt.Printf("  %9.1f %6d  %6d / %6d / %6d  %s\n", float64(s.v)/1000, count[s.k], q(0.5), q(0.99), int64(d[len(d)-1])/1000, s.k)
	}
}

// short drops a function name's package path.
func short(s string) string {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}
