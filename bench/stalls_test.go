package bench

import (
	"context"
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
	}
}
