package client

import (
	"fmt"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// deliveryReader reads the records of a consumer's current delivery, one at a time, where it lies in
// the read buffer it arrived in, and remembers the last record it returned until the consumer settles it. It belongs to one
// Consumer and is guarded by the consumer's mu.
type deliveryReader struct {
	c   *Consumer
	cur delivery   // the delivery being read; cur.rb nil when none
	ps  *partState // cur's partition, as it was when cur was started
	off int        // offset of the next batch in cur.data

	inBatch bool
	batch   wire.BatchHeader // the batch it iterates (inBatch)
	it      wire.RecordIter
	rec     wire.Record
	msg     Message // the Message Next returns: valid until the next read

	// The last record returned, until takeLast: its partition, the partition's epoch then, and
	// its offset.
	hasLast   bool
	lastPS    *partState
	lastEpoch uint32
	lastOff   int64
}

func (r *deliveryReader) init(c *Consumer) {
	r.c = c
	r.msg.Topic, r.msg.c = c.topic, c
}

// start makes d the current delivery, of partition ps.
func (r *deliveryReader) start(d delivery, ps *partState) { r.cur, r.ps = d, ps }

// reading reports whether there is a current delivery.
func (r *deliveryReader) reading() bool { return r.cur.rb != nil }

// stale reports whether the current delivery was cut for a partition the consumer no longer holds
// as it was (unassigned, restarted or resubscribed since): its records must not be returned.
func (r *deliveryReader) stale() bool {
	return r.ps == nil || r.ps.epoch != r.cur.epoch || !r.ps.assigned
}

// release ends the current delivery, its read buffer released, and returns its subscription and
// byte count for the consumer to grant back (n 0 when there was none).
func (r *deliveryReader) release() (sub *subscription, n int) {
	if r.cur.rb == nil {
		return nil, 0
	}
	sub, n = r.cur.sub, len(r.cur.data)
	r.cur.rb.release()
	r.cur, r.ps = delivery{}, nil
	r.off, r.inBatch = 0, false
	return sub, n
}

// takeLast returns the last record returned (its partition, that partition's epoch then, its
// offset) and forgets it; ok false when there is none.
func (r *deliveryReader) takeLast() (ps *partState, epoch uint32, off int64, ok bool) {
	if !r.hasLast {
		return nil, 0, 0, false
	}
	r.hasLast = false
	return r.lastPS, r.lastEpoch, r.lastOff, true
}

// next returns the next record of the current delivery at or after the partition's position (every
// record, on a work queue), or nil when the delivery is used up. An error (wrapping ErrCorruptBatch)
// stops the consumer: damaged framing or a CRC mismatch, or a batch that cannot be read under
// CorruptStop (Consumer.unreadableLocked applies the policy).
func (r *deliveryReader) next() (*Message, error) {
	c, ps := r.c, r.ps
	queue := c.opts.Queue
	for {
		if r.inBatch {
			if r.it.Next(&r.rec) {
				if !queue && r.rec.Offset < ps.position {
					continue
				}
				ps.position = r.rec.Offset + 1
				r.hasLast, r.lastPS, r.lastEpoch, r.lastOff = true, ps, ps.epoch, r.rec.Offset
				m := &r.msg
				m.Partition, m.Offset, m.HighWatermark = ps.partition, r.rec.Offset, r.cur.hw
				if ps.topic != "" {
					m.Topic = ps.topic // a pattern's record names its topic
				}
				m.Timestamp = time.UnixMilli(r.rec.Timestamp)
				m.Key, m.Value, m.rec, m.hdrs, m.sub = r.rec.Key, r.rec.Value, &r.rec, nil, r.cur.sub
				return m, nil
			}
			r.inBatch = false
			if err := r.it.Err(); err != nil {
				if err = c.unreadableLocked(ps, r.batch, err); err != nil {
					return nil, err
				}
			}
		}
		b := r.cur.data[r.off:]
		if len(b) == 0 {
			return nil, nil
		}
		h, err := wire.ParseBatchHeader(b)
		if err == nil && h.Size() > len(b) {
			err = fmt.Errorf("%w: batch of %d bytes in %d", wire.ErrCorrupt, h.Size(), len(b))
		}
		if err == nil && wire.BatchCRC(b[:h.Size()]) != h.CRC {
			err = fmt.Errorf("%w: batch crc mismatch", wire.ErrCorrupt)
		}
		if err != nil {
			// Damaged framing or CRC: the header's offsets cannot be trusted to skip by, under
			// either policy.
			r.off = len(r.cur.data)
			return nil, fmt.Errorf("client: %s/%d: delivery at offset %d: %w: %w", c.topic, ps.partition, ps.position, ErrCorruptBatch, err)
		}
		batch := b[:h.Size()]
		r.off += len(batch)
		if !queue && h.LastOffset() < ps.position {
			continue // wholly below the position: skip without decoding
		}
		_, err = r.it.Reset(batch)
		if err == nil && c.opts.Filter != "" && h.Codec() != wire.CodecNone {
			// A filtered subscription's batches are built by the broker's filter, uncompressed: a
			// compressed one is a stored batch the filter could not read, passed on unfiltered, and
			// none of its records may be returned.
			if err = r.it.Check(); err == nil {
				err = fmt.Errorf("%w: the broker's header filter could not read it", wire.ErrCorrupt)
			}
		}
		if err != nil {
			if err = c.unreadableLocked(ps, h, err); err != nil {
				return nil, err
			}
			continue
		}
		r.batch, r.inBatch = h, true
	}
}
