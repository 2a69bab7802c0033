package targets

import (
	"context"
	"runtime"
	"testing"

	"github.com/sluicemq/sluice/bench"
	"github.com/sluicemq/sluice/internal/maxprocs"
)

// TestInProcessTargetsRunSpareProcs: while an in-process target is open the process runs at the
// broker's GOMAXPROCS (the CPUs plus maxprocs.Spare, plus the event loops for tcp), and after Close at
// the default again, so the floor, run in the same process, runs as before.
func TestInProcessTargetsRunSpareProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // unset: the policy applies
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)

	opts := Options{Dir: t.TempDir(), Logger: quiet, Loops: 3}
	for _, target := range []bench.Target{NewEmbedded(opts), NewTCP(opts)} {
		want := def + maxprocs.Spare
		if target.Name() == TCPName {
			want += 3
		}
		cfg := shortRun(bench.DurabilityWritten).WithDefaults()
		if err := target.Open(context.Background(), cfg); err != nil {
			t.Fatalf("%s: Open: %v", target.Name(), err)
		}
		if got := runtime.GOMAXPROCS(0); got != want {
			t.Errorf("%s open: GOMAXPROCS = %d, want %d", target.Name(), got, want)
		}
		if err := target.Close(); err != nil {
			t.Fatalf("%s: Close: %v", target.Name(), err)
		}
		if got := runtime.GOMAXPROCS(0); got != def {
			t.Errorf("%s closed: GOMAXPROCS = %d, want the default %d", target.Name(), got, def)
		}
	}
}
