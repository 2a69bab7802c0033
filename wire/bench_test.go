package wire

import (
	"bytes"
	"fmt"
	"testing"
)

// Benchmarks of the data path. The hot ones must stay at 0 allocs/op:
//
//	go test -run '^$' -bench . -benchmem ./wire/

var (
	benchValue   = bytes.Repeat([]byte("sluice-value-"), 80)[:1000]
	benchHeaders = []Header{{Key: []byte("trace"), Value: []byte("0af7651916cd43dd")}}
	benchKeys    = [][]byte{[]byte("key-0000"), []byte("key-0001"), []byte("key-0002"), []byte("key-0003")}
)

// benchBatch builds an uncompressed batch of n records of valueSize bytes, each with a key and a header.
// It allocates nothing itself (valueSize at most 1000), so its allocations are the builder's.
func benchBatch(b *BatchBuilder, n, valueSize int) []byte {
	b.Reset()
	for i := range n {
		b.Append(benchKeys[i%len(benchKeys)], benchValue[:valueSize], benchHeaders, 1_700_000_000_000+int64(i))
	}
	out, err := b.Build()
	if err != nil {
		panic(err)
	}
	return out
}

// produceStream is n produce frames each carrying one batch of records records.
func produceStream(n, records, valueSize int) []byte {
	batch := bytes.Clone(benchBatch(NewBatchBuilder(0), records, valueSize))
	var buf []byte
	for i := range n {
		var start int
		buf, start = BeginFrame(buf, OpProduce, 0, uint32(i))
		buf = (&Produce{Durability: DurabilityWritten, Partition: int32(i % 8), Topic: []byte("orders"), Batches: batch}).Append(buf)
		buf = EndFrame(buf, start)
	}
	return buf
}

func BenchmarkDecoderFeed(b *testing.B) {
	stream := produceStream(1000, 10, 100) // ~1.5 KiB frames
	for _, chunk := range []int{len(stream), 64 << 10, 4 << 10} {
		name := "whole"
		if chunk < len(stream) {
			name = fmt.Sprintf("chunks-%dKiB", chunk>>10)
		}
		b.Run(name, func(b *testing.B) {
			d := NewDecoder(DefaultMaxFrame)
			var p Produce
			frames := 0
			// fn is made once: a closure built per Feed call would escape and allocate.
			fn := func(f Frame) error {
				frames++
				return p.Decode(f.Body)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				for off := 0; off < len(stream); off += chunk {
					if err := d.Feed(stream[off:min(off+chunk, len(stream))], fn); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/frame")
			if frames%1000 != 0 || d.Buffered() != 0 {
				b.Fatalf("%d frames, %d buffered", frames, d.Buffered())
			}
		})
	}
}

func BenchmarkRecordIter(b *testing.B) {
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd, CodecGzip} {
		b.Run(codec.String(), func(b *testing.B) {
			bb := NewBatchBuilder(0)
			bb.SetCompression(codec)
			batch := bytes.Clone(benchBatch(bb, 100, 100))
			var it RecordIter
			var r Record
			var sum int
			b.ReportAllocs()
			b.SetBytes(int64(bb.Size())) // uncompressed bytes walked
			for b.Loop() {
				if _, err := it.Reset(batch); err != nil {
					b.Fatal(err)
				}
				for it.Next(&r) {
					sum += len(r.Value)
				}
				if it.Err() != nil {
					b.Fatal(it.Err())
				}
			}
			_ = sum
		})
	}
}

func BenchmarkBatchBuild(b *testing.B) {
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd, CodecGzip} {
		b.Run(codec.String(), func(b *testing.B) {
			bb := NewBatchBuilder(0)
			bb.SetCompression(codec)
			benchBatch(bb, 100, 100) // warm the buffers and the encoder
			b.ReportAllocs()
			b.SetBytes(int64(bb.Size()))
			for b.Loop() {
				benchBatch(bb, 100, 100)
			}
		})
	}
}

func BenchmarkValidateBatch(b *testing.B) {
	for _, size := range []int{16 << 10, 1 << 20} {
		batch := bytes.Clone(benchBatch(NewBatchBuilder(0), size/150, 100))
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if _, err := ValidateBatch(batch, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The CRC alone, for the share of ValidateBatch that is checksum rather than record walk.
		b.Run(fmt.Sprintf("crc-%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if BatchCRC(batch) == 0 {
					b.Fatal("zero crc")
				}
			}
		})
	}
}

// BenchmarkValidateProduced is the produce-time check: for an uncompressed batch exactly
// ValidateBatch; for a compressed one, the CRC plus inflating the records into a pooled buffer and
// walking them. 0 allocs/op once the pool is warm; the cost over ValidateBatch is the inflation.
func BenchmarkValidateProduced(b *testing.B) {
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd, CodecGzip} {
		b.Run(codec.String(), func(b *testing.B) {
			bb := NewBatchBuilder(0)
			bb.SetCompression(codec)
			batch := bytes.Clone(benchBatch(bb, 100, 100))
			if _, err := ValidateProduced(batch, 1<<20); err != nil { // warm the pool
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(bb.Size())) // uncompressed bytes checked
			for b.Loop() {
				if _, err := ValidateProduced(batch, 1<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMessages(b *testing.B) {
	sub := (&Subscribe{SubID: 1, Topic: "orders", Partition: -1, Credit: 1 << 20}).Append(nil)
	ack := AppendAck(nil, 1, 2, 0, []int64{1, 2, 3, 4, 5, 6, 7, 8})
	credit := (&Credit{SubID: 1, Bytes: 1 << 20}).Append(nil)
	b.Run("credit", func(b *testing.B) {
		var m Credit
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Decode(credit); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ack", func(b *testing.B) {
		var m Ack
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Decode(ack); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("subscribe", func(b *testing.B) {
		var m Subscribe
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Decode(sub); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestHotPathAllocs pins the zero-allocation claims, so a regression fails the tests, not only a
// benchmark nobody reads.
func TestHotPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	stream := produceStream(50, 5, 50)
	d := NewDecoder(DefaultMaxFrame)
	var p Produce
	fn := func(f Frame) error { return p.Decode(f.Body) }
	check := func(name string, f func()) {
		t.Helper()
		f() // warm buffers
		if n := testing.AllocsPerRun(20, f); n != 0 {
			t.Errorf("%s: %v allocs/op", name, n)
		}
	}
	check("decoder-feed", func() {
		for off := 0; off < len(stream); off += 1000 {
			if err := d.Feed(stream[off:min(off+1000, len(stream))], fn); err != nil {
				t.Fatal(err)
			}
		}
	})
	bb := NewBatchBuilder(0)
	batch := bytes.Clone(benchBatch(bb, 50, 50))
	var it RecordIter
	var r Record
	check("record-iter", func() {
		it.Reset(batch)
		for it.Next(&r) {
		}
	})
	check("validate", func() {
		if _, err := ValidateBatch(batch, 0); err != nil {
			t.Fatal(err)
		}
	})
	check("validate-produced", func() {
		if _, err := ValidateProduced(batch, 1<<20); err != nil {
			t.Fatal(err)
		}
	})
	for _, codec := range []Codec{CodecNone, CodecSnappy, CodecZstd, CodecLZ4} {
		if raceEnabled && codec == CodecLZ4 {
			// lz4's block buffers come from its sync.Pools, and under -race sync.Pool drops a
			// share of what is put back: asserted by make test's run without the race detector.
			continue
		}
		bb.SetCompression(codec)
		check("build-"+codec.String(), func() { benchBatch(bb, 50, 50) })
	}
	for _, codec := range []Codec{CodecSnappy, CodecZstd, CodecGzip, CodecLZ4} {
		if raceEnabled {
			break
		}
		bb.SetCompression(codec)
		packed := bytes.Clone(benchBatch(bb, 50, 50))
		check("record-iter-"+codec.String(), func() {
			it.Reset(packed)
			for it.Next(&r) {
			}
		})
		// sync.Pool keeps a per-P entry; AllocsPerRun runs on one P, so the warm entry is reused.
		check("validate-produced-"+codec.String(), func() {
			if _, err := ValidateProduced(packed, 1<<20); err != nil {
				t.Fatal(err)
			}
		})
	}
}
