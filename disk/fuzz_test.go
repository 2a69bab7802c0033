package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSegment builds a small valid segment image: n batches with dense offsets from 0.
func fuzzSegment(tb testing.TB, n int) []byte {
	var out []byte
	var off int64
	for i := range n {
		b := testBatch(tb, uint64(i), 1+i%3, 5+i*11%90, int64(i))
		b[7] = byte(off) // base offsets below 256 fit in the last byte
		out = append(out, b...)
		off += int64(1 + i%3)
	}
	return out
}

// FuzzRecover opens a log whose only segment holds arbitrary bytes. Recovery must not panic and
// must keep exactly a valid prefix of the input: the batches it keeps are the input's leading
// bytes, each valid with dense offsets, and the file is zero after them.
func FuzzRecover(f *testing.F) {
	valid := fuzzSegment(f, 6)
	f.Add(valid)
	f.Add(valid[:len(valid)-9])
	f.Add([]byte{})
	f.Add(append(bytes.Clone(valid), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1))
	flipped := bytes.Clone(valid)
	flipped[len(valid)/2] ^= 0x10
	f.Add(flipped)
	f.Fuzz(func(t *testing.T, data []byte) {
		const segBytes = 16 << 10
		if len(data) > segBytes {
			data = data[:segBytes]
		}
		dir := t.TempDir()
		path := filepath.Join(dir, segmentName(0))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		o := testOptions(dir)
		o.SegmentBytes = segBytes
		l, err := Open(o)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer l.Close()
		var kept []byte
		for _, s := range readAll(t, l, 1<<20) { // validates each batch and dense offsets
			kept = append(kept, s.bytes...)
		}
		// The file is extended with zeros to the segment size, so those zeros are input too.
		padded := append(bytes.Clone(data), make([]byte, segBytes-len(data))...)
		if !bytes.HasPrefix(padded, kept) {
			t.Fatalf("kept %d bytes that are not a prefix of the input", len(kept))
		}
		rec := l.Recovery()
		if rec.BatchesKept != len(readAll(t, l, 1<<20)) && len(data) > 0 {
			t.Fatalf("recovery says %d batches kept", rec.BatchesKept)
		}
		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(file[:len(kept)], kept) || !allZero(file[len(kept):]) {
			t.Fatalf("segment file not zero after the %d kept bytes", len(kept))
		}
		if tail := padded[len(kept):]; !allZero(tail) && rec.InvalidPosition != int64(len(kept)) {
			t.Fatalf("damage after %d bytes not reported: %+v", len(kept), rec)
		}
	})
}
