package wire

import (
	"encoding/binary"
	"fmt"
)

// Header is one record header. Value may be nil (a null header value).
type Header struct {
	Key   []byte
	Value []byte
}

// Record is one record of a batch as the iterator yields it. Key, Value and the header bytes are
// slices into the batch (or into the iterator's decompression buffer): they stay valid only as long as
// that memory does. A nil Key or Value is a null one.
type Record struct {
	Offset     int64
	Timestamp  int64
	Key        []byte
	Value      []byte
	Attributes int8

	headerCount int
	headers     []byte // the encoded headers, headerCount of them
}

// HeaderCount is the number of headers the record carries.
func (r *Record) HeaderCount() int { return r.headerCount }

// Headers calls fn for each header in order, without allocating. It stops early when fn returns false.
func (r *Record) Headers(fn func(key, value []byte) bool) {
	b := r.headers
	for i := 0; i < r.headerCount; i++ {
		var k, v []byte
		var n int
		k, n = readBytes(b)
		b = b[n:]
		v, n = readBytes(b)
		b = b[n:]
		if !fn(k, v) {
			return
		}
	}
}

// Header returns the value of the first header named key.
func (r *Record) Header(key string) (value []byte, ok bool) {
	r.Headers(func(k, v []byte) bool {
		if string(k) == key {
			value, ok = v, true
			return false
		}
		return true
	})
	return value, ok
}

// AppendHeaders appends the record's headers to dst (slices into the batch) and returns it.
func (r *Record) AppendHeaders(dst []Header) []Header {
	r.Headers(func(k, v []byte) bool {
		dst = append(dst, Header{Key: k, Value: v})
		return true
	})
	return dst
}

// readBytes reads a varint length and that many bytes from well-formed input (already checked by
// parseRecord). Length -1 is nil.
func readBytes(b []byte) ([]byte, int) {
	l, n := binary.Varint(b)
	if l < 0 {
		return nil, n
	}
	return b[n : n+int(l) : n+int(l)], n + int(l)
}

// parseRecord decodes the record at the front of b into r and returns its encoded size. Offsets and
// timestamps are made absolute from the batch's base values. Every length is checked against b.
func parseRecord(b []byte, baseOffset, baseTimestamp int64, r *Record) (int, error) {
	length, n := binary.Varint(b)
	if n <= 0 {
		return 0, fmt.Errorf("%w: record length varint", ErrCorrupt)
	}
	if length < 1 || length > int64(len(b)-n) {
		return 0, fmt.Errorf("%w: record length %d with %d bytes left", ErrCorrupt, length, len(b)-n)
	}
	body := b[n : n+int(length)]
	total := n + int(length)

	r.Attributes = int8(body[0])
	p := 1
	tsDelta, m := binary.Varint(body[p:])
	if m <= 0 {
		return 0, fmt.Errorf("%w: record timestamp delta", ErrCorrupt)
	}
	p += m
	offDelta, m := binary.Varint(body[p:])
	if m <= 0 {
		return 0, fmt.Errorf("%w: record offset delta", ErrCorrupt)
	}
	p += m
	var err error
	if r.Key, p, err = field(body, p, "key"); err != nil {
		return 0, err
	}
	if r.Value, p, err = field(body, p, "value"); err != nil {
		return 0, err
	}
	hc, m := binary.Varint(body[p:])
	if m <= 0 || hc < 0 || hc > int64(len(body)-p) {
		return 0, fmt.Errorf("%w: record header count", ErrCorrupt)
	}
	p += m
	hstart := p
	for i := int64(0); i < hc; i++ {
		var k []byte
		if k, p, err = field(body, p, "header key"); err != nil {
			return 0, err
		}
		if k == nil {
			return 0, fmt.Errorf("%w: null header key", ErrCorrupt)
		}
		if _, p, err = field(body, p, "header value"); err != nil {
			return 0, err
		}
	}
	if p != len(body) {
		return 0, fmt.Errorf("%w: %d bytes after the record's headers", ErrCorrupt, len(body)-p)
	}
	r.headerCount = int(hc)
	r.headers = body[hstart:p]
	r.Offset = baseOffset + offDelta
	r.Timestamp = baseTimestamp + tsDelta
	return total, nil
}

// field reads a varint-length-prefixed byte field at body[p:]; -1 is nil.
func field(body []byte, p int, what string) ([]byte, int, error) {
	l, m := binary.Varint(body[p:])
	if m <= 0 || l < -1 || l > int64(len(body)-p-m) {
		return nil, 0, fmt.Errorf("%w: record %s length", ErrCorrupt, what)
	}
	p += m
	if l < 0 {
		return nil, p, nil
	}
	return body[p : p+int(l) : p+int(l)], p + int(l), nil
}

// RecordIter walks the records of one batch. For an uncompressed batch the records' slices point into
// the batch itself (zero copy). A compressed batch is inflated once into the iterator's buffer, which
// is reused by the next Reset: keep an iterator per consumer goroutine.
type RecordIter struct {
	recs       []byte
	remaining  int
	baseOffset int64
	baseTs     int64
	err        error
	scratch    []byte // decompression buffer, reused across batches; never grows past the limit (+1 block)
	dec        decompressor
	limit      int // bytes a records section may inflate to; 0: DefaultMaxInflated
}

// SetMaxInflated bounds the inflated records section of a compressed batch to n bytes (n <= 0:
// DefaultMaxInflated). Reset refuses a batch that inflates past it, with an error wrapping
// ErrBatchTooLarge, without taking more than about n bytes. A broker passes its batch limit: every
// batch it accepted inflates within it.
func (it *RecordIter) SetMaxInflated(n int) { it.limit = n }

// Reset points the iterator at the batch at the front of b (as validated by ValidateBatch or read
// from a log). It returns the batch's header.
func (it *RecordIter) Reset(b []byte) (BatchHeader, error) {
	it.recs, it.remaining, it.err = nil, 0, nil
	h, err := ParseBatchHeader(b)
	if err != nil {
		it.err = err
		return h, err
	}
	if h.Size() > len(b) {
		it.err = ErrTruncated
		return h, it.err
	}
	recs := b[BatchHeaderSize:h.Size()]
	if c := h.Codec(); c != CodecNone {
		limit := it.limit
		if limit <= 0 {
			limit = DefaultMaxInflated
		}
		it.scratch, err = it.dec.decompress(c, it.scratch[:0], recs, limit)
		if err != nil {
			it.err = err
			return h, err
		}
		recs = it.scratch
	}
	it.recs = recs
	it.remaining = int(h.RecordCount)
	it.baseOffset = h.BaseOffset
	it.baseTs = h.FirstTimestamp
	return h, nil
}

// Next decodes the next record into r and reports whether there was one. After it returns false,
// Err tells whether the batch ended cleanly: bytes left after recordCount records are corruption
// (ValidateBatch checks this for uncompressed batches; for compressed ones the iterator is the check).
func (it *RecordIter) Next(r *Record) bool {
	if it.err != nil {
		return false
	}
	if it.remaining <= 0 {
		if len(it.recs) != 0 {
			it.err = fmt.Errorf("%w: %d bytes after the last record", ErrCorrupt, len(it.recs))
			it.recs = nil
		}
		return false
	}
	n, err := parseRecord(it.recs, it.baseOffset, it.baseTs, r)
	if err != nil {
		it.err = err
		return false
	}
	it.recs = it.recs[n:]
	it.remaining--
	return true
}

// Check walks the records Reset left to iterate, without consuming them, and reports what Next would
// meet: a record that does not parse, fewer or more records than the header counts, offset deltas
// other than 0..recordCount-1, bytes after the last record (wrapping ErrCorrupt). Call it right after
// Reset, before Next, to learn whether a whole batch is readable before yielding any of it. It
// allocates nothing.
func (it *RecordIter) Check() error {
	if it.err != nil {
		return it.err
	}
	_, err := checkRecords(it.recs, it.remaining)
	return err
}

// Err is the first decoding error met, or nil.
func (it *RecordIter) Err() error { return it.err }

// BatchBuilder assembles one record batch. Reuse a builder (Reset) to build batches without
// allocating: its buffer grows to the largest batch built and is kept.
type BatchBuilder struct {
	buf        []byte // header space followed by the encoded records
	count      int32
	firstTs    int64
	maxTs      int64
	producerID int64
	epoch      int16
	baseSeq    int32
	idempotent bool // SetProducer was called: write the identity even when it is all zeros
	codec      Codec
	comp       compressor
	out        []byte // compressed batch, when codec != CodecNone
}

// NewBatchBuilder returns a builder whose buffer starts with room for capacity bytes.
func NewBatchBuilder(capacity int) *BatchBuilder {
	b := &BatchBuilder{buf: make([]byte, BatchHeaderSize, max(capacity, BatchHeaderSize))}
	b.Reset()
	return b
}

// Reset empties the builder, keeping its buffers, its codec and its producer identity.
func (b *BatchBuilder) Reset() {
	if cap(b.buf) < BatchHeaderSize {
		b.buf = make([]byte, BatchHeaderSize, 4096)
	}
	b.buf = b.buf[:BatchHeaderSize]
	b.count = 0
	b.firstTs, b.maxTs = 0, 0
}

// SetCompression selects the codec Build compresses the records with.
func (b *BatchBuilder) SetCompression(c Codec) { b.codec = c }

// SetProducer sets the idempotent producer identity and the sequence of the batch's first record.
// Without it the batch carries producer id -1 (no idempotence).
func (b *BatchBuilder) SetProducer(id int64, epoch int16, baseSequence int32) {
	b.producerID, b.epoch, b.baseSeq, b.idempotent = id, epoch, baseSequence, true
}

// Count is the number of records appended since Reset.
func (b *BatchBuilder) Count() int { return int(b.count) }

// Size is the uncompressed size of the batch so far, header included.
func (b *BatchBuilder) Size() int { return len(b.buf) }

// RecordSize is the encoded size one record adds to a batch whose first timestamp is firstTs.
func RecordSize(offsetDelta int32, tsDelta int64, key, value []byte, headers []Header) int {
	body := recordBodySize(offsetDelta, tsDelta, key, value, headers)
	return varintLen(int64(body)) + body
}

func recordBodySize(offsetDelta int32, tsDelta int64, key, value []byte, headers []Header) int {
	n := 1 + varintLen(tsDelta) + varintLen(int64(offsetDelta)) + bytesLen(key) + bytesLen(value)
	n += varintLen(int64(len(headers)))
	for i := range headers {
		n += bytesLen(headers[i].Key) + bytesLen(headers[i].Value)
	}
	return n
}

// Append adds one record. timestamp is in milliseconds since the epoch, as Kafka's are.
func (b *BatchBuilder) Append(key, value []byte, headers []Header, timestamp int64) {
	if b.count == 0 {
		if len(b.buf) < BatchHeaderSize {
			b.Reset() // a zero BatchBuilder: reserve the header before the first record
		}
		b.firstTs, b.maxTs = timestamp, timestamp
	}
	b.maxTs = max(b.maxTs, timestamp)
	tsDelta := timestamp - b.firstTs
	body := recordBodySize(b.count, tsDelta, key, value, headers)
	buf := binary.AppendVarint(b.buf, int64(body))
	buf = append(buf, 0) // record attributes: unused
	buf = binary.AppendVarint(buf, tsDelta)
	buf = binary.AppendVarint(buf, int64(b.count))
	buf = appendBytes(buf, key)
	buf = appendBytes(buf, value)
	buf = binary.AppendVarint(buf, int64(len(headers)))
	for i := range headers {
		buf = appendBytes(buf, headers[i].Key)
		buf = appendBytes(buf, headers[i].Value)
	}
	b.buf = buf
	b.count++
}

// Build finishes the batch (base offset 0) and returns its bytes, which stay valid until the next
// Reset or Append. It returns nil for a builder with no records.
func (b *BatchBuilder) Build() ([]byte, error) {
	if b.count == 0 {
		return nil, nil
	}
	out := b.buf
	if b.codec != CodecNone {
		var err error
		b.out = append(b.out[:0], b.buf[:BatchHeaderSize]...)
		b.out, err = b.comp.compress(b.codec, b.out, b.buf[BatchHeaderSize:])
		if err != nil {
			return nil, err
		}
		out = b.out
	}
	be := binary.BigEndian
	be.PutUint64(out[offBaseOffset:], 0)
	be.PutUint32(out[offBatchLength:], uint32(len(out)-batchLengthBase))
	be.PutUint32(out[offLeaderEpoch:], 0)
	out[offMagic] = Magic
	be.PutUint16(out[offAttributes:], uint16(b.codec))
	be.PutUint32(out[offLastOffsetDelta:], uint32(b.count-1))
	be.PutUint64(out[offFirstTimestamp:], uint64(b.firstTs))
	be.PutUint64(out[offMaxTimestamp:], uint64(b.maxTs))
	if !b.idempotent { // producer id 0 is a valid id, so all zeros cannot mean "unset"
		be.PutUint64(out[offProducerID:], ^uint64(0)) // -1: not idempotent
		be.PutUint16(out[offProducerEpoch:], ^uint16(0))
		be.PutUint32(out[offBaseSequence:], ^uint32(0))
	} else {
		be.PutUint64(out[offProducerID:], uint64(b.producerID))
		be.PutUint16(out[offProducerEpoch:], uint16(b.epoch))
		be.PutUint32(out[offBaseSequence:], uint32(b.baseSeq))
	}
	be.PutUint32(out[offRecordCount:], uint32(b.count))
	be.PutUint32(out[offCRC:], BatchCRC(out))
	return out, nil
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

func bytesLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

// varintLen is the size of x as a zig-zag varint.
func varintLen(x int64) int {
	ux := uint64(x<<1) ^ uint64(x>>63)
	n := 1
	for ux >= 0x80 {
		ux >>= 7
		n++
	}
	return n
}
