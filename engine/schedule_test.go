package engine

import (
	"os"
	"testing"

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
