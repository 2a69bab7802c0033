package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/panjf2000/gnet/v2"

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

// TestReplyListTooLong: a response whose list holds more entries than its u16 count can say (a
// DescribeGroup of a group with 65,536 members: without authentication a group's members are bounded
// only by MaxConnections × MaxSubscriptionsPerConn) is not sent with a count that wrapped: reply
// answers the request with CodeInvalidRequest naming the list and the count. A push (Assign) that
// cannot be encoded closes the connection with CodeInternal rather than panic on the loop.
func TestReplyListTooLong(t *testing.T) {
	info := &wire.GroupInfo{Name: "g", Generation: 1, Members: make([]wire.GroupMember, 0x10000)}
	for i := range info.Members {
		info.Members[i] = wire.GroupMember{Member: fmt.Sprintf("g-%d", i+1), Topic: "t", Partitions: []int32{0}}
	}
	ss := &session{peerMax: wire.DefaultMaxFrame}
	ss.reply(wire.Frame{Op: wire.OpDescribeGrp, Corr: 4}, info)
	f, e := parseError(t, ss.out)
	if f.Corr != 4 || e.Code != wire.CodeInvalidRequest || !strings.Contains(e.Message, "GroupInfo.Members holds 65536 entries") {
		t.Errorf("corr %d code %s message %q, want 4 invalid-request naming the list and its count", f.Corr, e.Code, e.Message)
	}

	info.Members = info.Members[:0xffff] // at the limit the reply is sent whole
	ss.out = ss.out[:0]
	ss.reply(wire.Frame{Op: wire.OpDescribeGrp, Corr: 5}, info)
	rf, n, err := wire.ParseFrame(ss.out, wire.DefaultMaxFrame)
	var got wire.GroupInfo
	if err != nil || n != len(ss.out) || rf.Op != wire.OpDescribeGrp || rf.Corr != 5 {
		t.Fatalf("reply at the limit: %v, op %s corr %d, %d of %d bytes", err, rf.Op, rf.Corr, n, len(ss.out))
	}
	if err := got.Decode(rf.Body); err != nil || len(got.Members) != 0xffff || got.Members[0xfffe].Member != "g-65535" {
		t.Fatalf("reply at the limit: %v, %d members", err, len(got.Members))
	}

	ps := make([]wire.PartitionOffset, 0x10000)
	ss = &session{peerMax: wire.DefaultMaxFrame, srv: &Server{log: slog.New(slog.DiscardHandler)}, c: addrOnlyConn{}}
	ss.push(wire.OpAssign, &wire.Assign{SubID: 1, Generation: 2, Partitions: ps})
	f, e = parseError(t, ss.out)
	if !ss.dead || f.Corr != 0 || e.Code != wire.CodeInternal || !strings.Contains(e.Message, "Assign.Partitions holds 65536 entries") {
		t.Errorf("push: dead %v, corr %d code %s message %q; want the connection closing with internal naming the list", ss.dead, f.Corr, e.Code, e.Message)
	}
}

// addrOnlyConn is a connection whose only method called is RemoteAddr (fatal's log line).
type addrOnlyConn struct{ gnet.Conn }

func (addrOnlyConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
