package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The record batch codec is checked against franz-go's kmsg, an independent implementation of Kafka's
// RecordBatch v2: batches built here must read there, batches built there must validate and iterate
// here, with equal fields and an equal CRC-32C. Compression in the kmsg direction is done by hand with
// klauspost/compress, as a Kafka client would, and lz4 by franz-go's own producer compressor (and
// decompressor, in the other direction).

type testRecord struct {
	tsDelta int64
	key     []byte
	value   []byte
	headers []Header
}

type batchCase struct {
	name    string
	firstTs int64
	recs    []testRecord
}

func batchCases() []batchCase {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	many := make([]Header, 200)
	for i := range many {
		many[i] = Header{Key: fmt.Appendf(nil, "h%03d", i), Value: fmt.Appendf(nil, "v%d", i*i)}
		if i%7 == 0 {
			many[i].Value = nil
		}
		if i%11 == 0 {
			many[i].Value = []byte{}
		}
	}
	var seq []testRecord
	for i := range 300 {
		seq = append(seq, testRecord{tsDelta: int64(i * 3), key: fmt.Appendf(nil, "k%d", i), value: bytes.Repeat([]byte{byte(i)}, i)})
	}
	return []batchCase{
		{"one", 1_700_000_000_000, []testRecord{{0, []byte("k"), []byte("v"), nil}}},
		{"null-key-null-value", 1_700_000_000_000, []testRecord{{0, nil, nil, nil}}},
		{"empty-key-empty-value", 1_700_000_000_000, []testRecord{{0, []byte{}, []byte{}, nil}}},
		{"mixed-null-empty", 5, []testRecord{
			{0, nil, []byte("a"), nil}, {1, []byte{}, nil, nil}, {2, []byte("k"), []byte{}, []Header{{Key: []byte{}, Value: nil}}},
		}},
		{"headers-null-values", 1_700_000_000_000, []testRecord{
			{0, []byte("k"), []byte("v"), []Header{{Key: []byte("a"), Value: nil}, {Key: []byte("b"), Value: []byte{}}, {Key: []byte("c"), Value: []byte("x")}}},
		}},
		{"many-headers", 1_700_000_000_000, []testRecord{{0, []byte("k"), []byte("v"), many}, {10, nil, nil, many[:3]}}},
		{"large-value", 1_700_000_000_000, []testRecord{{0, []byte("big"), big, nil}, {1, nil, big[:70000], nil}}},
		{"negative-ts-delta", 1_700_000_000_000, []testRecord{
			{0, nil, []byte("a"), nil}, {-5, nil, []byte("b"), nil}, {-100_000, nil, []byte("c"), nil}, {7, nil, []byte("d"), nil},
		}},
		{"negative-timestamps", -1, []testRecord{{0, nil, []byte("a"), nil}, {-1 << 40, nil, []byte("b"), nil}}},
		{"many-records", 1_700_000_000_000, seq},
	}
}

var kmsgCodecs = []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}

// franzLZ4 compresses src as franz-go's kgo producer does for a batch with lz4 compression.
func franzLZ4(t testing.TB, src []byte) []byte {
	t.Helper()
	c, err := kgo.DefaultCompressor(kgo.Lz4Compression())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	out, codec := c.Compress(&buf, src)
	if codec != kgo.CodecLz4 {
		t.Fatalf("franz-go compressed with %v", codec)
	}
	return bytes.Clone(out)
}

// buildWire builds c with wire's BatchBuilder.
// t may be nil (seed generation).
func buildWire(t testing.TB, c batchCase, codec Codec) []byte {
	b := NewBatchBuilder(0)
	b.SetCompression(codec)
	for _, r := range c.recs {
		b.Append(r.key, r.value, r.headers, c.firstTs+r.tsDelta)
	}
	out, err := b.Build()
	if err != nil {
		panic(fmt.Sprintf("Build: %v", err))
	}
	return bytes.Clone(out)
}

// buildKmsg builds c the way a Kafka client does: kmsg records, records section compressed as a
// whole, CRC-32C (Castagnoli) over attributes..end.
func buildKmsg(t testing.TB, c batchCase, codec Codec, xerial bool) []byte {
	t.Helper()
	var recs []byte
	maxTs := c.firstTs
	for i, r := range c.recs {
		kr := kmsg.Record{
			TimestampDelta64: r.tsDelta,
			OffsetDelta:      int32(i),
			Key:              r.key,
			Value:            r.value,
		}
		for _, h := range r.headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: string(h.Key), Value: h.Value})
		}
		// Length is everything after the length field: encode once to measure.
		body := kr.AppendTo(nil)
		_, n := binary.Varint(body)
		kr.Length = int32(len(body) - n)
		recs = kr.AppendTo(recs)
		maxTs = max(maxTs, c.firstTs+r.tsDelta)
	}
	switch codec {
	case CodecNone:
	case CodecGzip:
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(recs)
		w.Close()
		recs = buf.Bytes()
	case CodecSnappy:
		if xerial {
			recs = xerialEncode(recs, 32<<10)
		} else {
			recs = s2.EncodeSnappy(nil, recs)
		}
	case CodecZstd:
		enc, _ := zstd.NewWriter(nil)
		recs = enc.EncodeAll(recs, nil)
		enc.Close()
	case CodecLZ4:
		recs = franzLZ4(t, recs)
	default:
		t.Fatalf("codec %v", codec)
	}
	rb := kmsg.RecordBatch{
		FirstOffset:          0,
		Length:               int32(49 + len(recs)),
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           int16(codec),
		LastOffsetDelta:      int32(len(c.recs) - 1),
		FirstTimestamp:       c.firstTs,
		MaxTimestamp:         maxTs,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           int32(len(c.recs)),
		Records:              recs,
	}
	out := rb.AppendTo(nil)
	rb.CRC = int32(crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return rb.AppendTo(out[:0])
}

// xerialEncode frames raw snappy blocks the way Kafka's Java client (xerial snappy-java) does.
func xerialEncode(src []byte, chunk int) []byte {
	out := append([]byte(nil), xerialMagic...)
	out = binary.BigEndian.AppendUint32(out, 1)
	out = binary.BigEndian.AppendUint32(out, 1)
	for len(src) > 0 {
		n := min(chunk, len(src))
		blk := s2.EncodeSnappy(nil, src[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(blk)))
		out = append(out, blk...)
		src = src[n:]
	}
	return out
}

// kmsgDecompress inflates a records section with klauspost/compress directly.
func kmsgDecompress(t testing.TB, codec Codec, src []byte) []byte {
	t.Helper()
	switch codec {
	case CodecNone:
		return src
	case CodecGzip:
		r, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case CodecSnappy:
		out, err := s2.Decode(nil, src)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case CodecZstd:
		d, _ := zstd.NewReader(nil)
		defer d.Close()
		out, err := d.DecodeAll(src, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case CodecLZ4:
		out, err := kgo.DefaultDecompressor().Decompress(src, kgo.CodecLz4)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(out)
	}
	t.Fatalf("codec %v", codec)
	return nil
}

// kmsgRecords splits an uncompressed records section into kmsg records, checking that each record
// re-encodes to exactly its bytes and that nothing trails the last one.
func kmsgRecords(t testing.TB, recs []byte, n int) []kmsg.Record {
	t.Helper()
	var out []kmsg.Record
	for i := range n {
		l, m := binary.Varint(recs)
		if m <= 0 || l < 0 || int64(len(recs)-m) < l {
			t.Fatalf("record %d: bad length varint", i)
		}
		raw := recs[:m+int(l)]
		var r kmsg.Record
		if err := r.ReadFrom(raw); err != nil {
			t.Fatalf("record %d: kmsg ReadFrom: %v", i, err)
		}
		if re := r.AppendTo(nil); !bytes.Equal(re, raw) {
			t.Fatalf("record %d: kmsg re-encodes differently:\n got %x\nwant %x", i, re, raw)
		}
		out = append(out, r)
		recs = recs[len(raw):]
	}
	if len(recs) != 0 {
		t.Fatalf("%d bytes after %d records", len(recs), n)
	}
	return out
}

// sameBytes compares two byte fields including their nullness.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func TestKmsgReadsWireBatches(t *testing.T) {
	for _, c := range batchCases() {
		for _, codec := range kmsgCodecs {
			t.Run(c.name+"/"+codec.String(), func(t *testing.T) {
				raw := buildWire(t, c, codec)
				var rb kmsg.RecordBatch
				if err := rb.ReadFrom(raw); err != nil {
					t.Fatalf("kmsg ReadFrom: %v", err)
				}
				if rb.Magic != 2 || int(rb.Length)+12 != len(raw) || rb.NumRecords != int32(len(c.recs)) ||
					rb.LastOffsetDelta != int32(len(c.recs)-1) || rb.Attributes != int16(codec) ||
					rb.FirstTimestamp != c.firstTs || rb.ProducerID != -1 || rb.FirstSequence != -1 {
					t.Fatalf("header: %+v", rb)
				}
				maxTs := c.firstTs
				for _, r := range c.recs {
					maxTs = max(maxTs, c.firstTs+r.tsDelta)
				}
				if rb.MaxTimestamp != maxTs {
					t.Fatalf("max timestamp %d, want %d", rb.MaxTimestamp, maxTs)
				}
				crc := crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli))
				if uint32(rb.CRC) != crc || BatchCRC(raw) != crc {
					t.Fatalf("crc field %08x, kafka crc %08x, BatchCRC %08x", uint32(rb.CRC), crc, BatchCRC(raw))
				}
				recs := kmsgRecords(t, kmsgDecompress(t, codec, rb.Records), len(c.recs))
				for i, r := range recs {
					want := c.recs[i]
					if r.OffsetDelta != int32(i) || r.TimestampDelta64 != want.tsDelta || r.Attributes != 0 {
						t.Fatalf("record %d: offset delta %d ts delta %d attrs %d", i, r.OffsetDelta, r.TimestampDelta64, r.Attributes)
					}
					if !sameBytes(r.Key, want.key) || !sameBytes(r.Value, want.value) {
						t.Fatalf("record %d: key %q value %.20q, want %q %.20q", i, r.Key, r.Value, want.key, want.value)
					}
					if len(r.Headers) != len(want.headers) {
						t.Fatalf("record %d: %d headers, want %d", i, len(r.Headers), len(want.headers))
					}
					for j, h := range r.Headers {
						if h.Key != string(want.headers[j].Key) || !sameBytes(h.Value, want.headers[j].Value) {
							t.Fatalf("record %d header %d: %q=%q, want %q=%q", i, j, h.Key, h.Value, want.headers[j].Key, want.headers[j].Value)
						}
					}
				}
			})
		}
	}
}

func TestWireReadsKmsgBatches(t *testing.T) {
	for _, c := range batchCases() {
		for _, codec := range kmsgCodecs {
			variants := []bool{false}
			if codec == CodecSnappy {
				variants = append(variants, true)
			}
			for _, xerial := range variants {
				name := c.name + "/" + codec.String()
				if xerial {
					name += "-xerial"
				}
				t.Run(name, func(t *testing.T) {
					raw := buildKmsg(t, c, codec, xerial)
					// A trailing byte of a following batch must not matter.
					h, err := ValidateBatch(append(bytes.Clone(raw), 0xAA), 0)
					if err != nil {
						t.Fatalf("ValidateBatch: %v", err)
					}
					if h.Size() != len(raw) || h.RecordCount != int32(len(c.recs)) || h.Codec() != codec ||
						h.FirstTimestamp != c.firstTs || h.LeaderEpoch != -1 || h.ProducerID != -1 {
						t.Fatalf("header %+v", h)
					}
					if h.CRC != BatchCRC(raw) || h.CRC != crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)) {
						t.Fatalf("crc %08x", h.CRC)
					}
					const base = 1 << 40
					SetBaseOffset(raw, base)
					if _, err := ValidateBatch(raw, 0); err != nil {
						t.Fatalf("ValidateBatch after SetBaseOffset: %v", err)
					}
					if _, err := ValidateProduced(raw, 0); err != nil {
						t.Fatalf("ValidateProduced: %v", err)
					}
					var it RecordIter
					if _, err := it.Reset(raw); err != nil {
						t.Fatalf("Reset: %v", err)
					}
					checkIter(t, &it, c, base)
				})
			}
		}
	}
}

// checkIter requires it to yield exactly c's records at offsets base, base+1, ...
func checkIter(t testing.TB, it *RecordIter, c batchCase, base int64) {
	t.Helper()
	var r Record
	var hs []Header
	i := 0
	for it.Next(&r) {
		if i >= len(c.recs) {
			t.Fatalf("more than %d records", len(c.recs))
		}
		want := c.recs[i]
		if r.Offset != base+int64(i) || r.Timestamp != c.firstTs+want.tsDelta || r.Attributes != 0 {
			t.Fatalf("record %d: offset %d timestamp %d", i, r.Offset, r.Timestamp)
		}
		if !sameBytes(r.Key, want.key) || !sameBytes(r.Value, want.value) {
			t.Fatalf("record %d: key %q value %.20q, want %q %.20q", i, r.Key, r.Value, want.key, want.value)
		}
		if r.HeaderCount() != len(want.headers) {
			t.Fatalf("record %d: %d headers, want %d", i, r.HeaderCount(), len(want.headers))
		}
		hs = r.AppendHeaders(hs[:0])
		for j, h := range hs {
			if !sameBytes(h.Key, want.headers[j].Key) || !sameBytes(h.Value, want.headers[j].Value) {
				t.Fatalf("record %d header %d: %q=%q", i, j, h.Key, h.Value)
			}
		}
		if len(want.headers) > 0 {
			k := want.headers[len(want.headers)-1].Key
			if v, ok := r.Header(string(k)); !ok || !bytes.Equal(v, firstHeader(want.headers, k)) {
				t.Fatalf("record %d: Header(%q) = %q, %v", i, k, v, ok)
			}
		}
		i++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iter: %v", err)
	}
	if i != len(c.recs) {
		t.Fatalf("%d records, want %d", i, len(c.recs))
	}
}

func firstHeader(hs []Header, key []byte) []byte {
	for _, h := range hs {
		if bytes.Equal(h.Key, key) {
			return h.Value
		}
	}
	return nil
}

// TestWireKmsgSameBytes: for an uncompressed batch with the same header fields both encoders must
// produce the same bytes, CRC included.
func TestWireKmsgSameBytes(t *testing.T) {
	for _, c := range batchCases() {
		t.Run(c.name, func(t *testing.T) {
			w := buildWire(t, c, CodecNone)
			k := buildKmsg(t, c, CodecNone, false)
			// wire leaves the leader epoch 0 (the broker's to set); kmsg producers write -1.
			binary.BigEndian.PutUint32(k[offLeaderEpoch:], 0)
			if !bytes.Equal(w, k) {
				t.Fatalf("encodings differ:\nwire %x\nkmsg %x", w[:min(len(w), 128)], k[:min(len(k), 128)])
			}
		})
	}
}
