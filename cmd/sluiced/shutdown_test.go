package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// TestGracefulStopAcksWhatItStored: two idempotent producers pipeline records at fsync durability;
// the broker gets SIGTERM mid-stream and is started again while they keep producing. Every record's
// reported outcome must agree with the disk: an acknowledged record is there, at its offset, once;
// a record reported failed is not there at all; and no record fails because the broker said it was
// shutting down (the producer resends those after reconnecting). Resends after a lost connection are
// off, so a stored record whose acknowledgement the stop dropped shows up as a failure. Several
// rounds, each stopping at a different moment.
func TestGracefulStopAcksWhatItStored(t *testing.T) {
	const rounds = 4
	for round := range rounds {
		t.Run(strconv.Itoa(round), func(t *testing.T) { gracefulStopRound(t) })
	}
}

// outcome is what a producer was told about one record.
type outcome struct {
	done      bool
	partition int32
	offset    int64
	err       error
}

func gracefulStopRound(t *testing.T) {
	b := startBroker(t, t.TempDir())
	admin := dialBroker(t, b)
	createTopic(t, admin, "s", 2)
	admin.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const producers = 2
	var (
		mu       sync.Mutex
		outcomes = make([][]outcome, producers)
		stop     atomic.Bool
		wg       sync.WaitGroup
		sent     [producers]atomic.Int64
	)
	for k := range producers {
		c := dialBroker(t, b)
		p, err := c.Producer("s", client.WithDurability(wire.DurabilityFsync), client.WithIdempotence(),
			client.WithRetries(-1), client.WithLinger(time.Millisecond), client.WithMaxBatchBytes(4<<10), client.WithMaxBufferedBytes(64<<10))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				mu.Lock()
				outcomes[k] = append(outcomes[k], outcome{})
				mu.Unlock()
				rec := client.Record{Key: []byte(strconv.Itoa(i % 64)), Value: []byte(fmt.Sprintf("p%d-%d", k, i))}
				err := p.Produce(ctx, rec, func(r client.Result) {
					mu.Lock()
					outcomes[k][i] = outcome{done: true, partition: r.Partition, offset: r.Offset, err: r.Err}
					mu.Unlock()
				})
				if err != nil {
					t.Errorf("producer %d: Produce %d: %v", k, i, err)
					return
				}
				sent[k].Add(1)
			}
			if err := p.Close(ctx); err != nil {
				t.Errorf("producer %d: Close: %v", k, err)
			}
		}()
	}
	// SIGTERM mid-stream, at a different moment each round, once both producers are under way.
	deadline := time.Now().Add(20 * time.Second)
	for sent[0].Load() < 2000 || sent[1].Load() < 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("producers stalled at %d and %d records", sent[0].Load(), sent[1].Load())
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
	b.stop()
	b.start()
	// Keep producing until both producers have stored records through the new broker.
	at := [producers]int64{sent[0].Load(), sent[1].Load()}
	for sent[0].Load() < at[0]+1000 || sent[1].Load() < at[1]+1000 {
		if time.Now().After(deadline) {
			t.Fatalf("producers did not resume after the restart: %d, %d records", sent[0].Load(), sent[1].Load())
		}
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	// Read back everything the partitions hold.
	c := dialBroker(t, b)
	var total int64
	for part := range 2 {
		total += b.metric(t, "sluice_partition_end_offset", fmt.Sprintf(`topic="s",partition="%d"`, part))
	}
	cons, err := c.Subscribe(ctx, "s", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(context.Background())
	type at2 struct {
		partition int32
		offset    int64
	}
	onDisk := map[string]at2{}
	for range total {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatalf("reading back %d records: %v", total, err)
		}
		v := string(m.Value)
		if prev, dup := onDisk[v]; dup {
			t.Errorf("record %s stored twice: %d/%d and %d/%d", v, prev.partition, prev.offset, m.Partition, m.Offset)
		}
		onDisk[v] = at2{m.Partition, m.Offset}
	}

	mu.Lock()
	defer mu.Unlock()
	var acked, failed, failedOnDisk, shuttingDown int
	for k := range producers {
		for i, o := range outcomes[k] {
			v := fmt.Sprintf("p%d-%d", k, i)
			where, stored := onDisk[v]
			switch {
			case !o.done:
				t.Errorf("record %s: no outcome reported", v)
			case o.err == nil:
				acked++
				if !stored {
					t.Errorf("record %s acknowledged at %d/%d but not on disk", v, o.partition, o.offset)
				} else if where != (at2{o.partition, o.offset}) {
					t.Errorf("record %s acknowledged at %d/%d, stored at %d/%d", v, o.partition, o.offset, where.partition, where.offset)
				}
			default:
				failed++
				if errors.Is(o.err, wire.CodeShuttingDown) {
					shuttingDown++
				}
				if stored {
					failedOnDisk++
					if failedOnDisk <= 3 {
						t.Logf("record %s failed (%v) but is stored at %d/%d", v, o.err, where.partition, where.offset)
					}
				}
			}
		}
	}
	if failedOnDisk > 0 || shuttingDown > 0 {
		t.Errorf("%d records reported failed are on disk; %d failed as \"shutting down\" instead of being resent (of %d acknowledged, %d failed)",
			failedOnDisk, shuttingDown, acked, failed)
	}
	if len(onDisk) != acked {
		t.Errorf("%d records on disk, %d acknowledged", len(onDisk), acked)
	}
	t.Logf("%d acknowledged, %d failed, %d on disk", acked, failed, len(onDisk))
}
