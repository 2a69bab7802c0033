package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// quietLogger discards log output in tests.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testBatch builds a valid batch of n records whose values carry id (so a test can tell batches
// apart) padded to valSize bytes, all stamped ts.
func testBatch(tb testing.TB, id uint64, n, valSize int, ts int64) []byte {
	tb.Helper()
	bb := wire.NewBatchBuilder(n*(valSize+16) + wire.BatchHeaderSize)
	val := make([]byte, max(valSize, 8))
	binary.BigEndian.PutUint64(val, id)
	for i := range val[8:] {
		val[8+i] = byte(id) + byte(i)
	}
	for range n {
		bb.Append(nil, val, nil, ts)
	}
	b, err := bb.Build()
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Clone(b)
}

// batchID reads the id testBatch put in the batch's first record.
func batchID(tb testing.TB, b []byte) uint64 {
	tb.Helper()
	var it wire.RecordIter
	if _, err := it.Reset(b); err != nil {
		tb.Fatal(err)
	}
	var r wire.Record
	if !it.Next(&r) {
		tb.Fatalf("batch has no record: %v", it.Err())
	}
	return binary.BigEndian.Uint64(r.Value)
}

func testOptions(dir string) Options {
	return Options{Dir: dir, SegmentBytes: 64 << 10, IndexInterval: 256, Logger: quietLogger(), FlushInterval: 200e3}
}

func mustOpen(tb testing.TB, o Options) *Log {
	tb.Helper()
	l, err := Open(o)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return l
}

// stored is one batch read back from a log.
type stored struct {
	base  int64
	bytes []byte
}

// readAll reads every batch from StartOffset to NextOffset in views of maxBytes, checking that
// batches are valid, whole, and that offsets are dense.
func readAll(tb testing.TB, l *Log, maxBytes int) []stored {
	tb.Helper()
	var out []stored
	off, end := l.StartOffset(), l.NextOffset()
	for off < end {
		v, err := l.Read(off, maxBytes)
		if err != nil {
			tb.Fatalf("Read(%d): %v", off, err)
		}
		if len(v.Data) == 0 {
			tb.Fatalf("Read(%d) returned nothing below the end %d", off, end)
		}
		if v.BaseOffset != off {
			tb.Fatalf("Read(%d) starts at batch %d", off, v.BaseOffset)
		}
		data := v.Data
		next := off
		for len(data) > 0 {
			h, err := wire.ValidateBatch(data, 0)
			if err != nil {
				tb.Fatalf("batch at offset %d: %v", next, err)
			}
			if h.BaseOffset != next {
				tb.Fatalf("batch base offset %d, want %d", h.BaseOffset, next)
			}
			out = append(out, stored{h.BaseOffset, bytes.Clone(data[:h.Size()])})
			next = h.LastOffset() + 1
			data = data[h.Size():]
		}
		if next != v.NextOffset {
			tb.Fatalf("view NextOffset %d, batches end at %d", v.NextOffset, next)
		}
		v.Release()
		off = next
	}
	return out
}

// sameBatch reports whether stored bytes equal the appended batch with base offset base.
func sameBatch(got, appended []byte, base int64) error {
	if len(got) != len(appended) {
		return fmt.Errorf("size %d, appended %d", len(got), len(appended))
	}
	if wire.BaseOffset(got) != base {
		return fmt.Errorf("base offset %d, want %d", wire.BaseOffset(got), base)
	}
	if !bytes.Equal(got[8:], appended[8:]) {
		return fmt.Errorf("bytes differ")
	}
	return nil
}
