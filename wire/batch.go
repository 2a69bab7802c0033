package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"
)

// Record batch layout: Kafka's RecordBatch v2 (magic 2), byte for byte. Big-endian fixed fields,
// zig-zag varints inside records. The layout is frozen: it is the on-disk format of every segment and
// the body of every produce and deliver frame.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     baseOffset (int64)                        |  0
//	|                                                               |
//	+---------------------------------------------------------------+
//	|        batchLength (int32): bytes after this field            |  8
//	+---------------------------------------------------------------+
//	|                 partitionLeaderEpoch (int32)                  | 12
//	+---------------+-----------------------------------------------+
//	|  magic = 2    |        crc (uint32, CRC-32C over 21..end)     | 16
//	+---------------+---------------+-------------------------------+
//	|               |     attributes (int16)        |               | 20
//	+---------------+-------------------------------+               |
//	|                   lastOffsetDelta (int32)     |               | 23
//	+-----------------------------------------------+               |
//	|                    firstTimestamp (int64)                     | 27
//	|                    maxTimestamp (int64)                       | 35
//	|                    producerId (int64)                         | 43
//	|  producerEpoch (int16)        |  baseSequence (int32)         | 51, 53
//	|  recordCount (int32)                                          | 57
//	+---------------------------------------------------------------+
//	|  records ... (compressed as a whole when attributes say so)   | 61
//	+---------------------------------------------------------------+
//
// attributes: bits 0-2 compression codec, bit 3 timestamp type (1 = log append time), bit 4
// transactional, bit 5 control batch, bit 6 delete horizon. Sluice writes 0 for all but the codec.
//
// The broker patches baseOffset (outside the CRC) and stores the bytes as they arrived; nothing is
// re-encoded.
//
// One record, all integers zig-zag varints unless noted:
//
//	length | attributes (int8) | timestampDelta | offsetDelta | keyLength | key |
//	valueLength | value | headerCount | { headerKeyLength | headerKey | headerValueLength | headerValue }*
//
// A length of -1 encodes a null key, value or header value.
const (
	BatchHeaderSize = 61 // bytes before the first record; frozen

	offBaseOffset      = 0
	offBatchLength     = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offFirstTimestamp  = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offRecordCount     = 57

	// batchLengthBase is the number of bytes the batchLength field does not count.
	batchLengthBase = offBatchLength + 4

	// Magic is the only record batch version Sluice reads and writes.
	Magic = 2

	attrCodecMask = 0x07
)

// castagnoli is the CRC-32C table; hash/crc32 uses the SSE4.2/ARMv8 instruction when present.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BatchHeader is the decoded fixed part of a record batch.
type BatchHeader struct {
	BaseOffset      int64
	Length          int32 // the batchLength field: total size minus 12
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	Attributes      int16
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	RecordCount     int32
}

// Size is the whole batch's size in bytes.
func (h *BatchHeader) Size() int { return int(h.Length) + batchLengthBase }

// Codec is the batch's compression codec.
func (h *BatchHeader) Codec() Codec { return Codec(h.Attributes & attrCodecMask) }

// LastOffset is the offset of the batch's last record.
func (h *BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// BatchSize reads the total size of the batch at the front of b from its length field. It needs
// only the first 12 bytes and returns ErrTruncated when fewer are present.
func BatchSize(b []byte) (int, error) {
	if len(b) < batchLengthBase {
		return 0, ErrTruncated
	}
	n := int32(binary.BigEndian.Uint32(b[offBatchLength:]))
	if n < BatchHeaderSize-batchLengthBase {
		return 0, fmt.Errorf("%w: batch length %d below the header size", ErrCorrupt, n)
	}
	return int(n) + batchLengthBase, nil
}

// ParseBatchHeader decodes the fixed header of the batch at the front of b without checking its
// CRC or records. b must hold at least the header.
func ParseBatchHeader(b []byte) (BatchHeader, error) {
	var h BatchHeader
	if len(b) < BatchHeaderSize {
		return h, ErrTruncated
	}
	be := binary.BigEndian
	h.BaseOffset = int64(be.Uint64(b[offBaseOffset:]))
	h.Length = int32(be.Uint32(b[offBatchLength:]))
	h.LeaderEpoch = int32(be.Uint32(b[offLeaderEpoch:]))
	h.Magic = int8(b[offMagic])
	h.CRC = be.Uint32(b[offCRC:])
	h.Attributes = int16(be.Uint16(b[offAttributes:]))
	h.LastOffsetDelta = int32(be.Uint32(b[offLastOffsetDelta:]))
	h.FirstTimestamp = int64(be.Uint64(b[offFirstTimestamp:]))
	h.MaxTimestamp = int64(be.Uint64(b[offMaxTimestamp:]))
	h.ProducerID = int64(be.Uint64(b[offProducerID:]))
	h.ProducerEpoch = int16(be.Uint16(b[offProducerEpoch:]))
	h.BaseSequence = int32(be.Uint32(b[offBaseSequence:]))
	h.RecordCount = int32(be.Uint32(b[offRecordCount:]))
	if h.Magic != Magic {
		return h, fmt.Errorf("%w: magic %d, want %d", ErrCorrupt, h.Magic, Magic)
	}
	if h.Length < BatchHeaderSize-batchLengthBase {
		return h, fmt.Errorf("%w: batch length %d below the header size", ErrCorrupt, h.Length)
	}
	return h, nil
}

// BatchCRC computes the CRC-32C a batch's crc field must hold.
func BatchCRC(batch []byte) uint32 {
	return crc32.Checksum(batch[offAttributes:], castagnoli)
}

// ValidateBatch checks the batch at the front of b: length within b and within maxSize (0: no
// limit), magic, CRC, a positive record count that agrees with lastOffsetDelta, and, for an
// uncompressed batch, that the records parse, number exactly recordCount and carry offset deltas
// 0..recordCount-1. It returns the header, whose Size is the batch's size. Damage is reported as an
// error wrapping ErrCorrupt; a batch that runs past the end of b as ErrTruncated.
func ValidateBatch(b []byte, maxSize int) (BatchHeader, error) {
	h, _, err := validateBatch(b, maxSize)
	return h, err
}

// validateBatch is ValidateBatch, also reporting whether an uncompressed batch's records carry
// HeaderTTL (read in the pass that checks them).
func validateBatch(b []byte, maxSize int) (h BatchHeader, ttl bool, err error) {
	h, err = ParseBatchHeader(b)
	if err != nil {
		return h, false, err
	}
	size := h.Size()
	if maxSize > 0 && size > maxSize {
		return h, false, fmt.Errorf("%w: batch of %d bytes, limit %d", ErrBatchTooLarge, size, maxSize)
	}
	if size > len(b) {
		return h, false, ErrTruncated
	}
	batch := b[:size]
	if got := BatchCRC(batch); got != h.CRC {
		return h, false, fmt.Errorf("%w: crc %08x, computed %08x", ErrCorrupt, h.CRC, got)
	}
	if h.RecordCount <= 0 || h.LastOffsetDelta != h.RecordCount-1 {
		return h, false, fmt.Errorf("%w: %d records with last offset delta %d", ErrCorrupt, h.RecordCount, h.LastOffsetDelta)
	}
	switch h.Codec() {
	case CodecNone:
		if ttl, err = checkRecords(batch[BatchHeaderSize:], int(h.RecordCount)); err != nil {
			return h, false, err
		}
	case CodecGzip, CodecSnappy, CodecLZ4, CodecZstd:
		// Compressed records are not inflated here (storage recovery validates with this function and
		// must not inflate a log); ValidateProduced inflates and checks them.
	default:
		return h, false, fmt.Errorf("%w: compression codec %d", ErrCorrupt, h.Codec())
	}
	return h, ttl, nil
}

// ValidateProduced is ValidateBatch for a batch a producer sent, checking what the broker will store:
// it also inflates the records of a compressed batch and checks them as ValidateBatch checks an
// uncompressed batch's (they parse, number exactly recordCount, carry offset deltas 0..recordCount-1,
// and nothing follows the last). The records may inflate to at most maxSize-BatchHeaderSize bytes,
// the batch as it would be uncompressed fitting the limit (maxSize 0: DefaultMaxInflated); past that
// the error wraps ErrBatchTooLarge, and no more than about that much memory is taken to find out.
// Every codec Kafka defines is read: gzip, snappy, lz4 (the LZ4 frame format) and zstd.
//
// An uncompressed batch costs exactly ValidateBatch and allocates nothing. A compressed one borrows an
// inflater (decoders and a buffer) from a pool, allocation-free once the pool is warm
// (BenchmarkValidateProduced); it is safe for concurrent use.
func ValidateProduced(b []byte, maxSize int) (BatchHeader, error) {
	h, _, err := ValidateProducedTTL(b, maxSize)
	return h, err
}

// ValidateProducedTTL is ValidateProduced that also reports whether a record of the batch carries a
// HeaderTTL header (of any value). It reads the header keys of records that have headers, in the pass
// that checks them: a batch whose records carry none costs what ValidateProduced does.
func ValidateProducedTTL(b []byte, maxSize int) (h BatchHeader, ttl bool, err error) {
	h, ttl, err = validateBatch(b, maxSize)
	if err != nil || h.Codec() == CodecNone {
		return h, ttl, err
	}
	limit := DefaultMaxInflated
	if maxSize > 0 {
		limit = max(maxSize-BatchHeaderSize, 0)
	}
	inf, _ := inflaters.Get().(*inflater)
	if inf == nil {
		inf = new(inflater)
	}
	recs, err := inf.dec.decompress(h.Codec(), inf.buf[:0], b[BatchHeaderSize:h.Size()], limit)
	if err == nil {
		if ttl, err = checkRecords(recs, int(h.RecordCount)); err != nil {
			err = fmt.Errorf("%v records: %w", h.Codec(), err)
		}
	}
	inf.put(recs)
	return h, ttl, err
}

// inflater is the scratch ValidateProduced inflates into: one per concurrent validation, kept in
// inflaters between them. The zstd and gzip decoders are kept for good; the buffer is kept while it is
// at most maxPooledInflate bytes (a broker's default batch limit), so a pool entry holds a few hundred
// KiB of decoder state and at most 1 MiB of buffer. Nothing outside ValidateProduced ever sees buf:
// the records are checked and dropped before the inflater goes back.
type inflater struct {
	dec decompressor
	buf []byte
}

const maxPooledInflate = 1<<20 + zstdBlockMax

// inflaters: sync.Pool keeps one inflater per P without a lock on its fast path, so concurrent
// appenders on different event loops never contend for one.
var inflaters sync.Pool

func (f *inflater) put(buf []byte) {
	f.buf = buf[:0]
	if cap(f.buf) > maxPooledInflate {
		f.buf = nil // a rare large batch: do not pin its buffer in every P's pool
	}
	inflaters.Put(f)
}

// checkRecords walks n records and requires them to fill recs exactly, with offset deltas 0..n-1: a
// record whose delta strays would be delivered at another batch's offset (or a negative one).
func checkRecords(recs []byte, n int) (ttl bool, err error) {
	var r Record
	for i := 0; i < n; i++ {
		m, err := parseRecord(recs, 0, 0, &r)
		if err != nil {
			return false, fmt.Errorf("record %d: %w", i, err)
		}
		if r.Offset != int64(i) {
			return false, fmt.Errorf("%w: record %d has offset delta %d", ErrCorrupt, i, r.Offset)
		}
		ttl = ttl || r.headerCount > 0 && r.hasHeader(HeaderTTL)
		recs = recs[m:]
	}
	if len(recs) != 0 {
		return false, fmt.Errorf("%w: %d bytes after the last record", ErrCorrupt, len(recs))
	}
	return ttl, nil
}

// SetBaseOffset patches the base offset of the batch at the front of b. The field lies outside the
// CRC, so the batch stays valid.
func SetBaseOffset(b []byte, base int64) {
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(base))
}

// BaseOffset reads the base offset of the batch at the front of b.
func BaseOffset(b []byte) int64 { return int64(binary.BigEndian.Uint64(b[offBaseOffset:])) }

// RecordCount reads the record count of the batch at the front of b (at least BatchHeaderSize bytes).
func RecordCount(b []byte) int32 { return int32(binary.BigEndian.Uint32(b[offRecordCount:])) }

// MaxTimestamp reads the largest record timestamp of the batch at the front of b.
func MaxTimestamp(b []byte) int64 { return int64(binary.BigEndian.Uint64(b[offMaxTimestamp:])) }
