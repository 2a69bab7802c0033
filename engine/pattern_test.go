package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

func TestMatchPattern(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"a.*.c", "a.b.c", true},
		{"a.*.c", "a.c", false},
		{"a.*.c", "a.b.x.c", false},
		{"a.*.c", "a.b.c.d", false},
		{"a.*", "a", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"*", "a", true},
		{"*", "a.b", false},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c.d", true},
		{"a.>", "a", false},
		{"a.>", "ab.c", false},
		{">", "a", true},
		{">", "a.b.c", true},
		{"*.>", "a", false},
		{"*.>", "a.b", true},
		{"a.b", "a.b", true},
		{"a.b", "a.bc", false},
		{"*.*", "a..", false},
		{"*", "", false},
	}
	for _, tc := range cases {
		if got := MatchPattern(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { MatchPattern("telemetry.*.temp.>", "telemetry.eu.temp.x.y") }); n != 0 {
		t.Errorf("MatchPattern allocates %v times", n)
	}
}

// patternEnv is an engine with topics to subscribe to by pattern, and helpers to produce to them and
// read what a subscription delivers as "topic/offset/value" strings.
type patternEnv struct {
	t *testing.T
	e *Engine
}

func newPatternEnv(t *testing.T, topics ...string) *patternEnv {
	pe := &patternEnv{t: t, e: openEngine(t, testOptions(t))}
	for _, name := range topics {
		pe.create(name, 2)
	}
	return pe
}

func (pe *patternEnv) create(name string, parts uint32) {
	pe.t.Helper()
	if _, err := pe.e.CreateTopic(wire.TopicConfig{Name: name, Partitions: parts}); err != nil {
		pe.t.Fatal(err)
	}
}

// produce appends one record per value to partition 0 of topic, each with headers h (name=value
// pairs) and timestamp 1000+i.
func (pe *patternEnv) produce(topic string, key string, h []string, values ...string) {
	pe.t.Helper()
	b := wire.NewBatchBuilder(4096)
	var hdrs []wire.Header
	for _, kv := range h {
		k, v, _ := strings.Cut(kv, "=")
		hdrs = append(hdrs, wire.Header{Key: []byte(k), Value: []byte(v)})
	}
	for i, v := range values {
		b.Append([]byte(key), []byte(v), hdrs, int64(1000+i))
	}
	batch, err := b.Build()
	if err != nil {
		pe.t.Fatal(err)
	}
	if _, _, err := pe.e.Publish(context.Background(), topic, 0, batch, wire.DurabilityWritten); err != nil {
		pe.t.Fatal(err)
	}
}

// read takes deliveries from l until it has n records, as "topic/partition/offset/value", sorted
// (the order across topics is not specified; within a partition it is checked here).
func (pe *patternEnv) read(l *Local, n int) []string {
	pe.t.Helper()
	var got []string
	last := map[*Partition]int64{}
	var it wire.RecordIter
	var r wire.Record
	for len(got) < n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d, err := l.Next(ctx)
		cancel()
		if err != nil {
			pe.t.Fatalf("after %v: %v", got, err)
		}
		for rest := d.Batches(); len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				pe.t.Fatal(err)
			}
			rest = rest[h.Size():]
			for it.Next(&r) {
				if prev, ok := last[d.Partition]; ok && r.Offset <= prev {
					pe.t.Fatalf("%s/%d: offset %d after %d", d.Partition.Topic().Config().Name, d.Partition.ID(), r.Offset, prev)
				}
				last[d.Partition] = r.Offset
				got = append(got, fmt.Sprintf("%s/%d/%d/%s", d.Partition.Topic().Config().Name, d.Partition.ID(), r.Offset, r.Value))
			}
		}
	}
	slices.Sort(got)
	return got
}

// quiet checks that l has nothing more to deliver within a short wait.
func (pe *patternEnv) quiet(l *Local) {
	pe.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if d, err := l.Next(ctx); err == nil {
		pe.t.Fatalf("unexpected delivery from %s/%d", d.Partition.Topic().Config().Name, d.Partition.ID())
	} else if !errors.Is(err, context.DeadlineExceeded) {
		pe.t.Fatal(err)
	}
}

func eq(t *testing.T, got []string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// TestPatternSubscribe: a pattern subscription reads the matching topics there at subscribe (from
// spec.Start) and those created while it lives (from their first record), never the others; a
// matched topic deleted under it ends its part only, and one created again under the name joins.
func TestPatternSubscribe(t *testing.T) {
	pe := newPatternEnv(t, "orders.eu", "orders.us", "orders", "payments.eu")
	pe.produce("orders.eu", "k", nil, "e0", "e1")
	pe.produce("orders", "k", nil, "o0")
	pe.produce("payments.eu", "k", nil, "p0")

	l, err := pe.e.SubscribeLocal(wire.Subscribe{Topic: "orders.>", Partition: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pe.produce("orders.us", "k", nil, "u0")
	eq(t, pe.read(l, 3), "orders.eu/0/0/e0", "orders.eu/0/1/e1", "orders.us/0/0/u0")

	// Created after the subscription: joins it, from its first record (produced before the
	// subscription's owner heard of the topic or not).
	pe.create("orders.asia", 3)
	pe.produce("orders.asia", "k", nil, "a0", "a1")
	pe.create("payments.us", 1)
	pe.produce("payments.us", "k", nil, "x")
	eq(t, pe.read(l, 2), "orders.asia/0/0/a0", "orders.asia/0/1/a1")

	// Deleted: its part ends; the others go on.
	if err := pe.e.DeleteTopic("orders.eu"); err != nil {
		t.Fatal(err)
	}
	pe.produce("orders.us", "k", nil, "u1")
	eq(t, pe.read(l, 1), "orders.us/0/1/u1")
	pe.create("orders.eu", 1)
	pe.produce("orders.eu", "k", nil, "again")
	eq(t, pe.read(l, 1), "orders.eu/0/0/again")
	pe.quiet(l)
}

// TestPatternStartLatest: spec.Start applies to the topics there at subscribe; a topic created later
// is read from its first record all the same.
func TestPatternStartLatest(t *testing.T) {
	pe := newPatternEnv(t, "t.a")
	pe.produce("t.a", "k", nil, "old")
	l, err := pe.e.SubscribeLocal(wire.Subscribe{Topic: "t.*", Partition: -1, Start: wire.StartLatest})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pe.create("t.b", 1)
	pe.produce("t.b", "k", nil, "b0")
	pe.produce("t.a", "k", nil, "new")
	eq(t, pe.read(l, 2), "t.a/0/1/new", "t.b/0/0/b0")
}

// TestPatternACL: topics the MayTopic hook refuses are left out, at subscribe and when created later,
// and nothing of them is delivered; the hook is asked with each matched topic's name.
func TestPatternACL(t *testing.T) {
	pe := newPatternEnv(t, "tenant.a.orders", "tenant.b.orders")
	pe.produce("tenant.a.orders", "k", nil, "a")
	pe.produce("tenant.b.orders", "k", nil, "b")
	var asked []string
	may := func(name string) bool {
		asked = append(asked, name)
		return strings.HasPrefix(name, "tenant.a.")
	}
	l, err := pe.e.SubscribeLocalWith(wire.Subscribe{Topic: "tenant.*.orders", Partition: -1}, LocalOptions{MayTopic: may})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	eq(t, pe.read(l, 1), "tenant.a.orders/0/0/a")
	pe.create("tenant.c.orders", 1)
	pe.produce("tenant.c.orders", "k", nil, "c")
	pe.produce("tenant.a.orders", "k", nil, "a1")
	eq(t, pe.read(l, 1), "tenant.a.orders/0/1/a1")
	pe.quiet(l)
	eq(t, asked, "tenant.a.orders", "tenant.b.orders", "tenant.c.orders")
}

// TestPatternRefused: malformed patterns, and what a pattern subscription does not take, are refused
// at subscribe with CodeInvalidRequest.
func TestPatternRefused(t *testing.T) {
	pe := newPatternEnv(t, "a.b")
	cases := []wire.Subscribe{
		{Topic: "a.*b", Partition: -1},
		{Topic: "a.>.b", Partition: -1},
		{Topic: "a..*", Partition: -1},
		{Topic: "*.", Partition: -1},
		{Topic: "a.*/x", Partition: -1},
		{Topic: "a.*", Partition: 0},
		{Topic: "a.*", Partition: -1, Group: "g", Mode: wire.ModeQueue},
		{Topic: "a.*", Partition: -1, Start: wire.StartOffset, StartValue: 3},
		{Topic: "a.*", Partition: -1, Filter: "value.temp >", FilterLang: wire.FilterCEL},
	}
	for _, spec := range cases {
		_, err := pe.e.SubscribeLocal(spec)
		if !errors.Is(err, wire.CodeInvalidRequest) {
			t.Errorf("%+v: %v, want invalid request", spec, err)
		}
	}
	if len(pe.e.patterns.subs) != 0 {
		t.Fatalf("%d refused pattern subscriptions still registered", len(pe.e.patterns.subs))
	}
}

// TestPatternClose: a closed pattern subscription leaves the pattern table, and a topic created
// afterwards does not reach it.
func TestPatternClose(t *testing.T) {
	pe := newPatternEnv(t)
	l, err := pe.e.SubscribeLocal(wire.Subscribe{Topic: ">", Partition: -1})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if len(pe.e.patterns.subs) != 0 {
		t.Fatal("closed pattern subscription still registered")
	}
	pe.create("x", 1)
}

// TestPatternGroupLocal: embedded members of a group over a pattern (SubscribeLocal with a Group)
// share the partitions of every matching topic, one created later included, each reading its share
// once; CommitPartition commits a delivery's topic-partition, and after a member leaves the other
// reads its partitions from those commits. A member over another pattern, or naming a topic, is
// refused and leaves nothing registered.
func TestPatternGroupLocal(t *testing.T) {
	pe := newPatternEnv(t, "o.a", "o.b", "p.a")
	ctx := context.Background()
	produce := func(topic string, p int32, v string) {
		t.Helper()
		b := wire.NewBatchBuilder(256)
		b.Append(nil, []byte(v), nil, 1000)
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := pe.e.Publish(ctx, topic, p, batch, wire.DurabilityWritten); err != nil {
			t.Fatal(err)
		}
	}
	spec := wire.Subscribe{Topic: "o.*", Partition: -1, Group: "g"}
	l1, err := pe.e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	l2, err := pe.e.SubscribeLocal(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for _, bad := range []wire.Subscribe{{Topic: "o.>", Partition: -1, Group: "g"}, {Topic: "o.a", Partition: -1, Group: "g"}} {
		if _, err := pe.e.SubscribeLocal(bad); !errors.Is(err, wire.CodeInvalidRequest) || !strings.Contains(err.Error(), "group g reads the pattern o.*") {
			t.Fatalf("%s joining a group over o.*: %v", bad.Topic, err)
		}
	}
	if n := len(pe.e.patterns.subs); n != 2 {
		t.Fatalf("%d pattern subscriptions registered, want the 2 members", n)
	}
	pe.create("o.c", 2)
	// Each member applies what it was told: the first hands back what the second's offers took.
	for _, l := range []*Local{l1, l2, l1, l2} {
		if _, err := l.Poll(); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range []string{"o.a", "o.b", "o.c", "p.a"} {
		for p := range int32(2) {
			produce(topic, p, fmt.Sprintf("%s/%d", topic, p))
		}
	}
	// o.a [l1 l2], o.b [l1 l2], o.c [l1 l2], one count across topics: l1 every partition 0.
	eq(t, pe.read(l1, 3), "o.a/0/0/o.a/0", "o.b/0/0/o.b/0", "o.c/0/0/o.c/0")
	eq(t, pe.read(l2, 3), "o.a/1/0/o.a/1", "o.b/1/0/o.b/1", "o.c/1/0/o.c/1")
	pe.quiet(l1)
	for _, topic := range []string{"o.a", "o.b", "o.c"} {
		if err := l1.CommitPartition(ctx, pe.e.TopicByName(topic).Partition(0), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := l1.Commit(ctx, 0, 1); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("Commit of a pattern member: %v, want invalid request (CommitPartition)", err)
	}
	l1.Close()
	produce("o.b", 0, "o.b/0+")
	eq(t, pe.read(l2, 1), "o.b/0/1/o.b/0+")
	pe.quiet(l2)
}
