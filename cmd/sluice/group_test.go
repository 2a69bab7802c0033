package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// TestGroupDescribeShowsOutOfRange: a committed offset beyond the partition's end (stored before the
// broker refused such commits) is shown as out of range, not as a lag of 0 (issue 11, item 3).
func TestGroupDescribeShowsOutOfRange(t *testing.T) {
	var b strings.Builder
	writeGroup(&b, &wire.GroupInfo{Name: "g", Offsets: []wire.GroupOffset{
		{Topic: "t", Partition: 0, Committed: 1010, End: 20},
		{Topic: "t", Partition: 1, Committed: 5, End: 20},
	}})
	out := b.String()
	if !regexp.MustCompile(`(?m)^\s*t\s+0\s+1010\s+20\s+out of range\s*$`).MatchString(out) {
		t.Errorf("partition 0 not shown out of range:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^\s*total\s+15\s*$`).MatchString(out) {
		t.Errorf("total lag is not partition 1's 15:\n%s", out)
	}
}

// TestGroupDelete deletes a group with committed offsets and no members: it leaves the group list,
// and a second delete reports an unknown group.
func TestGroupDelete(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "jobs", "--partitions", "1")
	c := dialT(t, addr)
	if err := c.CommitOffset(testCtx(t), "workers", "jobs", 0, 0); err != nil {
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
