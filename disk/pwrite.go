package disk

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/wire"
)

// fder is a File backed by a descriptor: the OS file system's. The log writes large appends to
// those with pwritev (segment.writeBatches); other Files (tests' fault-injecting ones) are written
// through the mapping only.
type fder interface{ Fd() uintptr }

// noFd marks a segment without a descriptor for pwritev.
const noFd = ^uintptr(0)

// pwriteMin is the smallest append written with pwritev; smaller ones are copied into the mapping.
// Measured (BenchmarkAppend, same run, docs/benchmarks.md 2026-11-29): with every append written by
// pwritev, 1.2 KiB appends ran at 0.47-0.67x of the copy into pre-faulted pages and 10 KiB ones at
// 0.67-0.86x (a system call and the file system's buffered-write path per append), while 164 KiB
// ones ran at 1.5-2.0x (the appender overran the pre-toucher and faulted each page itself). From
// 16 KiB up: 0.88-1.14x, 1.33-1.37x.
const pwriteMin = 16 << 10

// smallStride and pretouchIdle decide whether the housekeeper pre-faults pages (segment.smallWriter):
// it does while an append smaller than pwriteMin, copied through the mapping, ended within
// pretouchIdle bytes of the claim, and over a segment's first pretouchIdle bytes when its
// predecessor's writer made such appends at its end; appenders on that path store their end once
// the recorded one lags by smallStride (and at the segment's first), a store per 256 KiB, not per
// append. Pre-faulting for appends that pwritev writes costs the housekeeper's madvise (page
// allocation and zeroing the write then redoes), processor time, and the read-ahead of zeroed
// pages its faults start (docs/benchmarks.md 2026-11-29 and 2026-11-30).
const (
	smallStride  = 256 << 10
	pretouchIdle = 4 << 20
)

// pwriteBatches is the most batches one pwritev call carries (two iovecs each: the patched base
// offset, then the rest of the batch).
const pwriteBatches = 8

// writeBatches writes the batches b (whole, measured by Log.measure; at least pwriteMin bytes) at
// position pos of the segment's file with pwritev, each batch's base offset patched on the way (the first batch's is
// off, each next one's the previous one's plus its record count): the one copy of the data, into
// the page cache the mapping shares (docs/storage.md, append step 3). It reports false if anything
// was not written (no descriptor, fewer than pwriteMin bytes, an error, a short write); the caller
// then copies through the mapping, which writes the same bytes. Every byte lies below the segment's allocated end, in
// blocks fallocate reserved, so it cannot fail for space. It does not allocate: the iovecs and the
// patched offsets live on this goroutine's stack, which the runtime does not move while it is in
// a system call.
//
// Why pwritev for large appends (measured, docs/benchmarks.md 2026-11-29): a large append runs
// past the pages the housekeeper pre-faulted (PretouchBytes ahead), and each store into a page of
// the mapping not yet mapped writable takes a page fault on the appender's thread, which cannot
// give its processor back to the scheduler while the kernel allocates, zeroes and accounts the page
// (ext4's page_mkwrite). pwritev copies into the page cache in the kernel with the goroutine in a
// system call (its processor can be handed off), and the fdatasyncs' write-protection of clean
// pages does not concern it.
func (s *segment) writeBatches(b []byte, pos uint32, off int64) bool {
	if s.fd == noFd || len(b) < pwriteMin {
		return false
	}
	var hdr [pwriteBatches][8]byte
	var iov [2 * pwriteBatches]unix.Iovec
	at := int64(pos)
	for p := 0; p < len(b); {
		nb, niov, want := 0, 0, 0
		for p < len(b) && nb < pwriteBatches {
			size, _ := wire.BatchSize(b[p:])
			h := &hdr[nb]
			putBE64(h[:], uint64(off))
			iov[niov].Base = &h[0]
			iov[niov].SetLen(8)
			iov[niov+1].Base = &b[p+8]
			iov[niov+1].SetLen(size - 8)
			niov += 2
			want += size
			off += int64(wire.RecordCount(b[p:]))
			p += size
			nb++
		}
		n, _, errno := syscall.Syscall6(unix.SYS_PWRITEV, s.fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(niov), uintptr(at), uintptr(at>>32), 0)
		if errno != 0 || int(n) != want {
			return false
		}
		at += int64(want)
	}
	return true
}

func putBE64(b []byte, v uint64) {
	_ = b[7]
	b[0], b[1], b[2], b[3] = byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32)
	b[4], b[5], b[6], b[7] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
