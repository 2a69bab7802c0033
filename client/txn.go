package client

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// ErrTxnPartition is returned by Transaction.Produce for a partition below 0: a transaction names
// the partition of every batch it writes.
var ErrTxnPartition = errors.New("client: a transaction's produce names its partition")

// ErrTxnMustAbort is returned by Transaction.Commit after a Produce or Commit of the transaction
// failed: its outcome there is unknown, so it can only be aborted.
var ErrTxnMustAbort = errors.New("client: an operation of the transaction failed: abort it")

// ErrTxnAborted is returned by Transaction.Commit when the broker had already aborted the
// transaction because it was open longer than the broker's transaction timeout (sluiced
// --txn-timeout, 60 s by default): none of its records were committed, and consumers never see
// them. The error also matches wire.CodeTxnAborted. Abort the transaction (the broker answers it
// with nothing left to do) and produce its records again in the next one.
var ErrTxnAborted = errors.New("client: the broker aborted the transaction (open longer than its transaction timeout)")

// Transaction writes batches to any partitions of any topics that become visible to consumers all
// at once, at Commit, or never, at Abort (docs/protocol.md, "Transactions"). Consumers read
// committed data only: a partition's records behind an open transaction's first batch wait for its
// end. A broker that crashes mid-commit completes the commit at restart if it had decided it, and
// aborts the transaction otherwise.
//
// A Transaction is one producer id (chosen at random) used for one transaction after another:
// Produce any number of times, then Commit or Abort, then Produce again for the next. It is safe
// for concurrent use, but a Produce racing with Commit lands in this transaction or the next. The
// broker aborts a transaction left open longer than its transaction timeout (sluiced default 60 s).
type Transaction struct {
	c     *Client
	pid   int64
	epoch int16

	mu   sync.Mutex
	seqs map[txnKey]int32 // the next sequence per partition; guarded by mu
	b    *wire.BatchBuilder
	// dirty is set when a Produce or Commit failed (guarded by mu): the broker may hold a batch whose
	// sequence was not counted, so after the Abort the next transaction starts a new epoch with
	// fresh sequences, which the broker takes as a new session of the producer id.
	dirty bool
}

type txnKey struct {
	topic string
	part  int32
}

// NewTransaction returns a transactional producer on c.
func (c *Client) NewTransaction() *Transaction {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Transaction{c: c, pid: int64(binary.BigEndian.Uint64(id[:]) >> 1), seqs: map[txnKey]int32{}, b: wire.NewBatchBuilder(16 << 10)}
}

// ProducerID is the transaction's producer id.
func (t *Transaction) ProducerID() int64 { return t.pid }

// Produce stores recs as one transactional batch in topic's partition and returns once the broker
// has it (written to the log, invisible until Commit). Errors: ErrTxnPartition, ctx's, ErrClosed,
// ErrConnectionLost, or the broker's refusal (*wire.ProtocolError). After an error the transaction's
// outcome for this batch is unknown: Abort it.
func (t *Transaction) Produce(ctx context.Context, topic string, partition int32, recs ...Record) error {
	if partition < 0 {
		return ErrTxnPartition
	}
	if len(recs) == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := txnKey{topic, partition}
	t.b.Reset()
	t.b.SetProducer(t.pid, t.epoch, t.seqs[k])
	now := time.Now()
	for _, r := range recs {
		ts := r.Timestamp
		if ts.IsZero() {
			ts = now
		}
		t.b.Append(r.Key, r.Value, r.Headers, ts.UnixMilli())
	}
	batch, err := t.b.Build()
	if err != nil {
		return wrapf(err, "transaction produce to %s/%d", topic, partition)
	}
	wire.MarkTransactional(batch)
	m := wire.Produce{Durability: wire.DurabilityWritten, Partition: partition, Topic: []byte(topic), Batches: batch}
	if _, err := t.c.roundTrip(ctx, wire.OpProduce, m.Append); err != nil {
		t.dirty = true
		return wrapf(err, "transaction produce to %s/%d", topic, partition)
	}
	t.seqs[k] += int32(len(recs))
	return nil
}

// Commit makes every batch produced since the last Commit or Abort visible, in every partition at
// once, and returns once the decision and its markers are durable. On an error (a lost connection,
// say) the outcome is unknown: the broker may have decided either way, and a consumer sees all of
// the transaction or none of it; call Abort before the next transaction (it aborts the transaction
// if the commit did not happen, and does nothing if it did). After a failed Produce, Commit returns
// ErrTxnMustAbort. A transaction the broker aborted at its transaction timeout returns
// ErrTxnAborted: nothing was committed; Abort it before the next transaction.
func (t *Transaction) Commit(ctx context.Context) error { return t.end(ctx, true) }

// Abort discards every batch produced since the last Commit or Abort. After a failed Produce or
// Commit, the next transaction starts a new producer epoch once Abort succeeds.
func (t *Transaction) Abort(ctx context.Context) error { return t.end(ctx, false) }

func (t *Transaction) end(ctx context.Context, commit bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if commit && t.dirty {
		return ErrTxnMustAbort
	}
	m := wire.EndTxn{ProducerID: t.pid, Epoch: t.epoch, Commit: commit}
	_, err := t.c.roundTrip(ctx, wire.OpEndTxn, m.Append)
	what := "abort"
	switch {
	case commit && errors.Is(err, wire.CodeTxnAborted):
		// The outcome is known (nothing committed) and the broker stored every batch counted in
		// seqs: the next transaction continues at this epoch, after an Abort or without one.
		return fmt.Errorf("client: transaction commit: %w: %w", ErrTxnAborted, err)
	case commit:
		what = "commit"
		t.dirty = t.dirty || err != nil
	case err == nil && t.dirty:
		t.epoch++
		clear(t.seqs)
		t.dirty = false
	}
	return wrapf(err, "transaction %s", what)
}
