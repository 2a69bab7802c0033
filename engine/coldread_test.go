package engine

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/wire"
)

// TestResidentAndPrefetch: a file's pages evicted from the page cache are reported missing, and
// populating them makes them resident.
func TestResidentAndPrefetch(t *testing.T) {
	// Eviction needs a disk-backed file system: tmpfs pages are the file itself.
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		if dir, err = os.MkdirTemp("/var/tmp", "sluice-cold"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	path := filepath.Join(dir, "cold")
	data := make([]byte, 64*int(pageSize))
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	// Clean pages of an unmapped file can be dropped from the cache.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	view := m[100 : len(m)-100] // unaligned, as a delivery would be
	if resident(view, nil) {
		t.Fatal("pages just dropped from the page cache are reported resident")
	}
	if err := unix.Madvise(pageSpan(view), unix.MADV_POPULATE_READ); err != nil {
		t.Fatal(err)
	}
	if !resident(view, nil) {
		t.Fatal("populated pages are reported missing")
	}
	if view[0] != byte(100) {
		t.Fatalf("read %d through the mapping", view[0])
	}
}

// TestColdReadDeferredNotLost: a far-behind cursor whose pages are cold gets its delivery once they
// have been read in off its goroutine, at the same offset.
func TestColdReadDeferredNotLost(t *testing.T) {
	e := openEngine(t, testOptions(t))
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "cold", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	want := produce(t, e, "cold", 1, 3*coldLag, wire.DurabilityWritten)
	var misses atomic.Int32
	isResident = func(b, vec []byte) bool { return misses.Add(1) > 3 } // the first three checks miss
	t.Cleanup(func() { isResident = resident })

	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "cold", Partition: 0, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	consume(t, l, want, nil)
	if n := e.metrics.ColdReads.Load(); n != 3 {
		t.Fatalf("%d cold reads deferred, want 3", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Next(ctx); err == nil {
		t.Fatal("a deferred read was delivered twice")
	}
}
