package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// A Transaction's batches over two topics appear to a consumer only at Commit, all of them; an
// aborted transaction's never do, and the producer's next transaction commits after it.
func TestTransactionCommitAndAbort(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "ta", 2)
	createTopic(t, c, "tb", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx := c.NewTransaction()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tx.Produce(ctx, "ta", 0, Record{Value: []byte("c1")}, Record{Value: []byte("c2")}))
	must(tx.Produce(ctx, "ta", 1, Record{Value: []byte("c3")}))
	must(tx.Produce(ctx, "tb", 0, Record{Value: []byte("c4")}))

	ca, err := c.Subscribe(ctx, "ta", WithStartEarliest())
	must(err)
	cb, err := c.Subscribe(ctx, "tb", WithStartEarliest())
	must(err)
	short, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if m, err := ca.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("before Commit: delivered %q, %v", m.Value, err)
	}
	scancel()
	must(tx.Commit(ctx))

	read := func(cons *Consumer, n int) []string {
		t.Helper()
		var out []string
		for len(out) < n {
			m, err := cons.Next(ctx)
			must(err)
			out = append(out, string(m.Value))
		}
		return out
	}
	if got := read(ca, 3); len(got) != 3 {
		t.Fatalf("ta after Commit: %q", got)
	}
	if got := read(cb, 1); got[0] != "c4" {
		t.Fatalf("tb after Commit: %q", got)
	}

	must(tx.Produce(ctx, "tb", 0, Record{Value: []byte("aborted")}))
	must(tx.Abort(ctx))
	must(tx.Produce(ctx, "tb", 0, Record{Value: []byte("next")}))
	must(tx.Commit(ctx))
	if got := read(cb, 1); got[0] != "next" {
		t.Fatalf("after an abort and a commit, tb delivered %q, want next", got)
	}

	if err := tx.Produce(ctx, "tb", -1, Record{Value: []byte("x")}); !errors.Is(err, ErrTxnPartition) {
		t.Fatalf("partition -1: %v", err)
	}
	// EndTxn at another epoch than the open transaction's is refused.
	must(tx.Produce(ctx, "tb", 0, Record{Value: []byte("y")}))
	other := &Transaction{c: c, pid: tx.pid, epoch: 3}
	if err := other.Commit(ctx); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("EndTxn at a wrong epoch: %v", err)
	}
	must(tx.Abort(ctx))
}

// After a failed Produce the transaction can only be aborted; the next one (a new epoch, fresh
// sequences) stores every record, none taken for a resend of the failed one's.
func TestTransactionAfterAFailedProduce(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "tf", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx := c.NewTransaction()
	if err := tx.Produce(ctx, "tf", 0, Record{Value: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Produce(ctx, "nosuchtopic-and-no-autocreate-x", 0, Record{Value: []byte("b")}); err == nil {
		t.Fatal("a produce to a topic that does not exist succeeded")
	}
	if err := tx.Commit(ctx); !errors.Is(err, ErrTxnMustAbort) {
		t.Fatalf("Commit after a failed Produce: %v, want ErrTxnMustAbort", err)
	}
	if err := tx.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Produce(ctx, "tf", 0, Record{Value: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	cons, err := c.Subscribe(ctx, "tf", WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(ctx)
	if err != nil || string(m.Value) != "c" {
		t.Fatalf("delivered %q, %v: want c", m.Value, err)
	}
}

// TestReadUncommitted: a consumer with WithReadUncommitted reads an open transaction's records as
// they are stored, and an aborted one's, where a read-committed one (the default) waits at the open
// transaction and never gets the aborted records; neither gets a transaction marker as a record.
func TestReadUncommitted(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "ru", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tx := c.NewTransaction()
	must(tx.Produce(ctx, "ru", 0, Record{Value: []byte("open1")}, Record{Value: []byte("open2")}))
	ru, err := c.Subscribe(ctx, "ru", WithStartEarliest(), WithReadUncommitted())
	must(err)
	rc, err := c.Subscribe(ctx, "ru", WithStartEarliest())
	must(err)
	read := func(cons *Consumer, n int) []string {
		t.Helper()
		var out []string
		for len(out) < n {
			m, err := cons.Next(ctx)
			must(err)
			out = append(out, fmt.Sprintf("%d:%s", m.Offset, m.Value))
		}
		return out
	}
	if got := read(ru, 2); !slices.Equal(got, []string{"0:open1", "1:open2"}) {
		t.Fatalf("read uncommitted, open transaction: %q", got)
	}
	must(tx.Abort(ctx)) // its marker at offset 2
	must(tx.Produce(ctx, "ru", 0, Record{Value: []byte("next")}))
	must(tx.Commit(ctx)) // "next" at 3, its marker at 4
	if got := read(ru, 1); !slices.Equal(got, []string{"3:next"}) {
		t.Fatalf("read uncommitted after the abort and commit: %q (markers are never records)", got)
	}
	if got := read(rc, 1); !slices.Equal(got, []string{"3:next"}) {
		t.Fatalf("read committed: %q, want only the committed record", got)
	}
	if _, err := c.Subscribe(ctx, "ru", WithGroup("q"), WithQueue(time.Second, 3), WithReadUncommitted()); !errors.Is(err, ErrOptions) {
		t.Fatalf("a work queue reading uncommitted: %v, want ErrOptions", err)
	}
}

// A Commit of a transaction the broker aborted at its transaction timeout returns ErrTxnAborted
// (and wire.CodeTxnAborted), every time it is sent, and a read-committed consumer never sees the
// transaction's records; after the Abort the producer's next transaction commits.
func TestTransactionCommitAfterTimeout(t *testing.T) {
	b := startBrokerEngine(t, func(o *engine.Options) { o.TxnTimeout = time.Second }, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "tt", 1)
	ctx := testCtx(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tx := c.NewTransaction()
	must(tx.Produce(ctx, "tt", 0, Record{Value: []byte("lost1")}, Record{Value: []byte("lost2")}))
	// The broker's expirer looks every second: wait (bounded) until it has aborted the transaction.
	for deadline := time.Now().Add(20 * time.Second); b.eng.TxnOpen(tx.ProducerID()); {
		if time.Now().After(deadline) {
			t.Fatal("the transaction was not aborted within 20 s of its 1 s timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 2 {
		err := tx.Commit(ctx)
		if !errors.Is(err, ErrTxnAborted) || !errors.Is(err, wire.CodeTxnAborted) {
			t.Fatalf("Commit after the timeout: %v, want ErrTxnAborted", err)
		}
	}
	must(tx.Abort(ctx))
	must(tx.Produce(ctx, "tt", 0, Record{Value: []byte("next")}))
	must(tx.Commit(ctx))

	cons, err := c.Subscribe(ctx, "tt", WithStartEarliest())
	must(err)
	m, err := cons.Next(ctx)
	must(err)
	if string(m.Value) != "next" {
		t.Fatalf("read committed delivered %q first, want the next transaction's \"next\"", m.Value)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if m, err := cons.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after \"next\": delivered %q, %v", m.Value, err)
	}
}
