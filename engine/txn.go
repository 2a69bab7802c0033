package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Transactions (docs/architecture.md, "Transactions"). A transactional batch (attribute bit 4, a
// producer id) is appended to its partition as it arrives, but read-committed consumers (every
// stream subscription) read a partition only up to its last stable offset (LSO): the first offset of
// the oldest transaction still open there. EndTxn decides: a commit first makes the transaction's
// batches durable (fdatasync of every partition it touched), then writes a decision record to the
// transaction log (fsync), then appends a COMMIT control batch to every partition touched and moves
// each LSO; an abort appends ABORT control batches and remembers the aborted range per partition, so
// consumers skip those batches. Control batches are never delivered.
//
// Recovery (Engine Open): each partition's tail is scanned for transactions without a marker. One
// whose producer has a commit record in the transaction log covering that partition (its first
// offset below the record's bound for the partition) gets its COMMIT marker; every other is aborted.
// A crash at any point of a commit therefore leaves the whole transaction committed (the record was
// durable) or the whole transaction aborted (it was not).

// ErrTxn is the sentinel every transaction refusal wraps (as a *wire.ProtocolError with
// CodeInvalidRequest on the wire).
var ErrTxn = errors.New("engine: transaction")

// partTxns is one partition's transaction state: the open transactions and the aborted ranges.
// Allocated at the first transactional batch the partition sees (or finds at open); a partition
// that never saw one has none, and its reads skip all of this.
type partTxns struct {
	mu sync.Mutex
	// open maps a producer id to the first offset its open transaction may hold here (an offset at
	// or below its first batch's: recorded before the append). Guarded by mu.
	open map[int64]int64
	// aborted lists aborted transactions' ranges in marker order. Guarded by mu; appended to before
	// the LSO moves past the marker, so a reader that sees the new LSO sees the range.
	aborted []abortedTxn
	// lso is the lowest first offset in open, or -1 when none is open. Written under mu.
	lso atomic.Int64
}

// abortedTxn is an aborted transaction's batches in one partition: producer pid's transactional
// batches at offsets [first, marker).
type abortedTxn struct {
	pid           int64
	first, marker int64
}

func newPartTxns() *partTxns {
	t := &partTxns{open: map[int64]int64{}}
	t.lso.Store(-1)
	return t
}

// txnState returns the partition's transaction state, creating it.
func (p *Partition) txnState() *partTxns {
	if t := p.txns.Load(); t != nil {
		return t
	}
	p.txns.CompareAndSwap(nil, newPartTxns())
	return p.txns.Load()
}

// StableOffset is the partition's last stable offset: read-committed consumers read below it. It is
// NextOffset unless a transaction is open in the partition. It takes no lock and does not allocate.
func (p *Partition) StableOffset() int64 {
	next := p.log.NextOffset()
	if t := p.txns.Load(); t != nil {
		if lso := t.lso.Load(); lso >= 0 && lso < next {
			return lso
		}
	}
	return next
}

// recomputeLocked sets lso from open. Caller holds t.mu.
func (t *partTxns) recomputeLocked() {
	lso := int64(-1)
	for _, first := range t.open {
		if lso < 0 || first < lso {
			lso = first
		}
	}
	t.lso.Store(lso)
}

// openLocked records pid's transaction as open here from first, unless it already is.
func (t *partTxns) openLocked(pid, first int64) {
	if _, ok := t.open[pid]; ok {
		return
	}
	t.open[pid] = first
	t.recomputeLocked()
}

// isAborted reports whether a transactional batch of pid at offset off belongs to an aborted
// transaction.
func (t *partTxns) isAbortedLocked(pid, off int64) bool {
	for i := len(t.aborted) - 1; i >= 0; i-- {
		a := t.aborted[i]
		if a.pid == pid && off >= a.first && off < a.marker {
			return true
		}
	}
	return false
}

// committedOnly returns data (whole stored batches) without control batches and aborted
// transactions' batches: nil and false when nothing is dropped, else a new slice (possibly empty).
func (t *partTxns) committedOnly(data []byte) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []byte
	changed := false
	for rest := data; len(rest) >= wire.BatchHeaderSize; {
		h, err := wire.ParseBatchHeader(rest)
		if err != nil {
			break
		}
		one := rest[:h.Size()]
		rest = rest[h.Size():]
		drop := h.IsControl() || (h.IsTransactional() && t.isAbortedLocked(h.ProducerID, h.BaseOffset))
		if drop && !changed {
			changed = true
			out = make([]byte, 0, len(data))
			out = append(out, data[:len(data)-len(rest)-len(one)]...)
		}
		if !drop && changed {
			out = append(out, one...)
		}
	}
	return out, changed
}

// withoutControl returns data (whole stored batches) without its control batches, for a
// read-uncommitted delivery: nil and false when it holds none, else a new slice (possibly empty).
func withoutControl(data []byte) ([]byte, bool) {
	var out []byte
	changed := false
	for rest := data; len(rest) >= wire.BatchHeaderSize; {
		h, err := wire.ParseBatchHeader(rest)
		if err != nil {
			break
		}
		one := rest[:h.Size()]
		rest = rest[h.Size():]
		if h.IsControl() && !changed {
			changed = true
			out = make([]byte, 0, len(data))
			out = append(out, data[:len(data)-len(rest)-len(one)]...)
		}
		if !h.IsControl() && changed {
			out = append(out, one...)
		}
	}
	return out, changed
}

// trimView cuts data (whole stored batches, next the offset after them) before the first batch at or
// past limit, the partition's LSO, returning what is left and the offset after it.
func trimView(data []byte, next, limit int64) ([]byte, int64) {
	if next <= limit {
		return data, next
	}
	for rest := data; len(rest) >= wire.BatchHeaderSize; {
		h, err := wire.ParseBatchHeader(rest)
		if err != nil {
			break
		}
		if h.BaseOffset >= limit {
			return data[:len(data)-len(rest)], h.BaseOffset
		}
		rest = rest[h.Size():]
	}
	return data, next
}

// checkTxnBatch checks the transactional batch h, the n-th such in one produce request (first
// holds the first's header): producers send no control batches, a transactional batch has a
// producer id, and all of a request's batches are of one producer and epoch.
func checkTxnBatch(h, first *wire.BatchHeader, n int) error {
	bad := func(msg string) error {
		return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("%v: %s", ErrTxn, msg)}
	}
	switch {
	case h.IsControl():
		return bad("control batches are the broker's to write")
	case h.ProducerID < 0:
		return bad("a transactional batch without a producer id")
	case n == 0:
		*first = *h
	case h.ProducerID != first.ProducerID || h.ProducerEpoch != first.ProducerEpoch:
		return bad("one produce request's transactional batches come from one producer")
	}
	return nil
}

// rebuildTxns scans the partition's tail (the window rebuildProducers scans) for transactions: a
// transactional batch of a producer without a marker after it is an open transaction; an ABORT
// marker records an aborted range. Run at open, before the partition is served.
func (p *Partition) rebuildTxns() {
	end := p.log.NextOffset()
	start := max(p.log.StartOffset(), end-rebuildRecords)
	var t *partTxns
	for off := start; off < end; {
		v, err := p.log.Read(off, 4<<20)
		if err != nil {
			return
		}
		for rest := v.Data; len(rest) >= wire.BatchHeaderSize; {
			h, err := wire.ParseBatchHeader(rest)
			if err != nil {
				break
			}
			one := rest[:h.Size()]
			rest = rest[h.Size():]
			if !h.IsTransactional() || h.ProducerID < 0 {
				continue
			}
			if t == nil {
				t = newPartTxns()
			}
			if !h.IsControl() {
				if _, ok := t.open[h.ProducerID]; !ok {
					t.open[h.ProducerID] = h.BaseOffset
				}
				continue
			}
			first, ok := t.open[h.ProducerID]
			if !ok {
				first = start // began before the window
			}
			delete(t.open, h.ProducerID)
			if typ, err := wire.ControlType(one); err == nil && typ == wire.ControlAbort {
				t.aborted = append(t.aborted, abortedTxn{pid: h.ProducerID, first: first, marker: h.BaseOffset})
			}
		}
		off = v.NextOffset
		v.Release()
	}
	if t != nil {
		t.recomputeLocked()
		p.txns.Store(t)
	}
}

// writeMarker appends pid's control batch (commit or abort) to the partition and closes its
// transaction there: the aborted range is recorded, then the LSO moves and consumers are woken.
func (p *Partition) writeMarker(pid int64, epoch int16, commit bool) error {
	t := p.txnState()
	t.mu.Lock()
	first, ok := t.open[pid]
	if !ok {
		t.mu.Unlock()
		return nil // already decided here (a recovery, or nothing was appended)
	}
	marker := wire.AppendControlBatch(nil, pid, epoch, commit, p.topic.e.opts.Clock().UnixMilli())
	res, err := p.log.Append(marker)
	if err != nil {
		t.mu.Unlock()
		return storageError(err)
	}
	if !commit {
		// Ranges retention removed are dropped here: the index holds the retained aborts only.
		start := p.log.StartOffset()
		i := 0
		for i < len(t.aborted) && t.aborted[i].marker < start {
			i++
		}
		t.aborted = append(t.aborted[i:], abortedTxn{pid: pid, first: first, marker: res.BaseOffset})
	}
	delete(t.open, pid)
	t.recomputeLocked()
	t.mu.Unlock()
	p.wake()
	return nil
}

// openTxn is one producer's transaction in progress.
type openTxn struct {
	// mu is held shared by each transactional append (register, then append) and exclusively by
	// EndTxn while it marks the transaction ending, so no batch lands after its markers.
	mu      sync.RWMutex
	epoch   int16
	started time.Time
	ending  bool         // guarded by mu
	parts   []*Partition // guarded by the coordinator's mu
	// principal is the identity whose produce opened the transaction ("" for an embedded or
	// unauthenticated producer): only it may add batches (Partition.AppendAs) or end it
	// (EndTxnAs). Immutable.
	principal string
}

// txnCoordinator tracks open transactions by producer id and owns the transaction log.
type txnCoordinator struct {
	e   *Engine
	log *slog.Logger

	mu   sync.Mutex
	open map[int64]*openTxn // guarded by mu
	// timedOut maps a producer id to the transaction Options.TxnTimeout aborted, so its commit is
	// refused (CodeTxnAborted) rather than answered as a commit with nothing to do. An entry is
	// removed when the producer's next transaction begins, when an EndTxn aborts it, or by the
	// expirer timedOutKeep after the abort (memory stays bounded for producers that never return).
	// Guarded by mu.
	timedOut map[int64]timedOutTxn

	tlog *txnLog

	stop chan struct{}
	done chan struct{}
}

// timedOutTxn is a transaction the timeout aborted: its epoch, its principal and when it was aborted.
type timedOutTxn struct {
	epoch     int16
	principal string
	at        time.Time
}

// timedOutKeep is how long, in multiples of Options.TxnTimeout, a timed-out transaction is
// remembered for its producer's EndTxn.
const timedOutKeep = 10

// errTxnTimedOut refuses the commit of producer pid's transaction, which the timeout aborted.
func errTxnTimedOut(pid int64, timeout time.Duration) error {
	return &wire.ProtocolError{Code: wire.CodeTxnAborted, Message: fmt.Sprintf(
		"%v: producer %d's transaction was aborted, open longer than the transaction timeout %v: nothing was committed", ErrTxn, pid, timeout)}
}

// txnCrashHook, when set (tests), runs in EndTxn after the decision record is durable and after
// each marker; returning true stops EndTxn there, as a crash would.
var txnCrashHook func(stage int) bool

// openTxns opens the transaction log in dir and finishes the transactions the partitions' tails
// show open: committed where the log has the decision, aborted otherwise. Then the log is emptied:
// every marker it called for is durable.
func openTxns(e *Engine, dir string) (*txnCoordinator, error) {
	tl, decided, err := openTxnLog(dir)
	if err != nil {
		return nil, err
	}
	c := &txnCoordinator{e: e, log: e.log, open: map[int64]*openTxn{}, timedOut: map[int64]timedOutTxn{}, tlog: tl,
		stop: make(chan struct{}), done: make(chan struct{})}
	var touched []*Partition
	for _, t := range *e.topics.Load() {
		for _, p := range t.parts {
			pt := p.txns.Load()
			if pt == nil || len(pt.open) == 0 {
				continue
			}
			for pid, first := range maps2slice(pt.open) {
				commit := false
				if d, ok := decided[pid]; ok {
					bound, in := d.bounds[txnPart{t.cfg.Name, p.id}]
					commit = in && first < bound
				}
				if err := p.writeMarker(pid, d16(decided, pid), commit); err != nil {
					tl.close()
					return nil, fmt.Errorf("engine: recovering transaction of producer %d in %s/%d: %w", pid, t.cfg.Name, p.id, err)
				}
				e.log.Info("transaction recovered", "producer", pid, "topic", t.cfg.Name, "partition", p.id, "committed", commit)
			}
			touched = append(touched, p)
		}
	}
	for _, p := range touched {
		if err := p.log.Sync(); err != nil {
			tl.close()
			return nil, fmt.Errorf("engine: syncing recovered transaction markers: %w", err)
		}
	}
	if err := tl.truncate(); err != nil {
		tl.close()
		return nil, err
	}
	go c.expirer()
	return c, nil
}

func d16(decided map[int64]txnDecision, pid int64) int16 { return decided[pid].epoch }

// maps2slice returns m's entries as a map copy safe to range while m changes.
func maps2slice(m map[int64]int64) map[int64]int64 {
	out := make(map[int64]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// appendTxn stores a produce request whose batches are transactional, all of producer pid at
// epoch: the transaction is registered with the coordinator and opened in the partition before the
// append, so no read-committed consumer reads past its first batch.
func (p *Partition) appendTxn(batches []byte, pid int64, epoch int16, principal string) (base, last int64, err error) {
	c := p.topic.e.txns
	tx, err := c.join(pid, epoch, p, principal)
	if err != nil {
		return 0, 0, err
	}
	defer tx.mu.RUnlock()
	t := p.txnState()
	t.mu.Lock()
	t.openLocked(pid, p.log.NextOffset())
	t.mu.Unlock()
	return p.appendIdempotent(batches)
}

// join returns pid's open transaction (beginning one as principal's), with p added to it and its mu
// held shared. A transaction being ended refuses more batches (the producer sends its next
// transaction's after EndTxn answers); one another principal opened refuses them with
// CodeNotAuthorized.
func (c *txnCoordinator) join(pid int64, epoch int16, p *Partition, principal string) (*openTxn, error) {
	c.mu.Lock()
	tx := c.open[pid]
	if tx == nil {
		tx = &openTxn{epoch: epoch, started: c.e.opts.Clock(), principal: principal}
		c.open[pid] = tx
		delete(c.timedOut, pid) // the producer moved on: its next EndTxn is this transaction's
	}
	if tx.principal != principal {
		c.mu.Unlock()
		return nil, errTxnPrincipal(pid)
	}
	if epoch != tx.epoch {
		c.mu.Unlock()
		return nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest,
			Message: fmt.Sprintf("%v: producer %d epoch %d, its open transaction has epoch %d", ErrTxn, pid, epoch, tx.epoch)}
	}
	if !slices.Contains(tx.parts, p) {
		tx.parts = append(tx.parts, p)
	}
	c.mu.Unlock()
	tx.mu.RLock()
	if tx.ending {
		tx.mu.RUnlock()
		return nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest,
			Message: fmt.Sprintf("%v: producer %d's transaction is ending: produce after EndTxn answers", ErrTxn, pid)}
	}
	return tx, nil
}

// EndTxn commits (commit true) or aborts producer pid's open transaction at epoch. A commit returns
// once the decision and every marker are durable; a producer with no open transaction succeeds with
// nothing to do. Errors: a *wire.ProtocolError (CodeInvalidRequest wrapping ErrTxn text) for a
// wrong epoch; a *wire.ProtocolError with CodeTxnAborted for a commit of a transaction that
// Options.TxnTimeout aborted (until the producer's next transaction begins or an abort is asked
// for: an abort of it succeeds, with nothing left to do); storage errors of the syncs, the log or the markers (the transaction then stays as
// decided: a committed one is completed at the next Open).
//
// EndTxn ends the transaction whoever opened it: it is for the embedding program. A network face
// calls EndTxnAs.
func (e *Engine) EndTxn(pid int64, epoch int16, commit bool) error {
	if e.closed.Load() {
		return wire.CodeShuttingDown
	}
	return e.txns.end(pid, epoch, commit, "", nil)
}

// TxnOpen reports whether producer pid has a transaction open: begun by a transactional batch and
// not yet committed or aborted (by EndTxn, or by Options.TxnTimeout). The Kafka listener asks it
// before a commit, so a commit of a transaction the timeout aborted is refused rather than answered
// as done.
func (e *Engine) TxnOpen(pid int64) bool {
	e.txns.mu.Lock()
	defer e.txns.mu.Unlock()
	return e.txns.open[pid] != nil
}

// EndTxnAs is EndTxn on behalf of principal, the caller's authenticated identity ("" for none):
// a transaction another principal opened (Partition.AppendAs) is refused with CodeNotAuthorized
// and stays open, as ACLs refuse what a principal may not do.
func (e *Engine) EndTxnAs(principal string, pid int64, epoch int16, commit bool) error {
	if e.closed.Load() {
		return wire.CodeShuttingDown
	}
	return e.txns.end(pid, epoch, commit, "", &principal)
}

// errTxnPrincipal refuses a principal other than the one that opened producer pid's transaction.
// It names neither principal.
func errTxnPrincipal(pid int64) error {
	return &wire.ProtocolError{Code: wire.CodeNotAuthorized, Message: fmt.Sprintf(
		"%v: producer %d's open transaction belongs to another principal: only the principal that opened it may produce to it or end it", ErrTxn, pid)}
}

// end ends pid's open transaction at epoch; principal, when not nil, must be the one that opened
// it. why, when set, is logged (the expirer's abort).
func (c *txnCoordinator) end(pid int64, epoch int16, commit bool, why string, principal *string) error {
	c.mu.Lock()
	tx := c.open[pid]
	if tx == nil {
		to, ok := c.timedOut[pid]
		if ok && to.epoch == epoch && (principal == nil || *principal == to.principal) {
			if commit {
				c.mu.Unlock()
				return errTxnTimedOut(pid, c.e.opts.TxnTimeout)
			}
			delete(c.timedOut, pid)
		}
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	if principal != nil && *principal != tx.principal {
		return errTxnPrincipal(pid)
	}
	if tx.epoch != epoch {
		return &wire.ProtocolError{Code: wire.CodeInvalidRequest,
			Message: fmt.Sprintf("%v: producer %d epoch %d, its open transaction has epoch %d", ErrTxn, pid, epoch, tx.epoch)}
	}
	tx.mu.Lock()
	if tx.ending {
		tx.mu.Unlock()
		return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("%v: producer %d's transaction is already ending", ErrTxn, pid)}
	}
	tx.ending = true
	tx.mu.Unlock()
	c.mu.Lock()
	parts := slices.Clone(tx.parts)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.open[pid] == tx {
			delete(c.open, pid)
			if why != "" { // the timeout's abort: a commit the producer sends next is refused
				c.timedOut[pid] = timedOutTxn{epoch: epoch, principal: tx.principal, at: c.e.opts.Clock()}
			}
		}
		c.mu.Unlock()
	}()
	if why != "" {
		c.log.Warn("transaction aborted", "producer", pid, "why", why)
	}
	if commit {
		rec := txnDecision{pid: pid, epoch: epoch, bounds: map[txnPart]int64{}}
		for _, p := range parts {
			if err := p.log.Sync(); err != nil { // the batches first: the decision must not outlive them
				return c.abortAll(parts, pid, epoch, storageError(err))
			}
			rec.bounds[txnPart{p.topic.cfg.Name, p.id}] = p.log.NextOffset()
		}
		if err := c.tlog.write(rec); err != nil {
			return c.abortAll(parts, pid, epoch, err)
		}
	}
	if h := txnCrashHook; h != nil && h(0) {
		return nil
	}
	var errs []error
	for i, p := range parts {
		if p.topic.deleted.Load() {
			continue
		}
		err := p.writeMarker(pid, epoch, commit)
		if err == nil {
			err = p.log.Sync() // the marker durable before the next: as many fdatasyncs as partitions either way
		}
		if err != nil {
			errs = append(errs, storageError(err))
		}
		if h := txnCrashHook; h != nil && h(i+1) {
			return nil
		}
	}
	err := errors.Join(errs...)
	if err == nil && commit {
		c.tlog.done()
	}
	return err
}

// abortAll aborts a commit that failed before its decision was durable and returns cause.
func (c *txnCoordinator) abortAll(parts []*Partition, pid int64, epoch int16, cause error) error {
	for _, p := range parts {
		if err := p.writeMarker(pid, epoch, false); err != nil {
			c.log.Error("aborting a failed commit", "producer", pid, "topic", p.topic.cfg.Name, "partition", p.id, "err", err)
		}
	}
	return fmt.Errorf("%w: commit of producer %d failed, aborted: %w", ErrTxn, pid, cause)
}

// expirer aborts transactions open longer than Options.TxnTimeout.
func (c *txnCoordinator) expirer() {
	defer close(c.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		now := c.e.opts.Clock()
		type due struct {
			pid   int64
			epoch int16
		}
		var old []due
		c.mu.Lock()
		for pid, tx := range c.open {
			if now.Sub(tx.started) > c.e.opts.TxnTimeout {
				old = append(old, due{pid, tx.epoch})
			}
		}
		for pid, to := range c.timedOut {
			if now.Sub(to.at) > timedOutKeep*c.e.opts.TxnTimeout {
				delete(c.timedOut, pid)
			}
		}
		c.mu.Unlock()
		for _, d := range old {
			_ = c.end(d.pid, d.epoch, false, fmt.Sprintf("open longer than %v", c.e.opts.TxnTimeout), nil)
		}
	}
}

// close stops the expirer and closes the log. Open transactions stay open on disk: the next Open
// aborts them.
func (c *txnCoordinator) close() error {
	close(c.stop)
	<-c.done
	return c.tlog.close()
}

// AbortedTxn is an aborted transaction's range in one partition, as Kafka's FetchResponse lists it
// for read_committed fetches: its producer id and the first offset it may hold there (its batches
// lie in [FirstOffset, MarkerOffset)).
type AbortedTxn struct {
	ProducerID   int64
	FirstOffset  int64
	MarkerOffset int64
}

// AbortedTxns appends to dst the aborted transactions whose ranges overlap offsets [from, to), in
// marker order, for a Kafka listener serving read_committed fetches (it also bounds reads by
// StableOffset). A partition that never saw a transaction has none and nothing is allocated.
func (p *Partition) AbortedTxns(dst []AbortedTxn, from, to int64) []AbortedTxn {
	t := p.txns.Load()
	if t == nil {
		return dst
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range t.aborted {
		if a.first < to && a.marker >= from {
			dst = append(dst, AbortedTxn{ProducerID: a.pid, FirstOffset: a.first, MarkerOffset: a.marker})
		}
	}
	return dst
}
