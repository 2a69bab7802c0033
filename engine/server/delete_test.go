package server_test

import (
	"context"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// handshakeWithin dials the broker and sends a Hello, and reports whether its reply arrived within d.
func handshakeWithin(t *testing.T, addr string, d time.Duration) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	b, start := wire.BeginFrame(nil, wire.OpHello, 0, 1)
	b = wire.EndFrame((&wire.Hello{Version: wire.ProtocolVersion, MaxFrame: wire.DefaultMaxFrame, ClientID: "probe"}).Append(b), start)
	if _, err := c.Write(b); err != nil {
		return false
	}
	var hdr [wire.FrameHeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return false
	}
	h, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFrame)
	if err != nil {
		t.Fatalf("handshake reply: %v", err)
	}
	body := make([]byte, h.Size-wire.FrameHeaderSize)
	if _, err := io.ReadFull(c, body); err != nil {
		return false
	}
	return h.Op == wire.OpHello && h.Corr == 1
}

// processCPU is the process's user plus system CPU time.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestDeleteTopicUnderLoad deletes and recreates a topic while producers, a stream consumer, a group
// member and a work-queue consumer use it, each consumer sharing its connection with a producer
// (issue 11, item 12). A consumer whose subscription ends with the topic drops its connection while
// the broker is still writing produce replies to it: gnet closes the connection inside that write,
// and the session used to spin on its closed inbox for ever. Afterwards the broker answers a handshake
// at once, its loops are idle, and the recreated topic carries no offset of the old one.
func TestDeleteTopicUnderLoad(t *testing.T) {
	s, eng := servertest.Start(t, nil, nil)
	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func() *client.Client {
		c, err := client.Dial(ctx, addr, client.WithLogger(servertest.Logger()),
			client.WithReconnectBackoff(5*time.Millisecond, 50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	const topic = "churn"
	if _, err := eng.CreateTopic(wire.TopicConfig{Name: topic, Partitions: 2}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	stop, stopProducers := make(chan struct{}), make(chan struct{})
	closed := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	var stopOnce, stopProducersOnce sync.Once
	t.Cleanup(func() { // also after a failed assertion: the workers end before the broker closes
		stopProducersOnce.Do(func() { close(stopProducers) })
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	})
	produce := func(c *client.Client) {
		defer wg.Done()
		val := make([]byte, 100)
		for !closed(stopProducers) {
			p, err := c.Producer(topic, client.WithLinger(time.Millisecond))
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			for j := 0; j < 2000 && !closed(stopProducers); j++ {
				if p.Produce(ctx, client.Record{Key: []byte{byte(j)}, Value: val}, nil) != nil { // keyed: both partitions
					break
				}
			}
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_ = p.Close(pctx)
			pcancel()
		}
	}
	consume := func(c *client.Client, queue bool, opts ...client.ConsumerOption) {
		defer wg.Done()
		for !closed(stop) {
			cons, err := c.Subscribe(ctx, topic, opts...)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			for !closed(stop) {
				nctx, ncancel := context.WithTimeout(ctx, 100*time.Millisecond)
				m, err := cons.Next(nctx)
				timedOut := nctx.Err() != nil // read before ncancel, which sets it
				ncancel()
				if err != nil {
					if timedOut {
						continue
					}
					break // the consumer ended (its topic was deleted): subscribe again
				}
				if queue && m.Ack() != nil {
					break
				}
			}
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			_ = cons.Close(cctx)
			ccancel()
		}
	}
	for _, opts := range [][]client.ConsumerOption{
		{client.WithStartEarliest()},
		{client.WithGroup("members"), client.WithAutoCommit(time.Second)},
		{client.WithGroup("workers"), client.WithQueue(time.Second, 3)},
	} {
		c := dial()
		wg.Add(2)
		go produce(c)
		go consume(c, len(opts) == 3, opts...)
	}

	// Let the old topic grow and its group commit well into it.
	deadline := time.Now().Add(30 * time.Second)
	for eng.CommittedOffset("members", topic, 0) < 20000 || eng.CommittedOffset("members", topic, 1) < 20000 {
		if time.Now().After(deadline) {
			t.Fatalf("the group did not commit 20,000 records on both partitions: %d %d, topic %+v",
				eng.CommittedOffset("members", topic, 0), eng.CommittedOffset("members", topic, 1), eng.TopicByName(topic).Info())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := eng.DeleteTopic(topic); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := eng.CreateTopic(wire.TopicConfig{Name: topic, Partitions: 2}); err != nil {
		t.Fatalf("recreate: %v", err)
	}
	stopProducersOnce.Do(func() { close(stopProducers) }) // the new topic stays short
	time.Sleep(300 * time.Millisecond)                    // members reconnect, resubscribe and commit

	for i := 0; i < 5; i++ {
		if !handshakeWithin(t, addr, 2*time.Second) {
			t.Fatalf("probe %d: no handshake reply within 2 s after the topic was recreated", i)
		}
	}
	// The consumers are connected and idle: so should the process be.
	before, t0 := processCPU(t), time.Now()
	time.Sleep(time.Second)
	if used, wall := processCPU(t)-before, time.Since(t0); used > wall/2 {
		t.Errorf("the idle broker used %v of CPU in %v: a loop is spinning", used, wall)
	}
	info := eng.TopicByName(topic).Info()
	for _, g := range []string{"members", "workers"} {
		gi, err := eng.DescribeGroup(g)
		if err != nil {
			continue // no offsets at all: nothing inherited
		}
		for _, o := range gi.Offsets {
			if end := info.Partitions[o.Partition].EndOffset; o.Topic == topic && o.Committed > end {
				t.Errorf("group %s partition %d: committed %d beyond the recreated topic's end %d", g, o.Partition, o.Committed, end)
			}
		}
	}
	stopOnce.Do(func() { close(stop) })
	wg.Wait()
}
