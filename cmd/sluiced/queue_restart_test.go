package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// Work-queue settlement across broker restarts, against the real binary.

// TestWorkQueueAcksSurviveRestart: 40 records, the odd offsets acked, 500 ms, the broker stopped
// (SIGTERM, or SIGKILL) and started again: only the 20 unacked records come back.
func TestWorkQueueAcksSurviveRestart(t *testing.T) {
	for _, sig := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(sig, func(t *testing.T) {
			data := t.TempDir()
			b := startBroker(t, data)
			c := dialBroker(t, b)
			createTopic(t, c, "jobs", 1)
			produceN(t, c, "jobs", 40, wire.DurabilityFsync)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cons, err := c.Subscribe(ctx, "jobs", client.WithGroup("workers"), client.WithQueue(time.Minute, 0),
				client.WithMaxAckPending(40), client.WithStartEarliest())
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 40; i++ {
				m, err := cons.Next(ctx)
				if err != nil {
					t.Fatalf("after %d records: %v", i, err)
				}
				if m.Offset%2 == 1 {
					if err := m.Ack(); err != nil {
						t.Fatal(err)
					}
				}
			}
			// The acks went without a reply asked for (as Message.Ack sends them): give the broker up to
			// 10 s, not the 500 ms, to write them, so a loaded machine cannot fail the test.
			waitAcksWritten(data, 20)
			c.Close()
			if sig == "SIGTERM" {
				b.stop()
			} else {
				b.kill()
			}
			b.start()
			c = dialBroker(t, b)
			cons, err = c.Subscribe(ctx, "jobs", client.WithGroup("workers"), client.WithQueue(time.Minute, 0),
				client.WithMaxAckPending(40), client.WithStartEarliest())
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for {
				short, cancel := context.WithTimeout(ctx, time.Second)
				m, err := cons.Next(short)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, m.Offset)
			}
			slices.Sort(got)
			var want []int64
			for off := int64(0); off < 40; off += 2 {
				want = append(want, off)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("after %s delivered %v, want the unacked even offsets %v", sig, got, want)
			}
		})
	}
}

// waitAcksWritten waits, at most 10 s, until the broker's queue state file shows unsettled runs
// covering exactly n offsets. It does not fail: the test's assertion is what is delivered after the
// restart.
func waitAcksWritten(data string, n int64) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var sts []struct {
			Unsettled [][2]int64 `json:"unsettled"`
		}
		raw, err := os.ReadFile(filepath.Join(data, "offsets", "queues.json"))
		if err == nil && json.Unmarshal(raw, &sts) == nil && len(sts) == 1 {
			var k int64
			for _, r := range sts[0].Unsettled {
				k += r[1] - r[0]
			}
			if k == n {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkQueueCrashLoop restarts the broker again and again (SIGTERM and SIGKILL alternately) under
// a consumer that acks some records, nacks some and leaves the rest: a record whose ack was answered
// is never delivered again, and in the end every record is settled (the queue's committed floor
// reaches the end of every partition). SLUICE_SOAK=1 runs more rounds.
func TestWorkQueueCrashLoop(t *testing.T) {
	rounds, records := 4, 300
	if os.Getenv("SLUICE_SOAK") != "" {
		rounds, records = 30, 3000
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	b := startBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "jobs", 2)
	produceN(t, c, "jobs", records, wire.DurabilityFsync)
	c.Close()

	type key struct {
		part int32
		off  int64
	}
	answered := map[key]bool{} // acks the broker answered: never to be delivered again
	inDoubt := map[key]bool{}  // acks sent but not answered when the broker went down
	check := func(round int, k key) {
		if answered[k] {
			t.Fatalf("round %d (seed %d): partition %d offset %d delivered again after its ack was answered", round, seed, k.part, k.off)
		}
	}
	for round := 0; round < rounds; round++ {
		q := dialQueue(t, b, 30*time.Second)
		steps := 5 + rng.IntN(40)
		for step := 0; step < steps; step++ {
			d, ok := q.next(500 * time.Millisecond)
			if !ok {
				break
			}
			var acks, nacks []int64
			for _, off := range d.offsets {
				k := key{d.partition, off}
				check(round, k)
				switch r := rng.IntN(10); {
				case r < 5:
					acks = append(acks, off)
				case r < 7:
					nacks = append(nacks, off)
				}
			}
			if len(acks) > 0 {
				if err := q.settle(wire.OpAck, d.partition, acks); err != nil {
					t.Fatalf("round %d: ack: %v", round, err)
				}
				for _, off := range acks {
					answered[key{d.partition, off}] = true
					delete(inDoubt, key{d.partition, off})
				}
			}
			if len(nacks) > 0 {
				if err := q.settle(wire.OpNack, d.partition, nacks); err != nil {
					t.Fatalf("round %d: nack: %v", round, err)
				}
			}
		}
		if round%2 == 0 {
			q.close()
			b.stop() // SIGTERM
		} else {
			// Acks on the wire, unanswered, when the broker dies: in doubt.
			if d, ok := q.next(500 * time.Millisecond); ok {
				for _, off := range d.offsets {
					check(round, key{d.partition, off})
					inDoubt[key{d.partition, off}] = true
				}
				q.send(wire.OpAck, d.partition, d.offsets)
			}
			b.kill() // SIGKILL
			q.close()
		}
		b.start()
	}

	// Drain: ack everything until the queue's floor reaches the end of both partitions.
	c = dialBroker(t, b)
	q := dialQueue(t, b, 30*time.Second)
	defer q.close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	info, err := c.DescribeTopic(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	for {
		settled := true
		for _, p := range info.Partitions {
			off, err := c.FetchOffset(ctx, "workers", "jobs", p.Partition)
			if err != nil {
				t.Fatal(err)
			}
			settled = settled && off == p.EndOffset
		}
		if settled {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("seed %d: the queue never settled every record (%d acks answered, %d in doubt)", seed, len(answered), len(inDoubt))
		}
		d, ok := q.next(200 * time.Millisecond)
		if !ok {
			continue
		}
		for _, off := range d.offsets {
			check(rounds, key{d.partition, off})
		}
		if err := q.settle(wire.OpAck, d.partition, d.offsets); err != nil {
			t.Fatal(err)
		}
		for _, off := range d.offsets {
			answered[key{d.partition, off}] = true
			delete(inDoubt, key{d.partition, off})
		}
	}
	if len(answered)+len(inDoubt) != records {
		t.Fatalf("seed %d: %d acks answered and %d in doubt, for %d records", seed, len(answered), len(inDoubt), records)
	}
	t.Logf("%d rounds, %d records: %d acks answered, %d settled by an unanswered ack", rounds, records, len(answered), len(inDoubt))
}

// rawQueue is a work-queue consumer speaking the protocol directly, so that every ack asks for its
// reply (the Go client sends acks without one).
type rawQueue struct {
	t     *testing.T
	nc    net.Conn
	corr  uint32
	sub   uint32
	in    chan wire.Frame // frames read, bodies copied; closed when the connection ends
	owed  int             // delivered bytes not yet granted back
	stash []wire.Frame    // deliveries read while waiting for a reply
}

// queueDelivery is one Deliver frame's records.
type queueDelivery struct {
	partition int32
	offsets   []int64
}

func dialQueue(t *testing.T, b *broker, ackTimeout time.Duration) *rawQueue {
	t.Helper()
	nc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	q := &rawQueue{t: t, nc: nc, sub: 1, in: make(chan wire.Frame, 1024)}
	go q.read()
	q.send0(wire.OpHello, 0, (&wire.Hello{Version: wire.ProtocolVersion, MaxFrame: wire.DefaultMaxFrame, ClientID: "queue-test"}).Append(nil))
	if _, err := q.wait(q.corr); err != nil {
		t.Fatalf("hello: %v", err)
	}
	spec := wire.Subscribe{SubID: q.sub, Topic: "jobs", Partition: -1, Group: "workers", Mode: wire.ModeQueue,
		Start: wire.StartEarliest, Credit: 1 << 20, AckTimeoutMs: uint32(ackTimeout.Milliseconds()), MaxDeliveries: 0xffff}
	q.send0(wire.OpSubscribe, 0, spec.Append(nil))
	if _, err := q.wait(q.corr); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return q
}

func (q *rawQueue) read() {
	defer close(q.in)
	dec := wire.NewDecoder(wire.DefaultMaxFrame)
	buf := make([]byte, 64<<10)
	for {
		n, err := q.nc.Read(buf)
		if n > 0 {
			if dec.Feed(buf[:n], func(f wire.Frame) error {
				f.Body = append([]byte(nil), f.Body...)
				q.in <- f
				return nil
			}) != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// send0 writes one frame with a fresh correlation id.
func (q *rawQueue) send0(op wire.Op, flags wire.Flags, body []byte) {
	q.corr++
	b, start := wire.BeginFrame(nil, op, flags, q.corr)
	b = wire.EndFrame(append(b, body...), start)
	_ = q.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = q.nc.Write(b) // a write lost to a dying broker shows as a missing reply
}

// send writes an Ack or Nack and does not wait for its reply.
func (q *rawQueue) send(op wire.Op, partition int32, offsets []int64) {
	q.send0(op, 0, wire.AppendAck(nil, q.sub, partition, 0, offsets))
}

// settle acks or nacks offsets and waits for the broker's answer.
func (q *rawQueue) settle(op wire.Op, partition int32, offsets []int64) error {
	for len(offsets) > 0 {
		n := min(len(offsets), 1000)
		q.send(op, partition, offsets[:n])
		if _, err := q.wait(q.corr); err != nil {
			return err
		}
		offsets = offsets[n:]
	}
	return nil
}

// wait returns the response to corr, keeping deliveries read meanwhile for next.
func (q *rawQueue) wait(corr uint32) (wire.Frame, error) {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-q.in:
			if !ok {
				return f, errors.New("connection closed")
			}
			switch {
			case f.Op == wire.OpDeliver:
				q.stash = append(q.stash, f)
			case f.Corr != corr:
			case f.Op == wire.OpError:
				return f, fmt.Errorf("error reply: %q", f.Body)
			default:
				return f, nil
			}
		case <-timeout:
			return wire.Frame{}, fmt.Errorf("no reply to request %d", corr)
		}
	}
}

// next returns the next delivery, or false after wait without one.
func (q *rawQueue) next(wait time.Duration) (queueDelivery, bool) {
	var f wire.Frame
	if len(q.stash) > 0 {
		f, q.stash = q.stash[0], q.stash[1:]
	} else {
		timeout := time.After(wait)
	wait:
		for {
			select {
			case g, ok := <-q.in:
				if !ok {
					return queueDelivery{}, false
				}
				if g.Op == wire.OpDeliver {
					f = g
					break wait
				}
			case <-timeout:
				return queueDelivery{}, false
			}
		}
	}
	var m wire.Deliver
	if err := m.Decode(f.Body); err != nil {
		q.t.Fatal(err)
	}
	d := queueDelivery{partition: m.Partition}
	var it wire.RecordIter
	var r wire.Record
	for rest := m.Batches; len(rest) > 0; {
		h, err := it.Reset(rest)
		if err != nil {
			q.t.Fatal(err)
		}
		rest = rest[h.Size():]
		for it.Next(&r) {
			d.offsets = append(d.offsets, r.Offset)
		}
	}
	q.owed += len(m.Batches)
	if q.owed >= 256<<10 {
		q.send0(wire.OpCredit, wire.FlagNoReply, (&wire.Credit{SubID: q.sub, Bytes: uint32(q.owed)}).Append(nil))
		q.owed = 0
	}
	return d, true
}

func (q *rawQueue) close() { q.nc.Close() }
