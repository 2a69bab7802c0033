package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/ring"
	"github.com/sluicemq/sluice/wire"
)

// Publish appends record batches (built with wire.BatchBuilder) to a partition in-process, with no
// socket in between, and returns once they meet durability d: none and written once they are in the
// partition's mapping, fsync once a group commit's fdatasync covers them (a memory-only topic never
// waits). partition < 0 picks one round-robin. The topic is created when the engine auto-creates
// topics (Options.AutoCreateTopics), else it must exist (CodeUnknownTopic). It returns the offsets
// of the first and last record stored. A caller that publishes to one partition over and over uses
// a Publisher instead, which skips the topic lookup.
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

// Local is an in-process subscription. Its owner is the one goroutine that calls its methods (Close
// included); Commit, Ack and Nack are the owner's too. Deliveries are slices of the log's mapping,
// handed over without a copy or a socket.
//
// Read it record by record with NextRecord (blocking) or PollRecord (never blocks), or delivery by
// delivery (runs of whole batches) with Next or Poll. Pick one of the two for a subscription: Next and
// Poll drop whatever the record iterator had not reached yet of the delivery before.
//
// Whatever a call hands out (a *Record, a *Delivery, and the bytes they point to) stays valid until
// the next call of any of those four methods or Close, which release it: copy what must outlive it.
//
// Wake-ups from producers (any goroutine) reach the owner through a lock-free MPSC ring; the owner
// arms the ring before it sleeps, and the first producer to publish after that signals it. A Local
// opened with LocalOptions.Spin never sleeps: see there.
type Local struct {
	e     *Engine
	sub   *Subscription
	inbox *ring.MPSC[localEvent]
	wake  chan struct{} // 1-buffered: the ring's waker
	spin  bool          // LocalOptions.Spin; immutable

	// Owner goroutine only:
	held Delivery // the delivery last handed out, released by the next call or Close
	has  bool     // held is a delivery not yet released by the Local
	rest []byte   // held's batches the record iterator has not opened yet
	iter bool     // it is inside a batch of held
	it   wire.RecordIter
	rec  Record // the record NextRecord and PollRecord hand out

	overflow atomic.Bool // the inbox was full: the owner rescans every cursor
}

// LocalOptions tune an in-process subscription. The zero value is the default.
type LocalOptions struct {
	// Spin makes Next and NextRecord wait by polling in a loop on the caller's goroutine, never
	// parking it: a record published on another core is seen within the loop's period (well under
	// a microsecond), instead of after a goroutine wake-up (several microseconds, and up to the
	// scheduler's whim on a loaded machine). The waiting goroutine burns its core all the while:
	// use it where the consumer has a core to itself. It also takes the wake-up off the producers'
	// path: the subscription's cursors never announce that they wait, so an append wakes nobody,
	// and the owner re-reads its partitions' ends on every poll instead. A consumer far behind takes
	// the page faults of a cold read on its own goroutine (without Spin they are taken off it).
	// A work-queue subscription spins but keeps the wake-ups, which its dispatch relies on.
	Spin bool
	// MayTopic, when set, is asked of each topic a pattern subscription matches
	// (SubscribeOptions.MayTopic): false leaves the topic out.
	MayTopic func(topic string) bool
}

type localEvent struct {
	cursor   *Cursor
	reassign bool
}

// localOwner is a Local as its subscription's Owner: Wake and Reassign are the engine's calls into
// it (from any goroutine), not part of the embedding API.
type localOwner Local

// Wake implements Owner.
func (o *localOwner) Wake(c *Cursor) { (*Local)(o).post(localEvent{cursor: c}) }

// Reassign implements Owner.
func (o *localOwner) Reassign(*Subscription) { (*Local)(o).post(localEvent{reassign: true}) }

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

// SubscribeLocal opens an in-process subscription with the default LocalOptions. spec.SubID and
// spec.Credit are ignored: the owner pulls, so no credit window is needed. The topic must exist
// (CodeUnknownTopic): subscribing never creates one.
func (e *Engine) SubscribeLocal(spec wire.Subscribe) (*Local, error) {
	return e.SubscribeLocalWith(spec, LocalOptions{})
}

// SubscribeLocalWith is SubscribeLocal with options. A pattern subscription's deliveries name their
// topic through Delivery.Partition.Topic().
func (e *Engine) SubscribeLocalWith(spec wire.Subscribe, o LocalOptions) (*Local, error) {
	l := &Local{e: e, wake: make(chan struct{}, 1), spin: o.Spin}
	var err error
	if l.inbox, err = ring.NewMPSC[localEvent](ring.Options{Capacity: 256, Waker: l.signal}); err != nil {
		return nil, err
	}
	spec.Credit = 0
	l.sub, _, err = e.SubscribeWith(spec, (*localOwner)(l), SubscribeOptions{MayTopic: o.MayTopic})
	if err != nil {
		return nil, err
	}
	l.sub.credit = math.MaxInt64
	// Before any cursor reads: a polled cursor never announces that it waits (Cursor.read).
	l.sub.polled = o.Spin && l.sub.queue == nil
	return l, nil
}

// Next returns the next delivery: one or more record batches of one partition, as stored. It
// blocks until there is one or ctx ends (a delivery already there is returned whatever ctx says).
// The delivery is the Local's: it stays valid until the next call or Close, which release it.
// Most callers want NextRecord, which walks the records and skips those before the subscription's
// position; a caller of Next walks the batches itself and skips records below Delivery.From.
func (l *Local) Next(ctx context.Context) (*Delivery, error) {
	done := ctx.Done()
	var idle time.Time // spinning: when the empty polls began, or the last yield
	for polls := 1; ; polls++ {
		d, err := l.Poll()
		if d != nil || err != nil {
			return d, err
		}
		if l.spin {
			if polls%spinCheck != 0 {
				continue
			}
			select {
			case <-done:
				return nil, ctx.Err()
			default:
			}
			if now := time.Now(); idle.IsZero() {
				idle = now
			} else if now.Sub(idle) >= spinYieldAfter {
				spinYield() // let goroutines waiting for this P run
				idle = time.Now()
			}
			continue
		}
		if !l.inbox.Arm() {
			continue
		}
		select {
		case <-l.wake:
		case <-done:
			return nil, ctx.Err()
		}
	}
}

// A spinning Next looks at its ctx and the clock every spinCheck empty polls (a look costs about
// what a poll does), and yields its P once it has found nothing for spinYieldAfter, then again every
// spinYieldAfter.
//
// The yield is for goroutines that wait for this P: with GOMAXPROCS at the CPUs and every P busy
// (a spinning consumer, a spin-paced producer), nothing else gets one until sysmon preempts a
// spinner, after 10 ms. It is not free: a yielded P runs whatever is queued, and a goroutine that
// then makes a blocking system call (a housekeeper's page population, a sync) keeps the P until
// sysmon takes it back, from microseconds to 10 ms, while the consumer waits in the run queue; and
// with an idle P the yield wakes a thread to look for work, which takes a CPU from a spinner. Once
// every 256 empty polls (tens of microseconds), the embedded busy-poll consumer at 1M msg/s was off
// its P in 817 yields per 4.6 s run, 108 ms in all, 13 ms at worst (GOMAXPROCS 4; 292 yields,
// 832 ms at GOMAXPROCS 2). A consumer that has found nothing for a millisecond has a tail already,
// and other goroutines wait at most about that long for its P.
const (
	spinCheck      = 16
	spinYieldAfter = time.Millisecond
)

// spinYield is a spinning Next's yield of its P. A variable for tests, which count the yields.
var spinYield = runtime.Gosched

// Poll returns the next delivery if one is ready, or nil: it never blocks and never parks the
// caller. Like Next, it releases what the previous call handed out, and the delivery it returns is
// the Local's until the next call or Close. It allocates nothing.
func (l *Local) Poll() (*Delivery, error) {
	l.releaseHeld()
	l.drain()
	if l.sub.closed {
		return nil, ErrSubscriptionClosed
	}
	if l.sub.polled {
		l.readyGrown()
	}
	d, ok, err := l.sub.Next(l.e.opts.MaxDeliverBytes)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	l.sub.credit = math.MaxInt64
	l.held, l.has = d, true
	l.rest, l.iter = d.Batches(), false
	return &l.held, nil
}

// Record is one record handed out by Local.NextRecord and Local.PollRecord: wire.Record's offset,
// timestamp (milliseconds since the epoch), key, value and headers (Headers, Header), and the
// partition it came from. Key, Value and the headers are views into the segment mapping (or into the
// Local's decompression buffer for a compressed batch), not copies: they stay valid until the
// Local's next call or Close, and must not be written to.
type Record struct {
	wire.Record
	Partition int32
}

// NextRecord returns the next record, in offset order within each partition, waiting for one as
// Next does. Records before the subscription's start offset (batches are stored whole, so a
// delivery may begin before it) are skipped. The record is the Local's: it is overwritten by the
// next call. It allocates nothing.
func (l *Local) NextRecord(ctx context.Context) (*Record, error) {
	for {
		if r, err := l.nextHeld(); r != nil || err != nil {
			return r, err
		}
		if _, err := l.Next(ctx); err != nil {
			return nil, err
		}
	}
}

// PollRecord returns the next record if one is ready, or nil: NextRecord that never blocks.
func (l *Local) PollRecord() (*Record, error) {
	for {
		if r, err := l.nextHeld(); r != nil || err != nil {
			return r, err
		}
		if d, err := l.Poll(); d == nil || err != nil {
			return nil, err
		}
	}
}

// nextHeld returns the next record of the held delivery at or after its From, or nil when the
// delivery is walked (or was released by its caller).
func (l *Local) nextHeld() (*Record, error) {
	if !l.has || l.held.Batches() == nil {
		return nil, nil
	}
	for {
		if l.iter {
			if l.it.Next(&l.rec.Record) {
				if l.rec.Offset < l.held.from {
					continue // delivered before: its batch began before the position
				}
				return &l.rec, nil
			}
			l.iter = false
			if err := l.it.Err(); err != nil {
				l.rest = nil
				return nil, fmt.Errorf("engine: partition %d: %w", l.rec.Partition, err)
			}
		}
		if len(l.rest) == 0 {
			return nil, nil
		}
		h, err := l.it.Reset(l.rest)
		if err != nil {
			l.rest = nil
			return nil, fmt.Errorf("engine: partition %d: %w", l.held.Partition.id, err)
		}
		l.rest = l.rest[h.Size():]
		if h.LastOffset() < l.held.from {
			continue
		}
		l.iter = true
		l.rec.Partition = l.held.Partition.id
	}
}

// releaseHeld releases the delivery last handed out.
func (l *Local) releaseHeld() {
	if l.has {
		l.held.Release()
		l.has, l.rest, l.iter = false, nil, false
	}
}

// readyGrown queues every cursor whose partition has records past it: a polled subscription's
// cursors are never woken by appends.
func (l *Local) readyGrown() {
	for _, c := range l.sub.cursors {
		if !c.ready && c.next < c.part.log.NextOffset() {
			l.sub.Ready(c)
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

// Commit stores the group's committed offset for partition p and waits until it is durable. A
// pattern subscription names the topic too: CommitPartition.
func (l *Local) Commit(ctx context.Context, p int32, offset int64) error {
	if l.sub.topic == nil {
		return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "a pattern subscription commits a topic's partition: CommitPartition"}
	}
	return l.commit(ctx, l.sub.topic, p, offset)
}

// CommitPartition stores the group's committed offset for partition p, as a delivery names it
// (Delivery.Partition: of any topic a pattern group member reads), and waits until it is durable.
// Errors as Commit's, and CodeInvalidRequest without a group.
func (l *Local) CommitPartition(ctx context.Context, p *Partition, offset int64) error {
	return l.commit(ctx, p.topic, p.id, offset)
}

func (l *Local) commit(ctx context.Context, t *Topic, p int32, offset int64) error {
	done := make(chan error, 1)
	l.e.CommitTopicOffset(t, l.sub.spec.Group, p, offset, func(err error) { done <- err })
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

// Close releases what the last call handed out and ends the subscription. Call it from the owner
// goroutine. It is safe to call twice.
func (l *Local) Close() {
	l.releaseHeld()
	l.sub.Close()
	l.inbox.Close()
}

// ErrSubscriptionClosed is returned by Next, Poll, NextRecord and PollRecord after Close.
var ErrSubscriptionClosed = errors.New("engine: subscription closed")
