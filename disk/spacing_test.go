package disk

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// spacedLog opens a log on a faultFS whose segment fdatasyncs take syncDelay, with the given
// SyncSpacing, counting sync rounds.
func spacedLog(t *testing.T, spacing, syncDelay time.Duration) (*Log, *faultFS, *atomic.Int64) {
	t.Helper()
	fs := &faultFS{}
	fs.syncDelay.Store(int64(syncDelay))
	rounds := &atomic.Int64{}
	o := testOptions(t.TempDir())
	o.FS = fs
	o.SyncSpacing = spacing
	o.OnSync = func(int64) { rounds.Add(1) }
	return mustOpen(t, o), fs, rounds
}

// stream has writers goroutines append a batch and request a sync about every millisecond until
// stop.
func stream(t *testing.T, l *Log, writers int, stop time.Time) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := testBatch(t, uint64(w), 1, 100, 1)
			for time.Now().Before(stop) {
				if _, err := l.Append(b); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				l.RequestSync()
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

// TestSyncSpacingStream: while sync requests stream in, rounds start at least SyncSpacing apart and
// each covers what arrived meanwhile; without spacing the same stream keeps the flusher syncing
// back to back.
func TestSyncSpacingStream(t *testing.T) {
	const window, spacing = 400 * time.Millisecond, 50 * time.Millisecond
	count := func(spacing time.Duration) int64 {
		l, _, rounds := spacedLog(t, spacing, 2*time.Millisecond)
		defer l.Close()
		stream(t, l, 4, time.Now().Add(window))
		return rounds.Load()
	}
	spaced, free := count(spacing), count(0)
	// One round per spacing over the window, plus the first (nothing to wait out) and the one in
	// progress when the writers stop.
	if most := int64(window/spacing) + 2; spaced > most {
		t.Errorf("with SyncSpacing %v, %d sync rounds in %v; want at most %d", spacing, spaced, window, most)
	}
	if free <= 2*spaced {
		t.Errorf("without spacing %d sync rounds, with %d: want the stream to keep an unspaced flusher busy", free, spaced)
	}
}

// appendAndWait appends b to l and waits at most within for an fdatasync to cover it; it returns
// WaitSynced's error.
func appendAndWait(t *testing.T, l *Log, b []byte, within time.Duration) error {
	t.Helper()
	res, err := l.Append(b)
	if err != nil {
		t.Fatal(err)
	}
	return waitSynced(l, res.NextOffset, within)
}

// waitSynced is l.WaitSynced(next) bounded by within.
func waitSynced(l *Log, next int64, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return l.WaitSynced(ctx, next)
}

// TestSyncSpacingQuiet: a request after a quiet spell is synced at once however long the spacing,
// and one that follows a round closely waits for the spacing.
func TestSyncSpacingQuiet(t *testing.T) {
	l, _, rounds := spacedLog(t, MaxSyncSpacing, 0)
	defer l.Close()
	b := testBatch(t, 1, 1, 100, 1)
	// The first round: nothing to wait out. Half the spacing is ample for an fdatasync.
	if err := appendAndWait(t, l, b, MaxSyncSpacing/2); err != nil {
		t.Fatalf("first sync: %v (rounds %d)", err, rounds.Load())
	}
	// The next, asked for at once: held back for the rest of the spacing.
	if err := appendAndWait(t, l, b, MaxSyncSpacing/4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a sync asked for right after a round: %v, want it held back past %v", err, MaxSyncSpacing/4)
	}
	if err := appendAndWait(t, l, b, 5*MaxSyncSpacing); err != nil {
		t.Fatalf("the held-back sync: %v", err)
	}
}

// TestSyncSpacingClose: Close cuts short the wait of a round held back by the spacing, and still
// syncs what was appended.
func TestSyncSpacingClose(t *testing.T) {
	l, fs, _ := spacedLog(t, MaxSyncSpacing, 20*time.Millisecond)
	stream(t, l, 4, time.Now().Add(100*time.Millisecond)) // the round after the first waits a second
	before := fs.segSyncs.Load()
	last := l.NextOffset()
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(MaxSyncSpacing / 2):
		t.Fatal("Close waited out the spacing")
	}
	if l.SyncedOffset() != last {
		t.Errorf("after Close, synced offset %d, want %d", l.SyncedOffset(), last)
	}
	if fs.segSyncs.Load() == before {
		t.Error("Close synced nothing")
	}
}

// TestSyncNowSkipsSpacing: SyncNow starts its round at once, also while the flusher waits out the
// spacing after a request that was held back.
func TestSyncNowSkipsSpacing(t *testing.T) {
	l, _, _ := spacedLog(t, MaxSyncSpacing, 0)
	defer l.Close()
	b := testBatch(t, 1, 1, 100, 1)
	if err := appendAndWait(t, l, b, MaxSyncSpacing/2); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	// Held back: the flusher now waits out the spacing.
	if err := appendAndWait(t, l, b, MaxSyncSpacing/10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a request right after a round: %v, want it held back", err)
	}
	l.SyncNow()
	if err := waitSynced(l, l.NextOffset(), MaxSyncSpacing/4); err != nil {
		t.Fatalf("after SyncNow: %v, want the round at once", err)
	}
}
