package engine

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// A partition is marked as holding TTL records only by a record with wire.HeaderTTL (other headers,
// the other scheduling headers, compressed batches included), and the mark is a file, so stream
// deliveries from a partition that never took one stay in place and allocation-free.
func TestTTLMarkOnlyWithTTLHeader(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "a", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := e.TopicByName("a").Partition(0)
	produce := func(codec wire.Codec, hdrs ...wire.Header) {
		t.Helper()
		b := wire.NewBatchBuilder(1024)
		b.SetCompression(codec)
		b.Append([]byte("k"), []byte("v"), hdrs, 1)
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	h := func(k, v string) wire.Header { return wire.Header{Key: []byte(k), Value: []byte(v)} }
	produce(wire.CodecNone)
	produce(wire.CodecNone, h("trace", "x"), h(wire.HeaderPriority, "9"), h(wire.HeaderDeliverAt, "5"))
	produce(wire.CodecGzip, h("sluice-ttlx", "1"))
	if p.ttlRecords.Load() {
		t.Fatal("marked without a TTL header")
	}
	if _, err := os.Stat(p.ttlMark); !os.IsNotExist(err) {
		t.Fatalf("mark file: %v", err)
	}
	produce(wire.CodecGzip, h("a", "b"), h(wire.HeaderTTL, "1000"))
	if !p.ttlRecords.Load() {
		t.Fatal("not marked after a compressed batch with a TTL header")
	}
	if _, err := os.Stat(p.ttlMark); err != nil {
		t.Fatalf("mark file: %v", err)
	}
}

// ReadSchedule takes each header's first valid occurrence and ignores values out of range.
func TestReadSchedule(t *testing.T) {
	b := wire.NewBatchBuilder(1024)
	hs := func(kv ...string) []wire.Header {
		var out []wire.Header
		for i := 0; i < len(kv); i += 2 {
			out = append(out, wire.Header{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
		}
		return out
	}
	cases := []struct {
		hdrs []wire.Header
		want wire.Schedule
		has  bool
	}{
		{nil, wire.Schedule{}, false},
		{hs("x", "1"), wire.Schedule{}, false},
		{hs(wire.HeaderTTL, "30000", wire.HeaderDeliverAt, "1700000000000", wire.HeaderPriority, "7"), wire.Schedule{TTLMs: 30000, DeliverAtMs: 1700000000000, Priority: 7}, true},
		{hs(wire.HeaderPriority, "10", wire.HeaderTTL, "0", wire.HeaderDeliverAt, "-5"), wire.Schedule{}, false},
		{hs(wire.HeaderPriority, "3", wire.HeaderPriority, "9"), wire.Schedule{Priority: 3}, true},
		{hs(wire.HeaderTTL, "1e3"), wire.Schedule{}, false},
	}
	var it wire.RecordIter
	var r wire.Record
	for i, c := range cases {
		b.Reset()
		b.Append(nil, []byte("v"), c.hdrs, 0)
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := it.Reset(batch); err != nil || !it.Next(&r) {
			t.Fatal(err)
		}
		if got, has := wire.ReadSchedule(&r); got != c.want || has != c.has {
			t.Errorf("case %d: got %+v %v, want %+v %v", i, got, has, c.want, c.has)
		}
	}
}

// In a topic with a TTL every batch is staged, and a stored batch that cannot be decompressed is
// still marked for the dead-letter topic, never staged nor left to stall the queue; a compressed
// batch with priority headers is staged and ordered like an uncompressed one.
func TestScheduledQueueUndecodableAndCompressed(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1, TTLMs: 3600_000}); err != nil {
		t.Fatal(err)
	}
	p := e.TopicByName("q").Partition(0)
	appendBatch := func(codec wire.Codec, prios ...string) {
		t.Helper()
		b := wire.NewBatchBuilder(1024)
		b.SetCompression(codec)
		for _, prio := range prios {
			var hdrs []wire.Header
			if prio != "" {
				hdrs = []wire.Header{{Key: []byte(wire.HeaderPriority), Value: []byte(prio)}}
			}
			b.Append(nil, []byte("v"), hdrs, time.Now().UnixMilli())
		}
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	appendBatch(wire.CodecNone, "", "", "")    // 0..2
	appendRaw(t, e, "q", corruptBatch(t, 3))   // 3..5
	appendBatch(wire.CodecGzip, "0", "9", "4") // 6..8
	l, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got []int64
	for len(got) < 6 {
		_, offs, _, ok := takeRecords(t, l, 5*time.Second)
		if !ok {
			break
		}
		got = append(got, offs...)
	}
	if !slices.Equal(got, []int64{0, 1, 2, 7, 8, 6}) {
		t.Fatalf("delivered %v, want 0..2, then 7, 8, 6 by priority", got)
	}
	if err := l.Ack(0, got...); err != nil {
		t.Fatal(err)
	}
	if r := dlqRecords(t, e, "q", 1)[0]; !strings.HasPrefix(header(r, HeaderDLQReason), "undecodable") {
		t.Fatalf("dead letter reason %q", header(r, HeaderDLQReason))
	}
	waitCommitted(t, e, "q", 9)
}

// A member waiting on a queue whose only record is held by a deliver-at time is woken when the time
// comes (by the janitor's sweep), without asking again.
func TestDelayedRecordWakesMember(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "q", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	l, err := e.SubscribeLocal(queueSpec(time.Minute, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	at := time.Now().Add(300 * time.Millisecond)
	b := wire.NewBatchBuilder(256)
	b.Append(nil, []byte("later"), []wire.Header{{Key: []byte(wire.HeaderDeliverAt), Value: []byte(strconv.FormatInt(at.UnixMilli(), 10))}}, time.Now().UnixMilli())
	batch, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.TopicByName("q").Partition(0).Append(batch); err != nil {
		t.Fatal(err)
	}
	_, offs, _, ok := takeRecords(t, l, 10*time.Second)
	if now := time.Now(); !ok || len(offs) != 1 || now.Before(at.Truncate(time.Millisecond)) {
		t.Fatalf("got %v %v at %v, deliver-at %v", offs, ok, now, at)
	}
}

// A stream delivery from a partition that never took a TTL record (headers of other names
// included) stays a slice of the mapping, never copied: the TTL check is one atomic load. One from a
// partition that took one is still in place while nothing in it has expired.
func TestStreamDeliveryInPlaceWithoutExpiry(t *testing.T) {
	e := openEngine(t, testOptions(t))
	for _, name := range []string{"plain", "ttl"} {
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		hdrs := []wire.Header{{Key: []byte("trace"), Value: []byte("x")}}
		if name == "ttl" {
			hdrs = append(hdrs, wire.Header{Key: []byte(wire.HeaderTTL), Value: []byte("3600000")})
		}
		b := wire.NewBatchBuilder(256)
		b.Append(nil, []byte("v"), hdrs, time.Now().UnixMilli())
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.TopicByName(name).Partition(0).Append(batch); err != nil {
			t.Fatal(err)
		}
		s, _, err := e.Subscribe(wire.Subscribe{Topic: name, Partition: 0, Start: wire.StartEarliest, Credit: 1 << 30}, nopOwner{})
		if err != nil {
			t.Fatal(err)
		}
		d, ok, err := s.Next(1 << 20)
		if err != nil || !ok || d.owned != nil || s.ttl != nil != (name == "ttl") {
			t.Fatalf("%s: ok %v, copied %v, TTL scratch %v, err %v", name, ok, d.owned != nil, s.ttl != nil, err)
		}
		d.Release()
		s.Close()
	}
}
