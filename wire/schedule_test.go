package wire

import (
	"errors"
	"testing"
)

// CreateTopic's TTL is an optional trailing field: a body without it (from a client before the
// field) decodes with no TTL, one with it round-trips, and nothing else may follow.
func TestCreateTopicTTLField(t *testing.T) {
	old := TopicConfig{Name: "t", Partitions: 3, RetentionMs: 1000}
	var got TopicConfig
	if b := old.AppendCreate(nil); len(b) != len(old.Append(nil)) {
		t.Fatalf("a config without a TTL encodes %d bytes, want the old %d", len(b), len(old.Append(nil)))
	}
	got.TTLMs = 99 // a decode resets it
	if err := got.Decode(old.Append(nil)); err != nil || got != old {
		t.Fatalf("old body: %+v %v", got, err)
	}
	withTTL := old
	withTTL.TTLMs = 30000
	if err := got.Decode(withTTL.AppendCreate(nil)); err != nil || got != withTTL {
		t.Fatalf("with TTL: %+v %v", got, err)
	}
	for _, b := range [][]byte{append(withTTL.AppendCreate(nil), 0), append(old.Append(nil), 1, 2, 3)} {
		if err := got.Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d bytes: %v, want ErrMalformed", len(b), err)
		}
	}
	bad := TopicConfig{Name: "t", Partitions: 1, TTLMs: -1}
	if err := bad.Validate(); err == nil {
		t.Error("negative TTL validated")
	}
}
