package main

import (
	"testing"
)

// TestGroupDelete deletes a group with committed offsets and no members: it leaves the group list,
// and a second delete reports an unknown group.
func TestGroupDelete(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "jobs", "--partitions", "1")
	c := dialT(t, addr)
	if err := c.CommitOffset(testCtx(t), "workers", "jobs", 0, 3); err != nil {
		t.Fatal(err)
	}
	if r := ok(t, addr, nil, "group", "list"); r.stdout != "workers\n" {
		t.Fatalf("group list %q", r.stdout)
	}
	if r := ok(t, addr, nil, "group", "delete", "workers"); r.stdout != "deleted group workers\n" {
		t.Fatalf("group delete %q", r.stdout)
	}
	if r := ok(t, addr, nil, "group", "list"); r.stdout != "" {
		t.Fatalf("group list after delete %q", r.stdout)
	}
	oneErrorLine(t, sluice(t, addr, nil, "group", "delete", "workers"), "unknown group")
}
