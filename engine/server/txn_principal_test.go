package server

import (
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// txnBatchOf builds a transactional batch of producer pid (epoch 0) starting at sequence seq.
func txnBatchOf(t testing.TB, pid int64, seq int32, values ...string) []byte {
	t.Helper()
	b := wire.NewBatchBuilder(1024)
	b.SetProducer(pid, 0, seq)
	for _, v := range values {
		b.Append(nil, []byte(v), nil, 1)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	out = append([]byte(nil), out...)
	wire.MarkTransactional(out)
	return out
}

// TestEndTxnTiedToPrincipal: a transaction belongs to the principal whose produce opened it. Another
// principal's EndTxn for its producer id and epoch is refused with CodeNotAuthorized, even one
// allowed everything by the ACL, and leaves the transaction open; so is another principal's
// transactional produce under that producer id. The opener's EndTxn then commits it.
func TestEndTxnTiedToPrincipal(t *testing.T) {
	s, e := startACLServer(t)
	alice, bob, root := as(t, s, "ta"), as(t, s, "tb"), as(t, s, "tr")
	const pid = 77
	alice.must(wire.OpProduce, &wire.Produce{Durability: wire.DurabilityWritten, Partition: 0, Topic: []byte("orders"),
		Batches: txnBatchOf(t, pid, 0, "a1", "a2")})
	p := e.TopicByName("orders").Partition(0)
	if lso, end := p.StableOffset(), p.NextOffset(); lso != 0 || end != 2 {
		t.Fatalf("after the transactional produce: LSO %d, end %d; want 0, 2", lso, end)
	}
	end := &wire.EndTxn{ProducerID: pid, Commit: true}
	wantCode(t, "bob's EndTxn of alice's transaction", bob.do(wire.OpEndTxn, end), wire.CodeNotAuthorized)
	wantCode(t, "root's EndTxn of alice's transaction", root.do(wire.OpEndTxn, &wire.EndTxn{ProducerID: pid}), wire.CodeNotAuthorized)
	wantCode(t, "bob's transactional produce under alice's producer id",
		bob.do(wire.OpProduce, &wire.Produce{Durability: wire.DurabilityWritten, Partition: 0, Topic: []byte("public"),
			Batches: txnBatchOf(t, pid, 2, "b1")}), wire.CodeNotAuthorized)
	if lso := p.StableOffset(); lso != 0 {
		t.Fatalf("after the refused EndTxns the LSO is %d: the transaction was ended", lso)
	}
	alice.must(wire.OpEndTxn, end)
	if lso, end := p.StableOffset(), p.NextOffset(); lso != 3 || end != 3 {
		t.Fatalf("after alice's commit: LSO %d, end %d; want 3, 3 (her two records and the marker)", lso, end)
	}
}
