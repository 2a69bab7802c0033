package main

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
