package disk

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// flusher is the group commit: one goroutine per log, syncing on demand. A sync that someone waits
// for (RequestSync from an fsync-level produce, WaitSynced, Sync) starts at once, and every append
// that arrives while an fdatasync runs is covered by the next one, so the batch grows with the load.
// Data nobody waits for (written durability) is synced in the background: once FlushBytes are
// unsynced, or FlushInterval after the first unsynced append. Syncing only on demand matters on a
// mapped file: every fdatasync write-protects the pages it cleans, and the next append to one of them
// takes a page fault on the writer's thread. A failed fdatasync fails the log for good.
func (l *Log) flusher() {
	defer l.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	timerSet := false
	for {
		select {
		case <-l.flushWake:
			if !l.syncReq.Load() && l.unsynced() < int64(l.opts.FlushBytes) {
				// Background data only: make sure the interval timer runs, and wait.
				if !timerSet && l.unsynced() > 0 {
					timer.Reset(l.opts.FlushInterval)
					timerSet = true
				}
				continue
			}
		case <-timer.C:
			timerSet = false
		case <-l.done:
			return
		}
		if timerSet {
			timer.Stop()
			timerSet = false
		}
		if l.syncOnce() != nil {
			return
		}
	}
}

// RequestSync asks the group commit for an fdatasync as soon as it can, covering everything
// committed so far. It does not wait; watch SyncedOffset, OnSync or WaitSynced for the result.
func (l *Log) RequestSync() {
	l.lastSyncReq.Store(time.Now().UnixNano())
	if !l.syncReq.Load() {
		l.syncReq.Store(true)
	}
	l.kickFlusher()
}

// unsynced is the number of committed bytes not yet covered by an fdatasync.
func (l *Log) unsynced() int64 {
	s := l.active.Load()
	p, _ := s.end()
	return s.logStart + int64(p) - l.syncedPos.Load()
}

// syncOnce makes everything committed at its start durable, then publishes the new watermark and
// calls OnSync. Called by the flusher, or by Close after the flusher stopped: never concurrently.
func (l *Log) syncOnce() error {
	if err := l.Err(); err != nil {
		return err
	}
	l.flushArmed.Store(false) // appends from here on arm the next round
	l.syncReq.Store(false)
	active := l.active.Load()
	endPos, endDelta := active.end()
	targetNext := active.base + int64(endDelta)
	targetPos := active.logStart + int64(endPos)
	if targetNext <= l.syncedNext.Load() && !l.dirDirty.Load() {
		l.notifySynced()
		return nil
	}
	started := time.Now()
	for _, s := range *l.segs.Load() {
		if s.base > active.base {
			break
		}
		p, _ := s.end()
		if s.synced.Load() >= p || !s.acquire() {
			continue
		}
		err := s.f.Datasync()
		s.release()
		if err != nil {
			return l.fail(fmt.Errorf("%w: fdatasync %s: %w", ErrFailed, filepath.Base(s.path), err))
		}
		s.synced.Store(p)
	}
	if l.dirDirty.Swap(false) {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return l.fail(fmt.Errorf("%w: fsync directory %s: %w", ErrFailed, l.dir, err))
		}
	}
	if l.opts.OnSyncDuration != nil {
		l.opts.OnSyncDuration(time.Since(started))
	}
	l.syncedPos.Store(targetPos)
	l.syncedNext.Store(targetNext)
	l.kickHousekeeper() // index what was synced: its idle tick may be stopped (housekeeper)
	if l.opts.OnSync != nil {
		l.opts.OnSync(targetNext)
	}
	l.notifySynced()
	return nil
}

// fail records the fatal error (the first one wins), logs it and wakes waiters.
func (l *Log) fail(err error) error {
	if l.failed.CompareAndSwap(nil, &failure{err: err}) {
		l.log.Error("disk: log failed; refusing further appends", "err", err)
	}
	l.notifySynced()
	return l.Err()
}

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
		write := time.Now().UnixNano()-l.lastSyncReq.Load() > int64(syncModeHold)
		prefault(s.data[s.touched:limit], write)
		s.touched = limit
	}
	kick := s.touched - min(s.touched, ahead/2)
	if alloc < uint32(len(s.data)) {
		if allocOK {
			kick = min(kick, l.extendAt(alloc))
		} else {
			// The disk is full: appenders wake us only at the allocated end, where they try
			// themselves, rather than on every append.
			kick = min(kick, alloc)
		}
	} else if s.touched >= alloc {
		kick = sealedPos // nothing left to allocate or touch
	}
	s.touchKick.Store(kick)
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

// prefault makes the pages of b (page-aligned, in a mapping) resident, so that an appender copying
// into them takes at most a minor write-protect fault, never a page allocation.
//
// MADV_POPULATE_READ rather than MADV_POPULATE_WRITE, measured: a page populated for writing is
// dirty, so the group commit's fdatasync (which covers the whole file) writes its zeros to disk,
// cleans it, and the appender's copy then faults on it again and it is written a second time.
// Populating for reading leaves the pages clean: nothing is written twice. On kernels without it
// the fallback is an atomic load of one word per page: a read, so it cannot race with an appender.
func prefault(b []byte, write bool) {
	if len(b) == 0 {
		return
	}
	advice, supported := unix.MADV_POPULATE_READ, &populateRead
	if write {
		advice, supported = unix.MADV_POPULATE_WRITE, &populateWrite
	}
	if supported.Load() {
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
	if pos == sealedPos || pos < uint32(len(s.data)/defaultSpareThreshold) {
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
	prefault(data[:min(int(l.step), roundUp(l.opts.PretouchBytes, pageSize))], time.Now().UnixNano()-l.lastSyncReq.Load() > int64(syncModeHold))
	l.mu.Lock()
	if l.spare == nil && !l.closedLocked {
		l.spare = &spare{f: f, data: data}
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
		p, d := s.end()
		sealed := s.sealed.Load()
		if s.idxPos < p {
			// Read after the committed end: no earlier than the append of any batch below it.
			s.indexTo(p, l.opts.Clock().UnixMilli())
		}
		if sealed && s.idxPos == p {
			s.indexDone.Store(true)
			if err := writeIndexFile(l.fs, l.dir, s, p, d); err != nil {
				l.log.Warn("disk: writing index", "segment", filepath.Base(s.path), "err", err)
			}
			s.indexWritten = true
		}
		s.release()
	}
}

// EnforceRetention deletes the oldest whole sealed segments while the log's files exceed
// RetentionBytes, or while their retention time is older than RetentionAge by the log's Clock. A
// segment's retention time is its newest batch timestamp, each batch's capped at the Clock when it
// was indexed, just after its append (segment.idxRetainTs): a record stamped in the future ages
// from its append. The housekeeper calls it every CheckInterval; readers still holding a deleted
// segment keep their Views.
func (l *Log) EnforceRetention() error {
	if l.opts.RetentionBytes <= 0 && l.opts.RetentionAge <= 0 {
		return nil
	}
	cutoff := l.opts.Clock().Add(-l.opts.RetentionAge).UnixMilli() // RetentionAge <= MaxRetentionAge: no wrap
	return l.dropOldest(func(s *segment, total int64) bool {
		if l.opts.RetentionBytes > 0 && total > l.opts.RetentionBytes {
			return true
		}
		return l.opts.RetentionAge > 0 && s.indexDone.Load() && s.retainTs.Load() < cutoff
	})
}

// TruncateBefore deletes every whole sealed segment whose offsets are all below offset. The start
// offset becomes the base of the first segment kept.
func (l *Log) TruncateBefore(offset int64) error {
	return l.dropOldest(func(s *segment, _ int64) bool {
		_, d := s.end()
		return s.base+int64(d) <= offset
	})
}

// dropOldest removes segments from the front, oldest first, while drop says so (given the total
// file size still held), never the active one. The files are unlinked and the directory fsynced;
// each mapping goes when its last View is released.
func (l *Log) dropOldest(drop func(s *segment, total int64) bool) error {
	l.mu.Lock()
	if l.closedLocked {
		l.mu.Unlock()
		return ErrClosed
	}
	segs := *l.segs.Load()
	var total int64
	for _, s := range segs {
		total += int64(len(s.data))
	}
	n := 0
	for n < len(segs)-1 && drop(segs[n], total) {
		total -= int64(len(segs[n].data))
		n++
	}
	if n == 0 {
		l.mu.Unlock()
		return nil
	}
	gone := segs[:n]
	kept := append([]*segment(nil), segs[n:]...)
	l.segs.Store(&kept)
	l.mu.Unlock()

	var first error
	for _, s := range gone {
		for _, p := range []string{s.path, filepath.Join(l.dir, indexName(s.base))} {
			if err := l.fs.Remove(p); err != nil && !isNotExist(err) && first == nil {
				first = fmt.Errorf("disk: removing %s: %w", filepath.Base(p), err)
			}
		}
		l.log.Info("disk: segment deleted", "segment", filepath.Base(s.path), "base", s.base)
		s.release()
	}
	if err := l.fs.SyncDir(l.dir); err != nil && first == nil {
		first = fmt.Errorf("disk: fsync %s: %w", l.dir, err)
	}
	return first
}

// Close stops appends (in-flight ones finish), stops the background goroutines, makes everything
// durable with a final fdatasync, writes the active segment's index and drops the log's references.
// Views still held stay valid until released. It returns the log's failure, if any.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closedLocked {
		l.mu.Unlock()
		return nil
	}
	l.closedLocked = true
	l.closed.Store(true)
	active := l.active.Load()
	active.seal() // waits for in-flight appends to publish
	sp := l.spare
	l.spare = nil
	l.mu.Unlock()

	close(l.done)
	l.wg.Wait()
	err := l.syncOnce()
	if sp != nil {
		l.dropSpare(sp)
	}
	// The active segment is the tail at the next Open, which rebuilds the tail's index by scanning
	// it whatever a file says: writing its index here would cost a file, two fsyncs and a rename
	// per partition for nothing. The housekeeper writes it once a roll seals it.
	active.indexWritten = true
	l.indexSegments()
	if l.dirDirty.Load() || sp != nil {
		if derr := l.fs.SyncDir(l.dir); derr != nil && err == nil {
			err = fmt.Errorf("disk: fsync %s: %w", l.dir, derr)
		}
	}
	for _, s := range *l.segs.Load() {
		s.release()
	}
	l.notifySynced()
	return err
}

// Remove closes the log and deletes its directory (topic deletion).
func (l *Log) Remove() error {
	err := l.Close()
	if errors.Is(err, ErrFailed) {
		err = nil // the data is being deleted; a failed sync no longer matters
	}
	names, rerr := l.fs.ReadDir(l.dir)
	if rerr != nil && !isNotExist(rerr) {
		return fmt.Errorf("disk: listing %s: %w", l.dir, rerr)
	}
	for _, n := range names {
		if rerr := l.fs.Remove(filepath.Join(l.dir, n)); rerr != nil && !isNotExist(rerr) {
			return fmt.Errorf("disk: removing %s: %w", n, rerr)
		}
	}
	if rerr := l.fs.Remove(l.dir); rerr != nil && !isNotExist(rerr) {
		return fmt.Errorf("disk: removing %s: %w", l.dir, rerr)
	}
	if rerr := l.fs.SyncDir(filepath.Dir(l.dir)); rerr != nil {
		return fmt.Errorf("disk: fsync %s: %w", filepath.Dir(l.dir), rerr)
	}
	return err
}
