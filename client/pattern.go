package client

import (
	"fmt"
	"strings"

	"github.com/sluicemq/sluice/wire"
)

// Pattern consumers. Subscribe to a topic pattern ('*' one dot-separated token, '>' the rest, as in
// "orders.>") reads every matching topic the principal may consume, including topics created while
// it runs; each Message names its topic. The broker sends such deliveries as DeliverTopic frames. The
// consumer tracks each topic-partition under a slot of its own (its parts key), so the per-partition
// machinery (positions, epochs, credit) is shared with single-topic consumers.
//
// A pattern consumer has no group, work queue, single partition or start offset. After a
// reconnection it subscribes the pattern again from the earliest records and skips, per
// topic-partition, what it has handed out already; a topic deleted and created again under a name it
// was reading starts afresh when a delivery's high watermark falls below the consumer's position.

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
	case o.Group != "" || o.Queue:
		return fmt.Errorf("%w: pattern %s: no group or work queue over a pattern", ErrOptions, topic)
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
