package client

import (
	"fmt"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// ConsumerOptions configure a Consumer. Subscribe starts from DefaultConsumerOptions and applies the
// With… options in order; the result must pass Validate.
type ConsumerOptions struct {
	// Group makes the consumer a member of a consumer group: the broker deals the topic's partitions
	// over the members, the consumer starts each partition at the group's committed offset, and
	// commits its progress. Empty: a plain subscription to every partition (or Partition).
	Group string

	// Partition restricts a plain subscription to one partition. Default AllPartitions. Not with a
	// Group.
	Partition int32

	// Start says where each partition begins when the group has no committed offset (with a Group)
	// or always (without). StartValue is the offset or the Unix time in milliseconds. Default
	// StartAuto: wire.StartCommitted (else earliest) with a Group, wire.StartLatest without.
	Start      wire.StartAt
	StartValue int64

	// Reset says where a partition starts when its start offset (the group's committed offset, or
	// StartValue with StartOffset) is outside the partition's retained records: below the oldest
	// (removed by retention) or beyond the end (the topic was deleted and recreated). As Kafka's
	// auto.offset.reset: wire.ResetEarliest (the default: nothing retained is skipped),
	// wire.ResetLatest (only records produced from now on), or wire.ResetError (Subscribe fails, or
	// the consumer stops, with wire.CodeOffsetOutOfRange).
	Reset wire.OffsetReset

	// Credit is the delivery window in bytes: how much the broker may push ahead of the application.
	// The consumer grants bytes back as the application consumes them, once half the window is used.
	// Memory held by undelivered records stays under Credit plus one batch per partition. Default
	// 4 MiB; at least 1 KiB.
	Credit int

	// AutoCommit is the interval of automatic commits for a group member; 0 or negative disables
	// them. Default 5 s.
	AutoCommit time.Duration

	// Queue makes the subscription a work queue: records go to competing consumers, each record
	// must be acked (Message.Ack) or it is delivered again after AckTimeout, up to MaxDeliveries.
	Queue         bool
	AckTimeout    time.Duration // 0: the broker's default
	MaxDeliveries int           // 0: the broker's default
	// MaxAckPending bounds the work-queue records the broker hands this consumer before it settles
	// some (acks, nacks, or lets them time out); the broker dispatches nothing more until then.
	// Default 1: a record's ack timeout then starts when the application is done with the previous
	// one and is ready for it, not when it lands in the client's buffer. A larger bound prefetches
	// (hiding a round trip per record) but starts the clock of every prefetched record at once:
	// keep MaxAckPending × the handling time of a record well under AckTimeout. 0 asks for the
	// broker's default. Sent only with Queue.
	MaxAckPending int

	// Filter is a server-side filter: "key=value" header terms joined by '&', or with FilterLang
	// wire.FilterCEL a CEL expression (docs/protocol.md, Subscribe).
	Filter     string
	FilterLang wire.FilterLang

	// OnCorrupt is what the consumer does with a delivered batch it cannot read. Default CorruptStop.
	OnCorrupt CorruptPolicy

	// Isolation says which records of transactions the consumer reads: wire.ReadCommitted (the
	// default) once their transaction commits, never an aborted one's; wire.ReadUncommitted as soon
	// as the broker stores them, aborted ones included. Transaction markers are never delivered.
	// Sent only when not the default (brokers before the field refuse it); not with Queue.
	Isolation wire.Isolation
}

// ConsumerOption sets a field of ConsumerOptions.
type ConsumerOption func(*ConsumerOptions)

// WithReadUncommitted makes the consumer read transactions' records as soon as the broker stores
// them, those of open and aborted transactions too (ConsumerOptions.Isolation).
func WithReadUncommitted() ConsumerOption {
	return func(o *ConsumerOptions) { o.Isolation = wire.ReadUncommitted }
}

// WithGroup joins the consumer group name.
func WithGroup(name string) ConsumerOption { return func(o *ConsumerOptions) { o.Group = name } }

// WithPartition subscribes to one partition only.
func WithPartition(p int32) ConsumerOption { return func(o *ConsumerOptions) { o.Partition = p } }

// WithStartEarliest starts at the oldest retained record.
func WithStartEarliest() ConsumerOption { return withStart(wire.StartEarliest, 0) }

// WithStartLatest starts at the next record produced.
func WithStartLatest() ConsumerOption { return withStart(wire.StartLatest, 0) }

// WithStartOffset starts at offset.
func WithStartOffset(offset int64) ConsumerOption { return withStart(wire.StartOffset, offset) }

// WithStartTime starts at the first record stamped at or after t.
func WithStartTime(t time.Time) ConsumerOption { return withStart(wire.StartTimestamp, t.UnixMilli()) }

// WithStartCommitted starts at the group's committed offset, else at the earliest record.
func WithStartCommitted() ConsumerOption { return withStart(wire.StartCommitted, 0) }

func withStart(s wire.StartAt, v int64) ConsumerOption {
	return func(o *ConsumerOptions) { o.Start, o.StartValue = s, v }
}

// WithOffsetReset sets where a partition starts when its start offset is out of range (see
// ConsumerOptions.Reset).
func WithOffsetReset(r wire.OffsetReset) ConsumerOption {
	return func(o *ConsumerOptions) { o.Reset = r }
}

// WithCredit sets the delivery window in bytes.
func WithCredit(bytes int) ConsumerOption { return func(o *ConsumerOptions) { o.Credit = bytes } }

// WithAutoCommit sets the automatic commit interval; 0 or negative disables automatic commits.
func WithAutoCommit(interval time.Duration) ConsumerOption {
	return func(o *ConsumerOptions) { o.AutoCommit = interval }
}

// WithQueue makes the subscription a work queue with the given visibility timeout and delivery
// limit (zero: the broker's defaults).
func WithQueue(ackTimeout time.Duration, maxDeliveries int) ConsumerOption {
	return func(o *ConsumerOptions) { o.Queue, o.AckTimeout, o.MaxDeliveries = true, ackTimeout, maxDeliveries }
}

// WithMaxAckPending sets how many unsettled work-queue records the consumer may hold (see
// ConsumerOptions.MaxAckPending).
func WithMaxAckPending(n int) ConsumerOption { return func(o *ConsumerOptions) { o.MaxAckPending = n } }

// WithFilter sets a server-side header filter.
func WithFilter(filter string) ConsumerOption { return func(o *ConsumerOptions) { o.Filter = filter } }

// AllPartitions, as ConsumerOptions.Partition, subscribes to every partition of the topic.
const AllPartitions int32 = -1

// StartAuto, as ConsumerOptions.Start, starts a group member at its group's committed offset (else
// the earliest record) and a plain subscription at the next record produced.
const StartAuto wire.StartAt = 0xff

// DefaultConsumerOptions returns the options Subscribe starts from.
func DefaultConsumerOptions() ConsumerOptions {
	return ConsumerOptions{
		Partition:     AllPartitions,
		Start:         StartAuto,
		Credit:        4 << 20,
		AutoCommit:    5 * time.Second,
		MaxAckPending: 1,
	}
}

// start resolves StartAuto.
func (o *ConsumerOptions) start() wire.StartAt {
	switch {
	case o.Start != StartAuto:
		return o.Start
	case o.Group != "":
		return wire.StartCommitted
	}
	return wire.StartLatest
}

// Validate reports the first invalid field, wrapping ErrOptions.
func (o *ConsumerOptions) Validate() error {
	switch {
	case o.Group != "" && o.Partition >= 0:
		return fmt.Errorf("%w: a group member takes the partitions the group assigns", ErrOptions)
	case o.Partition < -1:
		return fmt.Errorf("%w: partition %d", ErrOptions, o.Partition)
	case o.Credit < 1<<10 || o.Credit > 1<<31-1:
		return fmt.Errorf("%w: credit %d outside [1 KiB, 2 GiB)", ErrOptions, o.Credit)
	case o.Start > wire.StartCommitted && o.Start != StartAuto:
		return fmt.Errorf("%w: start %d", ErrOptions, o.Start)
	case o.Reset > wire.ResetError:
		return fmt.Errorf("%w: offset reset %d", ErrOptions, o.Reset)
	case o.AckTimeout < 0 || o.MaxDeliveries < 0 || o.MaxDeliveries > 0xffff:
		return fmt.Errorf("%w: ack timeout %v, max deliveries %d", ErrOptions, o.AckTimeout, o.MaxDeliveries)
	case o.MaxAckPending < 0 || int64(o.MaxAckPending) > 1<<32-1:
		return fmt.Errorf("%w: max ack pending %d", ErrOptions, o.MaxAckPending)
	case o.OnCorrupt > CorruptSkip:
		return fmt.Errorf("%w: corrupt-batch policy %v", ErrOptions, o.OnCorrupt)
	case o.Isolation > wire.ReadUncommitted:
		return fmt.Errorf("%w: isolation %d", ErrOptions, o.Isolation)
	case o.Isolation == wire.ReadUncommitted && o.Queue:
		return fmt.Errorf("%w: a work queue reads committed records only", ErrOptions)
	}
	return nil
}
