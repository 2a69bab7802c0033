package client

import (
	"bytes"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/sluicemq/sluice/wire"
)

// goid is the calling goroutine's id, read from its stack header ("goroutine N [...").
func goid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseInt(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// TestProduceSendsOnCallersGoroutine: with a live connection and no round running, a Produce at no
// linger writes its batch itself instead of waking the sender goroutine (a hand-off that cost half of the
// scheduler latency of a 20k/s run). At DurabilityNone a record completes once written, so its
// callback runs before Produce returns, on the goroutine that called it; before, it ran on the
// sender goroutine, after Produce had returned. Every record also reaches the broker, in order.
func TestProduceSendsOnCallersGoroutine(t *testing.T) {
	got := make(chan []byte, 64)
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {
		switch f.Op {
		case wire.OpDescribe:
			fc.describe(f, 1)
		case wire.OpProduce:
			var m wire.Produce
			if err := m.Decode(f.Body); err != nil {
				t.Error(err)
				return
			}
			for _, v := range batchValues(t, m.Batches) {
				got <- []byte(v)
			}
		}
	})
	c := dialT(t, fb.addr())
	p, err := c.Producer("t", WithDurability(wire.DurabilityNone), WithLinger(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(testCtx(t))
	me := goid()
	for i := range 20 {
		// A producer slower than one record per callerSealGap: the caller seals each record's batch
		// itself (a faster one leaves partial batches to the sender, to gather records).
		time.Sleep(2 * callerSealGap)
		var ran atomic.Bool
		var on atomic.Int64
		err := p.Produce(testCtx(t), Record{Value: []byte(strconv.Itoa(i))}, func(r Result) {
			if r.Err != nil {
				t.Error(r.Err)
			}
			on.Store(goid())
			ran.Store(true)
		})
		if err != nil {
			t.Fatal(err)
		}
		if !ran.Load() {
			t.Fatalf("record %d: Produce returned before the record was sent", i)
		}
		if on.Load() != me {
			t.Fatalf("record %d: completed on goroutine %d, Produce was called on %d", i, on.Load(), me)
		}
	}
	ctx := testCtx(t)
	for i := range 20 {
		select {
		case v := <-got:
			if string(v) != strconv.Itoa(i) {
				t.Fatalf("broker got %q, want %d", v, i)
			}
		case <-ctx.Done():
			t.Fatalf("broker got %d records of 20", i)
		}
	}
}

// TestProduceBatchWrittenFromItsBuffer: a produce's batch is written from the producer's batch
// buffer beside its frame header (one writev), not copied into the connection's write buffer
// first, and arrives intact. Before, every batch was appended into the write buffer, which grew to
// the largest batch (64 KiB here).
func TestProduceBatchWrittenFromItsBuffer(t *testing.T) {
	got := make(chan []string, 4)
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {
		switch f.Op {
		case wire.OpDescribe:
			fc.describe(f, 1)
		case wire.OpProduce:
			var m wire.Produce
			if err := m.Decode(f.Body); err != nil {
				t.Error(err)
				return
			}
			got <- batchValues(t, m.Batches)
			fc.reply(f, &wire.ProduceReply{Partition: m.Partition})
		}
	})
	c := dialT(t, fb.addr())
	p, err := c.Producer("t", WithLinger(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(testCtx(t))
	value := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	for i := range 3 {
		value[0] = byte('a' + i)
		if _, err := p.Publish(testCtx(t), Record{Value: value}); err != nil {
			t.Fatal(err)
		}
		select {
		case vals := <-got:
			if len(vals) != 1 || vals[0] != string(value) {
				t.Fatalf("publish %d: broker got %d records, first %d bytes, want one record of %d bytes", i, len(vals), len(vals[0]), len(value))
			}
		case <-testCtx(t).Done():
			t.Fatal("no produce reached the broker")
		}
	}
	cn := c.liveConn()
	cn.wmu.Lock()
	wcap, scap := cap(cn.wbuf), cap(cn.spare)
	cn.wmu.Unlock()
	if wcap >= len(value) || scap >= len(value) {
		t.Fatalf("write buffers grew to %d and %d bytes: the %d-byte batch was copied into them", wcap, scap, len(value))
	}
}

// TestConsumerReadsDeliveriesInPlace: a delivery is read where it arrived, in the connection's
// read buffer, not copied out of it: the Message's value lies inside one of the buffers the
// connection's reader has read into. Before, push copied every delivery into a pooled buffer.
func TestConsumerReadsDeliveriesInPlace(t *testing.T) {
	br := startBroker(t, nil)
	c := dialT(t, br.addr)
	createTopic(t, c, "inplace", 1)
	ctx := testCtx(t)
	p, err := c.Producer("inplace", WithLinger(-1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := p.Publish(ctx, Record{Value: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	cc := dialT(t, br.addr)
	cons, err := cc.Subscribe(ctx, "inplace", WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	for i := range 50 {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Value) != strconv.Itoa(i) {
			t.Fatalf("record %d: value %q", i, m.Value)
		}
		cons.mu.Lock()
		rb := cons.rd.cur.rb
		cons.mu.Unlock()
		if rb == nil {
			t.Fatalf("record %d: no read buffer behind the delivery", i)
		}
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(rb.b)))
		at := uintptr(unsafe.Pointer(unsafe.SliceData(m.Value)))
		if at < lo || at >= lo+uintptr(len(rb.b)) {
			t.Fatalf("record %d: value at %#x, outside the read buffer [%#x, +%d)", i, at, lo, len(rb.b))
		}
	}
}
