package engine

import (
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// Work queues on the log. Subscriptions in wire.ModeQueue with the same group and topic are competing
// consumers: each record goes to one of them, and stays owed until that consumer acks it. A record not
// acked within the visibility timeout (or nacked) is delivered again, to whichever member asks next;
// after MaxDeliveries, or when it cannot be decoded, it is marked for the dead-letter topic (see
// DeadLetterTopic), appended there by the janitor goroutine and then settled.
//
// State per partition (queuePart), guarded by its mutex — the queue path is not the streaming hot
// path, and competing consumers on different loops must agree on who takes what:
//
//	floor ─────────── next ─────────── log end
//	  │ settled below │ dispatched     │ not yet dispatched
//	                  │ (pending, due, dead, or acked above floor)
//
// Every offset in [floor, next) is in exactly one of: pending (held by a member, with a visibility
// deadline), due (waiting for redelivery), dead (marked for the dead-letter topic), or none of them,
// which means acked. The floor, next and the unsettled runs in between are persisted by the queue
// state store (queuestate.go), so a restart redelivers exactly the records not yet settled. Delivery
// counts live in memory: after a restart they start again at 0.
//
// Each member holds at most its MaxAckPending unsettled records; a member at its bound is dispatched
// nothing until it settles some, so the visibility clock of every record it holds starts no earlier
// than the moment the member had room to work on it.

type queueKey struct{ group, topic string }

// queueTable holds the engine's work queues.
type queueTable struct {
	e     *Engine
	store *queueStore

	mu     sync.Mutex // guards queues and restored; taken before any queuePart.mu
	queues map[queueKey]*queue
	// restored is the persisted state of queues not joined since the engine opened: a queue's state
	// moves from here to its queueParts on first join. Guarded by mu.
	restored map[OffsetKey]queueState

	deadKick chan struct{} // 1-buffered: a record was marked for the dead-letter topic
	stop     chan struct{}
	done     chan struct{}
}

type queue struct {
	key   queueKey
	topic *Topic
	parts []*queuePart

	// dropped is set (under queueTable.mu) when the topic is deleted: the janitor then commits
	// nothing for this queue and the store writes nothing of it.
	dropped atomic.Bool

	mu      sync.Mutex // guards members; never held with another lock
	members map[*Subscription]*member
}

// member is one competing consumer's share of a queue.
type member struct {
	s   *Subscription
	max int64 // MaxAckPending: the most unsettled records it may hold
	// held counts the records pending for this member across all partitions. Changed under the
	// holding queuePart's mutex; read without it by hasWork and take.
	held atomic.Int64
}

type pending struct {
	deadline   int64 // unix nanos: redeliver after this (a due record: deliverable from then on)
	deliveries int
	m          *member // the member holding it; nil once due
	// expires is when the record's TTL ends (unix ms; 0: never), and prio its priority level: both
	// from its scheduling headers (wire.ReadSchedule), known for records staged from the log and
	// zero for records dispatched in place (their batches carry no scheduling header).
	expires int64
	prio    uint8
}

// deadLetter is a run of records marked for the dead-letter topic. Guarded by the queuePart's mutex.
type deadLetter struct {
	first, last int64 // the records, inclusive
	deliveries  int
	reason      string // the sluice-dlq-reason header
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
	// waiting orders due records by the time they become deliverable (pending.deadline), earliest
	// first; promoteLocked moves those whose time has come to ready. Every due offset has an entry
	// here or in ready; an entry whose offset is no longer due with that deadline is stale and
	// skipped when it comes up.
	waiting minHeap[deadlineEntry]
	// ready holds the offsets of due records whose time has come, one heap per priority level,
	// lowest offset first: redeliveries go out highest level first, in offset order within a level
	// (see pickLocked). An entry whose offset is no longer due, or not yet at its time, is stale
	// and skipped (the record is in waiting again); an offset made due again may have two entries:
	// the second is stale once the first is taken.
	ready [wire.PriorityLevels]minHeap[dueOffset]
	// passed counts the consecutive picks that passed over an older ready record of a lower level;
	// at StarvationBound the next pick is the oldest ready record (see pickLocked).
	passed int
	dead   map[int64]*deadLetter // runs by their first offset; appended by the janitor
	// deadlines orders the visibility deadlines of pending records, earliest first, so the janitor
	// touches only what expired: its idle cost does not grow with the pending count. Entries are not
	// removed on settlement; one whose record is no longer pending with that deadline is skipped.
	deadlines minHeap[deadlineEntry]
	builder   *wire.BatchBuilder
	it        wire.RecordIter
	hdrs      []wire.Header
	// inspected is inspectLocked's answer for the batch it last read, so the staging and dispatch
	// paths of one take inflate a compressed batch once.
	inspected inspection
}

func newQueueTable(e *Engine, store *queueStore, restored map[OffsetKey]queueState) *queueTable {
	qt := &queueTable{e: e, store: store, queues: map[queueKey]*queue{}, restored: restored,
		deadKick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	store.snapshot = qt.snapshot
	go qt.janitor()
	return qt
}

// join attaches s to its queue, creating the queue on first use: from its persisted state, else the
// group's committed offsets, else where the subscription asks.
func (qt *queueTable) join(s *Subscription) *queue {
	qt.mu.Lock()
	defer qt.mu.Unlock()
	k := queueKey{s.spec.Group, s.topic.cfg.Name}
	q := qt.queues[k]
	if q == nil || q.topic != s.topic {
		q = &queue{key: k, topic: s.topic, parts: make([]*queuePart, len(s.topic.parts)), members: map[*Subscription]*member{}}
		for i, p := range s.topic.parts {
			qp := &queuePart{q: q, p: p, pending: map[int64]*pending{}, due: map[int64]*pending{}, dead: map[int64]*deadLetter{}}
			key := OffsetKey{Group: k.group, Topic: k.topic, Partition: p.id}
			st, ok := qt.restored[key]
			delete(qt.restored, key)
			if ok && st.Next <= p.NextOffset() && st.Floor <= st.Next {
				qp.restoreLocked(st)
			} else {
				start, ok := qt.e.offsets.Get(k.group, k.topic, p.id)
				if !ok {
					start, _ = p.resolveStart(startPolicy(s.spec.Start), s.spec.StartValue)
				}
				if lo := p.StartOffset(); ok && start < lo {
					qp.expired(lo - start) // the committed floor's records went to retention
				}
				start = min(max(start, p.StartOffset()), p.NextOffset())
				qp.next, qp.floor, qp.committed = start, start, start
			}
			qp.it.SetMaxInflated(qt.e.opts.MaxBatchBytes) // inflation bounded by the batch limit
			q.parts[i] = qp
		}
		qt.queues[k] = q
	}
	maxPending := int64(s.spec.MaxAckPending)
	if maxPending == 0 {
		maxPending = int64(qt.e.opts.QueueMaxAckPending)
	}
	maxPending = min(maxPending, int64(qt.e.opts.QueueMaxAckPendingLimit))
	q.mu.Lock()
	q.members[s] = &member{s: s, max: maxPending}
	q.mu.Unlock()
	return q
}

// restoreLocked resumes a partition from its persisted state: everything unsettled in [floor, next)
// is due at once; the rest of that range was acked and is never delivered again.
func (qp *queuePart) restoreLocked(st queueState) {
	qp.floor, qp.next, qp.committed = st.Floor, st.Next, st.Floor
	start := qp.p.StartOffset() // runs below it are not tracked at all: expireLocked counts them
	for _, run := range st.Unsettled {
		for off := max(run[0], qp.floor, start); off < min(run[1], qp.next); off++ {
			qp.due[off] = &pending{}
		}
	}
	qp.rescheduleLocked() // deliver-at, TTL and priority come back from the records' headers
	if st.Floor < start {
		qp.expired(unsettledBelow(st.Unsettled, start) + max(0, start-st.Next))
	}
	qp.floor, qp.next = max(qp.floor, start), max(qp.next, start)
	qp.settleLocked()
}

// unsettledBelow counts the offsets of runs (sorted, disjoint, half-open) below start.
func unsettledBelow(runs [][2]int64, start int64) int64 {
	var n int64
	for _, run := range runs {
		n += max(0, min(run[1], start)-run[0])
	}
	return n
}

func startPolicy(s wire.StartAt) wire.StartAt {
	if s == wire.StartCommitted {
		return wire.StartEarliest
	}
	return s
}

// memberOf returns s's share of q, or nil once it has left.
func (q *queue) memberOf(s *Subscription) *member {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.members[s]
}

// leave returns what s still holds to the queue for prompt redelivery.
func (qt *queueTable) leave(s *Subscription) {
	q := s.queue
	m := q.memberOf(s)
	q.mu.Lock()
	delete(q.members, s)
	q.mu.Unlock()
	for _, qp := range q.parts {
		qp.mu.Lock()
		for off, pd := range qp.pending {
			if pd.m == m {
				qp.makeDueLocked(off, pd, 0)
			}
		}
		qp.mu.Unlock()
		qp.p.wake()
	}
}

// makeDueLocked moves a pending record to due at deadline, releasing its member's hold on it.
func (qp *queuePart) makeDueLocked(off int64, pd *pending, deadline int64) {
	if pd.m != nil {
		pd.m.held.Add(-1)
	}
	pd.m, pd.deadline = nil, deadline
	delete(qp.pending, off)
	qp.due[off] = pd
	heap.Push(&qp.waiting, deadlineEntry{deadline: deadline, off: off})
}

// dropTopic forgets every queue of a deleted topic, in memory and in the store, and waits until the
// store no longer holds them. Called by Engine.DeleteTopic before it forgets the topic's offsets, so a
// floor the janitor commits for the topic is always deleted with them.
func (qt *queueTable) dropTopic(name string) error {
	qt.mu.Lock()
	for k, q := range qt.queues {
		if k.topic == name {
			q.dropped.Store(true)
			delete(qt.queues, k)
		}
	}
	for k := range qt.restored {
		if k.Topic == name {
			delete(qt.restored, k)
		}
	}
	qt.mu.Unlock()
	done := make(chan error, 1)
	qt.store.sync(true, func(err error) { done <- err })
	return <-done
}

func (qt *queueTable) close() error {
	close(qt.stop)
	<-qt.done
	return qt.store.Close()
}

// janitorInterval is how often visibility timeouts are checked and floors committed.
const janitorInterval = 50 * time.Millisecond

// janitor expires visibility timeouts, appends marked records to dead-letter topics and commits
// floors. It is the one goroutine that touches the file system for a queue's records.
func (qt *queueTable) janitor() {
	defer close(qt.done)
	t := time.NewTicker(janitorInterval)
	defer t.Stop()
	for {
		select {
		case <-qt.stop:
			qt.sweep(true)
			return
		case <-qt.deadKick:
			qt.deadLetters()
		case <-t.C:
			qt.deadLetters()
			qt.sweep(false)
		}
	}
}

// liveQueues lists the queues whose topic is not deleted.
func (qt *queueTable) liveQueues() []*queue {
	qt.mu.Lock()
	defer qt.mu.Unlock()
	qs := make([]*queue, 0, len(qt.queues))
	for _, q := range qt.queues {
		if !q.topic.deleted.Load() {
			qs = append(qs, q)
		}
	}
	return qs
}

func (qt *queueTable) sweep(final bool) {
	now := qt.e.opts.Clock().UnixNano()
	for _, q := range qt.liveQueues() {
		for _, qp := range q.parts {
			qp.mu.Lock()
			moved, expired := qp.expireLocked() // retention passed the floor: the state follows
			if moved {
				qt.store.touch()
			}
			for len(qp.deadlines) > 0 && qp.deadlines[0].deadline <= now {
				d := heap.Pop(&qp.deadlines).(deadlineEntry)
				if pd := qp.pending[d.off]; pd != nil && pd.deadline == d.deadline {
					qp.makeDueLocked(d.off, pd, pd.deadline)
					expired = true
				}
			}
			if cap(qp.deadlines) > 1024 && len(qp.deadlines) < cap(qp.deadlines)/4 {
				qp.deadlines = slices.Clip(qp.deadlines) // a burst grew it: give the memory back
			}
			if qp.promoteLocked(now) {
				expired = true // a delayed record (deliver-at or a nack's delay) came due: wake the members
			}
			qp.mu.Unlock()
			if expired {
				q.wake()
			}
		}
	}
	// Floors go to the offset store under qt.mu: dropTopic takes it before the topic's offsets are
	// deleted, so no floor of a deleted topic is committed after that.
	qt.mu.Lock()
	defer qt.mu.Unlock()
	for _, q := range qt.queues {
		if q.dropped.Load() || q.topic.deleted.Load() {
			continue
		}
		for _, qp := range q.parts {
			qp.mu.Lock()
			floor, changed := qp.floor, qp.floor != qp.committed
			qp.committed = qp.floor
			qp.mu.Unlock()
			if changed || final {
				key := OffsetKey{Group: q.key.group, Topic: q.key.topic, Partition: qp.p.id}
				qt.e.offsets.Commit(key, floor, func(err error) {
					if err == nil {
						return
					}
					// The queue state store still holds the floor; the next sweep commits it again.
					qt.e.log.Warn("work queue floor not committed", "group", key.Group, "topic", key.Topic,
						"partition", key.Partition, "floor", floor, "err", err)
					qp.mu.Lock()
					if qp.committed == floor {
						qp.committed = -1
					}
					qp.mu.Unlock()
				})
			}
		}
	}
}

// wake wakes every waiting member cursor of the queue: a record became due, or a member got room
// under its bound (its cursors on every partition may have gone to sleep at the bound).
func (q *queue) wake() {
	for _, qp := range q.parts {
		qp.p.wake()
	}
}

// hasWork reports whether take could return something to m now.
func (qp *queuePart) hasWork(m *member, now int64) bool {
	if m == nil || m.held.Load() >= m.max {
		return false
	}
	qp.mu.Lock()
	defer qp.mu.Unlock()
	qp.expireLocked()
	if qp.next < qp.p.StableOffset() && len(qp.pending)+len(qp.due) < qp.q.topic.e.opts.QueueMaxTracked {
		return true
	}
	return qp.readyLocked(now)
}

// take hands m the next due redelivery, else the next records from the log, marking each pending for
// m; never more than m has room for under its bound. Records that cannot be decoded, and records at
// their delivery limit, are marked for the dead-letter topic instead (the janitor appends them).
func (qp *queuePart) take(m *member, maxBytes int, now int64) (Delivery, bool, error) {
	qp.mu.Lock()
	defer qp.mu.Unlock()
	room := m.max - m.held.Load()
	if room <= 0 {
		return Delivery{}, false, nil
	}
	timeout := m.s.ackTimeout().Nanoseconds()
	qp.expireLocked()
	if err := qp.stageLocked(now); err != nil {
		return Delivery{}, false, err
	}
	if d, ok, err := qp.redeliverLocked(m, now, timeout); ok || err != nil {
		return d, ok, err
	}
	// New records only while the partition's tracked state is under its bound.
	room = min(room, int64(qp.q.topic.e.opts.QueueMaxTracked-len(qp.pending)-len(qp.due)))
	for room > 0 && qp.next < qp.p.StableOffset() {
		v, err := qp.p.log.Read(qp.next, maxBytes)
		if errors.Is(err, disk.ErrOffsetOutOfRange) && qp.next < qp.p.StartOffset() {
			qp.expireLocked() // retention removed what was never dispatched
			continue
		}
		if err != nil {
			return Delivery{}, false, storageError(err)
		}
		if qp.skipTxnLocked(&v) { // transactions: committed data only (txn_queue.go)
			continue
		}
		d, ok, err := qp.dispatchLocked(m, v, room, now+timeout)
		if err == errStaged {
			return Delivery{}, false, nil
		}
		if ok || err != nil {
			return d, ok, err
		}
	}
	return Delivery{}, false, nil
}

// redeliverLocked hands m the due record pickLocked chooses among those whose time has come, as a
// one-record batch. Records past their delivery limit, expired, or that cannot be decoded are
// marked for the dead-letter topic on the way; due records not yet at their time keep their place.
func (qp *queuePart) redeliverLocked(m *member, now, timeout int64) (Delivery, bool, error) {
	s := m.s
	for {
		off, ok := qp.pickLocked(now)
		if !ok {
			return Delivery{}, false, nil
		}
		pd := qp.due[off]
		switch {
		case off < qp.p.StartOffset(): // retention removed it since: nothing left to deliver
			qp.expireLocked()
			continue
		case pd.expires != 0 && now/int64(time.Millisecond) >= pd.expires:
			delete(qp.due, off)
			qp.markDeadLocked(off, off, pd.deliveries, DeadLetterReasonExpired)
			continue
		case pd.deliveries >= s.maxDeliveries():
			delete(qp.due, off)
			qp.markDeadLocked(off, off, pd.deliveries, DeadLetterReasonMaxDeliveries)
			continue
		}
		batch, err := qp.recordBatchLocked(off)
		if errors.Is(err, errExpired) {
			qp.expireLocked()
			continue
		}
		if errors.Is(err, errUndecodable) {
			delete(qp.due, off)
			qp.markDeadLocked(off, off, pd.deliveries, DeadLetterReasonUndecodable+err.Error())
			continue
		}
		if err != nil {
			heap.Push(&qp.ready[pd.prio], dueOffset(off)) // still due: tried again on the next take
			return Delivery{}, false, err
		}
		delete(qp.due, off)
		pd.deliveries++
		pd.deadline, pd.m = now+timeout, m
		m.held.Add(1)
		qp.pending[off] = pd
		heap.Push(&qp.deadlines, deadlineEntry{deadline: pd.deadline, off: off})
		return Delivery{Partition: qp.p, HighWatermark: qp.p.NextOffset(), owned: batch}, true, nil
	}
}

// dispatchLocked hands m records from v, which starts with the batch holding qp.next: whole batches
// in place when they start at qp.next, fit under room and decode; otherwise the records of the first
// batch from qp.next, re-encoded, up to room. A first batch that cannot be decoded is marked for the
// dead-letter topic and skipped (ok false: the caller reads on). v is released unless returned.
func (qp *queuePart) dispatchLocked(m *member, v disk.View, room, deadline int64) (Delivery, bool, error) {
	cut, n := 0, int64(0)
	for rest := v.Data; len(rest) >= wire.BatchHeaderSize; {
		h, err := wire.ParseBatchHeader(rest)
		if err != nil || h.Size() > len(rest) || h.BaseOffset != qp.next+n {
			break
		}
		count := h.LastOffset() - h.BaseOffset + 1
		if n+count > room {
			break
		}
		if decodes, staged := qp.inspectLocked(rest[:h.Size()], h, h.BaseOffset); !decodes || staged {
			break // a batch with scheduling headers is staged (stageLocked), never dispatched in place
		}
		cut, n = cut+h.Size(), n+count
		rest = rest[h.Size():]
	}
	if cut > 0 {
		v.Data = v.Data[:cut]
		for off := qp.next; off < qp.next+n; off++ {
			qp.pending[off] = &pending{deadline: deadline, deliveries: 1, m: m}
			heap.Push(&qp.deadlines, deadlineEntry{deadline: deadline, off: off})
		}
		m.held.Add(n)
		qp.next += n
		return Delivery{Partition: qp.p, HighWatermark: qp.p.NextOffset(), view: v}, true, nil
	}
	defer v.Release()
	h, err := wire.ParseBatchHeader(v.Data)
	if err != nil || h.Size() > len(v.Data) {
		return Delivery{}, false, storageError(fmt.Errorf("%w: batch at offset %d", wire.ErrCorrupt, qp.next))
	}
	if h.BaseOffset > qp.next { // no records between: nothing to hold
		qp.next = h.BaseOffset
		qp.settleLocked()
		return Delivery{}, false, nil
	}
	if decodes, staged := qp.inspectLocked(v.Data[:h.Size()], h, qp.next); decodes && staged {
		return Delivery{}, false, errStaged // stageLocked takes it once the queue tracks fewer records
	}
	out, last, err := qp.rebuildLocked(v.Data[:h.Size()], qp.next, qp.next+room-1)
	if err != nil {
		qp.markDeadLocked(qp.next, h.LastOffset(), 0, DeadLetterReasonUndecodable+err.Error())
		qp.next = h.LastOffset() + 1
		return Delivery{}, false, nil
	}
	for off := qp.next; off <= last; off++ {
		qp.pending[off] = &pending{deadline: deadline, deliveries: 1, m: m}
		heap.Push(&qp.deadlines, deadlineEntry{deadline: deadline, off: off})
	}
	m.held.Add(last - qp.next + 1)
	qp.next = last + 1
	return Delivery{Partition: qp.p, HighWatermark: qp.p.NextOffset(), owned: out}, true, nil
}

// scratchKeep is the most inflated record bytes a queue partition's iterator keeps its decompression
// buffer for between batches; past it the iterator is dropped, so one large compressed batch does not
// pin its inflated size for the life of the queue.
const scratchKeep = 1 << 20

// dropScratchLocked drops qp.it (and its decompression buffer) when the batch it last inflated
// held more than scratchKeep bytes of keys and values.
func (qp *queuePart) dropScratchLocked(inflated int) {
	if inflated > scratchKeep {
		qp.it = wire.RecordIter{}
	}
}

// errStaged says the batch at the dispatch position has scheduling headers: it is not dispatched in
// place but staged, which the tracked-records bound holds back for now.
var errStaged = errors.New("engine: queue: batch to be staged")

// errUndecodable marks a stored batch whose records cannot be read (a decompression failure or
// corrupt records): its records go to the dead-letter topic.
var errUndecodable = errors.New("engine: queue: records cannot be decoded")

// rebuildLocked re-encodes the records of batch with offsets in [from, to] as one new batch at their
// original offsets, returning it and the last offset it holds. The result is owned by the caller.
func (qp *queuePart) rebuildLocked(batch []byte, from, to int64) ([]byte, int64, error) {
	if qp.builder == nil {
		qp.builder = wire.NewBatchBuilder(1024)
	}
	if _, err := qp.it.Reset(batch); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errUndecodable, err)
	}
	qp.builder.Reset()
	first, last := int64(-1), int64(-1)
	var r wire.Record
	inflated := 0
	defer func() { qp.dropScratchLocked(inflated) }()
	for qp.it.Next(&r) {
		inflated += len(r.Key) + len(r.Value)
		if r.Offset < from || r.Offset > to {
			continue
		}
		if first < 0 {
			first = r.Offset
		}
		last = r.Offset
		qp.hdrs = r.AppendHeaders(qp.hdrs[:0])
		qp.builder.Append(r.Key, r.Value, qp.hdrs, r.Timestamp)
	}
	if err := qp.it.Err(); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errUndecodable, err)
	}
	if first != from {
		return nil, 0, fmt.Errorf("%w: record %d not found in its batch", errUndecodable, from)
	}
	b, err := qp.builder.Build()
	if err != nil {
		return nil, 0, err
	}
	out := append([]byte(nil), b...)
	if len(out) > scratchKeep {
		qp.builder = nil // do not pin a large batch's buffer
	}
	wire.SetBaseOffset(out, first)
	return out, last, nil
}

// markDeadLocked marks the records first..last for the dead-letter topic and kicks the janitor,
// which appends them and then settles them. One entry per run, whatever its length: a batch that
// claims millions of records costs what one record does.
func (qp *queuePart) markDeadLocked(first, last int64, deliveries int, reason string) {
	qp.dead[first] = &deadLetter{first: first, last: last, deliveries: deliveries, reason: reason}
	qp.q.topic.e.metrics.QueueDeadLettered.Add(uint64(last - first + 1))
	select {
	case qp.q.topic.e.queues.deadKick <- struct{}{}:
	default:
	}
}

// settle acks or nacks offsets held by s. A nack makes them due after delay. It reports whether the
// settled state changed (an ack of a record s held).
func (qp *queuePart) settle(m *member, offsets func(i int) int64, n int, nack bool, delay time.Duration) bool {
	qp.mu.Lock()
	now := qp.q.topic.e.opts.Clock().UnixNano()
	relieved, acked := false, false
	for i := 0; i < n; i++ {
		off := offsets(i)
		pd := qp.pending[off]
		if pd == nil || pd.m != m {
			continue // already settled, expired or held by another member: nothing to do
		}
		relieved = relieved || m.held.Load() >= m.max
		if nack {
			qp.makeDueLocked(off, pd, now+delay.Nanoseconds())
			continue
		}
		m.held.Add(-1)
		delete(qp.pending, off)
		acked = true
	}
	qp.dropDeadlinesLocked()
	qp.settleLocked()
	qp.mu.Unlock()
	if acked {
		qp.q.topic.e.queues.store.touch()
	}
	switch {
	case nack && delay > 0:
		time.AfterFunc(delay, qp.q.wake)
		if relieved {
			qp.q.wake()
		}
	case nack || relieved:
		qp.q.wake()
	}
	return acked
}

// settleLocked advances the floor over every settled offset. A dead run holds the floor at its first
// offset until the janitor has appended it.
func (qp *queuePart) settleLocked() {
	if len(qp.pending) == 0 && len(qp.due) == 0 && len(qp.dead) == 0 {
		qp.floor = qp.next // nothing unsettled: no need to step over each offset
		return
	}
	for qp.floor < qp.next {
		if qp.pending[qp.floor] != nil || qp.due[qp.floor] != nil || qp.dead[qp.floor] != nil {
			return
		}
		qp.floor++
	}
}

// errExpired says retention removed a record between the check of the log start and its read.
var errExpired = errors.New("engine: queue: record removed by retention")

// expireLocked moves the partition past the records retention removed. When the log start has passed
// the floor, the dispatch position and the floor go up to it, and what was tracked below it (held
// by a member, due for redelivery, or marked for the dead-letter topic) is forgotten, the members'
// holds on it released; an ack of such a record is then ignored like any ack of a record not held.
// The records skipped (never dispatched, or dispatched and not settled) are counted in
// sluice_queue_records_expired_total. It costs one atomic load while the floor is at or above the
// log start, and one pass over the tracked records once each time retention passes it. It reports
// whether it changed anything, and whether it released a member's hold (that member may have room
// again and must be woken: the janitor's sweep does it).
func (qp *queuePart) expireLocked() (changed, relieved bool) {
	start := qp.p.StartOffset()
	if qp.floor >= start {
		return false, false
	}
	n := max(0, start-qp.next)
	for off, pd := range qp.pending {
		if off < start {
			if pd.m != nil {
				pd.m.held.Add(-1)
				relieved = true
			}
			delete(qp.pending, off)
			n++
		}
	}
	for off := range qp.due {
		if off < start {
			delete(qp.due, off)
			n++
		}
	}
	for first, dl := range qp.dead {
		if first < start { // retention removes whole batches: a run never straddles the start
			delete(qp.dead, first)
			n += min(dl.last, start-1) - first + 1
		}
	}
	qp.expired(n)
	qp.next, qp.floor = max(qp.next, start), start // nothing unsettled is left below start
	qp.settleLocked()
	return true, relieved
}

// expired counts n records the queue skipped because retention removed them before they were settled.
func (qp *queuePart) expired(n int64) {
	if n > 0 {
		qp.q.topic.e.metrics.QueueRecordsExpired.Add(uint64(n))
	}
}

// recordBatchLocked builds a one-record batch holding the record at off, with its original offset:
// redelivery sends only what is owed, not the batch it came in. A batch that cannot be decoded is
// errUndecodable; one retention removed, errExpired.
func (qp *queuePart) recordBatchLocked(off int64) ([]byte, error) {
	v, batch, err := batchAt(qp.p, off)
	if err != nil {
		return nil, err
	}
	defer v.Release()
	out, _, err := qp.rebuildLocked(batch, off, off)
	return out, err
}

// batchAt reads the stored batch of p that holds offset off: the view (release it) and the batch
// within its data. The one place a work queue finds a record by its offset, for redelivery and for
// the dead-letter topic. Errors: errExpired when retention removed the offset; errUndecodable, with
// the view and everything read, when the batch header cannot be parsed or claims more bytes than
// are stored; a storage error (wire.CodeStorageFailed) when the log cannot be read.
func batchAt(p *Partition, off int64) (disk.View, []byte, error) {
	v, err := p.log.Read(off, 1)
	if errors.Is(err, disk.ErrOffsetOutOfRange) && off < p.StartOffset() {
		return disk.View{}, nil, errExpired
	}
	if err != nil {
		return disk.View{}, nil, storageError(err)
	}
	h, err := wire.ParseBatchHeader(v.Data)
	if err != nil || h.Size() > len(v.Data) {
		return v, v.Data, fmt.Errorf("%w: batch at offset %d", errUndecodable, off)
	}
	return v, v.Data[:h.Size()], nil
}

// recordAt finds the record at offset off in batch, reading it with it into r: false when the batch
// cannot be read or holds no record at off. r's fields point into it's buffers or batch.
func recordAt(it *wire.RecordIter, batch []byte, off int64, r *wire.Record) bool {
	if _, err := it.Reset(batch); err != nil {
		return false
	}
	for it.Next(r) {
		if r.Offset == off {
			return true
		}
	}
	return false
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

// Ack settles work-queue records of partition p as processed. Offsets not held by s are ignored. The
// acks are recorded at once and durable with the queue state store's next snapshot (see
// SyncSettlements). Errors (*wire.ProtocolError or wire.Code): CodeInvalidRequest when s is not a
// work-queue subscription or has left its queue, CodeUnknownPartition for p out of range.
func (s *Subscription) Ack(p int32, n int, offset func(i int) int64) error {
	qp, m, err := s.queuePart(p)
	if err != nil {
		return err
	}
	qp.settle(m, offset, n, false, 0)
	return nil
}

// Nack returns work-queue records of partition p for redelivery after delay. Offsets not held by s
// are ignored. Its errors are Ack's.
func (s *Subscription) Nack(p int32, n int, offset func(i int) int64, delay time.Duration) error {
	qp, m, err := s.queuePart(p)
	if err != nil {
		return err
	}
	qp.settle(m, offset, n, true, delay)
	return nil
}

// SyncSettlements calls done once every work-queue ack recorded so far is on disk, from the queue
// state store's writer goroutine (or at once with the store's write error). An ack answered after
// done is never delivered again, whatever happens to the broker.
func (s *Subscription) SyncSettlements(done func(error)) {
	s.e.queues.store.sync(false, done)
}

func (s *Subscription) queuePart(p int32) (*queuePart, *member, error) {
	if s.queue == nil {
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "not a work-queue subscription"}
	}
	if p < 0 || int(p) >= len(s.queue.parts) {
		return nil, nil, wire.CodeUnknownPartition
	}
	m := s.queue.memberOf(s)
	if m == nil {
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "subscription left its queue"}
	}
	return s.queue.parts[p], m, nil
}

// deadlineEntry is a pending record's visibility deadline (unix nanos) in a queuePart's heap,
// ordered by deadline.
type deadlineEntry struct{ deadline, off int64 }

func (d deadlineEntry) key() int64 { return d.deadline }

// dueOffset is a due record's offset in a queuePart's heap, ordered by offset.
type dueOffset int64

func (o dueOffset) key() int64 { return int64(o) }

// minHeap is a min-heap (container/heap) of entries ordered by their key: the visibility deadlines
// of pending records, the offsets of due ones.
type minHeap[T interface{ key() int64 }] []T

func (h minHeap[T]) Len() int           { return len(h) }
func (h minHeap[T]) Less(i, j int) bool { return h[i].key() < h[j].key() }
func (h minHeap[T]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minHeap[T]) Push(x any)        { *h = append(*h, x.(T)) }
func (h *minHeap[T]) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// dropDeadlinesLocked drops the heap entries of settled records once they outnumber the pending
// ones (amortised O(1) a settlement), so the heap stays within twice the pending count (plus 1024).
func (qp *queuePart) dropDeadlinesLocked() {
	if len(qp.deadlines) <= 2*len(qp.pending)+1024 {
		return
	}
	keep := qp.deadlines[:0]
	for _, d := range qp.deadlines {
		if pd := qp.pending[d.off]; pd != nil && pd.deadline == d.deadline {
			keep = append(keep, d)
		}
	}
	clear(qp.deadlines[len(keep):])
	qp.deadlines = keep
	heap.Init(&qp.deadlines)
}
