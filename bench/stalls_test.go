package bench

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Stalls counts only wake-ups at least StallMin late, sums and maxes their lateness, and reads its
// share of the window.
func TestStallsAccounting(t *testing.T) {
	s := Stalls{Window: time.Second}
	for _, late := range []time.Duration{0, 300 * time.Microsecond, StallMin - 1, StallMin, 4 * time.Millisecond, 3 * time.Millisecond} {
		s.add(late)
	}
	if s.Count != 3 || s.Total != 9*time.Millisecond || s.Max != 4*time.Millisecond {
		t.Fatalf("%+v: want 3 stalls, 9ms in all, longest 4ms", s)
	}
	if got := s.Share(); got < 0.00899 || got > 0.00901 {
		t.Fatalf("share %v, want 0.009", got)
	}
	if line := s.Summary("tcp"); !strings.Contains(line, "tcp): 3 wake-ups 2ms or more late, 9ms in all (0.90% of the 1s window), longest 4ms") {
		t.Fatalf("summary %q", line)
	}
	if (Stalls{}).Share() != 0 {
		t.Fatal("a zero window has a share")
	}
	if strings.Contains(s.Summary("tcp"), "steal") {
		t.Fatalf("summary %q names steal without CPU times", s.Summary("tcp"))
	}
	s.CPUTime, s.Steal = 8*time.Second, 720*time.Millisecond
	if line := s.Summary("tcp"); !strings.HasSuffix(line, "; steal 9.0% of the CPU time") {
		t.Fatalf("summary %q: want the steal share", line)
	}
}

// parseCPUStat reads the aggregate line of /proc/stat: eight columns summed (guest time is inside
// user), the eighth stolen, in ticks; anything else is unknown.
func TestParseCPUStat(t *testing.T) {
	stat := "cpu  4020144 14420 1365593 3634289 197447 0 117577 209935 7 9\n" +
		"cpu0 2010072 7210 682796 1817144 98723 0 58788 104967 0 0\nintr 1 2 3\n"
	got := parseCPUStat([]byte(stat), 100)
	total := int64(4020144 + 14420 + 1365593 + 3634289 + 197447 + 0 + 117577 + 209935)
	if got.total != time.Duration(total)*10*time.Millisecond || got.steal != 209935*10*time.Millisecond {
		t.Fatalf("%+v: want total %d ticks and steal 209935 ticks of 10ms", got, total)
	}
	for _, bad := range []string{"", "cpu 1 2 3\n", "cpu0 1 2 3 4 5 6 7 8 9\n", "cpu 1 2 x 4 5 6 7 8 9\n"} {
		if got := parseCPUStat([]byte(bad), 100); got != (cpuTimes{}) {
			t.Errorf("parseCPUStat(%q) = %+v, want zero", bad, got)
		}
	}
}

// A run with WatchStalls reports the watcher's summary over the measured window; one without, none.
func TestRunWatchesStalls(t *testing.T) {
	for _, watch := range []bool{false, true} {
		cfg := Config{Rate: 2000, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond, WatchStalls: watch}
		res, err := Run(context.Background(), NewFloorTarget(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !watch {
			if res.Stalls != nil {
				t.Fatalf("stalls reported without watching: %+v", res.Stalls)
			}
			continue
		}
		if res.Stalls == nil || res.Stalls.Window != cfg.Duration || res.Stalls.Total < time.Duration(res.Stalls.Count)*StallMin {
			t.Fatalf("stalls %+v: want the measured window of %v and at least StallMin per stall", res.Stalls, cfg.Duration)
		}
		// The machine's CPU time over the window: about its length times the CPUs, in 10 ms ticks.
		if runtime.GOOS == "linux" {
			st := res.Stalls
			if st.CPUTime <= 0 || st.Steal < 0 || st.Steal > st.CPUTime || st.CPUTime > 4*cfg.Duration*time.Duration(runtime.NumCPU()) {
				t.Fatalf("stalls %+v: want the CPU time of %d CPUs over %v, steal within it", st, runtime.NumCPU(), cfg.Duration)
			}
		}
	}
}
