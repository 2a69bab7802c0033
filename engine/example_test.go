package engine_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// openExample opens an engine on a fresh temporary directory, quiet, and returns it with its
// clean-up.
func openExample() (*engine.Engine, func()) {
	dir, err := os.MkdirTemp("", "sluice-example-")
	if err != nil {
		log.Fatal(err)
	}
	eng, err := engine.Open(engine.Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	return eng, func() {
		eng.Close()
		os.RemoveAll(dir)
	}
}

// Publish records in-process and read them back record by record, starting inside a batch: the
// records before the start offset are not handed out.
func Example() {
	eng, done := openExample()
	defer done()
	ctx := context.Background()
	if _, err := eng.CreateTopic(wire.TopicConfig{Name: "prices", Partitions: 1}); err != nil {
		log.Fatal(err)
	}
	// One batch of three records: offsets 0, 1 and 2.
	b := wire.NewBatchBuilder(1024)
	for i, v := range []string{"1.0842", "1.0844", "1.0841"} {
		b.Append([]byte("EURUSD"), []byte(v), []wire.Header{{Key: []byte("venue"), Value: []byte("ecn")}}, 1700000000000+int64(i))
	}
	batch, err := b.Build()
	if err != nil {
		log.Fatal(err)
	}
	if _, _, err := eng.Publish(ctx, "prices", 0, batch, wire.DurabilityWritten); err != nil {
		log.Fatal(err)
	}

	sub, err := eng.SubscribeLocal(wire.Subscribe{Topic: "prices", Partition: 0, Start: wire.StartOffset, StartValue: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	for range 2 {
		rec, err := sub.NextRecord(ctx) // views into the log, valid until the next call
		if err != nil {
			log.Fatal(err)
		}
		venue, _ := rec.Header("venue")
		fmt.Printf("partition %d offset %d: %s=%s (%s, ts %d)\n", rec.Partition, rec.Offset, rec.Key, rec.Value, venue, rec.Timestamp)
	}
	// Output:
	// partition 0 offset 1: EURUSD=1.0844 (ecn, ts 1700000000001)
	// partition 0 offset 2: EURUSD=1.0841 (ecn, ts 1700000000002)
}

// A Publisher bound to one partition and a busy-polling subscriber: PollRecord returns at once,
// with a record or nil, and neither call allocates.
func ExamplePublisher() {
	eng, done := openExample()
	defer done()
	ctx := context.Background()
	if _, err := eng.CreateTopic(wire.TopicConfig{Name: "ticks", Partitions: 1, Flags: wire.TopicMemory}); err != nil {
		log.Fatal(err)
	}
	pub, err := eng.Publisher("ticks", 0, wire.DurabilityWritten)
	if err != nil {
		log.Fatal(err)
	}
	sub, err := eng.SubscribeLocalWith(wire.Subscribe{Topic: "ticks", Partition: 0, Start: wire.StartLatest},
		engine.LocalOptions{Spin: true})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	if rec, err := sub.PollRecord(); rec == nil && err == nil {
		fmt.Println("nothing yet")
	}
	for _, v := range []string{"101", "102"} {
		if _, err := pub.PublishRecord(ctx, nil, []byte(v)); err != nil {
			log.Fatal(err)
		}
	}
	for {
		rec, err := sub.PollRecord()
		if err != nil {
			log.Fatal(err)
		}
		if rec == nil {
			break // a busy-poll loop would do other work here and poll again
		}
		fmt.Printf("offset %d: %s\n", rec.Offset, rec.Value)
	}
	// Output:
	// nothing yet
	// offset 0: 101
	// offset 1: 102
}

// A work queue: members of group "workers" share the records, each record goes to one member at a
// time, and a record is settled by Ack or handed out again after Nack (or its ack timeout).
func ExampleLocal_Ack() {
	eng, done := openExample()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := eng.CreateTopic(wire.TopicConfig{Name: "jobs", Partitions: 1}); err != nil {
		log.Fatal(err)
	}
	pub, err := eng.Publisher("jobs", 0, wire.DurabilityWritten)
	if err != nil {
		log.Fatal(err)
	}
	for _, job := range []string{"resize a.png", "resize b.png"} {
		if _, err := pub.PublishRecord(ctx, nil, []byte(job)); err != nil {
			log.Fatal(err)
		}
	}
	worker, err := eng.SubscribeLocal(wire.Subscribe{Topic: "jobs", Partition: -1, Group: "workers",
		Mode: wire.ModeQueue, AckTimeoutMs: 30_000})
	if err != nil {
		log.Fatal(err)
	}
	defer worker.Close()
	tries := map[string]int{}
	for range 3 {
		rec, err := worker.NextRecord(ctx)
		if err != nil {
			log.Fatal(err)
		}
		job := string(rec.Value) // a copy: rec's bytes are valid until the next call
		if tries[job]++; job == "resize b.png" && tries[job] == 1 {
			fmt.Println("failed, retry:", job)
			if err := worker.Nack(rec.Partition, 0, rec.Offset); err != nil { // redeliver at once
				log.Fatal(err)
			}
			continue
		}
		fmt.Println("done:", job)
		if err := worker.Ack(rec.Partition, rec.Offset); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// done: resize a.png
	// failed, retry: resize b.png
	// done: resize b.png
}

// Request and reply in-process, with the Go client's routing headers (client.HeaderReplyTo,
// client.HeaderCorrelationID), so a responder serves embedded and networked requesters alike. The
// requester reads the reply from its own inbox, a memory-only topic.
func Example_requestReply() {
	eng, done := openExample()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inbox := wire.InboxName("", "1")
	for _, cfg := range []wire.TopicConfig{{Name: "quotes", Partitions: 1}, {Name: inbox, Partitions: 1, Flags: wire.TopicMemory}} {
		if _, err := eng.CreateTopic(cfg); err != nil {
			log.Fatal(err)
		}
	}
	replies, err := eng.SubscribeLocal(wire.Subscribe{Topic: inbox, Partition: 0, Start: wire.StartEarliest})
	if err != nil {
		log.Fatal(err)
	}
	defer replies.Close()

	// The requester asks.
	requests, err := eng.Publisher("quotes", 0, wire.DurabilityWritten)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := requests.PublishRecord(ctx, nil, []byte("EURUSD?"),
		wire.Header{Key: []byte(client.HeaderReplyTo), Value: []byte(inbox)},
		wire.Header{Key: []byte(client.HeaderCorrelationID), Value: []byte("42")}); err != nil {
		log.Fatal(err)
	}

	// The responder answers on the topic the request names, with the request's correlation id.
	service, err := eng.SubscribeLocal(wire.Subscribe{Topic: "quotes", Partition: -1, Start: wire.StartEarliest})
	if err != nil {
		log.Fatal(err)
	}
	defer service.Close()
	req, err := service.NextRecord(ctx)
	if err != nil {
		log.Fatal(err)
	}
	replyTo, _ := req.Header(client.HeaderReplyTo)
	corr, _ := req.Header(client.HeaderCorrelationID)
	answer := wire.NewBatchBuilder(256)
	answer.Append(nil, []byte("1.0842"), []wire.Header{{Key: []byte(client.HeaderCorrelationID), Value: corr}}, time.Now().UnixMilli())
	batch, err := answer.Build()
	if err != nil {
		log.Fatal(err)
	}
	if _, _, err := eng.Publish(ctx, string(replyTo), -1, batch, wire.DurabilityWritten); err != nil {
		log.Fatal(err)
	}

	// The requester reads its reply.
	rep, err := replies.NextRecord(ctx)
	if err != nil {
		log.Fatal(err)
	}
	id, _ := rep.Header(client.HeaderCorrelationID)
	fmt.Printf("reply to %s: %s\n", id, rep.Value)
	// Output:
	// reply to 42: 1.0842
}

// A header filter: the subscription is handed only the records whose headers match (here: region
// eu, and no test header). Filtered records are copies, not views of the log.
func ExampleEngine_SubscribeLocal_filter() {
	eng, done := openExample()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := eng.CreateTopic(wire.TopicConfig{Name: "orders", Partitions: 1}); err != nil {
		log.Fatal(err)
	}
	pub, err := eng.Publisher("orders", 0, wire.DurabilityWritten)
	if err != nil {
		log.Fatal(err)
	}
	h := func(k, v string) wire.Header { return wire.Header{Key: []byte(k), Value: []byte(v)} }
	for _, o := range []struct {
		id      string
		headers []wire.Header
	}{
		{"o1", []wire.Header{h("region", "eu")}},
		{"o2", []wire.Header{h("region", "us")}},
		{"o3", []wire.Header{h("region", "eu"), h("test", "1")}},
		{"o4", []wire.Header{h("region", "eu")}},
	} {
		if _, err := pub.PublishRecord(ctx, nil, []byte(o.id), o.headers...); err != nil {
			log.Fatal(err)
		}
	}
	sub, err := eng.SubscribeLocal(wire.Subscribe{Topic: "orders", Partition: 0, Start: wire.StartEarliest, Filter: "region=eu&!test"})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	for range 2 {
		rec, err := sub.NextRecord(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("offset %d: %s\n", rec.Offset, rec.Value)
	}
	// Output:
	// offset 0: o1
	// offset 3: o4
}
