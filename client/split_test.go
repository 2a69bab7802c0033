package client

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// splitFake is a broker double with a batch limit: it refuses a batch larger than limit with
// CodeBatchTooLarge (storing nothing) and stores the others in arrival order, checking an idempotent
// producer's sequences as the broker does. With swallowFirst its first connection swallows produce
// requests (never answered, never stored).
type splitFake struct {
	t            *testing.T
	limit        int
	swallowFirst bool
	swallowed    chan *fakeConn // one send per produce swallowed

	mu       sync.Mutex
	stored   []string // values stored, in order
	refused  int      // batches refused as too large
	largest  int      // the largest batch stored
	nextSeq  map[int64]int32
	outOfSeq []string
}

func newSplitFake(t *testing.T, limit int, swallowFirst bool, announce func(n int) uint32) (*splitFake, *fakeBroker) {
	sf := &splitFake{t: t, limit: limit, swallowFirst: swallowFirst, swallowed: make(chan *fakeConn, 64), nextSeq: map[int64]int32{}}
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
			if sf.swallowFirst && fc.n == 1 {
				sf.swallowed <- fc
				return
			}
			sf.mu.Lock()
			defer sf.mu.Unlock()
			h, err := wire.ValidateProduced(m.Batches, sf.limit)
			if err != nil {
				sf.refused++
				fc.write(wire.OpError, 0, f.Corr, &wire.ErrorBody{Code: wire.CodeOf(err), Message: err.Error()})
				return
			}
			vals := batchValues(t, m.Batches)
			if h.ProducerID >= 0 {
				if next := sf.nextSeq[h.ProducerID]; h.BaseSequence != next {
					sf.outOfSeq = append(sf.outOfSeq, fmt.Sprintf("%v: sequence %d, want %d", vals, h.BaseSequence, next))
					fc.write(wire.OpError, 0, f.Corr, &wire.ErrorBody{Code: wire.CodeOutOfOrderSequence, Message: "out of order"})
					return
				}
				sf.nextSeq[h.ProducerID] = h.BaseSequence + h.RecordCount
			}
			sf.largest = max(sf.largest, h.Size())
			base := int64(len(sf.stored))
			sf.stored = append(sf.stored, vals...)
			fc.reply(f, &wire.ProduceReply{Partition: m.Partition, BaseOffset: base, LastOffset: base + int64(len(vals)) - 1})
		}
	})
	fb.maxBatch = announce
	return sf, fb
}

// produceSplit sends n records of about 100 bytes as one batch (a long linger, then Flush) and
// checks that every record succeeds at the offset holding it, stored once and in order, in batches
// within the fake's limit, with no sequence refused.
func produceSplit(t *testing.T, sf *splitFake, fb *fakeBroker, n int, idempotent bool, between func()) {
	t.Helper()
	c := dialT(t, fb.addr(), WithPingInterval(-1))
	ctx := testCtx(t)
	opts := []ProducerOption{WithLinger(time.Hour), WithRetries(5)}
	if idempotent {
		opts = append(opts, WithIdempotence())
	}
	p, err := c.Producer("t", opts...)
	if err != nil {
		t.Fatal(err)
	}
	futures := make([]*Future, n)
	for i := range n {
		v := fmt.Sprintf("%04d-%s", i, strings.Repeat("v", 95))
		if futures[i], err = p.Send(ctx, Record{Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- p.Flush(ctx) }()
	if between != nil {
		between()
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	for i, f := range futures {
		r, err := f.Wait(ctx)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if r.Offset != int64(i) {
			t.Fatalf("record %d acknowledged at offset %d", i, r.Offset)
		}
	}
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if len(sf.stored) != n {
		t.Fatalf("%d records stored, want %d", len(sf.stored), n)
	}
	for i, v := range sf.stored {
		if !strings.HasPrefix(v, fmt.Sprintf("%04d-", i)) {
			t.Fatalf("offset %d holds %.8q", i, v)
		}
	}
	if sf.largest > sf.limit || len(sf.outOfSeq) > 0 {
		t.Fatalf("largest batch stored %d bytes (limit %d); sequences refused: %v", sf.largest, sf.limit, sf.outOfSeq)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBatchRefusedAsTooLargeIsSplit (issue 21, item 3): a broker that announces no batch limit
// refuses a 20 KiB batch with CodeBatchTooLarge; the producer splits it in halves, and halves again,
// until the pieces fit, and sends them in its place: every record is stored once, in order, at the
// offset it is acknowledged with; an idempotent producer's pieces carry its sequences without a gap.
// (Before, every record of the refused batch failed.)
func TestBatchRefusedAsTooLargeIsSplit(t *testing.T) {
	for _, idempotent := range []bool{false, true} {
		t.Run(fmt.Sprintf("idempotent=%v", idempotent), func(t *testing.T) {
			sf, fb := newSplitFake(t, 4096, false, nil)
			produceSplit(t, sf, fb, 200, idempotent, nil)
			if sf.refused == 0 {
				t.Fatal("no batch was refused: the test did not build one above the limit")
			}
		})
	}
}

// TestBatchCutForTheNewBrokersLimit (issue 21, item 3): a batch built for a broker that announced no
// limit is lost in flight; the client reconnects to one that announces 4 KiB, and the batch is cut
// to that limit before it is sent again: nothing is refused, every record is stored once, in order.
func TestBatchCutForTheNewBrokersLimit(t *testing.T) {
	for _, idempotent := range []bool{false, true} {
		t.Run(fmt.Sprintf("idempotent=%v", idempotent), func(t *testing.T) {
			announce := func(n int) uint32 {
				if n == 1 {
					return 0
				}
				return 4096
			}
			sf, fb := newSplitFake(t, 4096, true, announce)
			produceSplit(t, sf, fb, 200, idempotent, func() {
				fc := <-sf.swallowed
				fc.nc.Close() // the batch was in flight: it is resent on the next connection
			})
			if sf.refused != 0 {
				t.Fatalf("%d batches refused as too large, want none", sf.refused)
			}
		})
	}
}

// TestBatchesSizedUnderTheAnnouncedLimit (issue 21, item 3): a producer left at its default 1 MiB
// batches sizes them under the 4 KiB limit the broker announced in the handshake: nothing is refused.
// (Before, the 20 KiB batch was refused and its records failed.)
func TestBatchesSizedUnderTheAnnouncedLimit(t *testing.T) {
	sf, fb := newSplitFake(t, 4096, false, func(int) uint32 { return 4096 })
	produceSplit(t, sf, fb, 200, false, nil)
	if sf.refused != 0 {
		t.Fatalf("%d batches refused as too large, want none", sf.refused)
	}
}
