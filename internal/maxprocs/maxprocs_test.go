package maxprocs

import (
	"runtime"
	"testing"
)

// TestSetAddsSpare: Set runs the CPUs plus Spare, and its restore function puts back what was there.
func TestSetAddsSpare(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // the variable unset for this test: Set applies its policy
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)
	restore := Set()
	if got := runtime.GOMAXPROCS(0); got != def+Spare {
		t.Errorf("GOMAXPROCS after Set = %d, want %d (default %d + Spare %d)", got, def+Spare, def, Spare)
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
	restore := Set()
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS after Set with GOMAXPROCS=3 in the environment = %d, want 3", got)
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS after restore = %d, want 3", got)
	}
}
