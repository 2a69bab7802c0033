package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

func TestHeaderFilters(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "f", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	// 100 records in batches of 10; record i has type=even|odd, and every third has a "vip" header.
	b := wire.NewBatchBuilder(4096)
	for i := 0; i < 100; i += 10 {
		b.Reset()
		for j := i; j < i+10; j++ {
			hdrs := []wire.Header{{Key: []byte("type"), Value: []byte([]string{"even", "odd"}[j%2])}}
			if j%3 == 0 {
				hdrs = append(hdrs, wire.Header{Key: []byte("vip"), Value: nil})
			}
			b.Append([]byte(fmt.Sprint(j)), []byte(fmt.Sprintf("v%d", j)), hdrs, int64(1000+j))
		}
		batch, _ := b.Build()
		if _, _, err := e.Publish(context.Background(), "f", 0, batch, wire.DurabilityWritten); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		filter string
		want   func(i int) bool
	}{
		{"type=even", func(i int) bool { return i%2 == 0 }},
		{"type!=even", func(i int) bool { return i%2 == 1 }},
		{"vip", func(i int) bool { return i%3 == 0 }},
		{"!vip&type=odd", func(i int) bool { return i%3 != 0 && i%2 == 1 }},
		{"type=none", func(int) bool { return false }},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			l, err := e.SubscribeLocal(wire.Subscribe{Topic: "f", Partition: 0, Start: wire.StartOffset, StartValue: 5, Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var want []int
			for i := 5; i < 100; i++ {
				if tc.want(i) {
					want = append(want, i)
				}
			}
			var got []int
			var it wire.RecordIter
			var r wire.Record
			for len(got) < len(want) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				d, err := l.Next(ctx)
				cancel()
				if err != nil {
					t.Fatalf("after %v: %v", got, err)
				}
				for rest := d.Batches(); len(rest) > 0; {
					h, err := it.Reset(rest)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := wire.ValidateBatch(rest, 0); err != nil {
						t.Fatalf("filtered batch does not validate: %v", err)
					}
					rest = rest[h.Size():]
					for it.Next(&r) {
						if string(r.Value) != fmt.Sprintf("v%d", r.Offset) || r.Timestamp != 1000+r.Offset {
							t.Fatalf("record at %d: value %q timestamp %d", r.Offset, r.Value, r.Timestamp)
						}
						got = append(got, int(r.Offset))
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("offsets %v, want %v", got, want)
			}
			// Nothing else is pending for this filter.
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if _, err := l.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("extra delivery after the matches: %v", err)
			}
		})
	}
	if _, err := e.SubscribeLocal(wire.Subscribe{Topic: "f", Partition: 0, Filter: "=x"}); !errors.Is(err, wire.CodeInvalidRequest) {
		t.Fatalf("empty header name: %v", err)
	}
}
