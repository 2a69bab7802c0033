package client

import (
	"errors"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// TestPatternResumesAfterBrokerRestart: a pattern consumer reads every matching topic-partition's
// offsets exactly once and in order, each record naming its topic, across a broker restart (after
// which it subscribes the pattern again and skips what it handed out) and a matching topic created
// after the restart; a topic that does not match is never read.
func TestPatternResumesAfterBrokerRestart(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "p.a", 3)
	createTopic(t, c, "p.b", 1)
	createTopic(t, c, "q.a", 1)
	ctx := testCtx(t)
	producer := func(topic string) *Producer {
		p, err := c.Producer(topic)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	pa, pb, qa := producer("p.a"), producer("p.b"), producer("q.a")
	produceN(t, pa, 0, 200)
	produceN(t, pb, 0, 100)
	produceN(t, qa, 0, 50)
	cons, err := c.Subscribe(ctx, "p.*", WithStartEarliest(), WithCredit(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	type tp struct {
		topic     string
		partition int32
	}
	next := map[tp]int64{}
	read := func(n int) {
		t.Helper()
		for range n {
			m, err := cons.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			k := tp{m.Topic, m.Partition}
			if m.Topic != "p.a" && m.Topic != "p.b" && m.Topic != "p.c" {
				t.Fatalf("record of %s", m.Topic)
			}
			if m.Offset != next[k] {
				t.Fatalf("%s/%d: offset %d, want %d", m.Topic, m.Partition, m.Offset, next[k])
			}
			next[k]++
		}
	}
	read(150)
	b.restart()
	produceN(t, pa, 200, 100) // waits for the reconnection
	createTopic(t, c, "p.c", 2)
	produceN(t, producer("p.c"), 0, 50)
	read(300)
	total := map[string]int64{}
	for k, n := range next {
		total[k.topic] += n
	}
	if total["p.a"] != 300 || total["p.b"] != 100 || total["p.c"] != 50 {
		t.Fatalf("records per topic %v", total)
	}
	if _, err := c.Subscribe(ctx, "p.*", WithPartition(0)); !errors.Is(err, ErrOptions) {
		t.Fatalf("pattern with a partition: %v", err)
	}
	if _, err := c.Subscribe(ctx, "p.*.", WithStartEarliest()); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("malformed pattern: %v", err)
	}
}

// TestPatternTopicRecreated: a matched topic deleted under a pattern consumer ends its part, the
// others go on, and the topic created again under the name is read from its first record (its
// partition's high watermark below the consumer's position restarts it).
func TestPatternTopicRecreated(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "r.a", 1)
	createTopic(t, c, "r.b", 1)
	ctx := testCtx(t)
	pa, err := c.Producer("r.a")
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, pa, 0, 50)
	cons, err := c.Subscribe(ctx, "r.>", WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	next := func() *Message {
		t.Helper()
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for i := range 50 {
		if m := next(); m.Topic != "r.a" || m.Offset != int64(i) {
			t.Fatalf("record %d: %s/%d", i, m.Topic, m.Offset)
		}
	}
	if err := c.DeleteTopic(ctx, "r.a"); err != nil {
		t.Fatal(err)
	}
	pb, err := c.Producer("r.b")
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, pb, 0, 1)
	if m := next(); m.Topic != "r.b" || m.Offset != 0 {
		t.Fatalf("after the delete: %s/%d", m.Topic, m.Offset)
	}
	createTopic(t, c, "r.a", 1)
	pa2, err := c.Producer("r.a")
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, pa2, 0, 3)
	for i := range 3 {
		if m := next(); m.Topic != "r.a" || m.Offset != int64(i) {
			t.Fatalf("recreated record %d: %s/%d", i, m.Topic, m.Offset)
		}
	}
}

// TestPatternGroupResumesAfterBrokerRestart: a member of a group over a pattern commits per
// topic-partition; after a broker restart it subscribes again and every topic-partition resumes at
// its commit (each offset read exactly once, in order, each record naming its topic), a matching
// topic created after the restart is assigned and read, and a topic that does not match never is.
func TestPatternGroupResumesAfterBrokerRestart(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "g.a", 2)
	createTopic(t, c, "g.b", 1)
	createTopic(t, c, "h.a", 1)
	ctx := testCtx(t)
	producer := func(topic string) *Producer {
		p, err := c.Producer(topic)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	produceN(t, producer("g.a"), 0, 100)
	produceN(t, producer("g.b"), 0, 100)
	produceN(t, producer("h.a"), 0, 10)
	cons, err := c.Subscribe(ctx, "g.*", WithGroup("pg"), WithAutoCommit(0), WithCredit(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	type tp struct {
		topic     string
		partition int32
	}
	next := map[tp]int64{}
	read := func(n int) {
		t.Helper()
		for range n {
			m, err := cons.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			k := tp{m.Topic, m.Partition}
			if m.Topic != "g.a" && m.Topic != "g.b" && m.Topic != "g.c" {
				t.Fatalf("record of %s", m.Topic)
			}
			if m.Offset != next[k] {
				t.Fatalf("%s/%d: offset %d, want %d", m.Topic, m.Partition, m.Offset, next[k])
			}
			next[k]++
		}
	}
	read(150)
	if err := cons.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	b.restart()
	createTopic(t, c, "g.c", 1) // waits for the reconnection
	produceN(t, producer("g.c"), 0, 50)
	read(100)
	total := map[string]int64{}
	for k, n := range next {
		total[k.topic] += n
	}
	if total["g.a"] != 100 || total["g.b"] != 100 || total["g.c"] != 50 {
		t.Fatalf("records per topic %v", total)
	}
	if err := cons.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for k, n := range next {
		if got := b.eng.CommittedOffset("pg", k.topic, k.partition); got != n {
			t.Errorf("%s/%d: committed %d, want %d", k.topic, k.partition, got, n)
		}
	}
}
