package disk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// buildLog appends n batches of varying sizes to a fresh log in dir, closes it, and returns the
// appended batches and their positions within the tail segment (valid when one segment holds all).
func buildLog(t *testing.T, o Options, n int) (batches [][]byte, pos []int64) {
	t.Helper()
	l := mustOpen(t, o)
	var p int64
	for i := range n {
		b := testBatch(t, uint64(i), 2, 50+i*7%300, int64(i))
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		batches = append(batches, b)
		pos = append(pos, p)
		p += int64(len(b))
	}
	pos = append(pos, p) // the end
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return batches, pos
}

func patchFile(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readByte(t *testing.T, path string, off int64) byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b[off]
}

// checkPrefix asserts that the log holds exactly the first keep batches, intact, and that the tail
// segment file is zero after them.
func checkPrefix(t *testing.T, l *Log, batches [][]byte, keep int) {
	t.Helper()
	got := readAll(t, l, 1<<20)
	if len(got) != keep {
		t.Fatalf("kept %d batches, want %d", len(got), keep)
	}
	var base int64
	for i, g := range got {
		if err := sameBatch(g.bytes, batches[i], base); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		base += int64(wire.RecordCount(batches[i]))
	}
	if l.NextOffset() != base {
		t.Fatalf("NextOffset %d, want %d", l.NextOffset(), base)
	}
	tail := l.active.Load()
	end, _ := tail.end()
	data, err := os.ReadFile(tail.path)
	if err != nil {
		t.Fatal(err)
	}
	if !allZero(data[end:]) {
		t.Fatalf("non-zero bytes after the recovered end %d", end)
	}
}

func TestRecovery(t *testing.T) {
	const n = 30
	seg0 := segmentName(0)
	for _, tc := range []struct {
		name string
		// corrupt damages the closed log and returns how many batches must survive.
		corrupt func(t *testing.T, dir string, pos []int64) int
		reason  string // a substring of Recovery.Reason; "" for a clean recovery
	}{
		{"clean", func(t *testing.T, dir string, pos []int64) int { return n }, ""},
		{"torn tail inside the last batch", func(t *testing.T, dir string, pos []int64) int {
			mid := (pos[n-1] + pos[n]) / 2
			patchFile(t, filepath.Join(dir, seg0), mid, make([]byte, pos[n]-mid))
			return n - 1
		}, "crc"},
		{"torn tail, garbage instead of zeros", func(t *testing.T, dir string, pos []int64) int {
			patchFile(t, filepath.Join(dir, seg0), pos[n-2]+70, []byte(strings.Repeat("\xa5", 40)))
			return n - 2
		}, "crc"},
		{"zeroed page", func(t *testing.T, dir string, pos []int64) int {
			page := pos[12] &^ 4095
			if page == 0 {
				page = 4096
			}
			patchFile(t, filepath.Join(dir, seg0), page, make([]byte, 4096))
			keep := 0
			for keep < n && pos[keep+1] <= page {
				keep++
			}
			return keep
		}, ""},
		{"flipped crc byte", func(t *testing.T, dir string, pos []int64) int {
			p := filepath.Join(dir, seg0)
			patchFile(t, p, pos[17]+18, []byte{readByte(t, p, pos[17]+18) ^ 0x40})
			return 17
		}, "crc"},
		{"flipped record byte", func(t *testing.T, dir string, pos []int64) int {
			p := filepath.Join(dir, seg0)
			patchFile(t, p, pos[9]+70, []byte{readByte(t, p, pos[9]+70) ^ 1})
			return 9
		}, "crc"},
		{"wrong base offset", func(t *testing.T, dir string, pos []int64) int {
			patchFile(t, filepath.Join(dir, seg0), pos[5]+7, []byte{99})
			return 5
		}, "base offset"},
		{"truncated file", func(t *testing.T, dir string, pos []int64) int {
			if err := os.Truncate(filepath.Join(dir, seg0), pos[20]+30); err != nil {
				t.Fatal(err)
			}
			return 20
		}, ""},
		{"garbage after the tail", func(t *testing.T, dir string, pos []int64) int {
			patchFile(t, filepath.Join(dir, seg0), pos[n]+5000, []byte("stale batch bytes"))
			return n
		}, "after the end"},
		{"garbage right at the tail", func(t *testing.T, dir string, pos []int64) int {
			patchFile(t, filepath.Join(dir, seg0), pos[n], []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 99})
			return n
		}, ""},
		{"bad magic", func(t *testing.T, dir string, pos []int64) int {
			patchFile(t, filepath.Join(dir, seg0), pos[3]+16, []byte{7})
			return 3
		}, "magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOptions(dir)
			batches, pos := buildLog(t, o, n)
			keep := tc.corrupt(t, dir, pos)
			l := mustOpen(t, o)
			defer l.Close()
			rec := l.Recovery()
			if rec.SegmentsScanned != 1 || rec.BatchesKept != keep {
				t.Fatalf("recovery %+v, want 1 segment scanned and %d batches kept", rec, keep)
			}
			if keep == n && tc.reason == "" && tc.name == "clean" {
				if rec.InvalidPosition != -1 || rec.BytesTruncated != 0 {
					t.Fatalf("clean log reported damage: %+v", rec)
				}
			} else {
				if rec.InvalidPosition != pos[keep] || rec.BytesTruncated <= 0 || rec.InvalidSegment != seg0 {
					t.Fatalf("recovery %+v, want the cut at %d", rec, pos[keep])
				}
				if !strings.Contains(strings.ToLower(rec.Reason), tc.reason) {
					t.Fatalf("reason %q, want %q in it", rec.Reason, tc.reason)
				}
			}
			checkPrefix(t, l, batches, keep)
			// The repaired log takes appends at the right offset and reopens cleanly.
			next := l.NextOffset()
			b := testBatch(t, 1000, 3, 20, 0)
			if res, err := l.Append(b); err != nil || res.BaseOffset != next {
				t.Fatalf("append after recovery: %+v %v", res, err)
			}
			l.Close()
			l2 := mustOpen(t, o)
			defer l2.Close()
			if r := l2.Recovery(); r.InvalidPosition != -1 {
				t.Fatalf("second recovery found damage: %+v", r)
			}
			checkPrefix(t, l2, append(batches[:keep:keep], b), keep+1)
		})
	}
}

// TestRecoveryIndex damages sealed segments' index files and data: a bad index is rebuilt from
// the log; a sealed segment that no longer reaches the next one cuts the log there.
func TestRecoveryIndex(t *testing.T) {
	build := func(t *testing.T) (Options, [][]byte) {
		dir := t.TempDir()
		o := testOptions(dir)
		l := mustOpen(t, o)
		var batches [][]byte
		for i := 0; len(*l.segs.Load()) < 4; i++ {
			b := testBatch(t, uint64(i), 2, 400, int64(i))
			if _, err := l.Append(b); err != nil {
				t.Fatal(err)
			}
			batches = append(batches, b)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return o, batches
	}
	segBases := func(t *testing.T, dir string) []int64 {
		names, _ := os.ReadDir(dir)
		var bases []int64
		for _, n := range names {
			if b, ok := parseSegmentName(n.Name()); ok {
				bases = append(bases, b)
			}
		}
		return bases
	}
	for _, tc := range []struct {
		name     string
		damage   func(t *testing.T, dir string, bases []int64)
		rebuilt  int
		cutSeg   int // index of the segment cut, -1 for none
		scanned  int
		keepSegs int
	}{
		{"flipped index byte", func(t *testing.T, dir string, bases []int64) {
			p := filepath.Join(dir, indexName(bases[1]))
			patchFile(t, p, 60, []byte{readByte(t, p, 60) ^ 0xff})
		}, 1, -1, 2, 4},
		{"index behind", func(t *testing.T, dir string, bases []int64) {
			if err := os.Truncate(filepath.Join(dir, indexName(bases[0])), indexHeaderSize+indexEntrySize); err != nil {
				t.Fatal(err)
			}
		}, 1, -1, 2, 4},
		{"index of version 1", func(t *testing.T, dir string, bases []int64) {
			patchFile(t, filepath.Join(dir, indexName(bases[0])), 4, []byte{0, 1})
		}, 1, -1, 2, 4},
		{"index missing", func(t *testing.T, dir string, bases []int64) {
			os.Remove(filepath.Join(dir, indexName(bases[2])))
		}, 1, -1, 2, 4},
		{"sealed segment lost its tail", func(t *testing.T, dir string, bases []int64) {
			os.Remove(filepath.Join(dir, indexName(bases[1])))
			// Zero the segment's second half: it now ends before the next segment's base.
			patchFile(t, filepath.Join(dir, segmentName(bases[1])), 32<<10, make([]byte, 32<<10))
		}, 1, 1, 1, 2},
		// A power loss after a roll, before any fdatasync of the new segment (a segment is not
		// fdatasynced when created): its length was not durable, or its data was not.
		{"rolled segment lost its length", func(t *testing.T, dir string, bases []int64) {
			os.Remove(filepath.Join(dir, indexName(bases[2])))
			if err := os.Truncate(filepath.Join(dir, segmentName(bases[2])), 0); err != nil {
				t.Fatal(err)
			}
		}, 1, 1, 1, 2},
		{"rolled segment lost its data", func(t *testing.T, dir string, bases []int64) {
			os.Remove(filepath.Join(dir, indexName(bases[2])))
			patchFile(t, filepath.Join(dir, segmentName(bases[2])), 0, make([]byte, 64<<10))
		}, 1, 2, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, batches := build(t)
			bases := segBases(t, o.Dir)
			tc.damage(t, o.Dir, bases)
			l := mustOpen(t, o)
			defer l.Close()
			rec := l.Recovery()
			if rec.IndexesRebuilt != tc.rebuilt || rec.SegmentsScanned != tc.scanned {
				t.Fatalf("recovery %+v", rec)
			}
			if got := len(*l.segs.Load()); got != tc.keepSegs {
				t.Fatalf("%d segments kept, want %d", got, tc.keepSegs)
			}
			keep := len(batches)
			if tc.cutSeg >= 0 {
				if rec.InvalidSegment != segmentName(bases[tc.cutSeg]) {
					t.Fatalf("cut in %q", rec.InvalidSegment)
				}
				keep = 0
				for off := int64(0); off < l.NextOffset(); off += 2 {
					keep++
				}
			}
			checkPrefix(t, l, batches, keep)
			// Indexes were rewritten: a second open trusts them all.
			l.Close()
			l2 := mustOpen(t, o)
			defer l2.Close()
			if r := l2.Recovery(); r.IndexesRebuilt != 0 || r.SegmentsScanned != 1 {
				t.Fatalf("second open %+v", r)
			}
			checkPrefix(t, l2, batches, keep)
		})
	}
}
