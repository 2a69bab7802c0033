package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// BenchmarkFaces sets the HTTP face beside the native protocol on one broker, in one run: produce
// (HTTP: JSON bodies of benchBatch records; native: the client's batching producer) and consume (HTTP:
// a Server-Sent Events stream; native: a client consumer), of 100-byte records, at durability
// written. One op is one record; records/s is reported.
//
//	go test -run '^$' -bench BenchmarkFaces -benchtime 200000x -count 3 ./engine/httpapi/
func BenchmarkFaces(b *testing.B) {
	srv, e := servertest.Start(b, nil, nil)
	h, err := New(Options{Engine: e, Logger: servertest.Logger()})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(h)
	b.Cleanup(func() { hs.Close(); h.Close() })
	ctx := context.Background()
	c, err := client.Dial(ctx, srv.Addr().String(), client.WithLogger(servertest.Logger()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	value := bytes.Repeat([]byte("v"), 100)
	n := 0
	topic := func(b *testing.B) string {
		n++
		name := fmt.Sprintf("bench%d", n)
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1}); err != nil {
			b.Fatal(err)
		}
		return name
	}
	fill := func(b *testing.B, name string, count int) {
		bb := wire.NewBatchBuilder(256 << 10)
		for i := 0; i < count; {
			bb.Reset()
			for j := 0; j < 1000 && i < count; j, i = j+1, i+1 {
				bb.Append(nil, value, nil, 1)
			}
			batch, _ := bb.Build()
			if _, _, err := e.Publish(ctx, name, 0, batch, wire.DurabilityWritten); err != nil {
				b.Fatal(err)
			}
		}
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	}

	b.Run("produce/http-json", func(b *testing.B) {
		name := topic(b)
		const benchBatch = 1000
		v := string(value)
		recs := make([]Record, benchBatch)
		for i := range recs {
			recs[i].Value = &v
		}
		body, _ := json.Marshal(ProduceRequest{Records: recs, Partition: new(int32(0))})
		url := hs.URL + "/v1/topics/" + name + "/records"
		b.SetBytes(int64(len(value)))
		b.ResetTimer()
		for sent := 0; sent < b.N; sent += benchBatch {
			k := min(benchBatch, b.N-sent)
			req := body
			if k < benchBatch {
				req, _ = json.Marshal(ProduceRequest{Records: recs[:k], Partition: new(int32(0))})
			}
			resp, err := hs.Client().Post(url, "application/json", bytes.NewReader(req))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
		report(b)
	})
	b.Run("produce/native", func(b *testing.B) {
		name := topic(b)
		p, err := c.Producer(name, client.WithDurability(wire.DurabilityWritten))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(value)))
		b.ResetTimer()
		for range b.N {
			if err := p.Produce(ctx, client.Record{Value: value}, nil); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		report(b)
		p.Close(ctx)
	})
	b.Run("consume/sse", func(b *testing.B) {
		name := topic(b)
		fill(b, name, b.N)
		b.SetBytes(int64(len(value)))
		b.ResetTimer()
		resp, err := hs.Client().Get(hs.URL + "/v1/topics/" + name + "/partitions/0/stream?offset=0")
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		err = readSSE(resp.Body, func(ev sseEvent) bool {
			got++
			return got < b.N
		})
		b.StopTimer()
		resp.Body.Close()
		if err != nil || got != b.N {
			b.Fatalf("%d of %d events: %v", got, b.N, err)
		}
		report(b)
	})
	b.Run("consume/native", func(b *testing.B) {
		name := topic(b)
		fill(b, name, b.N)
		b.SetBytes(int64(len(value)))
		b.ResetTimer()
		cons, err := c.Subscribe(ctx, name, client.WithPartition(0), client.WithStartEarliest())
		if err != nil {
			b.Fatal(err)
		}
		for i := range b.N {
			m, err := cons.Next(ctx)
			if err != nil || !strings.HasPrefix(string(m.Value), "v") {
				b.Fatalf("record %d: %v", i, err)
			}
		}
		b.StopTimer()
		report(b)
		cons.Close(ctx)
	})
}
