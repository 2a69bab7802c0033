package targets

import (
	"context"
	"runtime"
	"testing"

	"github.com/sluicemq/sluice/bench"
	"github.com/sluicemq/sluice/internal/maxprocs"
)

// TestInProcessTargetsRunSpareProcs: while an in-process target (embedded, tcp) is open the process
// runs at the broker's GOMAXPROCS (the CPUs plus maxprocs.Spare), and after Close at the default again,
// so the floor, run in the same process, runs as before.
func TestInProcessTargetsRunSpareProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // unset: the policy applies
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)

	opts := Options{Dir: t.TempDir(), Logger: quiet}
	for _, target := range []bench.Target{NewEmbedded(opts), NewTCP(opts)} {
		cfg := shortRun(bench.DurabilityWritten).WithDefaults()
		if err := target.Open(context.Background(), cfg); err != nil {
			t.Fatalf("%s: Open: %v", target.Name(), err)
		}
		if got := runtime.GOMAXPROCS(0); got != def+maxprocs.Spare {
			t.Errorf("%s open: GOMAXPROCS = %d, want %d + %d spare", target.Name(), got, def, maxprocs.Spare)
		}
		if err := target.Close(); err != nil {
			t.Fatalf("%s: Close: %v", target.Name(), err)
		}
		if got := runtime.GOMAXPROCS(0); got != def {
			t.Errorf("%s closed: GOMAXPROCS = %d, want the default %d", target.Name(), got, def)
		}
	}
}
