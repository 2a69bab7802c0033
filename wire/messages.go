package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Frame bodies, one type per operation. Every body type has Append (encode onto dst) and Decode
// (parse a frame body). Decode never allocates for the data-path messages (Produce, Deliver, Credit,
// Ack, Nack): their byte fields alias the body. Admin messages decode names into strings.
//
// Append panics with ErrFieldTooLong (wrapped in an unexported panic value) when a str8 or str16
// field is longer than its length prefix can say (255 or 65,535 bytes), or a list holds more entries
// than its u16 count can say (65,535), rather than send a cut value or a count that wrapped; encode
// anything that comes from outside the package with AppendMessage, which returns that error instead.
// ErrorBody and SubEnded clip their message (ending it in "…"), so they always encode.
//
// Primitive encodings: integers big-endian fixed width; str8/str16 are a u8/u16 length and bytes;
// bytes32 is a u32 length and bytes; a "rest" field runs to the end of the body.

// ProtocolVersion is the highest version this package speaks; Hello negotiates it (docs/protocol.md,
// section 3): the broker answers with the lower of the client's and its own, and serves each
// connection what its version reads.
//
// Version 2 adds GroupInfo's client section (GroupMemberClientsVersion).
const ProtocolVersion uint16 = 2

// MinProtocolVersion is the lowest version a broker of this package serves.
const MinProtocolVersion uint16 = 1

// GroupMemberClientsVersion is the first version whose GroupInfo may carry the members' client ids
// and addresses; a connection on an older version gets GroupInfo without them.
const GroupMemberClientsVersion uint16 = 2

// HelloMagic opens every Hello body so the broker can turn away a peer that is not speaking Sluice.
const HelloMagic uint32 = 0x534c4345 // "SLCE"

// Durability says when a produce is acknowledged.
type Durability uint8

const (
	DurabilityNone    Durability = 0 // no acknowledgement
	DurabilityWritten Durability = 1 // acknowledged once in the log's mapping (survives a broker crash)
	DurabilityFsync   Durability = 2 // acknowledged after the fdatasync that covers it (survives power loss)
)

func (d Durability) String() string {
	switch d {
	case DurabilityNone:
		return "none"
	case DurabilityWritten:
		return "written"
	case DurabilityFsync:
		return "fsync"
	}
	return fmt.Sprintf("durability(%d)", uint8(d))
}

// ParseDurability maps a name to its Durability.
func ParseDurability(s string) (Durability, error) {
	for d := DurabilityNone; d <= DurabilityFsync; d++ {
		if d.String() == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("wire: unknown durability %q", s)
}

// StartAt says where a subscription begins.
type StartAt uint8

const (
	StartEarliest  StartAt = 0 // the oldest retained record
	StartLatest    StartAt = 1 // the next record produced
	StartOffset    StartAt = 2 // StartValue is an offset
	StartTimestamp StartAt = 3 // StartValue is a timestamp (ms): the first record at or after it
	StartCommitted StartAt = 4 // the group's committed offset, else earliest
)

// OffsetReset says where a subscription starts a partition whose start offset (a committed offset, or
// StartOffset's value) lies outside the partition's retained range: below its oldest record (removed
// by retention) or beyond its end (the topic was deleted and recreated, or the offset was committed
// by a broker that did not check it). It plays the part of Kafka's auto.offset.reset.
type OffsetReset uint8

const (
	ResetEarliest OffsetReset = 0 // the oldest retained record: nothing retained is skipped (the default)
	ResetLatest   OffsetReset = 1 // the partition's end: only records produced from now on
	ResetError    OffsetReset = 2 // fail with CodeOffsetOutOfRange
)

// SubMode is a subscription's delivery contract.
type SubMode uint8

const (
	// ModeStream delivers every record in order; the consumer tracks (and may commit) its offset.
	ModeStream SubMode = 0
	// ModeQueue delivers records to competing consumers with per-record ack, redelivery after the
	// visibility timeout, and dead-lettering after MaxDeliveries.
	ModeQueue SubMode = 1
)

// TopicFlags qualify a topic.
type TopicFlags uint8

const (
	// TopicMemory keeps the topic in memory only: nothing is written to disk, the lowest latency.
	TopicMemory TopicFlags = 1 << 0
)

// Hello is the client's opening frame.
//
//	magic u32 | version u16 | max frame u32 | client id str8
type Hello struct {
	Version  uint16
	MaxFrame uint32
	ClientID string
}

func (m *Hello) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, HelloMagic)
	dst = binary.BigEndian.AppendUint16(dst, m.Version)
	dst = binary.BigEndian.AppendUint32(dst, m.MaxFrame)
	return appendStr8(dst, m.ClientID)
}

func (m *Hello) Decode(b []byte) error {
	r := reader{b: b}
	if r.u32() != HelloMagic && r.err == nil {
		return fmt.Errorf("%w: hello magic", ErrMalformed)
	}
	m.Version, m.MaxFrame, m.ClientID = r.u16(), r.u32(), string(r.str8())
	return r.end()
}

// HelloReply is the broker's answer to Hello. MaxBatchBytes and IdleTimeoutMs are optional trailing
// fields, in that order (as Subscribe's): a body ends after server id (both 0, unknown), after max
// batch bytes, or after idle timeout ms; Append leaves out trailing zeros, and writes MaxBatchBytes
// (0 for unknown) when it writes IdleTimeoutMs.
//
//	version u16 | max frame u32 | auth required u8 | server id str8 | [max batch bytes u32] |
//	[idle timeout ms u32]
type HelloReply struct {
	Version       uint16
	MaxFrame      uint32
	AuthRequired  bool
	ServerID      string
	MaxBatchBytes uint32 // the largest record batch the broker accepts (uncompressed); 0 unknown
	IdleTimeoutMs uint32 // the broker closes a connection silent for this long (ms); 0 unknown or none
}

func (m *HelloReply) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, m.Version)
	dst = binary.BigEndian.AppendUint32(dst, m.MaxFrame)
	dst = append(dst, boolByte(m.AuthRequired))
	dst = appendStr8(dst, m.ServerID)
	switch {
	case m.IdleTimeoutMs != 0:
		dst = binary.BigEndian.AppendUint32(dst, m.MaxBatchBytes)
		dst = binary.BigEndian.AppendUint32(dst, m.IdleTimeoutMs)
	case m.MaxBatchBytes != 0:
		dst = binary.BigEndian.AppendUint32(dst, m.MaxBatchBytes)
	}
	return dst
}

func (m *HelloReply) Decode(b []byte) error {
	r := reader{b: b}
	m.Version, m.MaxFrame = r.u16(), r.u32()
	auth := r.u8()
	m.AuthRequired, m.ServerID = auth != 0, string(r.str8())
	m.MaxBatchBytes, m.IdleTimeoutMs = 0, 0
	if r.err == nil && len(r.b) >= 4 { // the optional trailing fields, in order
		m.MaxBatchBytes = r.u32()
		if len(r.b) >= 4 {
			m.IdleTimeoutMs = r.u32()
		}
	}
	if err := r.end(); err != nil {
		return err
	}
	if auth > 1 {
		return fmt.Errorf("%w: hello reply auth required %d", ErrMalformed, auth)
	}
	return nil
}

// Auth carries one step of an authentication exchange, both ways.
//
//	mechanism str8 | payload bytes32
type Auth struct {
	Mechanism string
	Payload   []byte
}

func (m *Auth) Append(dst []byte) []byte {
	return appendBytes32(appendStr8(dst, m.Mechanism), m.Payload)
}

func (m *Auth) Decode(b []byte) error {
	r := reader{b: b}
	m.Mechanism, m.Payload = string(r.str8()), r.bytes32()
	return r.end()
}

// Ping is a liveness probe; the response echoes Nonce.
//
//	nonce u64
type Ping struct{ Nonce uint64 }

func (m *Ping) Append(dst []byte) []byte { return binary.BigEndian.AppendUint64(dst, m.Nonce) }

func (m *Ping) Decode(b []byte) error {
	r := reader{b: b}
	m.Nonce = r.u64()
	return r.end()
}

// Produce appends record batches to one partition.
//
//	durability u8 | partition i32 | topic str16 | batches (rest: one or more record batches)
type Produce struct {
	Durability Durability
	Partition  int32
	Topic      []byte
	Batches    []byte
}

func (m *Produce) Append(dst []byte) []byte {
	dst = append(dst, byte(m.Durability))
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Partition))
	dst = appendStr16(dst, m.Topic)
	return append(dst, m.Batches...)
}

// AppendHeader encodes everything but the batches, for a sender that writes them separately.
func (m *Produce) AppendHeader(dst []byte) []byte {
	dst = append(dst, byte(m.Durability))
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Partition))
	return appendStr16(dst, m.Topic)
}

func (m *Produce) Decode(b []byte) error {
	r := reader{b: b}
	m.Durability, m.Partition, m.Topic = Durability(r.u8()), r.i32(), r.str16()
	m.Batches = r.rest()
	switch {
	case r.err != nil:
		return r.err
	case len(m.Batches) == 0:
		return errProduceEmpty
	case m.Durability > DurabilityFsync:
		return errProduceDurability
	case m.Partition < -1:
		return errProducePartition
	}
	return nil
}

// Produce's decoding errors are preallocated: the produce path allocates nothing, even to refuse.
var (
	errProduceEmpty      = fmt.Errorf("%w: produce without batches", ErrMalformed)
	errProduceDurability = fmt.Errorf("%w: produce durability above %d", ErrMalformed, DurabilityFsync)
	errProducePartition  = fmt.Errorf("%w: produce partition below -1", ErrMalformed)
)

// ProduceReply acknowledges a produce: the offsets its records were stored at.
//
//	partition i32 | base offset i64 | last offset i64
type ProduceReply struct {
	Partition  int32
	BaseOffset int64
	LastOffset int64
}

func (m *ProduceReply) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Partition))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.BaseOffset))
	return binary.BigEndian.AppendUint64(dst, uint64(m.LastOffset))
}

func (m *ProduceReply) Decode(b []byte) error {
	r := reader{b: b}
	m.Partition, m.BaseOffset, m.LastOffset = r.i32(), r.i64(), r.i64()
	return r.end()
}

// Subscribe opens a subscription. Partition -1 means every partition of the topic, or, with a Group,
// the partitions the group assigns this member (announced by Assign frames). Topic names one topic:
// or a pattern when it holds '*' or '>' (dot-separated tokens, '*' one token, '>' the rest; deliveries
// of a pattern subscription are DeliverTopic frames). Filter is a server-side filter, empty for none:
// "key=value" header terms joined by '&' (FilterHeaders), or a CEL expression (FilterCEL). Reset says
// what an out-of-range start offset does. Isolation says whether a stream subscription reads
// transactions' records only once committed (the default) or as soon as stored. The optional
// trailing fields come in order; Append leaves out those that are zero at the end.
//
//	sub id u32 | topic str16 | partition i32 | group str16 | mode u8 | start u8 | start value i64 |
//	credit u32 | ack timeout ms u32 | max deliveries u16 | filter str16 |
//	[max ack pending u32 | [reset u8 | [filter lang u8 | [isolation u8]]]]
type Subscribe struct {
	SubID         uint32
	Topic         string
	Partition     int32
	Group         string
	Mode          SubMode
	Start         StartAt
	StartValue    int64
	Credit        uint32
	AckTimeoutMs  uint32
	MaxDeliveries uint16
	Filter        string
	MaxAckPending uint32      // queue mode: the most unsettled records the member holds; 0 the broker's default
	Reset         OffsetReset // where to start when the start offset is outside the partition
	FilterLang    FilterLang  // how Filter reads: header terms (0) or CEL
	Isolation     Isolation   // which transactional records a stream reads: committed (0) or all stored
}

// Isolation is a subscription's isolation level, Kafka's isolation.level: which records of
// transactions it reads. Control batches (transaction markers) are never delivered at either level.
type Isolation uint8

const (
	// ReadCommitted reads a partition below its last stable offset, without aborted transactions'
	// records: a transaction's records appear once it commits, all at once (the default).
	ReadCommitted Isolation = 0
	// ReadUncommitted reads up to the partition's high watermark: open transactions' records as they
	// are stored, and aborted ones' too.
	ReadUncommitted Isolation = 1
)

// FilterLang says how a Subscribe's filter reads.
type FilterLang uint8

const (
	FilterHeaders FilterLang = 0 // "key=value" header terms joined by '&'
	FilterCEL     FilterLang = 1 // a CEL expression over key, headers, timestamp, value and topic
)

func (m *Subscribe) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, m.SubID)
	dst = appendStr16(dst, []byte(m.Topic))
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Partition))
	dst = appendStr16(dst, []byte(m.Group))
	dst = append(dst, byte(m.Mode), byte(m.Start))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.StartValue))
	dst = binary.BigEndian.AppendUint32(dst, m.Credit)
	dst = binary.BigEndian.AppendUint32(dst, m.AckTimeoutMs)
	dst = binary.BigEndian.AppendUint16(dst, m.MaxDeliveries)
	dst = appendStr16(dst, []byte(m.Filter))
	switch {
	case m.Isolation != ReadCommitted:
		dst = binary.BigEndian.AppendUint32(dst, m.MaxAckPending)
		dst = append(dst, byte(m.Reset), byte(m.FilterLang), byte(m.Isolation))
	case m.FilterLang != FilterHeaders:
		dst = binary.BigEndian.AppendUint32(dst, m.MaxAckPending)
		dst = append(dst, byte(m.Reset), byte(m.FilterLang))
	case m.Reset != ResetEarliest:
		dst = binary.BigEndian.AppendUint32(dst, m.MaxAckPending)
		dst = append(dst, byte(m.Reset))
	case m.MaxAckPending != 0:
		dst = binary.BigEndian.AppendUint32(dst, m.MaxAckPending)
	}
	return dst
}

func (m *Subscribe) Decode(b []byte) error {
	r := reader{b: b}
	m.SubID, m.Topic, m.Partition, m.Group = r.u32(), string(r.str16()), r.i32(), string(r.str16())
	m.Mode, m.Start, m.StartValue = SubMode(r.u8()), StartAt(r.u8()), r.i64()
	m.Credit, m.AckTimeoutMs, m.MaxDeliveries = r.u32(), r.u32(), r.u16()
	m.Filter = string(r.str16())
	m.MaxAckPending, m.Reset, m.FilterLang, m.Isolation = 0, ResetEarliest, FilterHeaders, ReadCommitted
	if r.err == nil && len(r.b) >= 4 { // the optional trailing fields, in order
		m.MaxAckPending = r.u32()
		if len(r.b) >= 1 {
			m.Reset = OffsetReset(r.u8())
		}
		if len(r.b) >= 1 {
			m.FilterLang = FilterLang(r.u8())
		}
		if len(r.b) >= 1 {
			m.Isolation = Isolation(r.u8())
		}
	}
	if err := r.end(); err != nil {
		return err
	}
	switch {
	case m.Mode > ModeQueue:
		return fmt.Errorf("%w: subscribe mode %d", ErrMalformed, m.Mode)
	case m.Start > StartCommitted:
		return fmt.Errorf("%w: subscribe start %d", ErrMalformed, m.Start)
	case m.Reset > ResetError:
		return fmt.Errorf("%w: subscribe offset reset %d", ErrMalformed, m.Reset)
	case m.FilterLang > FilterCEL:
		return fmt.Errorf("%w: subscribe filter lang %d", ErrMalformed, m.FilterLang)
	case m.Isolation > ReadUncommitted:
		return fmt.Errorf("%w: subscribe isolation %d", ErrMalformed, m.Isolation)
	case m.Partition < -1:
		return fmt.Errorf("%w: subscribe partition %d", ErrMalformed, m.Partition)
	}
	return nil
}

// SubscribeReply confirms a subscription and where each of its partitions starts.
//
//	sub id u32 | partition offsets (see PartitionOffset)
type SubscribeReply struct {
	SubID  uint32
	Starts []PartitionOffset
}

// PartitionOffset pairs a partition with an offset. SubscribeReply and Assign carry lists of them,
// at most 65,535 entries (a topic has at most 4096 partitions):
//
//	count u16 | { partition i32 | offset i64 }*
type PartitionOffset struct {
	Partition int32
	Offset    int64
}

// partitionOffsetSize is the size of one PartitionOffset in a list.
const partitionOffsetSize = 4 + 8

// appendPartitionOffsets encodes ps, the list field named field; more than 65,535 entries, it panics
// with fieldTooLong (appendCount16).
func appendPartitionOffsets(dst []byte, ps []PartitionOffset, field string) []byte {
	dst = appendCount16(dst, len(ps), field)
	for _, p := range ps {
		dst = binary.BigEndian.AppendUint32(dst, uint32(p.Partition))
		dst = binary.BigEndian.AppendUint64(dst, uint64(p.Offset))
	}
	return dst
}

// partitionOffsets decodes a list of partition offsets into dst[:0], the rest of the body: a count
// the body cannot hold, a short body, bytes after the list or a negative partition are ErrMalformed.
func (r *reader) partitionOffsets(dst []PartitionOffset) ([]PartitionOffset, error) {
	dst = r.partitionOffsetList(dst)
	return dst, checkPartitions(r.end(), dst)
}

// partitionOffsetList decodes a list of partition offsets into dst[:0], leaving what follows it; a
// count the body cannot hold sets the reader's error.
func (r *reader) partitionOffsetList(dst []PartitionOffset) []PartitionOffset {
	n := int(r.u16())
	if !r.fits(n, partitionOffsetSize) {
		return dst[:0]
	}
	dst = dst[:0]
	for i := 0; i < n; i++ {
		dst = append(dst, PartitionOffset{Partition: r.i32(), Offset: r.i64()})
	}
	return dst
}

func (m *SubscribeReply) Append(dst []byte) []byte {
	return appendPartitionOffsets(binary.BigEndian.AppendUint32(dst, m.SubID), m.Starts, "SubscribeReply.Starts")
}

func (m *SubscribeReply) Decode(b []byte) error {
	r := reader{b: b}
	m.SubID = r.u32()
	var err error
	m.Starts, err = r.partitionOffsets(m.Starts)
	return err
}

// checkPartitions passes err on, else refuses a negative partition index.
func checkPartitions(err error, ps []PartitionOffset) error {
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Partition < 0 {
			return fmt.Errorf("%w: partition %d", ErrMalformed, p.Partition)
		}
	}
	return nil
}

// SubID is the body of Unsubscribe.
//
//	sub id u32
type SubID struct{ SubID uint32 }

func (m *SubID) Append(dst []byte) []byte { return binary.BigEndian.AppendUint32(dst, m.SubID) }

func (m *SubID) Decode(b []byte) error {
	r := reader{b: b}
	m.SubID = r.u32()
	return r.end()
}

// DeliverHeaderSize is the size of a Deliver body before its batches.
const DeliverHeaderSize = 16

// Deliver pushes record batches of one partition to a subscription. The batches are the stored bytes:
// base offsets patched, CRCs intact, compression kept.
//
//	sub id u32 | partition i32 | high watermark i64 | batches (rest)
type Deliver struct {
	SubID         uint32
	Partition     int32
	HighWatermark int64 // the partition's next offset when the delivery was cut
	Batches       []byte
}

// PutHeader writes the fields before the batches into b (DeliverHeaderSize bytes), for a sender that
// writes the batches from elsewhere.
func (m *Deliver) PutHeader(b []byte) {
	binary.BigEndian.PutUint32(b, m.SubID)
	binary.BigEndian.PutUint32(b[4:], uint32(m.Partition))
	binary.BigEndian.PutUint64(b[8:], uint64(m.HighWatermark))
}

func (m *Deliver) Append(dst []byte) []byte {
	var h [DeliverHeaderSize]byte
	m.PutHeader(h[:])
	return append(append(dst, h[:]...), m.Batches...)
}

func (m *Deliver) Decode(b []byte) error {
	r := reader{b: b}
	m.SubID, m.Partition, m.HighWatermark = r.u32(), r.i32(), r.i64()
	m.Batches = r.rest()
	if r.err == nil && m.Partition < 0 {
		return errDeliverPartition
	}
	return r.err
}

// DeliverTopic is Deliver for a pattern subscription: the same fields, then the name of the topic the
// batches belong to. A subscription of one topic is sent Deliver frames only.
//
//	sub id u32 | partition i32 | high watermark i64 | topic str16 | batches (rest)
type DeliverTopic struct {
	SubID         uint32
	Partition     int32
	HighWatermark int64
	Topic         []byte // decoded as a slice of the frame: copy it to keep it
	Batches       []byte
}

// AppendDeliverTopicHeader appends the fields of a DeliverTopic before its batches: d's, then topic.
// For a sender that writes the batches from elsewhere; it does not allocate.
func AppendDeliverTopicHeader(dst []byte, d *Deliver, topic string) []byte {
	var h [DeliverHeaderSize]byte
	d.PutHeader(h[:])
	dst = binary.BigEndian.AppendUint16(append(dst, h[:]...), uint16(len(topic)))
	return append(dst, topic...)
}

func (m *DeliverTopic) Append(dst []byte) []byte {
	d := Deliver{SubID: m.SubID, Partition: m.Partition, HighWatermark: m.HighWatermark}
	return append(AppendDeliverTopicHeader(dst, &d, string(m.Topic)), m.Batches...)
}

func (m *DeliverTopic) Decode(b []byte) error {
	r := reader{b: b}
	m.SubID, m.Partition, m.HighWatermark = r.u32(), r.i32(), r.i64()
	m.Topic = r.str16()
	m.Batches = r.rest()
	if r.err == nil && m.Partition < 0 {
		return errDeliverPartition
	}
	return r.err
}

// errDeliverPartition is preallocated: deliveries are on the data path.
var errDeliverPartition = fmt.Errorf("%w: deliver partition below 0", ErrMalformed)

// Credit grants a subscription more delivery bytes. It has no response.
//
//	sub id u32 | bytes u32
type Credit struct {
	SubID uint32
	Bytes uint32
}

func (m *Credit) Append(dst []byte) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(dst, m.SubID), m.Bytes)
}

func (m *Credit) Decode(b []byte) error {
	r := reader{b: b}
	m.SubID, m.Bytes = r.u32(), r.u32()
	return r.end()
}

// Commit stores a group's committed offset for a partition: the next offset the group will read.
//
//	group str16 | topic str16 | partition i32 | offset i64
type Commit struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
}

func (m *Commit) Append(dst []byte) []byte {
	dst = appendStr16(appendStr16(dst, []byte(m.Group)), []byte(m.Topic))
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Partition))
	return binary.BigEndian.AppendUint64(dst, uint64(m.Offset))
}

func (m *Commit) Decode(b []byte) error {
	r := reader{b: b}
	m.Group, m.Topic, m.Partition, m.Offset = string(r.str16()), string(r.str16()), r.i32(), r.i64()
	if err := r.end(); err != nil {
		return err
	}
	if m.Partition < 0 {
		return fmt.Errorf("%w: commit partition %d", ErrMalformed, m.Partition)
	}
	return nil
}

// Offset is a reply carrying one offset (FetchOffset's answer; -1 when none is stored).
//
//	offset i64
type Offset struct{ Offset int64 }

func (m *Offset) Append(dst []byte) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(m.Offset))
}

func (m *Offset) Decode(b []byte) error {
	r := reader{b: b}
	m.Offset = r.i64()
	return r.end()
}

// Ack settles work-queue records of one partition as processed. Nack asks for their redelivery after
// DelayMs (Ack leaves it 0). Offsets is Count big-endian i64 values, aliasing the body.
//
//	sub id u32 | partition i32 | delay ms u32 | count u16 | offset i64 * count
type Ack struct {
	SubID     uint32
	Partition int32
	DelayMs   uint32
	offsets   []byte
}

// ackOffsetSize is the size of one offset in an Ack.
const ackOffsetSize = 8

// Count is the number of offsets.
func (m *Ack) Count() int { return len(m.offsets) / ackOffsetSize }

// Offset returns the i'th offset.
func (m *Ack) Offset(i int) int64 { return int64(binary.BigEndian.Uint64(m.offsets[i*ackOffsetSize:])) }

// AppendAck encodes an Ack or Nack body for the given offsets, at most 65,535 of them: more panic
// with ErrFieldTooLong as Append does (to get the error instead, call it from an Append method
// passed to AppendMessage).
func AppendAck(dst []byte, subID uint32, partition int32, delayMs uint32, offsets []int64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, subID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(partition))
	dst = binary.BigEndian.AppendUint32(dst, delayMs)
	dst = appendCount16(dst, len(offsets), "Ack offsets")
	for _, o := range offsets {
		dst = binary.BigEndian.AppendUint64(dst, uint64(o))
	}
	return dst
}

func (m *Ack) Decode(b []byte) error {
	r := reader{b: b}
	m.SubID, m.Partition, m.DelayMs = r.u32(), r.i32(), r.u32()
	n := int(r.u16())
	if !r.fits(n, ackOffsetSize) {
		return r.fail()
	}
	m.offsets = r.take(n * ackOffsetSize)
	if err := r.end(); err != nil {
		return err
	}
	if m.Partition < 0 {
		return errAckPartition
	}
	return nil
}

// errAckPartition is preallocated: acks are on the data path.
var errAckPartition = fmt.Errorf("%w: ack partition below 0", ErrMalformed)

// Assign tells a group member which partitions of its subscription it now owns. A member of a group
// over a topic pattern is told per topic, in the optional trailing topic section (Topics); its
// Partitions is empty. Append writes the section only when Topics is not empty, so an Assign of a
// group over one topic is what brokers before the section sent.
//
//	sub id u32 | generation u32 | partition offsets (see PartitionOffset: each a start offset) |
//	[topic count u16 | { topic str16 | partition offsets }*]
type Assign struct {
	SubID      uint32
	Generation uint32
	Partitions []PartitionOffset
	Topics     []TopicAssign // a pattern group member's partitions, per matching topic; nil otherwise
}

// TopicAssign is one topic's part of a pattern group member's Assign: its partitions, each with the
// offset the member starts it at.
type TopicAssign struct {
	Topic      string
	Partitions []PartitionOffset
}

func (m *Assign) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, m.SubID)
	dst = binary.BigEndian.AppendUint32(dst, m.Generation)
	dst = appendPartitionOffsets(dst, m.Partitions, "Assign.Partitions")
	if len(m.Topics) == 0 {
		return dst
	}
	dst = appendCount16(dst, len(m.Topics), "Assign.Topics")
	for _, t := range m.Topics {
		dst = appendStr16(dst, []byte(t.Topic))
		dst = appendPartitionOffsets(dst, t.Partitions, "Assign.Topics.Partitions")
	}
	return dst
}

// topicAssignMin is the smallest encoded TopicAssign: an empty topic and an empty list.
const topicAssignMin = 2 + 2

func (m *Assign) Decode(b []byte) error {
	r := reader{b: b}
	m.SubID, m.Generation = r.u32(), r.u32()
	m.Partitions = r.partitionOffsetList(m.Partitions)
	m.Topics = m.Topics[:0]
	if r.err == nil && len(r.b) > 0 { // the optional topic section
		n := int(r.u16())
		if r.fits(n, topicAssignMin) {
			for i := 0; i < n && r.err == nil; i++ {
				t := TopicAssign{Topic: string(r.str16())}
				t.Partitions = r.partitionOffsetList(nil)
				m.Topics = append(m.Topics, t)
			}
		}
	}
	if err := checkPartitions(r.end(), m.Partitions); err != nil {
		return err
	}
	for _, t := range m.Topics {
		if err := checkPartitions(nil, t.Partitions); err != nil {
			return err
		}
	}
	if len(m.Topics) == 0 {
		m.Topics = nil
	}
	return nil
}

// SubEnded tells a consumer that the broker ended one of its subscriptions (its topic was deleted,
// a batch could not be read or filtered, a batch exceeds the consumer's maximum frame). It is a push
// with correlation id 0 and no Response flag; only that subscription ends, the connection stays.
// Code says why, as in an Error frame.
//
//	sub id u32 | code u16 | message str16
type SubEnded struct {
	SubID   uint32
	Code    Code
	Message string
}

func (m *SubEnded) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, m.SubID)
	dst = binary.BigEndian.AppendUint16(dst, uint16(m.Code))
	return appendStr16(dst, []byte(clipStr16(m.Message)))
}

func (m *SubEnded) Decode(b []byte) error {
	r := reader{b: b}
	m.SubID, m.Code, m.Message = r.u32(), Code(r.u16()), string(r.str16())
	return r.end()
}

// Err returns the error the frame describes.
func (m *SubEnded) Err() error { return &ProtocolError{Code: m.Code, Message: m.Message} }

// TopicConfig describes a topic for CreateTopic and in Describe and ListTopics replies.
//
//	name str16 | partitions u32 | retention bytes i64 | retention ms i64 | segment bytes i64 | flags u8
type TopicConfig struct {
	Name           string
	Partitions     uint32
	RetentionBytes int64 // per partition; 0: unlimited
	RetentionMs    int64 // 0: unlimited; at most MaxRetentionMs
	SegmentBytes   int64 // 0: the broker's default; at most MaxSegmentBytes
	Flags          TopicFlags
	// TTLMs makes every record of the topic expire TTLMs milliseconds after its timestamp (a record's
	// own HeaderTTL, when shorter, still applies); 0: none; at most MaxRetentionMs. Only CreateTopic
	// carries it, as an optional trailing field (AppendCreate); TopicList and TopicInfo do not.
	TTLMs int64
}

// topicConfigMinSize is a TopicConfig's size with an empty name, the least a TopicList entry takes.
const topicConfigMinSize = 2 + 4 + 8 + 8 + 8 + 1

// Limits on a TopicConfig's settings, checked by Validate. MaxRetentionMs (9223372036854 ms, about
// 292 years) is the longest retention a time.Duration holds, so converting one cannot wrap (as
// 18446744073710 ms did, to under a millisecond); 0 is the way to keep records for ever.
// MaxSegmentBytes is the largest segment the storage addresses (disk.MaxSegmentBytes: positions are
// 32-bit).
const (
	MaxRetentionMs  = math.MaxInt64 / int64(time.Millisecond)
	MaxSegmentBytes = 1 << 30
)

// Validate range-checks the settings a peer may send: no negative size or age, RetentionMs at most
// MaxRetentionMs, SegmentBytes at most MaxSegmentBytes. It returns a *ProtocolError with
// CodeInvalidRequest naming the setting. The broker checks the rest (name, partition count, segment
// size against its batch limit) against its own configuration.
func (m *TopicConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return &ProtocolError{Code: CodeInvalidRequest, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case m.RetentionBytes < 0:
		return bad("retention bytes %d is negative (0: unlimited)", m.RetentionBytes)
	case m.RetentionMs < 0 || m.RetentionMs > MaxRetentionMs:
		return bad("retention ms %d outside 0..%d (about 292 years; 0: unlimited)", m.RetentionMs, int64(MaxRetentionMs))
	case m.SegmentBytes < 0 || m.SegmentBytes > MaxSegmentBytes:
		return bad("segment bytes %d outside 0..%d (1 GiB; 0: the broker's default)", m.SegmentBytes, MaxSegmentBytes)
	case m.TTLMs < 0 || m.TTLMs > MaxRetentionMs:
		return bad("ttl ms %d outside 0..%d (0: none)", m.TTLMs, int64(MaxRetentionMs))
	}
	return nil
}

func (m *TopicConfig) Append(dst []byte) []byte {
	dst = appendStr16(dst, []byte(m.Name))
	dst = binary.BigEndian.AppendUint32(dst, m.Partitions)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.RetentionBytes))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.RetentionMs))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.SegmentBytes))
	return append(dst, byte(m.Flags))
}

// AppendCreate appends m as a CreateTopic body: Append's fields, then TTLMs (i64) when it is not 0,
// so a CreateTopic without a TTL is what brokers before the field read.
func (m *TopicConfig) AppendCreate(dst []byte) []byte {
	dst = m.Append(dst)
	if m.TTLMs != 0 {
		dst = binary.BigEndian.AppendUint64(dst, uint64(m.TTLMs))
	}
	return dst
}

func (m *TopicConfig) read(r *reader) {
	m.Name, m.Partitions = string(r.str16()), r.u32()
	m.RetentionBytes, m.RetentionMs, m.SegmentBytes, m.Flags = r.i64(), r.i64(), r.i64(), TopicFlags(r.u8())
}

// Decode reads a CreateTopic body (AppendCreate's): the TTL field is optional.
func (m *TopicConfig) Decode(b []byte) error {
	r := reader{b: b}
	m.read(&r)
	m.TTLMs = 0
	if r.err == nil && len(r.b) > 0 {
		m.TTLMs = r.i64()
	}
	if err := r.end(); err != nil {
		return err
	}
	return m.check()
}

// check refuses flags this version does not define.
func (m *TopicConfig) check() error {
	if m.Flags&^TopicMemory != 0 {
		return fmt.Errorf("%w: topic flags 0x%02x", ErrMalformed, uint8(m.Flags))
	}
	return nil
}

// Name is a body holding one name: DeleteTopic's topic, Describe's topic, DescribeGroup's and
// DeleteGroup's group.
//
//	name str16
type Name struct{ Name string }

func (m *Name) Append(dst []byte) []byte { return appendStr16(dst, []byte(m.Name)) }

func (m *Name) Decode(b []byte) error {
	r := reader{b: b}
	m.Name = string(r.str16())
	return r.end()
}

// TopicList answers ListTopics.
//
//	count u32 | TopicConfig*
type TopicList struct{ Topics []TopicConfig }

func (m *TopicList) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Topics)))
	for i := range m.Topics {
		dst = m.Topics[i].Append(dst)
	}
	return dst
}

func (m *TopicList) Decode(b []byte) error {
	r := reader{b: b}
	n := int(r.u32())
	if !r.fits(n, topicConfigMinSize) {
		return r.fail()
	}
	m.Topics = make([]TopicConfig, n)
	for i := range m.Topics {
		m.Topics[i].read(&r)
	}
	if err := r.end(); err != nil {
		return err
	}
	for i := range m.Topics {
		if err := m.Topics[i].check(); err != nil {
			return err
		}
	}
	return nil
}

// PartitionInfo describes one partition in a Describe reply.
type PartitionInfo struct {
	Partition   int32
	StartOffset int64 // the oldest retained offset
	EndOffset   int64 // the next offset to be written (the high watermark)
	Bytes       int64 // bytes retained
}

// TopicInfo answers Describe.
//
//	TopicConfig | count u32 | { partition i32 | start i64 | end i64 | bytes i64 }*
type TopicInfo struct {
	Config     TopicConfig
	Partitions []PartitionInfo
}

// partitionInfoSize is the size of one PartitionInfo in a TopicInfo.
const partitionInfoSize = 4 + 8 + 8 + 8

func (m *TopicInfo) Append(dst []byte) []byte {
	dst = m.Config.Append(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Partitions)))
	for _, p := range m.Partitions {
		dst = binary.BigEndian.AppendUint32(dst, uint32(p.Partition))
		dst = binary.BigEndian.AppendUint64(dst, uint64(p.StartOffset))
		dst = binary.BigEndian.AppendUint64(dst, uint64(p.EndOffset))
		dst = binary.BigEndian.AppendUint64(dst, uint64(p.Bytes))
	}
	return dst
}

func (m *TopicInfo) Decode(b []byte) error {
	r := reader{b: b}
	m.Config.read(&r)
	n := int(r.u32())
	if !r.fits(n, partitionInfoSize) {
		return r.fail()
	}
	m.Partitions = make([]PartitionInfo, n)
	for i := range m.Partitions {
		m.Partitions[i] = PartitionInfo{Partition: r.i32(), StartOffset: r.i64(), EndOffset: r.i64(), Bytes: r.i64()}
	}
	if err := r.end(); err != nil {
		return err
	}
	for _, p := range m.Partitions {
		if p.Partition < 0 {
			return fmt.Errorf("%w: partition %d", ErrMalformed, p.Partition)
		}
	}
	return m.Config.check()
}

// GroupList answers ListGroups.
//
//	count u32 | name str16 *
type GroupList struct{ Groups []string }

// groupNameMinSize is the size of an empty name in a GroupList.
const groupNameMinSize = 2

func (m *GroupList) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Groups)))
	for _, g := range m.Groups {
		dst = appendStr16(dst, []byte(g))
	}
	return dst
}

func (m *GroupList) Decode(b []byte) error {
	r := reader{b: b}
	n := int(r.u32())
	if !r.fits(n, groupNameMinSize) {
		return r.fail()
	}
	m.Groups = make([]string, n)
	for i := range m.Groups {
		m.Groups[i] = string(r.str16())
	}
	return r.end()
}

// GroupMember is one member of a group and the partitions it holds.
type GroupMember struct {
	Member     string
	Topic      string
	Partitions []int32
	ClientID   string // the member's connection's Hello.ClientID; empty: none or not sent
	Addr       string // the member's connection's peer address, "ip:port"; empty: unknown or not sent
}

// GroupOffset is a committed offset with the partition's end, so lag = End - Committed.
type GroupOffset struct {
	Topic     string
	Partition int32
	Committed int64
	End       int64
}

// GroupInfo answers DescribeGroup. Members, and each member's Partitions, hold at most 65,535
// entries (u16 counts: Append refuses more with ErrFieldTooLong). The client section is optional
// and trailing (protocol version 2, GroupMemberClientsVersion): one entry per member, in the
// members' order, giving the member's ClientID and Addr. Append writes it when any member has a
// ClientID or Addr (str8 each: a longer value is refused with ErrFieldTooLong); Decode reads it
// when bytes follow the offsets and leaves both empty when the body ends there. A broker leaves the
// fields empty for a connection on version 1, whose decoder rejects trailing bytes.
//
//	name str16 | generation u32 | members u16 | { member str16 | topic str16 | n u16 | partition i32 * n }* |
//	offsets u32 | { topic str16 | partition i32 | committed i64 | end i64 }* |
//	[ { client id str8 | address str8 } * members ]
type GroupInfo struct {
	Name       string
	Generation uint32
	Members    []GroupMember
	Offsets    []GroupOffset
}

// The least each list entry of a GroupInfo takes: a member with empty names and no partitions, a
// member's partition, an offset with an empty topic.
const (
	groupMemberMinSize  = 2 + 2 + 2
	memberPartitionSize = 4
	groupOffsetMinSize  = 2 + 4 + 8 + 8
)

func (m *GroupInfo) Append(dst []byte) []byte {
	dst = appendStr16(dst, []byte(m.Name))
	dst = binary.BigEndian.AppendUint32(dst, m.Generation)
	dst = appendCount16(dst, len(m.Members), "GroupInfo.Members")
	for _, mb := range m.Members {
		dst = appendStr16(appendStr16(dst, []byte(mb.Member)), []byte(mb.Topic))
		dst = appendCount16(dst, len(mb.Partitions), "GroupInfo.Members[].Partitions")
		for _, p := range mb.Partitions {
			dst = binary.BigEndian.AppendUint32(dst, uint32(p))
		}
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Offsets)))
	for _, o := range m.Offsets {
		dst = appendStr16(dst, []byte(o.Topic))
		dst = binary.BigEndian.AppendUint32(dst, uint32(o.Partition))
		dst = binary.BigEndian.AppendUint64(dst, uint64(o.Committed))
		dst = binary.BigEndian.AppendUint64(dst, uint64(o.End))
	}
	if m.hasClients() {
		for _, mb := range m.Members {
			dst = appendStr8(appendStr8(dst, mb.ClientID), mb.Addr)
		}
	}
	return dst
}

// hasClients reports whether any member has a client id or address: whether Append writes the
// client section.
func (m *GroupInfo) hasClients() bool {
	for _, mb := range m.Members {
		if mb.ClientID != "" || mb.Addr != "" {
			return true
		}
	}
	return false
}

// DropClients empties every member's ClientID and Addr, so Append writes the body a version-1
// decoder reads.
func (m *GroupInfo) DropClients() {
	for i := range m.Members {
		m.Members[i].ClientID, m.Members[i].Addr = "", ""
	}
}

func (m *GroupInfo) Decode(b []byte) error {
	r := reader{b: b}
	m.Name, m.Generation = string(r.str16()), r.u32()
	n := int(r.u16())
	if !r.fits(n, groupMemberMinSize) {
		return r.fail()
	}
	m.Members = make([]GroupMember, n)
	for i := range m.Members {
		mb := &m.Members[i]
		mb.Member, mb.Topic = string(r.str16()), string(r.str16())
		k := int(r.u16())
		if !r.fits(k, memberPartitionSize) {
			return r.fail()
		}
		mb.Partitions = make([]int32, k)
		for j := range mb.Partitions {
			mb.Partitions[j] = r.i32()
		}
	}
	n = int(r.u32())
	if !r.fits(n, groupOffsetMinSize) {
		return r.fail()
	}
	m.Offsets = make([]GroupOffset, n)
	for i := range m.Offsets {
		m.Offsets[i] = GroupOffset{Topic: string(r.str16()), Partition: r.i32(), Committed: r.i64(), End: r.i64()}
	}
	if r.err == nil && len(r.b) > 0 { // the optional client section
		for i := range m.Members {
			m.Members[i].ClientID, m.Members[i].Addr = string(r.str8()), string(r.str8())
		}
	}
	return r.end()
}

// ErrorBody is an Error frame's body.
//
//	code u16 | message str16
type ErrorBody struct {
	Code    Code
	Message string
}

func (m *ErrorBody) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(m.Code))
	return appendStr16(dst, []byte(clipStr16(m.Message)))
}

func (m *ErrorBody) Decode(b []byte) error {
	r := reader{b: b}
	m.Code, m.Message = Code(r.u16()), string(r.str16())
	return r.end()
}

// Err returns the error the body describes.
func (m *ErrorBody) Err() error { return &ProtocolError{Code: m.Code, Message: m.Message} }

// AppendError encodes a whole Error frame answering the request with correlation id corr.
func AppendError(dst []byte, corr uint32, code Code, msg string) []byte {
	dst, start := BeginFrame(dst, OpError, FlagResponse, corr)
	dst = (&ErrorBody{Code: code, Message: msg}).Append(dst)
	return EndFrame(dst, start)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// fieldTooLong is the panic value of appendStr8, appendStr16 and appendCount16; AppendMessage
// recovers exactly this type and nothing else.
type fieldTooLong struct{ err error }

// AppendMessage appends m's encoding to dst (m is any body type of this package, or anything whose
// Append panics only as they do). A str8 or str16 field longer than its length prefix can say
// (255 or 65,535 bytes), or a list with more entries than its u16 count can say (65,535), makes it
// return dst unchanged (same length; bytes past it may have been written) and an error wrapping
// ErrFieldTooLong that names the field and its size, so nothing of m is sent. Any other panic
// propagates. On success it allocates nothing beyond what m.Append does.
func AppendMessage(dst []byte, m interface{ Append([]byte) []byte }) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			ft, ok := r.(fieldTooLong)
			if !ok {
				panic(r)
			}
			out, err = dst, ft.err
		}
	}()
	return m.Append(dst), nil
}

// appendStr8 appends s as a str8; longer than 255 bytes, it panics with fieldTooLong (see
// AppendMessage) rather than send a different string.
func appendStr8(dst []byte, s string) []byte {
	if len(s) > 0xff {
		panic(fieldTooLong{fmt.Errorf("%w: %d bytes in a str8 field (at most 255)", ErrFieldTooLong, len(s))})
	}
	return append(append(dst, byte(len(s))), s...)
}

// appendStr16 appends s as a str16; longer than 65,535 bytes, it panics with fieldTooLong (see
// AppendMessage) rather than send a different string.
func appendStr16(dst []byte, s []byte) []byte {
	if len(s) > 0xffff {
		panic(fieldTooLong{fmt.Errorf("%w: %d bytes in a str16 field (at most 65535)", ErrFieldTooLong, len(s))})
	}
	return append(binary.BigEndian.AppendUint16(dst, uint16(len(s))), s...)
}

// appendCount16 appends n, the number of entries of the list field named field (its Go name, for
// the error), as a u16 count; above 65,535 it panics with fieldTooLong (see AppendMessage) rather
// than send a count that wrapped, which the peer would read as a different list and the rest of the
// body as its entries. field is a constant at every call: the check allocates nothing.
func appendCount16(dst []byte, n int, field string) []byte {
	if n > 0xffff {
		panic(fieldTooLong{fmt.Errorf("%w: %s holds %d entries, more than its u16 count can say (at most 65535)", ErrFieldTooLong, field, n)})
	}
	return binary.BigEndian.AppendUint16(dst, uint16(n))
}

// clipStr16 returns msg cut to fit a str16, ending in "…" when cut (at a UTF-8 boundary), so the
// broker's own messages (Error, SubEnded) always encode.
func clipStr16(msg string) string {
	if len(msg) <= 0xffff {
		return msg
	}
	const ellipsis = "…"
	n := 0xffff - len(ellipsis)
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n] + ellipsis
}

func appendBytes32(dst []byte, b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(dst, uint32(len(b))), b...)
}

// reader decodes primitives from a body with a sticky error: after the first short read every
// further read returns zero, and end or fail reports ErrMalformed.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.err = ErrMalformed
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) i32() int32 { return int32(r.u32()) }
func (r *reader) i64() int64 { return int64(r.u64()) }

func (r *reader) str8() []byte    { return r.take(int(r.u8())) }
func (r *reader) str16() []byte   { return r.take(int(r.u16())) }
func (r *reader) bytes32() []byte { return r.take(int(r.u32())) }

func (r *reader) rest() []byte {
	if r.err != nil {
		return nil
	}
	v := r.b
	r.b = nil
	return v
}

// fits reports whether n items of at least size bytes each can remain, so a hostile count cannot
// make a decoder allocate more than the body could hold.
func (r *reader) fits(n, size int) bool {
	if r.err == nil && n*size > len(r.b) {
		r.err = ErrMalformed
	}
	return r.err == nil
}

func (r *reader) fail() error { return r.end() }

// end reports a short read or bytes left over.
func (r *reader) end() error {
	if r.err != nil {
		return fmt.Errorf("%w: body too short", ErrMalformed)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d bytes after the body", ErrMalformed, len(r.b))
	}
	return nil
}
