package maxprocs

import (
	"runtime"
	"testing"
)

// TestSetAddsSpare: Set runs the CPUs plus the loops plus Spare, and its restore function puts back
// what was there.
func TestSetAddsSpare(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // the variable unset for this test: Set applies its policy
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)
	restore := Set(3)
	if got := runtime.GOMAXPROCS(0); got != def+3+Spare {
		t.Errorf("GOMAXPROCS after Set(3) = %d, want %d (default %d + 3 loops + Spare %d)", got, def+3+Spare, def, Spare)
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != def {
		t.Errorf("GOMAXPROCS after restore = %d, want the default %d", got, def)
	}
}

// TestSetKeepsOperatorValue: with GOMAXPROCS in the environment, Set changes nothing.
func TestSetKeepsOperatorValue(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3")
	prev := runtime.GOMAXPROCS(3)
	defer runtime.GOMAXPROCS(prev)
	restore := Set(2)
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS after Set with GOMAXPROCS=3 in the environment = %d, want 3", got)
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS after restore = %d, want 3", got)
	}
}
