package main

import (
	"runtime"
	"testing"

	"github.com/sluicemq/sluice/internal/maxprocs"
)

// TestBrokerRunsSpareProcs: the broker runs with GOMAXPROCS at its CPUs plus its event loops plus
// maxprocs.Spare (go_sched_gomaxprocs_threads on /metrics), unless GOMAXPROCS is set in its environment.
func TestBrokerRunsSpareProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	runtime.SetDefaultGOMAXPROCS()
	cpus := runtime.GOMAXPROCS(0) // the child's default: same machine, same limits
	runtime.GOMAXPROCS(prev)

	t.Setenv("GOMAXPROCS", "") // unset for the child: its own policy applies
	b := startBroker(t, t.TempDir(), "--loops", "3")
	if got := b.metric(t, "go_sched_gomaxprocs_threads", ""); got != int64(cpus+3+maxprocs.Spare) {
		t.Errorf("broker GOMAXPROCS with --loops 3 = %d, want %d CPUs + 3 loops + %d spare", got, cpus, maxprocs.Spare)
	}
	b.stop()

	t.Setenv("GOMAXPROCS", "3")
	b = startBroker(t, t.TempDir())
	if got := b.metric(t, "go_sched_gomaxprocs_threads", ""); got != 3 {
		t.Errorf("broker GOMAXPROCS with GOMAXPROCS=3 in its environment = %d, want 3", got)
	}
	b.stop()
}
