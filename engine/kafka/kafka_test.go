package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startBroker opens an engine in a temporary directory and a Kafka listener on a free loopback
// port, both closed when the test ends.
func startBroker(t testing.TB, mod func(*Options)) (*Server, *engine.Engine) {
	t.Helper()
	return startBrokerWith(t, nil, mod)
}

// startBrokerWith is startBroker with the engine's options changed by emod first.
func startBrokerWith(t testing.TB, emod func(*engine.Options), mod func(*Options)) (*Server, *engine.Engine) {
	t.Helper()
	dir := t.TempDir()
	eo := engine.Options{DataDir: dir, MemoryDir: filepath.Join(dir, "mem"), SegmentBytes: 16 << 20,
		AutoCreateTopics: true, Logger: quiet}
	if emod != nil {
		emod(&eo)
	}
	e, err := engine.Open(eo)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Addr: "127.0.0.1:0", Engine: e, Loops: 2, Logger: quiet}
	if mod != nil {
		mod(&o)
	}
	s, err := Start(o)
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		e.Close()
	})
	return s, e
}

func createTopic(t testing.TB, e *engine.Engine, name string, parts uint32) {
	t.Helper()
	if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: parts}); err != nil {
		t.Fatal(err)
	}
}

func newClient(t testing.TB, s *Server, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.Addr().String())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// testRecord is record i of a test run: a key that spreads records over partitions, a value that
// names it, a header, a timestamp.
func testRecord(topic string, i int) *kgo.Record {
	v := make([]byte, 24)
	binary.BigEndian.PutUint64(v, uint64(i))
	copy(v[8:], "value-of-the-record!")
	return &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("key-%d", i%97)), Value: v,
		Headers:   []kgo.RecordHeader{{Key: "h", Value: []byte{byte(i)}}},
		Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i))}
}

// produceAll produces n records synchronously in chunks and fails the test on any error.
func produceAll(t testing.TB, cl *kgo.Client, topic string, n int) map[int32][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	byPart := map[int32][]*kgo.Record{}
	const chunk = 10000
	for from := 0; from < n; from += chunk {
		recs := make([]*kgo.Record, 0, chunk)
		for i := from; i < min(n, from+chunk); i++ {
			recs = append(recs, testRecord(topic, i))
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		for _, r := range recs {
			byPart[r.Partition] = append(byPart[r.Partition], r)
		}
	}
	return byPart
}

// consumeAll reads n records of topic from the start of every partition.
func consumeAll(t testing.TB, s *Server, topic string, n int) map[int32][]*kgo.Record {
	t.Helper()
	cl := newClient(t, s, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := map[int32][]*kgo.Record{}
	total := 0
	for total < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", total, n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], r)
			total++
		})
	}
	return got
}

// sameRecords fails unless got holds want's records, per partition in order, byte-identical, at the
// offsets the producer was told.
func sameRecords(t testing.TB, want, got map[int32][]*kgo.Record) {
	t.Helper()
	for p, ws := range want {
		gs := got[p]
		if len(gs) != len(ws) {
			t.Fatalf("partition %d: %d records, want %d", p, len(gs), len(ws))
		}
		for i, w := range ws {
			g := gs[i]
			if g.Offset != w.Offset || string(g.Key) != string(w.Key) || string(g.Value) != string(w.Value) ||
				!g.Timestamp.Equal(w.Timestamp) || len(g.Headers) != 1 || g.Headers[0].Key != w.Headers[0].Key ||
				string(g.Headers[0].Value) != string(w.Headers[0].Value) {
				t.Fatalf("partition %d record %d: got offset %d key %q value %x ts %v headers %v; want offset %d key %q value %x ts %v headers %v",
					p, i, g.Offset, g.Key, g.Value, g.Timestamp, g.Headers, w.Offset, w.Key, w.Value, w.Timestamp, w.Headers)
			}
		}
	}
}

func TestKgoProduceConsumeSmall(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "small", 4)
	cl := newClient(t, s, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic("small"))
	want := produceAll(t, cl, "small", 2000)
	if len(want) != 4 {
		t.Fatalf("records went to %d partitions, want 4", len(want))
	}
	sameRecords(t, want, consumeAll(t, s, "small", 2000))
}

// acceptanceRecords is how many records the acceptance test moves through the listener: the
// issue's 1,000,000, or 100,000 under -short or the race detector.
func acceptanceRecords() int {
	if testing.Short() || raceEnabled {
		return 100_000
	}
	return 1_000_000
}

// TestKgoIdempotentAcksAll: kgo produces keyed records across 4 partitions, idempotent with
// acks=all, and reads them all back in per-partition order, byte-identical, at the offsets the
// producer was told.
func TestKgoIdempotentAcksAll(t *testing.T) {
	s, e := startBroker(t, nil)
	createTopic(t, e, "orders", 4)
	n := acceptanceRecords()
	start := time.Now()
	cl := newClient(t, s, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic("orders"))
	want := produceAll(t, cl, "orders", n)
	produced := time.Since(start)
	if len(want) != 4 {
		t.Fatalf("records went to %d partitions, want 4", len(want))
	}
	got := consumeAll(t, s, "orders", n)
	sameRecords(t, want, got)
	t.Logf("%d records: produced in %v, consumed in %v", n, produced, time.Since(start)-produced)
}
