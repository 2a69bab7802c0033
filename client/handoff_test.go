package client

import (
	"bytes"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

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
