package engine

import (
	"fmt"
	"sync"

	"github.com/sluicemq/sluice/wire"
)

// Idempotent producers. A batch whose producer id is not -1 carries (producer id, epoch, base
// sequence); the partition remembers, per producer, the last sequence stored and the offsets of its
// last few batches. A batch whose sequence was already stored (a producer resending after a lost
// connection) is answered with the offsets it got the first time and not stored again; a gap in the
// sequence is refused. Batches without a producer id skip all of this and take no lock.
//
// The state is rebuilt when a partition opens from the batch headers of its last rebuildRecords
// records, so a resend that crosses a broker restart is still caught within that window.

// producerHistory is how many recent batches per producer are remembered for duplicate answers: as
// many as the Go client keeps in flight by default (client.ProducerOptions.MaxInFlight), so every
// batch a reconnecting producer resends is answered with its offsets. A resend older than that is
// answered with CodeDuplicateSequence, which the client counts as stored at unknown offsets.
const producerHistory = 16

// rebuildRecords is how many of a partition's last records are scanned for producer state on open.
const rebuildRecords = 200_000

type seqBatch struct {
	baseSeq, lastSeq int32
	base, last       int64
}

type producerState struct {
	epoch   int16
	lastSeq int32
	recent  [producerHistory]seqBatch
	n       int // batches recorded, for the ring index
}

func (ps *producerState) record(b seqBatch) {
	ps.lastSeq = b.lastSeq
	ps.recent[ps.n%producerHistory] = b
	ps.n++
}

func (ps *producerState) find(baseSeq int32) (seqBatch, bool) {
	for i := 0; i < min(ps.n, producerHistory); i++ {
		if b := ps.recent[i]; b.baseSeq == baseSeq {
			return b, true
		}
	}
	return seqBatch{}, false
}

// producers is a partition's idempotence state.
type producers struct {
	mu sync.Mutex // guards m; held across the check and the append of an idempotent batch
	m  map[int64]*producerState
}

// appendIdempotent stores the batches of one produce request when the first carries a producer id.
// Each batch is checked and appended in order under the partition's producer lock.
func (p *Partition) appendIdempotent(batches []byte) (base, last int64, err error) {
	p.idem.mu.Lock()
	defer p.idem.mu.Unlock()
	if p.idem.m == nil {
		p.idem.m = map[int64]*producerState{}
	}
	base = -1
	for rest := batches; len(rest) > 0; {
		h, _ := wire.ParseBatchHeader(rest) // validated by Append
		one := rest[:h.Size()]
		rest = rest[h.Size():]
		b, dup, err := p.checkSequenceLocked(&h)
		if err != nil {
			return 0, 0, err
		}
		if !dup {
			res, err := p.log.Append(one)
			if err != nil {
				return 0, 0, storageError(err)
			}
			b = seqBatch{baseSeq: h.BaseSequence, lastSeq: h.BaseSequence + h.RecordCount - 1, base: res.BaseOffset, last: res.LastOffset}
			if h.ProducerID >= 0 {
				p.idem.m[h.ProducerID].record(b)
			}
		}
		if base < 0 {
			base = b.base
		}
		last = b.last
	}
	return base, last, nil
}

// checkSequenceLocked decides what to do with batch h: store it, answer it as a duplicate with the
// offsets it was stored at, or refuse it.
func (p *Partition) checkSequenceLocked(h *wire.BatchHeader) (seqBatch, bool, error) {
	if h.ProducerID < 0 {
		return seqBatch{}, false, nil
	}
	ps := p.idem.m[h.ProducerID]
	switch {
	case ps == nil || h.ProducerEpoch > ps.epoch:
		// A producer not seen (or not since the rebuild window), or a new session of it.
		p.idem.m[h.ProducerID] = &producerState{epoch: h.ProducerEpoch, lastSeq: h.BaseSequence - 1}
		return seqBatch{}, false, nil
	case h.ProducerEpoch < ps.epoch:
		return seqBatch{}, false, &wire.ProtocolError{Code: wire.CodeInvalidRequest,
			Message: fmt.Sprintf("producer %d epoch %d is fenced by epoch %d", h.ProducerID, h.ProducerEpoch, ps.epoch)}
	case h.BaseSequence == ps.lastSeq+1:
		return seqBatch{}, false, nil
	case h.BaseSequence <= ps.lastSeq:
		if b, ok := ps.find(h.BaseSequence); ok {
			return b, true, nil
		}
		return seqBatch{}, false, &wire.ProtocolError{Code: wire.CodeDuplicateSequence,
			Message: fmt.Sprintf("producer %d sequence %d is older than the batches remembered", h.ProducerID, h.BaseSequence)}
	default:
		return seqBatch{}, false, &wire.ProtocolError{Code: wire.CodeOutOfOrderSequence,
			Message: fmt.Sprintf("producer %d sequence %d after %d", h.ProducerID, h.BaseSequence, ps.lastSeq)}
	}
}

// rebuildProducers replays the batch headers of the partition's tail into the producer state.
func (p *Partition) rebuildProducers() {
	end := p.log.NextOffset()
	for off := max(p.log.StartOffset(), end-rebuildRecords); off < end; {
		v, err := p.log.Read(off, 4<<20)
		if err != nil {
			return
		}
		for rest := v.Data; len(rest) >= wire.BatchHeaderSize; {
			h, err := wire.ParseBatchHeader(rest)
			if err != nil {
				break
			}
			rest = rest[h.Size():]
			if h.ProducerID < 0 || h.IsControl() { // a transaction marker carries no sequence
				continue
			}
			if p.idem.m == nil {
				p.idem.m = map[int64]*producerState{}
			}
			ps := p.idem.m[h.ProducerID]
			if ps == nil || h.ProducerEpoch > ps.epoch {
				ps = &producerState{epoch: h.ProducerEpoch}
				p.idem.m[h.ProducerID] = ps
			}
			ps.record(seqBatch{baseSeq: h.BaseSequence, lastSeq: h.BaseSequence + h.RecordCount - 1, base: h.BaseOffset, last: h.LastOffset()})
		}
		off = v.NextOffset
		v.Release()
	}
}
