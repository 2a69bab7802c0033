package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// fixCRC recomputes the CRC of the batch at the front of b after a test edited it.
func fixCRC(b []byte) []byte {
	binary.BigEndian.PutUint32(b[offCRC:], BatchCRC(b[:int(binary.BigEndian.Uint32(b[offBatchLength:]))+batchLengthBase]))
	return b
}

// rawRecord encodes one record by hand with the given offset delta; a nil header key is written as -1.
func rawRecord(offsetDelta int64, key, value []byte, headers ...[]byte) []byte {
	var body []byte
	body = append(body, 0)
	body = binary.AppendVarint(body, 0)
	body = binary.AppendVarint(body, offsetDelta)
	body = appendBytes(body, key)
	body = appendBytes(body, value)
	body = binary.AppendVarint(body, int64(len(headers)/2))
	for _, h := range headers {
		body = appendBytes(body, h)
	}
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

// rawBatch wraps hand-made records in a batch header claiming count records, with a good CRC.
func rawBatch(codec Codec, count int32, recs []byte) []byte {
	b := make([]byte, BatchHeaderSize, BatchHeaderSize+len(recs))
	be := binary.BigEndian
	be.PutUint32(b[offBatchLength:], uint32(BatchHeaderSize-batchLengthBase+len(recs)))
	b[offMagic] = Magic
	be.PutUint16(b[offAttributes:], uint16(codec))
	be.PutUint32(b[offLastOffsetDelta:], uint32(count-1))
	be.PutUint64(b[offProducerID:], ^uint64(0))
	be.PutUint32(b[offRecordCount:], uint32(count))
	return fixCRC(append(b, recs...))
}

func threeRecords() []byte {
	b := NewBatchBuilder(0)
	b.Append([]byte("a"), []byte("one"), nil, 1000)
	b.Append(nil, []byte("two"), []Header{{Key: []byte("h"), Value: nil}}, 1001)
	b.Append([]byte("c"), nil, nil, 999)
	out, err := b.Build()
	if err != nil {
		panic(err)
	}
	return bytes.Clone(out)
}

func TestValidateBatchRejects(t *testing.T) {
	good := threeRecords()
	if h, err := ValidateBatch(good, 0); err != nil || h.Size() != len(good) || h.RecordCount != 3 || h.MaxTimestamp != 1001 || h.FirstTimestamp != 1000 {
		t.Fatalf("good batch: %+v %v", h, err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	recsOff := BatchHeaderSize
	one := rawRecord(0, []byte("k"), []byte("v"))
	two := rawRecord(1, []byte("k"), []byte("v"))
	cases := []struct {
		name string
		b    []byte
		max  int
		want error
	}{
		{"magic-1", edit(func(b []byte) []byte { b[offMagic] = 1; return fixCRC(b) }), 0, ErrCorrupt},
		{"magic-3", edit(func(b []byte) []byte { b[offMagic] = 3; return b }), 0, ErrCorrupt},
		{"crc-field", edit(func(b []byte) []byte { b[offCRC+3] ^= 1; return b }), 0, ErrCorrupt},
		{"crc-attributes", edit(func(b []byte) []byte { b[offAttributes+1] ^= 0x10; return b }), 0, ErrCorrupt},
		{"crc-record-byte", edit(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), 0, ErrCorrupt},
		{"count-zero", rawBatch(CodecNone, 0, nil), 0, ErrCorrupt},
		{"count-negative", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offRecordCount:], 0xffffffff); return fixCRC(b) }), 0, ErrCorrupt},
		{"count-vs-last-delta", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 5); return fixCRC(b) }), 0, ErrCorrupt},
		{"count-more-than-records", rawBatch(CodecNone, 3, append(bytes.Clone(one), two...)), 0, ErrCorrupt},
		{"count-fewer-than-records", rawBatch(CodecNone, 1, append(bytes.Clone(one), two...)), 0, ErrCorrupt},
		{"count-huge", rawBatch(CodecNone, 1<<31-1, one), 0, ErrCorrupt},
		{"offset-delta-skips", rawBatch(CodecNone, 2, append(bytes.Clone(one), rawRecord(2, nil, nil)...)), 0, ErrCorrupt},
		{"offset-delta-negative", rawBatch(CodecNone, 1, rawRecord(-1, nil, nil)), 0, ErrCorrupt},
		{"null-header-key", rawBatch(CodecNone, 1, rawRecord(0, nil, nil, nil, []byte("v"))), 0, ErrCorrupt},
		{"record-length-past-end", rawBatch(CodecNone, 1, append([]byte{0x7e}, one[1:]...)), 0, ErrCorrupt},
		{"key-length-past-record", edit(func(b []byte) []byte { b[recsOff+4] = 0x7e; return fixCRC(b) }), 0, ErrCorrupt},
		{"codec-5", edit(func(b []byte) []byte { b[offAttributes+1] |= 5; return fixCRC(b) }), 0, ErrCorrupt},
		{"codec-7", edit(func(b []byte) []byte { b[offAttributes+1] |= 7; return fixCRC(b) }), 0, ErrCorrupt},
		{"length-below-header", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offBatchLength:], 48); return b }), 0, ErrCorrupt},
		{"length-negative", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offBatchLength:], 0x80000000); return b }), 0, ErrCorrupt},
		{"truncated-header", good[:BatchHeaderSize-1], 0, ErrTruncated},
		{"truncated-12", good[:12], 0, ErrTruncated},
		{"truncated-records", good[:len(good)-1], 0, ErrTruncated},
		{"empty", nil, 0, ErrTruncated},
		{"too-large", good, len(good) - 1, ErrBatchTooLarge},
		{"too-large-before-truncated", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[offBatchLength:], 1<<30)
			return b[:BatchHeaderSize]
		}), 1 << 20, ErrBatchTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ValidateBatch(c.b, c.max)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			for _, other := range []error{ErrCorrupt, ErrTruncated, ErrBatchTooLarge} {
				if other != c.want && errors.Is(err, other) {
					t.Fatalf("%v also matches %v", err, other)
				}
			}
		})
	}
	// Every prefix of a good batch is truncated, never corrupt.
	for i := range len(good) {
		if _, err := ValidateBatch(good[:i], 0); !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
	if _, err := ValidateBatch(good, len(good)); err != nil {
		t.Fatalf("batch of exactly the limit: %v", err)
	}
}

func TestBatchSize(t *testing.T) {
	good := threeRecords()
	if n, err := BatchSize(good[:12]); err != nil || n != len(good) {
		t.Fatalf("%d %v", n, err)
	}
	if _, err := BatchSize(good[:11]); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	b := bytes.Clone(good)
	binary.BigEndian.PutUint32(b[offBatchLength:], 0xffffffff)
	if _, err := BatchSize(b); !errors.Is(err, ErrCorrupt) {
		t.Fatal(err)
	}
}

func TestBatchAccessors(t *testing.T) {
	b := threeRecords()
	SetBaseOffset(b, 77)
	if BaseOffset(b) != 77 || RecordCount(b) != 3 || MaxTimestamp(b) != 1001 {
		t.Fatal(BaseOffset(b), RecordCount(b), MaxTimestamp(b))
	}
	h, err := ValidateBatch(b, 0)
	if err != nil || h.BaseOffset != 77 || h.LastOffset() != 79 || h.Codec() != CodecNone {
		t.Fatalf("%+v %v", h, err)
	}
}

func TestBatchBuilderProducer(t *testing.T) {
	b := NewBatchBuilder(0)
	b.Append(nil, []byte("v"), nil, 1)
	out, _ := b.Build()
	h, _ := ParseBatchHeader(out)
	if h.ProducerID != -1 || h.ProducerEpoch != -1 || h.BaseSequence != -1 {
		t.Fatalf("no producer: %+v", h)
	}
	// Producer id 0, epoch 0, sequence 0 is a real identity (the first a broker hands out).
	b.SetProducer(0, 0, 0)
	out, _ = b.Build()
	if h, _ = ParseBatchHeader(out); h.ProducerID != 0 || h.ProducerEpoch != 0 || h.BaseSequence != 0 {
		t.Fatalf("producer 0: %+v", h)
	}
	b.SetProducer(1<<40, 3, 1000)
	b.Reset()
	b.Append(nil, []byte("v"), nil, 1)
	out, _ = b.Build()
	if h, _ = ParseBatchHeader(out); h.ProducerID != 1<<40 || h.ProducerEpoch != 3 || h.BaseSequence != 1000 {
		t.Fatalf("producer kept over Reset: %+v", h)
	}
	if _, err := ValidateBatch(out, 0); err != nil {
		t.Fatal(err)
	}
}

func TestBatchBuilderZeroValue(t *testing.T) {
	for _, codec := range kmsgCodecs {
		var b BatchBuilder
		b.SetCompression(codec)
		b.Append([]byte("k"), []byte("v"), nil, 5)
		out, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ValidateBatch(out, 0); err != nil {
			t.Fatalf("%v: %v", codec, err)
		}
	}
}

func TestBatchBuilderReuse(t *testing.T) {
	b := NewBatchBuilder(16)
	if out, err := b.Build(); out != nil || err != nil {
		t.Fatalf("empty Build: %v %v", out, err)
	}
	for _, codec := range kmsgCodecs {
		b.SetCompression(codec)
		for round := range 3 {
			b.Reset()
			c := batchCases()[round+3]
			size := BatchHeaderSize
			for i, r := range c.recs {
				b.Append(r.key, r.value, r.headers, c.firstTs+r.tsDelta)
				size += RecordSize(int32(i), r.tsDelta, r.key, r.value, r.headers)
				if b.Size() != size || b.Count() != i+1 {
					t.Fatalf("%v: Size %d, RecordSize sums to %d", codec, b.Size(), size)
				}
			}
			out, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			h, err := ValidateBatch(out, 0)
			if err != nil || h.Codec() != codec {
				t.Fatalf("%v round %d: %+v %v", codec, round, h, err)
			}
			var it RecordIter
			if _, err := it.Reset(out); err != nil {
				t.Fatal(err)
			}
			checkIter(t, &it, c, 0)
		}
	}
}

func TestRecordIter(t *testing.T) {
	t.Run("reuse-across-codecs", func(t *testing.T) {
		var it RecordIter
		for _, c := range batchCases() {
			for _, codec := range []Codec{CodecZstd, CodecNone, CodecSnappy, CodecLZ4, CodecGzip, CodecZstd} {
				if _, err := it.Reset(buildWire(t, c, codec)); err != nil {
					t.Fatal(err)
				}
				checkIter(t, &it, c, 0)
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		good := threeRecords()
		var it RecordIter
		if _, err := it.Reset(good[:len(good)-1]); !errors.Is(err, ErrTruncated) || it.Next(new(Record)) || !errors.Is(it.Err(), ErrTruncated) {
			t.Fatalf("%v %v", err, it.Err())
		}
		// A failed Reset leaves nothing of the previous batch behind.
		if _, err := it.Reset(good); err != nil {
			t.Fatal(err)
		}
		if _, err := it.Reset(good[:10]); err == nil || it.Next(new(Record)) {
			t.Fatal("iterated after a failed Reset")
		}
	})
	t.Run("trailing-bytes-compressed", func(t *testing.T) {
		recs := append(rawRecord(0, nil, []byte("v")), 0, 0, 0)
		enc, _ := zstd.NewWriter(nil)
		defer enc.Close()
		for _, b := range [][]byte{
			rawBatch(CodecZstd, 1, enc.EncodeAll(recs, nil)),
			rawBatch(CodecSnappy, 1, s2.EncodeSnappy(nil, recs)),
		} {
			if _, err := ValidateBatch(b, 0); err != nil {
				t.Fatal(err) // compressed records are the consumer's to check
			}
			var it RecordIter
			if _, err := it.Reset(b); err != nil {
				t.Fatal(err)
			}
			var r Record
			if !it.Next(&r) || it.Next(&r) || !errors.Is(it.Err(), ErrCorrupt) {
				t.Fatalf("trailing bytes: %v", it.Err())
			}
		}
	})
	t.Run("fewer-records-compressed", func(t *testing.T) {
		enc, _ := zstd.NewWriter(nil)
		defer enc.Close()
		b := rawBatch(CodecZstd, 2, enc.EncodeAll(rawRecord(0, nil, []byte("v")), nil))
		var it RecordIter
		if _, err := it.Reset(b); err != nil {
			t.Fatal(err)
		}
		var r Record
		if !it.Next(&r) || it.Next(&r) || !errors.Is(it.Err(), ErrCorrupt) {
			t.Fatalf("missing record: %v", it.Err())
		}
	})
	t.Run("lz4-frames", func(t *testing.T) {
		// LZ4 frames as producers write them: franz-go's (4 MiB blocks, content checksum), 64 KiB
		// blocks with block checksums or with no checksum at all, a declared content size, and two
		// frames back to back. Each iterates to the same records.
		c := batchCases()[9] // many-records: about 45 KiB
		want := buildWire(t, c, CodecNone)
		recs := want[BatchHeaderSize:]
		bodies := map[string][]byte{
			"franz-go":       franzLZ4(t, recs),
			"block-checksum": lz4Frame(t, recs, lz4.BlockSizeOption(lz4.Block64Kb), lz4.BlockChecksumOption(true)),
			"no-checksums":   lz4Frame(t, recs, lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false)),
			"content-size":   lz4Frame(t, recs, lz4.SizeOption(uint64(len(recs)))),
			"two-frames":     append(lz4Frame(t, recs[:1000]), lz4Frame(t, recs[1000:])...),
		}
		for name, body := range bodies {
			// want's header (timestamps and all) over the compressed records.
			b := append(bytes.Clone(want[:BatchHeaderSize]), body...)
			binary.BigEndian.PutUint32(b[offBatchLength:], uint32(len(b)-batchLengthBase))
			binary.BigEndian.PutUint16(b[offAttributes:], uint16(CodecLZ4))
			fixCRC(b)
			if _, err := ValidateProduced(b, 0); err != nil {
				t.Fatalf("%s: ValidateProduced: %v", name, err)
			}
			var it RecordIter
			if _, err := it.Reset(b); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			checkIter(t, &it, c, 0)
		}
		// Sluice's builder writes lz4 too, readable by franz-go (TestKmsgReadsWireBatches) and here.
		var bb BatchBuilder
		bb.SetCompression(CodecLZ4)
		bb.Append(nil, []byte("v"), nil, 0)
		out, err := bb.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ValidateProduced(out, 0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("garbage-compressed", func(t *testing.T) {
		for _, codec := range []Codec{CodecGzip, CodecSnappy, CodecLZ4, CodecZstd} {
			var it RecordIter
			if _, err := it.Reset(rawBatch(codec, 1, []byte("not compressed at all"))); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v: %v", codec, err)
			}
		}
	})
	t.Run("xerial-short", func(t *testing.T) {
		for _, recs := range [][]byte{xerialMagic, append(xerialEncode(nil, 1), 0, 0), append(xerialEncode(nil, 1), 0, 0, 0, 9, 1)} {
			var it RecordIter
			if _, err := it.Reset(rawBatch(CodecSnappy, 1, recs)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%x: %v", recs, err)
			}
		}
	})
}

// TestDecompressionBombs: a small batch that claims or inflates to more than the bound is refused
// without inflating it.
func TestDecompressionBombs(t *testing.T) {
	// A snappy block whose preamble claims 1 GiB.
	claim := binary.AppendUvarint(nil, 1<<30)
	claim = append(claim, 0)
	var it RecordIter
	var err error
	n := allocBytes(func() { _, err = it.Reset(rawBatch(CodecSnappy, 1, claim)) })
	if !errors.Is(err, ErrBatchTooLarge) || n > 1<<20 {
		t.Fatalf("snappy claim: %v, %d bytes allocated", err, n)
	}
	if testing.Short() {
		return
	}
	zeros := make([]byte, maxInflated+4096)
	var b BatchBuilder
	for _, codec := range []Codec{CodecZstd, CodecGzip, CodecSnappy, CodecLZ4} {
		b.Reset()
		b.SetCompression(codec)
		b.Append(nil, zeros, nil, 0)
		out, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		var it RecordIter
		if _, err := it.Reset(out); !errors.Is(err, ErrBatchTooLarge) {
			t.Fatalf("%v bomb of %d bytes: %v", codec, len(out), err)
		}
	}
}
