package client

import (
	"errors"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// TestOffsetResetAgainstBroker: WithOffsetReset reaches the broker and decides where a start offset
// beyond the end goes: the oldest record by default, the end with latest, an error with error
// (issue 11, item 3).
func TestOffsetResetAgainstBroker(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	createTopic(t, c, "reset", 1)
	ctx := testCtx(t)
	p, err := c.Producer("reset", WithDurability(wire.DurabilityWritten))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := p.Publish(ctx, Record{Value: []byte("old")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Subscribe(ctx, "reset", WithStartOffset(50), WithOffsetReset(wire.ResetError)); !errors.Is(err, wire.CodeOffsetOutOfRange) {
		t.Fatalf("reset error: %v, want CodeOffsetOutOfRange", err)
	}
	earliest, err := c.Subscribe(ctx, "reset", WithStartOffset(50))
	if err != nil {
		t.Fatal(err)
	}
	defer earliest.Close(ctx)
	latest, err := c.Subscribe(ctx, "reset", WithStartOffset(50), WithOffsetReset(wire.ResetLatest))
	if err != nil {
		t.Fatal(err)
	}
	defer latest.Close(ctx)
	if _, err := p.Publish(ctx, Record{Value: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	m, err := earliest.Next(ctx)
	if err != nil || m.Offset != 0 {
		t.Fatalf("default (earliest): %v, %+v, want offset 0", err, m)
	}
	m, err = latest.Next(ctx)
	if err != nil || m.Offset != 10 || string(m.Value) != "new" {
		t.Fatalf("latest: %v, %+v, want offset 10", err, m)
	}
	if err := c.CommitOffset(ctx, "g", "reset", 0, 1010); !errors.Is(err, wire.CodeOffsetOutOfRange) {
		t.Fatalf("commit beyond the end: %v, want CodeOffsetOutOfRange", err)
	}
}
