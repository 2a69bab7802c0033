package client

import (
	"errors"
	"slices"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

func TestAdminAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr, WithClientID("admin-test"))
	ctx := testCtx(t)

	if rtt, err := c.Ping(ctx); err != nil || rtt <= 0 {
		t.Fatalf("ping: %v %v", rtt, err)
	}
	createTopic(t, c, "orders", 3)
	createTopic(t, c, "audit", 1)
	if err := c.CreateTopic(ctx, TopicConfig{Name: "orders", Partitions: 3}); !errors.Is(err, wire.CodeTopicExists) {
		t.Fatalf("second create: %v, want CodeTopicExists", err)
	}
	topics, err := c.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tc := range topics {
		names = append(names, tc.Name)
	}
	if !slices.Equal(names, []string{"audit", "orders"}) {
		t.Fatalf("topics %v", names)
	}
	ti, err := c.DescribeTopic(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if ti.Config.Partitions != 3 || len(ti.Partitions) != 3 || ti.Partitions[2].EndOffset != 0 {
		t.Fatalf("describe: %+v", ti)
	}
	if _, err := c.DescribeTopic(ctx, "nope"); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("describe unknown: %v", err)
	}
	var pe *wire.ProtocolError
	if _, err := c.DescribeTopic(ctx, "nope"); !errors.As(err, &pe) || pe.Code != wire.CodeUnknownTopic {
		t.Fatalf("describe unknown: %v is not a *wire.ProtocolError", err)
	}
	if off, err := c.FetchOffset(ctx, "g", "orders", 0); err != nil || off != -1 {
		t.Fatalf("fetch offset before any commit: %d %v", off, err)
	}
	if err := c.CommitOffset(ctx, "g", "orders", 1, 42); !errors.Is(err, wire.CodeOffsetOutOfRange) {
		t.Fatalf("commit beyond the end of an empty partition: %v", err) // the end is 0
	}
	if err := c.CommitOffset(ctx, "g", "orders", 1, 0); err != nil {
		t.Fatal(err)
	}
	if off, err := c.FetchOffset(ctx, "g", "orders", 1); err != nil || off != 0 {
		t.Fatalf("fetch offset: %d %v", off, err)
	}
	groups, err := c.ListGroups(ctx)
	if err != nil || !slices.Equal(groups, []string{"g"}) {
		t.Fatalf("groups %v %v", groups, err)
	}
	gi, err := c.DescribeGroup(ctx, "g")
	// Every partition of a topic the group has a commit on is listed, in order; those without a
	// commit at the log start (0 here).
	if err != nil || len(gi.Offsets) != 3 || gi.Offsets[1].Committed != 0 || gi.Offsets[1].Partition != 1 ||
		gi.Offsets[0].Partition != 0 || gi.Offsets[2].Partition != 2 {
		t.Fatalf("describe group %+v %v", gi, err)
	}
	if _, err := c.DescribeGroup(ctx, "none"); !errors.Is(err, wire.CodeUnknownGroup) {
		t.Fatalf("describe unknown group: %v", err)
	}
	if err := c.DeleteTopic(ctx, "audit"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTopic(ctx, "audit"); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := c.Producer("audit"); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("producer for a deleted topic: %v", err)
	}
}
