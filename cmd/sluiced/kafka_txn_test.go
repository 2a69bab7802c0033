package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
)

// pythonReadCommittedScript consumes a topic's partitions from the start with confluent-kafka at
// isolation.level=read_committed until every value named on the command line has arrived, reads on
// a little longer, and prints the values read, one a line, then "ok".
const pythonReadCommittedScript = `
import sys, time
from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, parts, want = sys.argv[1], sys.argv[2], int(sys.argv[3]), set(sys.argv[4].split(","))
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-rc", "enable.auto.commit": False,
              "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
c.assign([TopicPartition(topic, p, 0) for p in range(parts)])
got = []
deadline = time.time() + 60
while not want.issubset(got) and time.time() < deadline:
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        print("error: %s" % m.error())
        sys.exit(1)
    got.append(m.value().decode())
end = time.time() + 1.5
while time.time() < end:
    m = c.poll(0.2)
    if m is not None and not m.error():
        got.append(m.value().decode())
c.close()
for v in got:
    print(v)
print("ok")
`

// TestConfluentKafkaReadCommitted: transactions produced by Sluice's Go client over two
// partitions, one committed, one aborted, then one more committed, are read by confluent-kafka
// (librdkafka) at isolation.level=read_committed through the Kafka listener: every committed
// record once, none of the aborted ones.
func TestConfluentKafkaReadCommitted(t *testing.T) {
	py := needTool(t, systemPython, "python3 (with python3-confluent-kafka)")
	b, kafka := startKafkaBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "rc", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx := c.NewTransaction()
	produce := func(part int32, vals ...string) {
		t.Helper()
		recs := make([]client.Record, len(vals))
		for i, v := range vals {
			recs[i] = client.Record{Value: []byte(v)}
		}
		if err := tx.Produce(ctx, "rc", part, recs...); err != nil {
			t.Fatal(err)
		}
	}
	end := func(commit bool) {
		t.Helper()
		var err error
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Abort(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	produce(0, "c1", "c2")
	produce(1, "c3")
	end(true)
	produce(0, "x1")
	produce(1, "x2", "x3")
	end(false)
	produce(0, "c4")
	produce(1, "c5")
	end(true)

	committed := []string{"c1", "c2", "c3", "c4", "c5"}
	script := filepath.Join(t.TempDir(), "rc.py")
	if err := os.WriteFile(script, []byte(pythonReadCommittedScript), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, 2*time.Minute, nil, py, script, kafka, "rc", "2", strings.Join(committed, ","))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) == 0 || lines[len(lines)-1] != "ok" {
		t.Fatalf("confluent-kafka: %s", out)
	}
	got := lines[:len(lines)-1]
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	for _, v := range committed {
		if seen[v] != 1 {
			t.Errorf("committed record %s read %d times", v, seen[v])
		}
	}
	if len(got) != len(committed) {
		t.Errorf("read %q, want exactly the committed %q", got, committed)
	}
	for v := range seen {
		if strings.HasPrefix(v, "x") {
			t.Errorf("aborted record %s read", v)
		}
	}
}

// pythonTxnProducerScript produces with confluent-kafka's transactional producer: a transaction
// over two partitions committed, one aborted, one more committed; then prints "ok".
const pythonTxnProducerScript = `
import sys
from confluent_kafka import Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "py-txn", "acks": "all"})
p.init_transactions(30)
for commit, vals in ((True, ["k1", "k2"]), (False, ["y1", "y2"]), (True, ["k3", "k4"])):
    p.begin_transaction()
    for i, v in enumerate(vals):
        p.produce(topic, value=v.encode(), partition=i % 2)
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)
print("ok")
`

// TestConfluentKafkaTransactionalProducer: confluent-kafka's (librdkafka's) transactional producer
// commits, aborts and commits transactions over two partitions through the Kafka listener; Sluice's
// Go client, whose consumers read committed data only, reads every committed record once and none
// of the aborted ones.
func TestConfluentKafkaTransactionalProducer(t *testing.T) {
	py := needTool(t, systemPython, "python3 (with python3-confluent-kafka)")
	b, kafka := startKafkaBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "ptx", 2)
	script := filepath.Join(t.TempDir(), "ptx.py")
	if err := os.WriteFile(script, []byte(pythonTxnProducerScript), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, 2*time.Minute, nil, py, script, kafka, "ptx")
	if strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("confluent-kafka: %s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for p := range int32(2) {
		cons, err := c.Subscribe(ctx, "ptx", client.WithPartition(p), client.WithStartEarliest())
		if err != nil {
			t.Fatal(err)
		}
		for {
			short, scancel := context.WithTimeout(ctx, time.Second)
			m, err := cons.Next(short)
			scancel()
			if err != nil {
				break // nothing more within the wait
			}
			got = append(got, string(m.Value))
		}
		cons.Close(ctx)
	}
	sort.Strings(got)
	if want := []string{"k1", "k2", "k3", "k4"}; !slices.Equal(got, want) {
		t.Fatalf("native consumer read %q, want %q", got, want)
	}
}
