package disk

import (
	"math/rand/v2"
	"testing"
)

// TestReadFromHint reads a segment of batches of 1 to 3 records in a tailing pattern (each Read
// where the last ended, which moves the read hint) mixed with reads at random offsets before and
// after it: every view must start with the batch holding the offset asked for, whatever the hint
// says and however far the index lags.
func TestReadFromHint(t *testing.T) {
	o := testOptions(t.TempDir())
	o.SegmentBytes = 1 << 20
	l := mustOpen(t, o)
	defer l.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	var starts []int64 // base offset of every batch, in order
	for i := range 2000 {
		res, err := l.Append(testBatch(t, uint64(i), 1+rng.IntN(3), 20, 1))
		if err != nil {
			t.Fatal(err)
		}
		starts = append(starts, res.BaseOffset)
	}
	end := l.NextOffset()
	holder := func(off int64) int64 { // base offset of the batch holding off
		i := len(starts) - 1
		for starts[i] > off {
			i--
		}
		return starts[i]
	}
	tail := int64(0)
	for n := range 6000 {
		off := tail
		if n%3 != 0 {
			off = rng.Int64N(end)
		}
		v, err := l.Read(off, 1+rng.IntN(400))
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if want := holder(off); v.BaseOffset != want || batchID(t, v.Data) != uint64(indexOf(starts, want)) {
			t.Fatalf("Read(%d) starts at %d, want the batch at %d", off, v.BaseOffset, want)
		}
		if off == tail {
			tail = v.NextOffset % end
		}
		v.Release()
	}
}

func indexOf(starts []int64, base int64) int {
	for i, s := range starts {
		if s == base {
			return i
		}
	}
	return -1
}
