package disk

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// housekeeper runs off the append path: it reserves blocks and pre-touches pages ahead of the
// writer, pre-creates the next segment, indexes committed batches, writes the index of sealed
// segments and enforces retention. Appenders wake it when they pass a segment's touchKick; a roll wakes it too.
func (l *Log) housekeeper() {
	defer l.wg.Done()
	var tick <-chan time.Time
	if l.opts.RetentionBytes > 0 || l.opts.RetentionAge > 0 {
		t := time.NewTicker(l.opts.CheckInterval)
		defer t.Stop()
		tick = t.C
	}
	// idle keeps the index close behind a slow writer. It runs only while the log moves: a pass
	// that finds the active segment where the previous one left it stops it, and the next wake-up
	// (an appender past touchKick, a roll, the flusher after a sync round) starts it again. Thousands
	// of idle partitions would otherwise wake 20 times a second each for nothing.
	idle := time.NewTicker(idleTick)
	defer idle.Stop()
	idleOn := true
	var lastSeg *segment
	var lastEnd uint64
	for {
		retain := false
		var idleC <-chan time.Time
		if idleOn {
			idleC = idle.C
		}
		select {
		case <-l.hkWake:
		case <-idleC:
		case <-tick:
			retain = true
		case <-l.done:
			return
		}
		l.hkPasses.Add(1)
		l.pretouch()
		l.prepareSpare()
		l.indexSegments()
		if retain {
			if err := l.EnforceRetention(); err != nil {
				l.log.Warn("disk: retention", "err", err)
			}
		}
		seg := l.active.Load()
		end := seg.committed.Load()
		switch moved := seg != lastSeg || end != lastEnd; {
		case !moved && idleOn:
			idle.Stop()
			idleOn = false
		case moved && !idleOn:
			idle.Reset(idleTick)
			idleOn = true
		}
		lastSeg, lastEnd = seg, end
	}
}

// idleTick is the housekeeper's period while the log is being written (see housekeeper).
const idleTick = 50 * time.Millisecond

// pretouch reserves the active segment's blocks to AllocAheadBytes past the claim position (whole
// steps) once the claim passes extendAt, faults in its pages from the touched mark to PretouchBytes
// past the claim position (never past the allocated end), then moves touchKick to the earlier of
// extendAt and half way through the pre-touched pages, so appenders wake us in time.
func (l *Log) pretouch() {
	s := l.active.Load()
	if !s.acquire() {
		return
	}
	defer s.release()
	pos, _ := unpack(s.claim.Load())
	if pos == sealedPos {
		return
	}
	l.startWriteback(s)
	allocOK := true
	if a := s.allocated.Load(); a < uint32(len(s.data)) && pos >= l.extendAt(a) {
		if err := s.extend(l.allocWant(s, pos), l.step); err != nil {
			allocOK = false
			if !l.allocFailing {
				l.log.Warn("disk: reserving blocks ahead of the writer; appends fail once they reach the reserved end", "err", err)
			}
		} else if l.allocFailing {
			l.log.Info("disk: reserving blocks ahead of the writer again")
		}
		l.allocFailing = !allocOK
	}
	if s.idleFrom != 0 {
		if pos < s.idleFrom {
			// Nothing appended since Open: touch nothing, and wake on the first append.
			s.touchKick.Store(s.idleFrom)
			return
		}
		s.idleFrom = 0
		advise(s.data, unix.MADV_NORMAL) // written from now on: fault-around again (advise)
	}
	alloc := s.allocated.Load()
	ahead := uint32(l.opts.PretouchBytes)
	limit := uint32(min(uint64(pos)+uint64(ahead), uint64(alloc)))
	if s.touched < pos {
		s.touched = pos &^ uint32(pageSize-1)
	}
	if s.touched < limit {
		limit = min(uint32(roundUp(int(limit), pageSize)), alloc)
		// Fault pages in writable while nobody asks for syncs: the appender's copy then runs at memory
		// speed (about 11 GB/s here, against 1.4 GB/s when each page still takes a write fault).
		// While fsync-level syncs are being requested, fault them in readable only: a sync would
		// otherwise write the pre-touched zeros ahead of the data, and clean them again anyway.
		// Only while appends go through the mapping (segment.smallWriter); otherwise touched stays
		// where it is, so that pre-faulting resumes at the claim when small appends do.
		if s.smallWriter(pos) {
			write := time.Now().UnixNano()-l.lastSyncReq.Load() > int64(syncModeHold)
			populate(s.data[s.touched:limit], write)
			s.touched = limit
		}
	}
	// Appenders wake us half way through the pages ahead, touched or not.
	ahead0 := max(s.touched, limit)
	kick := ahead0 - min(ahead0, ahead/2)
	if alloc < uint32(len(s.data)) {
		if allocOK {
			kick = min(kick, l.extendAt(alloc))
		} else {
			// The disk is full: appenders wake us only at the allocated end, where they try
			// themselves, rather than on every append.
			kick = min(kick, alloc)
		}
	} else if ahead0 >= alloc {
		kick = sealedPos // nothing left to allocate or touch
	}
	s.touchKick.Store(kick)
}

// startWriteback starts writing back the whole pages of s committed since the last call, once
// they reach a step (File.StartWriteback: sync_file_range SYNC_FILE_RANGE_WRITE, which waits for
// nothing). Data nobody waits for then goes to disk as it is appended rather than all at once in
// the next background fdatasync, which therefore has less to write and returns sooner: with the
// background sync every 100 ms, sync rounds took 353-680 ms at the median against 646-939 ms
// without (BenchmarkBackgroundSync, docs/benchmarks.md 2026-11-29). Durability is unchanged: only
// fdatasync makes anything durable. Committed bytes never change, so a page written back early is
// not dirtied again (the page holding the committed end is left for later). A failure is ignored:
// the next fdatasync writes the pages, and reports what it cannot. The call runs on a low-priority
// thread (lowprio.go): it submits the pages' I/O itself, a millisecond of kernel work per few MiB.
//
// Only while somebody waits for syncs (a sync requested within syncModeHold): the early writeback
// shortens the rounds they wait for, and without them it only costs processor time the appenders
// need. With no sync waiter on this 2-core machine it cost closed-loop written appends of 16 KiB
// records a quarter of their throughput (docs/benchmarks.md, "Writeback only for sync waiters"); the
// background fdatasync (FlushInterval, FlushBytes) then writes the pages itself. The pages
// committed meanwhile are skipped, not written back later in one large call. Housekeeper only.
func (l *Log) startWriteback(s *segment) {
	c, _ := unpack(s.committed.Load())
	c &^= uint32(pageSize - 1)
	if c < s.writeback+l.step {
		return
	}
	if time.Now().UnixNano()-l.lastSyncReq.Load() > int64(syncModeHold) {
		s.writeback = c
		return
	}
	off, n := int64(s.writeback), int64(c-s.writeback)
	runLow(func() { _ = s.f.StartWriteback(off, n) })
	s.writeback = c
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }

// syncModeHold is how long after the last requested sync the pre-toucher keeps to read faults.
const syncModeHold = time.Second

// populateRead and populateWrite are cleared once madvise(MADV_POPULATE_READ/WRITE) (Linux 5.14)
// turns out unsupported.
var populateRead, populateWrite atomic.Bool

func init() {
	populateRead.Store(true)
	populateWrite.Store(true)
}

// populateChunk is the most populate hands to one madvise. Population holds the mapping's lock
// (mmap_lock, read) for the whole call, and a roll's munmap and mmap, and after them every page fault
// of the process that needs the lock, wait for it: 256 KiB (64 pages, a fraction of a millisecond of
// kernel work) bounds that wait, also while the low-priority thread yields its core. How late a
// thread on the same core wakes does not depend on it (64 KiB to 1 MiB measured alike: the kernel
// reschedules between pages).
const populateChunk = 256 << 10

// populate prefaults b (page-aligned, in a mapping) on a low-priority thread (lowprio.go), at most
// populateChunk bytes per call: zeroing and mapping pages is kernel work that would otherwise take
// the core from a thread that just woke (an appender, a consumer).
func populate(b []byte, write bool) {
	for len(b) > 0 {
		c := b[:min(len(b), populateChunk)]
		runLow(func() { prefault(c, write) })
		b = b[len(c):]
	}
}

// prefaultHook, when set (tests only, before the logs they watch open), sees each range prefault
// hands to madvise, on the thread that makes the call.
var prefaultHook func(b []byte)

// prefault makes the pages of b (page-aligned, in a mapping) resident, so that an appender copying
// into them takes at most a minor write-protect fault, never a page allocation.
//
// With write set it populates them for writing (MADV_POPULATE_WRITE): the pages are then dirty and
// writable, and the appender's copy takes no fault at all. The pre-toucher asks for that while no
// fsync-level sync has been requested for syncModeHold. Without write it populates them for reading
// (MADV_POPULATE_READ), which leaves them clean: while syncs are being requested, a page populated
// for writing would have its zeros written by the next fdatasync (which covers the whole file),
// be cleaned, and then fault again and be written a second time when the appender's copy reaches
// it. On kernels without these advices the fallback touches one word per page: an atomic load, or
// for writing a locked add of zero, neither of which can clobber a racing appender's bytes.
func prefault(b []byte, write bool) {
	if len(b) == 0 {
		return
	}
	advice, supported := unix.MADV_POPULATE_READ, &populateRead
	if write {
		advice, supported = unix.MADV_POPULATE_WRITE, &populateWrite
	}
	if supported.Load() {
		if h := prefaultHook; h != nil {
			h(b)
		}
		err := unix.Madvise(b, advice)
		if err == nil {
			return
		}
		if errors.Is(err, unix.EINVAL) {
			supported.Store(false)
		}
	}
	for off := 0; off < len(b); off += pageSize {
		p := (*atomic.Uint32)(unsafe.Pointer(&b[off]))
		if write {
			p.Add(0) // a locked add of zero: a write fault that cannot clobber a racing appender
		} else {
			p.Load()
		}
	}
}

// advise applies madvise advice to the mapping b (page-aligned), ignoring failure: advice only
// changes how many pages a fault reads, never what a read returns.
//
// Segments are mapped MADV_RANDOM while they may hold holes: a page fault (the pre-toucher's, the
// recovery scan's, a reader's) otherwise reads around it the device's whole read-ahead window (8 MiB
// here), and in a step-allocated segment that is mostly zero pages of the reserved, unwritten rest,
// each taking memory; at thousands of idle partitions, gigabytes. What recovery must read it asks
// for explicitly (MADV_WILLNEED over the file's data regions). The segment being written goes back
// to MADV_NORMAL (at its first append after Open, or when a roll makes it active): MADV_RANDOM also
// turns off fault-around, and the writer's faults would then map one page each (Append at half
// speed, docs/benchmarks.md). Sealed segments are MADV_NORMAL for readers' read-ahead.
func advise(b []byte, advice int) {
	if len(b) > 0 {
		_ = unix.Madvise(b, advice)
	}
}

// willNeedData starts reading the segment's data regions (File.NextData) from 0 to end, and nothing
// of its holes.
func (s *segment) willNeedData(end int) {
	for off := int64(0); off < int64(end); {
		start, stop, ok, err := s.f.NextData(off)
		if err != nil || !ok {
			return
		}
		start &^= int64(pageSize - 1)
		stop = min(int64(roundUp(int(stop), pageSize)), int64(end), int64(len(s.data)))
		if start >= stop {
			return
		}
		advise(s.data[start:stop], unix.MADV_WILLNEED)
		off = stop
	}
}

// prepareSpare creates the next segment file, allocated to its first step, once the active one is
// half full, so that a roll only renames it. A failure (a full disk) is logged; the roll then tries
// itself and reports it.
func (l *Log) prepareSpare() {
	s := l.active.Load()
	pos, _ := unpack(s.claim.Load())
	if pos == sealedPos || pos < l.spareAt(s) {
		return
	}
	l.mu.Lock()
	have := l.spare != nil || l.closedLocked
	l.mu.Unlock()
	if have {
		return
	}
	f, data, err := l.createFile(filepath.Join(l.dir, spareName))
	if err != nil {
		l.log.Warn("disk: pre-creating the next segment", "err", err)
		return
	}
	allocated := l.reserveSpare(s, pos, f, data)
	// On this goroutine, not a low-priority thread (populate): until it is published below, a roll
	// that needs a segment creates one itself, and on a nearly full disk this one's blocks are then
	// what that roll's fallocate misses. Waiting for a low thread widened that window enough that a
	// later append found the spare after appends had failed for lack of space (TestDiskFillsUp).
	if s.smallSeen(pos) { // not on smallStart alone: a new log's fast writer makes its spare at once
		prefault(data[:min(int(l.step), roundUp(l.opts.PretouchBytes, pageSize))], time.Now().UnixNano()-l.lastSyncReq.Load() > int64(syncModeHold))
	}
	l.mu.Lock()
	if l.spare == nil && !l.closedLocked {
		l.spare = &spare{f: f, data: data, allocated: allocated}
		f, data = nil, nil
	}
	l.mu.Unlock()
	if f != nil {
		l.dropSpare(&spare{f: f, data: data})
	}
}

func (l *Log) dropSpare(sp *spare) {
	sp.f.Unmap(sp.data)
	sp.f.Close()
	if err := l.fs.Remove(sp.f.Name()); err != nil && !isNotExist(err) {
		l.log.Warn("disk: removing the spare segment", "err", err)
	}
}

// indexSegments advances the index of every segment with unindexed committed batches and writes
// the index file of sealed, fully indexed segments. Housekeeper only (or Close after it stopped).
func (l *Log) indexSegments() {
	for _, s := range *l.segs.Load() {
		if s.indexWritten || !s.acquire() {
			continue
		}
		// Sealed for good once a roll made another segment active (a failed roll unseals it), and
		// then committed is at the final end before active moves on: load it after.
		sealed := s.sealed.Load() && l.active.Load() != s
		p, d := s.end()
		if s.idxPos < p {
			// Read after the committed end: no earlier than the append of any batch below it.
			s.indexTo(p, l.opts.Clock().UnixMilli())
		}
		if sealed && s.idxPos == p {
			s.indexDone.Store(true)
		}
		// The file only once the segment's data is durable (writeIndexFile): the flusher wakes us
		// after the sync that covers it.
		if sealed && s.idxPos == p && s.synced.Load() >= p {
			if err := writeIndexFile(l.fs, l.dir, s, p, d); err != nil {
				l.log.Warn("disk: writing index", "segment", filepath.Base(s.path), "err", err)
			}
			s.indexWritten = true
		}
		s.release()
	}
}
