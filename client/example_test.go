package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/wire"
)

// exampleBroker starts a broker in-process on a free port; the examples talk to it over TCP as they
// would to a remote one.
func exampleBroker() (addr string, stop func()) {
	dir, err := os.MkdirTemp("", "sluice-example")
	if err != nil {
		log.Fatal(err)
	}
	eng, err := engine.Open(engine.Options{DataDir: dir, MemoryDir: filepath.Join(dir, "mem")})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.Start(server.Options{Addr: "127.0.0.1:0", Engine: eng})
	if err != nil {
		log.Fatal(err)
	}
	return srv.Addr().String(), func() { srv.Close(); eng.Close(); os.RemoveAll(dir) }
}

func Example_produce() {
	addr, stop := exampleBroker()
	defer stop()
	ctx := context.Background()
	c, err := client.Dial(ctx, addr, client.WithClientID("example"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic(ctx, client.TopicConfig{Name: "orders", Partitions: 1}); err != nil {
		log.Fatal(err)
	}
	p, err := c.Producer("orders", client.WithDurability(wire.DurabilityWritten), client.WithLinger(2*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	// Asynchronous, with a callback: it runs on a client goroutine and must not block.
	for i := range 3 {
		rec := client.Record{Key: []byte("customer-7"), Value: []byte(fmt.Sprintf("order %d", i))}
		if err := p.Produce(ctx, rec, func(r client.Result) {
			if r.Err != nil {
				log.Print(r.Err)
			}
		}); err != nil {
			log.Fatal(err)
		}
	}
	// Asynchronous, with a future.
	f, err := p.Send(ctx, client.Record{Value: []byte("order 3")})
	if err != nil {
		log.Fatal(err)
	}
	r, err := f.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("order 3 stored at offset", r.Offset)
	// Synchronous.
	r, err = p.Publish(ctx, client.Record{Value: []byte("order 4")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("order 4 stored at offset", r.Offset)
	if err := p.Close(ctx); err != nil { // drains what is buffered
		log.Fatal(err)
	}
	// Output:
	// order 3 stored at offset 3
	// order 4 stored at offset 4
}

func Example_consume() {
	addr, stop := exampleBroker()
	defer stop()
	ctx := context.Background()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic(ctx, client.TopicConfig{Name: "events", Partitions: 1}); err != nil {
		log.Fatal(err)
	}
	p, err := c.Producer("events")
	if err != nil {
		log.Fatal(err)
	}
	for _, v := range []string{"a", "b", "c"} {
		if _, err := p.Publish(ctx, client.Record{Value: []byte(v), Headers: []client.Header{{Key: []byte("kind"), Value: []byte("letter")}}}); err != nil {
			log.Fatal(err)
		}
	}
	cons, err := c.Subscribe(ctx, "events", client.WithStartEarliest(), client.WithCredit(1<<20))
	if err != nil {
		log.Fatal(err)
	}
	defer cons.Close(ctx)
	for range 3 {
		m, err := cons.Next(ctx) // m is valid until the next call of Next
		if err != nil {
			log.Fatal(err)
		}
		kind, _ := m.Header("kind")
		fmt.Printf("%s/%d@%d %s (%s)\n", m.Topic, m.Partition, m.Offset, m.Value, kind)
	}
	// Output:
	// events/0@0 a (letter)
	// events/0@1 b (letter)
	// events/0@2 c (letter)
}

func Example_group() {
	addr, stop := exampleBroker()
	defer stop()
	ctx := context.Background()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic(ctx, client.TopicConfig{Name: "jobs", Partitions: 2}); err != nil {
		log.Fatal(err)
	}
	p, err := c.Producer("jobs")
	if err != nil {
		log.Fatal(err)
	}
	for i := range 4 {
		if err := p.Produce(ctx, client.Record{Key: []byte{byte(i)}, Value: []byte{byte('0' + i)}}, nil); err != nil {
			log.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	// A group member starts at the group's committed offsets and commits what it has processed.
	cons, err := c.Subscribe(ctx, "jobs", client.WithGroup("billing"), client.WithAutoCommit(time.Second))
	if err != nil {
		log.Fatal(err)
	}
	n := 0
	cctx, cancel := context.WithCancel(ctx)
	err = cons.Consume(cctx, func(m *client.Message) error {
		// Processed when this returns nil; a crash before that means the record comes again.
		if n++; n == 4 {
			cancel()
		}
		return nil
	})
	fmt.Println("consumed", n, "stopped by", err)
	if err := cons.Close(ctx); err != nil { // commits what was processed
		log.Fatal(err)
	}
	var committed int64
	for part := int32(0); part < 2; part++ {
		off, err := c.FetchOffset(ctx, "billing", "jobs", part)
		if err != nil {
			log.Fatal(err)
		}
		committed += off
	}
	fmt.Println("committed", committed)
	// Output:
	// consumed 4 stopped by context canceled
	// committed 4
}
