package disk

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Defaults. Syncs requested by fsync-level waiters start at once (the group commit batches whatever
// arrives during one fdatasync). Data at written durability is synced in the background every second
// or every 64 MiB: often enough to bound what a power loss takes, rarely enough that the syncs do
// not keep write-protecting the pages the appender is filling (docs/benchmarks.md, disk).
const (
	DefaultSegmentBytes   = 64 << 20
	DefaultIndexInterval  = 4096
	DefaultFlushInterval  = time.Second // background sync of data nobody waits for
	DefaultFlushBytes     = 64 << 20
	DefaultMaxBatchBytes  = 8 << 20
	DefaultCheckInterval  = time.Second
	DefaultPretouchBytes  = 1 << 20
	MaxSegmentBytes       = 1 << 30 // positions are packed into 32 bits; see the package doc
	MaxSyncSpacing        = time.Second
	minSegmentBytes       = 4096
	minIndexInterval      = 64
	defaultSpareThreshold = 2 // pre-create the next segment once the active one is 1/2 full
	// defaultAllocAheadSteps: the housekeeper reserves 4 steps ahead, once 2 are left, so a writer
	// crosses 2 MiB between its wake-up and the allocated end. With 1 step (0.5 MiB of slack) the
	// appenders made two extensions out of three under load (docs/storage.md).
	defaultAllocAheadSteps = 4
)

// AllocStep is the unit in which a segment file's blocks are reserved. A segment file is
// SegmentBytes long and mapped whole, but its blocks are reserved with fallocate (keeping the
// length) one step at a time, ahead of the writer, so a new partition holds one step on disk, not
// a whole segment. 1 MiB, measured on ext4 (docs/storage.md, "Allocation in steps"): one step's
// fallocate takes about 20 µs (p99 under 0.1 ms on a quiet machine), cheap enough for an appender
// that reaches the allocated end to reserve more itself. Segments under 16 MiB use a sixteenth of
// their size (at least a page).
const AllocStep = 1 << 20

// allocStep is the step for segments of segmentBytes (a multiple of the page size).
func allocStep(segmentBytes int) int {
	return min(AllocStep, max(pageSize, segmentBytes/16/pageSize*pageSize))
}

// MaxRetentionAge is the longest RetentionAge (wire.MaxRetentionMs, about 292 years: the longest
// whole-millisecond time.Duration). 0 keeps everything.
const MaxRetentionAge = time.Duration(wire.MaxRetentionMs) * time.Millisecond

// Options configure a Log. The zero value of every field except Dir selects its default.
type Options struct {
	// Dir is the partition's directory; created if missing. Required.
	Dir string
	// SegmentBytes is the length of a segment file (default 64 MiB, at most MaxSegmentBytes), whose
	// blocks are reserved in AllocStep steps as it fills. One Append must fit in a segment.
	SegmentBytes int
	// IndexInterval is the number of log bytes between sparse index entries (default 4 KiB).
	IndexInterval int
	// FlushInterval bounds how long data that nobody waits to see synced (written durability) stays
	// unsynced: the background sync runs this long after the first such append (default 1 s). A sync
	// requested by an fsync-level waiter starts at once, whatever this says.
	FlushInterval time.Duration
	// FlushBytes starts a background sync once this many bytes are unsynced (default 64 MiB).
	FlushBytes int
	// SyncSpacing, when positive, is the shortest time between the starts of two fdatasync rounds,
	// at most MaxSyncSpacing (default 0: each round starts as soon as a sync is asked for). A round
	// asked for sooner waits out the rest, and the appends arriving meanwhile join it: under a steady
	// stream of fsync-level produces the log syncs at most once per SyncSpacing, each sync covering
	// more; a request after a quiet spell is synced at once. It trades up to SyncSpacing of latency
	// for fewer syncs: on a VM whose host charges its own work for each flush to the guest's CPU
	// quota, back-to-back syncs got the whole machine throttled (docs/benchmarks.md, "The fsync tail
	// is the host's CPU quota").
	SyncSpacing time.Duration
	// RetentionBytes deletes the oldest whole segments while the log's files exceed it (0: keep all).
	RetentionBytes int64
	// RetentionAge deletes whole sealed segments whose retention time is older than this (0: keep
	// all; at most MaxRetentionAge). A segment's retention time is its newest batch's max timestamp,
	// each batch's capped at the Clock reading when the log indexed it (just after its append), so a
	// record stamped in the future cannot hold a segment back: see docs/storage.md, Retention.
	RetentionAge time.Duration
	// CheckInterval is how often retention is enforced in the background (default 1 s).
	CheckInterval time.Duration
	// MaxBatchBytes rejects a single batch larger than this (default 8 MiB, at most SegmentBytes).
	MaxBatchBytes int
	// PretouchBytes is how far ahead of the writer pages are faulted in (default 1 MiB), never past
	// the allocated end of the file.
	PretouchBytes int
	// AllocAheadBytes is how far ahead of the writer the active segment's blocks are reserved, in
	// whole steps (default four steps: 4 MiB for segments of 16 MiB and more). The housekeeper
	// reserves more once the writer is within half of this of the allocated end (and past half of
	// the first step: a barely written segment keeps one step); an appender that reaches the
	// allocated end anyway reserves more itself. Larger values let a fast writer run longer without
	// the housekeeper and cost that much disk per written-to partition.
	AllocAheadBytes int
	// Logger receives recovery reports and failures (default slog.Default()).
	Logger *slog.Logger
	// OnSync, when set, is called from the flusher goroutine after each successful fdatasync with
	// the offset below which everything is durable. It must not block for long and must not call
	// Sync or WaitSynced.
	OnSync func(syncedNext int64)
	// OnSyncDuration, when set, is called from the flusher with the duration of each sync round
	// (its fdatasyncs and directory fsync), for metrics. It must not block.
	OnSyncDuration func(time.Duration)
	// FS is the file system (default OSFS). Tests inject faults through it.
	FS FS
	// Clock returns the current time for retention by age: the cap on batch timestamps and the
	// cutoff (default time.Now). Tests drive it.
	Clock func() time.Time
}

// withDefaults returns a copy with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.IndexInterval == 0 {
		o.IndexInterval = DefaultIndexInterval
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.FlushBytes == 0 {
		o.FlushBytes = DefaultFlushBytes
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = min(DefaultMaxBatchBytes, o.SegmentBytes)
	}
	if o.PretouchBytes == 0 {
		o.PretouchBytes = DefaultPretouchBytes
	}
	if o.AllocAheadBytes == 0 {
		o.AllocAheadBytes = defaultAllocAheadSteps * allocStep(o.SegmentBytes)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}

// Validate reports the first invalid field, after defaults are applied.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case o.Dir == "":
		return fmt.Errorf("%w: Dir is required", ErrInvalidOptions)
	case o.SegmentBytes < minSegmentBytes || o.SegmentBytes > MaxSegmentBytes:
		return fmt.Errorf("%w: SegmentBytes %d outside [%d, %d]", ErrInvalidOptions, o.SegmentBytes, minSegmentBytes, MaxSegmentBytes)
	case o.SegmentBytes%pageSize != 0:
		return fmt.Errorf("%w: SegmentBytes %d not a multiple of the page size %d", ErrInvalidOptions, o.SegmentBytes, pageSize)
	case o.IndexInterval < minIndexInterval:
		return fmt.Errorf("%w: IndexInterval %d below %d", ErrInvalidOptions, o.IndexInterval, minIndexInterval)
	case o.FlushInterval < 0 || o.FlushBytes < 0 || o.CheckInterval < 0 || o.PretouchBytes < 0 || o.SyncSpacing < 0:
		return fmt.Errorf("%w: negative flush, sync spacing, check or pretouch setting", ErrInvalidOptions)
	case o.SyncSpacing > MaxSyncSpacing:
		return fmt.Errorf("%w: SyncSpacing %v above %v", ErrInvalidOptions, o.SyncSpacing, MaxSyncSpacing)
	case o.AllocAheadBytes < 0 || o.AllocAheadBytes > MaxSegmentBytes:
		return fmt.Errorf("%w: AllocAheadBytes %d outside [0, %d]", ErrInvalidOptions, o.AllocAheadBytes, MaxSegmentBytes)
	case o.RetentionBytes < 0 || o.RetentionAge < 0:
		return fmt.Errorf("%w: negative retention", ErrInvalidOptions)
	case o.RetentionAge > MaxRetentionAge:
		return fmt.Errorf("%w: RetentionAge %v above %v (0 keeps everything)", ErrInvalidOptions, o.RetentionAge, MaxRetentionAge)
	case o.MaxBatchBytes < 61 || o.MaxBatchBytes > o.SegmentBytes:
		return fmt.Errorf("%w: MaxBatchBytes %d outside [61, SegmentBytes]", ErrInvalidOptions, o.MaxBatchBytes)
	}
	return nil
}
