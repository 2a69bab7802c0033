package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Codec is a record batch compression codec: the low three bits of the batch attributes, numbered as
// Kafka numbers them. A compressed batch's records section is compressed as one block; the batch
// header stays plain so the broker can validate and index it without inflating anything.
type Codec uint8

const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2 // raw snappy blocks on write; xerial-framed snappy is read too
	CodecLZ4    Codec = 3 // recognised, not produced or read: Sluice links no LZ4 frame codec
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
	}
	return dst, fmt.Errorf("%w: %v", ErrCodec, codec)
}

// decompressor holds one iterator's reusable decoders. gsrc is kept here rather than made per batch
// so that inflating gzip allocates nothing once warm (BenchmarkRecordIter/gzip): a fresh bytes.Reader,
// io.LimitReader and bytes.Buffer per batch cost three allocations.
type decompressor struct {
	zdec *zstd.Decoder
	gz   *gzip.Reader
	gsrc bytes.Reader
}

// maxInflated bounds a decompressed records section, so a small hostile batch cannot inflate into
// gigabytes.
const maxInflated = 64 << 20

func (d *decompressor) decompress(codec Codec, dst, src []byte) ([]byte, error) {
	switch codec {
	case CodecZstd:
		if d.zdec == nil {
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxInflated))
			if err != nil {
				return dst, err
			}
			d.zdec = dec
		}
		out, err := d.zdec.DecodeAll(src, dst)
		if err != nil {
			return dst, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		return out, nil
	case CodecSnappy:
		return snappyDecode(dst, src)
	case CodecGzip:
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
		start := len(dst)
		for {
			if len(dst) == cap(dst) {
				dst = append(dst, 0)[:len(dst)] // grow geometrically, keeping what was read
			}
			n, err := d.gz.Read(dst[len(dst):cap(dst)])
			dst = dst[:len(dst)+n]
			if len(dst)-start > maxInflated {
				return dst[:start], fmt.Errorf("%w: gzip records inflate past %d bytes", ErrCorrupt, maxInflated)
			}
			if err == io.EOF {
				return dst, nil
			}
			if err != nil {
				return dst[:start], fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
			}
		}
	}
	return dst, fmt.Errorf("%w: %v", ErrCodec, codec)
}

// xerialMagic opens the framed snappy that Kafka's Java client writes.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func snappyDecode(dst, src []byte) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialMagic) {
		return snappyBlock(dst, src)
	}
	// xerial: magic, version (int32), compatible version (int32), then {length int32, block}*.
	if len(src) < 16 {
		return dst, fmt.Errorf("%w: short xerial snappy header", ErrCorrupt)
	}
	src = src[16:]
	for len(src) > 0 {
		if len(src) < 4 {
			return dst, fmt.Errorf("%w: short xerial snappy chunk", ErrCorrupt)
		}
		n := int(binary.BigEndian.Uint32(src))
		if n > len(src)-4 {
			return dst, fmt.Errorf("%w: xerial snappy chunk past the end", ErrCorrupt)
		}
		var err error
		if dst, err = snappyBlock(dst, src[4:4+n]); err != nil {
			return dst, err
		}
		src = src[4+n:]
	}
	return dst, nil
}

func snappyBlock(dst, src []byte) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil || n > maxInflated || len(dst)+n > maxInflated {
		return dst, fmt.Errorf("%w: snappy block", ErrCorrupt)
	}
	start := len(dst)
	dst = growTo(dst, start+n)
	out, err := s2.Decode(dst[start:start+n], src)
	if err != nil {
		return dst[:start], fmt.Errorf("%w: snappy: %v", ErrCorrupt, err)
	}
	return dst[:start+len(out)], nil
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
