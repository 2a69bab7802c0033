package client

import (
	"strconv"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Scheduling headers (see wire.HeaderTTL, wire.HeaderDeliverAt, wire.HeaderPriority): add them to a
// Record's Headers.
//
//	p.Produce(ctx, client.Record{Value: v, Headers: []client.Header{
//		client.TTLHeader(30 * time.Second), client.DeliverAtHeader(at), client.PriorityHeader(7)}})

// TTLHeader makes a record expire d after its timestamp: it is then never delivered (a work queue
// moves it to its dead-letter topic). d is rounded up to whole milliseconds, at least 1.
func TTLHeader(d time.Duration) Header {
	ms := max((d+time.Millisecond-1)/time.Millisecond, 1)
	return Header{Key: []byte(wire.HeaderTTL), Value: strconv.AppendInt(nil, int64(ms), 10)}
}

// DeliverAtHeader holds a record back from work-queue members until t, rounded up to the
// millisecond so the record never goes out before t. Stream consumers see it at once. A t before
// 1970 is the epoch: no hold.
func DeliverAtHeader(t time.Time) Header {
	ms := t.UnixMilli()
	if t.After(time.UnixMilli(ms)) {
		ms++ // a part of a millisecond left: the next one
	}
	return Header{Key: []byte(wire.HeaderDeliverAt), Value: strconv.AppendInt(nil, max(ms, 0), 10)}
}

// PriorityHeader gives a record priority level (0, the default, to wire.PriorityLevels-1; clamped to
// that range): a work queue's members get ready records of higher levels first.
func PriorityHeader(level int) Header {
	level = min(max(level, 0), wire.PriorityLevels-1)
	return Header{Key: []byte(wire.HeaderPriority), Value: strconv.AppendInt(nil, int64(level), 10)}
}
