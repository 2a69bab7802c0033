package disk

import (
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// flusher is the group commit: one goroutine per log, syncing on demand. A sync that someone waits
// for (RequestSync from an fsync-level produce, WaitSynced, Sync) starts at once, and every append
// that arrives while an fdatasync runs is covered by the next one, so the batch grows with the load.
// With Options.SyncSpacing, a round asked for sooner than the spacing after the last one started
// waits out the rest first (spaceOut), and the appends arriving meanwhile join it.
// Data nobody waits for (written durability) is synced in the background: once FlushBytes are
// unsynced, or FlushInterval after the first unsynced append. Syncing only on demand matters on a
// mapped file: every fdatasync write-protects the pages it cleans, and the next append to one of them
// takes a page fault on the writer's thread. A failed fdatasync fails the log for good.
func (l *Log) flusher() {
	defer l.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	timerSet := false
	var last time.Time // when the last fdatasync round started
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
		if wait := l.opts.SyncSpacing - time.Since(last); wait > 0 && !l.syncNow.Load() && !l.spaceOut(wait) {
			return // closing: Close runs the last round
		}
		l.syncNow.Store(false) // a SyncNow from here on asks for the next round
		last = time.Now()
		if l.syncOnce() != nil {
			return
		}
	}
}

// preciseSpacing is the longest spacing wait slept in one nanosleep; longer ones wait on a timer,
// which Close can cut short.
const preciseSpacing = 2 * time.Millisecond

// spaceOut waits d before a sync round (Options.SyncSpacing) and reports false if the log closed
// meanwhile. A short wait is a nanosleep on the flusher's thread, which the fdatasync that follows
// holds anyway: precise to tens of microseconds, where a Go timer's wake-up comes about a millisecond
// late on an idle process here (its poller waits in whole milliseconds), which would add that to every
// spaced round (docs/benchmarks.md, "The fsync tail is the host's CPU quota"). A longer one waits on
// a timer that Close and SyncNow cut short.
func (l *Log) spaceOut(d time.Duration) bool {
	if d <= preciseSpacing {
		ts := unix.NsecToTimespec(d.Nanoseconds())
		for unix.Nanosleep(&ts, &ts) == unix.EINTR { // interrupted: ts holds what is left
			continue
		}
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-l.done:
			return false
		case <-l.flushWake: // the round to come covers what this kick asked for
			if l.syncNow.Load() {
				return true
			}
		}
	}
}

// SyncNow is RequestSync for a caller that cannot wait out Options.SyncSpacing, such as a stopping
// broker answering the fsync-level produces it holds: the round it asks for starts at once.
func (l *Log) SyncNow() {
	l.syncNow.Store(true)
	l.RequestSync()
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
