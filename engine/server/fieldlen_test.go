package server

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicemq/sluice/wire"
)

// mustAppendMsg is appendMsg for frames the tests build: a field too long to encode is a bug in
// the test.
func mustAppendMsg(dst []byte, op wire.Op, flags wire.Flags, corr uint32, m message) []byte {
	b, err := appendMsg(dst, op, flags, corr, m)
	if err != nil {
		panic(err)
	}
	return b
}

// parseError decodes b as exactly one Error frame.
func parseError(t *testing.T, b []byte) (wire.Frame, wire.ErrorBody) {
	t.Helper()
	f, n, err := wire.ParseFrame(b, wire.DefaultMaxFrame)
	if err != nil || n != len(b) || f.Op != wire.OpError {
		t.Fatalf("frame %v (op %s, %d of %d bytes), want one Error frame", err, f.Op, n, len(b))
	}
	var e wire.ErrorBody
	if err := e.Decode(f.Body); err != nil {
		t.Fatal(err)
	}
	return f, e
}

// TestErrorFrameClipped: an Error frame whose message would exceed a str16 (64 KiB) carries the
// message clipped at a UTF-8 boundary and marked with "…"; it is never refused.
func TestErrorFrameClipped(t *testing.T) {
	long := strings.Repeat("ü", 35000) // 70,000 bytes
	for _, err := range []error{
		&wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: long},
		fmt.Errorf("%w: %s", wire.CodeInvalidRequest, long),
	} {
		f, e := parseError(t, appendError([]byte("out"), 9, err)[3:])
		if f.Corr != 9 || e.Code != wire.CodeOf(err) {
			t.Errorf("corr %d code %s, want 9 %s", f.Corr, e.Code, wire.CodeOf(err))
		}
		if len(e.Message) > 0xffff || len(e.Message) < 0xffff-4 || !strings.HasSuffix(e.Message, "…") || !utf8.ValidString(e.Message) {
			t.Errorf("message of %d bytes (valid UTF-8 %v) ending %q, want clipped to 65,535 with …",
				len(e.Message), utf8.ValidString(e.Message), e.Message[max(0, len(e.Message)-6):])
		}
	}
}

// TestReplyFieldTooLong: a response with a field too long for its length prefix is not sent cut:
// appendMsg leaves dst as it was, and reply answers the request with CodeInvalidRequest instead.
func TestReplyFieldTooLong(t *testing.T) {
	long := &wire.Name{Name: strings.Repeat("n", 70000)}
	b, err := appendMsg([]byte("keep"), wire.OpDescribe, wire.FlagResponse, 3, long)
	if !errors.Is(err, wire.ErrFieldTooLong) || string(b) != "keep" {
		t.Fatalf("appendMsg: %q (%d bytes), %v; want dst unchanged and ErrFieldTooLong", b[:min(len(b), 8)], len(b), err)
	}
	ss := &session{peerMax: wire.DefaultMaxFrame}
	ss.reply(wire.Frame{Op: wire.OpDescribe, Corr: 3}, long)
	f, e := parseError(t, ss.out)
	if f.Corr != 3 || e.Code != wire.CodeInvalidRequest || !strings.Contains(e.Message, "field too long") {
		t.Errorf("corr %d code %s message %q, want 3 invalid-request naming the field", f.Corr, e.Code, e.Message)
	}
}
