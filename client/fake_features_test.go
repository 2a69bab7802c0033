package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// batchValues decodes the record values of the batches in b.
func batchValues(t testing.TB, b []byte) []string {
	t.Helper()
	var out []string
	var it wire.RecordIter
	var r wire.Record
	for len(b) > 0 {
		h, err := it.Reset(b)
		if err != nil {
			t.Error(err)
			return out
		}
		for it.Next(&r) {
			out = append(out, string(r.Value))
		}
		b = b[h.Size():]
	}
	return out
}

// TestProduceRetriedAfterConnectionLoss: batches in flight when the connection fails are sent again,
// in their original order, on the next connection, and their records succeed.
func TestProduceRetriedAfterConnectionLoss(t *testing.T) {
	var mu sync.Mutex
	var stored []string // values the second connection stored, in arrival order
	firstConnProduces := 0
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
			mu.Lock()
			defer mu.Unlock()
			if fc.n == 1 { // swallow three produces, then drop the connection
				if firstConnProduces++; firstConnProduces == 3 {
					fc.nc.Close()
				}
				return
			}
			base := int64(len(stored))
			vals := batchValues(t, m.Batches)
			stored = append(stored, vals...)
			fc.reply(f, &wire.ProduceReply{Partition: m.Partition, BaseOffset: base, LastOffset: base + int64(len(vals)) - 1})
		}
	})
	c := dialT(t, fb.addr())
	ctx := testCtx(t)
	p, err := c.Producer("t", WithLinger(-1), WithMaxBatchBytes(200), WithMaxInFlight(8))
	if err != nil {
		t.Fatal(err)
	}
	var futures []*Future
	for i := range 30 {
		f, err := p.Send(ctx, Record{Value: []byte(fmt.Sprintf("%03d", i))})
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		r, err := f.Wait(ctx)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		mu.Lock()
		if got := stored[r.Offset]; got != fmt.Sprintf("%03d", i) {
			t.Fatalf("record %d reported at offset %d, which holds %s", i, r.Offset, got)
		}
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.IsSorted(stored) || len(stored) != 30 {
		t.Fatalf("stored out of order or incomplete: %v", stored)
	}
}

// TestProduceFailsRetriablyWithoutRetries: with retries off, records in flight on a lost connection
// fail with a retriable ErrConnectionLost.
func TestProduceFailsRetriablyWithoutRetries(t *testing.T) {
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {
		switch f.Op {
		case wire.OpDescribe:
			fc.describe(f, 1)
		case wire.OpProduce:
			fc.nc.Close()
		}
	})
	c := dialT(t, fb.addr())
	ctx := testCtx(t)
	p, err := c.Producer("t", WithRetries(-1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Publish(ctx, Record{Value: []byte("x")})
	if !errors.Is(err, ErrConnectionLost) || !IsRetriable(err) {
		t.Fatalf("publish on a dropped connection: %v", err)
	}
	if _, err := c.Ping(ctx); err != nil { // the client reconnected
		t.Fatal(err)
	}
}

func TestRequestDeadlineFromContext(t *testing.T) {
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {}) // never answers
	c := dialT(t, fb.addr())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.DescribeTopic(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("describe without an answer: %v", err)
	}
	if _, err := c.Ping(testCtx(t)); err != nil {
		t.Fatalf("the connection should survive an abandoned request: %v", err)
	}
}

func TestFatalErrorClosesAndReconnects(t *testing.T) {
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {
		if f.Op == wire.OpListTopics && fc.n == 1 {
			fc.mu.Lock()
			_, _ = fc.nc.Write(wire.AppendError(nil, 0, wire.CodeShuttingDown, "bye"))
			fc.mu.Unlock()
			fc.nc.Close()
			return
		}
		fc.reply(f, &wire.TopicList{})
	})
	c := dialT(t, fb.addr())
	ctx := testCtx(t)
	_, err := c.ListTopics(ctx)
	if !errors.Is(err, ErrConnectionLost) || !errors.Is(err, wire.CodeShuttingDown) {
		t.Fatalf("request on a connection closed by a fatal error: %v", err)
	}
	if _, err := c.ListTopics(ctx); err != nil {
		t.Fatalf("after the reconnection: %v", err)
	}
}

func TestHandshakeVersionMismatch(t *testing.T) {
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {})
	fb.version = wire.ProtocolVersion + 1
	_, err := Dial(testCtx(t), fb.addr(), WithLogger(quiet))
	if !errors.Is(err, ErrHandshake) || !errors.Is(err, wire.ErrUnsupportedVer) {
		t.Fatalf("dial: %v", err)
	}
}

func TestTLS(t *testing.T) {
	cert, pool := servertest.SelfSigned(t)
	fb := startFake(t, &tls.Config{Certificates: []tls.Certificate{cert}}, func(fc *fakeConn, f wire.Frame) {})
	ctx := testCtx(t)
	// The server name comes from the address; the certificate is for 127.0.0.1.
	c := dialT(t, fb.addr(), WithTLS(&tls.Config{RootCAs: pool}))
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// An untrusted certificate is refused.
	if _, err := Dial(ctx, fb.addr(), WithLogger(quiet), WithTLS(&tls.Config{})); err == nil {
		t.Fatal("dial trusted a self-signed certificate")
	}
}

// TestWorkQueueAckNack: a work-queue consumer acks and nacks single records; a nacked record comes
// back (with an offset below ones already seen, which a queue does not skip).
func TestWorkQueueAckNack(t *testing.T) {
	var mu sync.Mutex
	var acked, nacked []int64
	var spec wire.Subscribe
	batch := func(base int64, vals ...string) []byte {
		bb := wire.NewBatchBuilder(256)
		for _, v := range vals {
			bb.Append(nil, []byte(v), nil, time.Now().UnixMilli())
		}
		out, err := bb.Build()
		if err != nil {
			t.Fatal(err)
		}
		out = append([]byte(nil), out...)
		wire.SetBaseOffset(out, base)
		return out
	}
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {
		switch f.Op {
		case wire.OpSubscribe:
			mu.Lock()
			_ = spec.Decode(f.Body)
			mu.Unlock()
			fc.reply(f, &wire.SubscribeReply{SubID: spec.SubID, Starts: []wire.PartitionOffset{{Partition: 0, Offset: 0}}})
			fc.write(wire.OpDeliver, 0, 0, &wire.Deliver{SubID: spec.SubID, Partition: 0, HighWatermark: 3, Batches: batch(0, "a", "b", "c")})
		case wire.OpAck, wire.OpNack:
			if f.Flags&wire.FlagNoReply == 0 || f.Corr == 0 {
				t.Errorf("%v sent with flags %#x corr %d", f.Op, f.Flags, f.Corr)
			}
			var a wire.Ack
			if err := a.Decode(f.Body); err != nil || a.SubID != spec.SubID || a.Count() != 1 {
				t.Errorf("%v body %+v: %v", f.Op, a, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if f.Op == wire.OpAck {
				acked = append(acked, a.Offset(0))
				return
			}
			nacked = append(nacked, a.Offset(0))
			if a.DelayMs != 250 {
				t.Errorf("nack delay %d ms", a.DelayMs)
			}
			fc.write(wire.OpDeliver, 0, 0, &wire.Deliver{SubID: spec.SubID, Partition: 0, HighWatermark: 3, Batches: batch(a.Offset(0), "b")})
		}
	})
	c := dialT(t, fb.addr())
	ctx := testCtx(t)
	cons, err := c.Subscribe(ctx, "jobs", WithQueue(2*time.Second, 3), WithGroup("workers"))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if spec.Mode != wire.ModeQueue || spec.AckTimeoutMs != 2000 || spec.MaxDeliveries != 3 || spec.Group != "workers" {
		t.Fatalf("subscribe %+v", spec)
	}
	mu.Unlock()
	var order []string
	for range 4 {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, fmt.Sprintf("%s@%d", m.Value, m.Offset))
		if string(m.Value) == "b" && len(order) == 2 {
			err = m.Nack(250 * time.Millisecond)
		} else {
			err = m.Ack()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"a@0", "b@1", "c@2", "b@1"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	waitFor(t, "the last ack", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(acked, []int64{0, 2, 1}) || !slices.Equal(nacked, []int64{1}) {
		t.Fatalf("acked %v nacked %v", acked, nacked)
	}
}

// TestKeepaliveDetectsDeadPeer: a broker that stops answering pings is declared dead and replaced.
func TestKeepaliveDetectsDeadPeer(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {
		if f.Op == wire.OpListTopics {
			mu.Lock()
			conns = fc.n
			mu.Unlock()
			fc.reply(f, &wire.TopicList{})
		}
	})
	fb.noPong = true
	c := dialT(t, fb.addr(), WithPingInterval(10*time.Millisecond))
	waitFor(t, "a second connection", func() bool {
		if _, err := c.ListTopics(testCtx(t)); err != nil {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		return conns >= 2
	})
}

func TestRecordTooLarge(t *testing.T) {
	fb := startFake(t, nil, func(fc *fakeConn, f wire.Frame) {
		if f.Op == wire.OpDescribe {
			fc.describe(f, 1)
		}
	})
	c := dialT(t, fb.addr(), WithMaxFrame(wire.MinMaxFrame))
	p, err := c.Producer("t")
	if err != nil {
		t.Fatal(err)
	}
	err = p.Produce(testCtx(t), Record{Value: make([]byte, wire.MinMaxFrame)}, nil)
	if !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("a record over the frame limit: %v", err)
	}
}
