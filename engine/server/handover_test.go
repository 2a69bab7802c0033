package server

import (
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// TestGroupHandOverOverTheWire: when B joins, A is told at once to give a partition up and B gets
// none; A's Commit of offset -1 (the hand-back) is answered with an empty response, and only then is B
// assigned the partition, well before the revoke timeout.
func TestGroupHandOverOverTheWire(t *testing.T) {
	s, e := startServer(t, nil)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "ho", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	assign := func(r *rawConn, who string) wire.Assign {
		t.Helper()
		var as wire.Assign
		if f := r.mustNext(); f.Op != wire.OpAssign || as.Decode(f.Body) != nil {
			t.Fatalf("%s: frame %v, want an Assign", who, f.Op)
		}
		return as
	}
	a := dial(t, s)
	a.hello()
	a.expectReply(a.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 1, Topic: "ho", Partition: -1, Group: "g", Credit: 1 << 20}), nil)
	if as := assign(a, "A"); len(as.Partitions) != 2 {
		t.Fatalf("A's first assignment %+v", as)
	}
	b := dial(t, s)
	b.hello()
	b.expectReply(b.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 1, Topic: "ho", Partition: -1, Group: "g", Credit: 1 << 20}), nil)
	if as := assign(b, "B"); len(as.Partitions) != 0 {
		t.Fatalf("B's first assignment %+v, want nothing while A still holds the partition", as)
	}
	as := assign(a, "A")
	if len(as.Partitions) != 1 {
		t.Fatalf("A's second assignment %+v, want one partition", as)
	}
	moved := 1 - as.Partitions[0].Partition
	start := time.Now()
	a.expectReply(a.send(wire.OpCommit, 0, &wire.Commit{Group: "g", Topic: "ho", Partition: moved, Offset: -1}), nil)
	as = assign(b, "B")
	if len(as.Partitions) != 1 || as.Partitions[0].Partition != moved || as.Partitions[0].Offset != 0 {
		t.Fatalf("B's assignment after the hand-back %+v, want partition %d at 0", as, moved)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("B was assigned the partition %v after the hand-back: the revoke timeout, not the hand-back, gave it", d)
	}
}
