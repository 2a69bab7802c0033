package engine

import (
	"cmp"
	"slices"
)

// QueuePartitionInfo is one partition of a work queue as Queues reports it.
type QueuePartitionInfo struct {
	Partition int32
	Ready     int64 // records waiting to be dispatched: not yet taken from the log, or due for redelivery
	Pending   int64 // records dispatched to a member and neither acked nor nacked yet
	Dead      int64 // record runs marked for the dead-letter topic, not yet appended to it
	Floor     int64 // every offset below is settled
	End       int64 // the partition's end
}

// QueueInfo describes a work queue: a group consuming a topic in queue mode. DeadLettered is the
// number of records in the topic's dead-letter topic (shared by every queue group of the topic).
type QueueInfo struct {
	Group        string
	Topic        string
	Members      int
	Partitions   []QueuePartitionInfo
	DeadLettered int64
}

// Queues describes the work queues joined since the engine opened, sorted by group then topic.
// Each partition is read under its own lock: the figures of different partitions are not one
// instant's.
func (e *Engine) Queues() []QueueInfo {
	qt := e.queues
	qt.mu.Lock()
	qs := make([]*queue, 0, len(qt.queues))
	for _, q := range qt.queues {
		if !q.dropped.Load() {
			qs = append(qs, q)
		}
	}
	qt.mu.Unlock()
	out := make([]QueueInfo, 0, len(qs))
	for _, q := range qs {
		info := QueueInfo{Group: q.key.group, Topic: q.key.topic}
		q.mu.Lock()
		info.Members = len(q.members)
		q.mu.Unlock()
		for _, qp := range q.parts {
			qp.mu.Lock()
			end := qp.p.NextOffset()
			info.Partitions = append(info.Partitions, QueuePartitionInfo{Partition: qp.p.id,
				Ready: max(end-qp.next, 0) + int64(len(qp.due)), Pending: int64(len(qp.pending)),
				Dead: int64(len(qp.dead)), Floor: qp.floor, End: end})
			qp.mu.Unlock()
		}
		if t := e.TopicByName(DeadLetterTopic(q.key.topic)); t != nil {
			for _, p := range t.parts {
				info.DeadLettered += p.NextOffset() - p.StartOffset()
			}
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b QueueInfo) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Topic, b.Topic))
	})
	return out
}
