package disk

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults. The flush figures come from docs/benchmarks.md (same disk, one run): fdatasync costs
// about 75-170 µs p50 and Go timers on these VMs fire in steps of about 1 ms, so any timer window
// costs an fsync-level ack a millisecond for nothing. The group commit therefore syncs at once and
// lets load build the batch (FlushInterval 0): the fsync-level append p50 fell from 1.4 ms with a
// 1 ms window to 0.23 ms, and group-commit throughput rose. 1 MiB unsynced starts a sync early when
// a window is configured.
const (
	DefaultSegmentBytes   = 64 << 20
	DefaultIndexInterval  = 4096
	DefaultFlushInterval  = 0 // sync at once; appends during a sync share the next
	DefaultFlushBytes     = 1 << 20
	DefaultMaxBatchBytes  = 8 << 20
	DefaultCheckInterval  = time.Second
	DefaultPretouchBytes  = 1 << 20
	MaxSegmentBytes       = 1 << 30 // positions are packed into 32 bits; see the package doc
	minSegmentBytes       = 4096
	minIndexInterval      = 64
	defaultSpareThreshold = 2 // pre-create the next segment once the active one is 1/2 full
)

// Options configure a Log. The zero value of every field except Dir selects its default.
type Options struct {
	// Dir is the partition's directory; created if missing. Required.
	Dir string
	// SegmentBytes is the size every segment file is preallocated to (default 64 MiB, at most
	// MaxSegmentBytes). One Append must fit in a segment.
	SegmentBytes int
	// IndexInterval is the number of log bytes between sparse index entries (default 4 KiB).
	IndexInterval int
	// FlushInterval is how long the group commit waits, after the first unsynced append, for more
	// appends to share its fdatasync. 0 (the default) waits for nothing: appends that arrive while
	// a sync runs share the next one, which measured lower latency at equal throughput here.
	FlushInterval time.Duration
	// FlushBytes starts a group commit early once this many bytes are unsynced (default 1 MiB).
	FlushBytes int
	// RetentionBytes deletes the oldest whole segments while the log's files exceed it (0: keep all).
	RetentionBytes int64
	// RetentionAge deletes whole segments whose newest record timestamp is older than this (0: keep all).
	RetentionAge time.Duration
	// CheckInterval is how often retention is enforced in the background (default 1 s).
	CheckInterval time.Duration
	// MaxBatchBytes rejects a single batch larger than this (default 8 MiB, at most SegmentBytes).
	MaxBatchBytes int
	// PretouchBytes is how far ahead of the writer pages are faulted in (default 1 MiB).
	PretouchBytes int
	// Logger receives recovery reports and failures (default slog.Default()).
	Logger *slog.Logger
	// OnSync, when set, is called from the flusher goroutine after each successful fdatasync with
	// the offset below which everything is durable. It must not block for long and must not call
	// Sync or WaitSynced.
	OnSync func(syncedNext int64)
	// FS is the file system (default OSFS). Tests inject faults through it.
	FS FS
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
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FS == nil {
		o.FS = OSFS{}
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
	case o.FlushInterval < 0 || o.FlushBytes < 0 || o.CheckInterval < 0 || o.PretouchBytes < 0:
		return fmt.Errorf("%w: negative flush, check or pretouch setting", ErrInvalidOptions)
	case o.RetentionBytes < 0 || o.RetentionAge < 0:
		return fmt.Errorf("%w: negative retention", ErrInvalidOptions)
	case o.MaxBatchBytes < 61 || o.MaxBatchBytes > o.SegmentBytes:
		return fmt.Errorf("%w: MaxBatchBytes %d outside [61, SegmentBytes]", ErrInvalidOptions, o.MaxBatchBytes)
	}
	return nil
}
