package disk

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// stampedBatch builds one batch whose record i carries timestamp stamps[i].
func stampedBatch(tb testing.TB, codec wire.Codec, stamps []int64) []byte {
	tb.Helper()
	bb := wire.NewBatchBuilder(4096)
	bb.SetCompression(codec)
	for i, ts := range stamps {
		bb.Append(nil, fmt.Appendf(nil, "record-%d-%s", i, bytes.Repeat([]byte("v"), 40)), nil, ts)
	}
	b, err := bb.Build()
	if err != nil {
		tb.Fatal(err)
	}
	if wire.Codec(b[22]&7) != codec {
		tb.Fatalf("batch built with codec %v, want %v", wire.Codec(b[22]&7), codec)
	}
	return bytes.Clone(b)
}

// TestOffsetForTimestampInsideBatch: a start time that falls inside a batch lands on the first record
// stamped at or after it, not on the batch's first record, for every codec.
func TestOffsetForTimestampInsideBatch(t *testing.T) {
	const t0 = 1_700_000_000_000
	for _, codec := range []wire.Codec{wire.CodecNone, wire.CodecGzip, wire.CodecSnappy, wire.CodecZstd} {
		t.Run(codec.String(), func(t *testing.T) {
			l := mustOpen(t, testOptions(t.TempDir()))
			defer l.Close()
			// Offsets 0-2: an earlier batch. Offsets 3-102: record i stamped t0 + 10·i.
			if _, err := l.Append(stampedBatch(t, codec, []int64{t0 - 30, t0 - 20, t0 - 10})); err != nil {
				t.Fatal(err)
			}
			stamps := make([]int64, 100)
			for i := range stamps {
				stamps[i] = t0 + 10*int64(i)
			}
			if _, err := l.Append(stampedBatch(t, codec, stamps)); err != nil {
				t.Fatal(err)
			}
			// Offsets 103-105: timestamps out of order within the batch.
			if _, err := l.Append(stampedBatch(t, codec, []int64{t0 + 2000, t0 + 1500, t0 + 3000})); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct{ ts, want int64 }{
				{t0 - 100, 0}, {t0 - 20, 1}, {t0 - 5, 3}, {t0, 3}, {t0 + 500, 53}, {t0 + 501, 54},
				{t0 + 990, 102}, {t0 + 991, 103}, {t0 + 1500, 103}, {t0 + 2001, 105}, {t0 + 3000, 105}, {t0 + 3001, 106},
			} {
				got, err := l.OffsetForTimestamp(tc.ts)
				if err != nil || got != tc.want {
					t.Errorf("OffsetForTimestamp(t0%+d) = %d, %v; want %d", tc.ts-t0, got, err, tc.want)
				}
			}
		})
	}
}

// TestOffsetForTimestampSkipsOverstatedBatch: a batch whose header claims a max timestamp none of its
// records carries does not hold the answer; the search goes on to the next batch.
func TestOffsetForTimestampSkipsOverstatedBatch(t *testing.T) {
	l := mustOpen(t, testOptions(t.TempDir()))
	defer l.Close()
	b := stampedBatch(t, wire.CodecNone, []int64{100, 110})
	// Claim a max timestamp of 500 and fix the CRC.
	for i := range 8 {
		b[35+i] = byte(uint64(500) >> (56 - 8*i))
	}
	crc := wire.BatchCRC(b)
	b[17], b[18], b[19], b[20] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
	if _, err := l.Append(b); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(stampedBatch(t, wire.CodecNone, []int64{200, 300})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ts, want int64 }{{105, 1}, {150, 2}, {250, 3}, {301, 4}} {
		if got, err := l.OffsetForTimestamp(tc.ts); err != nil || got != tc.want {
			t.Errorf("OffsetForTimestamp(%d) = %d, %v; want %d", tc.ts, got, err, tc.want)
		}
	}
}
