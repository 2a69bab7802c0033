package main

import (
	"context"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
)

// TestTxnTimeoutFlag: sluiced --txn-timeout reaches the engine: a transaction left open past it is
// aborted, so a read-committed consumer held at its first record gets the plain record produced
// after it (the default, 60 s, would hold it past the test's wait) and never the transaction's.
func TestTxnTimeoutFlag(t *testing.T) {
	b := startBroker(t, t.TempDir(), "--txn-timeout", "1s")
	c := dialBroker(t, b)
	createTopic(t, c, "tt", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx := c.NewTransaction()
	if err := tx.Produce(ctx, "tt", 0, client.Record{Value: []byte("in-txn")}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Producer("tt", client.WithPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.Send(ctx, client.Record{Value: []byte("plain")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	cons, err := c.Subscribe(ctx, "tt", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	wait, cancelWait := context.WithTimeout(ctx, 20*time.Second)
	defer cancelWait()
	m, err := cons.Next(wait)
	if err != nil {
		t.Fatalf("no record within 20 s: the transaction was not aborted after --txn-timeout 1s: %v\n%s", err, b.log())
	}
	if string(m.Value) != "plain" || m.Offset != 1 {
		t.Fatalf("got %q at offset %d, want the plain record at 1 (the aborted transaction's never)", m.Value, m.Offset)
	}
}
