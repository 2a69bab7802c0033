// Command natscompare measures NATS core the way `sluice bench --mode closed` measures Sluice: one
// publisher and one subscriber on one subject, payloads of --size bytes published as fast as the client
// accepts them for --duration, and the rate at which they arrive at the subscriber.
//
// It is a module of its own (bench/natscompare/go.mod) so that nats.go stays out of the broker's
// dependencies; bench/nats-compare runs it beside sluice bench. nats-server ships no bench client, and
// the natscli `nats bench` is not packaged for this machine.
//
// Every payload starts with its send time (8 bytes, little-endian ns on this process's monotonic
// clock), so the subscriber also reports latency percentiles; closed loop, they measure the queue in
// front of the subscriber, as sluice bench's closed-loop latencies do.
//
// Output: one line, "nats size=N sent=N received=N dropped=N msgs/s=X MB/s=X p50=D p99=D".
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL")
	size := flag.Int("size", 1024, "payload bytes, at least 8")
	duration := flag.Duration("duration", 5*time.Second, "how long to publish")
	drain := flag.Duration("drain", 5*time.Second, "longest wait for the subscriber after publishing ends")
	flag.Parse()
	if err := run(*url, *size, *duration, *drain); err != nil {
		fmt.Fprintln(os.Stderr, "natscompare:", err)
		os.Exit(1)
	}
}

var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

func run(url string, size int, duration, drain time.Duration) error {
	if size < 8 {
		return fmt.Errorf("--size %d: at least 8", size)
	}
	subject := fmt.Sprintf("natscompare.%d", os.Getpid())
	sc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("subscriber connect: %w", err)
	}
	defer sc.Close()
	var (
		received atomic.Int64
		first    atomic.Int64 // now() of the first arrival
		last     atomic.Int64 // now() of the latest arrival
		mu       sync.Mutex
		lat      = make([]int64, 0, 1<<20) // a sample of latencies in ns: every 16th message
	)
	sub, err := sc.Subscribe(subject, func(m *nats.Msg) {
		t := now()
		n := received.Add(1)
		if n == 1 {
			first.Store(t)
		}
		last.Store(t)
		if n%16 == 0 && len(m.Data) >= 8 {
			mu.Lock()
			lat = append(lat, t-int64(binary.LittleEndian.Uint64(m.Data)))
			mu.Unlock()
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	// A subscriber that falls behind drops messages past these limits (NATS core's slow-consumer rule);
	// set high so that drops are rare and counted when they happen.
	if err := sub.SetPendingLimits(-1, 1<<30); err != nil {
		return fmt.Errorf("pending limits: %w", err)
	}
	if err := sc.Flush(); err != nil {
		return fmt.Errorf("subscriber flush: %w", err)
	}

	pc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("publisher connect: %w", err)
	}
	defer pc.Close()
	payload := make([]byte, size)
	var sent int64
	end := now() + int64(duration)
	for now() < end {
		for range 64 { // a clock read per 64 publishes, as cheap as the publish itself at 100 B
			binary.LittleEndian.PutUint64(payload, uint64(now()))
			if err := pc.Publish(subject, payload); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			sent++
		}
	}
	if err := pc.Flush(); err != nil {
		return fmt.Errorf("publisher flush: %w", err)
	}
	deadline := time.Now().Add(drain)
	for received.Load() < sent && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	dropped, _ := sub.Dropped()
	n := received.Load()
	span := time.Duration(last.Load() - first.Load())
	if span <= 0 {
		return fmt.Errorf("received %d of %d messages", n, sent)
	}
	mu.Lock()
	slices.Sort(lat)
	p := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return time.Duration(lat[min(len(lat)-1, int(q*float64(len(lat))))])
	}
	fmt.Printf("nats size=%d sent=%d received=%d dropped=%d msgs/s=%.0f MB/s=%.2f p50=%v p99=%v\n",
		size, sent, n, dropped, float64(n)/span.Seconds(), float64(n)*float64(size)/span.Seconds()/1e6, p(0.50), p(0.99))
	mu.Unlock()
	return nil
}
