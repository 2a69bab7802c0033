package engine

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Work queues on the log. Subscriptions in wire.ModeQueue with the same group and topic are competing
// consumers: each record goes to one of them, and stays owed until that consumer acks it. A record not
// acked within the visibility timeout (or nacked) is delivered again, to whichever member asks next;
// after MaxDeliveries it is appended to the dead-letter topic "<topic>.dlq" and settled.
//
// State per partition (queuePart), guarded by its mutex — the queue path is not the streaming hot
// path, and competing consumers on different loops must agree on who takes what:
//
//	floor ─────────── next ─────────── log end
//	  │ settled below │ dispatched     │ not yet dispatched
//	                  │ (pending or due, or acked above floor)
//
// The floor is committed as the group's offset, so a restart redelivers everything above it that was
// not acked (at least once). Delivery counts live in memory: after a restart they start again at 1.

type queueKey struct{ group, topic string }

// queueTable holds the engine's work queues.
type queueTable struct {
	e      *Engine
	mu     sync.Mutex // guards queues
	queues map[queueKey]*queue
	stop   chan struct{}
	done   chan struct{}
}

type queue struct {
	key   queueKey
	topic *Topic
	parts []*queuePart
}

type pending struct {
	deadline   int64 // unix nanos: redeliver after this
	deliveries int
	sub        *Subscription // the member holding it; nil once due
}

type queuePart struct {
	mu        sync.Mutex // guards everything below
	q         *queue
	p         *Partition
	next      int64 // next offset to dispatch from the log
	floor     int64 // every offset below is settled
	committed int64 // the floor last handed to the offset store
	pending   map[int64]*pending
	due       map[int64]*pending // waiting for redelivery at deadline
	builder   *wire.BatchBuilder
	it        wire.RecordIter
}

func newQueueTable(e *Engine) *queueTable {
	qt := &queueTable{e: e, queues: map[queueKey]*queue{}, stop: make(chan struct{}), done: make(chan struct{})}
	go qt.janitor()
	return qt
}

// join attaches s to its queue, creating the queue (starting at the group's committed offsets, else
// where the subscription asks) on first use.
func (qt *queueTable) join(s *Subscription) *queue {
	qt.mu.Lock()
	defer qt.mu.Unlock()
	k := queueKey{s.spec.Group, s.topic.cfg.Name}
	q := qt.queues[k]
	if q == nil || q.topic != s.topic {
		q = &queue{key: k, topic: s.topic, parts: make([]*queuePart, len(s.topic.parts))}
		for i, p := range s.topic.parts {
			start, ok := qt.e.offsets.Get(k.group, k.topic, p.id)
			if !ok {
				start, _ = p.resolveStart(startPolicy(s.spec.Start), s.spec.StartValue)
			}
			start = min(max(start, p.StartOffset()), p.NextOffset())
			q.parts[i] = &queuePart{q: q, p: p, next: start, floor: start, committed: start,
				pending: map[int64]*pending{}, due: map[int64]*pending{}}
		}
		qt.queues[k] = q
	}
	return q
}

func startPolicy(s wire.StartAt) wire.StartAt {
	if s == wire.StartCommitted {
		return wire.StartEarliest
	}
	return s
}

// leave returns what s still holds to the queue for prompt redelivery.
func (qt *queueTable) leave(s *Subscription) {
	for _, qp := range s.queue.parts {
		qp.mu.Lock()
		for off, pd := range qp.pending {
			if pd.sub == s {
				pd.sub, pd.deadline = nil, 0
				delete(qp.pending, off)
				qp.due[off] = pd
			}
		}
		qp.mu.Unlock()
		qp.p.wake()
	}
}

func (qt *queueTable) close() {
	close(qt.stop)
	<-qt.done
}

// janitorInterval is how often visibility timeouts are checked and floors committed.
const janitorInterval = 50 * time.Millisecond

// janitor expires visibility timeouts and commits floors.
func (qt *queueTable) janitor() {
	defer close(qt.done)
	t := time.NewTicker(janitorInterval)
	defer t.Stop()
	for {
		select {
		case <-qt.stop:
			qt.sweep(true)
			return
		case <-t.C:
			qt.sweep(false)
		}
	}
}

func (qt *queueTable) sweep(final bool) {
	qt.mu.Lock()
	qs := make([]*queue, 0, len(qt.queues))
	for _, q := range qt.queues {
		qs = append(qs, q)
	}
	qt.mu.Unlock()
	now := qt.e.opts.Clock().UnixNano()
	for _, q := range qs {
		if q.topic.deleted.Load() {
			continue
		}
		for _, qp := range q.parts {
			qp.mu.Lock()
			expired := false
			for off, pd := range qp.pending {
				if pd.deadline <= now {
					pd.sub = nil
					delete(qp.pending, off)
					qp.due[off] = pd
					expired = true
				}
			}
			floor, changed := qp.floor, qp.floor != qp.committed
			qp.committed = qp.floor
			qp.mu.Unlock()
			if expired {
				qp.p.wake()
			}
			if changed || final {
				qt.e.offsets.Commit(OffsetKey{Group: q.key.group, Topic: q.key.topic, Partition: qp.p.id}, floor, func(error) {})
			}
		}
	}
}

// hasWork reports whether take could return something now.
func (qp *queuePart) hasWork(now int64) bool {
	qp.mu.Lock()
	defer qp.mu.Unlock()
	if qp.next < qp.p.NextOffset() {
		return true
	}
	for _, pd := range qp.due {
		if pd.deadline <= now {
			return true
		}
	}
	return false
}

// take hands s the next due redelivery, else the next batches from the log, marking every record in
// them pending for s.
func (qp *queuePart) take(s *Subscription, maxBytes int, now int64) (Delivery, bool, error) {
	qp.mu.Lock()
	defer qp.mu.Unlock()
	timeout := s.ackTimeout().Nanoseconds()
	for off, pd := range qp.due {
		if pd.deadline > now {
			continue
		}
		delete(qp.due, off)
		if pd.deliveries >= s.maxDeliveries() {
			if err := qp.deadLetterLocked(off, pd.deliveries); err != nil {
				qp.due[off] = pd
				return Delivery{}, false, err
			}
			qp.settleLocked()
			continue
		}
		batch, err := qp.recordBatchLocked(off)
		if err != nil {
			return Delivery{}, false, err
		}
		pd.deliveries++
		pd.deadline, pd.sub = now+timeout, s
		qp.pending[off] = pd
		return Delivery{Partition: qp.p, HighWatermark: qp.p.NextOffset(), owned: batch}, true, nil
	}
	if qp.next >= qp.p.NextOffset() {
		return Delivery{}, false, nil
	}
	v, err := qp.p.log.Read(qp.next, maxBytes)
	if err != nil {
		return Delivery{}, false, storageError(err)
	}
	for rest := v.Data; len(rest) >= wire.BatchHeaderSize; {
		h, err := wire.ParseBatchHeader(rest)
		if err != nil {
			break
		}
		for off := max(h.BaseOffset, qp.next); off <= h.LastOffset(); off++ {
			qp.pending[off] = &pending{deadline: now + timeout, deliveries: 1, sub: s}
		}
		rest = rest[h.Size():]
	}
	qp.next = v.NextOffset
	return Delivery{Partition: qp.p, HighWatermark: qp.p.NextOffset(), view: v}, true, nil
}

// settle acks or nacks offsets held by s. A nack makes them due after delay.
func (qp *queuePart) settle(s *Subscription, offsets func(i int) int64, n int, nack bool, delay time.Duration) {
	qp.mu.Lock()
	now := qp.q.topic.e.opts.Clock().UnixNano()
	for i := 0; i < n; i++ {
		off := offsets(i)
		pd := qp.pending[off]
		if pd == nil || pd.sub != s {
			continue // already settled, expired or held by another member: nothing to do
		}
		delete(qp.pending, off)
		if nack {
			pd.sub, pd.deadline = nil, now+delay.Nanoseconds()
			qp.due[off] = pd
		}
	}
	qp.settleLocked()
	qp.mu.Unlock()
	if nack {
		if delay > 0 {
			time.AfterFunc(delay, qp.p.wake)
		} else {
			qp.p.wake()
		}
	}
}

// settleLocked advances the floor over every settled offset.
func (qp *queuePart) settleLocked() {
	for qp.floor < qp.next {
		if qp.pending[qp.floor] != nil || qp.due[qp.floor] != nil {
			return
		}
		qp.floor++
	}
}

// recordBatchLocked builds a one-record batch holding the record at off, with its original offset:
// redelivery sends only what is owed, not the batch it came in.
func (qp *queuePart) recordBatchLocked(off int64) ([]byte, error) {
	v, err := qp.p.log.Read(off, 1)
	if err != nil {
		return nil, storageError(err)
	}
	defer v.Release()
	if qp.builder == nil {
		qp.builder = wire.NewBatchBuilder(1024)
	}
	if _, err := qp.it.Reset(v.Data); err != nil {
		return nil, err
	}
	var r wire.Record
	for qp.it.Next(&r) {
		if r.Offset != off {
			continue
		}
		qp.builder.Reset()
		qp.builder.Append(r.Key, r.Value, r.AppendHeaders(nil), r.Timestamp)
		b, err := qp.builder.Build()
		if err != nil {
			return nil, err
		}
		out := append([]byte(nil), b...)
		wire.SetBaseOffset(out, off)
		return out, nil
	}
	if err := qp.it.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("engine: queue: record %d not found in its batch", off)
}

// DeadLetterSuffix names a queue's dead-letter topic after its source topic.
const DeadLetterSuffix = ".dlq"

// deadLetterLocked appends the record at off to the dead-letter topic, with headers naming where it
// came from and how often it was delivered.
func (qp *queuePart) deadLetterLocked(off int64, deliveries int) error {
	v, err := qp.p.log.Read(off, 1)
	if err != nil {
		return storageError(err)
	}
	defer v.Release()
	if _, err := qp.it.Reset(v.Data); err != nil {
		return err
	}
	e := qp.q.topic.e
	var r wire.Record
	for qp.it.Next(&r) {
		if r.Offset != off {
			continue
		}
		hdrs := r.AppendHeaders(nil)
		hdrs = append(hdrs,
			wire.Header{Key: []byte("sluice-dlq-topic"), Value: []byte(qp.q.topic.cfg.Name)},
			wire.Header{Key: []byte("sluice-dlq-group"), Value: []byte(qp.q.key.group)},
			wire.Header{Key: []byte("sluice-dlq-partition"), Value: strconv.AppendInt(nil, int64(qp.p.id), 10)},
			wire.Header{Key: []byte("sluice-dlq-offset"), Value: strconv.AppendInt(nil, off, 10)},
			wire.Header{Key: []byte("sluice-dlq-deliveries"), Value: strconv.AppendInt(nil, int64(deliveries), 10)})
		b := wire.NewBatchBuilder(len(r.Value) + 512)
		b.Append(r.Key, r.Value, hdrs, r.Timestamp)
		batch, err := b.Build()
		if err != nil {
			return err
		}
		name := qp.q.topic.cfg.Name + DeadLetterSuffix
		if e.TopicByName(name) == nil {
			if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1}); err != nil && e.TopicByName(name) == nil {
				return err
			}
		}
		_, _, err = e.Publish(context.Background(), name, 0, batch, wire.DurabilityWritten)
		return err
	}
	return fmt.Errorf("engine: queue: record %d not found in its batch", off)
}

func (s *Subscription) ackTimeout() time.Duration {
	if s.spec.AckTimeoutMs > 0 {
		return time.Duration(s.spec.AckTimeoutMs) * time.Millisecond
	}
	return s.e.opts.QueueAckTimeout
}

func (s *Subscription) maxDeliveries() int {
	if s.spec.MaxDeliveries > 0 {
		return int(s.spec.MaxDeliveries)
	}
	return s.e.opts.QueueMaxDeliveries
}

// Ack settles work-queue records of partition p as processed. Offsets not held by s are ignored.
func (s *Subscription) Ack(p int32, n int, offset func(i int) int64) error {
	qp, err := s.queuePart(p)
	if err != nil {
		return err
	}
	qp.settle(s, offset, n, false, 0)
	return nil
}

// Nack returns work-queue records of partition p for redelivery after delay.
func (s *Subscription) Nack(p int32, n int, offset func(i int) int64, delay time.Duration) error {
	qp, err := s.queuePart(p)
	if err != nil {
		return err
	}
	qp.settle(s, offset, n, true, delay)
	return nil
}

func (s *Subscription) queuePart(p int32) (*queuePart, error) {
	if s.queue == nil {
		return nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "not a work-queue subscription"}
	}
	if p < 0 || int(p) >= len(s.queue.parts) {
		return nil, wire.CodeUnknownPartition
	}
	return s.queue.parts[p], nil
}
