package bench

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by a floor producer after its target was closed.
var ErrClosed = errors.New("bench: target closed")

// floorDepth is the number of payload buffers per consumer queue: deep enough that a consumer's
// scheduling hiccup does not push back on the producer at the rates the harness is run at, shallow
// enough (depth × payload size) to stay in cache at small payloads.
const floorDepth = 1024

// FloorTarget is the harness floor: an in-process hand-off from producer to consumer with no broker.
// Each consumer owns a queue of preallocated payload buffers; a send takes a free buffer (blocking when
// all are in flight: that is its backpressure), copies the payload in, and hands the buffer to the
// consumer over a channel. Nothing is allocated per message. Its latency is the harness's own: pacing,
// clock reads, one copy, a goroutine wake-up and the histogram record.
type FloorTarget struct {
	cfg    Config
	queues []floorQueue
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

type floorQueue struct {
	data chan []byte // buffers holding a payload, producer → consumer
	free chan []byte // empty buffers, consumer → producer
}

// NewFloorTarget returns an unopened floor target.
func NewFloorTarget() *FloorTarget { return &FloorTarget{} }

// Name implements Target.
func (t *FloorTarget) Name() string { return FloorName }

// Open implements Target: one queue per consumer.
func (t *FloorTarget) Open(_ context.Context, cfg Config) error {
	t.cfg = cfg.WithDefaults()
	t.done = make(chan struct{})
	t.queues = make([]floorQueue, t.cfg.Consumers)
	for i := range t.queues {
		q := floorQueue{data: make(chan []byte, floorDepth), free: make(chan []byte, floorDepth)}
		for range floorDepth {
			q.free <- make([]byte, t.cfg.PayloadSize)
		}
		t.queues[i] = q
	}
	return nil
}

// Producer implements Target. Keyed messages go to the queue their key hashes to; unkeyed ones go round
// robin, so every consumer gets a share.
func (t *FloorTarget) Producer(i int) Producer { return &floorProducer{t: t, rr: i} }

// Consume implements Target.
func (t *FloorTarget) Consume(i int, deliver func(payload []byte)) error {
	q := t.queues[i]
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			select {
			case b := <-q.data:
				deliver(b)
				q.free <- b[:cap(b)]
			case <-t.done:
				return
			}
		}
	}()
	return nil
}

// Close implements Target: it stops the consumers and waits for them.
func (t *FloorTarget) Close() error {
	if t.done != nil {
		close(t.done)
		t.wg.Wait()
		t.done = nil
	}
	return nil
}

type floorProducer struct {
	t  *FloorTarget
	rr int // round-robin position for unkeyed messages
}

func (p *floorProducer) Send(key, payload []byte) error {
	qs := p.t.queues
	var q floorQueue
	if key == nil {
		p.rr++
		q = qs[p.rr%len(qs)]
	} else {
		q = qs[fnv1a(key)%uint32(len(qs))]
	}
	var b []byte
	select {
	case b = <-q.free:
	case <-p.t.done:
		return ErrClosed
	}
	b = b[:copy(b[:cap(b)], payload)]
	q.data <- b // cannot block: at most floorDepth buffers exist for this queue
	return nil
}

func (p *floorProducer) Flush() error { return nil }

// fnv1a hashes a key to pick a queue, allocation-free.
func fnv1a(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}
