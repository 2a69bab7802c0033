package engine

import (
	"container/heap"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// Scheduling in work queues: the records' scheduling headers (wire.HeaderTTL, HeaderDeliverAt,
// HeaderPriority) decide when a record becomes deliverable, whether it still may be, and which of
// the deliverable records a member gets first.
//
// A batch carrying no scheduling header is dispatched in place, whole, as before: a queue whose
// producers never set one pays only a scan of each batch's record headers. A batch that carries one
// is staged instead: each of its records becomes due (queuePart.due) with its deliver-at time as the
// deadline, its TTL's end and its priority, and goes out one record at a time by the redelivery
// path, which picks among the due records whose time has come. The queue reads ahead through every
// consecutive batch that carries a scheduling header (up to QueueMaxTracked tracked records), so
// priority orders all the records of such a run; a batch without one ends the run and is
// dispatched in place, in log order, when no staged record is ready. A producer that sets priorities
// sets the header on every record (priority 0 included).
//
// Nothing of this is persisted: it is all in the records. A restart makes every unsettled record due
// (queuestate.go) and reads its headers again (rescheduleLocked), so a delayed record is held back
// until its deliver-at time across restarts, and an expired one is never delivered.

// StarvationBound is the most consecutive deliveries from a work-queue partition that pass over an
// older ready record of a lower priority: after StarvationBound of them, the next delivery is the
// oldest ready record (the lowest offset), whatever its level. A ready record of any level is so
// delivered within (StarvationBound+1)·n deliveries, n the ready records older than it plus one.
const StarvationBound = 10

// maxUnixMs is the latest deliver-at time a deadline (unix nanoseconds) holds; later ones are
// clamped to it (about the year 2262).
const maxUnixMs = math.MaxInt64 / int64(time.Millisecond)

// schedulePending returns the due-record state of r, read now (unix nanos), in a topic whose TTL is
// topicTTL ms (0: none): deliverable from its deliver-at time, expiring at its TTL's end; expired
// reports that it already has.
func schedulePending(r *wire.Record, now, topicTTL int64) (pd *pending, expired bool) {
	sc, _ := wire.ReadSchedule(r)
	pd = &pending{deadline: min(sc.DeliverAtMs, maxUnixMs) * int64(time.Millisecond),
		expires: sc.ExpiresAtMs(r.Timestamp, topicTTL), prio: sc.Priority}
	return pd, pd.expires != 0 && now/int64(time.Millisecond) >= pd.expires
}

// inspection is what inspectLocked found about the stored batch at base, from offset from on.
type inspection struct {
	valid             bool
	base, from        int64
	decodes, schedule bool
}

// inspectLocked reports, in one pass over batch (h its header), whether its records can be read
// (uncompressed batches were checked when they were produced; a compressed one is inflated, as the
// consumer would) and whether it is to be staged: a record at or after from carries a scheduling
// header, or the topic has a TTL. A batch that cannot be read is never staged (dispatchLocked marks
// it for the dead-letter topic). The answer for the last batch asked about is kept: a stored batch
// never changes.
func (qp *queuePart) inspectLocked(batch []byte, h wire.BatchHeader, from int64) (decodes, staged bool) {
	if c := qp.inspected; c.valid && c.base == h.BaseOffset && c.from == from {
		return c.decodes, c.schedule
	}
	decodes, staged = qp.inspectBatchLocked(batch, h, from)
	qp.inspected = inspection{valid: true, base: h.BaseOffset, from: from, decodes: decodes, schedule: staged}
	return decodes, staged
}

func (qp *queuePart) inspectBatchLocked(batch []byte, h wire.BatchHeader, from int64) (decodes, staged bool) {
	plain := h.Codec() == wire.CodecNone
	topicTTL := qp.q.topic.cfg.TTLMs > 0
	if plain && topicTTL {
		return true, true
	}
	if _, err := qp.it.Reset(batch); err != nil {
		return plain, false
	}
	var r wire.Record
	inflated := 0
	for qp.it.Next(&r) {
		inflated += len(r.Key) + len(r.Value)
		if !staged && r.Offset >= from && r.HeaderCount() > 0 {
			_, staged = wire.ReadSchedule(&r)
		}
		if staged && plain {
			break // an uncompressed batch decodes: nothing more to learn
		}
	}
	decodes = plain || qp.it.Err() == nil
	qp.dropScratchLocked(inflated)
	return decodes, decodes && (staged || topicTTL)
}

// stageLocked reads ahead from qp.next while the batch there carries a scheduling header: each record of such a batch becomes due as schedulePending says (an expired one
// is marked for the dead-letter topic), and the dispatch position moves past the batch. It stops at
// the log end, at QueueMaxTracked tracked records, at a batch it leaves for in-place dispatch, and
// at one it cannot decode (dispatchLocked marks that one dead).
func (qp *queuePart) stageLocked(now int64) error {
	bound := qp.q.topic.e.opts.QueueMaxTracked
	for qp.next < qp.p.NextOffset() && len(qp.pending)+len(qp.due) < bound {
		v, err := qp.p.log.Read(qp.next, 1)
		if errors.Is(err, disk.ErrOffsetOutOfRange) && qp.next < qp.p.StartOffset() {
			qp.expireLocked()
			continue
		}
		if err != nil {
			return storageError(err)
		}
		staged := qp.stageBatchLocked(v.Data, now)
		v.Release()
		if !staged {
			return nil
		}
	}
	return nil
}

// stageBatchLocked stages the first batch of data, which holds qp.next, if it is to be staged (see
// stageLocked), and reports whether it did.
func (qp *queuePart) stageBatchLocked(data []byte, now int64) bool {
	h, err := wire.ParseBatchHeader(data)
	if err != nil || h.Size() > len(data) || h.BaseOffset > qp.next {
		return false
	}
	batch := data[:h.Size()]
	if decodes, staged := qp.inspectLocked(batch, h, qp.next); !decodes || !staged {
		return false // a batch that cannot be read whole is left to dispatchLocked, which marks it dead
	}
	if _, err := qp.it.Reset(batch); err != nil {
		return false
	}
	var r wire.Record
	inflated := 0
	for qp.it.Next(&r) {
		inflated += len(r.Key) + len(r.Value)
		if r.Offset < qp.next {
			continue
		}
		pd, expired := schedulePending(&r, now, qp.q.topic.cfg.TTLMs)
		if expired {
			qp.markDeadLocked(r.Offset, r.Offset, 0, DeadLetterReasonExpired)
			continue
		}
		qp.due[r.Offset] = pd
		heap.Push(&qp.waiting, deadlineEntry{deadline: pd.deadline, off: r.Offset})
	}
	qp.dropScratchLocked(inflated)
	qp.next = h.LastOffset() + 1
	qp.settleLocked()
	qp.promoteLocked(now)
	return true
}

// rescheduleLocked reads the scheduling headers of every due record again (after a restart, when
// they are known only by offset) and queues each by its deliver-at time. A record that cannot be
// read keeps the zero schedule: the redelivery path finds it undecodable or removed by retention.
func (qp *queuePart) rescheduleLocked() {
	offs := make([]int64, 0, len(qp.due))
	for off := range qp.due {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	qp.it.SetMaxInflated(qp.q.topic.e.opts.MaxBatchBytes) // join sets it only after the restore
	var r wire.Record
	for i := 0; i < len(offs); {
		v, batch, err := batchAt(qp.p, offs[i])
		if err != nil {
			if errors.Is(err, errUndecodable) {
				v.Release()
			}
			heap.Push(&qp.waiting, deadlineEntry{off: offs[i]})
			i++
			continue
		}
		last := offs[i]
		if h, err := wire.ParseBatchHeader(batch); err == nil {
			last = max(last, h.LastOffset())
		}
		if _, err := qp.it.Reset(batch); err == nil {
			for qp.it.Next(&r) {
				if pd := qp.due[r.Offset]; pd != nil {
					sc, _ := wire.ReadSchedule(&r)
					pd.deadline = min(sc.DeliverAtMs, maxUnixMs) * int64(time.Millisecond)
					pd.expires, pd.prio = sc.ExpiresAtMs(r.Timestamp, qp.q.topic.cfg.TTLMs), sc.Priority
				}
			}
		}
		v.Release()
		for ; i < len(offs) && offs[i] <= last; i++ {
			heap.Push(&qp.waiting, deadlineEntry{deadline: qp.due[offs[i]].deadline, off: offs[i]})
		}
	}
}

// promoteLocked moves the due records whose time has come from waiting to their level's ready heap,
// and reports whether it moved any.
func (qp *queuePart) promoteLocked(now int64) (moved bool) {
	for len(qp.waiting) > 0 && qp.waiting[0].deadline <= now {
		e := heap.Pop(&qp.waiting).(deadlineEntry)
		if pd := qp.due[e.off]; pd != nil && pd.deadline == e.deadline {
			heap.Push(&qp.ready[pd.prio], dueOffset(e.off))
			moved = true
		}
	}
	if cap(qp.waiting) > 1024 && len(qp.waiting) < cap(qp.waiting)/4 {
		qp.waiting = slices.Clip(qp.waiting) // a burst grew it: give the memory back
	}
	return moved
}

// topLocked drops the stale entries at the top of ready level l and returns its lowest offset.
func (qp *queuePart) topLocked(l int, now int64) (int64, bool) {
	h := &qp.ready[l]
	for len(*h) > 0 {
		off := int64((*h)[0])
		if pd := qp.due[off]; pd != nil && pd.deadline <= now && int(pd.prio) == l {
			return off, true
		}
		heap.Pop(h)
	}
	return 0, false
}

// readyLocked reports whether a due record's time has come.
func (qp *queuePart) readyLocked(now int64) bool {
	qp.promoteLocked(now)
	for l := range qp.ready {
		if _, ok := qp.topLocked(l, now); ok {
			return true
		}
	}
	return false
}

// pickLocked removes and returns the ready record to deliver next: the lowest offset of the highest
// level holding one, except that after StarvationBound consecutive picks that passed over an older
// record of a lower level, the oldest ready record of any level.
func (qp *queuePart) pickLocked(now int64) (int64, bool) {
	qp.promoteLocked(now)
	top, oldest := -1, -1
	var oldestOff int64
	for l := len(qp.ready) - 1; l >= 0; l-- {
		off, ok := qp.topLocked(l, now)
		if !ok {
			continue
		}
		if top < 0 {
			top = l
		}
		if oldest < 0 || off < oldestOff {
			oldest, oldestOff = l, off
		}
	}
	if top < 0 {
		return 0, false
	}
	l := top
	switch {
	case oldest == top:
		qp.passed = 0
	case qp.passed >= StarvationBound:
		l, qp.passed = oldest, 0
	default:
		qp.passed++
	}
	off := int64(heap.Pop(&qp.ready[l]).(dueOffset))
	if h := &qp.ready[l]; cap(*h) > 1024 && len(*h) < cap(*h)/4 {
		*h = slices.Clip(*h) // a burst grew it: give the memory back
	}
	return off, true
}

// Stream consumers and TTL. A partition that never took a record with wire.HeaderTTL delivers in
// place as before (one atomic load per delivery: Partition.ttlRecords). Once it has, each stream
// delivery from it is read for expired records: when none has expired it still goes out in place;
// otherwise the live records are copied into new batches (one per run of consecutive offsets, as a
// filter does) and the expired ones are skipped, their offsets left as gaps. A batch that cannot be
// read is passed on as stored, as a filter passes it.

// ttlFilter is a subscription's scratch for dropping expired records (owner goroutine).
type ttlFilter struct {
	it      wire.RecordIter
	builder *wire.BatchBuilder
	hdrs    []wire.Header
	out     []byte // the rebuilt batches: valid until the next delivery
}

// dropExpired removes from d the records at or after from that have expired by the engine's clock,
// replacing d's batches by a copy when it drops any. It reports whether any record is left.
func (s *Subscription) dropExpired(d *Delivery, from int64) bool {
	if s.ttl == nil {
		s.ttl = &ttlFilter{builder: wire.NewBatchBuilder(16 << 10)}
		s.ttl.it.SetMaxInflated(s.e.opts.MaxBatchBytes)
	}
	f := s.ttl
	now, topicTTL := s.e.opts.Clock().UnixMilli(), s.topic.cfg.TTLMs
	in := d.Batches()
	if !f.anyExpired(in, from, now, topicTTL) {
		return true
	}
	f.out = f.out[:0]
	b := f.builder
	b.Reset()
	runBase, next := int64(-1), int64(-1)
	flush := func() {
		if b.Count() == 0 {
			return
		}
		batch, err := b.Build()
		if err != nil { // cannot happen for records read from a valid batch: keep what was built
			b.Reset()
			return
		}
		start := len(f.out)
		f.out = append(f.out, batch...)
		wire.SetBaseOffset(f.out[start:], runBase)
		b.Reset()
	}
	var r wire.Record
	for rest := in; len(rest) >= wire.BatchHeaderSize; {
		h, err := f.it.Reset(rest)
		if h.Size() < wire.BatchHeaderSize || h.Size() > len(rest) {
			break
		}
		if err == nil && h.Codec() != wire.CodecNone {
			err = f.it.Check()
		}
		if err != nil { // unreadable: as stored
			flush()
			f.out = append(f.out, rest[:h.Size()]...)
			rest, next = rest[h.Size():], -1
			continue
		}
		if _, err := f.it.Reset(rest); err != nil {
			break
		}
		rest = rest[h.Size():]
		for f.it.Next(&r) {
			if r.Offset < from || expiredAt(&r, now, topicTTL) {
				continue
			}
			if r.Offset != next {
				flush()
				runBase = r.Offset
			}
			f.hdrs = r.AppendHeaders(f.hdrs[:0])
			b.Append(r.Key, r.Value, f.hdrs, r.Timestamp)
			next = r.Offset + 1
		}
	}
	flush()
	d.Release()
	d.view = disk.View{}
	d.owned = f.out
	if cap(f.out) > scratchKeep {
		f.out = nil // do not pin a large delivery's buffer: d keeps this one
	}
	return len(d.owned) > 0
}

// anyExpired reports whether a readable record of batches at or after from has expired at now.
func (f *ttlFilter) anyExpired(batches []byte, from, now, topicTTL int64) bool {
	var r wire.Record
	for rest := batches; len(rest) >= wire.BatchHeaderSize; {
		h, err := f.it.Reset(rest)
		if h.Size() < wire.BatchHeaderSize || h.Size() > len(rest) {
			return false
		}
		rest = rest[h.Size():]
		if err != nil {
			continue
		}
		for f.it.Next(&r) {
			if r.Offset >= from && expiredAt(&r, now, topicTTL) {
				return true
			}
		}
	}
	return false
}

// expiredAt reports whether r's TTL, or the topic's (topicTTL ms; 0: none), has ended at now (unix ms).
func expiredAt(r *wire.Record, now, topicTTL int64) bool {
	if r.HeaderCount() == 0 && topicTTL == 0 {
		return false
	}
	sc, _ := wire.ReadSchedule(r)
	exp := sc.ExpiresAtMs(r.Timestamp, topicTTL)
	return exp != 0 && now >= exp
}
