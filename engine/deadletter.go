package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
// delivery count, and the reason: "max-deliveries", or "undecodable: <error>" for a record whose
// stored batch cannot be decoded (its value is then that raw stored batch, and sluice-dlq-last-offset
// names the last record it settles; a raw batch too large for a dead letter is cut to fit and marked
// sluice-dlq-truncated).
const (
	hdrDLQTopic      = "sluice-dlq-topic"
	hdrDLQGroup      = "sluice-dlq-group"
	hdrDLQPartition  = "sluice-dlq-partition"
	hdrDLQOffset     = "sluice-dlq-offset"
	hdrDLQLastOffset = "sluice-dlq-last-offset"
	hdrDLQDeliveries = "sluice-dlq-deliveries"
	hdrDLQReason     = "sluice-dlq-reason"
	hdrDLQTruncated  = "sluice-dlq-truncated"
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
	v, err := qp.p.log.Read(dl.first, 1)
	if err != nil {
		return storageError(err)
	}
	defer v.Release()
	h, err := wire.ParseBatchHeader(v.Data)
	if err != nil || h.Size() > len(v.Data) {
		h.BaseOffset, h.Length = dl.first, int32(len(v.Data))-12 // keep what is there
	}
	raw := v.Data[:min(h.Size(), len(v.Data))]
	truncated := false
	if limit := qt.e.opts.MaxBatchBytes - 4096; len(raw) > limit { // room for the headers
		raw, truncated = raw[:max(limit, 0)], true
	}
	name := qp.q.key.topic
	hdrs := []wire.Header{
		{Key: []byte(hdrDLQTopic), Value: []byte(name)},
		{Key: []byte(hdrDLQGroup), Value: []byte(qp.q.key.group)},
		{Key: []byte(hdrDLQPartition), Value: strconv.AppendInt(nil, int64(qp.p.id), 10)},
		{Key: []byte(hdrDLQOffset), Value: strconv.AppendInt(nil, dl.first, 10)},
		{Key: []byte(hdrDLQDeliveries), Value: strconv.AppendInt(nil, int64(dl.deliveries), 10)},
		{Key: []byte(hdrDLQReason), Value: []byte(dl.reason)},
	}
	b := wire.NewBatchBuilder(len(raw) + 512)
	found := false
	var it wire.RecordIter
	var r wire.Record
	if _, err := it.Reset(raw); err == nil && dl.first == dl.last && !truncated {
		for it.Next(&r) {
			if r.Offset == dl.first {
				b.Append(r.Key, r.Value, append(r.AppendHeaders(nil), hdrs...), r.Timestamp)
				found = true
				break
			}
		}
	}
	if !found { // the records cannot be read: keep the stored batch whole
		hdrs = append(hdrs, wire.Header{Key: []byte(hdrDLQLastOffset), Value: strconv.AppendInt(nil, dl.last, 10)})
		if truncated {
			hdrs = append(hdrs, wire.Header{Key: []byte(hdrDLQTruncated), Value: []byte("true")})
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
