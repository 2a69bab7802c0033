package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// TestConsumeFromTimeInsideBatch: --from a time that falls inside a batch (record i stamped
// t0 + 10·i ms, all 100 in one zstd batch) prints from the first record at or after it, alone and
// for a group with no committed offset.
func TestConsumeFromTimeInsideBatch(t *testing.T) {
	addr := startBroker(t)
	ctx := testCtx(t)
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ok(t, addr, nil, "topic", "create", "stamped", "--partitions", "1")
	p, err := c.Producer("stamped", client.WithCompression(wire.CodecZstd), client.WithLinger(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 100 {
		rec := client.Record{Value: fmt.Appendf(nil, "r%d", i), Timestamp: t0.Add(time.Duration(10*i) * time.Millisecond)}
		if err := p.Produce(ctx, rec, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	from := t0.Add(500 * time.Millisecond).Format(time.RFC3339Nano)
	for _, args := range [][]string{
		{"consume", "stamped", "--from", from, "--count", "2"},
		{"consume", "stamped", "--from", from, "--count", "2", "--group", "fresh"},
	} {
		if r := ok(t, addr, nil, args...); r.stdout != "r50\nr51\n" {
			t.Errorf("%v: %q, want r50 and r51", args, r.stdout)
		}
	}
}
