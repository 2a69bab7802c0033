package disk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/wire"
)

// Log is one partition's log: a directory of segment files. Append, Read, NextOffset and the
// other accessors are safe for concurrent use.
type Log struct {
	// Immutable after Open.
	opts Options
	dir  string
	fs   FS
	log  *slog.Logger
	rec  Recovery
	step uint32 // allocation step of the segment files: allocStep(SegmentBytes)

	// active is the segment appenders claim in. Stored by the roller under mu (after segs), loaded
	// lock-free by everyone.
	active atomic.Pointer[segment]
	// segs is an immutable, oldest-first snapshot of the live segments, replaced (never mutated)
	// under mu by the roller, retention and truncation. The last element is the active segment.
	segs atomic.Pointer[[]*segment]
	// failed is set once, by the flusher, when an fdatasync fails; appends then return its error.
	failed atomic.Pointer[failure]
	// closed mirrors closedLocked for lock-free readers.
	closed atomic.Bool

	// mu serializes the slow paths: roll, retention, truncation, Close. Never taken by an append
	// that fits in the active segment.
	mu           sync.Mutex
	closedLocked bool   // guarded by mu
	spare        *spare // guarded by mu: the pre-created next segment, if ready

	// Group commit. syncedNext/syncedPos are written by the flusher only (and by Close after the
	// flusher stopped); everyone may load them.
	syncedNext  atomic.Int64 // every offset below is durable
	syncedPos   atomic.Int64 // log position covered by the last fdatasync
	flushArmed  atomic.Bool  // set by the first append after a sync, cleared by the flusher
	syncReq     atomic.Bool  // someone waits for a sync: start one now
	syncNow     atomic.Bool  // ... and cannot wait out SyncSpacing (SyncNow)
	lastSyncReq atomic.Int64 // unix nanos of the last RequestSync: the pre-toucher's mode
	dirDirty    atomic.Bool  // a segment was created or renamed: the flusher fsyncs the directory
	flushWake   chan struct{}
	syncMu      sync.Mutex
	syncCh      chan struct{} // guarded by syncMu: closed and replaced after a sync attempt with waiters
	syncWaiters int           // guarded by syncMu: WaitSynced callers registered on syncCh

	// fillNanos is how long the last segment sealed by a roll took to fill, from becoming active
	// (0: no roll yet). Stored by the roller under mu, loaded by the housekeeper (Log.fastWriter).
	fillNanos atomic.Int64

	// limitHits counts appends that found their claim past the segment's reserved blocks and
	// reserved more themselves (Log.grow): the housekeeper fell behind. For tests and benchmarks.
	limitHits atomic.Int64
	// hkPasses counts housekeeper passes. For tests.
	hkPasses atomic.Int64
	// allocFailing is set while the housekeeper fails to reserve blocks (a full disk), so that it
	// warns once per episode. Housekeeper only.
	allocFailing bool

	hkWake chan struct{} // wakes the housekeeper (pre-touch, allocation, spare, index, retention)
	done   chan struct{} // closed by Close to stop the goroutines
	wg     sync.WaitGroup
}

type failure struct{ err error }

// spare is a pre-created, mapped segment file not yet named by a base offset, its blocks reserved
// from 0 to allocated: its first step, or all of it for a fast writer (Log.reserveSpare).
type spare struct {
	f         File
	data      []byte
	allocated int
}

// AppendResult describes a successful Append.
type AppendResult struct {
	BaseOffset int64 // offset assigned to the first record
	LastOffset int64 // offset of the last record
	NextOffset int64 // LastOffset+1: pass it to WaitSynced for fsync-level durability
	Position   int64 // log byte position after the append (process-local, monotone)
}

// View is a zero-copy slice of the log: whole committed batches, read-only. Data stays valid, even
// if retention deletes the segment, until Release, which must be called exactly once per View.
type View struct {
	Data       []byte // whole batches, straight from the mapping; never write to it
	BaseOffset int64  // base offset of the first batch in Data
	NextOffset int64  // the offset to read next
	seg        *segment
}

// Release drops the View's reference to its segment.
func (v *View) Release() {
	if v.seg != nil {
		v.seg.release()
		v.seg = nil
	}
	v.Data = nil
}

// Open opens or creates the log in opts.Dir, recovering it first (see docs/storage.md).
func Open(opts Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	l := &Log{
		opts:      o,
		dir:       o.Dir,
		fs:        o.FS,
		log:       o.Logger.With("dir", o.Dir),
		step:      uint32(allocStep(o.SegmentBytes)),
		flushWake: make(chan struct{}, 1),
		hkWake:    make(chan struct{}, 1),
		done:      make(chan struct{}),
		syncCh:    make(chan struct{}),
	}
	if err := l.fs.MkdirAll(l.dir); err != nil {
		return nil, fmt.Errorf("disk: creating %s: %w", l.dir, err)
	}
	segs, err := l.recover()
	if err != nil {
		return nil, err
	}
	tail := segs[len(segs)-1]
	l.segs.Store(&segs)
	l.active.Store(tail)
	next := l.NextOffset()
	l.syncedNext.Store(next)
	l.syncedPos.Store(tail.logStart + int64(tail.idxPos))
	l.wg.Add(2)
	go l.flusher()
	go l.housekeeper()
	l.kickHousekeeper()
	return l, nil
}

// Recovery returns what Open found and repaired.
func (l *Log) Recovery() Recovery { return l.rec }

// Dir is the log's directory.
func (l *Log) Dir() string { return l.dir }

// createFile creates a segment file under path: set its length to SegmentBytes (a hole: no
// blocks), fallocate its first step (l.step bytes, so that writes through the mapping there cannot
// fault for lack of space), map it. The caller renames it into place and has the directory
// fsynced; the housekeeper or the appenders allocate the rest step by step (segment.extend), or the
// housekeeper all of it for a fast writer's spare (Log.reserveSpare).
//
// It does not fdatasync: the file holds nothing yet, and the flusher's fdatasync of the first data
// written into it makes its length durable with that data, before any of it is reported synced. A
// power loss before then leaves it zero-length (recovery deletes it), or full length with no data
// (an empty tail, or a sealed segment that ends before the next begins: recovery cuts there), and
// step 6 of recovery reserves the tail's blocks again. On a busy disk an fdatasync here waited
// behind the data being written back: up to seconds per roll, taken by the appender that rolled
// or by the housekeeper making the spare (docs/benchmarks.md, "The copy into the log, second
// round").
func (l *Log) createFile(path string) (File, []byte, error) {
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("disk: creating %s: %w", filepath.Base(path), err)
	}
	fail := func(err error) (File, []byte, error) {
		f.Close()
		_ = l.fs.Remove(path)
		return nil, nil, err
	}
	if err := f.Truncate(int64(l.opts.SegmentBytes)); err != nil {
		return fail(fmt.Errorf("disk: sizing %s: %w", filepath.Base(path), err))
	}
	if err := f.Allocate(0, int64(l.step)); err != nil {
		return fail(allocErr(path, err))
	}
	data, err := f.Map(l.opts.SegmentBytes)
	if err != nil {
		return fail(fmt.Errorf("disk: mapping %s: %w", filepath.Base(path), err))
	}
	advise(data, unix.MADV_RANDOM) // a hole but for its first step: no read-around (advise)
	return f, data, nil
}

// measure walks the batches of an Append and returns their total size and offset count. The caller
// validated them (wire.ValidateBatch); this only checks the framing the log relies on.
func (l *Log) measure(b []byte) (n, count int, err error) {
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("%w: no batches", ErrInvalidBatch)
	}
	if len(b) > l.opts.SegmentBytes {
		return 0, 0, fmt.Errorf("%w: %d bytes in one append, segments hold %d", ErrTooLarge, len(b), l.opts.SegmentBytes)
	}
	for n < len(b) {
		h, err := wire.ParseBatchHeader(b[n:])
		if err != nil {
			return 0, 0, fmt.Errorf("%w: at byte %d: %w", ErrInvalidBatch, n, err)
		}
		size := h.Size()
		switch {
		case size > len(b)-n:
			return 0, 0, fmt.Errorf("%w: batch at byte %d runs past the end", ErrInvalidBatch, n)
		case size > l.opts.MaxBatchBytes:
			return 0, 0, fmt.Errorf("%w: batch of %d bytes, limit %d", ErrTooLarge, size, l.opts.MaxBatchBytes)
		case h.RecordCount <= 0 || h.LastOffsetDelta != h.RecordCount-1:
			return 0, 0, fmt.Errorf("%w: %d records, last offset delta %d", ErrInvalidBatch, h.RecordCount, h.LastOffsetDelta)
		}
		n += size
		count += int(h.RecordCount)
	}
	return n, count, nil
}

// Append stores one or more whole record batches (already validated with wire.ValidateBatch),
// assigning consecutive offsets. It copies b once, into the active segment's mapping, patches each
// batch's base offset there, and returns once the batches are committed: readable, and safe from a
// process crash. b is not modified and may be reused on return. See the package doc for the
// protocol. It does not allocate.
func (l *Log) Append(b []byte) (AppendResult, error) {
	n, count, err := l.measure(b)
	if err != nil {
		return AppendResult{}, err
	}
	for {
		if f := l.failed.Load(); f != nil {
			return AppendResult{}, f.err
		}
		s := l.active.Load()
		old := s.claim.Load()
		pos, delta := unpack(old)
		// pos is sealedPos once the segment is sealed; the sum then exceeds any segment too.
		if uint64(pos)+uint64(n) > uint64(len(s.data)) || uint64(delta)+uint64(count) >= sealedPos {
			if err := l.roll(s); err != nil {
				return AppendResult{}, err
			}
			continue
		}
		end, endDelta := pos+uint32(n), delta+uint32(count)
		if end > s.allocated.Load() {
			// Past the reserved blocks (the housekeeper keeps them AllocAheadBytes ahead, so this
			// is rare): reserve more, or fail cleanly with ErrNoSpace. Writing into the hole would
			// raise SIGBUS on a full disk.
			if err := l.grow(s, end); err != nil {
				return AppendResult{}, err
			}
			continue
		}
		next := pack(end, endDelta)
		if !s.claim.CompareAndSwap(old, next) {
			continue
		}
		// [pos, end) and offsets [delta, endDelta) are ours alone. The one copy:
		dst := s.data[pos:end:end]
		off := s.base + int64(delta)
		if s.writeBatches(b, pos, off) {
			off += int64(count)
		} else {
			if a := s.smallAt.Load(); a == 0 || end-min(end, a) > smallStride {
				s.smallAt.Store(end) // keep the pre-toucher on for small appends
			}
			copy(dst, b)
			for p := 0; p < n; {
				wire.SetBaseOffset(dst[p:], off)
				size, _ := wire.BatchSize(dst[p:])
				off += int64(wire.RecordCount(dst[p:]))
				p += size
			}
		}
		// Publish in claim order: wait for the appenders ahead, then release ours.
		waitFor(&s.committed.Uint64, old)
		s.committed.Store(next)

		if end >= s.touchKick.Load() {
			l.kickHousekeeper()
		}
		logPos := s.logStart + int64(end)
		if !l.flushArmed.Load() && l.flushArmed.CompareAndSwap(false, true) {
			l.kickFlusher()
		} else if logPos-l.syncedPos.Load() >= int64(l.opts.FlushBytes) {
			l.kickFlusher()
		}
		return AppendResult{BaseOffset: s.base + int64(delta), LastOffset: off - 1, NextOffset: off, Position: logPos}, nil
	}
}

// grow is the slow path of an Append whose claim in s would end at end, past the segment's reserved
// blocks: the appender reserves more itself, to AllocAheadBytes past its claim (one fallocate,
// 20-50 µs), or waits on allocMu while the housekeeper does. Measured, that beats handing the
// work to the housekeeper and waiting for it to be scheduled (docs/storage.md). A full disk returns
// ErrNoSpace: nothing was claimed, nothing written.
func (l *Log) grow(s *segment, end uint32) error {
	if !s.acquire() {
		return ErrClosed // released: only Close releases the active segment
	}
	defer s.release()
	l.limitHits.Add(1)
	if err := s.extend(l.allocWant(s, end), l.step); err != nil {
		// A claim must not be refused merely for the headroom: try what it needs.
		if s.extend(end, l.step) != nil {
			return err // ErrNoSpace (wrapping ENOSPC) on a full disk, naming the file
		}
	}
	l.kickHousekeeper() // to get ahead again
	return nil
}

// extendAt is the claim position from which the housekeeper reserves more of a segment reserved to
// alloc: half of AllocAheadBytes before alloc, but not before half of the first step is written, so
// that an idle or barely written segment keeps its first step only.
func (l *Log) extendAt(alloc uint32) uint32 {
	h := uint32(l.opts.AllocAheadBytes)
	return max(l.step/2, alloc-min(alloc, h-h/2))
}

// allocWant is how far the blocks of s are reserved for a writer at pos: AllocAheadBytes past it
// (extend rounds up to a step), at most the segment.
func (l *Log) allocWant(s *segment, pos uint32) uint32 {
	return uint32(min(uint64(pos)+uint64(l.opts.AllocAheadBytes), uint64(len(s.data))))
}

// fastFill: a writer that fills a segment within fastFill of it becoming active (SegmentBytes per
// 2 s: 32 MiB/s at the default 64 MiB) is a fast one (Log.fastWriter).
const fastFill = 2 * time.Second

// fastWriter reports whether the writer of the active segment s, claimed to pos, is a fast one: the
// last segment a roll sealed filled within fastFill, or s reached half full within half of it.
func (l *Log) fastWriter(s *segment, pos uint32) bool {
	if f := l.fillNanos.Load(); f > 0 && f <= int64(fastFill) {
		return true
	}
	return pos >= uint32(len(s.data)/2) && time.Now().UnixNano()-s.activeAt <= int64(fastFill/2)
}

// spareAt is the claim position in the active segment s from which the housekeeper pre-creates
// the next segment: at once for a fast writer (Log.fastWriter), so that its spare, reserved whole,
// is ready well before the roll; else once s is half full (defaultSpareThreshold), so that a slow
// or idle partition holds no spare. Housekeeper only.
func (l *Log) spareAt(s *segment) uint32 {
	if f := l.fillNanos.Load(); f > 0 && f <= int64(fastFill) {
		return 0
	}
	return uint32(len(s.data) / defaultSpareThreshold)
}

// reserveSpare reserves blocks of the new spare file f (mapped as data, its first step reserved by
// createFile) for the segment after s, claimed to pos, and returns how far they are reserved: the
// whole file for a fast writer (Log.fastWriter), else the first step. A failure (a full disk)
// also leaves the first step: the appenders then reserve the rest in steps as usual, and report
// ErrNoSpace where it matters. Housekeeper only.
//
// Why: extending the blocks of the file being written competes with its writer. ext4's fallocate
// takes the inode lock that pwritev takes, and on a busy disk it waited for I/O while holding it
// (io_schedule under ext4_alloc_file_blocks; tens of milliseconds at p99), so steps reserved while
// a fast writer wrote stalled it, and when the housekeeper fell behind the appenders reserved them
// themselves (Log.grow). Reserving a fast writer's next segment whole before it becomes active
// keeps fallocate off the inode being written (docs/benchmarks.md, "The copy into the log, second
// round"). It costs at most one segment of blocks reserved ahead, for partitions written that fast
// only; the idle and the slow keep their step.
func (l *Log) reserveSpare(s *segment, pos uint32, f File, data []byte) int {
	if !l.fastWriter(s, pos) || len(data) <= int(l.step) {
		return int(l.step)
	}
	if err := f.Allocate(int64(l.step), int64(len(data))-int64(l.step)); err != nil {
		return int(l.step)
	}
	return len(data)
}

func (l *Log) kickFlusher() {
	select {
	case l.flushWake <- struct{}{}:
	default:
	}
}

func (l *Log) kickHousekeeper() {
	select {
	case l.hkWake <- struct{}{}:
	default:
	}
}

// roll is the slow path of Append: the claim did not fit in s. Under mu it seals s, waits for the
// appenders that claimed before the seal to publish, and installs the next segment (the spare if
// the housekeeper made one, else a new file). If that fails (a full disk) it unseals s and
// returns the error; a later append retries.
func (l *Log) roll(s *segment) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closedLocked {
		return ErrClosed
	}
	if f := l.failed.Load(); f != nil {
		return f.err
	}
	if l.active.Load() != s {
		return nil // another appender rolled it
	}
	pos, delta := s.seal()
	if pos == 0 {
		// An empty segment that cannot take this append can only be a short tail left by an
		// older configuration; Open extends those, so this is a bug.
		s.unseal()
		return fmt.Errorf("%w: append does not fit in an empty segment of %d bytes", ErrTooLarge, len(s.data))
	}
	base := s.base + int64(delta)
	path := filepath.Join(l.dir, segmentName(base))
	var f File
	var data []byte
	allocated := int(l.step)
	if sp := l.spare; sp != nil {
		l.spare = nil
		if err := l.fs.Rename(sp.f.Name(), path); err != nil {
			sp.f.Unmap(sp.data)
			sp.f.Close()
			_ = l.fs.Remove(sp.f.Name())
			s.unseal()
			return fmt.Errorf("disk: renaming the spare segment to %s: %w", filepath.Base(path), err)
		}
		f, data, allocated = sp.f, sp.data, sp.allocated
	} else {
		var err error
		f, data, err = l.createFile(path + tmpSuffix)
		if err == nil {
			if err = l.fs.Rename(f.Name(), path); err != nil {
				f.Unmap(data)
				f.Close()
				_ = l.fs.Remove(f.Name())
				err = fmt.Errorf("disk: renaming %s: %w", filepath.Base(path), err)
			}
		}
		if err != nil {
			s.unseal()
			return err
		}
	}
	now := time.Now().UnixNano()
	next := newSegment(base, path, f, data, allocated, s.logStart+int64(pos), l.opts.IndexInterval)
	next.activeAt = now
	next.smallStart = s.smallWriter(pos)
	if s.activeAt != 0 && pos > uint32(len(s.data)/2) {
		// A recovered tail's age is unknown; a segment sealed well short of full says nothing of speed.
		l.fillNanos.Store(now - s.activeAt)
	}
	old := *l.segs.Load()
	segs := make([]*segment, len(old), len(old)+1)
	copy(segs, old)
	segs = append(segs, next)
	l.segs.Store(&segs)
	// The writer's segment now: fault-around again (advise).
	advise(next.data, unix.MADV_NORMAL)
	l.dirDirty.Store(true) // before active: a flusher that sees next also sees the dirty directory
	l.active.Store(next)
	advise(s.data, unix.MADV_NORMAL) // sealed: read-ahead helps its readers (advise)
	l.kickHousekeeper()
	return nil
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

// NextOffset is the high watermark: every offset below it is committed and readable.
func (l *Log) NextOffset() int64 {
	s := l.active.Load()
	_, d := s.end()
	return s.base + int64(d)
}

// StartOffset is the first offset still stored.
func (l *Log) StartOffset() int64 { return (*l.segs.Load())[0].base }

// Size is the number of bytes of committed batches stored in the log's segments.
func (l *Log) Size() int64 {
	var n int64
	for _, s := range *l.segs.Load() {
		p, _ := s.end()
		n += int64(p)
	}
	return n
}

// SyncedOffset is the durable watermark: every offset below it is covered by an fdatasync.
func (l *Log) SyncedOffset() int64 { return l.syncedNext.Load() }

// Err returns the error that failed the log, or nil.
func (l *Log) Err() error {
	if f := l.failed.Load(); f != nil {
		return f.err
	}
	return nil
}

// Read returns whole committed batches starting with the batch that holds offset: at least one
// batch, more while the total stays within maxBytes, never past the committed position and never
// across a segment boundary. Reading at NextOffset returns an empty View. The View must be released.
func (l *Log) Read(offset int64, maxBytes int) (View, error) {
	for {
		if l.closed.Load() {
			return View{}, ErrClosed
		}
		segs := *l.segs.Load()
		if offset < segs[0].base {
			return View{}, fmt.Errorf("%w: offset %d below the start %d", ErrOffsetOutOfRange, offset, segs[0].base)
		}
		i := sort.Search(len(segs), func(i int) bool { return segs[i].base > offset }) - 1
		s := segs[i]
		if !s.acquire() {
			continue // deleted since the snapshot; look again
		}
		endPos, endDelta := s.end()
		end := s.base + int64(endDelta)
		if offset >= end {
			s.release()
			if offset > end {
				return View{}, fmt.Errorf("%w: offset %d beyond the end %d", ErrOffsetOutOfRange, offset, end)
			}
			return View{BaseOffset: offset, NextOffset: offset}, nil
		}
		rel := uint32(offset - s.base)
		p, d := s.lookup(rel)
		if hp, hd := unpack(s.readHint.Load()); hd > d && hd <= rel {
			p, d = hp, hd // a boundary nearer the target than the index's (segment.readHint)
		}
		for {
			size, count := s.span(p)
			if d+count > rel {
				break
			}
			p += size
			d += count
		}
		start, startDelta := p, d
		for p < endPos {
			size, count := s.span(p)
			if p > start && int(p-start)+int(size) > maxBytes {
				break
			}
			p += size
			d += count
		}
		if h := pack(p, d); s.readHint.Load() != h {
			s.readHint.Store(h) // only when it moves: readers of one place do not take the line from each other
		}
		return View{Data: s.data[start:p:p], BaseOffset: s.base + int64(startDelta), NextOffset: s.base + int64(d), seg: s}, nil
	}
}

// span returns the size in bytes and the record count of the committed batch at pos, read from its
// header's length and count fields alone: committed batches were validated whole when appended
// (Log.measure), and decoding the whole header at every step of a walk took half of a one-batch
// Read (BenchmarkRead; docs/benchmarks.md, "Walks over committed batches read two fields"). It panics if
// the length is below a header's, which no committed batch has: the walk would not advance.
func (s *segment) span(pos uint32) (size, count uint32) {
	b := s.data[pos:]
	n, err := wire.BatchSize(b)
	if err != nil {
		panic(fmt.Sprintf("disk: committed batch at %s:%d does not parse: %v", filepath.Base(s.path), pos, err))
	}
	return uint32(n), uint32(wire.RecordCount(b))
}

// OffsetForTimestamp returns the earliest offset whose record's timestamp (milliseconds) is at least
// ts, as Kafka's ListOffsets answers: in the first batch whose max timestamp reaches ts, the first
// record, in offset order, stamped at or after ts (timestamps within a batch need not rise). A batch
// whose max timestamp claims ts but none of whose records reaches it is passed over. Compressed
// batches are inflated to look inside (at most one batch of MaxBatchBytes at a time). If no stored
// record reaches ts it returns NextOffset.
func (l *Log) OffsetForTimestamp(ts int64) (int64, error) {
	if l.closed.Load() {
		return 0, ErrClosed
	}
	var it wire.RecordIter // inflates compressed batches; one scratch buffer for the whole search
	for _, s := range *l.segs.Load() {
		if !s.acquire() {
			continue
		}
		if s.indexDone.Load() && s.maxTs.Load() < ts {
			s.release()
			continue
		}
		endPos, _ := s.end()
		p, d := s.lookupTime(ts)
		for p < endPos {
			size, count := s.span(p)
			if wire.MaxTimestamp(s.data[p:]) >= ts {
				if delta, ok := firstAtOrAfter(&it, s.data[p:p+size], ts); ok {
					s.release()
					return s.base + int64(d) + int64(delta), nil
				}
			}
			p += size
			d += count
		}
		s.release()
	}
	return l.NextOffset(), nil
}

// firstAtOrAfter returns the offset delta, within batch, of its first record (in offset order)
// stamped at or after ts, and false when it has none. A committed batch whose records do not decode
// (a compressed payload that passed the CRC but does not inflate) answers its first record: the
// batch is where the time falls, and its consumers meet the same error there.
func firstAtOrAfter(it *wire.RecordIter, batch []byte, ts int64) (int32, bool) {
	h, err := it.Reset(batch)
	if err != nil {
		return 0, true
	}
	var r wire.Record
	for it.Next(&r) {
		if r.Timestamp >= ts {
			return int32(r.Offset - h.BaseOffset), true
		}
	}
	if it.Err() != nil {
		return 0, true
	}
	return 0, false
}

// Sync forces a group commit covering everything committed so far and waits for it.
func (l *Log) Sync() error {
	target := l.NextOffset()
	if err := l.Err(); err != nil {
		return err
	}
	if l.syncedNext.Load() >= target {
		return nil
	}
	return l.WaitSynced(context.Background(), target)
}

// WaitSynced blocks until every offset below offset is durable (pass AppendResult.NextOffset), the
// log fails or closes, or ctx ends. It requests a sync (RequestSync) when one is needed.
func (l *Log) WaitSynced(ctx context.Context, offset int64) error {
	for {
		// Register before looking: a sync that lands after this sees the waiter and closes ch; one
		// that landed before has already stored syncedNext, which the lock makes visible here.
		l.syncMu.Lock()
		ch := l.syncCh
		l.syncWaiters++
		l.syncMu.Unlock()
		err := l.checkSynced(offset)
		if err == nil || err != errNotYet {
			l.unwait()
			return err
		}
		l.RequestSync()
		select {
		case <-ch:
			l.unwait()
		case <-ctx.Done():
			l.unwait()
			return ctx.Err()
		}
	}
}

// errNotYet says WaitSynced must keep waiting.
var errNotYet = errors.New("disk: not synced yet")

func (l *Log) checkSynced(offset int64) error {
	if err := l.Err(); err != nil {
		return err
	}
	if l.syncedNext.Load() >= offset {
		return nil
	}
	if l.closed.Load() {
		return ErrClosed
	}
	return errNotYet
}

func (l *Log) unwait() {
	l.syncMu.Lock()
	l.syncWaiters--
	l.syncMu.Unlock()
}

// notifySynced wakes WaitSynced callers after a sync attempt.
// Without waiters it does nothing, so a busy log's group commit allocates nothing per sync.
func (l *Log) notifySynced() {
	l.syncMu.Lock()
	if l.syncWaiters > 0 {
		close(l.syncCh)
		l.syncCh = make(chan struct{})
	}
	l.syncMu.Unlock()
}
