package httpapi

import (
	"encoding/base64"
	"time"
	"unicode/utf8"

	"github.com/sluicemq/sluice/wire"
)

// Record is a record as JSON carries it, both ways. Encoding says how Key, Value and every header
// value are spelled: "text" (the bytes are the UTF-8 string, the default on input) or "base64"
// (standard, padded). A consumed record is "text" when all of them are valid UTF-8, else "base64".
// A null key or value is an absent field (null); an empty one is "".
//
//	{"key": "k", "value": "hello", "encoding": "text", "headers": [{"key": "h", "value": "v"}],
//	 "partition": 0, "offset": 41, "timestamp": 1767000000000}
type Record struct {
	Key      *string      `json:"key,omitempty"`
	Value    *string      `json:"value,omitempty"`
	Encoding string       `json:"encoding,omitempty"`
	Headers  []HeaderJSON `json:"headers,omitempty"`
	// Timestamp is in milliseconds since the epoch; 0 on input: now.
	Timestamp int64 `json:"timestamp,omitempty"`
	// Partition and Offset are set on output only.
	Partition *int32 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
}

// HeaderJSON is one record header. A header's key is always text.
type HeaderJSON struct {
	Key   string  `json:"key"`
	Value *string `json:"value"`
}

const (
	encText   = "text"
	encBase64 = "base64"
)

// decodeField turns a JSON field into record bytes: nil for absent (a null), else per enc.
func decodeField(s *string, enc, what string) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	if enc == encBase64 {
		b, err := base64.StdEncoding.DecodeString(*s)
		if err != nil {
			return nil, badRequest(what + ": invalid base64")
		}
		if b == nil {
			b = []byte{}
		}
		return b, nil
	}
	return []byte(*s), nil
}

// appendTo adds the record to bb. now is the timestamp a record without one gets, in ms.
func (rec *Record) appendTo(bb *wire.BatchBuilder, now int64) error {
	enc := rec.Encoding
	switch enc {
	case "", encText:
		enc = encText
	case encBase64:
	default:
		return badRequest(`encoding: want "text" or "base64"`)
	}
	key, err := decodeField(rec.Key, enc, "key")
	if err != nil {
		return err
	}
	val, err := decodeField(rec.Value, enc, "value")
	if err != nil {
		return err
	}
	var hs []wire.Header
	for i := range rec.Headers {
		v, err := decodeField(rec.Headers[i].Value, enc, "header "+rec.Headers[i].Key)
		if err != nil {
			return err
		}
		hs = append(hs, wire.Header{Key: []byte(rec.Headers[i].Key), Value: v})
	}
	ts := rec.Timestamp
	if ts == 0 {
		ts = now
	}
	bb.Append(key, val, hs, ts)
	return nil
}

// recordJSON renders one stored record, copying its bytes (they point into the log's mapping).
// It returns the record and its size in bytes as counted against MaxResponseBytes.
func recordJSON(partition int32, r *wire.Record) (Record, int) {
	text := (r.Key == nil || utf8.Valid(r.Key)) && (r.Value == nil || utf8.Valid(r.Value))
	r.Headers(func(_, v []byte) bool {
		text = text && (v == nil || utf8.Valid(v))
		return text
	})
	enc := encBase64
	if text {
		enc = encText
	}
	field := func(b []byte) *string {
		if b == nil {
			return nil
		}
		var s string
		if text {
			s = string(b)
		} else {
			s = base64.StdEncoding.EncodeToString(b)
		}
		return &s
	}
	size := len(r.Key) + len(r.Value)
	out := Record{Key: field(r.Key), Value: field(r.Value), Encoding: enc, Timestamp: r.Timestamp}
	r.Headers(func(k, v []byte) bool {
		size += len(k) + len(v)
		out.Headers = append(out.Headers, HeaderJSON{Key: string(k), Value: field(v)})
		return true
	})
	p, off := partition, r.Offset
	out.Partition, out.Offset = &p, &off
	return out, size
}

func nowMs() int64 { return time.Now().UnixMilli() }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
