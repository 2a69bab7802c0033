package engine

import (
	"errors"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// Reading by offset. A face whose clients name the offset of every read (Kafka's Fetch) reads a
// partition through a Reader rather than a Subscription: the client keeps its position, the broker
// keeps nothing between requests but the Reader, which only serves to wake its owner when the
// partition grows past an offset or when pages it asked for are in memory.

// ErrColdRead is returned by Reader.Read when the batches at the offset are far behind the end of
// the partition and not in memory: a goroutine is faulting them in and the owner is woken (Wake)
// when they are, so the read is tried again then, without a page fault on the owner's goroutine.
var ErrColdRead = errors.New("engine: read waits for pages to be faulted in")

// Reader reads a partition by offset for one owner (a connection's event loop) and wakes it. A
// Reader is a Cursor without a Subscription: the owner's Wake receives it with Subscription() nil.
// Every method but Partition runs on the owner's goroutine.
type Reader struct {
	c *Cursor
	// mincoreVec is scratch for the residency check, so a cold-read check does not allocate.
	mincoreVec []byte
}

// NewReader registers a Reader of p for owner. Close it when done: until then the partition keeps
// it in the list of cursors it wakes.
func (p *Partition) NewReader(owner Owner) *Reader {
	c := &Cursor{part: p, owner: owner}
	p.addCursor(c)
	return &Reader{c: c}
}

// Cursor is the cursor the owner's Wake is called with for this Reader.
func (r *Reader) Cursor() *Cursor { return r.c }

// Partition is the partition read.
func (r *Reader) Partition() *Partition { return r.c.part }

// Close unregisters the Reader. A Wake already on its way may still arrive.
func (r *Reader) Close() { r.c.part.removeCursor(r.c) }

// Read returns the committed batches from the one holding offset on: at least one whole batch when
// there is one, more while the total stays within maxBytes, in place in the log's mapping (the
// Delivery must be released; record bytes are never copied). Reading at the partition's end returns
// an empty Delivery and no error. Errors: wire.CodeOffsetOutOfRange (below the start or beyond the
// end), wire.CodeUnknownTopic (the topic was deleted), ErrColdRead (see there), or a storage error.
func (r *Reader) Read(offset int64, maxBytes int) (Delivery, error) {
	return r.read(offset, maxBytes, -1)
}

// ReadStable is Read for a read_committed Kafka fetch: it returns only the batches below lso, the
// partition's last stable offset as the caller read it (StableOffset), so that an answer's records
// and the last stable offset it reports agree. Control batches and aborted transactions' batches
// below lso are returned as stored: the Kafka client drops them itself, told of the aborted ranges
// by AbortedTxns. Reading at or past lso but not past the end returns an empty Delivery and no
// error. Errors are Read's.
func (r *Reader) ReadStable(offset int64, maxBytes int, lso int64) (Delivery, error) {
	return r.read(offset, maxBytes, lso)
}

// read serves Read (limit < 0: the partition's end) and ReadStable (limit: the LSO).
func (r *Reader) read(offset int64, maxBytes int, limit int64) (Delivery, error) {
	p := r.c.part
	if p.topic.deleted.Load() {
		return Delivery{}, wire.CodeUnknownTopic
	}
	end := p.log.NextOffset()
	if limit < 0 || limit > end {
		limit = end
	}
	if offset == end || (offset >= limit && offset < end && offset >= p.log.StartOffset()) {
		return Delivery{Partition: p, HighWatermark: end}, nil
	}
	v, err := p.log.Read(offset, maxBytes)
	switch {
	case errors.Is(err, disk.ErrOffsetOutOfRange):
		return Delivery{}, wire.CodeOffsetOutOfRange
	case err != nil:
		return Delivery{}, storageError(err)
	}
	if limit < end {
		// The LSO is a batch boundary (a transaction opens at the partition's end before its first
		// append), and offset < limit, so the batch holding offset stays.
		v.Data, v.NextOffset = trimView(v.Data, v.NextOffset, limit)
	}
	if end-offset > coldLag && !isResident(v.Data, r.mincoreVec[:0]) {
		p.topic.e.metrics.ColdReads.Add(1)
		go prefetch(v, r.c)
		return Delivery{}, ErrColdRead
	}
	return Delivery{Partition: p, HighWatermark: p.log.NextOffset(), view: v}, nil
}

// WaitBeyond asks for the owner's Wake (with this Reader's Cursor) once the partition holds records
// at or past offset, or its topic closes. It returns false, arming nothing, when they are already
// there. One Wake at most per call.
func (r *Reader) WaitBeyond(offset int64) bool {
	c := r.c
	if c.part.log.NextOffset() > offset {
		return false
	}
	// Announce, then re-check, as Cursor.read does: either the appender sees waiting, or we see its
	// data.
	c.waiting.Store(true)
	if c.part.log.NextOffset() <= offset {
		return true
	}
	return !c.waiting.CompareAndSwap(true, false) // lost to the appender: its Wake is on the way
}

// WaitStable is WaitBeyond for a read_committed fetch: the owner's Wake comes once the partition's
// last stable offset (StableOffset) is past offset. A commit or abort moves it (its marker wakes
// the partition's readers), as an append does while no transaction is open there. It returns false,
// arming nothing, when it is past already. One Wake at most per call.
func (r *Reader) WaitStable(offset int64) bool {
	c := r.c
	if c.part.StableOffset() > offset {
		return false
	}
	c.waiting.Store(true) // announce, then re-check, as WaitBeyond does
	if c.part.StableOffset() <= offset {
		return true
	}
	return !c.waiting.CompareAndSwap(true, false)
}

// OffsetForTimestamp returns the offset of the first record whose timestamp is at or after ts (unix
// milliseconds), or the partition's next offset when there is none.
func (p *Partition) OffsetForTimestamp(ts int64) int64 {
	off, err := p.log.OffsetForTimestamp(ts)
	if err != nil {
		return p.NextOffset()
	}
	return off
}
