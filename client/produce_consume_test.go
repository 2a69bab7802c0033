package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// seen collects consumed records per partition and checks order and content.
type seen struct {
	t     testing.TB
	mu    sync.Mutex
	parts map[int32][]int64
	vals  map[string]bool
}

func newSeen(t testing.TB) *seen {
	return &seen{t: t, parts: map[int32][]int64{}, vals: map[string]bool{}}
}

func (s *seen) add(m *Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	offs := s.parts[m.Partition]
	if n := len(offs); n > 0 && m.Offset <= offs[n-1] {
		s.t.Errorf("partition %d: offset %d after %d", m.Partition, m.Offset, offs[n-1])
	}
	s.parts[m.Partition] = append(offs, m.Offset)
	s.vals[string(m.Value)] = true
}

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.vals)
}

// consumeN reads until n distinct values were seen.
func consumeN(t testing.TB, cons *Consumer, s *seen, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for s.count() < n {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatalf("next after %d of %d: %v", s.count(), n, err)
		}
		s.add(m)
	}
}

func TestProduceConsumeAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "events", 4)
	ctx := testCtx(t)

	p, err := c.Producer("events", WithLinger(2*time.Millisecond), WithMaxBatchBytes(4<<10))
	if err != nil {
		t.Fatal(err)
	}
	if p.Partitions() != 4 {
		t.Fatalf("partitions %d", p.Partitions())
	}
	cons, err := c.Subscribe(ctx, "events", WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var callbacks atomic.Int64
	var cbErr atomic.Value
	keyPart := map[string]int32{}
	var kpMu sync.Mutex
	futures := make([]*Future, 0, n/2)
	for i := range n {
		rec := Record{
			Key:     []byte(fmt.Sprintf("key-%d", i%37)),
			Value:   []byte(fmt.Sprintf("value-%d", i)),
			Headers: []Header{{Key: []byte("i"), Value: []byte(fmt.Sprint(i))}, {Key: []byte("nil"), Value: nil}},
		}
		if i%2 == 0 {
			key := string(rec.Key)
			if err := p.Produce(ctx, rec, func(r Result) {
				if r.Err != nil || r.Offset < 0 {
					cbErr.Store(fmt.Errorf("record %d: %+v", i, r))
				}
				kpMu.Lock()
				if old, ok := keyPart[key]; ok && old != r.Partition {
					cbErr.Store(fmt.Errorf("key %s on partitions %d and %d", key, old, r.Partition))
				}
				keyPart[key] = r.Partition
				kpMu.Unlock()
				callbacks.Add(1)
			}); err != nil {
				t.Fatal(err)
			}
		} else {
			f, err := p.Send(ctx, rec)
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
		}
	}
	for i, f := range futures {
		r, err := f.Wait(ctx)
		if err != nil || r.Offset < 0 {
			t.Fatalf("future %d: %+v %v", i, r, err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if callbacks.Load() != n/2 {
		t.Fatalf("%d callbacks, want %d", callbacks.Load(), n/2)
	}
	if v := cbErr.Load(); v != nil {
		t.Fatal(v)
	}
	for k, part := range keyPart {
		if want := int32(murmur2([]byte(k))&0x7fffffff) % 4; part != want {
			t.Fatalf("key %s on partition %d, murmur2 says %d", k, part, want)
		}
	}

	s := newSeen(t)
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for s.count() < n {
		m, err := cons.Next(ctx2)
		if err != nil {
			t.Fatalf("next after %d: %v", s.count(), err)
		}
		var i int
		fmt.Sscanf(string(m.Value), "value-%d", &i)
		if want := fmt.Sprintf("key-%d", i%37); string(m.Key) != want {
			t.Fatalf("record %d key %q", i, m.Key)
		}
		if v, ok := m.Header("i"); !ok || string(v) != fmt.Sprint(i) {
			t.Fatalf("record %d header i = %q %v", i, v, ok)
		}
		if v, ok := m.Header("nil"); !ok || v != nil {
			t.Fatalf("record %d null header = %q %v", i, v, ok)
		}
		if m.HeaderCount() != 2 || len(m.AppendHeaders(nil)) != 2 {
			t.Fatalf("record %d: %d headers", i, m.HeaderCount())
		}
		if time.Since(m.Timestamp) > time.Minute || m.Topic != "events" {
			t.Fatalf("record %d: timestamp %v topic %q", i, m.Timestamp, m.Topic)
		}
		if m.HighWatermark <= m.Offset {
			t.Fatalf("record %d: high watermark %d at offset %d", i, m.HighWatermark, m.Offset)
		}
		s.add(m)
	}
	total := 0
	for _, offs := range s.parts {
		total += len(offs)
	}
	if total != n || len(s.parts) != 4 {
		t.Fatalf("%d records over %d partitions", total, len(s.parts))
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, Record{Value: []byte("x")}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("produce after close: %v", err)
	}
	if err := cons.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Next(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("next after close: %v", err)
	}
}

func TestMessageValidityAndClone(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "clone", 1)
	ctx := testCtx(t)
	p, err := c.Producer("clone")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := p.Publish(ctx, Record{Key: []byte{byte(i)}, Value: []byte(fmt.Sprintf("v%d", i)), Headers: []Header{{Key: []byte("h"), Value: []byte{byte(i)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := c.Subscribe(ctx, "clone", WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	m0, err := cons.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kept := m0.Clone()
	m1, err := cons.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m0 != m1 {
		t.Fatal("Next did not reuse its Message")
	}
	if string(kept.Value) != "v0" || kept.Offset != 0 || !bytes.Equal(kept.Key, []byte{0}) {
		t.Fatalf("clone %+v", kept)
	}
	if v, ok := kept.Header("h"); !ok || !bytes.Equal(v, []byte{0}) || kept.HeaderCount() != 1 {
		t.Fatalf("clone header %v %v", v, ok)
	}
	if string(m1.Value) != "v1" || m1.Offset != 1 {
		t.Fatalf("second %+v", m1)
	}
	if err := m1.Ack(); !errors.Is(err, ErrNotQueue) {
		t.Fatalf("ack on a stream: %v", err)
	}
	if err := cons.Commit(ctx); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("commit without group: %v", err)
	}
}

func TestDurabilityLevelsAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "dur", 2)
	ctx := testCtx(t)
	for _, d := range []wire.Durability{wire.DurabilityNone, wire.DurabilityWritten, wire.DurabilityFsync} {
		p, err := c.Producer("dur", WithDurability(d), WithPartitioner(ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			r, err := p.Publish(ctx, Record{Value: []byte(d.String()), Partition: int32(i % 2)})
			if err != nil {
				t.Fatalf("%v: %v", d, err)
			}
			if r.Partition != int32(i%2) {
				t.Fatalf("%v: partition %d, want %d", d, r.Partition, i%2)
			}
			if (d == wire.DurabilityNone) != (r.Offset == -1) {
				t.Fatalf("%v: offset %d", d, r.Offset)
			}
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ti, err := c.DescribeTopic(ctx, "dur")
	if err != nil {
		t.Fatal(err)
	}
	if got := ti.Partitions[0].EndOffset + ti.Partitions[1].EndOffset; got != 30 {
		t.Fatalf("%d records stored, want 30", got)
	}
	// A partitioner's choice outside the topic is refused before anything is queued.
	p, err := c.Producer("dur", WithPartitioner(ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, Record{Partition: 7}, nil); !errors.Is(err, wire.CodeUnknownPartition) {
		t.Fatalf("partition 7 of 2: %v", err)
	}
}

func TestCompressionAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	ctx := testCtx(t)
	for _, codec := range []wire.Codec{wire.CodecGzip, wire.CodecSnappy, wire.CodecLZ4, wire.CodecZstd} {
		topic := "comp-" + codec.String()
		createTopic(t, c, topic, 1)
		p, err := c.Producer(topic, WithCompression(codec))
		if err != nil {
			t.Fatal(err)
		}
		const n = 500
		for i := range n {
			if err := p.Produce(ctx, Record{Value: bytes.Repeat([]byte{byte('a' + i%26)}, 100)}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		ti, err := c.DescribeTopic(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if ti.Partitions[0].Bytes >= n*100 {
			t.Fatalf("%v: %d bytes stored for %d bytes of values: not compressed", codec, ti.Partitions[0].Bytes, n*100)
		}
		cons, err := c.Subscribe(ctx, topic, WithStartEarliest())
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			m, err := cons.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m.Offset != int64(i) || !bytes.Equal(m.Value, bytes.Repeat([]byte{byte('a' + i%26)}, 100)) {
				t.Fatalf("%v: record %d: offset %d value %.10q", codec, i, m.Offset, m.Value)
			}
		}
		cons.Close(ctx)
	}
}

// TestCompressionIncompressible fills batches to the broker's batch limit with random bytes, which
// every codec grows a little: the producer sends such batches uncompressed instead of over the limit.
func TestCompressionIncompressible(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	ctx := testCtx(t)
	rng := rand.New(rand.NewPCG(3, 4))
	// Values sized so that one record fills a batch to exactly the limit, then smaller ones.
	n := 1<<20 - wire.BatchHeaderSize
	for wire.BatchHeaderSize+wire.RecordSize(0, 0, nil, make([]byte, n), nil) > 1<<20 {
		n--
	}
	values := make([][]byte, 0, 300)
	for i := range cap(values) {
		v := make([]byte, 5000)
		if i < 3 {
			v = make([]byte, n)
		}
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		values = append(values, v)
	}
	for _, codec := range []wire.Codec{wire.CodecGzip, wire.CodecSnappy, wire.CodecLZ4, wire.CodecZstd} {
		topic := "rand-" + codec.String()
		createTopic(t, c, topic, 1)
		// A long linger and a full-size batch limit: every batch but the last leaves full.
		p, err := c.Producer(topic, WithCompression(codec), WithLinger(time.Minute), WithMaxBatchBytes(1<<20))
		if err != nil {
			t.Fatal(err)
		}
		var failed atomic.Int64
		for _, v := range values {
			if err := p.Produce(ctx, Record{Value: v}, func(r Result) {
				if r.Err != nil && failed.Add(1) == 1 {
					t.Errorf("%v: %v", codec, r.Err)
				}
			}); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if n := failed.Load(); n != 0 {
			t.Fatalf("%v: %d of %d records failed", codec, n, len(values))
		}
		cons, err := c.Subscribe(ctx, topic, WithStartEarliest())
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range values {
			m, err := cons.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m.Offset != int64(i) || !bytes.Equal(m.Value, v) {
				t.Fatalf("%v: record %d: offset %d", codec, i, m.Offset)
			}
		}
		cons.Close(ctx)
	}
}
