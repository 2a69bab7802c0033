// Command wakelat measures how late a normal thread wakes from a 200 µs sleep on a core where another
// thread of the process populates file pages (madvise MADV_POPULATE_WRITE over a fallocated file
// mapping, as disk's housekeeper does), with the populating thread at nice 0, nice 19 or SCHED_IDLE,
// or with nothing populating. Both threads are pinned to CPU 1. It prints the lateness percentiles.
//
// Usage: go run ./wakelat -mode nice0|nice19|idle|none [-chunk bytes] [-d duration] [-dir dir]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

func pin(cpu int) {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintln(os.Stderr, "sched_setaffinity:", err)
		os.Exit(1)
	}
}

func main() {
	mode := flag.String("mode", "nice0", "populating thread: nice0, nice19, idle (SCHED_IDLE), none")
	chunk := flag.Int("chunk", 1<<20, "bytes per madvise call")
	dur := flag.Duration("d", 2*time.Second, "how long to measure")
	dir := flag.String("dir", os.TempDir(), "directory for the populated file (the file system under test)")
	flag.Parse()

	var stop atomic.Bool
	var calls atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		if *mode == "none" {
			return
		}
		runtime.LockOSThread()
		pin(1)
		var err error
		switch *mode {
		case "nice19":
			err = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
		case "idle":
			err = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "lowering priority:", err)
			os.Exit(1)
		}
		f, err := os.CreateTemp(*dir, "wakelat-*")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		const size = 64 << 20
		fd := int(f.Fd())
		_ = unix.Fallocate(fd, 0, 0, size)
		data, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mmap:", err)
			os.Exit(1)
		}
		defer unix.Munmap(data)
		for !stop.Load() {
			for off := 0; off+*chunk <= size && !stop.Load(); off += *chunk {
				_ = unix.Madvise(data[off:off+*chunk], unix.MADV_POPULATE_WRITE)
				calls.Add(1)
			}
			// Drop the pages and the blocks, so that the next round populates afresh.
			_ = unix.Madvise(data, unix.MADV_DONTNEED)
			_ = unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, size)
			_ = unix.Fallocate(fd, 0, 0, size)
		}
	}()

	runtime.LockOSThread()
	pin(1)
	time.Sleep(100 * time.Millisecond)
	const nap = 200 * time.Microsecond
	var late []time.Duration
	end := time.Now().Add(*dur)
	for time.Now().Before(end) {
		t0 := time.Now()
		ts := unix.NsecToTimespec(int64(nap))
		_ = unix.Nanosleep(&ts, nil)
		late = append(late, time.Since(t0)-nap)
	}
	stop.Store(true)
	<-done
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	q := func(p float64) time.Duration { return late[int(p*float64(len(late)-1))] }
	fmt.Printf("%-6s chunk=%-8d wakes=%d madvise=%d lateness p50=%v p99=%v p99.9=%v max=%v\n",
		*mode, *chunk, len(late), calls.Load(), q(.5), q(.99), q(.999), q(1))
}
