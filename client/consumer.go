package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// minResubCredit is the smallest window a per-partition resubscription gets.
const minResubCredit = 64 << 10

// partState is the consumer's view of one partition.
type partState struct {
	partition int32
	// epoch advances whenever the partition is (re)assigned or resubscribed: deliveries stamped with
	// an older epoch were cut for a cursor that no longer exists and are dropped.
	epoch    uint32
	assigned bool
	// position is the next offset to hand to the application; records below it are skipped (the
	// broker delivers whole batches). Not used by work queues.
	position int64
	// processed is the offset after the last record the application finished: what a commit stores.
	processed int64
	// committed is the offset last stored by a commit (or the start offset of the assignment).
	committed int64
	// before is the highest processed offset the partition had when startLocked restarted it, over
	// all its restarts: a restart at or after it continues the records this consumer has handed out
	// (settleLocked).
	before int64
	// topic is the partition's topic under a pattern subscription (its key in parts is then a slot,
	// pattern.go); empty otherwise.
	topic string
}

// delivery is one Deliver push: its batches, left where they arrived in the connection's read
// buffer, and a reference to that buffer (frameReader.lend), which keeps the reader from writing over
// them. The reference belongs to the consumer from push until Next moves past the delivery (or Close
// drops it); records handed out point into the batches, which is why a Message is valid only until
// the next Next.
type delivery struct {
	sub       *subscription
	partition int32
	hw        int64
	epoch     uint32
	data      []byte   // the delivery's batches, in rb
	rb        *readBuf // nil for no delivery
}

// Consumer receives the records of one topic: from Next (iterator style) or Consume (handler
// style), one goroutine at a time. Commit, Close and the Message methods may be called from any
// goroutine.
type Consumer struct {
	c     *Client
	topic string
	opts  ConsumerOptions

	mu         sync.Mutex
	parts      map[int32]*partState // guarded by mu
	subs       []*subscription      // guarded by mu: the broker subscriptions on the current connection
	cn         *conn                // guarded by mu: the connection subs live on
	queue      []delivery           // guarded by mu: deliveries not yet read, FIFO from qhead
	qhead      int                  // guarded by mu
	generation uint32               // guarded by mu: the group generation of the last assignment
	closed     bool                 // guarded by mu
	err        error                // guarded by mu: a failure that ends the subscription
	corrupt    error                // guarded by mu: the unreadable batch that stopped Next (CorruptStop); sticky
	stats      ConsumerStats        // guarded by mu

	// rd reads the current delivery and remembers the last record returned; guarded by mu (Next
	// holds it while it works, so Commit and the connection's reader goroutine see a consistent
	// state).
	rd deliveryReader

	// ended (capacity 1) tells maintain that the broker ended one of the consumer's subscriptions
	// (a SubEnded push); lastEnd is why, and endRepeat how many endings in a row had that same
	// code and message with no delivery between them. Both guarded by mu.
	ended     chan struct{}
	lastEnd   *wire.ProtocolError
	endRepeat int

	notify   chan struct{} // capacity 1: a delivery was queued, or the consumer closed or failed
	ctx      context.Context
	cancel   context.CancelFunc
	commitMu sync.Mutex // serializes commits
	wg       sync.WaitGroup

	// handBacks counts the hand-backs of revoked partitions in flight (handBack); Add only under mu
	// while not closed, so that Close, which waits for them before unsubscribing, sees every one.
	handBacks sync.WaitGroup

	// pattern marks a consumer of a topic pattern (pattern.go): its parts are keyed by slots, one per
	// topic-partition, which slots assigns. Guarded by mu.
	pattern bool
	slots   map[slotKey]int32
}

// Subscribe opens a consumer on topic. It returns once the broker has accepted the subscription.
// Errors: ErrOptions for invalid options; ErrClosed once the client is closed; ctx's error; the
// broker's refusal, matching its code (wire.CodeUnknownTopic, wire.CodeNotAuthorized,
// wire.CodeOffsetOutOfRange under wire.ResetError, wire.CodeInvalidRequest for a bad filter).
func (c *Client) Subscribe(ctx context.Context, topic string, opts ...ConsumerOption) (*Consumer, error) {
	o := DefaultConsumerOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cons := &Consumer{c: c, topic: topic, opts: o, parts: map[int32]*partState{}, notify: make(chan struct{}, 1),
		ended: make(chan struct{}, 1)}
	cons.rd.init(cons)
	if isPattern(topic) {
		if err := o.validatePattern(topic); err != nil {
			return nil, err
		}
		cons.pattern, cons.slots = true, map[slotKey]int32{}
	}
	cons.ctx, cons.cancel = context.WithCancel(c.closeCtx)
	cn, err := c.waitConn(ctx)
	if err != nil {
		cons.cancel()
		return nil, err
	}
	if err := cons.subscribe(ctx, cn, false); err != nil {
		cons.cancel()
		cons.dropSubs()
		return nil, err
	}
	cons.wg.Add(1)
	go cons.maintain()
	if o.Group != "" && o.AutoCommit > 0 && !o.Queue {
		cons.wg.Add(1)
		go cons.autoCommit()
	}
	return cons, nil
}

// Topic is the consumer's topic.
func (c *Consumer) Topic() string { return c.topic }

// Assigned lists the partitions the consumer currently reads, ascending.
func (c *Consumer) Assigned() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int32
	for p, ps := range c.parts {
		if ps.assigned {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Generation is the group generation of the consumer's latest assignment (0 without a group).
func (c *Consumer) Generation() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.generation
}

// subscribe opens the broker subscriptions on cn: the requested one the first time; after a
// reconnect, a group member or work queue asks again the same way (a member starts from the
// committed offsets), and a plain subscription resumes every partition at its position.
func (c *Consumer) subscribe(ctx context.Context, cn *conn, resume bool) error {
	base := wire.Subscribe{
		Topic: c.topic, Partition: c.opts.Partition, Group: c.opts.Group,
		Start: c.opts.start(), StartValue: c.opts.StartValue, Reset: c.opts.Reset, Credit: uint32(c.opts.Credit),
		AckTimeoutMs: uint32(c.opts.AckTimeout.Milliseconds()), MaxDeliveries: uint16(c.opts.MaxDeliveries),
		Filter: c.opts.Filter, FilterLang: c.opts.FilterLang, Isolation: c.opts.Isolation,
	}
	if c.opts.Queue {
		base.Mode = wire.ModeQueue
		base.MaxAckPending = uint32(c.opts.MaxAckPending)
	}
	var specs []wire.Subscribe
	if resume && c.pattern {
		base.Start, base.StartValue = wire.StartEarliest, 0 // positions skip what was handed out (pattern.go)
	} else if resume && c.opts.Group == "" && !c.opts.Queue {
		c.mu.Lock()
		for _, ps := range c.parts {
			s := base
			s.Partition, s.Start, s.StartValue = ps.partition, wire.StartOffset, ps.position
			specs = append(specs, s)
		}
		c.mu.Unlock()
		slices.SortFunc(specs, func(a, b wire.Subscribe) int { return int(a.Partition) - int(b.Partition) })
		if len(specs) > 1 {
			credit := max(c.opts.Credit/len(specs), minResubCredit)
			for i := range specs {
				specs[i].Credit = uint32(credit)
			}
		}
	}
	if len(specs) == 0 {
		specs = []wire.Subscribe{base}
	}
	c.mu.Lock()
	c.cn = cn
	c.mu.Unlock()
	for _, spec := range specs {
		err := c.subscribeOne(ctx, cn, spec)
		if errors.Is(err, wire.CodeOffsetOutOfRange) && spec.Start == wire.StartOffset && spec.Reset != wire.ResetError {
			c.c.log.Warn("sluice: resume offset no longer retained; resuming at the earliest", "topic", c.topic, "partition", spec.Partition, "offset", spec.StartValue)
			spec.Start, spec.StartValue = wire.StartEarliest, 0
			err = c.subscribeOne(ctx, cn, spec)
		}
		if err != nil {
			return wrapf(err, "subscribe %s", c.topic)
		}
	}
	return nil
}

func (c *Consumer) subscribeOne(ctx context.Context, cn *conn, spec wire.Subscribe) error {
	s := &subscription{id: c.c.newSubID(), cn: cn, cons: c, window: spec.Credit}
	spec.SubID = s.id
	c.mu.Lock()
	c.subs = append(c.subs, s)
	c.mu.Unlock()
	c.c.addSub(s)
	k := &call{ch: make(chan struct{}, 1)}
	k.onReply = func(body []byte) { // reader goroutine, before any delivery for this subscription
		var r wire.SubscribeReply
		if err := r.Decode(body); err != nil {
			return
		}
		c.mu.Lock()
		for _, st := range r.Starts {
			c.startLocked(st.Partition, st.Offset)
		}
		c.mu.Unlock()
	}
	_, err := c.c.roundTripOn(ctx, cn, wire.OpSubscribe, k, spec.Append)
	if err != nil {
		c.c.removeSub(s.id)
		c.mu.Lock()
		c.subs = slices.DeleteFunc(c.subs, func(x *subscription) bool { return x == s })
		c.mu.Unlock()
	}
	return err
}

// startLocked (re)starts partition p at offset: deliveries cut before are dropped.
func (c *Consumer) startLocked(p int32, offset int64) *partState {
	ps := c.parts[p]
	if ps == nil {
		ps = &partState{partition: p}
		c.parts[p] = ps
	}
	ps.epoch++
	ps.assigned = true
	ps.before = max(ps.before, ps.processed)
	ps.position, ps.processed, ps.committed = offset, offset, offset
	return ps
}

// applyAssign takes a group assignment. Reader goroutine. Partitions kept keep their position (the
// broker's cursor continues); new ones start at the offset given; lost ones stop, and are handed
// back to the broker (handBack), which gives them to their new member only then.
func (c *Consumer) applyAssign(s *subscription, a *wire.Assign) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !slices.Contains(c.subs, s) {
		return
	}
	c.generation = a.Generation
	var back []wire.Commit
	if c.pattern {
		back = c.applyTopicAssignLocked(a)
	}
	for p, ps := range c.parts {
		if !c.pattern && ps.assigned && !slices.ContainsFunc(a.Partitions, func(x wire.PartitionOffset) bool { return x.Partition == p }) {
			ps.assigned = false
			ps.epoch++
			back = append(back, wire.Commit{Group: c.opts.Group, Topic: c.topic, Partition: p, Offset: c.handBackAt(ps)})
		}
	}
	if len(back) > 0 {
		c.handBacks.Add(1)
		go c.handBack(s.cn, back)
	}
	if c.pattern {
		c.c.log.Debug("sluice: assignment", "pattern", c.topic, "group", c.opts.Group, "generation", a.Generation, "topics", len(a.Topics))
		return
	}
	for _, po := range a.Partitions {
		if ps := c.parts[po.Partition]; ps != nil && ps.assigned {
			continue
		}
		c.startLocked(po.Partition, po.Offset)
	}
	c.c.log.Debug("sluice: assignment", "topic", c.topic, "group", c.opts.Group, "generation", a.Generation, "partitions", len(a.Partitions))
}

// handBackAt is the offset a revoked partition is handed back with: its processed offset with
// automatic commits on, else handBackOffset. ps has just been unassigned: from here ps.processed no
// longer moves (settleLocked checks assigned), so it is final. Caller holds c.mu.
func (c *Consumer) handBackAt(ps *partState) int64 {
	if c.opts.AutoCommit > 0 {
		return ps.processed
	}
	return handBackOffset
}

// handBackOffset, committed, stores nothing and hands the partition back to the broker (docs/protocol.md,
// Commit).
const handBackOffset = -1

// handBack tells the broker that the consumer stopped reading the partitions an assignment took away,
// so it may give them to their new member: with automatic commits on, by committing each one's
// processed offset (the new member starts there, so it receives no record this consumer processed,
// as the Java client and librdkafka commit on revocation); otherwise with handBackOffset, leaving the
// application's own commits as they are. The commits are pipelined on cn and bounded by the client's
// RequestTimeout; a failed one only makes the broker wait its revoke timeout.
func (c *Consumer) handBack(cn *conn, back []wire.Commit) {
	defer c.handBacks.Done()
	ctx, cancel := context.WithTimeout(c.c.closeCtx, c.c.opts.RequestTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range back {
		wg.Go(func() {
			if _, err := c.c.roundTripOn(ctx, cn, wire.OpCommit, &call{ch: make(chan struct{}, 1)}, m.Append); err != nil {
				c.c.log.Debug("sluice: hand-back of a revoked partition failed", "group", m.Group, "topic", m.Topic,
					"partition", m.Partition, "offset", m.Offset, "err", err)
			}
		})
	}
	wg.Wait()
}

// push queues a delivery. Reader goroutine; d's batches lie in fr's read buffer, which the delivery
// borrows instead of copying them.
func (c *Consumer) push(s *subscription, d *wire.Deliver, fr *frameReader) {
	c.mu.Lock()
	ps := c.parts[d.Partition]
	if c.closed || ps == nil || !ps.assigned || !slices.Contains(c.subs, s) {
		c.owedLocked(s, len(d.Batches))
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, delivery{sub: s, partition: d.Partition, hw: d.HighWatermark, epoch: ps.epoch,
		data: d.Batches, rb: fr.lend()})
	c.endRepeat = 0 // records flow again: a later ending is not a repeat
	c.mu.Unlock()
	c.poke()
}

func (c *Consumer) poke() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// owedLocked records n delivered bytes as consumed and grants them back once half the window is.
func (c *Consumer) owedLocked(s *subscription, n int) {
	if s == nil || n == 0 {
		return
	}
	s.owed += n
	if s.owed < int(s.window/2) || s.cn.isDone() {
		return
	}
	credit := wire.Credit{SubID: s.id, Bytes: uint32(s.owed)}
	s.owed = 0
	buf, start := s.cn.beginFrame(wire.OpCredit, wire.FlagNoReply, s.cn.nextCorr())
	_ = s.cn.endFrame(credit.Append(buf), start) // a lost credit dies with its connection
}

// releaseCurLocked ends the current delivery: its buffer goes back to the pool and its bytes are
// granted back.
func (c *Consumer) releaseCurLocked() {
	if sub, n := c.rd.release(); n > 0 {
		c.owedLocked(sub, n)
	}
}

// settleLocked counts the last record returned as processed. A group member's record the application
// finished after its partition was restarted (a reconnection, or a rebalance that gave the partition
// back to this member) counts too, when the restart continues this member's records (it starts at or
// after what the member had processed, and at or below the record) and has handed out nothing yet:
// the partition moves past the record, so the commit stores it and the redelivered copy is skipped
// instead of being handled again. (Every record from the new start up to that one was handed out
// before the restart, in order. A restart below what was processed, such as a topic deleted and
// created again, starts afresh.)
func (c *Consumer) settleLocked() {
	ps, epoch, last, ok := c.rd.takeLast()
	if !ok {
		return
	}
	next := last + 1
	switch {
	case !ps.assigned:
	case ps.epoch == epoch:
		if next > ps.processed {
			ps.processed = next
		}
	case c.opts.Group != "" && !c.opts.Queue && ps.position == ps.processed && ps.before <= ps.processed && ps.processed < next:
		ps.position, ps.processed = next, next
	}
}

// Next returns the next record, waiting until one arrives, ctx ends or the consumer closes. The
// Message and every slice it holds are valid only until the next call of Next (or Close): use
// Message.Clone to keep one. Calling Next again counts the previous record as processed: a commit
// stores the offset after it.
func (c *Consumer) Next(ctx context.Context) (*Message, error) {
	c.mu.Lock()
	c.settleLocked()
	for {
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if err := c.corrupt; err != nil {
			c.mu.Unlock()
			return nil, err
		}
		if c.rd.reading() {
			if c.rd.stale() {
				c.releaseCurLocked()
				continue
			}
			m, err := c.rd.next()
			if err != nil {
				c.corrupt = err // sticky: nothing past an unreadable batch is returned
			}
			if m != nil || err != nil {
				c.mu.Unlock()
				return m, err
			}
			c.releaseCurLocked()
			continue
		}
		if c.qhead < len(c.queue) {
			d := c.queue[c.qhead]
			c.queue[c.qhead] = delivery{}
			c.qhead++
			if c.qhead == len(c.queue) {
				c.queue, c.qhead = c.queue[:0], 0
			} else if c.qhead >= 64 && c.qhead*2 >= len(c.queue) {
				n := copy(c.queue, c.queue[c.qhead:])
				clear(c.queue[n:])
				c.queue, c.qhead = c.queue[:n], 0
			}
			c.rd.start(d, c.parts[d.partition])
			continue
		}
		if err := c.err; err != nil {
			c.mu.Unlock()
			return nil, err
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			c.mu.Lock()
			if !c.closed && c.qhead == len(c.queue) {
				c.mu.Unlock()
				return nil, ErrClosed // the client closed
			}
			continue
		}
		c.mu.Lock()
	}
}

// unreadableLocked applies the corrupt-batch policy to batch h of ps, which failed with cause (its CRC
// held). Under CorruptSkip it logs, counts, moves the position past the batch (and the processed
// offset, when everything before it was processed, so a commit passes it) and returns nil; under
// CorruptStop it returns the error that stops the consumer (Next keeps it).
func (c *Consumer) unreadableLocked(ps *partState, h wire.BatchHeader, cause error) error {
	from := max(ps.position, h.BaseOffset)
	if c.opts.Queue {
		from = h.BaseOffset
	}
	if c.opts.OnCorrupt != CorruptSkip {
		return fmt.Errorf("client: %s/%d: batch of offsets %d-%d (%d records, %v): %w: %w",
			c.topic, ps.partition, h.BaseOffset, h.LastOffset(), h.RecordCount, h.Codec(), ErrCorruptBatch, cause)
	}
	c.c.log.Warn("sluice: skipping a record batch that cannot be read", "topic", c.topic, "partition", ps.partition,
		"first", h.BaseOffset, "last", h.LastOffset(), "records", h.RecordCount, "codec", h.Codec().String(),
		"skipped_from", from, "err", cause)
	c.stats.SkippedBatches++
	c.stats.SkippedOffsets += max(h.LastOffset()+1-from, 0)
	if !c.opts.Queue && h.LastOffset() >= ps.position {
		if ps.processed >= ps.position {
			ps.processed = h.LastOffset() + 1
		}
		ps.position = h.LastOffset() + 1
	}
	return nil
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() ConsumerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Consume calls fn for every record until ctx ends or the consumer closes, and returns that error.
// A record counts as processed when fn returns nil. On a work queue the record is then acked; when
// fn fails it is nacked (delivered again, to this or another member, up to the delivery limit) and
// Consume carries on with the next record. On a stream Consume stops at fn's first error and returns
// it. fn's Message is valid only during the call.
func (c *Consumer) Consume(ctx context.Context, fn func(*Message) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err // Next hands out buffered records whatever ctx says: stop before the next one
		}
		m, err := c.Next(ctx)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			c.mu.Lock()
			c.rd.takeLast() // not processed: a commit must not pass it
			c.mu.Unlock()
			if !c.opts.Queue {
				return err
			}
			if nerr := m.Nack(0); nerr != nil {
				c.c.log.Debug("sluice: nack lost", "topic", c.topic, "partition", m.Partition, "offset", m.Offset, "err", nerr)
			}
			continue
		}
		if c.opts.Queue {
			if err := m.Ack(); err != nil {
				c.c.log.Debug("sluice: ack lost", "topic", c.topic, "partition", m.Partition, "offset", m.Offset, "err", err)
			}
		}
		c.mu.Lock()
		c.settleLocked()
		c.mu.Unlock()
	}
}

// Commit stores the group's offsets: for every partition the consumer holds, the offset after the
// last record Next returned (that record included) or Consume processed. It needs a Group: without
// one it returns ErrNoGroup. Otherwise the errors of the partitions' commits, joined: ErrClosed,
// ErrConnectionLost (retriable), ctx's error, or the broker's (wire.CodeUnknownTopic after a delete).
func (c *Consumer) Commit(ctx context.Context) error {
	return c.commit(ctx, true, nil)
}

// commit stores processed offsets on cn (nil: the live connection). settle counts the last record
// returned as processed first.
func (c *Consumer) commit(ctx context.Context, settle bool, cn *conn) error {
	if c.opts.Group == "" {
		return ErrNoGroup
	}
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	type pending struct {
		ps     *partState
		offset int64
		k      *call
	}
	var todo []pending
	c.mu.Lock()
	if settle {
		c.settleLocked()
	}
	for _, ps := range c.parts {
		if ps.assigned && ps.processed > ps.committed {
			todo = append(todo, pending{ps: ps, offset: ps.processed})
		}
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	if cn == nil {
		var err error
		if cn, err = c.c.waitConn(ctx); err != nil {
			return wrapf(err, "commit %s", c.opts.Group)
		}
	}
	// Pipeline every partition's commit, then collect the answers.
	var errs []error
	sent := todo[:0]
	for _, t := range todo {
		t.k = &call{ch: make(chan struct{}, 1)}
		corr, err := cn.register(t.k)
		if err != nil {
			errs = append(errs, err)
			break
		}
		req := wire.Commit{Group: c.opts.Group, Topic: c.topic, Partition: t.ps.partition, Offset: t.offset}
		if t.ps.topic != "" {
			req.Topic = t.ps.topic // a pattern's topic-partition
		}
		buf, start := cn.beginFrame(wire.OpCommit, 0, corr)
		if buf, err = wire.AppendMessage(buf, &req); err != nil {
			cn.abandonFrame(buf, start) // a field too long to encode: nothing is sent
			cn.take(corr)
			errs = append(errs, err)
			break
		}
		if err := cn.endFrame(buf, start); err != nil {
			if cn.take(corr) != nil {
				errs = append(errs, err)
				continue
			}
		}
		sent = append(sent, t)
	}
	for _, t := range sent {
		var err error
		select {
		case <-t.k.ch:
			err = t.k.err
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			if t.ps.topic != "" {
				errs = append(errs, fmt.Errorf("%s partition %d: %w", t.ps.topic, t.ps.partition, err))
				continue
			}
			errs = append(errs, fmt.Errorf("partition %d: %w", t.ps.partition, err))
			continue
		}
		c.mu.Lock()
		if t.offset > t.ps.committed {
			t.ps.committed = t.offset
		}
		c.mu.Unlock()
	}
	return wrapf(errors.Join(errs...), "commit %s/%s", c.opts.Group, c.topic)
}

// autoCommit commits processed offsets on the interval until the consumer closes.
func (c *Consumer) autoCommit() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.AutoCommit)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.c.opts.RequestTimeout)
		if err := c.commit(ctx, false, nil); err != nil && c.ctx.Err() == nil {
			c.c.log.Warn("sluice: automatic commit failed", "group", c.opts.Group, "topic", c.topic, "err", err)
		}
		cancel()
	}
}

// maintain resubscribes after every reconnection, and after the broker ends a subscription, until
// the consumer closes or fails.
func (c *Consumer) maintain() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		cn := c.cn
		c.mu.Unlock()
		select {
		case <-cn.done:
		case <-c.ended:
			if !c.restart(cn) {
				return
			}
			continue
		case <-c.ctx.Done():
			return
		}
		c.lost()
		for {
			ncn, err := c.c.waitConn(c.ctx)
			if err != nil {
				return // closed
			}
			if err = c.resume(ncn); err == nil {
				break
			}
			if c.ctx.Err() != nil {
				return
			}
			if !IsRetriable(err) && !errors.Is(err, context.DeadlineExceeded) {
				c.c.log.Error("sluice: resubscribe failed; the consumer stops", "topic", c.topic, "err", err)
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
				c.poke()
				return
			}
			c.c.log.Warn("sluice: resubscribe failed; retrying", "topic", c.topic, "err", err)
			select {
			case <-ncn.done:
			case <-time.After(c.c.opts.ReconnectMin):
			case <-c.ctx.Done():
				return
			}
		}
	}
}

// maxSubRestarts bounds the resubscriptions after identical endings in a row: the one after it
// ends the consumer.
const maxSubRestarts = 5

// subEnded routes a SubEnded push to its consumer. Reader goroutine.
func (c *Client) subEnded(cn *conn, body []byte) {
	var m wire.SubEnded
	if err := m.Decode(body); err != nil {
		c.log.Warn("sluice: malformed sub-ended push dropped", "err", err)
		return
	}
	s := c.sub(cn, m.SubID)
	if s == nil {
		c.log.Debug("sluice: sub-ended for an unknown subscription dropped", "sub", m.SubID)
		return
	}
	c.log.Warn("sluice: the broker ended a subscription", "topic", s.cons.topic, "sub", m.SubID, "code", m.Code, "message", m.Message)
	s.cons.subEnded(s, &wire.ProtocolError{Code: m.Code, Message: m.Message})
}

// subEnded records that the broker ended s for err and wakes maintain. Reader goroutine.
func (c *Consumer) subEnded(s *subscription, err *wire.ProtocolError) {
	c.mu.Lock()
	if c.closed || !slices.Contains(c.subs, s) {
		c.mu.Unlock()
		return
	}
	c.subs = slices.DeleteFunc(c.subs, func(x *subscription) bool { return x == s })
	if c.lastEnd != nil && *c.lastEnd == *err {
		c.endRepeat++
	} else {
		c.endRepeat = 1
	}
	c.lastEnd = err
	c.mu.Unlock()
	c.c.removeSub(s.id)
	select {
	case c.ended <- struct{}{}:
	default:
	}
}

// endIsFinal reports whether a subscription ended for err cannot succeed by subscribing again: the
// topic or partition is gone, the principal may not read it, or a batch exceeds the client's
// maximum frame.
func endIsFinal(err error) bool {
	for _, code := range []wire.Code{wire.CodeUnknownTopic, wire.CodeUnknownPartition, wire.CodeNotAuthorized,
		wire.CodeAuthFailed, wire.CodeBatchTooLarge, wire.CodeInvalidRequest} {
		if errors.Is(err, code) {
			return true
		}
	}
	return false
}

// restart answers a subscription the broker ended on cn. A final error, or the same ending
// maxSubRestarts times in a row with no delivery between, ends the consumer: Next returns the error
// once the records already received are read. Otherwise the consumer resubscribes on cn, where it
// stands, after a back-off that starts at the reconnection minimum and doubles with every identical
// ending in a row (bounded by the reconnection maximum); the connection and the client's other
// consumers are never touched. It reports whether maintain should carry on.
func (c *Consumer) restart(cn *conn) bool {
	c.mu.Lock()
	perr, n := c.lastEnd, c.endRepeat
	c.mu.Unlock()
	if perr == nil {
		return true
	}
	err := fmt.Errorf("client: the broker ended the subscription to %s: %w", c.topic, perr)
	if endIsFinal(perr) || n >= maxSubRestarts {
		c.c.log.Error("sluice: subscription ended; the consumer stops", "topic", c.topic, "err", perr, "endings", n)
		c.dropAll(cn)
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		c.poke()
		return false
	}
	wait := c.c.opts.ReconnectMin
	for i := 1; i < n && wait < c.c.opts.ReconnectMax; i++ {
		wait *= 2
	}
	wait = min(wait, c.c.opts.ReconnectMax)
	c.c.log.Warn("sluice: subscription ended; resubscribing", "topic", c.topic, "err", perr, "in", wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-cn.done:
		return true // the reconnection resubscribes everything
	case <-c.ctx.Done():
		return false
	}
	c.dropAll(cn)
	if err := c.resume(cn); err != nil && !cn.isDone() && c.ctx.Err() == nil {
		if !IsRetriable(err) {
			c.c.log.Error("sluice: resubscribe failed; the consumer stops", "topic", c.topic, "err", err)
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			c.poke()
			return false
		}
		// Throttled or timed out: count it as another ending in a row and come back after a longer wait.
		c.mu.Lock()
		c.endRepeat++
		c.mu.Unlock()
		select {
		case c.ended <- struct{}{}:
		default:
		}
	}
	return true
}

// dropAll unsubscribes every subscription the consumer holds on cn, so that a resubscription
// starts from one state.
func (c *Consumer) dropAll(cn *conn) {
	c.mu.Lock()
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, c.c.opts.RequestTimeout)
	defer cancel()
	for _, s := range subs {
		c.c.removeSub(s.id)
		if !cn.isDone() {
			req := wire.SubID{SubID: s.id}
			_, _ = c.c.roundTripOn(ctx, cn, wire.OpUnsubscribe, &call{ch: make(chan struct{}, 1)}, req.Append)
		}
	}
}

// lost forgets the subscriptions of a failed connection. Deliveries already queued stay readable
// (their records are real) until resume restarts their partitions.
func (c *Consumer) lost() {
	c.dropSubs()
}

// resume re-establishes the consumer on cn: a group member first commits what the application has
// processed (with automatic commits on), then everyone resubscribes.
func (c *Consumer) resume(cn *conn) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.c.opts.RequestTimeout)
	defer cancel()
	if c.opts.Group != "" && !c.opts.Queue && c.opts.AutoCommit > 0 {
		if err := c.commit(ctx, false, cn); err != nil {
			c.c.log.Warn("sluice: commit before resubscribing failed", "group", c.opts.Group, "err", err)
		}
	}
	c.mu.Lock()
	for _, ps := range c.parts {
		ps.epoch++ // deliveries of the old subscriptions end here
		if c.opts.Group != "" || c.opts.Queue {
			ps.assigned = false // the new assignment says what this member holds
		}
	}
	c.mu.Unlock()
	err := c.subscribe(ctx, cn, true)
	if err != nil {
		c.dropSubs()
	}
	return err
}

// dropSubs forgets every broker subscription of the consumer.
func (c *Consumer) dropSubs() {
	c.mu.Lock()
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for _, s := range subs {
		c.c.removeSub(s.id)
	}
}

// Close ends the subscription. A group member with automatic commits commits what the application
// has processed (the last record Next returned is not counted: it is delivered again unless Commit
// was called after it). Records not yet read are dropped. It returns that final commit's error and
// the unsubscribes' (other than ErrConnectionLost), joined; the consumer is closed either way.
func (c *Consumer) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	var err error
	if c.opts.Group != "" && !c.opts.Queue && c.opts.AutoCommit > 0 {
		err = c.commit(ctx, false, nil)
		if errors.Is(err, ErrClosed) {
			err = nil
		}
	}
	c.mu.Lock()
	c.closed = true
	subs, cn := c.subs, c.cn
	c.subs = nil
	c.releaseCurLocked()
	for i := c.qhead; i < len(c.queue); i++ {
		c.queue[i].rb.release()
	}
	c.queue, c.qhead = nil, 0
	c.mu.Unlock()
	c.handBacks.Wait() // a revoked partition's commit lands before leaving hands everything over
	for _, s := range subs {
		c.c.removeSub(s.id)
		if cn != nil && !cn.isDone() {
			req := wire.SubID{SubID: s.id}
			if _, uerr := c.c.roundTripOn(ctx, cn, wire.OpUnsubscribe, &call{ch: make(chan struct{}, 1)}, req.Append); uerr != nil && !errors.Is(uerr, ErrConnectionLost) {
				err = errors.Join(err, wrapf(uerr, "unsubscribe %s", c.topic))
			}
		}
	}
	c.cancel()
	c.poke()
	c.wg.Wait()
	return err
}
