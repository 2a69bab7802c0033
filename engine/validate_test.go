package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"runtime"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/wire"
)

// withBody replaces the records section of batch with body, sets the codec and fixes the length and
// CRC: a CRC-valid batch with any content.
func withBody(batch []byte, codec wire.Codec, count int32, body []byte) []byte {
	b := append(bytes.Clone(batch[:wire.BatchHeaderSize]), body...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12)) // batchLength
	binary.BigEndian.PutUint16(b[21:], uint16(codec))    // attributes
	binary.BigEndian.PutUint32(b[23:], uint32(count-1))  // lastOffsetDelta
	binary.BigEndian.PutUint32(b[57:], uint32(count))    // recordCount
	binary.BigEndian.PutUint32(b[17:], wire.BatchCRC(b)) // crc
	return b
}

// zstdRLEBomb is a zstd frame of n RLE blocks of 128 KiB and no declared size: 8192 blocks, 32 KiB,
// inflate to 1 GiB.
func zstdRLEBomb(n int) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3}
	for i := range n {
		h := uint32(128<<10)<<3 | 1<<1
		if i == n-1 {
			h |= 1
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 'x')
	}
	return b
}

// TestAppendRejectsCompressedLies: Partition.Append inflates a compressed batch and refuses one whose
// records do not match its header, whose body is not in its codec, or that inflates past the batch
// limit; a request holding one stores nothing.
func TestAppendRejectsCompressedLies(t *testing.T) {
	o := testOptions(t)
	o.MaxBatchBytes = 64 << 10
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "c", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := e.TopicByName("c").Partition(0)
	bb := wire.NewBatchBuilder(1024)
	for _, codec := range []wire.Codec{wire.CodecGzip, wire.CodecSnappy, wire.CodecZstd} {
		bb.SetCompression(codec)
		two := bytes.Clone(buildBatch(t, bb, []record{{key: "a", value: "1"}, {key: "b", value: "2"}}))
		body := two[wire.BatchHeaderSize:]
		big := bytes.Clone(buildBatch(t, bb, []record{{key: "z", value: string(make([]byte, 70<<10))}}))
		cases := []struct {
			name string
			b    []byte
			want error
		}{
			{"header-3-holds-2", withBody(two, codec, 3, body), wire.ErrCorrupt},
			{"header-1-holds-2", withBody(two, codec, 1, body), wire.ErrCorrupt},
			{"body-not-" + codec.String(), withBody(two, codec, 2, []byte("plain bytes, not compressed")), wire.ErrCorrupt},
			{"inflates-past-limit", big, wire.ErrBatchTooLarge},
		}
		for _, c := range cases {
			if len(c.b) > o.MaxBatchBytes {
				t.Fatalf("%v %s: %d bytes on the wire, limit %d", codec, c.name, len(c.b), o.MaxBatchBytes)
			}
			if _, _, err := p.Append(append(bytes.Clone(two), c.b...)); !errors.Is(err, c.want) {
				t.Errorf("%v %s: %v, want %v", codec, c.name, err, c.want)
			}
		}
		if n := p.NextOffset(); n != 0 {
			t.Fatalf("%v: refused requests stored records: next offset %d", codec, n)
		}
		if _, _, err := p.Append(two); err != nil {
			t.Fatalf("%v honest batch: %v", codec, err)
		}
		if _, _, err := p.Append(withBody(two, codec, 2, body)); err != nil {
			t.Fatalf("%v honest batch rebuilt: %v", codec, err)
		}
		p = resetPartition(t, e, p)
	}
}

// resetPartition recreates topic c so the next codec starts from an empty partition.
func resetPartition(t *testing.T, e *Engine, _ *Partition) *Partition {
	t.Helper()
	if err := e.DeleteTopic("c"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "c", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	return e.TopicByName("c").Partition(0)
}

// gzipZeros is n zero bytes gzipped, streamed so the test never holds them.
func gzipZeros(t testing.TB, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := io.Copy(w, io.LimitReader(zeros{}, n)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestFilterBoundsInflation: stored batches that inflate far past the batch limit (written before
// produces checked compressed records) read through a header filter cost about the limit: a 32 KiB
// zstd batch of 1 GiB, and 48 MiB of gzipped zeros (under the iterator's default bound, so only the
// filter's limit stops it). The filter passes them on as stored for the consumer's policy, and filters
// the next batch as usual.
func TestFilterBoundsInflation(t *testing.T) {
	const limit = 1 << 20
	f, err := parseFilter("h=b", wire.FilterHeaders, limit)
	if err != nil {
		t.Fatal(err)
	}
	bb := wire.NewBatchBuilder(1024)
	one := buildBatch(t, bb, []record{{key: "x", value: "x"}})
	bomb := withBody(one, wire.CodecZstd, 1, zstdRLEBomb(8192))
	gz := withBody(one, wire.CodecGzip, 1, gzipZeros(t, 48<<20))
	wire.SetBaseOffset(gz, 1)
	bomb = append(bomb, gz...)
	good := bytes.Clone(buildBatch(t, bb, []record{{key: "a", value: "1"}, {key: "b", value: "2"}}))
	wire.SetBaseOffset(good, 2)
	batches := append(bytes.Clone(bomb), good...)

	var out []byte
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err = f.apply(batches, 0, "t")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 4*limit {
		t.Fatalf("filtering past the bomb allocated %d bytes, limit %d", n, limit)
	}
	if !bytes.HasPrefix(out, bomb) {
		t.Fatalf("the unreadable batch is not passed on as stored")
	}
	rest := out[len(bomb):]
	var it wire.RecordIter
	h, err := it.Reset(rest)
	if err != nil || h.Size() != len(rest) {
		t.Fatalf("filtered batch: %+v %v", h, err)
	}
	var r wire.Record
	if !it.Next(&r) || r.Offset != 3 || string(r.Value) != "2" || it.Next(&r) {
		t.Fatalf("filtered record %+v, %v", r, it.Err())
	}
}

// TestAppendAllocs: produce validation keeps Partition.Append allocation-free for uncompressed batches,
// and for compressed ones once the pooled inflater is warm (not under the race detector, which makes
// sync.Pool drop entries at random).
func TestAppendAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	o := testOptions(t)
	o.SegmentBytes = 8 << 20
	e := openEngine(t, o)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "a", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := e.TopicByName("a").Partition(0)
	bb := wire.NewBatchBuilder(1024)
	codecs := []wire.Codec{wire.CodecNone}
	if !raceEnabled {
		codecs = append(codecs, wire.CodecGzip, wire.CodecSnappy, wire.CodecZstd)
	}
	for _, codec := range codecs {
		bb.SetCompression(codec)
		batch := bytes.Clone(buildBatch(t, bb, []record{{key: "a", value: "1"}, {key: "b", value: "2"}, {key: "c", value: "3"}}))
		if n := testing.AllocsPerRun(50, func() {
			if _, _, err := p.Append(batch); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%v: Append allocates %v per call", codec, n)
		}
	}
}

// TestOptionsSegmentLimitsAreTheDisks: the engine takes a segment size only where the disk does: up
// to disk.MaxSegmentBytes (1 GiB), never 4 GiB, for SegmentBytes and MemorySegmentBytes alike.
func TestOptionsSegmentLimitsAreTheDisks(t *testing.T) {
	page := int64(os.Getpagesize())
	for _, n := range []int64{disk.MaxSegmentBytes + page, 2 << 30, 4 << 30} {
		for name, set := range map[string]func(*Options){
			"SegmentBytes":       func(o *Options) { o.SegmentBytes = n },
			"MemorySegmentBytes": func(o *Options) { o.MemorySegmentBytes = n },
		} {
			o := testOptions(t)
			set(&o)
			o.setDefaults()
			if err := o.Validate(); !errors.Is(err, ErrOptions) {
				t.Errorf("%s %d: %v, want ErrOptions", name, n, err)
			}
			if err := (disk.Options{Dir: o.DataDir, SegmentBytes: int(n)}).Validate(); err == nil {
				t.Errorf("disk takes SegmentBytes %d", n)
			}
		}
	}
	o := testOptions(t)
	o.SegmentBytes, o.MemorySegmentBytes = disk.MaxSegmentBytes, disk.MaxSegmentBytes
	o.setDefaults()
	if err := o.Validate(); err != nil {
		t.Fatalf("SegmentBytes at disk.MaxSegmentBytes: %v", err)
	}
}
