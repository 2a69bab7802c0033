package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// These tests drive the Kafka listener of a real sluiced with Kafka clients written elsewhere:
// kcat (librdkafka), kafka-python and confluent-kafka-python (librdkafka again, through Python).
// .ci/run installs them (Debian packages kcat, python3-kafka, python3-confluent-kafka); a missing
// one fails the test with what to install, it is never skipped.

// systemPython is the interpreter the Debian packages install their modules for.
const systemPython = "/usr/bin/python3"

func needTool(t *testing.T, path, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s (.ci/run does)", path, pkg)
	}
	return p
}

// startKafkaBroker starts sluiced with its Kafka listener on a free loopback port and returns the
// broker and that address.
func startKafkaBroker(t *testing.T, data string, extra ...string) (*broker, string) {
	t.Helper()
	kafka := freePort(t)
	b := startBroker(t, data, append([]string{"--kafka-listen", kafka}, extra...)...)
	waitListening(t, kafka)
	return b, kafka
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runTool runs a command with a deadline and fails the test with its output if it fails.
func runTool(t *testing.T, timeout time.Duration, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, tail(stdout.String()), tail(stderr.String()))
	}
	return stdout.Bytes()
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// kcatRecord is one record as kcat's format '%p\t%o\t%k\t%s\t%h\n' prints it.
type kcatRecord struct {
	partition int32
	offset    int64
	key       string
	value     string
	headers   string
}

func parseKcat(t *testing.T, out []byte) []kcatRecord {
	t.Helper()
	var recs []kcatRecord
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			t.Fatalf("kcat line %q: want 5 tab-separated fields", line)
		}
		p, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("kcat line %q: partition or offset not a number", line)
		}
		recs = append(recs, kcatRecord{int32(p), o, f[2], f[3], f[4]})
	}
	return recs
}

// TestKcatProducesAndConsumes: kcat (librdkafka) produces a file of keyed lines with headers and
// consumes them back to the end (-C -e); every line comes back once, in per-partition order, with its
// key and headers; Sluice's own client reads the same records with the same bytes and offsets; and
// records produced by Sluice's client are read by kcat.
func TestKcatProducesAndConsumes(t *testing.T) {
	kcat := needTool(t, "kcat", "kcat")
	const n = 2000
	b, kafka := startKafkaBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "lines", 3)

	var in bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "k%d\tline-%d\n", i%17, i)
	}
	path := filepath.Join(t.TempDir(), "lines.txt")
	if err := os.WriteFile(path, in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, time.Minute, nil, kcat, "-b", kafka, "-P", "-t", "lines", "-K", "\t", "-H", "origin=kcat",
		"-H", "run=1", "-X", "acks=all", "-z", "lz4", "-l", path)

	out := runTool(t, time.Minute, nil, kcat, "-b", kafka, "-C", "-t", "lines", "-o", "beginning", "-e",
		"-f", `%p\t%o\t%k\t%s\t%h\n`)
	recs := parseKcat(t, out)
	if len(recs) != n {
		t.Fatalf("kcat consumed %d records, want %d", len(recs), n)
	}
	seen := make([]bool, n)
	lastOff := map[int32]int64{}
	lastIdx := map[string]int{}
	for _, r := range recs {
		i, err := strconv.Atoi(strings.TrimPrefix(r.value, "line-"))
		if err != nil || i < 0 || i >= n || r.key != fmt.Sprintf("k%d", i%17) {
			t.Fatalf("record %+v was not produced", r)
		}
		if seen[i] {
			t.Fatalf("record %d consumed twice", i)
		}
		seen[i] = true
		if r.headers != "origin=kcat,run=1" {
			t.Fatalf("record %d headers %q, want origin=kcat,run=1", i, r.headers)
		}
		if last, ok := lastOff[r.partition]; ok && r.offset != last+1 {
			t.Fatalf("partition %d: offset %d after %d", r.partition, r.offset, last)
		}
		lastOff[r.partition] = r.offset
		if last, ok := lastIdx[r.key]; ok && i <= last {
			t.Fatalf("key %s: line %d after %d", r.key, i, last)
		}
		lastIdx[r.key] = i
	}

	// The same records through the native protocol: same partitions, offsets, keys, values, headers.
	byPos := map[[2]int64]kcatRecord{}
	for _, r := range recs {
		byPos[[2]int64{int64(r.partition), r.offset}] = r
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cons, err := c.Subscribe(ctx, "lines", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	for got := 0; got < n; got++ {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatalf("native consumer after %d of %d: %v", got, n, err)
		}
		r, ok := byPos[[2]int64{int64(m.Partition), m.Offset}]
		var hs []string
		m.Headers(func(k, v []byte) bool { hs = append(hs, string(k)+"="+string(v)); return true })
		if !ok || string(m.Key) != r.key || string(m.Value) != r.value || strings.Join(hs, ",") != r.headers {
			t.Fatalf("native %d/%d key %q value %q headers %v; kcat saw %+v", m.Partition, m.Offset, m.Key, m.Value, hs, r)
		}
	}

	// Sluice's producer, kcat's consumer.
	createTopic(t, c, "native", 2)
	produceN(t, c, "native", 500, wire.DurabilityWritten)
	out = runTool(t, time.Minute, nil, kcat, "-b", kafka, "-C", "-t", "native", "-o", "beginning", "-e",
		"-f", `%p\t%o\t%k\t%s\t%h\n`)
	recs = parseKcat(t, out)
	if len(recs) != 500 {
		t.Fatalf("kcat read %d records produced natively, want 500", len(recs))
	}
	vals := make([]string, 0, len(recs))
	for _, r := range recs {
		i, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(r.value, "value-"), "-", 2)[0])
		if err != nil || r.value != valueOf(i) || r.key != keyOf(i) {
			t.Fatalf("kcat read %+v: not a record the native producer sent", r)
		}
		vals = append(vals, r.value)
	}
	sort.Strings(vals)
	for i := 1; i < len(vals); i++ {
		if vals[i] == vals[i-1] {
			t.Fatalf("kcat read %q twice", vals[i])
		}
	}
}

// pythonGroupScript produces, consumes with a consumer group and commits, then checks that a second
// consumer of the same group resumes after the commit, with either Python client. It prints "ok"
// and exits 0 when every check holds.
const pythonGroupScript = `
import sys, time
lib, bootstrap, topic, group = sys.argv[1:5]
N, M = 1000, 200

def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)

def check_order(recs):
    last = {}
    for p, off, k, v in recs:
        if p in last and off <= last[p]:
            fail("partition %d offset %d after %d" % (p, off, last[p]))
        last[p] = off

if lib == "kafka-python":
    from kafka import KafkaProducer, KafkaConsumer
    def produce(lo, hi):
        p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for i in range(lo, hi):
            p.send(topic, key=b"k%d" % (i % 7), value=b"v%d" % i)
        p.flush(60)
        p.close()
    def consume(want):
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                          enable_auto_commit=False, consumer_timeout_ms=20000)
        recs = []
        deadline = time.time() + 60
        while len(recs) < want and time.time() < deadline:
            for tp, msgs in c.poll(timeout_ms=1000).items():
                for m in msgs:
                    recs.append((m.partition, m.offset, m.key, m.value))
        c.commit()
        extra = c.poll(timeout_ms=1500)
        c.close()
        if sum(len(v) for v in extra.values()):
            fail("records beyond the %d expected" % want)
        return recs
else:
    from confluent_kafka import Producer, Consumer
    def produce(lo, hi):
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
        errs = []
        for i in range(lo, hi):
            p.produce(topic, key=b"k%d" % (i % 7), value=b"v%d" % i,
                      on_delivery=lambda err, msg: errs.append(err) if err else None)
            p.poll(0)
        if p.flush(60) != 0 or errs:
            fail("produce: %r" % errs[:3])
    def consume(want):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe([topic])
        recs = []
        deadline = time.time() + 60
        while len(recs) < want and time.time() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                fail("consume: %s" % m.error())
            recs.append((m.partition(), m.offset(), m.key(), m.value()))
        c.commit(asynchronous=False)
        end = time.time() + 1.5
        while time.time() < end:
            m = c.poll(0.2)
            if m is not None and not m.error():
                fail("record beyond the %d expected: %r" % (want, m.value()))
        c.close()
        return recs

produce(0, N)
first = consume(N)
if sorted(v for _, _, _, v in first) != sorted(b"v%d" % i for i in range(N)):
    fail("first consumer read %d records, not the %d produced" % (len(first), N))
check_order(first)
for p, off, k, v in first:
    if k != b"k%d" % (int(v[1:]) % 7):
        fail("key %r for value %r" % (k, v))
produce(N, N + M)
second = consume(M)
if sorted(v for _, _, _, v in second) != sorted(b"v%d" % i for i in range(N, N + M)):
    fail("the group did not resume after its commit: read %d records" % len(second))
check_order(second)
print("ok")
`

func runPythonGroup(t *testing.T, lib string) {
	py := needTool(t, systemPython, "python3 (with python3-kafka and python3-confluent-kafka)")
	b, kafka := startKafkaBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "py", 3)
	script := filepath.Join(t.TempDir(), "group.py")
	if err := os.WriteFile(script, []byte(pythonGroupScript), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, 3*time.Minute, nil, py, script, lib, kafka, "py", "py-group")
	if !bytes.HasSuffix(bytes.TrimSpace(out), []byte("ok")) {
		t.Fatalf("%s: %s", lib, out)
	}
	// The group's commits are in the broker's offset store, visible to native tools.
	info, err := c.DescribeGroup(context.Background(), "py-group")
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	for _, o := range info.Offsets {
		if o.Topic == "py" {
			committed += o.Committed
		}
	}
	if committed != 1200 {
		t.Fatalf("group py-group: committed offsets sum to %d, want 1200 (%+v)", committed, info)
	}
}

func TestKafkaPythonGroupResumes(t *testing.T) { runPythonGroup(t, "kafka-python") }

func TestConfluentKafkaGroupResumes(t *testing.T) { runPythonGroup(t, "confluent-kafka") }
