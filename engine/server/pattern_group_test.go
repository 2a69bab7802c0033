package server_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// TestPatternGroupThroughClient: two Go clients join one consumer group over "orders.>" against a
// broker with ACLs. Together they are dealt every partition of every matching topic, including one
// created while they run, and read each record once; the member whose principal may not consume
// orders.secret is never dealt a partition of it. Commits are per topic-partition: after the first
// member commits and leaves, the other reads its partitions from those commits on. A member over
// another pattern, or naming a topic, is refused.
func TestPatternGroupThroughClient(t *testing.T) {
	var rules server.Rules
	for _, s := range []string{"alice:consume:orders.eu", "alice:consume:orders.us", "alice:consume:orders.new.*",
		"alice:consume:group:g", "root:all:*", "root:all:group:*"} {
		r, err := server.ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	s, _ := servertest.Start(t, nil, func(o *server.Options) {
		o.Tokens = map[string]string{"ta": "alice", "tr": "root"}
		o.ACL = rules
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(token string) *client.Client {
		c, err := client.Dial(ctx, s.Addr().String(), client.WithAuthToken(token), client.WithLogger(servertest.Logger()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	root, alice := dial("tr"), dial("ta")
	produce := func(topic string, partition int32, values ...string) {
		t.Helper()
		p, err := root.Producer(topic, client.WithDurability(wire.DurabilityWritten), client.WithPartitioner(client.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			f, err := p.Send(ctx, client.Record{Value: []byte(v), Partition: partition})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"orders.eu", "orders.us", "orders.secret", "payments"} {
		if err := root.CreateTopic(ctx, client.TopicConfig{Name: name, Partitions: 2}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := alice.Subscribe(ctx, "orders.>", client.WithGroup("g"), client.WithAutoCommit(0))
	if err != nil {
		t.Fatal(err)
	}
	b, err := root.Subscribe(ctx, "orders.>", client.WithGroup("g"), client.WithAutoCommit(0))
	if err != nil {
		t.Fatal(err)
	}
	// settled waits until each member's assignment is what the broker deals it (topic-name order,
	// round-robin over the members reading each topic, one count across topics).
	settled := func(want []map[string][]int32, members ...*client.Consumer) {
		t.Helper()
		var got []map[string][]int32
		for deadline := time.Now().Add(30 * time.Second); ; {
			got = got[:0]
			for _, m := range members {
				got = append(got, m.AssignedTopics())
			}
			if slices.EqualFunc(got, want, func(x, y map[string][]int32) bool { return maps.EqualFunc(x, y, slices.Equal[[]int32]) }) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("assignments %v, want %v", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// orders.eu [a b], orders.secret [b], orders.us [a b]: alice may not consume orders.secret.
	settled([]map[string][]int32{
		{"orders.eu": {0}, "orders.us": {0}},
		{"orders.eu": {1}, "orders.secret": {0, 1}, "orders.us": {1}},
	}, a, b)

	// A matching topic created while the members run is dealt too.
	if err := root.CreateTopic(ctx, client.TopicConfig{Name: "orders.new.x", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	aHas := map[string][]int32{"orders.eu": {0}, "orders.new.x": {0}, "orders.us": {0}}
	settled([]map[string][]int32{aHas, {"orders.eu": {1}, "orders.new.x": {1}, "orders.secret": {0, 1}, "orders.us": {1}}}, a, b)

	var want []string
	for _, topic := range []string{"orders.eu", "orders.us", "orders.secret", "orders.new.x", "payments"} {
		for p := range int32(2) {
			v := fmt.Sprintf("%s/%d", topic, p)
			produce(topic, p, v)
			if topic != "payments" {
				want = append(want, v)
			}
		}
	}
	// take reads n records from c, checking that each names its topic and partition.
	take := func(c *client.Consumer, n int) []string {
		t.Helper()
		var got []string
		for len(got) < n {
			m, err := c.Next(ctx)
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			if v := fmt.Sprintf("%s/%d", m.Topic, m.Partition); v != strings.TrimSuffix(string(m.Value), "+") {
				t.Fatalf("record %q delivered as %s", m.Value, v)
			}
			got = append(got, string(m.Value))
		}
		return got
	}
	got := append(take(a, 3), take(b, 5)...)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the group read %q, want each of %q once", got, want)
	}

	// alice commits what she read, per topic-partition, and leaves: root is dealt everything and
	// reads alice's partitions from her commits, so only what is produced now.
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	both := []int32{0, 1}
	settled([]map[string][]int32{{"orders.eu": both, "orders.new.x": both, "orders.secret": both, "orders.us": both}}, b)
	want = want[:0]
	for topic, ps := range aHas {
		for _, p := range ps {
			v := fmt.Sprintf("%s/%d", topic, p)
			produce(topic, p, v+"+")
			want = append(want, v+"+")
		}
	}
	got = take(b, len(want))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after alice left, root read %q, want %q (alice's partitions from her commits)", got, want)
	}

	// One group, one pattern.
	for _, topic := range []string{"orders.*", "orders.eu"} {
		_, err := root.Subscribe(ctx, topic, client.WithGroup("g"))
		if !errors.Is(err, wire.CodeInvalidRequest) || !strings.Contains(err.Error(), "group g reads the pattern orders.>") {
			t.Fatalf("%s joining a group over orders.>: %v", topic, err)
		}
	}
}
