package server

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// lyingBatch is a CRC-valid batch compressed with codec whose header claims count records, holding the
// records of honest (built for n records); with body non-nil the records section is body instead.
func lyingBatch(t *testing.T, codec wire.Codec, n int, count int32, body []byte) []byte {
	t.Helper()
	bb := wire.NewBatchBuilder(1024)
	bb.SetCompression(codec)
	for i := range n {
		bb.Append(nil, bytes.Repeat([]byte{'v'}, 200+i), nil, 1_700_000_000_000)
	}
	out, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(out)
	if body != nil {
		b = append(b[:wire.BatchHeaderSize], body...)
		binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	}
	binary.BigEndian.PutUint16(b[21:], uint16(codec))
	binary.BigEndian.PutUint32(b[23:], uint32(count-1))
	binary.BigEndian.PutUint32(b[57:], uint32(count))
	binary.BigEndian.PutUint32(b[17:], wire.BatchCRC(b))
	return b
}

// TestProduceRefusesCompressedLies sends, as raw frames (the Go client cannot build them), CRC-valid
// compressed batches whose contents lie: a gzip batch whose header says 3 records and holds 2, a
// zstd batch whose body is not zstd, the same for snappy; each is refused with an error frame and
// nothing is stored; likewise for lz4. A batch that inflates past the batch limit is refused as too
// large and the connection stays open.
func TestProduceRefusesCompressedLies(t *testing.T) {
	s, e := startServer(t, nil)
	produce := func(batch []byte) []byte {
		f := mustAppendMsg(nil, wire.OpProduce, 0, 2, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("lies"), Batches: batch})
		return f
	}
	hello := mustAppendMsg(nil, wire.OpHello, 0, 1, &wire.Hello{Version: wire.ProtocolVersion, ClientID: "x"})
	fatal := map[string][]byte{
		"gzip-says-3-holds-2":   lyingBatch(t, wire.CodecGzip, 2, 3, nil),
		"zstd-body-not-zstd":    lyingBatch(t, wire.CodecZstd, 2, 2, []byte("this body was never zstd")),
		"snappy-says-3-holds-2": lyingBatch(t, wire.CodecSnappy, 2, 3, nil),
		"snappy-body-garbage":   lyingBatch(t, wire.CodecSnappy, 1, 1, []byte("this body was never snappy")),
		"zstd-says-1-holds-2":   lyingBatch(t, wire.CodecZstd, 2, 1, nil),
		"lz4-says-3-holds-2":    lyingBatch(t, wire.CodecLZ4, 2, 3, nil),
		"lz4-body-garbage":      lyingBatch(t, wire.CodecLZ4, 1, 1, []byte{4, 0x22, 0x4d, 0x18}),
	}
	for name, batch := range fatal {
		t.Run(name, func(t *testing.T) {
			bad := dial(t, s)
			bad.write(append(bytes.Clone(hello), produce(batch)...))
			bad.expectClosedWith(wire.CodeCorruptBatch)
		})
	}

	// Refused, connection kept: past the limit (1 MiB by default) once inflated, in zstd or lz4.
	c := dial(t, s)
	c.hello()
	bb := wire.NewBatchBuilder(1024)
	bb.SetCompression(wire.CodecZstd)
	bb.Append(nil, make([]byte, 2<<20), nil, 0)
	big, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		batch []byte
		code  wire.Code
	}{
		{bytes.Clone(big), wire.CodeBatchTooLarge},
		{lz4Big(t), wire.CodeBatchTooLarge},
	} {
		corr := c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("lies"), Batches: tc.batch})
		f := c.mustNext()
		var eb wire.ErrorBody
		if f.Op != wire.OpError || f.Corr != corr || eb.Decode(f.Body) != nil || eb.Code != tc.code {
			t.Fatalf("%v corr %d (%s), want an error %v for %d", f.Op, f.Corr, eb.Message, tc.code, corr)
		}
	}
	// Nothing was stored; honest compressed batches still are.
	corr := c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("lies"), Batches: lyingBatch(t, wire.CodecGzip, 2, 2, nil)})
	var pr wire.ProduceReply
	c.expectReply(corr, &pr)
	if pr.BaseOffset != 0 || pr.LastOffset != 1 {
		t.Fatalf("honest batch stored at %d-%d, want 0-1: something was stored before it", pr.BaseOffset, pr.LastOffset)
	}
	corr = c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("lies"), Batches: lyingBatch(t, wire.CodecLZ4, 3, 3, nil)})
	c.expectReply(corr, &pr)
	if pr.BaseOffset != 2 || pr.LastOffset != 4 {
		t.Fatalf("honest lz4 batch stored at %d-%d, want 2-4", pr.BaseOffset, pr.LastOffset)
	}
	if n := e.TopicByName("lies").Partition(0).NextOffset(); n != 5 {
		t.Fatalf("partition end %d, want 5", n)
	}
}

// lz4Big is an lz4 batch of one 2 MiB record: past the default 1 MiB batch limit once inflated.
func lz4Big(t *testing.T) []byte {
	t.Helper()
	bb := wire.NewBatchBuilder(1024)
	bb.SetCompression(wire.CodecLZ4)
	bb.Append(nil, make([]byte, 2<<20), nil, 0)
	out, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}
