package engine

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// Options configure an Engine. The zero value of every field but DataDir means "the default" below.
type Options struct {
	// DataDir holds topics, offsets and group state. Required.
	DataDir string

	// DefaultPartitions is the partition count of a topic created without one. Default 4.
	DefaultPartitions int

	// AutoCreateTopics creates a topic with DefaultPartitions on its first produce (never on a
	// subscribe or a describe).
	AutoCreateTopics bool

	// SegmentBytes is the length of each segment file (blocks reserved in disk.AllocStep steps): a
	// multiple of the page size, 64 KiB..1 GiB, at least MaxBatchBytes. Default 64 MiB.
	SegmentBytes int64

	// FlushInterval and FlushBytes drive the group commit: one fdatasync covers every batch appended
	// since the last, issued when FlushBytes are unsynced or FlushInterval has passed since the first
	// unsynced append. Defaults are the disk package's.
	FlushInterval time.Duration
	FlushBytes    int64
	// SyncSpacing, when positive, is the shortest time between the starts of a partition's
	// fdatasyncs, at most disk.MaxSyncSpacing (disk.Options.SyncSpacing): under a stream of
	// fsync-level produces, fewer and larger syncs at up to that much latency. Default 0: none.
	SyncSpacing time.Duration

	// RetentionBytes and RetentionAge are the defaults for topics created without their own.
	// 0 keeps everything. RetentionAge is whole milliseconds in practice (topics store it in ms), at
	// least 1 ms when set and at most disk.MaxRetentionAge (about 292 years).
	RetentionBytes int64
	RetentionAge   time.Duration

	// MaxBatchBytes is the largest record batch accepted. Default 1 MiB.
	MaxBatchBytes int

	// MaxDeliverBytes caps one delivery (one Deliver frame) to a consumer. Default 1 MiB.
	MaxDeliverBytes int

	// QueueAckTimeout is a work queue's default visibility timeout: a delivered record not acked in
	// this time is delivered again. Default 30 s.
	QueueAckTimeout time.Duration

	// QueueMaxDeliveries is a work queue's default delivery limit before a record goes to the
	// dead-letter topic. Default 5.
	QueueMaxDeliveries int

	// QueueMaxAckPending is a work-queue member's default bound on the records it holds unsettled
	// (delivered, neither acked nor nacked nor expired); a member at its bound is dispatched nothing
	// more until it settles some. Default 1000.
	QueueMaxAckPending int

	// QueueMaxAckPendingLimit caps what a subscription may ask for as its MaxAckPending. Default 10000.
	QueueMaxAckPendingLimit int

	// QueueMaxTracked bounds the records one work-queue partition tracks unsettled (pending with a
	// member or due for redelivery): at the bound it dispatches nothing new from the log, only
	// redeliveries, until records settle. Default 100000 (about 10 MiB of state per partition).
	QueueMaxTracked int

	// MemoryDir holds the segments of memory-only topics: a tmpfs directory, emptied when the engine
	// opens. Default /dev/shm/sluice-<hash of DataDir>, or DataDir/memory when /dev/shm is absent.
	MemoryDir string

	// MemorySegmentBytes is the segment size of memory-only topics, whose pages are RAM: a multiple
	// of the page size, 64 KiB..1 GiB. Default 8 MiB. A memory topic is refused unless its segments
	// (the smaller of this and its SegmentBytes) hold MaxBatchBytes.
	MemorySegmentBytes int64

	// OffsetsRetention is how long a consumer group without members keeps its committed offsets
	// after its newest commit (Kafka's offsets.retention.minutes); then they are dropped, and with
	// them its lag series. Default 7 days; negative keeps them for ever.
	OffsetsRetention time.Duration

	// GroupRevokeTimeout is how long a partition taken from one group member waits for that member
	// to hand it back (a commit for the partition, offset -1 included) before the group gives it to
	// its new member anyway. A member that leaves hands its partitions back at once. Default 5 s;
	// negative hands partitions over at once, without waiting.
	GroupRevokeTimeout time.Duration

	// Logger receives the engine's structured logs. Default slog.Default().
	Logger *slog.Logger

	// Clock returns the current time. The engine reads time only through it: work-queue visibility
	// deadlines and nack delays, the partition logs' retention by age, commit times and their
	// OffsetsRetention, dead-letter timestamps. Its timers (the queue janitor's tick, the group
	// revoke timeout, the group expirer) run on the runtime's clock: tests drive both with
	// testing/synctest (see engine/script_test.go) or set Clock alone. Default time.Now.
	Clock func() time.Time

	// FS is the file system under the partition logs and topic.json files. Default disk.OSFS; tests
	// inject faults.
	FS disk.FS

	// TxnTimeout aborts a transaction open longer than this since its first batch (a producer that
	// went away mid-transaction), checked every second. Default 60 s (sluiced --txn-timeout);
	// negative is invalid.
	TxnTimeout time.Duration
}

// ErrOptions marks an invalid option.
var ErrOptions = errors.New("engine: invalid options")

func (o *Options) setDefaults() {
	if o.DefaultPartitions == 0 {
		o.DefaultPartitions = 4
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = 1 << 20
	}
	if o.MaxDeliverBytes == 0 {
		o.MaxDeliverBytes = 1 << 20
	}
	if o.TxnTimeout == 0 {
		o.TxnTimeout = 60 * time.Second
	}
	if o.QueueAckTimeout == 0 {
		o.QueueAckTimeout = 30 * time.Second
	}
	if o.QueueMaxDeliveries == 0 {
		o.QueueMaxDeliveries = 5
	}
	if o.QueueMaxAckPending == 0 {
		o.QueueMaxAckPending = 1000
	}
	if o.QueueMaxAckPendingLimit == 0 {
		o.QueueMaxAckPendingLimit = 10000
	}
	if o.QueueMaxTracked == 0 {
		o.QueueMaxTracked = 100000
	}
	if o.MemorySegmentBytes == 0 {
		o.MemorySegmentBytes = 8 << 20
	}
	if o.MemoryDir == "" {
		o.MemoryDir = defaultMemoryDir(o.DataDir)
	}
	if o.OffsetsRetention == 0 {
		o.OffsetsRetention = 7 * 24 * time.Hour
	}
	if o.GroupRevokeTimeout == 0 {
		o.GroupRevokeTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.FS == nil {
		o.FS = disk.OSFS{}
	}
}

// Validate reports the first invalid option. Sizes and durations are range-checked here, so that
// every topic created with the defaults can open its partition logs.
func (o *Options) Validate() error {
	page := int64(os.Getpagesize())
	badSegment := func(n int64) bool { return n < minSegmentBytes || n > disk.MaxSegmentBytes || n%page != 0 }
	switch {
	case o.DataDir == "":
		return fmt.Errorf("%w: DataDir is required", ErrOptions)
	case o.DefaultPartitions < 1 || o.DefaultPartitions > maxPartitions:
		return fmt.Errorf("%w: DefaultPartitions %d outside 1..%d", ErrOptions, o.DefaultPartitions, maxPartitions)
	case badSegment(o.SegmentBytes):
		return fmt.Errorf("%w: SegmentBytes %d not a multiple of %d in %d..%d", ErrOptions, o.SegmentBytes, page, minSegmentBytes, disk.MaxSegmentBytes)
	case badSegment(o.MemorySegmentBytes):
		return fmt.Errorf("%w: MemorySegmentBytes %d not a multiple of %d in %d..%d", ErrOptions, o.MemorySegmentBytes, page, minSegmentBytes, disk.MaxSegmentBytes)
	case o.MaxBatchBytes < wire.BatchHeaderSize || int64(o.MaxBatchBytes) > o.SegmentBytes:
		// A memory topic whose segments cannot hold MaxBatchBytes is refused at create instead.
		return fmt.Errorf("%w: MaxBatchBytes %d must fit a segment (SegmentBytes %d)", ErrOptions, o.MaxBatchBytes, o.SegmentBytes)
	case o.MaxDeliverBytes < 1:
		return fmt.Errorf("%w: MaxDeliverBytes %d", ErrOptions, o.MaxDeliverBytes)
	case o.QueueMaxAckPendingLimit < 0 || o.QueueMaxTracked < 0:
		return fmt.Errorf("%w: QueueMaxAckPendingLimit %d, QueueMaxTracked %d", ErrOptions, o.QueueMaxAckPendingLimit, o.QueueMaxTracked)
	case o.QueueMaxAckPending < 0:
		return fmt.Errorf("%w: QueueMaxAckPending %d", ErrOptions, o.QueueMaxAckPending)
	case o.SyncSpacing > disk.MaxSyncSpacing:
		return fmt.Errorf("%w: SyncSpacing %v above %v", ErrOptions, o.SyncSpacing, disk.MaxSyncSpacing)
	case o.RetentionBytes < 0 || o.RetentionAge < 0 || o.FlushInterval < 0 || o.FlushBytes < 0 || o.SyncSpacing < 0:
		return fmt.Errorf("%w: negative retention, flush or sync spacing setting", ErrOptions)
	case o.RetentionAge > disk.MaxRetentionAge || (o.RetentionAge > 0 && o.RetentionAge < time.Millisecond):
		return fmt.Errorf("%w: RetentionAge %v outside 1ms..%v (0 keeps everything)", ErrOptions, o.RetentionAge, disk.MaxRetentionAge)
	case o.QueueAckTimeout < 0 || o.QueueMaxDeliveries < 0:
		return fmt.Errorf("%w: negative queue setting", ErrOptions)
	case o.TxnTimeout < 0:
		return fmt.Errorf("%w: TxnTimeout %v", ErrOptions, o.TxnTimeout)
	}
	return nil
}

const maxPartitions = 4096

// minSegmentBytes is the smallest SegmentBytes and MemorySegmentBytes an engine takes (64 KiB);
// disk allows smaller, down to a page. The largest is disk.MaxSegmentBytes (1 GiB), as for a
// topic's own SegmentBytes (checkTopicConfig).
const minSegmentBytes = 64 << 10

// defaultMemoryDir places memory-only topics on /dev/shm when the machine has it.
func defaultMemoryDir(dataDir string) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		abs, err := filepath.Abs(dataDir)
		if err != nil {
			abs = dataDir
		}
		h := fnv.New64a()
		h.Write([]byte(abs))
		return filepath.Join("/dev/shm", fmt.Sprintf("sluice-%016x", h.Sum64()))
	}
	return filepath.Join(dataDir, "memory")
}
