package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Publisher appends to one partition of one topic in-process. It is bound once, by
// Engine.Publisher: a publish does no topic lookup and no partition choice, only the append (and,
// at fsync durability, the wait for the group commit). Publish and PublishRecord allocate nothing
// at none and written durability.
//
// A Publisher is for one goroutine at a time (PublishRecord reuses its batch builder); use one per
// publishing goroutine. It is bound to the topic as it was when made: once that topic is deleted,
// every publish fails with CodeUnknownTopic, even if a topic of the same name is created again.
type Publisher struct {
	p    *Partition
	d    wire.Durability
	wait bool               // d is fsync and the topic is on disk: wait for the fdatasync
	b    *wire.BatchBuilder // PublishRecord's; grows to the largest record published, then reused
}

// Publisher returns a Publisher bound to partition of topic, at durability d (none, written or
// fsync: what Engine.Publish's d means). The topic is created as Engine.Publish creates it (when the
// engine auto-creates topics), else it must exist (CodeUnknownTopic); partition must be one of its
// partitions (CodeUnknownPartition).
func (e *Engine) Publisher(topic string, partition int32, d wire.Durability) (*Publisher, error) {
	if d > wire.DurabilityFsync {
		return nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("durability %d", d)}
	}
	t, err := e.AutoCreate(topic)
	if err != nil {
		return nil, err
	}
	p := t.Partition(partition)
	if p == nil {
		return nil, &wire.ProtocolError{Code: wire.CodeUnknownPartition,
			Message: fmt.Sprintf("topic %s has %d partitions, not %d", topic, t.Partitions(), partition)}
	}
	return &Publisher{p: p, d: d, wait: d == wire.DurabilityFsync && !t.Memory(), b: wire.NewBatchBuilder(512)}, nil
}

// Partition is the partition the publisher appends to.
func (pb *Publisher) Partition() *Partition { return pb.p }

// Publish appends record batches (built with wire.BatchBuilder, one or more back to back) and
// returns once they meet the publisher's durability, with the offsets of the first and last record
// stored. ctx bounds only the wait for an fdatasync.
func (pb *Publisher) Publish(ctx context.Context, batches []byte) (base, last int64, err error) {
	if pb.p.topic.deleted.Load() {
		return 0, 0, pb.deleted()
	}
	base, last, err = pb.p.Append(batches)
	if err != nil {
		return base, last, err
	}
	return base, last, pb.synced(ctx, last+1)
}

// synced returns once the records before next meet the publisher's durability: an fdatasync covers
// them at fsync, nothing is waited for otherwise. ctx bounds the wait.
func (pb *Publisher) synced(ctx context.Context, next int64) error {
	if !pb.wait {
		return nil
	}
	return pb.p.log.WaitSynced(ctx, next)
}

// PublishRecord publishes one record, time-stamped now, as a batch of its own, and returns its
// offset. The key, value and headers are copied (into the publisher's builder, then into the log):
// the caller keeps them.
//
// The batch is the publisher's own builder's, right by construction: it is stored without
// ValidateProduced's pass over it (a third of PublishRecord's cost at 100 B, BenchmarkLocalPublishPoll).
func (pb *Publisher) PublishRecord(ctx context.Context, key, value []byte, headers ...wire.Header) (int64, error) {
	if pb.p.topic.deleted.Load() {
		return 0, pb.deleted()
	}
	pb.b.Reset()
	pb.b.Append(key, value, headers, time.Now().UnixMilli())
	batch, err := pb.b.Build()
	if err != nil {
		return 0, err
	}
	base, err := pb.p.appendBuilt(batch, 1, hasTTL(headers))
	if err != nil {
		return base, err
	}
	return base, pb.synced(ctx, base+1)
}

func (pb *Publisher) deleted() error {
	return &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: "topic " + pb.p.topic.cfg.Name + " was deleted"}
}

// hasTTL reports whether headers carry wire.HeaderTTL (of any value).
func hasTTL(headers []wire.Header) bool {
	for _, h := range headers {
		if string(h.Key) == wire.HeaderTTL {
			return true
		}
	}
	return false
}
