package wire

import (
	"errors"
	"testing"
)

// A control batch is a valid batch with bits 4 and 5, Kafka's EndTxnMarker key, and the producer's
// identity; MarkTransactional keeps a batch valid; EndTxn round-trips and refuses bad bodies.
func TestTxnWire(t *testing.T) {
	for _, commit := range []bool{false, true} {
		b := AppendControlBatch(nil, 42, 3, commit, 1700000000000)
		h, err := ValidateProduced(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !h.IsControl() || !h.IsTransactional() || h.ProducerID != 42 || h.ProducerEpoch != 3 || h.RecordCount != 1 {
			t.Fatalf("control batch header %+v", h)
		}
		typ, err := ControlType(b)
		want := ControlAbort
		if commit {
			want = ControlCommit
		}
		if err != nil || typ != want {
			t.Fatalf("control type %d, %v; want %d", typ, err, want)
		}
	}
	bb := NewBatchBuilder(256)
	bb.SetProducer(7, 0, 0)
	bb.Append(nil, []byte("v"), nil, 1)
	out, _ := bb.Build()
	MarkTransactional(out)
	if h, err := ValidateProduced(out, 0); err != nil || !h.IsTransactional() || h.IsControl() {
		t.Fatalf("marked batch: %+v %v", h, err)
	}

	m := EndTxn{ProducerID: 99, Epoch: 2, Commit: true}
	var got EndTxn
	if err := got.Decode(m.Append(nil)); err != nil || got != m {
		t.Fatalf("EndTxn round trip: %+v %v", got, err)
	}
	bad := (&EndTxn{ProducerID: 99}).Append(nil)
	bad[len(bad)-1] = 2
	if err := got.Decode(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("commit byte 2: %v", err)
	}
	if err := got.Decode((&EndTxn{ProducerID: -1}).Append(nil)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("producer -1: %v", err)
	}
	if err := got.Decode(m.Append(nil)[:5]); err == nil {
		t.Fatal("a short body decoded")
	}
}
