package disk

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/internal/atomicutil"
	"github.com/sluicemq/sluice/wire"
)

// File names. A segment is named by its base offset, zero-padded so that names sort by offset; its
// sparse index sits beside it. Files being created carry a ".tmp" suffix until they are complete,
// so a crash mid-creation leaves only a name that Open deletes.
const (
	logSuffix   = ".log"
	indexSuffix = ".index"
	tmpSuffix   = ".tmp"
	spareName   = "spare" + logSuffix + tmpSuffix
)

func segmentName(base int64) string { return fmt.Sprintf("%020d%s", base, logSuffix) }
func indexName(base int64) string   { return fmt.Sprintf("%020d%s", base, indexSuffix) }

// parseSegmentName returns the base offset of a segment file name, or ok=false.
func parseSegmentName(name string) (int64, bool) {
	s, ok := strings.CutSuffix(name, logSuffix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	base, err := strconv.ParseInt(s, 10, 64)
	return base, err == nil && base >= 0
}

// A claim word packs (position within the segment, offset delta from the segment's base) into one
// uint64 so that a single CAS reserves both the bytes and the offsets of an append:
//
//	 63                              32 31                               0
//	+----------------------------------+----------------------------------+
//	|   position: bytes claimed        |   delta: offsets claimed         |
//	+----------------------------------+----------------------------------+
//
// Position sealedPos marks a segment that takes no more claims (rolled or closed). Segments are
// at most MaxSegmentBytes (1 GiB), so a position never reaches sealedPos; a batch holds at least
// one record of at least 7 bytes, so a segment never holds 2^32 offsets (Append rolls early if it
// would).
const sealedPos = math.MaxUint32

func pack(pos, delta uint32) uint64       { return uint64(pos)<<32 | uint64(delta) }
func unpack(v uint64) (pos, delta uint32) { return uint32(v >> 32), uint32(v) }

// segment is one mapped segment file.
type segment struct {
	// Immutable once the segment is published in Log.segs (set by Open or the roller under Log.mu).
	base     int64  // offset of the first record
	path     string // the .log file
	f        File
	data     []byte // the MAP_SHARED mapping of the whole file; never shrunk while mapped
	logStart int64  // process-local log position of data[0] (sum of earlier segments' sizes)
	interval uint32 // index interval
	// fd is the file's descriptor for pwritev (writeBatches), or noFd: appends copy through data.
	fd uintptr
	// activeAt is when the segment became the active one (unix nanos), set by the roller before it
	// is published; 0 for a tail recovered by Open, whose age is unknown. How fast its writer
	// fills it (Log.fastWriter).
	activeAt int64

	// claim and committed are each alone on their cache-line pair (atomicutil): appenders CAS claim
	// on every append and readers poll committed, so neither may share a line with anything else.
	_ atomicutil.Pad
	// claim is the next free (position, delta). Written by appenders (CAS), and by the roller or
	// Close, under Log.mu, to seal it. Never decreases except when a failed roll unseals it.
	claim atomicutil.Uint64
	// committed is the (position, delta) below which every claim has been copied and published.
	// Only the appender whose claim starts at the current value stores it (a release store);
	// readers load it (acquire) and may then read every byte below it.
	committed atomicutil.Uint64
	// readHint is a packed (position, delta) where a Read's view ended: a batch boundary at or
	// below committed. Read walks batch headers from the last index entry at or before its target,
	// and the index is built by the housekeeper, up to its period (50 ms) behind the writer: at a
	// million small batches a second, a reader at the tail would walk tens of thousands of headers
	// per Read. A tailing reader's next Read starts where its last one ended, so it starts its walk
	// here instead. Any reader stores it; any boundary at or before a target is a valid start.
	readHint atomicutil.Uint64

	// final is the packed end of a sealed segment; valid once sealed is true (stored before it).
	final  atomic.Uint64
	sealed atomic.Bool

	// synced is the position covered by the last fdatasync. Written by the flusher only.
	synced atomic.Uint32

	// touchKick is the claim position past which an appender wakes the housekeeper to pre-touch
	// more pages. Written by the housekeeper, read by appenders.
	touchKick atomic.Uint32
	// smallAt is the end of a recent append copied through the mapping (smaller than pwriteMin),
	// stored by such appenders at the segment's first and then once it lags by smallStride (0: none
	// yet): while it is within pretouchIdle of the claim the housekeeper pre-faults pages for them; a
	// writer of large appends only (pwritev) needs none (smallWriter).
	smallAt atomic.Uint32
	// smallStart says whether the pre-toucher pre-faults the first pretouchIdle bytes before an
	// append shows what this segment's writer makes: set, before the segment is published, when
	// the writer of the segment before it made small appends at its end, and when nothing is known
	// (a new log, a recovered tail). See segment.smallWriter.
	smallStart bool
	// touched is how far pages have been faulted in. Owned by the housekeeper goroutine.
	touched uint32
	// writeback is how far writeback of committed pages has been started (Log.startWriteback).
	// Owned by the housekeeper goroutine.
	writeback uint32
	// idleFrom is the claim position of a tail recovered by Open, plus one; 0 for segments created
	// since. The pre-toucher leaves such a tail's pages alone until an append moves the claim past
	// its recovered end, so an idle partition costs no resident pages. Set by Open before the
	// housekeeper starts, then owned by it.
	idleFrom uint32

	// allocated is how much of the file, from its start, has its blocks reserved (fallocate). The
	// file is SegmentBytes long, but past allocated it may be a hole: it reads as zeros, but a
	// write there through the mapping makes the file system find a block at the page fault, and on
	// a full disk that fault is SIGBUS. A claim never ends past allocated, and the pre-toucher never
	// writes past it. It only grows, and only under allocMu, stored after the fallocate returned;
	// the housekeeper extends it ahead of the writer, an appender that reaches it extends it itself
	// (Log.grow). Open sets the tail's from its data (the length says nothing about it).
	allocated atomic.Uint32
	allocMu   sync.Mutex // serializes extend (the housekeeper, appenders at the allocated end)

	// Sparse index. entries[:idxN] are published: the housekeeper (or Open, before any other
	// goroutine exists) writes entries[idxN] and then stores idxN+1; readers load idxN and read
	// below it. The slice header never changes after newSegment: its length is the most entries
	// the segment can need, and only its elements are written.
	entries []indexEntry
	idxN    atomic.Int64
	// entriesMap is the anonymous mapping backing entries (nil if on the heap); unmapped by the
	// last release. Only holders of a reference touch entries.
	entriesMap []byte
	// Indexer cursor, owned by the housekeeper (and Open, or Close after the housekeeper stopped).
	idxPos     uint32 // next batch to index
	idxDelta   uint32
	idxLastPos uint32 // position of the last entry (0: the implicit entry at the start)
	idxMaxTs   int64  // largest timestamp of the batches indexed so far
	// idxRetainTs is the segment's retention time so far: the largest of the indexed batches' max
	// timestamps, each capped at the log's Clock (unix ms) when it was indexed, which is no earlier
	// than its append. A batch stamped in the future therefore counts as appended when indexed, and
	// cannot keep the segment from ageing out.
	idxRetainTs int64
	// maxTs publishes idxMaxTs for timestamp lookups and retainTs publishes idxRetainTs for
	// retention by age; indexDone is set once a sealed segment is wholly indexed; indexWritten once
	// its index file is on disk (housekeeper/Close only).
	maxTs        atomic.Int64
	retainTs     atomic.Int64
	indexDone    atomic.Bool
	indexWritten bool

	// refs counts the log's own reference plus one per View and per flusher use. The mapping is
	// unmapped and the file closed when it drops to zero; it is never raised from zero.
	refs atomic.Int64
}

// indexEntry says that the batch at pos has base offset base+delta, and that every batch before
// pos has a max timestamp of at most maxTsBefore.
type indexEntry struct {
	delta       uint32
	pos         uint32
	maxTsBefore int64
}

// newSegment wraps a mapped segment file whose blocks are reserved from 0 to allocated.
func newSegment(base int64, path string, f File, data []byte, allocated int, logStart int64, interval int) *segment {
	s := &segment{base: base, path: path, f: f, data: data, logStart: logStart, interval: uint32(interval), fd: noFd, smallStart: true}
	if d, ok := f.(fder); ok {
		s.fd = d.Fd()
	}
	s.allocated.Store(uint32(allocated))
	s.entries, s.entriesMap = newIndexEntries(len(data)/interval + 1)
	s.idxMaxTs, s.idxRetainTs = math.MinInt64, math.MinInt64
	s.maxTs.Store(math.MinInt64)
	s.retainTs.Store(math.MinInt64)
	s.refs.Store(1)
	return s
}

// newIndexEntries returns room for n index entries. At a page or more it is an anonymous private
// mapping, whose pages cost nothing until an entry is written there: a heap slice is zeroed, hence
// resident, at once, and a 64 MiB segment has room for 16,384 entries (256 KiB), which every idle
// partition's tail would hold for a handful of entries. indexEntry holds no pointers, so memory
// outside the Go heap may hold it. mapped is the mapping to unmap (nil for a heap slice, the
// fallback).
func newIndexEntries(n int) (entries []indexEntry, mapped []byte) {
	size := n * int(unsafe.Sizeof(indexEntry{}))
	if size >= pageSize {
		b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err == nil {
			return unsafe.Slice((*indexEntry)(unsafe.Pointer(&b[0])), n), b
		}
	}
	return make([]indexEntry, n), nil
}

// extend reserves the file's blocks up to at least want (rounded up to a step, at most the
// mapping), from the current allocated end, and publishes the new end. The caller holds a reference. An error
// (ENOSPC: ErrNoSpace) leaves the extent and every byte as they were.
func (s *segment) extend(want, step uint32) error {
	s.allocMu.Lock()
	defer s.allocMu.Unlock()
	cur := s.allocated.Load()
	if want <= cur {
		return nil // someone else extended it meanwhile
	}
	target := uint32(min(uint64(len(s.data)), (uint64(want)+uint64(step)-1)/uint64(step)*uint64(step)))
	if err := s.f.Allocate(int64(cur), int64(target-cur)); err != nil {
		return allocErr(s.path, err)
	}
	s.allocated.Store(target) // after the fallocate: the blocks exist before anyone may claim them
	return nil
}

// acquire takes a reference unless the segment is already released; it never resurrects one.
func (s *segment) acquire() bool {
	for {
		r := s.refs.Load()
		if r <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// release drops a reference; the last one unmaps the segment and closes its file.
func (s *segment) release() {
	switch r := s.refs.Add(-1); {
	case r == 0:
		_ = s.f.Unmap(s.data)
		_ = s.f.Close()
		if s.entriesMap != nil {
			_ = unix.Munmap(s.entriesMap)
		}
	case r < 0:
		panic("disk: segment released more often than acquired")
	}
}

// end is the segment's committed (position, delta): final once sealed, else the committed word.
func (s *segment) end() (pos, delta uint32) {
	return unpack(s.committed.Load())
}

// seal stops further claims and returns the final (position, delta). The caller holds Log.mu.
// It then waits for the appenders that claimed before the seal to publish, so on return every
// byte below the final position is committed.
func (s *segment) seal() (pos, delta uint32) {
	if s.sealed.Load() {
		return unpack(s.final.Load())
	}
	for {
		old := s.claim.Load()
		pos, delta = unpack(old)
		if s.claim.CompareAndSwap(old, pack(sealedPos, delta)) {
			break
		}
	}
	s.final.Store(pack(pos, delta))
	s.sealed.Store(true)
	waitFor(&s.committed.Uint64, pack(pos, delta))
	return pos, delta
}

// unseal undoes a seal whose roll failed; the caller holds Log.mu and nothing claimed meanwhile.
func (s *segment) unseal() {
	s.sealed.Store(false)
	s.claim.Store(s.final.Load())
}

// waitFor spins until w holds want: briefly on the CPU (the appender ahead is usually mid-copy),
// then yielding the processor so a descheduled appender can run.
func waitFor(w *atomic.Uint64, want uint64) {
	for i := 0; w.Load() != want; i++ {
		if i >= 64 {
			runtime.Gosched()
		}
	}
}

// index adds the batch at (pos, delta), whose max timestamp is maxTs, to the sparse index: an
// entry once pos is at least one interval past the previous entry. now (unix ms) caps maxTs for
// the retention time. Called by the owner of the indexer cursor only.
func (s *segment) index(pos, delta uint32, maxTs, now int64) {
	if n := s.idxN.Load(); pos >= s.idxLastPos+s.interval && n < int64(len(s.entries)) {
		s.entries[n] = indexEntry{delta: delta, pos: pos, maxTsBefore: s.idxMaxTs}
		s.idxN.Store(n + 1) // publishes entries[n]
		s.idxLastPos = pos
	}
	s.idxMaxTs = max(s.idxMaxTs, maxTs)
	s.idxRetainTs = max(s.idxRetainTs, min(maxTs, now))
	s.idxPos = pos
	s.idxDelta = delta
}

// indexTo indexes the committed batches from the cursor up to position end, at time now (unix ms,
// the log's Clock). The bytes there were written by appenders and published, so only their headers
// are read.
func (s *segment) indexTo(end uint32, now int64) {
	p, d := s.idxPos, s.idxDelta
	for p < end {
		size, count := s.span(p)
		s.index(p, d, wire.MaxTimestamp(s.data[p:]), now)
		p += size
		d += count
	}
	s.idxPos, s.idxDelta = p, d
	s.maxTs.Store(s.idxMaxTs)
	s.retainTs.Store(s.idxRetainTs)
}

// lookup returns the indexed (position, delta) of the last entry at or before delta: the batch
// holding delta starts there or later.
func (s *segment) lookup(delta uint32) (pos, d uint32) {
	e := s.entries[:s.idxN.Load()]
	lo, hi := 0, len(e) // first entry with delta > target
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if e[m].delta <= delta {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return 0, 0
	}
	return e[lo-1].pos, e[lo-1].delta
}

// lookupTime returns the (position, delta) of the last entry before which every batch's max
// timestamp is below ts: the first batch reaching ts is there or later.
func (s *segment) lookupTime(ts int64) (pos, d uint32) {
	e := s.entries[:s.idxN.Load()]
	lo, hi := 0, len(e) // first entry with maxTsBefore >= ts
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if e[m].maxTsBefore < ts {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return 0, 0
	}
	return e[lo-1].pos, e[lo-1].delta
}

// resetIndex empties the in-memory index (before a rebuild at Open).
func (s *segment) resetIndex() {
	s.idxN.Store(0)
	s.idxPos, s.idxDelta, s.idxLastPos = 0, 0, 0
	s.idxMaxTs, s.idxRetainTs = math.MinInt64, math.MinInt64
	s.maxTs.Store(math.MinInt64)
	s.retainTs.Store(math.MinInt64)
}

// smallWriter reports whether the writer of s, claimed to pos, makes appends smaller than pwriteMin
// (copied through the mapping), the ones that want pre-faulted pages: one ended within pretouchIdle
// of pos, or pos is within the first pretouchIdle bytes of a segment that started with such a writer
// (smallStart). A segment without a descriptor is always written through the mapping.
//
// A writer of large appends only (pwritev) gets no pre-faulted pages, and that matters beyond the
// pre-toucher's own time: a fault on a page not yet in the page cache starts the kernel's read-ahead,
// which fills the device's whole window (8 MiB here) of the unwritten rest with zeroed pages and
// marks one of them; each reader that later touches a marked page (a delivery's writev, a header
// read, the indexer) reads the next window ahead, so the zeroing runs ahead of the writer through
// the whole segment: 22% of the broker's processor time at 1 KiB records (docs/benchmarks.md, "No
// read-ahead for writers of large appends"). pwritev of whole pages neither reads nor zeroes them.
func (s *segment) smallWriter(pos uint32) bool {
	return s.smallSeen(pos) || s.smallStart && pos < pretouchIdle
}

// smallSeen is smallWriter on the evidence of this segment's appends alone: a small append ended
// within pretouchIdle of pos (or the segment has no descriptor).
func (s *segment) smallSeen(pos uint32) bool {
	if s.fd == noFd {
		return true
	}
	a := s.smallAt.Load()
	return a != 0 && pos-min(pos, a) <= pretouchIdle
}
