package engine

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// Owner runs subscriptions on one goroutine: a network connection's event loop or an embedded
// subscriber. The engine calls Wake and Reassign from any goroutine; they must not block, and the
// owner acts on them later on its own goroutine.
type Owner interface {
	// Wake says cursor c has data again (or its partition is gone): the owner should call
	// c.Subscription().Ready(c) and deliver on its goroutine.
	Wake(c *Cursor)
	// Reassign says the group changed this subscription's partitions: the owner should call
	// s.ApplyAssignment on its goroutine.
	Reassign(s *Subscription)
}

// SyncWatcher hears that a partition's synced offset reached next. Called from the partition's
// flusher goroutine; it must not block.
type SyncWatcher interface {
	Synced(p *Partition, next int64)
}

// Cursor is a subscription's position in one partition.
type Cursor struct {
	part  *Partition
	sub   *Subscription
	owner Owner

	// next is the offset to deliver from. Owned by the owner goroutine.
	next int64
	// ready marks the cursor as queued in sub.ready. Owned by the owner goroutine.
	ready bool
	// waiting is set by the owner when the cursor has caught up, and cleared by whoever wakes it:
	// the appender (Partition.wake) or the owner's own re-check. Written from any goroutine.
	waiting atomic.Bool
}

// Partition is the cursor's partition.
func (c *Cursor) Partition() *Partition { return c.part }

// Subscription is the cursor's subscription.
func (c *Cursor) Subscription() *Subscription { return c.sub }

// Next is the offset the cursor delivers from next.
func (c *Cursor) Next() int64 { return c.next }

// read returns committed batches at the cursor, at most maxBytes unless one batch is larger. ok is
// false when the cursor has caught up; the owner is then woken when the partition grows.
func (c *Cursor) read(maxBytes int) (v disk.View, ok bool, err error) {
	for {
		if c.part.topic.deleted.Load() {
			return v, false, wire.CodeUnknownTopic
		}
		if c.next < c.end() {
			v, err = c.part.log.Read(c.next, maxBytes)
			if t := c.part.txns.Load(); t != nil && err == nil {
				v.Data, v.NextOffset = trimView(v.Data, v.NextOffset, c.end())
			}
		} else {
			err = errCaughtUp
		}
		switch {
		case err == nil:
			return v, true, nil
		case errors.Is(err, disk.ErrOffsetOutOfRange) && c.next < c.part.log.StartOffset():
			c.next = c.part.log.StartOffset() // retention removed what the cursor pointed at
			continue
		case err == errCaughtUp:
		default:
			return v, false, storageError(err)
		}
		if c.sub.polled {
			return v, false, nil // its owner re-reads the partition's end itself: wake nobody
		}
		// Caught up: announce it, then re-check, so an append racing with us is never missed. Go's
		// atomics are sequentially consistent: either the appender sees waiting, or we see its data.
		c.waiting.Store(true)
		if c.end() <= c.next {
			return v, false, nil
		}
		if !c.waiting.CompareAndSwap(true, false) {
			return v, false, nil // the appender won the flag: its Wake is on the way
		}
	}
}

var errCaughtUp = errors.New("engine: cursor caught up")

// end is the offset the cursor reads below: the partition's last stable offset (read committed),
// or its end for a read-uncommitted subscription. It takes no lock and does not allocate.
func (c *Cursor) end() int64 {
	if c.sub.spec.Isolation == wire.ReadUncommitted {
		return c.part.NextOffset()
	}
	return c.part.StableOffset()
}

// Subscription is one consumer's subscription: a set of cursors sharing a credit window.
type Subscription struct {
	ID    uint32
	e     *Engine
	owner Owner
	topic *Topic // nil for a pattern subscription: its cursors' partitions name their topics
	spec  wire.Subscribe

	// pattern marks a subscription whose spec.Topic is a topic pattern (pattern.go). Set at
	// Subscribe, then read-only.
	pattern bool
	// mayTopic, when set, says whether a topic matching the pattern may be delivered to this
	// subscription (the subscriber's consume right on it); a topic it refuses is skipped as if it
	// did not match. Set at Subscribe, then read-only; called on the owner goroutine.
	mayTopic func(name string) bool
	// matched holds the topics a pattern subscription reads (each with cursors on all of its
	// partitions; for a group member, the topics it offered its group, whose assignment says which
	// partitions it reads), each true when it was created while the subscription lived (read from
	// its first record, unless a group commit says otherwise). Owned by the owner goroutine.
	matched map[*Topic]bool
	// pending holds topics created since the owner last applied them (patternTable.created appends,
	// ApplyAssignment takes them). Guarded by pendingMu; written from the creating goroutine.
	pendingMu sync.Mutex
	pending   []*Topic

	// Owned by the owner goroutine:
	cursors []*Cursor
	ready   []*Cursor // cursors with data to deliver, in round-robin order
	credit  int64     // delivery bytes the consumer allows; may go negative by one batch
	closed  bool

	// err ends the subscription: set on the owner goroutine when an assignment cannot be applied (the
	// topic was deleted, or a start offset is out of range under ResetError); Next returns it.
	err error

	member *groupMember // non-nil for a group member
	queue  *queue       // non-nil in work-queue mode
	filter *filter      // non-nil with a filter (header terms or a CEL expression)

	// polled marks a subscription whose owner polls every cursor's partition end on each look
	// (Local with LocalOptions.Spin): its cursors never announce that they wait, so appends skip
	// the wake-up. Set before the first read, then read-only.
	polled bool
	ttl    *ttlFilter // drops expired records; made on the first delivery from a partition with TTL records

	mincoreVec []byte // scratch for the cold-read residency check (owner goroutine)
}

// Spec is the request that opened the subscription.
func (s *Subscription) Spec() wire.Subscribe { return s.spec }

// Topic is the subscribed topic, nil for a pattern subscription.
func (s *Subscription) Topic() *Topic { return s.topic }

// Pattern reports whether the subscription's topic is a pattern: its deliveries are of every
// matching topic, each named by its Partition.
func (s *Subscription) Pattern() bool { return s.pattern }

// SubscribeOptions are the engine-side settings of a subscription that are not part of its wire
// request.
type SubscribeOptions struct {
	// MayTopic, when set, is asked of each topic a pattern subscription matches, when it matches
	// (at subscribe, and when a matching topic is created later): false leaves the topic out, as if
	// it did not match. A network face passes the subscribing principal's consume right here, so a
	// pattern never reveals a topic its principal may not consume. Called on the owner goroutine;
	// it must not block. Unused for a plain topic (the face checks that one before subscribing).
	MayTopic func(topic string) bool
	// ClientID and Addr name the subscribing client (its Hello client id, and its peer address as
	// "ip:port") for DescribeGroup's member list; empty when unknown (an embedded caller). Kept only
	// for a group member (spec.Group, not a work queue).
	ClientID, Addr string
}

// Subscribe is SubscribeWith with no options.
func (e *Engine) Subscribe(spec wire.Subscribe, owner Owner) (*Subscription, []wire.PartitionOffset, error) {
	return e.SubscribeWith(spec, owner, SubscribeOptions{})
}

// SubscribeWith opens a subscription owned by owner. For a group member, the partitions come from the
// group's assignment (and change later through Owner.Reassign); otherwise from spec.Partition.
// It returns each partition's start offset. The topic must exist: subscribing never creates one
// (CodeUnknownTopic), even when the engine auto-creates topics on produce.
//
// A spec.Topic holding '*' or '>' is a pattern (pattern.go): the subscription reads every partition
// of each matching topic that opts.MayTopic allows, those there now from spec.Start and those
// created while it lives from their first record; it returns no start offsets (the deliveries name
// their topics). With a spec.Group it is a member of a group over the pattern: the group shares
// every partition of every matching topic its members may read (a topic created later, or deleted,
// rebalances it), each member's share announced per topic through Owner.Reassign as for a named
// topic, and its committed offsets kept per topic-partition; every member of the group subscribes
// to the same pattern (anything else is CodeInvalidRequest). A pattern takes no partition or
// work-queue mode (CodeInvalidRequest). A bad spec.Filter (header terms, or a CEL expression with
// spec.FilterLang) is CodeInvalidRequest with the reason. spec.Isolation wire.ReadUncommitted makes
// a stream subscription read transactions' records as soon as they are stored (up to the
// partition's end rather than its last stable offset), aborted ones included; control batches are
// never delivered. A work queue reads committed records only (CodeInvalidRequest).
func (e *Engine) SubscribeWith(spec wire.Subscribe, owner Owner, opts SubscribeOptions) (*Subscription, []wire.PartitionOffset, error) {
	if e.closed.Load() {
		return nil, nil, wire.CodeShuttingDown
	}
	if spec.Reset > wire.ResetError || spec.Mode > wire.ModeQueue || spec.Start > wire.StartCommitted || spec.Partition < -1 ||
		spec.Isolation > wire.ReadUncommitted {
		// The wire decoder refuses these; an embedded caller may still pass them.
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf(
			"subscribe mode %d, start %d, reset %d, partition %d, isolation %d", spec.Mode, spec.Start, spec.Reset, spec.Partition, spec.Isolation)}
	}
	if spec.Mode == wire.ModeQueue && spec.Isolation == wire.ReadUncommitted {
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "a work queue reads committed records only: no read-uncommitted"}
	}
	if IsPattern(spec.Topic) {
		return e.subscribePattern(spec, owner, opts)
	}
	t := e.TopicByName(spec.Topic)
	if t == nil {
		if err := e.failedTopic(spec.Topic); err != nil {
			return nil, nil, err // CodeStorageFailed: it is on disk but failed to open at start
		}
		return nil, nil, &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: spec.Topic}
	}
	var err error
	s := &Subscription{ID: spec.SubID, e: e, owner: owner, topic: t, spec: spec, credit: int64(spec.Credit)}
	if s.filter, err = parseFilter(spec.Filter, spec.FilterLang, e.opts.MaxBatchBytes); err != nil {
		return nil, nil, err
	}
	if s.filter != nil && spec.Mode == wire.ModeQueue {
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "a work queue takes every record: no filter"}
	}
	if spec.Mode == wire.ModeQueue {
		if spec.Group == "" {
			return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "a work-queue subscription names its group"}
		}
		s.queue = e.queues.join(s)
	} else if spec.Group != "" {
		if spec.Partition >= 0 {
			return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "a group member takes the partitions the group assigns"}
		}
		if err := e.groups.join(s, opts.ClientID, opts.Addr, []*Topic{t}); err != nil {
			return nil, nil, err // a pattern group's name
		}
		return s, nil, nil // the assignment arrives through Reassign
	}
	var parts []int32
	if spec.Partition < 0 {
		for i := range t.parts {
			parts = append(parts, int32(i))
		}
	} else if t.Partition(spec.Partition) == nil {
		return nil, nil, wire.CodeUnknownPartition
	} else {
		parts = []int32{spec.Partition}
	}
	starts := make([]wire.PartitionOffset, 0, len(parts))
	for _, id := range parts {
		p := t.parts[id]
		off, err := s.startOffset(p)
		if err != nil {
			return nil, nil, err
		}
		s.addCursor(p, off)
		starts = append(starts, wire.PartitionOffset{Partition: id, Offset: off})
	}
	return s, starts, nil
}

// startOffset is where the subscription starts partition p: the group's committed offset, else
// where spec.Start says. A committed offset or a StartOffset value outside the partition's retained
// range goes where spec.Reset says (see inRange).
func (s *Subscription) startOffset(p *Partition) (int64, error) {
	if s.queue != nil {
		qp := s.queue.parts[p.id]
		qp.mu.Lock()
		defer qp.mu.Unlock()
		qp.expireLocked() // never a start below the log start
		return qp.floor, nil
	}
	start := s.spec.Start
	if s.spec.Group != "" {
		if off, ok := s.e.offsets.Get(s.spec.Group, p.topic.cfg.Name, p.id); ok {
			return s.inRange(p, off, "committed offset")
		}
	}
	if s.matched[p.topic] {
		return p.StartOffset(), nil // a pattern's topic created while it lives: nothing produced to it is missed
	}
	switch start {
	case wire.StartCommitted:
		start = wire.StartEarliest
	case wire.StartOffset:
		return s.inRange(p, s.spec.StartValue, "start offset")
	}
	return p.resolveStart(start, s.spec.StartValue)
}

// inRange returns off if partition p holds it (from its oldest retained record to its end, where a
// consumer waits for the next record), else the offset spec.Reset picks: the oldest record
// (ResetEarliest), the end (ResetLatest), or CodeOffsetOutOfRange (ResetError). An offset beyond the
// end is never clamped to the end by default: records produced between the end and that offset
// would be skipped (a committed offset of a topic since recreated, or committed before commits were
// checked).
func (s *Subscription) inRange(p *Partition, off int64, what string) (int64, error) {
	lo, hi := p.StartOffset(), p.NextOffset()
	if off >= lo && off <= hi {
		return off, nil
	}
	switch s.spec.Reset {
	case wire.ResetLatest:
		return hi, nil
	case wire.ResetError:
		return 0, &wire.ProtocolError{Code: wire.CodeOffsetOutOfRange, Message: fmt.Sprintf(
			"%s %d of %s partition %d outside its records [%d, %d]", what, off, p.topic.cfg.Name, p.id, lo, hi)}
	}
	return lo, nil
}

func (s *Subscription) addCursor(p *Partition, off int64) {
	c := &Cursor{part: p, sub: s, owner: s.owner, next: off}
	s.cursors = append(s.cursors, c)
	p.addCursor(c)
	s.Ready(c)
}

// Ready queues cursor c for delivery. Owner goroutine only.
func (s *Subscription) Ready(c *Cursor) {
	if c.ready || s.closed || c.sub != s {
		return
	}
	c.ready = true
	s.ready = append(s.ready, c)
}

// Grouped reports whether the subscription is a consumer-group member (its partitions come from the
// group's assignment).
func (s *Subscription) Grouped() bool { return s.member != nil }

// HasReady reports whether some cursor may have data to deliver. Owner goroutine only.
func (s *Subscription) HasReady() bool { return len(s.ready) > 0 }

// ReadyAll queues every cursor, for an owner that lost track of wake-ups. Owner goroutine only.
func (s *Subscription) ReadyAll() {
	for _, c := range s.cursors {
		c.waiting.Store(false)
		s.Ready(c)
	}
}

// AddCredit grants the subscription more delivery bytes. Owner goroutine only.
func (s *Subscription) AddCredit(n uint32) { s.credit += int64(n) }

// Credit is the subscription's remaining delivery bytes.
func (s *Subscription) Credit() int64 { return s.credit }

// DeliverFunc writes one delivery: committed batches of partition p (data is a slice of the log's
// mapping, valid only during the call), with the partition's high watermark.
type DeliverFunc func(s *Subscription, p *Partition, hw int64, data []byte) error

// Delivery is a run of committed batches from one partition, read in place from the log's mapping.
// Until it is released the segment under it cannot be unmapped. A delivery from Subscription.Next
// is the caller's to release; one handed out by a Local is the Local's, released by its next call
// or Close (Release lets go sooner). Release is safe to call more than once.
type Delivery struct {
	Partition     *Partition
	HighWatermark int64
	view          disk.View
	owned         []byte // a work-queue redelivery or filtered records, built for it rather than read in place
	from          int64  // the subscription's position when it was read: records below it were delivered before
}

// From is the first offset the delivery is for: batches are stored and delivered whole, so its first
// batch may begin before it, with records the subscription has had already; skip those.
func (d *Delivery) From() int64 { return d.from }

// NextOffset is the offset after the batches of a Reader's Delivery, read in place; 0 when it has
// none.
func (d *Delivery) NextOffset() int64 { return d.view.NextOffset }

// Batches are the record batches, as stored: base offsets set, CRCs intact.
func (d *Delivery) Batches() []byte {
	if d.owned != nil {
		return d.owned
	}
	return d.view.Data
}

// Release drops the delivery's hold on the mapping; Batches is empty after it. A second call does
// nothing.
func (d *Delivery) Release() {
	d.view.Release() // nothing after the first time: it forgets its segment
	d.owned = nil
}

// Next takes the next delivery within the credit window, at most maxBytes unless one batch is larger.
// ok is false when no ready cursor has data (the owner is woken when one does) or credit is spent.
// Owner goroutine only. An error ends the subscription: the one ApplyAssignment recorded
// (CodeUnknownTopic, CodeOffsetOutOfRange), CodeStorageFailed when the log cannot be read, or a
// header filter's failure on a stored batch.
func (s *Subscription) Next(maxBytes int) (d Delivery, ok bool, err error) {
	if s.err != nil {
		return d, false, s.err
	}
	if s.queue != nil {
		return s.nextQueued(maxBytes)
	}
	for len(s.ready) > 0 && s.credit > 0 && !s.closed {
		c := s.ready[0]
		v, ok, err := c.read(int(min(int64(maxBytes), s.credit)))
		if err != nil && s.pattern && c.part.topic.deleted.Load() {
			s.dropTopic(c.part.topic) // a matched topic was deleted: its part ends, the rest go on
			continue
		}
		if err != nil {
			return d, false, err
		}
		if !ok {
			s.popReady()
			continue
		}
		if !s.polled && c.part.NextOffset()-c.next > coldLag && !isResident(v.Data, s.mincoreVec[:0]) {
			// Far behind and not in memory: fault it in off this goroutine, deliver when woken.
			s.popReady()
			s.e.metrics.ColdReads.Add(1)
			go prefetch(v, c)
			continue
		}
		from := c.next
		c.next = v.NextOffset
		s.rotateReady()
		d := Delivery{Partition: c.part, HighWatermark: c.part.NextOffset(), view: v, from: from}
		if t := c.part.txns.Load(); t != nil { // no markers; read committed: no aborted batches either
			var out []byte
			var changed bool
			if s.spec.Isolation == wire.ReadUncommitted {
				out, changed = withoutControl(d.view.Data) // no markers; every data batch stays
			} else {
				out, changed = t.committedOnly(d.view.Data)
			}
			if changed {
				d.view.Release() // out is a copy
				if len(out) == 0 {
					continue // only markers and aborted batches: read on
				}
				d.owned = out
			}
		}
		if s.filter != nil {
			out, err := s.filter.apply(d.Batches(), from, c.part.topic.cfg.Name)
			d.Release() // the filtered records are copies: what they were taken from is not needed past here
			if err != nil {
				return d, false, err
			}
			if len(out) == 0 {
				continue // nothing in this stretch matched: read on
			}
			if s.filter.stop >= 0 {
				c.next = s.filter.stop // a record ends the subscription: these first, then the error
			}
			d.owned = out
		}
		if c.part.ttlRecords.Load() && !s.dropExpired(&d, from) {
			continue // every record of this stretch had expired: read on
		}
		s.credit -= int64(len(d.Batches()))
		return d, true, nil
	}
	return d, false, nil
}

// popReady takes the cursor at the front of the ready queue off it. The queue's array is kept when
// it empties, so an owner that delivers from one cursor at a time does not allocate a new one per
// delivery; a drifted array is replaced by append once it runs out of room.
func (s *Subscription) popReady() {
	s.ready[0].ready = false
	if len(s.ready) == 1 {
		s.ready = s.ready[:0] // its slot is overwritten by the next Ready
	} else {
		s.ready[0] = nil // the array keeps no cursor alive from before the queue's start
		s.ready = s.ready[1:]
	}
}

// rotateReady moves the cursor at the front of the ready queue to the back (round-robin, so one busy
// partition cannot starve the others). A lone cursor stays where it is.
func (s *Subscription) rotateReady() {
	if len(s.ready) > 1 {
		s.ready = append(s.ready[1:], s.ready[0])
	}
}

// nextQueued is Next for a work-queue member: records come from the queue's shared dispatch position
// or its redeliveries, and the cursors serve only to be woken.
func (s *Subscription) nextQueued(maxBytes int) (Delivery, bool, error) {
	now := s.e.opts.Clock().UnixNano()
	m := s.queue.memberOf(s)
	for len(s.ready) > 0 && s.credit > 0 && !s.closed && m != nil {
		c := s.ready[0]
		qp := s.queue.parts[c.part.id]
		d, ok, err := qp.take(m, int(min(int64(maxBytes), s.credit)), now)
		if err != nil {
			return d, false, err
		}
		if ok {
			s.credit -= int64(len(d.Batches()))
			s.rotateReady()
			return d, true, nil
		}
		// Nothing now: wait, with the same announce-then-recheck as a stream cursor.
		c.waiting.Store(true)
		if !qp.hasWork(m, now) || !c.waiting.CompareAndSwap(true, false) {
			s.popReady()
		}
	}
	return Delivery{}, false, nil
}

// Deliver writes out everything the ready cursors have, within the credit window and maxBytes per
// delivery. Owner goroutine only. It returns the first error from fn or the log.
func (s *Subscription) Deliver(maxBytes int, fn DeliverFunc) error {
	for {
		d, ok, err := s.Next(maxBytes)
		if !ok || err != nil {
			return err
		}
		data := d.Batches()
		err = fn(s, d.Partition, d.HighWatermark, data)
		d.Release()
		if err != nil {
			return err
		}
	}
}

// Close ends the subscription: it leaves its group and stops its cursors. Owner goroutine only.
func (s *Subscription) Close() {
	if s.closed {
		return
	}
	s.closed = true
	for _, c := range s.cursors {
		c.part.removeCursor(c)
	}
	s.cursors, s.ready = nil, nil
	if s.member != nil {
		s.e.groups.leave(s)
	}
	if s.queue != nil {
		s.e.queues.leave(s)
	}
	if s.pattern {
		s.e.patterns.remove(s)
	}
}

// ApplyAssignment brings the cursors in line with the group's latest assignment for this member and
// returns it. For a pattern subscription it first takes the matching topics created since
// (Owner.Reassign told the owner of them): without a group it reads them whole and returns an empty
// Assign, which is not for sending; a pattern group member offers them to its group and returns its
// assignment per topic (Assign.Topics). If the topic was deleted (CodeUnknownTopic), or a
// partition's start offset is out of range under ResetError (CodeOffsetOutOfRange), it returns that
// error with the partitions it could apply, and the subscription ends: Next returns the error from
// then on. Owner goroutine only.
func (s *Subscription) ApplyAssignment() (wire.Assign, error) {
	if s.pattern {
		s.applyPending()
		if s.spec.Group != "" {
			return s.applyTopicAssignment()
		}
		return wire.Assign{SubID: s.ID}, s.err
	}
	gen, parts := s.e.groups.assignment(s)
	a := wire.Assign{SubID: s.ID, Generation: gen}
	if s.err == nil && s.topic.deleted.Load() {
		s.err = &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: "topic " + s.topic.cfg.Name + " was deleted"}
	}
	if s.err != nil {
		return a, s.err // no partitions: the owner ends the subscription on its next Next
	}
	kept := s.cursors[:0]
	for _, c := range s.cursors {
		if slices.Contains(parts, topicPart{c.part.topic, c.part.id}) {
			kept = append(kept, c)
			a.Partitions = append(a.Partitions, wire.PartitionOffset{Partition: c.part.id, Offset: c.next})
			continue
		}
		c.part.removeCursor(c)
		c.sub = nil // stale wake-ups for it are ignored
		if i := slices.Index(s.ready, c); i >= 0 {
			s.ready = slices.Delete(s.ready, i, i+1)
		}
	}
	s.cursors = kept
	for _, tp := range parts {
		id := tp.p
		if slices.ContainsFunc(s.cursors, func(c *Cursor) bool { return c.part.id == id }) {
			continue
		}
		p := s.topic.Partition(id)
		off, err := s.startOffset(p)
		if err != nil {
			s.err = err
			continue
		}
		s.addCursor(p, off)
		a.Partitions = append(a.Partitions, wire.PartitionOffset{Partition: id, Offset: off})
	}
	return a, s.err
}
