package client

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluicemq/sluice/wire"
)

// Pattern consumers. Subscribe to a topic pattern ('*' one dot-separated token, '>' the rest, as in
// "orders.>") reads every matching topic the principal may consume, including topics created while
// it runs; each Message names its topic. The broker sends such deliveries as DeliverTopic frames. The
// consumer tracks each topic-partition under a slot of its own (its parts key), so the per-partition
// machinery (positions, epochs, credit) is shared with single-topic consumers.
//
// A pattern consumer has no work queue, single partition or start offset. Without a group, after a
// reconnection it subscribes the pattern again from the earliest records and skips, per
// topic-partition, what it has handed out already; a topic deleted and created again under a name it
// was reading starts afresh when a delivery's high watermark falls below the consumer's position.
//
// With a group (WithGroup) it is a member of a group over the pattern: the broker deals every
// partition of every matching topic the members may read over them, and tells each its share per
// topic (Assign's topic section, applyTopicAssignLocked), each topic-partition a slot here; commits
// and hand-backs name each slot's topic. Every member of a group subscribes to the same pattern:
// the broker refuses another pattern or a named topic with wire.CodeInvalidRequest.

// slotKey names one topic-partition of a pattern consumer.
type slotKey struct {
	topic     string
	partition int32
}

// isPattern reports whether topic is a pattern: topic names never hold '*' or '>'.
func isPattern(topic string) bool { return strings.ContainsAny(topic, "*>") }

// validatePattern refuses the options a pattern subscription does not take.
func (o *ConsumerOptions) validatePattern(topic string) error {
	switch {
	case o.Queue:
		return fmt.Errorf("%w: pattern %s: no work queue over a pattern", ErrOptions, topic)
	case o.Partition >= 0:
		return fmt.Errorf("%w: pattern %s: a pattern takes every partition", ErrOptions, topic)
	case o.Start == wire.StartOffset:
		return fmt.Errorf("%w: pattern %s: a start offset names one partition", ErrOptions, topic)
	}
	return nil
}

// WithFilterCEL sets a server-side CEL filter expression over each record's key, headers, timestamp,
// value (its JSON fields when it is JSON) and topic, e.g. `value.temp > 30 && headers["region"] ==
// "eu"`. A bad expression fails Subscribe with wire.CodeInvalidRequest and the reason.
func WithFilterCEL(expr string) ConsumerOption {
	return func(o *ConsumerOptions) { o.Filter, o.FilterLang = expr, wire.FilterCEL }
}

// deliverTopic routes a DeliverTopic push to its consumer. Reader goroutine.
func (c *Client) deliverTopic(cn *conn, body []byte) {
	var d wire.DeliverTopic
	if err := d.Decode(body); err != nil {
		c.log.Warn("sluice: malformed delivery dropped", "err", err)
		return
	}
	s := c.sub(cn, d.SubID)
	if s == nil || !s.cons.pattern {
		c.log.Debug("sluice: topic delivery for an unknown or single-topic subscription dropped", "sub", d.SubID)
		return
	}
	s.cons.pushTopic(s, &d, cn)
}

// pushTopic queues a pattern delivery under its topic-partition's slot, starting the slot at the
// delivery's first batch the first time (and again when the partition's high watermark shows it was
// recreated below the consumer's position). Reader goroutine.
func (c *Consumer) pushTopic(s *subscription, d *wire.DeliverTopic, cn *conn) {
	c.mu.Lock()
	slot, ok := c.slots[slotKey{string(d.Topic), d.Partition}] // no allocation for the lookup
	if c.opts.Group != "" {
		// A group member reads the slots its assignment started (push drops the rest).
		c.mu.Unlock()
		if !ok {
			slot = -1
		}
		c.push(s, &wire.Deliver{SubID: d.SubID, Partition: slot, HighWatermark: d.HighWatermark, Batches: d.Batches}, cn.fr)
		return
	}
	if !ok {
		slot = int32(len(c.slots))
		c.slots[slotKey{string(d.Topic), d.Partition}] = slot
	}
	if ps := c.parts[slot]; !ok || ps == nil || d.HighWatermark < ps.position {
		ps = c.startLocked(slot, wire.BaseOffset(d.Batches))
		ps.partition, ps.topic = d.Partition, string(d.Topic)
	}
	c.mu.Unlock()
	c.push(s, &wire.Deliver{SubID: d.SubID, Partition: slot, HighWatermark: d.HighWatermark, Batches: d.Batches}, cn.fr)
}

// applyTopicAssignLocked takes a pattern group member's assignment (Assign.Topics). Reader
// goroutine; the caller holds c.mu. Slots kept keep their position; new ones start at the offset
// given; lost ones stop and are handed back, as in applyAssign. It returns the hand-back commits.
func (c *Consumer) applyTopicAssignLocked(a *wire.Assign) []wire.Commit {
	held := map[slotKey]int64{}
	for _, ta := range a.Topics {
		for _, po := range ta.Partitions {
			held[slotKey{ta.Topic, po.Partition}] = po.Offset
		}
	}
	var back []wire.Commit
	for k, slot := range c.slots {
		ps := c.parts[slot]
		if _, ok := held[k]; ok || ps == nil || !ps.assigned {
			continue
		}
		ps.assigned = false
		ps.epoch++
		back = append(back, wire.Commit{Group: c.opts.Group, Topic: k.topic, Partition: k.partition, Offset: c.handBackAt(ps)})
	}
	for k, off := range held {
		slot, ok := c.slots[k]
		if !ok {
			slot = int32(len(c.slots))
			c.slots[k] = slot
		}
		if ps := c.parts[slot]; ps != nil && ps.assigned {
			continue
		}
		ps := c.startLocked(slot, off)
		ps.partition, ps.topic = k.partition, k.topic
	}
	return back
}

// AssignedTopics lists a pattern consumer's topic-partitions, each topic's partitions ascending:
// with a group, those it is assigned; without, those it has had deliveries from.
func (c *Consumer) AssignedTopics() map[string][]int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]int32{}
	for k, slot := range c.slots {
		if ps := c.parts[slot]; ps != nil && ps.assigned {
			out[k.topic] = append(out[k.topic], k.partition)
		}
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}
