package disk

import (
	"fmt"
	"path/filepath"
	"time"
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
