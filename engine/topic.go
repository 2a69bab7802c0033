package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// Topic is a named set of partitions.
type Topic struct {
	e       *Engine
	cfg     wire.TopicConfig // immutable after open
	parts   []*Partition     // immutable after open
	deleted atomic.Bool
	rr      atomic.Uint32 // round-robin partition choice for produces that name none
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.cfg.Name }

// Config is the topic's configuration.
func (t *Topic) Config() wire.TopicConfig { return t.cfg }

// Memory reports whether the topic is memory-only.
func (t *Topic) Memory() bool { return t.cfg.Flags&wire.TopicMemory != 0 }

// Partitions is the topic's partition count.
func (t *Topic) Partitions() int { return len(t.parts) }

// Partition returns partition i, or nil when out of range.
func (t *Topic) Partition(i int32) *Partition {
	if i < 0 || int(i) >= len(t.parts) {
		return nil
	}
	return t.parts[i]
}

// PickPartition returns partition i, or for i < 0 the next partition round-robin. A partition the
// topic does not have is wire.CodeUnknownPartition.
func (t *Topic) PickPartition(i int32) (*Partition, error) {
	if i < 0 {
		i = int32(t.rr.Add(1) % uint32(len(t.parts)))
	}
	p := t.Partition(i)
	if p == nil {
		return nil, wire.CodeUnknownPartition
	}
	return p, nil
}

// Info describes the topic and its partitions' offsets.
func (t *Topic) Info() wire.TopicInfo {
	info := wire.TopicInfo{Config: t.cfg, Partitions: make([]wire.PartitionInfo, len(t.parts))}
	for i, p := range t.parts {
		info.Partitions[i] = wire.PartitionInfo{
			Partition:   p.id,
			StartOffset: p.log.StartOffset(),
			EndOffset:   p.log.NextOffset(),
			Bytes:       p.log.Size(),
		}
	}
	return info
}

// partitionsDir is where the partition directories of a topic live: its directory dir, or for a
// memory-only topic its directory under MemoryDir.
func (e *Engine) partitionsDir(cfg wire.TopicConfig, dir string) string {
	if cfg.Flags&wire.TopicMemory != 0 {
		return filepath.Join(e.opts.MemoryDir, cfg.Name)
	}
	return dir
}

// logOptions are the options of partition i's log in a topic with configuration cfg whose
// partitions live under dataDir (OnSync is the caller's to set). CreateTopic validates them before
// it writes anything, so they must be exactly what openTopic passes to disk.Open.
func (e *Engine) logOptions(cfg wire.TopicConfig, dataDir string, i int) disk.Options {
	segBytes := cfg.SegmentBytes
	if cfg.Flags&wire.TopicMemory != 0 {
		segBytes = min(segBytes, e.opts.MemorySegmentBytes)
	}
	return disk.Options{
		Dir:            filepath.Join(dataDir, strconv.Itoa(i)),
		SegmentBytes:   int(segBytes),
		FlushInterval:  e.opts.FlushInterval,
		FlushBytes:     int(e.opts.FlushBytes),
		SyncSpacing:    e.opts.SyncSpacing,
		RetentionBytes: cfg.RetentionBytes,
		RetentionAge:   time.Duration(cfg.RetentionMs) * time.Millisecond, // RetentionMs <= wire.MaxRetentionMs: no overflow
		MaxBatchBytes:  e.opts.MaxBatchBytes,
		Logger:         e.log.With("topic", cfg.Name, "partition", i),
		OnSyncDuration: e.metrics.synced,
		FS:             e.opts.FS,
		Clock:          e.opts.Clock,
	}
}

// openTopic opens (creating them if missing) the partition logs of a topic whose configuration was
// checked by checkTopicConfig. On failure it closes the logs it opened and returns the error; the
// caller removes what a failed create made.
func openTopic(e *Engine, cfg wire.TopicConfig, dir string) (*Topic, error) {
	t := &Topic{e: e, cfg: cfg, parts: make([]*Partition, cfg.Partitions)}
	dataDir := e.partitionsDir(cfg, dir)
	err := forEachParallel(len(t.parts), func(i int) error {
		p := &Partition{topic: t, id: int32(i)}
		empty := []*Cursor{}
		p.cursors.Store(&empty)
		noWatch := []SyncWatcher{}
		p.watchers.Store(&noWatch)
		opts := e.logOptions(cfg, dataDir, i)
		opts.OnSync = p.onSync
		l, err := disk.Open(opts)
		if err != nil {
			return fmt.Errorf("engine: topic %s partition %d: %w", cfg.Name, i, err)
		}
		p.log = l
		p.ttlMark = filepath.Join(dir, fmt.Sprintf("ttl-records-%d", i))
		if _, err := os.Stat(p.ttlMark); err == nil || cfg.TTLMs > 0 {
			p.ttlRecords.Store(true) // a topic TTL applies to every record
		}
		p.rebuildProducers()
		p.rebuildTxns()
		t.parts[i] = p
		return nil
	})
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// ioWorkers bounds the partitions opened or closed at once. Opening one is mostly waiting on the
// file system (directory listing, fallocate, fdatasync), so a few per core overlap those waits;
// more would only queue in the disk.
const ioWorkers = 16

// forEachParallel runs fn(0..n-1) on at most ioWorkers goroutines and returns the errors joined.
func forEachParallel(n int, fn func(i int) error) error {
	if n == 1 {
		return fn(0)
	}
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, ioWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				errs[i] = fn(i)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// close ends the topic's subscriptions and closes its partitions' logs, several at once.
func (t *Topic) close() error {
	return closePartitions(t.parts)
}

// closePartitions wakes each partition's cursors (their owners find the topic gone and end the
// subscription) and closes the partitions' logs, at most ioWorkers at once. Nil entries (a topic
// whose open failed part way) are skipped.
func closePartitions(parts []*Partition) error {
	return forEachParallel(len(parts), func(i int) error {
		p := parts[i]
		if p == nil || p.log == nil {
			return nil
		}
		for _, c := range *p.cursors.Load() {
			c.owner.Wake(c)
		}
		return p.log.Close()
	})
}

// Partition is one totally ordered log of a topic.
type Partition struct {
	topic *Topic
	id    int32
	log   *disk.Log

	// cursors are the consumers reading this partition, woken when NextOffset advances. Copy-on-write:
	// the produce path Loads it without locking; subMu guards writers.
	cursors atomic.Pointer[[]*Cursor]
	// watchers are told when the synced offset advances (connections holding fsync-level acks).
	// Copy-on-write like cursors.
	watchers atomic.Pointer[[]SyncWatcher]
	subMu    sync.Mutex

	idem producers // idempotent producers' sequences; touched only for batches with a producer id

	// txns is the partition's transaction state (txn.go): nil until it sees a transactional batch,
	// so reads of a partition that never did skip it with one atomic load.
	txns atomic.Pointer[partTxns]
	// ttlRecords is set once a record carrying wire.HeaderTTL was appended (before its append, and
	// on open when ttlMark exists), and from the start in a topic with a TTL: only then do stream
	// deliveries look for expired records. Set under ttlMu, which also orders the mark's write; read
	// without it.
	ttlRecords atomic.Bool
	ttlMu      sync.Mutex
	ttlMark    string // the file that records ttlRecords across restarts
}

// ID is the partition's index in its topic.
func (p *Partition) ID() int32 { return p.id }

// Topic is the partition's topic.
func (p *Partition) Topic() *Topic { return p.topic }

// NextOffset is the offset the next record will get: everything below it is readable.
func (p *Partition) NextOffset() int64 { return p.log.NextOffset() }

// StartOffset is the oldest retained offset.
func (p *Partition) StartOffset() int64 { return p.log.StartOffset() }

// SyncedOffset is the offset below which every record is covered by an fdatasync.
func (p *Partition) SyncedOffset() int64 { return p.log.SyncedOffset() }

// RequestSync asks the group commit for an fdatasync now, for a produce waiting at fsync durability.
func (p *Partition) RequestSync() { p.log.RequestSync() }

// SyncNow is RequestSync without waiting out Options.SyncSpacing: for a stopping listener answering
// the fsync-level produces it holds.
func (p *Partition) SyncNow() { p.log.SyncNow() }

// Append validates the record batches in batches (one or more, back to back; wire.ValidateProduced,
// which also checks a compressed batch's records), stores them with one copy into the partition log
// and wakes the partition's consumers. It returns the offsets of the first and last record stored.
// It allocates nothing (compressed batches: nothing once the validators' pool is warm). A
// transactional batch joins its producer's transaction as opened by the empty principal (AppendAs).
func (p *Partition) Append(batches []byte) (base, last int64, err error) {
	return p.AppendAs(batches, "")
}

// AppendAs is Append on behalf of principal, the producer's authenticated identity ("" for none): a
// transactional batch opens its producer id's transaction as principal's, or joins it if principal
// opened it; another principal's open transaction under that producer id refuses it with
// CodeNotAuthorized, as EndTxnAs does. Principal matters for transactional batches only.
func (p *Partition) AppendAs(batches []byte, principal string) (base, last int64, err error) {
	maxBatch := p.topic.e.opts.MaxBatchBytes
	idempotent, records, txns := false, 0, 0
	var first wire.BatchHeader
	for rest := batches; len(rest) > 0; {
		h, ttl, err := wire.ValidateProducedTTL(rest, maxBatch) // compressed: records inflated (bounded) and checked too
		if err != nil {
			return 0, 0, err
		}
		if ttl && !p.ttlRecords.Load() {
			if err := p.markTTL(); err != nil {
				return 0, 0, err
			}
		}
		if h.Attributes&(wire.AttrTransactional|wire.AttrControl) != 0 {
			if err := checkTxnBatch(&h, &first, txns); err != nil {
				return 0, 0, err
			}
			txns++
		}
		records += int(h.RecordCount)
		idempotent = idempotent || h.ProducerID >= 0
		rest = rest[h.Size():]
	}
	if txns > 0 {
		base, last, err = p.appendTxn(batches, first.ProducerID, first.ProducerEpoch, principal)
	} else if idempotent {
		base, last, err = p.appendIdempotent(batches)
	} else {
		var res disk.AppendResult
		res, err = p.log.Append(batches)
		if err != nil {
			err = storageError(err)
		}
		base, last = res.BaseOffset, res.LastOffset
	}
	if err != nil {
		return 0, 0, err
	}
	p.stored(len(batches), records)
	return base, last, nil
}

// appendBuilt is Append for one uncompressed batch without a producer id that the engine's own
// wire.BatchBuilder made (Publisher.PublishRecord): its structure and CRC hold by construction, so it
// is not validated again, only held to MaxBatchBytes (the error wraps wire.ErrBatchTooLarge, as
// validation's does). ttl says whether one of its records carries wire.HeaderTTL. It returns the
// offset of the batch's first record.
func (p *Partition) appendBuilt(batch []byte, records int, ttl bool) (int64, error) {
	if limit := p.topic.e.opts.MaxBatchBytes; limit > 0 && len(batch) > limit {
		return 0, fmt.Errorf("%w: batch of %d bytes, limit %d", wire.ErrBatchTooLarge, len(batch), limit)
	}
	if ttl && !p.ttlRecords.Load() {
		if err := p.markTTL(); err != nil {
			return 0, err
		}
	}
	res, err := p.log.Append(batch)
	if err != nil {
		return 0, storageError(err)
	}
	p.stored(len(batch), records)
	return res.BaseOffset, nil
}

// stored counts an append of n bytes and records in the metrics and wakes the partition's consumers.
func (p *Partition) stored(n, records int) {
	p.topic.e.metrics.produced(n, records)
	p.wake()
}

// wake hands every waiting cursor of the partition to its owner. A cursor's waiting flag is cleared
// by exactly one party (this loop or the cursor's own re-check), so each wake-up is delivered once.
func (p *Partition) wake() {
	for _, c := range *p.cursors.Load() {
		if c.waiting.Load() && c.waiting.CompareAndSwap(true, false) {
			c.owner.Wake(c)
		}
	}
}

// onSync runs on the log's flusher after each successful fdatasync.
func (p *Partition) onSync(next int64) {
	for _, w := range *p.watchers.Load() {
		w.Synced(p, next)
	}
}

// Watch registers w to hear of this partition's synced offset. Registering twice is harmless.
func (p *Partition) Watch(w SyncWatcher) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	old := *p.watchers.Load()
	for _, x := range old {
		if x == w {
			return
		}
	}
	n := append(append(make([]SyncWatcher, 0, len(old)+1), old...), w)
	p.watchers.Store(&n)
}

// Unwatch removes w.
func (p *Partition) Unwatch(w SyncWatcher) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	old := *p.watchers.Load()
	n := make([]SyncWatcher, 0, len(old))
	for _, x := range old {
		if x != w {
			n = append(n, x)
		}
	}
	p.watchers.Store(&n)
}

func (p *Partition) addCursor(c *Cursor) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	old := *p.cursors.Load()
	n := append(append(make([]*Cursor, 0, len(old)+1), old...), c)
	p.cursors.Store(&n)
}

func (p *Partition) removeCursor(c *Cursor) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	old := *p.cursors.Load()
	n := make([]*Cursor, 0, len(old))
	for _, x := range old {
		if x != c {
			n = append(n, x)
		}
	}
	p.cursors.Store(&n)
}

// resolveStart turns a start policy into an offset within the partition.
func (p *Partition) resolveStart(start wire.StartAt, value int64) (int64, error) {
	switch start {
	case wire.StartEarliest:
		return p.StartOffset(), nil
	case wire.StartLatest:
		return p.NextOffset(), nil
	case wire.StartOffset:
		return min(max(value, p.StartOffset()), p.NextOffset()), nil
	case wire.StartTimestamp:
		off, err := p.log.OffsetForTimestamp(value)
		if err != nil {
			return p.NextOffset(), nil
		}
		return off, nil
	}
	return 0, wire.CodeInvalidRequest
}

// storageError maps a log error onto the protocol's codes, keeping the cause in the message.
func storageError(err error) error {
	switch {
	case errors.Is(err, disk.ErrNoSpace):
		return &wire.ProtocolError{Code: wire.CodeStorageFull, Message: err.Error()}
	case errors.Is(err, disk.ErrFailed):
		return &wire.ProtocolError{Code: wire.CodeStorageFailed, Message: err.Error()}
	case errors.Is(err, disk.ErrClosed):
		return wire.CodeShuttingDown
	}
	return err
}

// markTTL records, durably and before the record is appended, that partition p holds records with
// wire.HeaderTTL: written once in the partition's life (an empty file, fsynced with its directory),
// so a TTL-less partition's stream deliveries never look at headers, and one with such records
// still does after a restart. Errors are storage errors (CodeStorageFailed): the produce fails.
func (p *Partition) markTTL() error {
	p.ttlMu.Lock()
	defer p.ttlMu.Unlock()
	if p.ttlRecords.Load() {
		return nil
	}
	if err := disk.WriteFileAtomic(p.topic.e.opts.FS, p.ttlMark, nil, 0o644); err != nil {
		return storageError(fmt.Errorf("engine: topic %s partition %d: ttl mark: %w", p.topic.cfg.Name, p.id, err))
	}
	p.ttlRecords.Store(true)
	return nil
}
