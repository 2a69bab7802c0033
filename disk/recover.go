package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/wire"
)

// Recovery reports what Open found and repaired. Open logs it too.
type Recovery struct {
	// SegmentsScanned counts segments whose batches were validated one by one (the tail, and any
	// segment whose index was missing, damaged or inconsistent).
	SegmentsScanned int
	// BatchesKept counts the valid batches in the scanned segments.
	BatchesKept int
	// BytesTruncated counts the bytes cut: from the first invalid position to the last non-zero
	// byte of that segment, plus the data of any later segment removed with it.
	BytesTruncated int64
	// InvalidSegment and InvalidPosition locate the first invalid batch (empty and -1 if none);
	// Reason says why it was rejected.
	InvalidSegment  string
	InvalidPosition int64
	Reason          string
	// Removed lists files deleted as leftovers: partial creations (*.tmp), empty segments,
	// segments after a cut, the index of the segment cut and of those after it, orphan index files.
	Removed []string
	// IndexesRebuilt counts index files found missing, behind or damaged and rebuilt.
	IndexesRebuilt int
}

// recovery is one Open's recovery: the numbered procedure of docs/storage.md ("Recovery (Open)"),
// one method per step (stepN), run in order by Log.recover before any other goroutine touches the
// log. Whatever a step opened is in files or segs, and close (the one clean-up path) releases it
// all when a step fails.
type recovery struct {
	l   *Log
	rec Recovery
	// dirty says an entry of the directory was created, renamed or removed: step 7 fsyncs it.
	dirty bool
	// files are the non-empty segment files step 1 opened, oldest first, not yet mapped; step 2
	// moves each into segs as it maps it.
	files []openedFile
	// segs are the mapped segments, oldest first; the last one is the tail.
	segs []*segment
	// indexes holds the base offsets of the index files found (step 1 removes orphans, step 5 the
	// cut segments'); rebuilt those whose index step 3 did not trust (step 7 writes them).
	indexes, rebuilt map[int64]bool
	// now (unix ms) caps the timestamps of the batches scanned, for retention.
	now int64
}

// openedFile is a segment file opened by step 1.
type openedFile struct {
	base int64
	f    File
	size int64
}

// recover lists, opens, validates and repairs the segments, following the numbered procedure in
// docs/storage.md, and returns them oldest first with their positions set. It runs before any other
// goroutine touches the log. On error nothing stays open.
func (l *Log) recover() ([]*segment, error) {
	r := &recovery{
		l:       l,
		rec:     Recovery{InvalidPosition: -1},
		indexes: map[int64]bool{},
		rebuilt: map[int64]bool{},
		now:     l.opts.Clock().UnixMilli(),
	}
	if err := r.run(); err != nil {
		r.close()
		return nil, err
	}
	l.rec = r.rec
	r.report()
	return r.segs, nil
}

// run runs the steps in order; the first error stops it.
func (r *recovery) run() error {
	if err := r.step1Leftovers(); err != nil {
		return err
	}
	if err := r.step2Map(); err != nil {
		return err
	}
	for i := 0; i < len(r.segs); i++ {
		if r.step3TrustIndex(i) {
			continue
		}
		res, reason := r.step4Scan(i)
		if reason == "" {
			continue
		}
		if err := r.step5Cut(i, res.endPos, reason); err != nil {
			return err
		}
		break
	}
	if err := r.step6Tail(); err != nil {
		return err
	}
	return r.step7Durable()
}

// close is the one clean-up path: it closes the files not yet mapped and releases the segments.
func (r *recovery) close() {
	for _, o := range r.files {
		o.f.Close()
	}
	r.files = nil
	for _, s := range r.segs {
		s.release()
	}
	r.segs = nil
}

// remove deletes name from the log's directory (already gone is fine) and records it.
func (r *recovery) remove(name string) error {
	if err := r.l.fs.Remove(filepath.Join(r.l.dir, name)); err != nil && !isNotExist(err) {
		return fmt.Errorf("disk: removing %s: %w", name, err)
	}
	r.rec.Removed = append(r.rec.Removed, name)
	r.dirty = true
	return nil
}

// step1Leftovers deletes every *.tmp (an interrupted creation), opens the segment files in base
// order, deletes the empty ones (nothing can have been acknowledged in them) and the index files
// whose segment is gone.
func (r *recovery) step1Leftovers() error {
	l := r.l
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("disk: listing %s: %w", l.dir, err)
	}
	var bases []int64
	for _, name := range names {
		if strings.HasSuffix(name, tmpSuffix) {
			if err := r.remove(name); err != nil {
				return err
			}
			continue
		}
		if base, ok := parseSegmentName(name); ok {
			bases = append(bases, base)
		} else if s, ok := strings.CutSuffix(name, indexSuffix); ok {
			if base, ok := parseSegmentName(s + logSuffix); ok {
				r.indexes[base] = true
			}
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	live := map[int64]bool{}
	for _, base := range bases {
		path := filepath.Join(l.dir, segmentName(base))
		f, err := l.fs.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("disk: opening %s: %w", path, err)
		}
		size, err := f.Size()
		if err != nil {
			f.Close()
			return fmt.Errorf("disk: stat %s: %w", path, err)
		}
		if size == 0 {
			f.Close()
			if err := r.remove(segmentName(base)); err != nil {
				return err
			}
			continue
		}
		r.files = append(r.files, openedFile{base, f, size})
		live[base] = true
	}
	for _, base := range sortedKeys(r.indexes) {
		if !live[base] {
			if err := r.remove(indexName(base)); err != nil {
				return err
			}
			delete(r.indexes, base)
		}
	}
	return nil
}

// sortedKeys returns m's keys in increasing order.
func sortedKeys(m map[int64]bool) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// step2Map gives a tail shorter than SegmentBytes (truncated behind our back, or an older
// configuration) its length back as a hole (no blocks, zeros; step 6 reserves its blocks), and maps
// every segment MADV_RANDOM (no read-around into holes while recovering: advise).
func (r *recovery) step2Map() error {
	l := r.l
	if n := len(r.files); n > 0 && r.files[n-1].size < int64(l.opts.SegmentBytes) {
		t := &r.files[n-1]
		if err := t.f.Truncate(int64(l.opts.SegmentBytes)); err != nil {
			return fmt.Errorf("disk: extending %s: %w", filepath.Base(t.f.Name()), err)
		}
		t.size = int64(l.opts.SegmentBytes)
	}
	for len(r.files) > 0 {
		o := r.files[0]
		if o.size > MaxSegmentBytes {
			return fmt.Errorf("%w: segment %s is %d bytes, more than %d", ErrCorrupt, segmentName(o.base), o.size, MaxSegmentBytes)
		}
		data, err := o.f.Map(int(o.size))
		if err != nil {
			return fmt.Errorf("disk: mapping %s: %w", segmentName(o.base), err)
		}
		advise(data, unix.MADV_RANDOM)
		r.files = r.files[1:]
		r.segs = append(r.segs, newSegment(o.base, filepath.Join(l.dir, segmentName(o.base)), o.f, data, int(o.size), 0, l.opts.IndexInterval))
	}
	return nil
}

// step3TrustIndex installs the index file of segs[i] if the segment is sealed (not the tail) and
// the index agrees with the log (segment.loadIndex), and reports whether it did. An index not
// trusted is counted rebuilt, and the caller scans the segment (step 4).
func (r *recovery) step3TrustIndex(i int) bool {
	s := r.segs[i]
	if i == len(r.segs)-1 {
		return false // the tail is always scanned
	}
	err := s.loadIndex(r.l.fs, filepath.Join(r.l.dir, indexName(s.base)), r.segs[i+1].base)
	if err == nil {
		return true
	}
	r.rebuilt[s.base] = true
	switch {
	case errors.Is(err, errIndexVersion):
		r.l.log.Info("disk: index of an older version, rebuilding from the log", "segment", filepath.Base(s.path))
	case !isNotExist(err):
		r.l.log.Warn("disk: index rejected, rebuilding from the log", "segment", filepath.Base(s.path), "err", err)
	}
	r.rec.IndexesRebuilt++
	return false
}

// step4Scan validates segs[i] batch by batch (segment.scanValidate) and returns the scan and, if the
// segment must be cut, why: an invalid batch, non-zero bytes after its end, or a sealed segment that
// ends before the next one begins.
func (r *recovery) step4Scan(i int) (scanResult, string) {
	s := r.segs[i]
	res := s.scanValidate(r.now)
	r.rec.SegmentsScanned++
	r.rec.BatchesKept += res.batches
	reason := res.reason
	if i < len(r.segs)-1 && !res.invalid && s.base+int64(res.endDelta) != r.segs[i+1].base {
		reason = fmt.Sprintf("segment ends at offset %d, the next begins at %d", s.base+int64(res.endDelta), r.segs[i+1].base)
	}
	return res, reason
}

// step5Cut cuts the log at position pos of segs[i]: it zeroes the segment from there to its last
// non-zero byte and fdatasyncs it (segment.cutAt), deletes its index file and every later segment
// with its index, and records the cut. segs[i] is the tail from now on: its data past pos will be
// new batches, which an index file of its old ones, left in place, could pass for after the next
// power loss (index files are written without fsync: writeIndexFile); step 7's directory fsync makes
// the deletion durable before anything is appended.
func (r *recovery) step5Cut(i int, pos uint32, reason string) error {
	s := r.segs[i]
	r.rec.InvalidSegment, r.rec.InvalidPosition, r.rec.Reason = filepath.Base(s.path), int64(pos), reason
	n, err := s.cutAt(pos)
	if err != nil {
		return err
	}
	r.rec.BytesTruncated += n
	if r.indexes[s.base] {
		if err := r.remove(indexName(s.base)); err != nil {
			return err
		}
		delete(r.indexes, s.base)
	}
	for len(r.segs) > i+1 {
		t := r.segs[len(r.segs)-1]
		r.rec.BytesTruncated += int64(t.nonZeroEnd(0))
		r.segs = r.segs[:len(r.segs)-1]
		t.release()
		if err := r.remove(filepath.Base(t.path)); err != nil {
			return err
		}
		if r.indexes[t.base] {
			if err := r.remove(indexName(t.base)); err != nil {
				return err
			}
			delete(r.indexes, t.base)
		}
	}
	return nil
}

// step6Tail gives a log without segments its first one, or reserves the tail's blocks: its length
// says nothing about them (allocation in steps leaves the rest of the file a hole) nor about where
// its data ends (the scan found that). It reserves from 0 to the end of the data rounded up to a
// step, at least one step (blocks already there cost nothing; appends extend it from there), and
// fails with ErrNoSpace if it cannot. The tail's pre-toucher waits for its first append
// (segment.idleFrom): an idle partition holds no resident pages.
func (r *recovery) step6Tail() error {
	l := r.l
	if len(r.segs) == 0 {
		f, data, err := l.createFile(filepath.Join(l.dir, segmentName(0)+tmpSuffix))
		if err != nil {
			return err
		}
		path := filepath.Join(l.dir, segmentName(0))
		if err := l.fs.Rename(f.Name(), path); err != nil {
			f.Unmap(data)
			f.Close()
			return fmt.Errorf("disk: renaming %s: %w", path, err)
		}
		r.dirty = true
		r.segs = append(r.segs, newSegment(0, path, f, data, int(l.step), 0, l.opts.IndexInterval))
	} else {
		t := r.segs[len(r.segs)-1]
		want := min(len(t.data), max(int(l.step), roundUp(int(t.idxPos), int(l.step))))
		if err := t.f.Allocate(0, int64(want)); err != nil {
			return allocErr(t.path, err)
		}
		t.allocated.Store(uint32(want))
	}
	tail := r.segs[len(r.segs)-1]
	tail.idleFrom = tail.idxPos + 1
	tail.touchKick.Store(tail.idleFrom)
	return nil
}

// step7Durable sets every segment's positions, fdatasyncs it (cheap when clean: what a crashed
// process left dirty in the page cache becomes durable before anything is reported synced), writes
// the rebuilt index files (a failure only costs a rescan next time) and fsyncs the directory if an
// entry changed. Sealed segments go back to MADV_NORMAL; the tail stays MADV_RANDOM until its first
// append (advise).
func (r *recovery) step7Durable() error {
	l := r.l
	var logStart int64
	for i, s := range r.segs {
		s.logStart = logStart
		p, d := s.idxPos, s.idxDelta
		s.claim.Store(pack(p, d))
		s.committed.Store(pack(p, d))
		s.synced.Store(p)
		if i < len(r.segs)-1 {
			advise(s.data, unix.MADV_NORMAL)
			s.final.Store(pack(p, d))
			s.sealed.Store(true)
			s.indexDone.Store(true)
			s.indexWritten = true
		}
		logStart += int64(p)
		if err := s.f.Datasync(); err != nil {
			return fmt.Errorf("disk: fdatasync %s: %w", filepath.Base(s.path), err)
		}
	}
	for _, s := range r.segs[:len(r.segs)-1] {
		if r.rebuilt[s.base] {
			if err := writeIndexFile(l.fs, l.dir, s, s.idxPos, s.idxDelta); err != nil {
				l.log.Warn("disk: writing index", "segment", filepath.Base(s.path), "err", err)
			}
		}
	}
	if r.dirty {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("disk: fsync %s: %w", l.dir, err)
		}
	}
	return nil
}

// report logs what recovery found: Warn when it repaired something.
func (r *recovery) report() {
	rec, segs := r.rec, r.segs
	tail := segs[len(segs)-1]
	attrs := []any{
		"segments", len(segs), "scanned", rec.SegmentsScanned, "batches_kept", rec.BatchesKept,
		"start", segs[0].base, "next", tail.base + int64(tail.idxDelta),
	}
	if rec.InvalidPosition >= 0 || len(rec.Removed) > 0 {
		r.l.log.Warn("disk: log recovered with repairs", append(attrs,
			"truncated_bytes", rec.BytesTruncated, "invalid_segment", rec.InvalidSegment,
			"invalid_position", rec.InvalidPosition, "reason", rec.Reason, "removed", rec.Removed)...)
	} else {
		r.l.log.Info("disk: log opened", attrs...)
	}
}

// scanResult is the outcome of validating one segment batch by batch.
type scanResult struct {
	endPos, endDelta uint32
	batches          int
	invalid          bool
	reason           string
}

// zeroBlock backs allZero's comparisons.
var zeroBlock [64 << 10]byte

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// lastNonZero returns the index after the last non-zero byte of b (0 if all zero).
func lastNonZero(b []byte) int {
	for end := len(b); end > 0; {
		start := max(0, end-len(zeroBlock))
		if !bytes.Equal(b[start:end], zeroBlock[:end-start]) {
			for i := end - 1; i >= start; i-- {
				if b[i] != 0 {
					return i + 1
				}
			}
		}
		end = start
	}
	return 0
}

// nonZeroEnd returns the position after the last non-zero byte of the segment at or after from
// (from itself if there is none). It reads only the file's data regions (File.NextData): the holes
// of a step-allocated segment read as zeros, and faulting them in would cost a zeroed page each,
// the whole reserved length of every tail at every start. Where the file system cannot say, or
// fails to, the rest of the mapping is read.
func (s *segment) nonZeroEnd(from uint32) uint32 {
	last := from
	for off := int64(from); off < int64(len(s.data)); {
		start, end, ok, err := s.f.NextData(off)
		if err != nil {
			start, end, ok = off, int64(len(s.data)), true
		}
		if !ok {
			break
		}
		start, end = max(start, off), min(end, int64(len(s.data)))
		if start >= end {
			break
		}
		if n := lastNonZero(s.data[start:end]); n > 0 {
			last = uint32(start) + uint32(n)
		}
		// The pages just read past the data hold zeros (written back by the pre-toucher, or
		// fallocated): unmap them again, so that they do not stay in the process's resident set
		// (MADV_DONTNEED on a shared file mapping drops page-table entries, not data; only Open
		// calls this, before any appender exists).
		if z0, z1 := roundUp(max(int(start), int(last)), pageSize), int(end)&^(pageSize-1); z0 < z1 {
			advise(s.data[z0:z1], unix.MADV_DONTNEED)
		}
		off = end
	}
	return last
}

// scanValidate walks the segment from its start, validating every batch (length, magic, CRC,
// records, base offset continuity), and rebuilds the in-memory index. It stops at the first
// zero batch length (the end of the log) or the first invalid batch. Bytes after a clean end must
// be zero; anything else there is reported as invalid so the caller zeroes it. now (unix ms) caps
// the batches' timestamps for the retention time: a batch is taken as appended no later than now.
func (s *segment) scanValidate(now int64) scanResult {
	s.resetIndex()
	s.willNeedData(len(s.data)) // one read-ahead of what was written: the mapping is MADV_RANDOM
	var r scanResult
	var pos, delta uint32
	for {
		rest := s.data[pos:]
		if len(rest) < 12 || binary.BigEndian.Uint32(rest[8:12]) == 0 {
			if s.nonZeroEnd(pos) > pos {
				r.invalid, r.reason = true, "non-zero bytes after the end of the log"
			}
			break
		}
		h, err := wire.ValidateBatch(rest, 0)
		if err != nil {
			r.invalid, r.reason = true, err.Error()
			break
		}
		if want := s.base + int64(delta); h.BaseOffset != want {
			r.invalid, r.reason = true, fmt.Sprintf("base offset %d, want %d", h.BaseOffset, want)
			break
		}
		if uint64(delta)+uint64(h.RecordCount) >= sealedPos {
			r.invalid, r.reason = true, "more offsets than a segment can address"
			break
		}
		s.index(pos, delta, h.MaxTimestamp, now)
		pos += uint32(h.Size())
		delta += uint32(h.RecordCount)
		r.batches++
	}
	s.idxPos, s.idxDelta = pos, delta
	s.maxTs.Store(s.idxMaxTs)
	s.retainTs.Store(s.idxRetainTs)
	r.endPos, r.endDelta = pos, delta
	return r
}

// cutAt zeroes the segment from pos to its last non-zero byte and fdatasyncs it, so that no stale
// batch can be read back later. It returns the number of bytes zeroed.
func (s *segment) cutAt(pos uint32) (int64, error) {
	n := s.nonZeroEnd(pos) - pos
	if n == 0 {
		return 0, nil
	}
	if err := s.f.ZeroRange(int64(pos), int64(n)); err != nil {
		return 0, fmt.Errorf("disk: zeroing %s from %d: %w", filepath.Base(s.path), pos, err)
	}
	if err := s.f.Datasync(); err != nil {
		return 0, fmt.Errorf("disk: fdatasync %s: %w", filepath.Base(s.path), err)
	}
	return int64(n), nil
}

// loadIndex installs the segment's index file if it agrees with the log: framing and checksum,
// the same base and interval, entries increasing and inside the data, an end that meets the next
// segment's base, and the batches from the last entry to that end valid and contiguous. Any
// failure returns an error and the caller scans the segment instead.
func (s *segment) loadIndex(fsys FS, path string, nextBase int64) error {
	x, err := readIndexFile(fsys, path)
	if err != nil {
		return err
	}
	switch {
	case x.base != s.base || x.interval != s.interval:
		return fmt.Errorf("%w: base %d interval %d, want %d %d", errIndex, x.base, x.interval, s.base, s.interval)
	case int64(x.endDelta) != nextBase-s.base || int(x.endPos) > len(s.data):
		return fmt.Errorf("%w: end (%d, %d) does not meet the next segment", errIndex, x.endPos, x.endDelta)
	case len(x.entries) > len(s.entries):
		return fmt.Errorf("%w: %d entries", errIndex, len(x.entries))
	}
	var prev indexEntry
	for i, e := range x.entries {
		if e.pos >= x.endPos || e.delta >= x.endDelta || (i > 0 && (e.pos <= prev.pos || e.delta <= prev.delta || e.maxTsBefore < prev.maxTsBefore)) {
			return fmt.Errorf("%w: entry %d out of order", errIndex, i)
		}
		prev = e
	}
	// Walk from the last entry to the end, validating every batch on the way.
	pos, delta := prev.pos, prev.delta
	maxTs := prev.maxTsBefore
	if len(x.entries) == 0 {
		pos, delta, maxTs = 0, 0, math.MinInt64
	}
	for pos < x.endPos {
		h, err := wire.ValidateBatch(s.data[pos:x.endPos], 0)
		if err != nil {
			return fmt.Errorf("%w: batch at %d: %w", errIndex, pos, err)
		}
		if h.BaseOffset != s.base+int64(delta) {
			return fmt.Errorf("%w: batch at %d has base offset %d, want %d", errIndex, pos, h.BaseOffset, s.base+int64(delta))
		}
		maxTs = max(maxTs, h.MaxTimestamp)
		pos += uint32(h.Size())
		delta += uint32(h.RecordCount)
	}
	if pos != x.endPos || delta != x.endDelta || maxTs != x.maxTs {
		return fmt.Errorf("%w: batches end at (%d, %d), index says (%d, %d)", errIndex, pos, delta, x.endPos, x.endDelta)
	}
	if x.retainTs > x.maxTs { // capped timestamps never exceed the max
		return fmt.Errorf("%w: retention time %d with max timestamp %d", errIndex, x.retainTs, x.maxTs)
	}
	if rest := s.data[pos:]; len(rest) >= 12 && binary.BigEndian.Uint32(rest[8:12]) != 0 {
		return fmt.Errorf("%w: a batch follows the indexed end", errIndex)
	}
	s.resetIndex()
	copy(s.entries, x.entries)
	s.idxN.Store(int64(len(x.entries)))
	s.idxPos, s.idxDelta = x.endPos, x.endDelta
	s.idxLastPos = prev.pos
	s.idxMaxTs, s.idxRetainTs = x.maxTs, x.retainTs
	s.maxTs.Store(x.maxTs)
	s.retainTs.Store(x.retainTs)
	return nil
}

// isNotExist reports a missing file.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
