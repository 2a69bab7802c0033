package engine

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// BenchmarkOpenPartitions measures a cold engine start over many nearly empty partitions at the
// default 64 MiB segments: topics of 100 partitions, 400 records in all, written by a first engine
// that is closed; the benchmark then times Open and Close of a second engine over the same data and
// reports the resident memory Open added (VmRSS, RssFile, RssAnon of /proc/self/status, MiB). Start
// time and memory should follow the data written, not partitions × segment size.
//
//	go test -run '^$' -bench BenchmarkOpenPartitions -benchtime 1x ./engine/
func BenchmarkOpenPartitions(b *testing.B) {
	for _, parts := range []int{200, 2000} {
		b.Run(strconv.Itoa(parts), func(b *testing.B) {
			o := testOptions(b)
			o.SegmentBytes = 64 << 20
			e, err := Open(o)
			if err != nil {
				b.Fatal(err)
			}
			const perTopic = 100
			var bb wire.BatchBuilder
			written := 0
			for ti := 0; ti < parts/perTopic; ti++ {
				name := fmt.Sprintf("t%04d", ti)
				if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: perTopic}); err != nil {
					b.Fatal(err)
				}
				for p := 0; p < perTopic && written < 400; p++ {
					for r := 0; r < max(1, 400/parts); r++ {
						batch := buildBatch(b, &bb, []record{{key: "k", value: "v"}})
						if _, _, err := e.Publish(context.Background(), name, int32(p), batch, wire.DurabilityWritten); err != nil {
							b.Fatal(err)
						}
						written++
					}
				}
			}
			if err := e.Close(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				runtime.GC()
				before := procStatus(b)
				start := time.Now()
				e, err := Open(o)
				if err != nil {
					b.Fatal(err)
				}
				open := time.Since(start)
				after := procStatus(b)
				start = time.Now()
				if err := e.Close(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(open.Seconds(), "open-s")
				b.ReportMetric(time.Since(start).Seconds(), "close-s")
				for _, k := range []string{"VmRSS", "RssFile", "RssAnon"} {
					b.ReportMetric(float64(after[k]-before[k])/1024, k+"-MiB")
				}
			}
		})
	}
}

// procStatus returns the kB fields of /proc/self/status.
func procStatus(b *testing.B) map[string]int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}
