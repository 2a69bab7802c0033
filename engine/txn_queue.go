package engine

import (
	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// skipTxnLocked prepares v, read at qp.next from a partition that has seen a transaction, for
// dispatch to a work-queue member, which reads committed data as a stream consumer does: v is cut at
// the partition's LSO and before the first control or aborted batch after its first batch. When
// the first batch is itself a control batch or an aborted transaction's, it is settled without
// delivery (qp.next moves past it, like an acked record), v is released and skipTxnLocked reports
// true: the caller reads on. Caller holds qp.mu.
func (qp *queuePart) skipTxnLocked(v *disk.View) bool {
	t := qp.p.txns.Load()
	if t == nil {
		return false
	}
	v.Data, v.NextOffset = trimView(v.Data, v.NextOffset, qp.p.StableOffset())
	t.mu.Lock()
	defer t.mu.Unlock()
	for rest := v.Data; len(rest) >= wire.BatchHeaderSize; {
		h, err := wire.ParseBatchHeader(rest)
		if err != nil {
			return false // dispatchLocked reports the damage
		}
		skip := h.IsControl() || (h.IsTransactional() && t.isAbortedLocked(h.ProducerID, h.BaseOffset))
		first := len(rest) == len(v.Data)
		switch {
		case skip && first:
			qp.next = max(qp.next, h.LastOffset()+1)
			qp.settleLocked()
			v.Release()
			return true
		case skip:
			v.Data, v.NextOffset = v.Data[:len(v.Data)-len(rest)], h.BaseOffset
			return false
		}
		rest = rest[h.Size():]
	}
	return false
}
