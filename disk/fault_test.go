package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFsyncFailureIsFatal(t *testing.T) {
	fs := &faultFS{}
	o := testOptions(t.TempDir())
	o.FS = fs
	var synced atomic.Int64
	o.OnSync = func(n int64) { synced.Store(n) }
	l := mustOpen(t, o)
	defer l.Close()
	res, err := l.Append(testBatch(t, 1, 2, 10, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitSynced(context.Background(), res.NextOffset); err != nil {
		t.Fatal(err)
	}
	if synced.Load() != 2 || l.SyncedOffset() != 2 {
		t.Fatalf("OnSync saw %d, SyncedOffset %d", synced.Load(), l.SyncedOffset())
	}

	fs.setSyncErr(unix.EIO)
	res, err = l.Append(testBatch(t, 2, 1, 10, 0)) // written-level: accepted before the sync fails
	if err != nil {
		t.Fatal(err)
	}
	err = l.WaitSynced(context.Background(), res.NextOffset)
	if !errors.Is(err, ErrFailed) || !errors.Is(err, unix.EIO) || !strings.HasPrefix(err.Error(), "disk: log failed: ") {
		t.Fatalf("WaitSynced after a failed fdatasync: %v", err)
	}
	if l.SyncedOffset() != 2 || synced.Load() != 2 {
		t.Fatalf("a failed sync advanced the watermark: %d %d", l.SyncedOffset(), synced.Load())
	}
	calls := fs.syncs.Load()
	fs.setSyncErr(nil) // the disk "recovers": the log must still refuse, and never retry
	for range 3 {
		if _, err := l.Append(testBatch(t, 3, 1, 10, 0)); !errors.Is(err, ErrFailed) || !errors.Is(err, unix.EIO) {
			t.Fatalf("Append after failure: %v", err)
		}
		if err := l.Sync(); !errors.Is(err, ErrFailed) {
			t.Fatalf("Sync after failure: %v", err)
		}
	}
	if fs.syncs.Load() != calls {
		t.Fatalf("fdatasync retried after failure (%d calls, was %d)", fs.syncs.Load(), calls)
	}
	// The data accepted before the failure is still readable.
	if got := readAll(t, l, 1<<20); len(got) != 2 {
		t.Fatalf("read %d batches", len(got))
	}
	if err := l.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v", err)
	}
}

func TestDiskFull(t *testing.T) {
	fs := &faultFS{}
	o := testOptions(t.TempDir())
	o.FS = fs
	l := mustOpen(t, o)
	fs.setAllocErr(unix.ENOSPC)
	var appended [][]byte
	var err error
	for i := 0; ; i++ {
		b := testBatch(t, uint64(i), 1, 1000, 0)
		if _, err = l.Append(b); err != nil {
			break
		}
		appended = append(appended, b)
	}
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, unix.ENOSPC) || !strings.HasPrefix(err.Error(), "disk: no space") {
		t.Fatalf("Append on a full disk: %v", err)
	}
	// Segments are allocated in steps: appends fill the allocated part and fail at its end.
	if alloc := int64(l.active.Load().allocated.Load()); l.Size()+int64(len(testBatch(t, 0, 1, 1000, 0))) <= alloc {
		t.Fatalf("the disk was full after %d appends, %d bytes, with %d bytes allocated", len(appended), l.Size(), alloc)
	}
	// Still full: still a clean error, and what was written is intact and durable.
	if _, err := l.Append(testBatch(t, 9999, 1, 1000, 0)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("second Append on a full disk: %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	checkPrefix(t, l, appended, len(appended))

	fs.setAllocErr(nil) // space returns
	for i := range 100 {
		b := testBatch(t, uint64(10000+i), 1, 1000, 0)
		if _, err := l.Append(b); err != nil {
			t.Fatalf("Append after space returned: %v", err)
		}
		appended = append(appended, b)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, o)
	defer l.Close()
	if r := l.Recovery(); r.InvalidPosition != -1 {
		t.Fatalf("recovery after a full disk found damage: %+v", r)
	}
	checkPrefix(t, l, appended, len(appended))
}

// WriteFileAtomic leaves the old file whole when the new one's fdatasync fails, removes its temp
// file, and reports a failed directory fsync (the rename may not be durable) rather than dropping it.
func TestWriteFileAtomicFaults(t *testing.T) {
	fs := &faultFS{}
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := WriteFileAtomic(fs, path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}

	fs.setSyncErr(unix.EIO)
	if err := WriteFileAtomic(fs, path, []byte("new"), 0o644); !errors.Is(err, unix.EIO) {
		t.Fatalf("with a failing fdatasync: %v, want EIO", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "old" {
		t.Fatalf("after a failed write: %q, %v; want the old file", b, err)
	}
	if _, err := os.Stat(path + tmpSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left behind: %v", err)
	}
	fs.setSyncErr(nil)

	fs.setSyncDirErr(unix.EIO)
	if err := WriteFileAtomic(fs, path, []byte("new"), 0o644); !errors.Is(err, unix.EIO) || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("with a failing directory fsync: %v, want EIO", err)
	}
	fs.setSyncDirErr(nil)
	if err := WriteFileAtomic(fs, path, []byte("newer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "newer" {
		t.Fatalf("read back %q", b)
	}
}

// While somebody waits for syncs, the housekeeper starts writeback of committed pages as the writer
// passes each step, without syncing: 4 MiB appended with the background sync an hour away have at
// least 3 MiB of writeback started within a few seconds. With no sync waiter it starts none (the
// background fdatasync writes the pages).
func TestWritebackStartsAhead(t *testing.T) {
	for _, waiter := range []bool{true, false} {
		t.Run(fmt.Sprintf("waiter=%v", waiter), func(t *testing.T) {
			fs := &faultFS{}
			l, syncs := appendForWriteback(t, fs, waiter)
			if !waiter {
				for range 30 {
					l.kickHousekeeper()
					time.Sleep(10 * time.Millisecond)
				}
				if n := fs.writeback.Load(); n != 0 {
					t.Fatalf("writeback started for %d bytes with no sync waiter", n)
				}
				return
			}
			awaitWriteback(t, l, fs)
			if n := fs.syncs.Load() - syncs; n != 0 {
				t.Fatalf("%d fdatasyncs: starting writeback must not sync", n)
			}
		})
	}
}

// appendForWriteback opens a log on fs with the background sync an hour away and appends 4 MiB in
// 16 KiB batches; with waiter, a sync was requested just before (as RequestSync notes it, without the
// sync itself). It returns the log (closed at the test's end) and fs's fdatasync count before the appends.
func appendForWriteback(t *testing.T, fs *faultFS, waiter bool) (*Log, int64) {
	t.Helper()
	o := testOptions(t.TempDir())
	o.FS = fs
	o.SegmentBytes, o.MaxBatchBytes = 16<<20, 1<<20
	o.FlushInterval, o.FlushBytes = time.Hour, 1<<40
	l := mustOpen(t, o)
	t.Cleanup(func() { l.Close() })
	if waiter {
		l.lastSyncReq.Store(time.Now().UnixNano())
	}
	b := testBatch(t, 1, 8, 2000, 0) // 16 KiB
	syncs := fs.syncs.Load()
	for range (4 << 20) / len(b) {
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	return l, syncs
}

// awaitWriteback waits, with a sync waiter kept present, until at least 3 MiB of l's pages had
// writeback started on fs, failing after 10 s.
func awaitWriteback(t *testing.T, l *Log, fs *faultFS) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for fs.writeback.Load() < 3<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("writeback started for %d bytes of 4 MiB appended", fs.writeback.Load())
		}
		l.lastSyncReq.Store(time.Now().UnixNano())
		l.kickHousekeeper()
		time.Sleep(10 * time.Millisecond)
	}
}
