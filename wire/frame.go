package wire

import (
	"encoding/binary"
	"fmt"
)

// Frame layout. Every message in either direction is one frame; the header is fixed-width and
// big-endian. The layout is frozen.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|              length (uint32): bytes after this field          |  0
//	+---------------+---------------+-------------------------------+
//	|    op (u8)    |  flags (u8)   |  correlation id (uint32) ...  |  4
//	+---------------+---------------+-------------------------------+
//	|  ... corr id  |  body (length - 6 bytes) ...                  |  8
//	+-------------------------------+-------------------------------+
//
// A request's correlation id comes back on its response (flag Response) or on an Error frame, so a
// client may pipeline any number of requests. Server pushes (Deliver, Assign, SubEnded) carry id 0.
const (
	FrameHeaderSize = 10 // frozen
	frameLenSize    = 4

	// DefaultMaxFrame is the largest frame a peer accepts unless the handshake says otherwise.
	DefaultMaxFrame = 16 << 20
	// MinMaxFrame is the smallest maximum a peer may announce.
	MinMaxFrame = 64 << 10
)

// Op is a frame's operation code. The numbers are frozen.
type Op uint8

const (
	OpHello       Op = 0x01 // handshake; the first frame on every connection
	OpAuth        Op = 0x02 // authentication exchange (token or SCRAM step)
	OpPing        Op = 0x03 // liveness; answered with a Ping response
	OpProduce     Op = 0x10 // append record batches to one partition
	OpSubscribe   Op = 0x11 // open a subscription (partition or group member)
	OpUnsubscribe Op = 0x12 // close a subscription
	OpDeliver     Op = 0x13 // server push: record batches for a subscription
	OpCredit      Op = 0x14 // consumer flow control: grant delivery bytes
	OpCommit      Op = 0x15 // store a group's committed offset
	OpFetchOffset Op = 0x16 // read a group's committed offset
	OpAck         Op = 0x17 // work queue: records processed
	OpNack        Op = 0x18 // work queue: records to redeliver
	OpAssign      Op = 0x19 // server push: a group member's partitions changed
	OpSubEnded    Op = 0x1A // server push: the broker ended one subscription; the connection stays

	// OpDeliverTopic is a server push: Deliver for a pattern subscription, naming the topic.
	OpDeliverTopic Op = 0x1B

	OpCreateTopic Op = 0x20 // admin: create a topic
	OpDeleteTopic Op = 0x21 // admin: delete a topic
	OpListTopics  Op = 0x22 // admin: list topics
	OpDescribe    Op = 0x23 // metadata: one topic's partitions and offsets
	OpListGroups  Op = 0x24 // admin: list consumer groups
	OpDescribeGrp Op = 0x25 // admin: one group's members and offsets
	OpDeleteGroup Op = 0x26 // admin: delete a consumer group without members
	OpEndTxn      Op = 0x27 // commit or abort a producer's open transaction (wire/txn.go)
	OpError       Op = 0x3F // failure answer to a request, or a fatal connection error (id 0)
)

var opNames = map[Op]string{
	OpHello: "hello", OpAuth: "auth", OpPing: "ping", OpProduce: "produce", OpSubscribe: "subscribe",
	OpUnsubscribe: "unsubscribe", OpDeliver: "deliver", OpCredit: "credit", OpCommit: "commit",
	OpFetchOffset: "fetch-offset", OpAck: "ack", OpNack: "nack", OpAssign: "assign", OpSubEnded: "sub-ended",
	OpCreateTopic: "create-topic", OpDeleteTopic: "delete-topic", OpListTopics: "list-topics",
	OpDescribe: "describe", OpListGroups: "list-groups", OpDescribeGrp: "describe-group", OpError: "error",
	OpDeleteGroup: "delete-group", OpDeliverTopic: "deliver-topic",
	OpEndTxn: "end-txn",
}

func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("op(0x%02x)", uint8(o))
}

// Known reports whether o is a defined operation.
func (o Op) Known() bool { _, ok := opNames[o]; return ok }

// Flags qualify a frame.
type Flags uint8

const (
	// FlagResponse marks a frame that answers the request with the same correlation id.
	FlagResponse Flags = 1 << 0
	// FlagNoReply on a request asks for no response unless it fails (produce at durability none).
	FlagNoReply Flags = 1 << 1
)

// Frame is one decoded frame. Body aliases the decoder's input: it is valid only until the input
// buffer is reused (for the network layer, until the end of the OnTraffic callback).
type Frame struct {
	Op    Op
	Flags Flags
	Corr  uint32
	Body  []byte
}

// FrameHeader is the fixed header of a frame.
type FrameHeader struct {
	Size  int // whole frame, header included
	Op    Op
	Flags Flags
	Corr  uint32
}

// ParseFrameHeader decodes the header at the front of b. It rejects a length over maxFrame (whole
// frame size) before anything is allocated or read past the header. It returns ErrTruncated when b
// holds fewer than FrameHeaderSize bytes.
func ParseFrameHeader(b []byte, maxFrame int) (FrameHeader, error) {
	var h FrameHeader
	if len(b) < FrameHeaderSize {
		return h, ErrTruncated
	}
	n := binary.BigEndian.Uint32(b)
	if n < FrameHeaderSize-frameLenSize {
		return h, fmt.Errorf("%w: frame length %d below the header size", ErrMalformed, n)
	}
	if uint64(n)+frameLenSize > uint64(maxFrame) {
		return h, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, uint64(n)+frameLenSize, maxFrame)
	}
	h.Size = int(n) + frameLenSize
	h.Op = Op(b[4])
	h.Flags = Flags(b[5])
	h.Corr = binary.BigEndian.Uint32(b[6:])
	return h, nil
}

// ParseFrame decodes the whole frame at the front of b and returns it with its size. ErrTruncated
// means b holds only part of it.
func ParseFrame(b []byte, maxFrame int) (Frame, int, error) {
	h, err := ParseFrameHeader(b, maxFrame)
	if err != nil {
		return Frame{}, 0, err
	}
	if len(b) < h.Size {
		return Frame{}, 0, ErrTruncated
	}
	return Frame{Op: h.Op, Flags: h.Flags, Corr: h.Corr, Body: b[FrameHeaderSize:h.Size:h.Size]}, h.Size, nil
}

// BeginFrame appends a frame header with a placeholder length to dst. Append the body, then call
// EndFrame with the returned start.
func BeginFrame(dst []byte, op Op, flags Flags, corr uint32) ([]byte, int) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(op), byte(flags), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[start+6:], corr)
	return dst, start
}

// EndFrame patches the length of the frame that starts at dst[start].
func EndFrame(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-frameLenSize))
	return dst
}

// PutFrameHeader writes a header for a frame whose body is bodyLen bytes into hdr (at least
// FrameHeaderSize long). The network layer uses it to send a header followed by body slices that live
// elsewhere (writev out of the log's mapping).
func PutFrameHeader(hdr []byte, op Op, flags Flags, corr uint32, bodyLen int) {
	binary.BigEndian.PutUint32(hdr, uint32(bodyLen+FrameHeaderSize-frameLenSize))
	hdr[4] = byte(op)
	hdr[5] = byte(flags)
	binary.BigEndian.PutUint32(hdr[6:], corr)
}

// Decoder assembles frames from a byte stream delivered in chunks split anywhere. Frames lying wholly
// inside a chunk are yielded as sub-slices of it, without copying; only a frame split across chunks is
// assembled in the decoder's own buffer. A Decoder is used by one goroutine.
type Decoder struct {
	max     int
	partial []byte // bytes of an incomplete frame carried over from earlier chunks
}

// NewDecoder returns a decoder that rejects frames larger than maxFrame bytes.
func NewDecoder(maxFrame int) *Decoder { return &Decoder{max: maxFrame} }

// Buffered is the number of bytes held of an incomplete frame.
func (d *Decoder) Buffered() int { return len(d.partial) }

// Feed consumes chunk and calls fn for every frame it completes, in order. The frame's body is valid
// only during the call. An error from fn stops decoding and is returned; a framing error (oversized or
// malformed length) is returned as is, and the stream cannot be resumed after it.
func (d *Decoder) Feed(chunk []byte, fn func(Frame) error) error {
	if len(d.partial) > 0 {
		for {
			need, err := d.pending()
			if err != nil {
				return err
			}
			if need == 0 {
				break
			}
			if len(chunk) == 0 {
				return nil
			}
			take := min(need, len(chunk))
			d.partial = append(d.partial, chunk[:take]...)
			chunk = chunk[take:]
		}
		f, _, err := ParseFrame(d.partial, d.max)
		if err != nil {
			return err
		}
		err = fn(f)
		d.partial = d.partial[:0]
		if err != nil {
			return err
		}
	}
	for len(chunk) > 0 {
		f, n, err := ParseFrame(chunk, d.max)
		if err == ErrTruncated {
			d.partial = append(d.partial[:0], chunk...)
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		chunk = chunk[n:]
	}
	return nil
}

// pending reports how many more bytes the partial frame needs (0: complete). Until the header is
// whole it asks for the rest of the header.
func (d *Decoder) pending() (int, error) {
	if len(d.partial) < FrameHeaderSize {
		return FrameHeaderSize - len(d.partial), nil
	}
	h, err := ParseFrameHeader(d.partial, d.max)
	if err != nil {
		return 0, err
	}
	return h.Size - len(d.partial), nil
}
