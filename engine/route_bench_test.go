package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// fillReadings appends n records in batches of 100 to partition 0 of topic: alternately region=eu and
// region=us, JSON values {"temp": i%50}; the last record is eu at 49, so every filter below matches
// it (the readers stop there).
func fillReadings(b *testing.B, e *Engine, topic string, n int) {
	bb := wire.NewBatchBuilder(64 << 10)
	eu, us := []wire.Header{{Key: []byte("region"), Value: []byte("eu")}}, []wire.Header{{Key: []byte("region"), Value: []byte("us")}}
	for i := 0; i < n; i += 100 {
		bb.Reset()
		for j := i; j < i+100 && j < n; j++ {
			h := eu
			if j%2 == 1 && j != n-1 {
				h = us
			}
			temp := j % 50
			if j == n-1 {
				temp = 49
			}
			bb.Append([]byte("k"), fmt.Appendf(nil, `{"temp": %d, "id": %d}`, temp, j), h, int64(j))
		}
		batch, err := bb.Build()
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := e.Publish(context.Background(), topic, 0, batch, wire.DurabilityWritten); err != nil {
			b.Fatal(err)
		}
	}
}

// readAll reads l until it has delivered the record at offset last of every partition it reads
// (parts of them), returning the records delivered.
func readAll(b *testing.B, l *Local, last int64, parts int) int {
	var it wire.RecordIter
	var r wire.Record
	n, done := 0, 0
	for done < parts {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		d, err := l.Next(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		for rest := d.Batches(); len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				b.Fatal(err)
			}
			rest = rest[h.Size():]
			for it.Next(&r) {
				n++
				if r.Offset == last {
					done++
				}
			}
		}
	}
	return n
}

// BenchmarkFilteredDelivery reads 100,000 records of one partition (100-record batches, half of them
// region=eu) through an in-process subscription, unfiltered and with each kind of filter, in the same
// run: records/s is records scanned (stored) per second, so the sub-benchmarks compare directly.
//
//	go test -run '^$' -bench BenchmarkFilteredDelivery -benchtime 5x ./engine/
func BenchmarkFilteredDelivery(b *testing.B) {
	const n = 100_000
	e := openEngine(b, testOptions(b))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "f", Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	fillReadings(b, e, "f", n)
	for _, bc := range []struct {
		name, filter string
		lang         wire.FilterLang
	}{
		{"none", "", 0},
		{"header-terms", "region=eu", wire.FilterHeaders},
		{"cel-header", `headers["region"] == "eu"`, wire.FilterCEL},
		{"cel-json", `value.temp > 30`, wire.FilterCEL},
		{"cel-json-and-header", `value.temp > 30 && headers["region"] == "eu"`, wire.FilterCEL},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			delivered := 0
			for i := 0; i < b.N; i++ {
				l, err := e.SubscribeLocal(wire.Subscribe{Topic: "f", Partition: 0, Filter: bc.filter, FilterLang: bc.lang})
				if err != nil {
					b.Fatal(err)
				}
				delivered += readAll(b, l, n-1, 1)
				l.Close()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(delivered)/float64(b.N), "delivered/op")
		})
	}
}

// BenchmarkPatternFanout: a pattern subscription over 1,000 matching topics (of 1,010; 100 records
// each, one partition): "read" subscribes and reads all 100,000 records; "subscribe" times subscribing
// and closing alone; "create" times creating one more matching topic under 100 live pattern
// subscriptions and each of them picking it up; "read-one-topic" reads the same number of records
// from one topic, for comparison.
//
//	go test -run '^$' -bench BenchmarkPatternFanout -benchtime 3x ./engine/
func BenchmarkPatternFanout(b *testing.B) {
	const topics, per = 1000, 100
	o := testOptions(b)
	e := openEngine(b, o)
	for i := range topics + 10 {
		name := fmt.Sprintf("fan.%04d.x", i)
		if i >= topics {
			name = fmt.Sprintf("other.%d", i)
		}
		if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1, Flags: wire.TopicMemory}); err != nil {
			b.Fatal(err)
		}
		fillReadings(b, e, name, per)
	}
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			l, err := e.SubscribeLocal(wire.Subscribe{Topic: "fan.*.x", Partition: -1})
			if err != nil {
				b.Fatal(err)
			}
			if got := readAll(b, l, per-1, topics); got != topics*per {
				b.Fatalf("read %d records, want %d", got, topics*per)
			}
			l.Close()
		}
		b.ReportMetric(float64(topics*per)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("subscribe", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			l, err := e.SubscribeLocal(wire.Subscribe{Topic: "fan.>", Partition: -1})
			if err != nil {
				b.Fatal(err)
			}
			l.Close()
		}
	})
	// The same records in one topic, for comparison in the same run.
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "single", Partitions: 1, Flags: wire.TopicMemory}); err != nil {
		b.Fatal(err)
	}
	fillReadings(b, e, "single", topics*per)
	b.Run("read-one-topic", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			l, err := e.SubscribeLocal(wire.Subscribe{Topic: "single", Partition: -1})
			if err != nil {
				b.Fatal(err)
			}
			readAll(b, l, topics*per-1, 1)
			l.Close()
		}
		b.ReportMetric(float64(topics*per)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	created := 0 // across the runs of "create": names are never reused
	b.Run("create", func(b *testing.B) {
		subs := make([]*Local, 100)
		for i := range subs {
			var err error
			if subs[i], err = e.SubscribeLocal(wire.Subscribe{Topic: "new.>", Partition: -1}); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			name := fmt.Sprintf("new.%d", created)
			created++
			if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: 1, Flags: wire.TopicMemory}); err != nil {
				b.Fatal(err)
			}
			fillReadings(b, e, name, 1)
			for _, l := range subs {
				readAll(b, l, 0, 1)
			}
		}
		b.StopTimer()
		for _, l := range subs {
			l.Close()
		}
	})
}
