package client

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// TestStartTimeInsideBatch: one batch of 100 records, record i stamped t0 + 10·i ms; a consumer
// starting at t0 + 500 ms, alone or as a group member without a committed offset, first gets
// offset 50, whatever the batch's codec.
func TestStartTimeInsideBatch(t *testing.T) {
	b := startBroker(t, nil)
	c := dialT(t, b.addr)
	ctx := testCtx(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for _, codec := range []wire.Codec{wire.CodecNone, wire.CodecGzip, wire.CodecSnappy, wire.CodecZstd} {
		topic := "st-" + codec.String()
		createTopic(t, c, topic, 1)
		p, err := c.Producer(topic, WithCompression(codec), WithLinger(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			ts := t0.Add(time.Duration(10*i) * time.Millisecond)
			if err := p.Produce(ctx, Record{Value: fmt.Appendf(nil, "v%d", i), Timestamp: ts}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		for _, opts := range [][]ConsumerOption{
			{WithStartTime(t0.Add(500 * time.Millisecond))},
			{WithStartTime(t0.Add(500 * time.Millisecond)), WithGroup("g-" + topic)},
		} {
			cons, err := c.Subscribe(ctx, topic, opts...)
			if err != nil {
				t.Fatal(err)
			}
			m, err := cons.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m.Offset != 50 || string(m.Value) != "v50" {
				t.Errorf("%s (%d options): first record offset %d value %q, want 50 v50", codec, len(opts), m.Offset, m.Value)
			}
			cons.Close(context.Background())
		}
	}
}
