package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// Fuzz targets for every decoder. Seed corpora live in testdata/fuzz/<FuzzName>/ and are rewritten by
//
//	go test -run TestWriteFuzzSeeds ./wire/ -args -wire.write-seeds
//
// Run one target with: go test -run '^$' -fuzz '^FuzzDecoder$' -fuzztime 60s ./wire/

var writeSeeds = flag.Bool("wire.write-seeds", false, "rewrite the committed fuzz seed corpora under testdata/fuzz")

// fuzzMaxFrame is small so that oversized frames are common in fuzzed streams.
const fuzzMaxFrame = 512

func fuzzSeeds() map[string][][]any {
	rng := rand.New(rand.NewPCG(11, 12))
	stream, _ := testStream(rng, 12, 40)
	big, _ := testStream(rng, 3, 600) // holds frames over fuzzMaxFrame
	malformed := append(bytes.Clone(stream[:40]), 0, 0, 0, 2, 1, 0, 0, 0, 0, 0)

	good := threeRecords()
	var compressed [][]byte
	for _, codec := range []Codec{CodecGzip, CodecSnappy, CodecZstd, CodecLZ4} {
		c := batchCases()[4]
		compressed = append(compressed, buildWire(nil, c, codec))
	}
	recs := good[BatchHeaderSize:]

	var msgs [][]any
	for _, c := range msgCases() {
		msgs = append(msgs, []any{c.msg.Append(nil)})
	}
	// Bodies that parse but carry values the protocol does not define: every decoder must refuse them.
	msgs = append(msgs,
		[]any{(&Produce{Durability: 9, Topic: []byte("t"), Batches: []byte("x")}).Append(nil)},
		[]any{(&Produce{Partition: -7, Topic: []byte("t"), Batches: []byte("x")}).Append(nil)},
		[]any{append((&Subscribe{Topic: "t"}).Append(nil), 3)},
		[]any{(&Commit{Group: "g", Topic: "t", Partition: -1}).Append(nil)})
	return map[string][][]any{
		"FuzzDecoder": {
			{stream, []byte{3, 17, 0, 1, 200}},
			{stream, []byte{}},
			{big, []byte{5, 5, 5}},
			{malformed, []byte{9, 1}},
			{AppendError(nil, 7, CodeTimeout, "late"), []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		},
		"FuzzValidateBatch": {
			{good, false},
			{good, true},
			{compressed[0], false},
			{compressed[1], true},
			{compressed[2], false},
			{rawBatch(CodecNone, 2, append(rawRecord(0, nil, nil), rawRecord(1, []byte("k"), nil, []byte("h"), nil)...)), true},
			{compressed[3], true},
		},
		"FuzzRecordIter": {
			{recs, int32(3), uint8(CodecNone)},
			{recs, int32(3), uint8(CodecZstd)},
			{recs, int32(3), uint8(CodecSnappy)},
			{recs, int32(3), uint8(CodecGzip)},
			{recs, int32(2), uint8(CodecNone)},
			{rawRecord(1, nil, nil), int32(1), uint8(CodecNone)},
			{recs, int32(3), uint8(CodecLZ4)},
		},
		"FuzzMessages": msgs,
		"FuzzValidateProduced": {
			{recs, int32(3), uint8(CodecGzip), true},
			{recs, int32(3), uint8(CodecZstd), true},
			{recs, int32(3), uint8(CodecSnappy), true},
			{recs, int32(4), uint8(CodecGzip), true},                   // header says 4, holds 3
			{recs, int32(2), uint8(CodecZstd), true},                   // header says 2, holds 3
			{recs, int32(3), uint8(CodecNone), false},                  // uncompressed: ValidateBatch's rules
			{recs, int32(3), uint8(CodecZstd), false},                  // a zstd batch whose body is not zstd
			{recs, int32(1), uint8(CodecLZ4), false},                   // an lz4 batch whose body is not lz4
			{zstdRLEBomb(3, false), int32(1), uint8(CodecZstd), false}, // inflates past the fuzz limit
			{zstdRLEBomb(1, true), int32(1), uint8(CodecZstd), false},
			{append(binary.AppendUvarint(nil, 1<<20), 0), int32(1), uint8(CodecSnappy), false},
			{xerialEncode(recs, 16), int32(3), uint8(CodecSnappy), false},
			{bytes.Repeat(rawRecord(0, nil, []byte("v")), 2), int32(2), uint8(CodecSnappy), true}, // deltas 0, 0
			{recs, int32(3), uint8(CodecLZ4), true},
			{recs, int32(2), uint8(CodecLZ4), true},            // header says 2, holds 3
			{lz4ZerosSeed(), int32(1), uint8(CodecLZ4), false}, // inflates past the fuzz limit
		},
	}
}

// lz4ZerosSeed is 64 KiB of zeros in an LZ4 frame: a few hundred bytes that inflate past the fuzz
// targets' small limits.
func lz4ZerosSeed() []byte {
	var c compressor
	out, err := c.compress(CodecLZ4, nil, make([]byte, 64<<10))
	if err != nil {
		panic(err)
	}
	return out
}

func addSeeds(f *testing.F) {
	for _, s := range fuzzSeeds()[f.Name()] {
		f.Add(s...)
	}
}

// TestWriteFuzzSeeds writes the seed corpora in the `go test fuzz v1` format when asked to.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -wire.write-seeds to rewrite testdata/fuzz")
	}
	for name, seeds := range fuzzSeeds() {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			var b bytes.Buffer
			b.WriteString("go test fuzz v1\n")
			for _, v := range s {
				switch v := v.(type) {
				case []byte:
					fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
				case bool:
					fmt.Fprintf(&b, "bool(%v)\n", v)
				case int32:
					fmt.Fprintf(&b, "int32(%d)\n", v)
				case uint8:
					fmt.Fprintf(&b, "uint8(%d)\n", v)
				default:
					t.Fatalf("seed type %T", v)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// FuzzDecoder feeds a byte stream to a Decoder in fuzzer-chosen chunks: it must never panic and must
// yield exactly the frames, and the error, that parsing the whole buffer at once gives.
func FuzzDecoder(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		// Reference: the whole buffer at once.
		var want []testFrame
		var wantErr error
		rest := stream
		for len(rest) > 0 {
			fr, n, err := ParseFrame(rest, fuzzMaxFrame)
			if err == ErrTruncated {
				break
			}
			if err != nil {
				wantErr = err
				break
			}
			want = append(want, testFrame{fr.Op, fr.Flags, fr.Corr, string(fr.Body)})
			rest = rest[n:]
		}

		// Chunk lengths come from cuts; whatever is left is the last chunk.
		var points []int
		p := 0
		for _, c := range cuts {
			p += int(c)
			if p > len(stream) {
				break
			}
			points = append(points, p)
		}
		d := NewDecoder(fuzzMaxFrame)
		got, err := feedChunks(t, d, stream, points)
		if !equalFrames(got, want[:min(len(want), len(got))]) {
			t.Fatalf("frames differ from whole-buffer parsing")
		}
		switch {
		case wantErr != nil:
			if len(got) != len(want) || err == nil || !sameSentinel(err, wantErr) {
				t.Fatalf("got %d frames, %v; whole buffer: %d frames, %v", len(got), err, len(want), wantErr)
			}
		case err != nil:
			t.Fatalf("decoder error %v on a stream that parses whole", err)
		case len(got) != len(want) || d.Buffered() != len(rest):
			t.Fatalf("%d frames, %d buffered; whole buffer: %d frames, %d left", len(got), d.Buffered(), len(want), len(rest))
		}
		if d.Buffered() > fuzzMaxFrame {
			t.Fatalf("decoder holds %d bytes, over the %d limit", d.Buffered(), fuzzMaxFrame)
		}
	})
}

func sameSentinel(a, b error) bool {
	for _, s := range []error{ErrMalformed, ErrFrameTooLarge, ErrTruncated} {
		if errors.Is(a, s) != errors.Is(b, s) {
			return false
		}
	}
	return true
}

// FuzzValidateBatch: ValidateBatch never panics on arbitrary bytes, and a batch it accepts iterates
// cleanly with exactly RecordCount records at consecutive offsets. With fix set the CRC is corrected
// first, so the fuzzer reaches the record checks behind it.
func FuzzValidateBatch(f *testing.F) {
	addSeeds(f)
	var it RecordIter
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix && len(b) >= BatchHeaderSize {
			if n, err := BatchSize(b); err == nil && n <= len(b) {
				b = fixCRC(bytes.Clone(b)) // the fuzzer's input is not ours to modify
			}
		}
		h, err := ValidateBatch(b, 0)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("error %v is neither corrupt nor truncated", err)
			}
			if _, err2 := ValidateBatch(b, 100); errors.Is(err, ErrTruncated) && len(b) >= BatchHeaderSize && h.Size() > 100 && !errors.Is(err2, ErrBatchTooLarge) {
				t.Fatalf("oversized truncated batch: %v", err2)
			}
			return
		}
		if h.Size() > len(b) || h.Size() < BatchHeaderSize || h.RecordCount <= 0 {
			t.Fatalf("accepted header %+v for %d bytes", h, len(b))
		}
		if _, err := ValidateBatch(b, h.Size()-1); !errors.Is(err, ErrBatchTooLarge) {
			t.Fatalf("limit one below the size: %v", err)
		}
		h2, err := it.Reset(b)
		if err != nil {
			if h.Codec() == CodecNone {
				t.Fatalf("Reset of a valid uncompressed batch: %v", err)
			}
			return
		}
		if h2 != h {
			t.Fatalf("Reset header %+v, ValidateBatch %+v", h2, h)
		}
		n := countRecords(t, &it, h.BaseOffset)
		if h.Codec() == CodecNone && (it.Err() != nil || n != int(h.RecordCount)) {
			t.Fatalf("valid batch iterates %d of %d records: %v", n, h.RecordCount, it.Err())
		}
	})
}

// countRecords drains it, touching every field of every record, and requires consecutive offsets
// from base while it yields.
func countRecords(t *testing.T, it *RecordIter, base int64) int {
	var r Record
	var hs []Header
	n := 0
	for it.Next(&r) {
		hs = r.AppendHeaders(hs[:0])
		if len(hs) != r.HeaderCount() {
			t.Fatalf("%d headers, HeaderCount %d", len(hs), r.HeaderCount())
		}
		for _, h := range hs {
			if h.Key == nil {
				t.Fatal("null header key yielded")
			}
			if v, ok := r.Header(string(h.Key)); !ok || !bytes.Equal(v, firstHeader(hs, h.Key)) {
				t.Fatalf("Header(%q)", h.Key)
			}
		}
		_ = len(r.Key) + len(r.Value)
		n++
	}
	return n
}

// FuzzRecordIter wraps a fuzzed records section in a batch header and iterates it, uncompressed and
// compressed with the given codec: both must yield the same records, and the uncompressed batch must
// validate exactly when it iterates cleanly with count records at offset deltas 0..count-1.
func FuzzRecordIter(f *testing.F) {
	addSeeds(f)
	var plain, packed RecordIter
	var comp compressor
	f.Fuzz(func(t *testing.T, recs []byte, count int32, codec uint8) {
		b := rawBatch(CodecNone, count, recs)
		if _, err := plain.Reset(b); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		var got []Record
		var r Record
		sequential := true
		for plain.Next(&r) {
			if r.Offset != int64(len(got)) {
				sequential = false
			}
			got = append(got, r)
			if len(got) > len(recs) {
				t.Fatalf("%d records from %d bytes", len(got), len(recs))
			}
		}
		clean := plain.Err() == nil && len(got) == int(count) && count > 0 && sequential
		if _, err := ValidateBatch(b, 0); (err == nil) != clean {
			t.Fatalf("ValidateBatch: %v; iteration: %d of %d records, sequential %v, %v", err, len(got), count, sequential, plain.Err())
		}

		c := Codec(codec % 5)
		if c == CodecNone {
			return
		}
		z, err := comp.compress(c, nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := packed.Reset(rawBatch(c, count, z)); err != nil {
			t.Fatalf("Reset %v: %v", c, err)
		}
		i := 0
		for packed.Next(&r) {
			if i >= len(got) || !sameRecord(&r, &got[i]) {
				t.Fatalf("%v record %d differs from the uncompressed one", c, i)
			}
			i++
		}
		if i != len(got) || (packed.Err() == nil) != (plain.Err() == nil) {
			t.Fatalf("%v: %d records, %v; uncompressed %d, %v", c, i, packed.Err(), len(got), plain.Err())
		}
	})
}

// fuzzInflateLimit is the batch limit FuzzValidateProduced validates against: small, so that batches
// inflating past it are common.
const fuzzInflateLimit = 4096

// FuzzValidateProduced validates a batch whose body is the fuzzed bytes compressed honestly with the
// codec (honest) or taken as they are (a body that may not be in its codec at all). ValidateProduced
// must never panic, and must accept a compressed batch exactly when an iterator bounded by the same
// limit inflates it and its inflated records pass as an uncompressed batch (ValidateBatch's rules);
// an uncompressed batch exactly when ValidateBatch accepts it. An accepted batch
// iterates cleanly through exactly recordCount records.
func FuzzValidateProduced(f *testing.F) {
	addSeeds(f)
	var comp compressor
	var ref, it RecordIter
	ref.SetMaxInflated(fuzzInflateLimit - BatchHeaderSize)
	f.Fuzz(func(t *testing.T, body []byte, count int32, codec uint8, honest bool) {
		c := Codec(codec % 5)
		if honest && c != CodecNone {
			var err error
			if body, err = comp.compress(c, nil, body); err != nil {
				t.Fatal(err)
			}
		}
		b := rawBatch(c, count, body)
		h, err := ValidateProduced(b, fuzzInflateLimit)

		var want error
		switch _, verr := ValidateBatch(b, fuzzInflateLimit); {
		case verr != nil:
			want = verr
		case c == CodecNone:
		default:
			if _, rerr := ref.Reset(b); rerr != nil {
				want = rerr
			} else if _, rerr := ValidateBatch(rawBatch(CodecNone, count, ref.recs), 0); rerr != nil {
				want = rerr
			}
		}
		if !sameKind(err, want) {
			t.Fatalf("%v batch, count %d: ValidateProduced %v, reference %v", c, count, err, want)
		}
		if err != nil {
			return
		}
		if _, err := it.Reset(b); err != nil {
			t.Fatalf("accepted %v batch does not iterate: %v", c, err)
		}
		if n := countRecords(t, &it, 0); n != int(h.RecordCount) || it.Err() != nil {
			t.Fatalf("accepted %v batch iterates %d of %d records: %v", c, n, h.RecordCount, it.Err())
		}
	})
}

// sameKind reports whether a and b are both nil or wrap the same validation sentinel.
func sameKind(a, b error) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	for _, s := range []error{ErrCorrupt, ErrBatchTooLarge, ErrCodec, ErrTruncated} {
		if errors.Is(a, s) != errors.Is(b, s) {
			return false
		}
	}
	return true
}

func sameRecord(a, b *Record) bool {
	return a.Offset == b.Offset && a.Timestamp == b.Timestamp && a.Attributes == b.Attributes &&
		sameBytes(a.Key, b.Key) && sameBytes(a.Value, b.Value) && a.headerCount == b.headerCount &&
		bytes.Equal(a.headers, b.headers)
}

// FuzzMessages decodes arbitrary bytes as every body type: no Decode may panic, and whatever decodes
// re-encodes to the same bytes and decodes again to an equal value.
func FuzzMessages(f *testing.F) {
	addSeeds(f)
	cases := msgCases()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range cases {
			m := c.new()
			if err := m.Decode(b); err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s: error %v is not ErrMalformed", c.name, err)
				}
				continue
			}
			re := m.Append(nil)
			canonical := b
			if s, ok := m.(*Subscribe); ok && s.Reset == ResetEarliest && len(b) == len(re)+1 {
				// An explicit reset byte 0 is the default, which Append leaves out.
				canonical = b[:len(re)]
			}
			if !bytes.Equal(re, canonical) {
				t.Fatalf("%s: decoded %+v re-encodes as %x, input %x", c.name, m, re, b)
			}
			m2 := c.new()
			if err := m2.Decode(re); err != nil {
				t.Fatalf("%s: re-encoding does not decode: %v", c.name, err)
			}
			normalize(reflect.ValueOf(m))
			normalize(reflect.ValueOf(m2))
			if !reflect.DeepEqual(m, m2) {
				t.Fatalf("%s: %+v decodes again as %+v", c.name, m, m2)
			}
		}
	})
}
