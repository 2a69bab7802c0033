package client

import (
	"bytes"
	"context"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Message is one consumed record. Key, Value and the headers point into the delivered batch, not
// copied: a Message from Next is valid until the next call of Next or Close, one handed to a Consume
// callback until the callback returns. Clone copies one out to keep.
type Message struct {
	Topic         string
	Partition     int32
	Offset        int64
	Timestamp     time.Time
	Key           []byte // nil: a null key
	Value         []byte // nil: a null value
	HighWatermark int64  // the partition's end when the delivery was cut: lag = HighWatermark - Offset - 1

	rec  *wire.Record  // headers, while the Message aliases the delivery
	hdrs []Header      // headers of a cloned Message
	c    *Consumer     // for Ack and Nack
	sub  *subscription // the subscription that delivered it
}

// HeaderCount is the number of headers.
func (m *Message) HeaderCount() int {
	if m.rec != nil {
		return m.rec.HeaderCount()
	}
	return len(m.hdrs)
}

// Headers calls fn for each header in order, without allocating, until fn returns false.
func (m *Message) Headers(fn func(key, value []byte) bool) {
	if m.rec != nil {
		m.rec.Headers(fn)
		return
	}
	for _, h := range m.hdrs {
		if !fn(h.Key, h.Value) {
			return
		}
	}
}

// Header returns the value of the first header named key.
func (m *Message) Header(key string) (value []byte, ok bool) {
	m.Headers(func(k, v []byte) bool {
		if string(k) == key {
			value, ok = v, true
			return false
		}
		return true
	})
	return value, ok
}

// AppendHeaders appends the headers to dst (pointing into the delivery, like Key and Value).
func (m *Message) AppendHeaders(dst []Header) []Header {
	m.Headers(func(k, v []byte) bool {
		dst = append(dst, Header{Key: k, Value: v})
		return true
	})
	return dst
}

// Clone returns a copy of m that owns its bytes and stays valid. Ack and Nack still work on it.
func (m *Message) Clone() *Message {
	out := &Message{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp,
		HighWatermark: m.HighWatermark, c: m.c, sub: m.sub,
		Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value),
	}
	m.Headers(func(k, v []byte) bool {
		out.hdrs = append(out.hdrs, Header{Key: bytes.Clone(k), Value: bytes.Clone(v)})
		return true
	})
	return out
}

// Ack settles a work-queue record as processed. It is sent without waiting for an answer; an ack
// lost with its connection, or with a broker crash before the broker wrote it, leaves the record to
// be delivered again. AckSync waits for the broker to confirm. Errors: ErrNotQueue off a work queue;
// ErrConnectionLost when the record's connection is gone (the broker delivers it again).
func (m *Message) Ack() error { return m.settle(wire.OpAck, 0) }

// AckSync settles a work-queue record as processed and waits until the broker has written the
// settlement to disk: once it returns nil, the record is not delivered again, also across a broker
// crash or restart. It costs a round trip and a write of the queue's state (shared by every ack
// settled meanwhile). It fails with ErrNotQueue off a work queue, with an error wrapping
// ErrConnectionLost when the record's connection is gone (the record will be redelivered), or with
// ctx's error.
func (m *Message) AckSync(ctx context.Context) error {
	s, err := m.queueSub()
	if err != nil {
		return err
	}
	offs := [1]int64{m.Offset}
	k := &call{ch: make(chan struct{}, 1)}
	_, err = m.c.c.roundTripOn(ctx, s.cn, wire.OpAck, k, func(buf []byte) []byte {
		return wire.AppendAck(buf, s.id, m.Partition, 0, offs[:])
	})
	return err
}

// Nack asks for the work-queue record to be delivered again after delay. Its errors are Ack's.
func (m *Message) Nack(delay time.Duration) error {
	return m.settle(wire.OpNack, uint32(max(delay, 0).Milliseconds()))
}

// queueSub returns the work-queue subscription m came from, on a live connection.
func (m *Message) queueSub() (*subscription, error) {
	if m.c == nil || !m.c.opts.Queue || m.sub == nil {
		return nil, ErrNotQueue
	}
	if m.sub.cn.isDone() {
		return nil, m.sub.cn.lostErr()
	}
	return m.sub, nil
}

func (m *Message) settle(op wire.Op, delayMs uint32) error {
	s, err := m.queueSub()
	if err != nil {
		return err
	}
	offs := [1]int64{m.Offset}
	buf, start := s.cn.beginFrame(op, wire.FlagNoReply, s.cn.nextCorr())
	return s.cn.endFrame(wire.AppendAck(buf, s.id, m.Partition, delayMs, offs[:]), start)
}
