package engine

import (
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// TestLocalMembersHandOverOnApplying: embedded members hand a partition back as they apply the
// assignment that takes it, so the next drain of the new member finds it.
func TestLocalMembersHandOverOnApplying(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "h", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	spec := wire.Subscribe{Topic: "h", Partition: -1, Group: "g"}
	a, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.drain()
	b.drain()
	if pa, pb := a.partitions(), b.partitions(); len(pa) != 1 || len(pb) != 1 {
		t.Fatalf("A holds %v and B %v, want one partition each", pa, pb)
	}
}
