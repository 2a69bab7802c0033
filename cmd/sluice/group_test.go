package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/client"
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

// TestGroupDescribeShowsClients (issue 16): the built `sluice group describe` prints each member's
// client id and address beside its partitions.
func TestGroupDescribeShowsClients(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "jobs", "--partitions", "2")
	for _, id := range []string{"alpha", "beta"} {
		c, err := client.Dial(testCtx(t), addr, client.WithLogger(quiet), client.WithClientID(id))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Subscribe(testCtx(t), "jobs", client.WithGroup("workers")); err != nil {
			t.Fatal(err)
		}
	}
	r := binRun(t, addr, nil, "group", "describe", "workers")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^MEMBER\s+TOPIC\s+PARTITIONS\s+CLIENT\s+ADDRESS\s*$`).MatchString(r.stdout) {
		t.Errorf("no CLIENT and ADDRESS columns:\n%s", r.stdout)
	}
	for _, m := range [][2]string{{"workers-1", "alpha"}, {"workers-2", "beta"}} {
		line := `(?m)^` + m[0] + `\s+jobs\s+\S+\s+` + m[1] + `\s+127\.0\.0\.1:\d+\s*$`
		if !regexp.MustCompile(line).MatchString(r.stdout) {
			t.Errorf("member %s of client %s not shown with its address:\n%s", m[0], m[1], r.stdout)
		}
	}
}
