package client

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// gatedHandler holds back the failure of one request of a failed connection until released, so a
// test can choose the order in which a connection's pending requests fail.
type gatedHandler struct {
	h       replyHandler
	release chan struct{} // closed by the test
	done    chan struct{} // closed once h has completed
}

func (g *gatedHandler) complete(f wire.Frame, err error) {
	go func() {
		<-g.release
		g.h.complete(f, err)
		close(g.done)
	}()
}

// orderFake is a broker double for the resend-order tests. Its first connection swallows produce
// requests (never answered, never stored). Later connections store batches in arrival order and
// answer them; for idempotent batches it checks the sequence the way the broker does and refuses a
// gap with CodeOutOfOrderSequence.
type orderFake struct {
	t        *testing.T
	mu       sync.Mutex
	swallow  chan struct{} // one send per produce swallowed by the first connection
	stored   []string      // values stored, in order
	later    int           // produce requests seen on later connections
	nextSeq  map[int64]int32
	refusals []string
}

func newOrderFake(t *testing.T) (*orderFake, *fakeBroker) {
	of := &orderFake{t: t, swallow: make(chan struct{}, 64), nextSeq: map[int64]int32{}}
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
			if fc.n == 1 {
				of.swallow <- struct{}{}
				return
			}
			of.mu.Lock()
			defer of.mu.Unlock()
			of.later++
			vals := batchValues(t, m.Batches)
			if h, err := wire.ParseBatchHeader(m.Batches); err == nil && h.ProducerID >= 0 {
				if next := of.nextSeq[h.ProducerID]; h.BaseSequence != next {
					of.refusals = append(of.refusals, fmt.Sprintf("%v: sequence %d, want %d", vals, h.BaseSequence, next))
					fc.write(wire.OpError, 0, f.Corr, &wire.ErrorBody{Code: wire.CodeOutOfOrderSequence, Message: "out of order"})
					return
				}
				of.nextSeq[h.ProducerID] = h.BaseSequence + h.RecordCount
			}
			base := int64(len(of.stored))
			of.stored = append(of.stored, vals...)
			fc.reply(f, &wire.ProduceReply{Partition: m.Partition, BaseOffset: base, LastOffset: base + int64(len(vals)) - 1})
		}
	})
	return of, fb
}

// TestResendOrderWhenFailuresComeOutOfOrder: a connection fails with five batches in flight and
// their failures arrive newest first, the newest well before the others, while a sixth record is
// produced and the client reconnects. The producer must not send anything on the new connection
// until every batch of the old one has failed, and then resend them in their original order: the
// broker stores 0..5 in order, every record is acknowledged at the offset holding it, and an
// idempotent producer's sequence never shows a gap. (Before the order rule, the newest batch and the
// sixth record went out first on the new connection.)
func TestResendOrderWhenFailuresComeOutOfOrder(t *testing.T) {
	for _, idempotent := range []bool{false, true} {
		t.Run(fmt.Sprintf("idempotent=%v", idempotent), func(t *testing.T) {
			of, fb := newOrderFake(t)
			c := dialT(t, fb.addr(), WithPingInterval(-1))
			ctx := testCtx(t)
			opts := []ProducerOption{WithLinger(-1), WithMaxInFlight(16), WithRetries(5)}
			if idempotent {
				opts = append(opts, WithIdempotence())
			}
			p, err := c.Producer("t", opts...)
			if err != nil {
				t.Fatal(err)
			}
			var futures []*Future
			send := func(i int) {
				t.Helper()
				f, err := p.Send(ctx, Record{Value: []byte(fmt.Sprint(i))})
				if err != nil {
					t.Fatal(err)
				}
				futures = append(futures, f)
			}
			for i := range 5 { // one batch each, all in flight on the first connection
				send(i)
				select {
				case <-of.swallow:
				case <-ctx.Done():
					t.Fatal("the first connection never saw the produce")
				}
			}

			// Gate the failures of the four older batches; the newest fails at once.
			c.mu.Lock()
			old := c.cn
			c.mu.Unlock()
			var gates []*gatedHandler // oldest first
			old.pmu.Lock()
			var batches []*pbatch
			for _, h := range old.pending {
				if b, ok := h.(*pbatch); ok {
					batches = append(batches, b)
				}
			}
			if len(batches) != 5 {
				old.pmu.Unlock()
				t.Fatalf("%d batches pending on the first connection, want 5", len(batches))
			}
			slices.SortFunc(batches, func(a, b *pbatch) int { return cmp.Compare(a.seq, b.seq) })
			for corr, h := range old.pending {
				if b, ok := h.(*pbatch); ok && b != batches[4] {
					g := &gatedHandler{h: h, release: make(chan struct{}), done: make(chan struct{})}
					old.pending[corr] = g
					gates = append(gates, g)
				}
			}
			old.pmu.Unlock()
			slices.SortFunc(gates, func(a, b *gatedHandler) int { return cmp.Compare(a.h.(*pbatch).seq, b.h.(*pbatch).seq) })
			old.fail(errors.New("test: connection cut"))
			send(5)

			// Wait until the sender has dealt with the newest batch and the sixth record on the new
			// connection: sent them (no order rule) or put them back to wait for the old batches.
			deadline := time.Now().Add(10 * time.Second)
			for {
				of.mu.Lock()
				sent := of.later > 0
				of.mu.Unlock()
				p.mu.Lock()
				c.mu.Lock()
				waiting := c.cn != nil && c.cn != old && len(p.retry) == 2 && len(p.ready) == 0 && p.open[0] == nil
				c.mu.Unlock()
				p.mu.Unlock()
				if sent || waiting {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the sender neither sent nor held back the newest batches")
				}
				time.Sleep(time.Millisecond)
			}
			for i := len(gates) - 1; i >= 0; i-- { // newest first
				close(gates[i].release)
				<-gates[i].done
			}

			for i, f := range futures {
				r, err := f.Wait(ctx)
				of.mu.Lock()
				stored, refusals := slices.Clone(of.stored), slices.Clone(of.refusals)
				of.mu.Unlock()
				if err != nil {
					t.Fatalf("record %d: %v (stored %v, refused %v)", i, err, stored, refusals)
				}
				if r.Offset < 0 || int(r.Offset) >= len(stored) || stored[r.Offset] != fmt.Sprint(i) {
					t.Fatalf("record %d acknowledged at offset %d; stored %v", i, r.Offset, stored)
				}
			}
			of.mu.Lock()
			defer of.mu.Unlock()
			if want := []string{"0", "1", "2", "3", "4", "5"}; !slices.Equal(of.stored, want) {
				t.Fatalf("stored %v, want %v (refused %v)", of.stored, want, of.refusals)
			}
		})
	}
}

// TestIdempotentDuplicateSequenceIsSuccess: the broker answers a resent batch it stored but no
// longer remembers the offsets of with CodeDuplicateSequence; the idempotent producer reports the
// records as stored (offset unknown) instead of failing them, and goes on with the next sequence.
func TestIdempotentDuplicateSequenceIsSuccess(t *testing.T) {
	var mu sync.Mutex
	next := int32(0) // the next sequence the fake expects; it remembers no offsets
	stored := 0
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
			h, err := wire.ParseBatchHeader(m.Batches)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case h.BaseSequence < next:
				fc.write(wire.OpError, 0, f.Corr, &wire.ErrorBody{Code: wire.CodeDuplicateSequence, Message: "duplicate"})
				return
			case h.BaseSequence > next:
				fc.write(wire.OpError, 0, f.Corr, &wire.ErrorBody{Code: wire.CodeOutOfOrderSequence, Message: "gap"})
				return
			}
			next = h.BaseSequence + h.RecordCount
			base := int64(stored)
			stored += int(h.RecordCount)
			if fc.n == 1 { // stored, but the answer is lost with the connection
				fc.nc.Close()
				return
			}
			fc.reply(f, &wire.ProduceReply{Partition: m.Partition, BaseOffset: base, LastOffset: int64(stored) - 1})
		}
	})
	c := dialT(t, fb.addr())
	ctx := testCtx(t)
	p, err := c.Producer("t", WithIdempotence(), WithRetries(5))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Publish(ctx, Record{Value: []byte("first")})
	if err != nil {
		t.Fatalf("a resend answered as a duplicate failed the record: %v", err)
	}
	if r.Offset != -1 {
		t.Fatalf("duplicate answered at offset %d, want -1 (unknown)", r.Offset)
	}
	if r, err = p.Publish(ctx, Record{Value: []byte("second")}); err != nil || r.Offset != 1 {
		t.Fatalf("next record: offset %d, %v; want offset 1", r.Offset, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if stored != 2 {
		t.Fatalf("%d records stored, want 2", stored)
	}
}
