package main

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKafkaListener: sluiced serves Kafka clients on --kafka-listen: kgo produces to an
// auto-created topic and reads the records back, and the daemon stops cleanly.
func TestKafkaListener(t *testing.T) {
	kaddr := freePort(t)
	b := startBroker(t, t.TempDir(), "--auto-create", "--kafka-listen", kaddr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kaddr), kgo.DefaultProduceTopic("kafka-e2e"),
		kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics("kafka-e2e"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v\n%s", i, err, b.log())
		}
	}
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d\n%s", got, n, b.log())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		got += fs.NumRecords()
	}
	cl.Close()
	b.stop()
}

// TestKafkaMetrics: sluiced's /metrics carries the Kafka listener's counters beside the native
// server's: after kgo produces and consumes n records and asks for a topic that does not exist,
// the connections, the requests by API key, the records and bytes produced and fetched and the
// UNKNOWN_TOPIC_OR_PARTITION answers are counted.
func TestKafkaMetrics(t *testing.T) {
	kaddr := freePort(t)
	b := startBroker(t, t.TempDir(), "--auto-create", "--kafka-listen", kaddr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kaddr), kgo.DefaultProduceTopic("kafka-metrics"),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics("kafka-metrics"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n, size = 50, 200
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: make([]byte, size)}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v\n%s", i, err, b.log())
		}
	}
	for got := 0; got < n; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d\n%s", got, n, b.log())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		got += fs.NumRecords()
	}
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("no-such-topic")
	meta.Topics = append(meta.Topics, mt)
	meta.AllowAutoTopicCreation = false
	resp, err := meta.RequestWith(ctx, cl)
	if err != nil || len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 3 {
		t.Fatalf("metadata of a missing topic: %v %+v", err, resp)
	}

	if v := b.metric(t, "sluice_kafka_connections", ""); v < 1 {
		t.Errorf("sluice_kafka_connections = %d, want >= 1", v)
	}
	if v := b.metric(t, "sluice_kafka_connections_accepted_total", ""); v < 1 {
		t.Errorf("sluice_kafka_connections_accepted_total = %d, want >= 1", v)
	}
	if v := b.metric(t, "sluice_kafka_requests_total", `api="Produce",key="0"`); v < n {
		t.Errorf("Produce requests = %d, want >= %d (one per ProduceSync)", v, n)
	}
	if v := b.metric(t, "sluice_kafka_requests_total", `api="Fetch",key="1"`); v < 1 {
		t.Errorf("Fetch requests = %d, want >= 1", v)
	}
	if v := b.metric(t, "sluice_kafka_requests_total", `api="ApiVersions",key="18"`); v < 1 {
		t.Errorf("ApiVersions requests = %d, want >= 1", v)
	}
	if v := b.metric(t, "sluice_kafka_produce_records_total", ""); v != n {
		t.Errorf("sluice_kafka_produce_records_total = %d, want %d", v, n)
	}
	pb := b.metric(t, "sluice_kafka_produce_bytes_total", "")
	if pb < n*size {
		t.Errorf("sluice_kafka_produce_bytes_total = %d, want >= %d", pb, n*size)
	}
	if v := b.metric(t, "sluice_kafka_fetch_bytes_total", ""); v < pb {
		t.Errorf("sluice_kafka_fetch_bytes_total = %d, want >= the %d produced", v, pb)
	}
	if v := b.metric(t, "sluice_kafka_errors_total", `code="3",name="UNKNOWN_TOPIC_OR_PARTITION"`); v < 1 {
		t.Errorf("UNKNOWN_TOPIC_OR_PARTITION answers = %d, want >= 1", v)
	}
	if v := b.metric(t, "sluice_kafka_sasl_failures_total", ""); v != 0 {
		t.Errorf("sluice_kafka_sasl_failures_total = %d, want 0", v)
	}
	if v := b.metric(t, "sluice_produced_records_total", ""); v != n {
		t.Errorf("the engine's sluice_produced_records_total = %d, want %d", v, n)
	}
	cl.Close()
	b.stop()
}
