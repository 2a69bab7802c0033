package engine

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/ring"
	"github.com/sluicemq/sluice/wire"
)

// Publish appends record batches (built with wire.BatchBuilder) to a partition in-process, with no
// socket in between, and returns once they meet durability d. partition < 0 picks one round-robin.
func (e *Engine) Publish(ctx context.Context, topic string, partition int32, batches []byte, d wire.Durability) (base, last int64, err error) {
	t, err := e.AutoCreate(topic)
	if err != nil {
		return 0, 0, err
	}
	p, err := t.PickPartition(partition)
	if err != nil {
		return 0, 0, err
	}
	base, last, err = p.Append(batches)
	if err != nil || d != wire.DurabilityFsync || t.Memory() {
		return base, last, err
	}
	return base, last, p.log.WaitSynced(ctx, last+1)
}

// Local is an in-process subscription: its owner is the goroutine that calls Next. Deliveries are
// slices of the log's mapping, handed over without a copy or a socket.
//
// Wake-ups from producers (any goroutine) reach the owner through a lock-free MPSC ring; the owner
// arms the ring before it sleeps, and the first producer to publish after that signals it.
type Local struct {
	e     *Engine
	sub   *Subscription
	inbox *ring.MPSC[localEvent]
	wake  chan struct{} // 1-buffered: the ring's waker
	held  Delivery      // the delivery returned by the last Next, released by the next one
	has   bool

	overflow atomic.Bool // the inbox was full: the owner rescans every cursor
}

type localEvent struct {
	cursor   *Cursor
	reassign bool
}

// Wake implements Owner.
func (l *Local) Wake(c *Cursor) { l.post(localEvent{cursor: c}) }

// Reassign implements Owner.
func (l *Local) Reassign(*Subscription) { l.post(localEvent{reassign: true}) }

func (l *Local) post(ev localEvent) {
	if !l.inbox.Offer(ev) {
		// Full: the owner has many wake-ups queued already; make it rescan every cursor.
		l.overflow.Store(true)
		l.signal()
	}
}

func (l *Local) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// SubscribeLocal opens an in-process subscription. spec.SubID and spec.Credit are ignored: the owner
// pulls with Next, so no credit window is needed.
func (e *Engine) SubscribeLocal(spec wire.Subscribe) (*Local, error) {
	return e.SubscribeLocalWith(spec, SubscribeOptions{})
}

// SubscribeLocalWith is SubscribeLocal with options (a pattern's per-topic check). A pattern
// subscription's deliveries name their topic through Delivery.Partition.Topic().
func (e *Engine) SubscribeLocalWith(spec wire.Subscribe, opts SubscribeOptions) (*Local, error) {
	l := &Local{e: e, wake: make(chan struct{}, 1)}
	var err error
	if l.inbox, err = ring.NewMPSC[localEvent](ring.Options{Capacity: 256, Waker: l.signal}); err != nil {
		return nil, err
	}
	spec.Credit = 0
	l.sub, _, err = e.SubscribeWith(spec, l, opts)
	if err != nil {
		return nil, err
	}
	l.sub.credit = math.MaxInt64
	return l, nil
}

// Next returns the next delivery: one or more record batches of one partition (iterate them with
// wire.RecordIter; the first may start before the offset asked for). It blocks until there is one or
// ctx ends. The delivery stays valid until the next call to Next or Close.
func (l *Local) Next(ctx context.Context) (Delivery, error) {
	if l.has {
		l.held.Release()
		l.has = false
	}
	for {
		l.drain()
		if l.sub.closed {
			return Delivery{}, ErrSubscriptionClosed
		}
		d, ok, err := l.sub.Next(l.e.opts.MaxDeliverBytes)
		if err != nil {
			return Delivery{}, err
		}
		if ok {
			l.sub.credit = math.MaxInt64
			l.held, l.has = d, true
			return d, nil
		}
		if !l.inbox.Arm() {
			continue
		}
		select {
		case <-l.wake:
		case <-ctx.Done():
			return Delivery{}, ctx.Err()
		}
	}
}

func (l *Local) drain() {
	l.inbox.Poll(l.inbox.Cap(), func(ev *localEvent) {
		switch {
		case ev.cursor != nil:
			if ev.cursor.sub == l.sub {
				l.sub.Ready(ev.cursor)
			}
		case ev.reassign:
			l.sub.ApplyAssignment()
			l.e.groups.handBackRevoked(l.sub) // its cursors on them are gone
		}
	})
	if l.overflow.CompareAndSwap(true, false) && !l.sub.closed {
		if l.sub.member != nil || l.sub.pattern { // a pattern's pending topics too
			l.sub.ApplyAssignment()
			l.e.groups.handBackRevoked(l.sub)
		}
		l.sub.ReadyAll()
	}
}

// Position is the next offset the subscription will deliver from in partition p, or -1.
func (l *Local) Position(p int32) int64 {
	for _, c := range l.sub.cursors {
		if c.part.id == p {
			return c.next
		}
	}
	return -1
}

// Commit stores the group's committed offset for partition p and waits until it is durable.
func (l *Local) Commit(ctx context.Context, p int32, offset int64) error {
	if l.sub.topic == nil {
		return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "a pattern subscription has no group to commit for"}
	}
	done := make(chan error, 1)
	l.e.CommitTopicOffset(l.sub.topic, l.sub.spec.Group, p, offset, func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ack settles work-queue records of partition p as processed.
func (l *Local) Ack(p int32, offsets ...int64) error {
	return l.sub.Ack(p, len(offsets), func(i int) int64 { return offsets[i] })
}

// SyncSettlements calls done once every work-queue ack recorded so far is on disk (see
// Subscription.SyncSettlements), from the queue state store's writer goroutine.
func (l *Local) SyncSettlements(done func(error)) { l.sub.SyncSettlements(done) }

// Nack returns work-queue records of partition p for redelivery after delay.
func (l *Local) Nack(p int32, delay time.Duration, offsets ...int64) error {
	return l.sub.Nack(p, len(offsets), func(i int) int64 { return offsets[i] }, delay)
}

// Close ends the subscription. Call it from the owner goroutine.
func (l *Local) Close() {
	if l.has {
		l.held.Release()
		l.has = false
	}
	l.sub.Close()
	l.inbox.Close()
}

// ErrSubscriptionClosed is returned by Next after Close.
var ErrSubscriptionClosed = errors.New("engine: subscription closed")
