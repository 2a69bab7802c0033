package disk

import (
	"fmt"
	"path/filepath"
)

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
