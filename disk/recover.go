package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"

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
	// segments after a cut, orphan index files.
	Removed []string
	// IndexesRebuilt counts index files found missing, behind or damaged and rebuilt.
	IndexesRebuilt int
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
