package wire

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestStrFieldOverLimitRoundTrip: a str8 or str16 field longer than its length prefix can say must
// not reach the peer as a different value: AppendMessage refuses it and leaves dst as it was.
func TestStrFieldOverLimitRoundTrip(t *testing.T) {
	dst := []byte("prefix")
	for _, m := range []interface{ Append([]byte) []byte }{
		&Hello{Version: ProtocolVersion, MaxFrame: 1 << 20, ClientID: strings.Repeat("c", 256)},
		&Auth{Mechanism: strings.Repeat("m", 256)},
		&Subscribe{SubID: 1, Topic: "t", Filter: strings.Repeat("f", 65536), FilterLang: FilterCEL},
		&Subscribe{SubID: 1, Topic: strings.Repeat("t", 65536)},
		&Commit{Group: strings.Repeat("g", 65536), Topic: "t"},
		&Name{Name: strings.Repeat("n", 65536)},
	} {
		out, err := AppendMessage(dst, m)
		if !errors.Is(err, ErrFieldTooLong) {
			t.Errorf("%T: err %v, want ErrFieldTooLong", m, err)
		}
		if string(out) != "prefix" {
			t.Errorf("%T: dst became %d bytes, want it unchanged", m, len(out))
		}
	}
}

// TestStrFieldAtLimitRoundTrip: fields of exactly 255 and 65,535 bytes encode and decode intact.
func TestStrFieldAtLimitRoundTrip(t *testing.T) {
	h := Hello{Version: ProtocolVersion, MaxFrame: 1 << 20, ClientID: strings.Repeat("c", 255)}
	b, err := AppendMessage(nil, &h)
	if err != nil {
		t.Fatal(err)
	}
	var hd Hello
	if err := hd.Decode(b); err != nil || hd.ClientID != h.ClientID {
		t.Errorf("Hello: err %v, client id %d bytes, want %d", err, len(hd.ClientID), len(h.ClientID))
	}
	s := Subscribe{SubID: 1, Topic: "t", Group: strings.Repeat("g", 65535), Filter: strings.Repeat("f", 65535), FilterLang: FilterCEL}
	if b, err = AppendMessage(nil, &s); err != nil {
		t.Fatal(err)
	}
	var sd Subscribe
	if err := sd.Decode(b); err != nil || sd.Filter != s.Filter || sd.Group != s.Group || sd.FilterLang != FilterCEL {
		t.Errorf("Subscribe: err %v, filter %d bytes, group %d bytes", err, len(sd.Filter), len(sd.Group))
	}
}

type panicky struct{}

func (panicky) Append([]byte) []byte { panic("not a wire panic") }

// TestAppendMessageRepanics: AppendMessage recovers only its own field-length panic.
func TestAppendMessageRepanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "not a wire panic" {
			t.Errorf("recovered %v, want the original panic", r)
		}
	}()
	_, _ = AppendMessage(nil, panicky{})
	t.Error("AppendMessage swallowed a foreign panic")
}

// TestAppendMessageNoAlloc: AppendMessage adds no allocation to an encode that succeeds.
func TestAppendMessageNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	m := &Subscribe{SubID: 1, Topic: "orders", Group: "g", Filter: "x=1"}
	r := &ProduceReply{Partition: 1, BaseOffset: 2, LastOffset: 3}
	lists := []interface{ Append([]byte) []byte }{ // the u16 list counts' checks
		&Assign{SubID: 1, Generation: 2, Partitions: []PartitionOffset{{0, 5}, {1, 6}}},
		&ackBody{Ack: Ack{SubID: 1}, Offsets: []int64{4, 5}},
		&GroupInfo{Name: "g", Members: []GroupMember{{Member: "m", Topic: "t", Partitions: []int32{0, 1}}}},
	}
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = AppendMessage(buf[:0], m); err != nil {
			t.Fatal(err)
		}
		if buf, err = AppendMessage(buf[:0], r); err != nil {
			t.Fatal(err)
		}
		for _, l := range lists {
			if buf, err = AppendMessage(buf[:0], l); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

// TestErrorMessageClipped: the broker's own messages longer than a str16 are cut to fit at a UTF-8
// boundary and marked with "…", never refused.
func TestErrorMessageClipped(t *testing.T) {
	long := strings.Repeat("é", 40000) // 80,000 bytes, two per rune
	b, err := AppendMessage(nil, &ErrorBody{Code: CodeInvalidRequest, Message: long})
	if err != nil {
		t.Fatal(err)
	}
	var e ErrorBody
	if err := e.Decode(b); err != nil {
		t.Fatal(err)
	}
	if len(e.Message) > 0xffff || len(e.Message) < 0xffff-4 || !strings.HasSuffix(e.Message, "…") || !utf8.ValidString(e.Message) {
		t.Errorf("message of %d bytes (valid UTF-8 %v), suffix %q", len(e.Message), utf8.ValidString(e.Message), e.Message[len(e.Message)-6:])
	}
	b, err = AppendMessage(nil, &SubEnded{SubID: 1, Code: CodeInternal, Message: long})
	if err != nil {
		t.Fatal(err)
	}
	var se SubEnded
	if err := se.Decode(b); err != nil || !strings.HasSuffix(se.Message, "…") || !utf8.ValidString(se.Message) {
		t.Errorf("SubEnded: err %v, message of %d bytes", err, len(se.Message))
	}
}
