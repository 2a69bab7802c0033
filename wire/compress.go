package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codec is a record batch compression codec: the low three bits of the batch attributes, numbered as
// Kafka numbers them. A compressed batch's records section is compressed as one block; the batch
// header stays plain so the broker can validate and index it without inflating anything.
type Codec uint8

const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2 // raw snappy blocks on write; xerial-framed snappy is read too
	CodecLZ4    Codec = 3 // the LZ4 frame format (magic 2: Kafka's old broken-checksum framing was magic 0/1's only)
	CodecZstd   Codec = 4
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec maps a codec name to its Codec.
func ParseCodec(s string) (Codec, error) {
	for c := CodecNone; c <= CodecZstd; c++ {
		if c.String() == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrCodec, s)
}

// compressor holds one builder's reusable encoders. Encoders are created on first use and kept, so a
// reused builder compresses without allocating per batch (zstd and snappy; gzip allocates a little
// inside klauspost's writer on Reset).
type compressor struct {
	zenc *zstd.Encoder
	gz   *gzip.Writer
	gbuf bytes.Buffer
	lz   *lz4.Writer // 64 KiB blocks, as librdkafka writes them; its block buffers come from lz4's pool
	lbuf bytes.Buffer
}

func (c *compressor) compress(codec Codec, dst, src []byte) ([]byte, error) {
	switch codec {
	case CodecZstd:
		if c.zenc == nil {
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
			if err != nil {
				return dst, err
			}
			c.zenc = enc
		}
		return c.zenc.EncodeAll(src, dst), nil
	case CodecSnappy:
		// EncodeSnappy writes into dst's spare capacity only when it holds MaxEncodedLen bytes.
		need := s2.MaxEncodedLen(len(src))
		start := len(dst)
		dst = growTo(dst, start+need)
		out := s2.EncodeSnappy(dst[start:start+need], src)
		return dst[:start+len(out)], nil
	case CodecGzip:
		c.gbuf.Reset()
		if c.gz == nil {
			c.gz, _ = gzip.NewWriterLevel(&c.gbuf, gzip.BestSpeed)
		} else {
			c.gz.Reset(&c.gbuf)
		}
		if _, err := c.gz.Write(src); err != nil {
			return dst, err
		}
		if err := c.gz.Close(); err != nil {
			return dst, err
		}
		return append(dst, c.gbuf.Bytes()...), nil
	case CodecLZ4:
		c.lbuf.Reset()
		if c.lz == nil {
			c.lz = lz4.NewWriter(&c.lbuf)
			if err := c.lz.Apply(lz4.BlockSizeOption(lz4.Block64Kb)); err != nil {
				return dst, err
			}
		} else {
			c.lz.Reset(&c.lbuf) // keeps the options
		}
		if _, err := c.lz.Write(src); err != nil {
			return dst, err
		}
		if err := c.lz.Close(); err != nil {
			return dst, err
		}
		return append(dst, c.lbuf.Bytes()...), nil
	}
	return dst, fmt.Errorf("%w: %v", ErrCodec, codec)
}

// decompressor holds one iterator's (or one pooled validator's) reusable decoders. gsrc is kept here
// rather than made per batch so that inflating gzip allocates nothing once warm
// (BenchmarkRecordIter/gzip): a fresh bytes.Reader, io.LimitReader and bytes.Buffer per batch cost
// three allocations.
type decompressor struct {
	zdec *zstd.Decoder
	gz   *gzip.Reader
	gsrc bytes.Reader
	lz   *lz4.Reader
	lsrc bytes.Reader
}

// DefaultMaxInflated bounds a decompressed records section where no smaller bound is given (a
// RecordIter without SetMaxInflated), so that a small hostile batch cannot inflate into gigabytes. It
// is also the largest zstd window accepted.
const DefaultMaxInflated = 64 << 20

// maxInflated is the package's name for DefaultMaxInflated.
const maxInflated = DefaultMaxInflated

// zstdBlockMax is the most one zstd block inflates to (the format's Block_Maximum_Size, 128 KiB),
// plus the 64 bytes of slack klauspost's decoder asks of its output. A buffer with this much room
// past the limit can hold the block that crosses it.
const zstdBlockMax = 128<<10 + 64

// decompress appends the inflated src to dst, at most limit bytes of it (limit > 0). Memory is bounded
// by the limit before it is taken: a codec whose header states the inflated size (snappy, a zstd frame
// with a content size) is refused from the header; gzip is read through a buffer that never grows
// past limit+1 bytes; zstd decodes into a buffer whose capacity the decoder may not exceed
// (WithDecodeAllCapLimit), grown by doubling to the limit, plus one block's room to tell a batch that
// inflates past the limit from one that does not inflate at all; lz4 is read as gzip is, through a
// buffer that never grows past limit+1 bytes (the reader also borrows two buffers of the frame's
// declared block size, at most 4 MiB each, from lz4's pools while it runs). A batch that inflates
// past limit is
// an error wrapping ErrBatchTooLarge; bytes that do not inflate, ErrCorrupt. On error the result is
// dst[:len(dst)] with whatever capacity was grown, so that a caller keeping it as scratch keeps it.
func (d *decompressor) decompress(codec Codec, dst, src []byte, limit int) ([]byte, error) {
	switch codec {
	case CodecZstd:
		return d.zstd(dst, src, limit)
	case CodecSnappy:
		return snappyDecode(dst, src, limit)
	case CodecGzip:
		return d.gzip(dst, src, limit)
	case CodecLZ4:
		return d.lz4(dst, src, limit)
	}
	return dst, fmt.Errorf("%w: %v", ErrCodec, codec)
}

func tooLarge(codec Codec, limit int) error {
	return fmt.Errorf("%w: %v records inflate past %d bytes", ErrBatchTooLarge, codec, limit)
}

func (d *decompressor) zstd(dst, src []byte, limit int) ([]byte, error) {
	if d.zdec == nil {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(maxInflated), zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			return dst, err
		}
		d.zdec = dec
	}
	start := len(dst)
	// Room to decode into. The block headers bound the output from below (raw and RLE blocks state
	// their size: a run of RLE blocks is how a few KiB claim a GiB) and from above (a compressed
	// block inflates to at most 128 KiB), and a frame may declare its content size: past the limit
	// on any of those, the batch is refused before anything is taken. When the bound from above is
	// within the limit, that is the room, and it cannot run out. Otherwise (blocks that inflate less
	// than they could, or headers the walk does not follow) the room starts from a guess and doubles
	// while the decoder runs out of it, up to the limit and then one block past it, which tells a
	// batch that inflates past the limit from one that does not inflate at all.
	room := min(limit, max(2*len(src), 64<<10))
	lo, hi, ok := zstdBounds(src)
	switch {
	case ok && lo > uint64(limit):
		return dst, tooLarge(CodecZstd, limit)
	case ok && hi <= uint64(limit):
		room = max(int(hi), 1)
	}
	for {
		if cap(dst) < start+room { // grow geometrically (a reused buffer settles), never past the bound
			dst = reserve(dst, max(start+room, min(2*cap(dst), start+limit+zstdBlockMax)))
		}
		out, err := d.zdec.DecodeAll(src, dst[start:start:start+room])
		n := len(out)
		if err == nil {
			if n > limit {
				return dst[:start], tooLarge(CodecZstd, limit)
			}
			if n > 0 && &out[0] != &dst[start : start+1][0] {
				copy(dst[start:start+n], out) // not expected: the cap limit keeps the decoder in dst
			}
			return dst[:start+n], nil
		}
		outOfRoom := errors.Is(err, zstd.ErrDecoderSizeExceeded) || n+zstdBlockMax > room
		switch {
		case !outOfRoom || errors.Is(err, zstd.ErrMagicMismatch) || (ok && hi <= uint64(limit)):
			return dst[:start], fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		case room > limit || n > limit:
			return dst[:start], tooLarge(CodecZstd, limit)
		case room == limit:
			room = limit + zstdBlockMax
		default:
			room = min(2*room, limit)
		}
	}
}

// zstdBounds walks the frames and block headers of a zstd stream, without decoding anything, and
// bounds what it inflates to: lo counts raw and RLE blocks (whose headers state their size) and
// declared frame content sizes, hi adds 128 KiB for every compressed block. ok is false when the
// stream does not walk (the decoder then reports why).
func zstdBounds(src []byte) (lo, hi uint64, ok bool) {
	le := binary.LittleEndian
	for len(src) > 0 {
		if len(src) < 8 {
			return 0, 0, false
		}
		magic := le.Uint32(src)
		if magic&0xfffffff0 == 0x184d2a50 { // skippable frame: magic, size, user data
			n := uint64(le.Uint32(src[4:]))
			if n > uint64(len(src)-8) {
				return 0, 0, false
			}
			src = src[8+n:]
			continue
		}
		if magic != 0xfd2fb528 {
			return 0, 0, false
		}
		fhd := src[4]
		single := fhd&0x20 != 0
		p := 5
		if !single {
			p++ // window descriptor
		}
		p += [4]int{0, 1, 2, 4}[fhd&3] // dictionary id
		fcsSize := [4]int{0, 2, 4, 8}[fhd>>6]
		if fcsSize == 0 && single {
			fcsSize = 1
		}
		if p+fcsSize > len(src) {
			return 0, 0, false
		}
		var fcs uint64
		switch fcsSize {
		case 1:
			fcs = uint64(src[p])
		case 2:
			fcs = uint64(le.Uint16(src[p:])) + 256
		case 4:
			fcs = uint64(le.Uint32(src[p:]))
		case 8:
			fcs = le.Uint64(src[p:])
		}
		p += fcsSize
		var flo, fhi uint64
		for last := false; !last; {
			if p+3 > len(src) {
				return 0, 0, false
			}
			bh := uint32(src[p]) | uint32(src[p+1])<<8 | uint32(src[p+2])<<16
			p += 3
			last = bh&1 != 0
			size := uint64(bh >> 3)
			switch (bh >> 1) & 3 {
			case 0: // raw
				flo, fhi = flo+size, fhi+size
			case 1: // RLE: one byte repeated size times
				flo, fhi = flo+size, fhi+size
				size = 1
			case 2: // compressed
				fhi += 128 << 10
			default:
				return 0, 0, false
			}
			if size > uint64(len(src)-p) {
				return 0, 0, false
			}
			p += int(size)
		}
		if fhd&4 != 0 {
			p += 4 // content checksum
		}
		if p > len(src) {
			return 0, 0, false
		}
		if fcsSize > 0 {
			if fcs < flo || fcs > fhi {
				return 0, 0, false // the frame contradicts itself: the decoder will say so
			}
			flo, fhi = fcs, fcs
		}
		lo, hi = lo+flo, hi+fhi
		src = src[p:]
	}
	return lo, hi, true
}

func (d *decompressor) gzip(dst, src []byte, limit int) ([]byte, error) {
	var err error
	d.gsrc.Reset(src)
	if d.gz == nil {
		d.gz, err = gzip.NewReader(&d.gsrc)
	} else {
		err = d.gz.Reset(&d.gsrc)
	}
	if err != nil {
		return dst, fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
	}
	return readBounded(d.gz, CodecGzip, dst, len(src), limit)
}

// lz4LegacyMagic opens the legacy LZ4 frame (lz4 -l), which no Kafka client writes for magic 2 and
// whose blocks take an 8 MiB buffer each: refused.
var lz4LegacyMagic = []byte{0x02, 0x21, 0x4c, 0x18}

// lz4 inflates an LZ4 frame (or frames, back to back) through a reused lz4.Reader. The reader takes
// two buffers of the frame's declared block size (64 KiB to 4 MiB; franz-go declares 4 MiB, librdkafka
// 64 KiB) from lz4's own pools and gives them back when the batch is done, so an iterator or pooled
// inflater keeps none of them between batches.
func (d *decompressor) lz4(dst, src []byte, limit int) ([]byte, error) {
	if bytes.HasPrefix(src, lz4LegacyMagic) {
		return dst, fmt.Errorf("%w: lz4: legacy frame", ErrCorrupt)
	}
	d.lsrc.Reset(src)
	if d.lz == nil {
		d.lz = lz4.NewReader(&d.lsrc)
	} else {
		d.lz.Reset(&d.lsrc)
	}
	out, err := readBounded(d.lz, CodecLZ4, dst, len(src), limit)
	d.lz.Reset(nil) // back to lz4's pools: the block buffers, the source
	d.lsrc.Reset(nil)
	return out, err
}

// readBounded appends what r inflates (from srcLen compressed bytes) to dst, reading into a buffer
// that grows geometrically and never past limit+1 bytes: one byte past the limit tells "exactly the
// limit" from "more", which is ErrBatchTooLarge; a read error is ErrCorrupt.
func readBounded(r io.Reader, codec Codec, dst []byte, srcLen, limit int) ([]byte, error) {
	start := len(dst)
	end := start + limit + 1
	for {
		if len(dst) == cap(dst) {
			// Grow geometrically, keeping what was read, never past end.
			dst = reserve(dst, min(end, max(2*cap(dst), start+4*srcLen, start+4096)))[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):min(cap(dst), end)])
		dst = dst[:len(dst)+n]
		if len(dst)-start > limit {
			return dst[:start], tooLarge(codec, limit)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst[:start], fmt.Errorf("%w: %v: %v", ErrCorrupt, codec, err)
		}
	}
}

// xerialMagic opens the framed snappy that Kafka's Java client writes.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// snappyDecode appends the inflated src to dst, refusing from each block's stated length any block
// that would take the output past limit bytes; the buffer grows geometrically up to the limit.
func snappyDecode(dst, src []byte, limit int) ([]byte, error) {
	start := len(dst)
	end := start + limit
	if !bytes.HasPrefix(src, xerialMagic) {
		return snappyBlock(dst, src, end)
	}
	// xerial: magic, version (int32), compatible version (int32), then {length int32, block}*.
	if len(src) < 16 {
		return dst, fmt.Errorf("%w: short xerial snappy header", ErrCorrupt)
	}
	src = src[16:]
	for len(src) > 0 {
		if len(src) < 4 {
			return dst[:start], fmt.Errorf("%w: short xerial snappy chunk", ErrCorrupt)
		}
		n := int(binary.BigEndian.Uint32(src))
		if n > len(src)-4 {
			return dst[:start], fmt.Errorf("%w: xerial snappy chunk past the end", ErrCorrupt)
		}
		var err error
		if dst, err = snappyBlock(dst, src[4:4+n], end); err != nil {
			return dst[:start], err
		}
		src = src[4+n:]
	}
	return dst, nil
}

// snappyBlock appends one inflated snappy block to dst, which may not grow past end bytes.
func snappyBlock(dst, src []byte, end int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return dst, fmt.Errorf("%w: snappy block: %v", ErrCorrupt, err)
	}
	at := len(dst)
	if n > end-at {
		return dst, fmt.Errorf("%w: snappy records inflate past the limit (a block of %d bytes, %d left)", ErrBatchTooLarge, n, end-at)
	}
	if cap(dst)-at < n {
		dst = reserve(dst, min(end, max(at+n, 2*cap(dst))))
	}
	out, err := s2.Decode(dst[at:at+n], src)
	if err != nil {
		return dst[:at], fmt.Errorf("%w: snappy: %v", ErrCorrupt, err)
	}
	return dst[:at+len(out)], nil
}

// reserve returns b (its length kept) with capacity for at least n bytes, reusing its array when it
// suffices. It allocates exactly n: callers pass bounded sizes.
func reserve(b []byte, n int) []byte {
	if cap(b) >= n {
		return b
	}
	nb := make([]byte, len(b), n)
	copy(nb, b)
	return nb
}

// growTo returns b with length n, reusing its capacity when it suffices.
func growTo(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n, n+n/4)
	copy(nb, b)
	return nb
}
