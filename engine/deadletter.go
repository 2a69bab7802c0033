package engine

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"

	"github.com/sluicemq/sluice/wire"
)

// DeadLetterSuffix names a queue's dead-letter topic after its source topic.
const DeadLetterSuffix = ".dlq"

// maxTopicName is the longest valid topic name, in bytes (Kafka's limit).
const maxTopicName = 249

// DeadLetterTopic returns the name of topic's dead-letter topic: topic + ".dlq" when that is a valid
// name (at most 249 bytes), else the first 236 bytes of topic, "-", the first 8 hex digits of the
// SHA-256 of the whole name, and ".dlq" (249 bytes): always a valid name, and distinct for names
// that share their first 236 bytes.
func DeadLetterTopic(topic string) string {
	if len(topic)+len(DeadLetterSuffix) <= maxTopicName {
		return topic + DeadLetterSuffix
	}
	sum := sha256.Sum256([]byte(topic))
	h := hex.EncodeToString(sum[:4])
	keep := maxTopicName - len(DeadLetterSuffix) - 1 - len(h)
	return topic[:keep] + "-" + h + DeadLetterSuffix
}

// Dead-letter headers. Every dead letter carries the source topic, group, partition, offset and
// delivery count, and the reason: DeadLetterReasonMaxDeliveries, DeadLetterReasonExpired, or DeadLetterReasonUndecodable
// followed by the error for a record whose stored batch cannot be decoded (its value is then that
// raw stored batch, and HeaderDLQLastOffset names the last record it settles; a raw batch too large
// for a dead letter is cut to fit and marked with HeaderDLQTruncated "true"). Numbers are decimal.
const (
	HeaderDLQTopic      = "sluice-dlq-topic"
	HeaderDLQGroup      = "sluice-dlq-group"
	HeaderDLQPartition  = "sluice-dlq-partition"
	HeaderDLQOffset     = "sluice-dlq-offset"
	HeaderDLQLastOffset = "sluice-dlq-last-offset"
	HeaderDLQDeliveries = "sluice-dlq-deliveries"
	HeaderDLQReason     = "sluice-dlq-reason"
	HeaderDLQTruncated  = "sluice-dlq-truncated"
)

// The values of HeaderDLQReason: DeadLetterReasonUndecodable is a prefix, followed by the error.
const (
	DeadLetterReasonMaxDeliveries = "max-deliveries"
	DeadLetterReasonUndecodable   = "undecodable: "
	DeadLetterReasonExpired       = "expired" // its TTL (wire.HeaderTTL) ended before a member took it
)

// deadLetters appends every record marked for a dead-letter topic and then settles it. Janitor
// goroutine only: creating the dead-letter topic (mkdir, fsync, fallocate) and appending happen here,
// never on the event loop that marked the record. A run that fails stays marked and is retried on
// the next tick.
func (qt *queueTable) deadLetters() {
	for _, q := range qt.liveQueues() {
		for _, qp := range q.parts {
			qp.mu.Lock()
			var runs []*deadLetter
			for off, dl := range qp.dead {
				if off == dl.first {
					runs = append(runs, dl)
				}
			}
			qp.mu.Unlock()
			// In offset order: runs marked in one pass (expired records, say) keep their order.
			slices.SortFunc(runs, func(a, b *deadLetter) int { return cmp.Compare(a.first, b.first) })
			for _, dl := range runs {
				if err := qt.deadLetter(qp, dl); err != nil {
					qt.e.log.Warn("dead letter not appended; retrying", "topic", q.key.topic, "group", q.key.group,
						"partition", qp.p.id, "offset", dl.first, "err", err)
					break
				}
				qp.mu.Lock()
				if qp.dead[dl.first] == dl {
					delete(qp.dead, dl.first)
				}
				qp.settleLocked()
				qp.mu.Unlock()
				qt.store.touch()
			}
		}
	}
}

// deadLetter appends run dl of qp to the dead-letter topic, creating the topic if needed.
func (qt *queueTable) deadLetter(qp *queuePart, dl *deadLetter) error {
	if dl.first < qp.p.StartOffset() {
		return nil // retention removed it: nothing to keep
	}
	v, raw, err := batchAt(qp.p, dl.first)
	switch {
	case errors.Is(err, errExpired):
		return nil
	case errors.Is(err, errUndecodable): // keep what is there
	case err != nil:
		return err
	}
	defer v.Release()
	truncated := false
	if limit := qt.e.opts.MaxBatchBytes - 4096; len(raw) > limit { // room for the headers
		raw, truncated = raw[:max(limit, 0)], true
	}
	name := qp.q.key.topic
	hdrs := []wire.Header{
		{Key: []byte(HeaderDLQTopic), Value: []byte(name)},
		{Key: []byte(HeaderDLQGroup), Value: []byte(qp.q.key.group)},
		{Key: []byte(HeaderDLQPartition), Value: strconv.AppendInt(nil, int64(qp.p.id), 10)},
		{Key: []byte(HeaderDLQOffset), Value: strconv.AppendInt(nil, dl.first, 10)},
		{Key: []byte(HeaderDLQDeliveries), Value: strconv.AppendInt(nil, int64(dl.deliveries), 10)},
		{Key: []byte(HeaderDLQReason), Value: []byte(dl.reason)},
	}
	b := wire.NewBatchBuilder(len(raw) + 512)
	var it wire.RecordIter
	var r wire.Record
	if dl.first == dl.last && !truncated && recordAt(&it, raw, dl.first, &r) {
		b.Append(r.Key, r.Value, append(r.AppendHeaders(nil), hdrs...), r.Timestamp)
	} else { // the records cannot be read: keep the stored batch whole
		hdrs = append(hdrs, wire.Header{Key: []byte(HeaderDLQLastOffset), Value: strconv.AppendInt(nil, dl.last, 10)})
		if truncated {
			hdrs = append(hdrs, wire.Header{Key: []byte(HeaderDLQTruncated), Value: []byte("true")})
		}
		b.Append(nil, raw, hdrs, qt.e.opts.Clock().UnixMilli())
	}
	batch, err := b.Build()
	if err != nil {
		return err
	}
	e := qt.e
	dlq := DeadLetterTopic(name)
	if e.TopicByName(dlq) == nil {
		if _, err := e.CreateTopic(wire.TopicConfig{Name: dlq, Partitions: 1}); err != nil && e.TopicByName(dlq) == nil {
			return err
		}
	}
	_, _, err = e.Publish(context.Background(), dlq, 0, batch, wire.DurabilityWritten)
	return err
}
