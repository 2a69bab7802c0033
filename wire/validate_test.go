package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// compressedCodecs are the codecs ValidateProduced inflates.
var compressedCodecs = []Codec{CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}

// packBatch compresses hand-made records with codec and wraps them in a CRC-valid batch header that
// claims count records: what a producer that lies (or a broken one) sends.
func packBatch(t testing.TB, codec Codec, count int32, recs []byte) []byte {
	t.Helper()
	var c compressor
	z, err := c.compress(codec, nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	return rawBatch(codec, count, z)
}

// TestValidateProducedCompressedLies: a CRC-valid compressed batch whose records do not match its
// header, or whose body is not in its codec at all, is refused as corrupt at produce, for every codec.
// ValidateBatch (storage recovery) still accepts the same bytes: it does not inflate.
func TestValidateProducedCompressedLies(t *testing.T) {
	r0 := rawRecord(0, []byte("k0"), []byte("v0"))
	r1 := rawRecord(1, []byte("k1"), []byte("v1"))
	r5 := rawRecord(5, []byte("k5"), []byte("v5"))
	two := append(bytes.Clone(r0), r1...)
	for _, codec := range compressedCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			if h, err := ValidateProduced(packBatch(t, codec, 2, two), 1<<20); err != nil || h.RecordCount != 2 {
				t.Fatalf("honest batch: %+v %v", h, err)
			}
			cases := []struct {
				name string
				b    []byte
			}{
				{"header-3-holds-2", packBatch(t, codec, 3, two)},
				{"header-1-holds-2", packBatch(t, codec, 1, two)},
				{"offset-delta-5", packBatch(t, codec, 2, append(bytes.Clone(r0), r5...))},
				{"record-cut-short", packBatch(t, codec, 2, two[:len(two)-1])},
				{"trailing-byte", packBatch(t, codec, 2, append(bytes.Clone(two), 0))},
				{"body-not-" + codec.String(), rawBatch(codec, 2, []byte("these bytes were never compressed"))},
				{"empty-body", rawBatch(codec, 1, nil)},
			}
			for _, c := range cases {
				if _, err := ValidateBatch(c.b, 1<<20); err != nil {
					t.Fatalf("%s: ValidateBatch (no inflation) refused it: %v", c.name, err)
				}
				_, err := ValidateProduced(c.b, 1<<20)
				if !errors.Is(err, ErrCorrupt) || CodeOf(err) != CodeCorruptBatch {
					t.Errorf("%s: %v (code %v), want corrupt", c.name, err, CodeOf(err))
				}
			}
		})
	}
	t.Run("lz4-malformed", func(t *testing.T) {
		// Frames that break the LZ4 frame format in each part are refused as corrupt (the batch CRC
		// is valid: it covers whatever the producer sent), never accepted or panicking.
		recs := rawRecord(0, []byte("k"), bytes.Repeat([]byte("lz4 "), 5000))
		good := lz4Frame(t, recs, lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(true), lz4.BlockChecksumOption(true))
		if _, err := ValidateProduced(rawBatch(CodecLZ4, 1, good), 1<<20); err != nil {
			t.Fatalf("good frame: %v", err)
		}
		flip := func(at int) []byte {
			b := bytes.Clone(good)
			b[at] ^= 0x40
			return b
		}
		for name, body := range map[string][]byte{
			"bad-magic":             flip(0),
			"bad-header-checksum":   flip(6),
			"bad-block-size":        append(append(bytes.Clone(good[:7]), 0xff, 0xff, 0xff, 0x7f), good[11:]...),
			"corrupt-block":         flip(20),
			"bad-block-checksum":    flip(len(good) - 12),
			"bad-content-checksum":  flip(len(good) - 1),
			"truncated":             good[:len(good)/2],
			"no-end-mark":           good[:len(good)-8],
			"legacy-frame-garbage":  {0x02, 0x21, 0x4c, 0x18, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3},
			"legacy-frame":          lz4Frame(t, recs, lz4.LegacyOption(true)), // 8 MiB blocks; no Kafka client writes it
			"header-only":           good[:7],
			"not-lz4":               []byte("these bytes were never compressed"),
			"reserved-version-bits": func() []byte { b := bytes.Clone(good); b[4] = 0x00; return b }(),
		} {
			_, err := ValidateProduced(rawBatch(CodecLZ4, 1, body), 1<<20)
			if !errors.Is(err, ErrCorrupt) || CodeOf(err) != CodeCorruptBatch {
				t.Errorf("%s: %v (code %v), want corrupt", name, err, CodeOf(err))
			}
			var it RecordIter
			if _, err := it.Reset(rawBatch(CodecLZ4, 1, body)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s: iterator: %v, want corrupt", name, err)
			}
		}
	})
	t.Run("uncompressed-unchanged", func(t *testing.T) {
		good := threeRecords()
		if h, err := ValidateProduced(good, 0); err != nil || h.Size() != len(good) {
			t.Fatalf("%+v %v", h, err)
		}
		if _, err := ValidateProduced(rawBatch(CodecNone, 3, two), 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("uncompressed lie: %v", err)
		}
	})
}

// zstdStream compresses src with the streaming encoder, which writes no frame content size: the
// decoder cannot size its output from the header.
func zstdStream(t testing.TB, src []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(src); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(buf.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("streamed zstd frame: fcs %v, %v", h.HasFCS, err)
	}
	return buf.Bytes()
}

// TestValidateProducedInflateLimit: the batch as it would be uncompressed must fit the batch limit; one
// byte over is CodeBatchTooLarge, for every codec and for zstd with and without a declared size.
func TestValidateProducedInflateLimit(t *testing.T) {
	// One record whose value is sized so that header + records is exactly limit bytes.
	const limit = 300 << 10
	value := bytes.Repeat([]byte("0123456789abcdef"), limit/16)
	var recs []byte
	for n := limit - BatchHeaderSize - 8; ; n-- {
		recs = rawRecord(0, nil, value[:n])
		if BatchHeaderSize+len(recs) <= limit {
			break
		}
	}
	if BatchHeaderSize+len(recs) != limit {
		t.Fatalf("records of %d bytes, want %d", len(recs), limit-BatchHeaderSize)
	}
	type variant struct {
		name string
		b    []byte
	}
	var variants []variant
	for _, codec := range compressedCodecs {
		variants = append(variants, variant{codec.String(), packBatch(t, codec, 1, recs)})
	}
	variants = append(variants, variant{"zstd-no-content-size", rawBatch(CodecZstd, 1, zstdStream(t, recs))})
	for _, v := range variants {
		if len(v.b) >= limit/4 {
			t.Fatalf("%s: batch of %d bytes does not compress", v.name, len(v.b))
		}
		if _, err := ValidateProduced(v.b, limit); err != nil {
			t.Errorf("%s: inflating to exactly the limit: %v", v.name, err)
		}
		_, err := ValidateProduced(v.b, limit-1)
		if !errors.Is(err, ErrBatchTooLarge) || CodeOf(err) != CodeBatchTooLarge {
			t.Errorf("%s: one byte over the limit: %v (code %v)", v.name, err, CodeOf(err))
		}
		var it RecordIter
		it.SetMaxInflated(limit - BatchHeaderSize - 1)
		if _, err := it.Reset(v.b); !errors.Is(err, ErrBatchTooLarge) {
			t.Errorf("%s: iterator one byte over its bound: %v", v.name, err)
		}
		it.SetMaxInflated(limit - BatchHeaderSize)
		if _, err := it.Reset(v.b); err != nil || it.Check() != nil {
			t.Errorf("%s: iterator at its bound: %v %v", v.name, err, it.Check())
		}
	}
}

// zstdRLEBomb is a zstd frame of n RLE blocks of 128 KiB each, declaring no content size: 4 bytes of
// input per 128 KiB of output, so 8192 blocks (32 KiB) inflate to 1 GiB. With fcs it declares its
// content size in the header.
func zstdRLEBomb(n int, fcs bool) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd} // magic
	if fcs {
		b = append(b, 0xc0, 7<<3) // FHD: 8-byte content size; window descriptor: 2^(10+7) = 128 KiB
		b = binary.LittleEndian.AppendUint64(b, uint64(n)<<17)
	} else {
		b = append(b, 0x00, 7<<3) // FHD: no content size, not single segment; window 128 KiB
	}
	for i := range n {
		h := uint32(128<<10)<<3 | 1<<1 // RLE block of 128 KiB
		if i == n-1 {
			h |= 1 // last block
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 'x')
	}
	return b
}

// gzipZeros is n zero bytes gzipped, streamed so the test never holds them.
func gzipZeros(t testing.TB, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := io.Copy(w, io.LimitReader(zeroReader{}, n)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// lz4Frame compresses src into one LZ4 frame with pierrec/lz4's writer and opts.
func lz4Frame(t testing.TB, src []byte, opts ...lz4.Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	if err := w.Apply(opts...); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(src); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// lz4Zeros is n zero bytes in an LZ4 frame of block size bs, streamed so the test never holds them.
func lz4Zeros(t testing.TB, n int64, bs lz4.BlockSize) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	if err := w.Apply(lz4.BlockSizeOption(bs)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, io.LimitReader(zeroReader{}, n)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestInflationBoundedBeforeMemory: bombs are refused as too large having taken about the limit, not
// what they inflate to: a 32 KiB zstd batch of 1 GiB (with and without a declared size), 64 MiB of
// gzipped zeros, a snappy block claiming 1 GiB. Both at produce (ValidateProduced) and in an iterator
// bounded with SetMaxInflated, as the broker's header filter is.
func TestInflationBoundedBeforeMemory(t *testing.T) {
	const limit = 1 << 20
	bombs := []struct {
		name  string
		codec Codec
		body  []byte
		extra int // decoder buffers the codec borrows whatever the limit (lz4: two blocks)
	}{
		{"zstd-1GiB-rle", CodecZstd, zstdRLEBomb(8192, false), 0},
		{"zstd-1GiB-declared", CodecZstd, zstdRLEBomb(8192, true), 0},
		{"gzip-64MiB-zeros", CodecGzip, gzipZeros(t, 64<<20), 0},
		{"snappy-claims-1GiB", CodecSnappy, append(binary.AppendUvarint(nil, 1<<30), 0), 0},
		{"snappy-xerial-chunks", CodecSnappy, xerialChunks(t, 40, 64<<10), 0},
		{"lz4-64MiB-zeros", CodecLZ4, lz4Zeros(t, 64<<20, lz4.Block64Kb), 2 * 64 << 10},
		{"lz4-64MiB-zeros-4MiB-blocks", CodecLZ4, lz4Zeros(t, 64<<20, lz4.Block4Mb), 2 * 4 << 20},
	}
	for _, bomb := range bombs {
		b := rawBatch(bomb.codec, 1, bomb.body)
		// Cold: a fresh iterator builds its decoders and its buffer on this batch. The buffer grows
		// geometrically up to the limit and never past it (zstd: one block past it), so the total
		// allocated, garbage included, stays under three times the limit (lz4: and its two block
		// buffers, taken whatever the limit).
		var err error
		n := allocBytes(func() {
			var it RecordIter
			it.SetMaxInflated(limit - BatchHeaderSize)
			_, err = it.Reset(b)
		})
		t.Logf("%s (%d bytes): cold iterator allocated %d bytes: %v", bomb.name, len(b), n, err)
		if !errors.Is(err, ErrBatchTooLarge) || n > uint64(3*limit+bomb.extra) {
			t.Errorf("%s: cold iterator: %v, %d bytes allocated, limit %d", bomb.name, err, n, limit)
		}
		// At produce: the pooled inflater may be warm or (after a GC emptied the pool) cold; either
		// way within the same bound.
		n = allocBytes(func() { _, err = ValidateProduced(b, limit) })
		if !errors.Is(err, ErrBatchTooLarge) || n > uint64(3*limit+bomb.extra) {
			t.Errorf("%s: produce: %v, %d bytes allocated, limit %d", bomb.name, err, n, limit)
		}
		// A reused iterator keeps its decoders and buffer: refusing the bomb again takes nothing more
		// (lz4's block buffers come back from lz4's pools, which the measurement's GC and change of
		// GOMAXPROCS may have emptied: they are allowed for again).
		var it RecordIter
		it.SetMaxInflated(limit - BatchHeaderSize)
		_, _ = it.Reset(b)
		n = allocBytes(func() { _, err = it.Reset(b) })
		if !errors.Is(err, ErrBatchTooLarge) || n > uint64(64<<10+bomb.extra) {
			t.Errorf("%s: warm iterator: %v, %d bytes allocated", bomb.name, err, n)
		}
	}
}

// xerialChunks is a xerial-framed snappy body of n chunks of size zero bytes each.
func xerialChunks(t testing.TB, n, size int) []byte {
	t.Helper()
	b := xerialEncode(nil, 1)
	block := s2.EncodeSnappy(nil, make([]byte, size))
	for range n {
		b = binary.BigEndian.AppendUint32(b, uint32(len(block)))
		b = append(b, block...)
	}
	return b
}
