package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Limits are the machine's physical limits, measured in-process in the same run as the benchmarks they
// bound. Bandwidths are in MB/s (10^6 bytes per second).
type Limits struct {
	// LoopbackMBps is a plain TCP copy over 127.0.0.1 with 256 KiB writes.
	LoopbackMBps float64 `json:"loopback_mb_per_s"`
	// LoopbackSmallMBps is the same copy with 128-byte writes: one syscall per write.
	LoopbackSmallMBps float64 `json:"loopback_128b_mb_per_s"`
	// DiskWriteMBps is sequential 1 MiB writes to a fresh file, ended by one fdatasync.
	DiskWriteMBps float64 `json:"disk_write_mb_per_s"`
	// DiskBufferedMBps is sequential 1 MiB writes to a fresh file without a sync, for as long as the
	// run (LimitsOptions.BufferedWarmup, then LimitsOptions.Buffered), over the second part: what a
	// writer at written durability can keep up for that long, once the kernel's dirty-page limits
	// hold it to the disk's writeback rate. Zero when not measured.
	DiskBufferedMBps float64 `json:"disk_buffered_mb_per_s,omitempty"`
	// BufferedFor is the measured part of the buffered-write probe.
	BufferedFor time.Duration `json:"buffered_for_ns,omitempty"`
	// FdatasyncP50 and FdatasyncP99 time a 4 KiB append followed by fdatasync.
	FdatasyncP50 time.Duration `json:"fdatasync_p50_ns"`
	FdatasyncP99 time.Duration `json:"fdatasync_p99_ns"`
	FdatasyncN   int64         `json:"fdatasync_count"`
	// MemcpyMBps is copy() between two 32 MiB buffers (larger than the caches).
	MemcpyMBps float64 `json:"memcpy_mb_per_s"`
	// Dir is where the disk probes ran.
	Dir string `json:"dir"`
}

// Summary is the limits on one line, as `sluice bench --limits` prints them.
func (l Limits) Summary() string {
	s := fmt.Sprintf("limits (same run): loopback TCP %.0f MB/s in 256 KiB writes, %.0f MB/s in 128 B writes; memcpy %.0f MB/s",
		l.LoopbackMBps, l.LoopbackSmallMBps, l.MemcpyMBps)
	if l.Dir != "" {
		s += fmt.Sprintf("; %s: sequential write %.0f MB/s, 4 KiB write + fdatasync p50 %s p99 %s (%d syncs)",
			l.Dir, l.DiskWriteMBps, FormatLatency(l.FdatasyncP50), FormatLatency(l.FdatasyncP99), l.FdatasyncN)
		if l.DiskBufferedMBps > 0 {
			s += fmt.Sprintf(", buffered write without sync %.0f MB/s over a run's %s", l.DiskBufferedMBps, l.BufferedFor)
		}
	}
	return s
}

// LimitsOptions bounds the probes.
type LimitsOptions struct {
	// Dir is the directory for the disk probes: the broker's data disk. Empty skips them.
	Dir string
	// Probe is the time each of the five probes runs. Default 1s.
	Probe time.Duration
	// Buffered, when positive, adds the buffered-write probe (Limits.DiskBufferedMBps): writes for
	// BufferedWarmup, then measured for Buffered, the warm-up and duration of the run it bounds.
	Buffered, BufferedWarmup time.Duration
}

// MeasureLimits runs the probes one after another: about five times opts.Probe in all.
func MeasureLimits(ctx context.Context, opts LimitsOptions) (Limits, error) {
	if opts.Probe <= 0 {
		opts.Probe = time.Second
	}
	l := Limits{Dir: opts.Dir}
	var errs []error
	var err error
	if l.LoopbackMBps, err = LoopbackBandwidth(ctx, 256<<10, opts.Probe); err != nil {
		errs = append(errs, err)
	}
	if l.LoopbackSmallMBps, err = LoopbackBandwidth(ctx, 128, opts.Probe); err != nil {
		errs = append(errs, err)
	}
	l.MemcpyMBps = MemcpyBandwidth(ctx, 32<<20, opts.Probe)
	if opts.Dir != "" {
		if l.DiskWriteMBps, err = DiskWriteBandwidth(ctx, opts.Dir, opts.Probe); err != nil {
			errs = append(errs, err)
		}
		var p Percentiles
		if p, err = FdatasyncLatency(ctx, opts.Dir, opts.Probe); err != nil {
			errs = append(errs, err)
		}
		l.FdatasyncP50, l.FdatasyncP99, l.FdatasyncN = p.P50, p.P99, p.Count
		if opts.Buffered > 0 {
			if l.DiskBufferedMBps, err = BufferedWriteBandwidth(ctx, opts.Dir, opts.BufferedWarmup, opts.Buffered); err != nil {
				errs = append(errs, err)
			}
			l.BufferedFor = opts.Buffered
		}
	}
	return l, errors.Join(errs...)
}

// LoopbackBandwidth copies over a TCP connection on 127.0.0.1 for about d, writing writeSize bytes per
// Write, and returns the bytes the reader received per second, in MB/s.
func LoopbackBandwidth(ctx context.Context, writeSize int, d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: loopback listen: %w", err)
	}
	defer ln.Close()
	type readResult struct {
		n   int64
		err error
	}
	got := make(chan readResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- readResult{err: err}
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		var n int64
		for {
			m, err := c.Read(buf)
			n += int64(m)
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				got <- readResult{n, err}
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, fmt.Errorf("bench: loopback dial: %w", err)
	}
	buf := make([]byte, writeSize)
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; ctx.Err() == nil; i++ {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, fmt.Errorf("bench: loopback write: %w", err)
		}
		if i%64 == 0 && time.Now().After(deadline) {
			break
		}
	}
	if err := c.Close(); err != nil {
		return 0, fmt.Errorf("bench: loopback close: %w", err)
	}
	r := <-got
	elapsed := time.Since(start)
	if r.err != nil {
		return 0, fmt.Errorf("bench: loopback read: %w", r.err)
	}
	return float64(r.n) / elapsed.Seconds() / 1e6, nil
}

// MemcpyBandwidth copies between two size-byte buffers for about d and returns MB/s copied.
func MemcpyBandwidth(ctx context.Context, size int, d time.Duration) float64 {
	src, dst := make([]byte, size), make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // fault both buffers in before timing
	var n int64
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		copy(dst, src)
		n += int64(size)
	}
	return float64(n) / time.Since(start).Seconds() / 1e6
}

// probeBlock is the 1 MiB block the disk probes write: not all zeros, in case the file system
// compresses.
func probeBlock() []byte {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	return buf
}

// probeFile creates the file a disk probe named what writes, in dir; done closes and removes it.
func probeFile(dir, prefix, what string) (f *os.File, done func(), err error) {
	f, err = os.CreateTemp(dir, prefix+"-*")
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %s probe: %w", what, err)
	}
	return f, func() {
		f.Close()
		os.Remove(f.Name())
	}, nil
}

// DiskWriteBandwidth writes 1 MiB blocks sequentially to a new file in dir for about d, then fdatasyncs
// it, and returns MB/s including the final sync. The file is removed.
func DiskWriteBandwidth(ctx context.Context, dir string, d time.Duration) (float64, error) {
	f, done, err := probeFile(dir, "bench-disk", "disk")
	if err != nil {
		return 0, err
	}
	defer done()
	buf := probeBlock()
	var n int64
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		m, err := f.Write(buf)
		n += int64(m)
		if err != nil {
			return 0, fmt.Errorf("bench: disk write %s: %w", f.Name(), err)
		}
	}
	if err := fdatasync(f); err != nil {
		return 0, fmt.Errorf("bench: fdatasync %s: %w", f.Name(), err)
	}
	return float64(n) / time.Since(start).Seconds() / 1e6, nil
}

// BufferedWriteBandwidth writes 1 MiB blocks sequentially to a new file in dir for warmup, then for d,
// without syncing, and returns the MB/s of the second part. The first seconds of such a write run at
// memory speed, into the page cache; once the dirty pages reach the kernel's limits (vm.dirty_ratio),
// each write waits for writeback, so over a run of several seconds this is the sustained rate of
// buffered writes to this disk, the bound of a closed-loop run at written durability of the same
// length. The file is removed, and its pages with it.
func BufferedWriteBandwidth(ctx context.Context, dir string, warmup, d time.Duration) (float64, error) {
	f, done, err := probeFile(dir, "bench-buffered", "buffered-write")
	if err != nil {
		return 0, err
	}
	defer done()
	buf := probeBlock()
	start := time.Now()
	measureFrom, end := start.Add(max(warmup, 0)), start.Add(max(warmup, 0)+d)
	var n int64
	for now := start; now.Before(end) && ctx.Err() == nil; now = time.Now() {
		m, err := f.Write(buf)
		if err != nil {
			return 0, fmt.Errorf("bench: buffered write %s: %w", f.Name(), err)
		}
		if !now.Before(measureFrom) {
			n += int64(m)
		}
	}
	return float64(n) / time.Since(measureFrom).Seconds() / 1e6, nil
}

// FdatasyncLatency appends 4 KiB and calls fdatasync in a loop for about d (at least 10 times) on a new
// file in dir and returns the distribution of the time each append-and-sync took. The file is removed.
func FdatasyncLatency(ctx context.Context, dir string, d time.Duration) (Percentiles, error) {
	f, done, err := probeFile(dir, "bench-fsync", "fdatasync")
	if err != nil {
		return Percentiles{}, err
	}
	defer done()
	h := newHist(time.Minute)
	buf := make([]byte, 4096)
	start := time.Now()
	for i := 0; (i < 10 || time.Since(start) < d) && ctx.Err() == nil; i++ {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return Percentiles{}, fmt.Errorf("bench: write %s: %w", f.Name(), err)
		}
		if err := fdatasync(f); err != nil {
			return Percentiles{}, fmt.Errorf("bench: fdatasync %s: %w", f.Name(), err)
		}
		_ = h.RecordValue(min(int64(time.Since(t0)), h.HighestTrackableValue()))
	}
	return Summarize(h), nil
}
