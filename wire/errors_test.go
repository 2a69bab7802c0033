package wire

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestCodes(t *testing.T) {
	seen := map[string]Code{}
	for c := CodeOK; c <= CodeTimeout; c++ {
		s := c.String()
		if s == "" || s == fmt.Sprintf("code %d", c) {
			t.Fatalf("code %d has no text", c)
		}
		if prev, dup := seen[s]; dup {
			t.Fatalf("codes %d and %d share %q", prev, c, s)
		}
		seen[s] = c
		if c.Error() != "wire: "+s {
			t.Fatalf("Error() = %q", c.Error())
		}
	}
	if CodeTxnAborted+1 != Code(len(codeText)) {
		t.Fatalf("codeText has %d entries", len(codeText))
	}
	if got := Code(999).String(); got != "code 999" {
		t.Fatalf("unknown code: %q", got)
	}
	// The numbers are frozen: spot-check both ends.
	if CodeInternal != 1 || CodeCorruptBatch != 12 || CodeTimeout != 24 {
		t.Fatal("error code numbers moved")
	}
}

func TestProtocolErrorIs(t *testing.T) {
	pe := &ProtocolError{Code: CodeUnknownTopic, Message: "orders"}
	wrapped := fmt.Errorf("produce: %w", pe)
	if !errors.Is(pe, CodeUnknownTopic) || !errors.Is(wrapped, CodeUnknownTopic) {
		t.Fatal("errors.Is does not match the code")
	}
	if errors.Is(wrapped, CodeUnknownPartition) || errors.Is(wrapped, ErrCorrupt) {
		t.Fatal("errors.Is matches another code")
	}
	var got *ProtocolError
	if !errors.As(wrapped, &got) || got.Message != "orders" {
		t.Fatal("errors.As")
	}
	if pe.Error() != "wire: unknown topic: orders" || (&ProtocolError{Code: CodeTimeout}).Error() != "wire: timeout" {
		t.Fatalf("%q", pe.Error())
	}
	if !errors.Is(fmt.Errorf("x: %w", CodeThrottled), CodeThrottled) {
		t.Fatal("a bare Code is not its own error")
	}
}

func TestCodeOf(t *testing.T) {
	_, corrupt := ValidateBatch(make([]byte, BatchHeaderSize), 0) // magic 0
	_, frameErr := ParseFrameHeader(u32(make([]byte, 0, 10), 1<<30)[:10:10], DefaultMaxFrame)
	cases := []struct {
		err  error
		want Code
	}{
		{nil, CodeOK},
		{ErrFrameTooLarge, CodeFrameTooLarge},
		{frameErr, CodeFrameTooLarge},
		{fmt.Errorf("batch 3: %w", ErrBatchTooLarge), CodeBatchTooLarge},
		{ErrCorrupt, CodeCorruptBatch},
		{corrupt, CodeCorruptBatch},
		{ErrUnknownOp, CodeUnknownOp},
		{ErrUnsupportedVer, CodeUnsupportedVersion},
		{ErrMalformed, CodeMalformedFrame},
		{fmt.Errorf("%w: body too short", ErrMalformed), CodeMalformedFrame},
		{ErrTruncated, CodeMalformedFrame},
		{CodeStorageFull, CodeStorageFull},
		{fmt.Errorf("append: %w", CodeStorageFailed), CodeStorageFailed},
		{&ProtocolError{Code: CodeNotAuthorized}, CodeNotAuthorized},
		{fmt.Errorf("x: %w", &ProtocolError{Code: CodeThrottled, Message: "m"}), CodeThrottled},
		{io.ErrUnexpectedEOF, CodeInternal},
		{errors.New("disk on fire"), CodeInternal},
	}
	for _, c := range cases {
		if got := CodeOf(c.err); got != c.want {
			t.Errorf("CodeOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
