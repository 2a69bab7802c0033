// Package wire is the Sluice protocol: the frames client and broker exchange over TCP (or TLS), one
// body type per operation, and Kafka's RecordBatch v2, the record format from producer to disk to
// consumer.
//
// Every message is one frame: a 10-byte big-endian header (length, op, flags, correlation id; the
// diagram is at FrameHeaderSize in frame.go) and a body. ParseFrameHeader and ParseFrame read one
// from a buffer, a Decoder reassembles frames from a byte stream split anywhere, and BeginFrame and
// EndFrame write one in place. A connection starts with Hello (ProtocolVersion, the largest frame
// each side accepts) and, when the broker requires it, Auth; requests carry a correlation id their
// response or Error frame repeats, so requests pipeline; Deliver, Assign and SubEnded are pushed by
// the broker with id 0.
//
// Bodies (messages.go) are plain structs with Append (encode, appending to a buffer the caller owns)
// and Decode (which aliases the input; it never allocates for byte fields). Append panics with
// ErrFieldTooLong when a str8 or str16 field exceeds 255 or 65,535 bytes, or a u16-counted list
// 65,535 entries, rather than send a cut value or a wrapped count; use AppendMessage, which returns
// that error instead. Errors travel as a Code and a message (ProtocolError, which errors.Is
// matches against a Code); the package's own sentinels are ErrTruncated, ErrMalformed,
// ErrFrameTooLarge, ErrCorrupt and the others in errors.go.
//
// Records are built with BatchBuilder, checked with ValidateBatch and ValidateProduced (CRC-32C,
// lengths, compressed records inflated within a limit) and read without copying with RecordIter.
// The layouts are frozen: docs/protocol.md has every byte diagram and the rules of each operation.
package wire
