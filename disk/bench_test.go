package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// Benchmarks run on the real disk (b.TempDir: $TMPDIR, on the same ext4 volume as the repository
// on the project machine; check with df). The machine is shared: compare the ratios within one
// run, not absolute figures across runs. Command (docs/benchmarks.md):
//
//	go test -run '^$' -bench . -benchtime 2s ./disk/

// benchRecordsPerBatch: every appended batch carries this many records of the benchmark's size.
const benchRecordsPerBatch = 10

var benchRecordSizes = []struct {
	name string
	size int
}{{"100B", 100}, {"1KiB", 1 << 10}, {"16KiB", 16 << 10}}

// BenchmarkRawWrite is the disk's sequential write bandwidth: write(2) of 4 MiB then fdatasync, in
// a loop. "overwrite" rewrites one 256 MiB file in place (blocks already allocated and written: the
// disk's best case); "segments" writes the way a log does, into fresh 64 MiB files preallocated with
// fallocate, deleting the oldest beyond 512 MiB (block allocation, unwritten-extent conversion and
// discards on delete included), the fair baseline for BenchmarkAppend.
func BenchmarkRawWrite(b *testing.B) {
	const chunk, fileSize = 4 << 20, 64 << 20
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.Run("overwrite", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(chunk)
		b.ReportAllocs()
		var off int64
		for range b.N {
			if _, err := f.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				b.Fatal(err)
			}
			off = (off + chunk) % (4 * fileSize)
		}
	})
	b.Run("segments", func(b *testing.B) {
		dir := b.TempDir()
		var files []string
		var f *os.File
		var off int64 = fileSize
		defer func() {
			if f != nil {
				f.Close()
			}
		}()
		b.SetBytes(chunk)
		b.ReportAllocs()
		for i := range b.N {
			if off == fileSize {
				if f != nil {
					f.Close()
				}
				name := filepath.Join(dir, fmt.Sprintf("%020d", i))
				var err error
				if f, err = os.Create(name); err != nil {
					b.Fatal(err)
				}
				if err := unix.Fallocate(int(f.Fd()), 0, 0, fileSize); err != nil {
					b.Fatal(err)
				}
				files = append(files, name)
				if len(files) > 8 {
					os.Remove(files[0])
					files = files[1:]
				}
				off = 0
			}
			if _, err := f.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				b.Fatal(err)
			}
			off += chunk
		}
	})
}

func benchLog(b *testing.B, groupCommit bool) *Log {
	o := Options{Dir: b.TempDir(), Logger: quietLogger(), RetentionBytes: 512 << 20, CheckInterval: 100 * time.Millisecond}
	if !groupCommit {
		o.FlushInterval, o.FlushBytes = time.Hour, 1<<40
	}
	l, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkAppend is one goroutine appending batches of benchRecordsPerBatch records: with no fsync
// at all (nosync), with the background sync a written-durability log runs (background: every second
// or 64 MiB), or requesting a sync after every append as the server does for each fsync-level
// produce (groupcommit: one fdatasync covers whatever was appended while the previous one ran). The
// synced variants end with a Sync inside the timed region, so every byte counted is durable.
func BenchmarkAppend(b *testing.B) {
	for _, rs := range benchRecordSizes {
		for _, mode := range []string{"nosync", "background", "groupcommit"} {
			b.Run(rs.name+"/"+mode, func(b *testing.B) {
				l := benchLog(b, mode != "nosync")
				defer l.Close()
				batch := testBatch(b, 1, benchRecordsPerBatch, rs.size, time.Now().UnixMilli())
				b.SetBytes(int64(len(batch)))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := l.Append(batch); err != nil {
						b.Fatal(err)
					}
					if mode == "groupcommit" {
						l.RequestSync()
					}
				}
				if mode != "nosync" {
					if err := l.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				// Appends that found the allocated end and ran a fallocate themselves.
				b.ReportMetric(float64(l.limitHits.Load()), "limit-hits")
			})
		}
	}
}

// BenchmarkRead reads a log of one-record 100 B batches one batch per call, the way a consumer that
// keeps up with its producer reads (maxBytes smaller than two batches): the index lookup and the
// walk to the batch and past it, per record.
func BenchmarkRead(b *testing.B) {
	l := benchLog(b, false)
	defer l.Close()
	batch := testBatch(b, 1, 1, 100, time.Now().UnixMilli())
	const n = 1 << 16
	for range n {
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		v, err := l.Read(off%n, len(batch)+1)
		if err != nil || v.NextOffset != off%n+1 {
			b.Fatalf("read at %d: %v, next %d", off%n, err, v.NextOffset)
		}
		v.Release()
		off++
	}
}

// BenchmarkAppendParallel appends 1 KiB-record batches from GOMAXPROCS goroutines at once: the
// lock-free claim under contention.
func BenchmarkAppendParallel(b *testing.B) {
	l := benchLog(b, true)
	defer l.Close()
	batch := testBatch(b, 1, benchRecordsPerBatch, 1<<10, time.Now().UnixMilli())
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(batch); err != nil {
				b.Error(err)
				return
			}
			l.RequestSync()
		}
	})
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(l.limitHits.Load()), "limit-hits")
}

// BenchmarkRawFdatasyncLatency is the latency of write(1 KiB) + fdatasync, one after another.
func BenchmarkRawFdatasyncLatency(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<10)
	h := hdrhistogram.New(1, 10_000_000, 3)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := f.WriteAt(buf, int64(i%4096)*int64(len(buf))); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		_ = h.RecordValue(time.Since(t0).Microseconds())
	}
	reportLatency(b, h)
}

// BenchmarkFsyncAppendLatency is the fsync-level append latency: Append a 10 × 1 KiB batch, then
// WaitSynced, from 1 and from 8 concurrent producers sharing the group commit.
func BenchmarkFsyncAppendLatency(b *testing.B) {
	for _, producers := range []int{1, 8} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			l := benchLog(b, true)
			defer l.Close()
			batch := testBatch(b, 1, benchRecordsPerBatch, 1<<10, time.Now().UnixMilli())
			var mu sync.Mutex
			h := hdrhistogram.New(1, 10_000_000, 3)
			var wg sync.WaitGroup
			per := (b.N + producers - 1) / producers
			b.ResetTimer()
			for range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					local := hdrhistogram.New(1, 10_000_000, 3)
					for range per {
						t0 := time.Now()
						res, err := l.Append(batch)
						if err == nil {
							err = l.WaitSynced(context.Background(), res.NextOffset)
						}
						if err != nil {
							b.Error(err)
							return
						}
						_ = local.RecordValue(time.Since(t0).Microseconds())
					}
					mu.Lock()
					h.Merge(local)
					mu.Unlock()
				}()
			}
			wg.Wait()
			reportLatency(b, h)
		})
	}
}

func reportLatency(b *testing.B, h *hdrhistogram.Histogram) {
	b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-µs")
	b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-µs")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkBackgroundSync appends 10 × 1 KiB-record batches as fast as it can, with the background
// sync every 100 ms, and reports the duration of the sync rounds (OnSyncDuration): how long a
// background fdatasync keeps its thread (and, until sysmon retakes it, its processor).
func BenchmarkBackgroundSync(b *testing.B) {
	var mu sync.Mutex
	h := hdrhistogram.New(1, 10_000_000, 3)
	o := Options{Dir: b.TempDir(), Logger: quietLogger(), RetentionBytes: 512 << 20, CheckInterval: 100 * time.Millisecond,
		FlushInterval: 100 * time.Millisecond, OnSyncDuration: func(d time.Duration) {
			mu.Lock()
			_ = h.RecordValue(d.Microseconds())
			mu.Unlock()
		}}
	l, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := testBatch(b, 1, benchRecordsPerBatch, 1<<10, time.Now().UnixMilli())
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	for range b.N {
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	b.ReportMetric(float64(h.TotalCount()), "syncs")
	b.ReportMetric(float64(h.ValueAtQuantile(50)), "sync-p50-µs")
	b.ReportMetric(float64(h.ValueAtQuantile(99)), "sync-p99-µs")
	b.ReportMetric(float64(h.Max()), "sync-max-µs")
}
