package disk

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestIndexWriteDoesNotSync: a sealed segment's index file is written without fdatasync and without
// a directory fsync (writeIndexFile: it is a cache Open rebuilds). The housekeeper writes it once the
// flusher's fdatasync covers the segment; that sync round's directory fsync, for the rolls'
// renames, is the only one.
func TestIndexWriteDoesNotSync(t *testing.T) {
	fs := &faultFS{}
	o := testOptions(t.TempDir())
	o.FS = fs
	o.FlushInterval = time.Hour // no background sync during the test
	o.FlushBytes = 1 << 30
	l := mustOpen(t, o)
	defer l.Close()
	idx0, dir0 := fs.idxSyncs.Load(), fs.dirSyncs.Load() // Open's recovery fsyncs the directory
	b := testBatch(t, 1, 4, 1000, 0)
	for i := 0; len(*l.segs.Load()) < 4; i++ {
		if i > 1000 {
			t.Fatal("no rolls")
		}
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		waitHousekeeper(t, l)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	segs := *l.segs.Load()
	for _, s := range segs[:len(segs)-1] {
		waitIndexFile(t, l, s.base)
	}
	if got := fs.idxSyncs.Load() - idx0; got != 0 {
		t.Errorf("%d fdatasyncs of index files while writing %d of them, want 0", got, len(segs)-1)
	}
	if got := fs.dirSyncs.Load() - dir0; got != 1 {
		t.Errorf("%d directory fsyncs, want 1 (the sync round's, for the rolls' renames)", got)
	}
}

// waitIndexFile waits until the index file of the segment at base exists, waking the housekeeper.
func waitIndexFile(t *testing.T, l *Log, base int64) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(l.dir, indexName(base))); err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("no index file for segment %d", base)
		}
		waitHousekeeper(t, l)
	}
}

// powerLossImage copies the live log's directory into a new one as a power loss at this moment
// could leave it. A segment keeps what the flusher's fdatasyncs covered (segment.synced); lose
// changes the bytes past that (b is the whole file, synced the durable prefix). Every other file is
// copied as the page cache holds it, except the index file of segment idxBase, which is replaced by
// what idx returns for it (nil: the file is not there). A test runs it while no sync is running.
func powerLossImage(t *testing.T, l *Log, idxBase int64, lose func(b []byte, synced int), idx func(b []byte) []byte) string {
	t.Helper()
	synced := map[int64]int{}
	for _, s := range *l.segs.Load() {
		synced[s.base] = int(s.synced.Load())
	}
	img := t.TempDir()
	names, err := os.ReadDir(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(l.dir, n.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if base, ok := parseSegmentName(n.Name()); ok {
			lose(b, synced[base])
		}
		if n.Name() == indexName(idxBase) {
			if b = idx(b); b == nil {
				continue
			}
		}
		if err := os.WriteFile(filepath.Join(img, n.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// openImage opens a power-loss image and checks that it holds exactly the first keep batches,
// intact, at their offsets, and reads as a valid log throughout (a reader that meets garbage where
// an index promised a batch panics: that fails the test).
func openImage(t *testing.T, o Options, img string, batches [][]byte, keep int) *Log {
	t.Helper()
	o.Dir = img
	o.FS = nil
	l := mustOpen(t, o)
	t.Cleanup(func() { l.Close() })
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("reading the recovered log: %v (recovery %+v)", r, l.Recovery())
			}
		}()
		checkPrefix(t, l, batches, keep)
	}()
	return l
}

// TestPowerLossAfterSeal: a power loss right after a roll seals a segment. Its index file is written
// without syncs, so it may come back whole, missing, empty, torn, zeroed or garbage; the data nobody
// waited to see synced may be lost, at the end of the segment or (writeback out of order) before
// data that survived. Open recovers every batch acknowledged synced, nothing it cannot read, and
// rebuilds the index it cannot trust (counted in Recovery.IndexesRebuilt) as it was written; a
// second Open trusts it. Timestamp lookups and retention by age, which read the indexes' timestamps,
// answer as before the loss.
func TestPowerLossAfterSeal(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(dir)
	o.FlushInterval = time.Hour // syncs only when asked: the test knows what is durable
	o.FlushBytes = 1 << 30
	l := mustOpen(t, o)
	defer l.Close()
	var batches [][]byte
	add := func() {
		b := testBatch(t, uint64(len(batches)), 2, 400, int64(1000+len(batches)))
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		batches = append(batches, b)
	}
	for l.NextOffset() < 2*40 { // about 34 KiB of the first 64 KiB segment
		add()
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	synced := len(batches)
	for len(*l.segs.Load()) < 2 { // written-level appends until a roll seals the segment
		add()
	}
	waitHousekeeper(t, l)
	waitHousekeeper(t, l) // it indexes the sealed segment (and writes its file, if it may)
	if len(batches)-synced < 10 {
		t.Fatalf("only %d unsynced batches in the sealed segment", len(batches)-synced)
	}
	loseTail := func(b []byte, synced int) { clear(b[synced:]) }
	// Writeback out of order: the first unsynced batch's header never reached the disk, later
	// pages did.
	loseMiddle := func(b []byte, synced int) {
		if synced < len(b) {
			clear(b[synced:min(len(b), synced+64)])
		}
	}
	keepIndex := func(b []byte) []byte { return b }
	noIndex := func([]byte) []byte { return nil }

	// Right after the seal: the unsynced end of the segment is lost. No index may vouch for it.
	for _, tc := range []struct {
		name string
		lose func([]byte, int)
		idx  func([]byte) []byte
	}{
		{"data lost at the end, index as written", loseTail, keepIndex},
		{"data lost before data kept, index as written", loseMiddle, keepIndex},
		{"data lost before data kept, index lost", loseMiddle, noIndex},
	} {
		t.Run("seal/"+tc.name, func(t *testing.T) {
			img := powerLossImage(t, l, 0, tc.lose, tc.idx)
			r := openImage(t, o, img, batches, synced).Recovery()
			if r.InvalidSegment != segmentName(0) || r.IndexesRebuilt != 1 {
				t.Fatalf("recovery %+v: want the sealed segment scanned and cut", r)
			}
		})
	}

	// Once a sync covers the sealed segment, the housekeeper writes its index (without syncs).
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	written := waitIndexFile(t, l, 0)
	seg0 := (*l.segs.Load())[0]
	maxTs, retainTs := seg0.maxTs.Load(), seg0.retainTs.Load()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 22))
	for _, tc := range []struct {
		name    string
		idx     func([]byte) []byte
		rebuilt int
	}{
		{"index whole", keepIndex, 0},
		{"index write lost", noIndex, 1},
		{"index renamed but empty", func([]byte) []byte { return []byte{} }, 1},
		{"index torn: first half", func(b []byte) []byte { return b[:len(b)/2] }, 1},
		{"index torn: second half zeros", func(b []byte) []byte {
			clear(b[len(b)/2:])
			return b
		}, 1},
		{"index length without data: zeros", func(b []byte) []byte { return make([]byte, len(b)) }, 1},
		{"index garbage", func(b []byte) []byte {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return b
		}, 1},
	} {
		t.Run("synced/"+tc.name, func(t *testing.T) {
			img := powerLossImage(t, l, 0, loseTail, tc.idx)
			l2 := openImage(t, o, img, batches, len(batches))
			r := l2.Recovery()
			if r.IndexesRebuilt != tc.rebuilt || r.SegmentsScanned != 1+tc.rebuilt || r.InvalidPosition != -1 {
				t.Fatalf("recovery %+v, want %d index rebuilt and no cut", r, tc.rebuilt)
			}
			// The readers of the index's timestamps: retention by age and timestamp lookups.
			s := (*l2.segs.Load())[0]
			if s.maxTs.Load() != maxTs || s.retainTs.Load() != retainTs || !s.indexDone.Load() {
				t.Fatalf("max timestamp %d, retention time %d, want %d %d", s.maxTs.Load(), s.retainTs.Load(), maxTs, retainTs)
			}
			for _, i := range []int{0, 7, synced + 3, len(batches) - 1} {
				if off, err := l2.OffsetForTimestamp(int64(1000 + i)); err != nil || off != int64(2*i) {
					t.Fatalf("OffsetForTimestamp(%d) = %d, %v, want %d", 1000+i, off, err, 2*i)
				}
			}
			got, err := os.ReadFile(filepath.Join(img, indexName(0)))
			if err != nil || !bytes.Equal(got, written) {
				t.Fatalf("index after Open differs from the one written (%v)", err)
			}
			l2.Close()
			l3 := mustOpen(t, Options{Dir: img, SegmentBytes: o.SegmentBytes, IndexInterval: o.IndexInterval, Logger: o.Logger})
			defer l3.Close()
			if r := l3.Recovery(); r.IndexesRebuilt != 0 || r.SegmentsScanned != 1 {
				t.Fatalf("second open %+v", r)
			}
		})
	}
}

// TestCutRemovesIndex: a recovery that cuts a sealed segment deletes that segment's index file with
// the later segments. The segment is the tail from then on and takes new batches; its old index,
// left in place, would stand in for the one written when it is sealed again until that one is
// durable (index files are written without fsync), and could pass recovery's checks (the same end,
// the batches after its last entry valid) while its earlier entries point between the new batches.
func TestCutRemovesIndex(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(dir)
	l := mustOpen(t, o)
	for i := 0; len(*l.segs.Load()) < 4; i++ {
		if _, err := l.Append(testBatch(t, uint64(i), 2, 400, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	bases := make([]int64, 0, 4)
	for _, s := range *l.segs.Load() {
		bases = append(bases, s.base)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The sealed segment 1 lost its second half; its index (and 2's) is still there.
	patchFile(t, filepath.Join(dir, segmentName(bases[1])), 32<<10, make([]byte, 32<<10))
	l = mustOpen(t, o)
	defer l.Close()
	r := l.Recovery()
	if r.InvalidSegment != segmentName(bases[1]) {
		t.Fatalf("recovery %+v: want segment 1 cut", r)
	}
	names, _ := os.ReadDir(dir)
	var left []string
	for _, n := range names {
		left = append(left, n.Name())
	}
	if want := []string{indexName(bases[0]), segmentName(bases[0]), segmentName(bases[1])}; strings.Join(left, " ") != strings.Join(want, " ") {
		t.Fatalf("files after the cut %v, want %v", left, want)
	}
}

// TestFailedRollKeepsIndexing: a roll that fails after sealing the active segment (its rename
// fails) unseals it, and the segment goes on taking appends. A housekeeper pass inside that window
// must not take the segment for sealed: it would stop indexing it (timestamp lookups then skip the
// records appended after the failed roll) and write an index file of its prefix. A pass that began
// before the seal waits for the roll's lock, so an attempt in which no pass ran inside the window
// proves nothing and is made again.
func TestFailedRollKeepsIndexing(t *testing.T) {
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			t.Fatal("the housekeeper never ran while the roll waited")
		}
		if failedRollAttempt(t) {
			return
		}
	}
}

// failedRollAttempt runs TestFailedRollKeepsIndexing's scenario on a new log and reports whether a
// housekeeper pass ran while the roll waited.
func failedRollAttempt(t *testing.T) bool {
	t.Helper()
	fs := &faultFS{}
	o := testOptions(t.TempDir())
	o.FS = fs
	l := mustOpen(t, o)
	defer l.Close()
	big := testBatch(t, 1, 2, 8<<10, 100)
	for pos, _ := l.active.Load().end(); int(pos)+2*len(big) < o.SegmentBytes; pos, _ = l.active.Load().end() {
		if _, err := l.Append(testBatch(t, 2, 2, 400, 100)); err != nil {
			t.Fatal(err)
		}
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	hook := func(_, newname string) error {
		if strings.HasSuffix(newname, logSuffix) && once.CompareAndSwap(false, true) {
			close(entered)
			<-release
			return unix.ENOSPC
		}
		return nil
	}
	fs.renameHook.Store(&hook)
	failed := make(chan error, 1)
	go func() {
		var err error
		for err == nil { // appends that fit, then the one that rolls
			_, err = l.Append(big)
		}
		failed <- err
	}()
	<-entered // the active segment is sealed; the roll waits in its rename, holding Log.mu
	if err := l.Sync(); err != nil {
		close(release)
		t.Fatal(err)
	}
	start := l.hkPasses.Load()
	for deadline := time.Now().Add(2 * time.Second); l.hkPasses.Load() < start+2 && time.Now().Before(deadline); {
		l.kickHousekeeper()
		time.Sleep(time.Millisecond)
	}
	ran := l.hkPasses.Load() >= start+2
	close(release)
	if err := <-failed; !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("append: %v, want the rename's ENOSPC", err)
	}
	if !ran {
		return false
	}
	// The segment took the roll back and keeps taking what fits.
	res, err := l.Append(testBatch(t, 3, 1, 10, 5000))
	if err != nil {
		t.Fatal(err)
	}
	if len(*l.segs.Load()) != 1 {
		t.Fatalf("%d segments, want the one", len(*l.segs.Load()))
	}
	if off, err := l.OffsetForTimestamp(5000); err != nil || off != res.BaseOffset {
		t.Fatalf("OffsetForTimestamp(5000) = %d, %v, want %d", off, err, res.BaseOffset)
	}
	if _, err := os.Stat(filepath.Join(o.Dir, indexName(0))); !os.IsNotExist(err) {
		t.Fatalf("index file of the unsealed active segment written (%v)", err)
	}
	return true
}
