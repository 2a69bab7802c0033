package engine

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/disk"
)

// Cold reads. A consumer far behind the end of a partition reads pages the page cache may have
// dropped; on an event loop each such page fault is a disk read that stalls every connection of the
// loop. So a cursor more than coldLag records behind checks, before delivering, whether its view's
// pages are resident (mincore); if not, a goroutine faults them in (MADV_POPULATE_READ, a blocking
// read off the loop) and wakes the cursor when they are, and the delivery happens then, from memory.
// Tailing consumers skip the check: what was just written is in the page cache.

// isResident is resident, replaceable by tests that need a cold read on cue.
var isResident = resident

// coldLag is how many records behind the partition's end a cursor must be for the residency check.
const coldLag = 1000

var pageSize = uintptr(os.Getpagesize())

// pageSpan returns the page-aligned span of the mapping covering b.
func pageSpan(b []byte) []byte {
	p := unsafe.Pointer(unsafe.SliceData(b))
	head := uintptr(p) & (pageSize - 1) // bytes from the page start to b; the mapping is page-aligned
	n := (head + uintptr(len(b)) + pageSize - 1) &^ (pageSize - 1)
	return unsafe.Slice((*byte)(unsafe.Add(p, -int(head))), n)
}

// resident reports whether every page under b is in memory. On error it says yes: the read then
// proceeds as it would have without the check.
func resident(b []byte, vec []byte) bool {
	span := pageSpan(b)
	n := len(span) / int(pageSize)
	if cap(vec) < n {
		vec = make([]byte, n)
	}
	vec = vec[:n]
	if err := mincore(span, vec); err != nil {
		return true
	}
	for _, v := range vec {
		if v&1 == 0 {
			return false
		}
	}
	return true
}

// mincore asks the kernel which pages of the mapping b are resident (golang.org/x/sys/unix has the
// system call number but no wrapper on Linux).
func mincore(b, vec []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if e != 0 {
		return e
	}
	return nil
}

// prefetch faults v's pages in off the owner's goroutine, then releases v and wakes c's owner.
func prefetch(v disk.View, c *Cursor) {
	span := pageSpan(v.Data)
	if err := unix.Madvise(span, unix.MADV_POPULATE_READ); err != nil {
		for off := 0; off < len(span); off += int(pageSize) {
			_ = *(*byte)(unsafe.Pointer(&span[off])) // fault it in by reading
		}
	}
	v.Release()
	c.owner.Wake(c)
}
