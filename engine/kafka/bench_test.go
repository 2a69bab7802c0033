package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/wire"
)

// BenchmarkKafkaProduceConsume moves records from a producer to a consumer running at the same
// time, through the Kafka listener with kgo and through the native listener with Sluice's client,
// in one run on one engine, for 100 B and 1 KiB values at written durability (acks=1): one op is
// one record produced and consumed. The kgo configuration is kgoBenchProducer's and
// kgoBenchConsumer's (the settings and why are given there).
//
//	go test -run '^$' -bench BenchmarkKafkaProduceConsume -benchtime 200000x ./engine/kafka/
func BenchmarkKafkaProduceConsume(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("kafka/value=%d", size), func(b *testing.B) { benchKgo(b, size) })
		b.Run(fmt.Sprintf("native/value=%d", size), func(b *testing.B) { benchNative(b, size) })
	}
}

// kgoBenchProducer and kgoBenchConsumer are what a kgo user after throughput sets, matched to
// what the native client does by default so that neither side is handicapped:
//   - acks=1 (leader ack) is the native side's written durability; idempotence off, as native
//     producers are by default;
//   - linger 5 ms, batches up to 1 MiB, no compression: the native producer's defaults (Linger,
//     MaxBatchBytes, Compression), where kgo's are 10 ms, ~1 MB and snappy;
//   - up to 64 MiB buffered (the native MaxBufferedBytes), with kgo's 50,000-record cap raised so
//     that the bytes bind first (at 100 B, 50,000 records are 5 MB: the producer would stall on
//     the record count long before the native one stalls on bytes);
//   - fetches of up to 8 MiB (the listener's MaxFetchBytes, kgo's default asks 50 MiB) and 4 MiB
//     per partition (kgo's default is 1 MiB: a 100 B stream of 4 partitions would come back in
//     answers a quarter of what the listener allows), 500 ms max wait (Kafka's Java default; kgo's
//     is 5 s) with min bytes 1, so an answer leaves as soon as a record is there.
func kgoBenchProducer() []kgo.Opt {
	return []kgo.Opt{kgo.DefaultProduceTopic("bench"), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(5 * time.Millisecond), kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedBytes(64 << 20), kgo.MaxBufferedRecords(1 << 20)}
}

func kgoBenchConsumer() []kgo.Opt {
	return []kgo.Opt{kgo.ConsumeTopics("bench"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(8 << 20), kgo.FetchMaxPartitionBytes(4 << 20), kgo.FetchMaxWait(500 * time.Millisecond)}
}

func benchKgo(b *testing.B, size int) {
	s, e := startBroker(b, nil)
	createTopic(b, e, "bench", 4)
	prod := newClient(b, s, kgoBenchProducer()...)
	cons := newClient(b, s, kgoBenchConsumer()...)
	value := make([]byte, size)
	var failed atomic.Int64
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
		}
	}
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	go func() {
		for range b.N {
			prod.Produce(ctx, &kgo.Record{Value: value}, done)
		}
	}()
	for got := 0; got < b.N; {
		fs := cons.PollFetches(ctx)
		fs.EachError(func(_ string, _ int32, err error) { b.Fatal(err) })
		got += fs.NumRecords()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	if err := prod.Flush(ctx); err != nil || failed.Load() > 0 {
		b.Fatalf("flush %v, %d failed", err, failed.Load())
	}
}

func benchNative(b *testing.B, size int) {
	_, e := startBroker(b, nil)
	native, err := server.Start(server.Options{Addr: "127.0.0.1:0", Engine: e, Loops: 2, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { native.Close() })
	createTopic(b, e, "bench", 4)
	ctx := context.Background()
	pc, err := client.Dial(ctx, native.Addr().String(), client.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	cc, err := client.Dial(ctx, native.Addr().String(), client.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	prod, err := pc.Producer("bench", client.WithDurability(wire.DurabilityWritten))
	if err != nil {
		b.Fatal(err)
	}
	cons, err := cc.Subscribe(ctx, "bench", client.WithStartEarliest())
	if err != nil {
		b.Fatal(err)
	}
	rec := client.Record{Value: make([]byte, size)}
	var failed atomic.Int64
	done := func(r client.Result) {
		if r.Err != nil {
			failed.Add(1)
		}
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	go func() {
		for range b.N {
			_ = prod.Produce(ctx, rec, done)
		}
	}()
	for range b.N {
		if _, err := cons.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	if err := prod.Flush(ctx); err != nil || failed.Load() > 0 {
		b.Fatalf("flush %v, %d failed", err, failed.Load())
	}
}

// BenchmarkHotPath drives raw Produce and Fetch frames through a connection over an in-memory
// transport: the broker's per-request work with no network, in allocations per request. A request
// carries one batch of recordsPerBatch records, so allocs/op divided by it is per record.
//
//	go test -run '^$' -bench BenchmarkHotPath -benchmem ./engine/kafka/
func BenchmarkHotPath(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("produce/records=%d", n), func(b *testing.B) { benchProduceFrames(b, n) })
		b.Run(fmt.Sprintf("fetch/records=%d", n), func(b *testing.B) { benchFetchFrames(b, n) })
	}
}

// batchOf builds one RecordBatch of n records of 100-byte values.
func batchOf(b *testing.B, n int) []byte {
	var bb wire.BatchBuilder
	bb.Reset()
	v := make([]byte, 100)
	for range n {
		bb.Append(nil, v, nil, 1_700_000_000_000)
	}
	out, err := bb.Build()
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func benchProduceFrames(b *testing.B, records int) {
	s := fuzzServer(b)
	s.opts.ACL, s.opts.MaxFrame = nil, 1<<20
	if _, err := s.e.CreateTopic(wire.TopicConfig{Name: "p", Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks = 1
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "p"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = batchOf(b, records)
	pt.Partitions = append(pt.Partitions, pp)
	req.Topics = append(req.Topics, pt)
	frame := appendRequest(nil, 1, req)
	m := &memTransport{}
	c := newConn(s, m)
	defer c.close()
	run := func() {
		m.in = frame // read in place, never written
		m.out.Reset()
		c.onTraffic()
		if m.out.Len() == 0 || c.dead {
			b.Fatal("no answer")
		}
	}
	for range 100 {
		run() // warm the reused request, answer and buffers
	}
	b.SetBytes(int64(len(pp.Records)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		run()
	}
	b.StopTimer()
	b.ReportMetric(float64(testing.AllocsPerRun(100, run))/float64(records), "allocs/record")
}

func benchFetchFrames(b *testing.B, records int) {
	s := fuzzServer(b)
	if _, err := s.e.CreateTopic(wire.TopicConfig{Name: "f", Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	batch := batchOf(b, records)
	p := s.e.TopicByName("f").Partition(0)
	for range 10 {
		if _, _, err := p.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	req := fetchRequest(11, "f", 0, 0, 1, int32(len(batch)), int32(len(batch)))
	frame := appendRequest(nil, 1, req)
	m := &memTransport{}
	c := newConn(s, m)
	defer c.close()
	run := func() {
		m.in = frame // read in place, never written
		m.out.Reset()
		c.onTraffic()
		if m.out.Len() < len(batch) || c.dead || binary.BigEndian.Uint32(m.out.Bytes()[4:]) != 1 {
			b.Fatal("no answer")
		}
	}
	for range 100 {
		run()
	}
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		run()
	}
	b.StopTimer()
	b.ReportMetric(float64(testing.AllocsPerRun(100, run))/float64(records), "allocs/record")
}
