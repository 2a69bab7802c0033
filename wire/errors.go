package wire

import (
	"errors"
	"fmt"
)

// Decoding errors. ErrCorrupt marks damaged bytes (bad magic, CRC mismatch, a record that does not
// parse): storage recovery and the network layer treat it differently from a short read.
var (
	ErrTruncated      = errors.New("wire: truncated input")
	ErrCorrupt        = errors.New("wire: corrupt data")
	ErrFrameTooLarge  = errors.New("wire: frame too large")
	ErrBatchTooLarge  = errors.New("wire: batch too large")
	ErrMalformed      = errors.New("wire: malformed frame body")
	ErrUnknownOp      = errors.New("wire: unknown operation")
	ErrUnsupportedVer = errors.New("wire: unsupported protocol version")
	ErrCodec          = errors.New("wire: unsupported compression codec")
)

// ErrFieldTooLong is a field too large for its prefix: a str8 or str16 field (a name, a filter, a
// mechanism) longer than its length prefix can say, 255 or 65,535 bytes, or a list (GroupInfo's
// members, a member's partitions, SubscribeReply's and Assign's partition offsets, Ack's offsets)
// with more entries than its u16 count can say, 65,535. The error's text names the field and its
// size. Append panics with it and AppendMessage returns it; nothing is encoded, rather than a
// different, cut value or a count that wrapped.
var ErrFieldTooLong = errors.New("wire: field too long")

// Code is a numbered protocol error, carried in error frames. The numbers are frozen.
// A Code is itself an error, so callers test a response with errors.Is(err, wire.CodeUnknownTopic).
type Code uint16

const (
	CodeOK                  Code = 0
	CodeInternal            Code = 1  // the broker failed in a way the client cannot fix
	CodeMalformedFrame      Code = 2  // the frame or its body does not parse; the connection closes
	CodeFrameTooLarge       Code = 3  // the length prefix exceeds the negotiated maximum; the connection closes
	CodeUnsupportedVersion  Code = 4  // the handshake named a version the broker does not speak
	CodeUnknownOp           Code = 5  // the operation code is not defined
	CodeHandshakeRequired   Code = 6  // a request arrived before the handshake
	CodeAuthFailed          Code = 7  // credentials were rejected
	CodeNotAuthorized       Code = 8  // the principal lacks the ACL for this operation
	CodeUnknownTopic        Code = 9  // no such topic
	CodeUnknownPartition    Code = 10 // no such partition in the topic
	CodeTopicExists         Code = 11 // create of a topic that exists
	CodeCorruptBatch        Code = 12 // a record batch failed validation (CRC, magic, records)
	CodeBatchTooLarge       Code = 13 // a record batch exceeds the maximum batch size
	CodeOffsetOutOfRange    Code = 14 // the offset is before the log start or after its end
	CodeStorageFull         Code = 15 // the disk is full: the produce was rejected, nothing was damaged
	CodeStorageFailed       Code = 16 // the partition's storage failed (an fsync error); it accepts no writes
	CodeUnknownSubscription Code = 17 // no subscription with that id on this connection
	CodeInvalidRequest      Code = 18 // a well-formed request with invalid arguments
	CodeThrottled           Code = 19 // a limit was reached (connections, in-flight bytes); retry later
	CodeShuttingDown        Code = 20 // the broker is stopping
	CodeUnknownGroup        Code = 21 // no such consumer group
	CodeDuplicateSequence   Code = 22 // an idempotent producer resent a batch already stored
	CodeOutOfOrderSequence  Code = 23 // an idempotent producer skipped a sequence number
	CodeTimeout             Code = 24 // the request did not complete in time
	CodeTxnAborted          Code = 25 // EndTxn commit of a transaction the broker's transaction timeout aborted
)

var codeText = [...]string{
	CodeOK:                  "ok",
	CodeInternal:            "internal error",
	CodeMalformedFrame:      "malformed frame",
	CodeFrameTooLarge:       "frame too large",
	CodeUnsupportedVersion:  "unsupported protocol version",
	CodeUnknownOp:           "unknown operation",
	CodeHandshakeRequired:   "handshake required",
	CodeAuthFailed:          "authentication failed",
	CodeNotAuthorized:       "not authorized",
	CodeUnknownTopic:        "unknown topic",
	CodeUnknownPartition:    "unknown partition",
	CodeTopicExists:         "topic exists",
	CodeCorruptBatch:        "corrupt record batch",
	CodeBatchTooLarge:       "record batch too large",
	CodeOffsetOutOfRange:    "offset out of range",
	CodeStorageFull:         "storage full",
	CodeStorageFailed:       "storage failed",
	CodeUnknownSubscription: "unknown subscription",
	CodeInvalidRequest:      "invalid request",
	CodeThrottled:           "throttled",
	CodeShuttingDown:        "shutting down",
	CodeUnknownGroup:        "unknown group",
	CodeDuplicateSequence:   "duplicate sequence",
	CodeOutOfOrderSequence:  "out of order sequence",
	CodeTimeout:             "timeout",
	CodeTxnAborted:          "transaction aborted",
}

func (c Code) String() string {
	if int(c) < len(codeText) {
		return codeText[c]
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Error is "wire: " and the code's text, as every error of this package reads.
func (c Code) Error() string { return "wire: " + c.String() }

// ProtocolError is an error frame's content: a code and the broker's explanation.
type ProtocolError struct {
	Code    Code
	Message string
}

func (e *ProtocolError) Error() string {
	if e.Message == "" {
		return e.Code.Error()
	}
	return e.Code.Error() + ": " + e.Message
}

// Is matches a Code, so errors.Is(err, wire.CodeUnknownTopic) holds for a ProtocolError with that code.
func (e *ProtocolError) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

// CodeOf maps an error to the code an error frame carries for it.
func CodeOf(err error) Code {
	var pe *ProtocolError
	var c Code
	switch {
	case err == nil:
		return CodeOK
	case errors.As(err, &pe):
		return pe.Code
	case errors.As(err, &c):
		return c
	case errors.Is(err, ErrFrameTooLarge):
		return CodeFrameTooLarge
	case errors.Is(err, ErrBatchTooLarge):
		return CodeBatchTooLarge
	case errors.Is(err, ErrCorrupt):
		return CodeCorruptBatch
	case errors.Is(err, ErrCodec):
		return CodeInvalidRequest // a codec the broker does not know
	case errors.Is(err, ErrUnknownOp):
		return CodeUnknownOp
	case errors.Is(err, ErrUnsupportedVer):
		return CodeUnsupportedVersion
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrTruncated):
		return CodeMalformedFrame
	}
	return CodeInternal
}
