package kafka

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// Produce requests are read by the walker below, not by kmsg: kmsg zeroes the topic array's
// elements on every decode, so their partition arrays were allocated again per request. The
// request layout (Kafka's ProduceRequest v3-v9, frozen by it; v9 is the flexible version, with
// compact lengths, uvarint n+1, and tagged fields):
//
//	transactional_id nullable string | acks int16 | timeout_ms int32 | topics [
//	  name string | partitions [
//	    index int32 | records nullable bytes | tags (v9) ]
//	  | tags (v9) ] | tags (v9)
//
// Only the fields the listener acts on are kept. Bytes after the last field are ignored, as kmsg
// does.

// errShortProduce reports a Produce request cut short or with a length that does not fit.
var errShortProduce = errors.New("kafka: malformed produce request")

// produceReq is a decoded Produce request. It is reused by every produce of a connection: the
// topic and partition arrays keep their capacity (and each topic its partition array), so decoding
// allocates nothing once the connection has seen a request of the same shape. Topic names and
// record bytes alias the frame: nothing may keep them past the request's turn. Loop-owned.
type produceReq struct {
	version       int16
	transactional bool // a transactional id was given
	acks          int16
	timeoutMillis int32
	topics        []produceReqTopic
}

type produceReqTopic struct {
	name  string // aliases the frame
	parts []produceReqPart
}

type produceReqPart struct {
	id      int32
	records []byte // aliases the frame; nil for a null record set
}

// decode reads body, a Produce request of r.version (3-9), into r.
func (r *produceReq) decode(body []byte) error {
	flex := r.version >= 9
	b := body
	var ok bool
	var n int
	if n, b, ok = readLen(b, flex, 2); !ok { // transactional id
		return errShortProduce
	}
	r.transactional = n >= 0
	if n > 0 {
		b = b[n:]
	}
	if len(b) < 6 {
		return errShortProduce
	}
	r.acks = int16(binary.BigEndian.Uint16(b))
	r.timeoutMillis = int32(binary.BigEndian.Uint32(b[2:]))
	b = b[6:]
	var nt int
	if nt, b, ok = readLen(b, flex, 4); !ok || nt > len(b)/2 {
		return errShortProduce
	}
	nt = max(nt, 0) // a null topic array is an empty one
	if cap(r.topics) < nt {
		r.topics = append(r.topics[:cap(r.topics)], make([]produceReqTopic, nt-cap(r.topics))...)
	}
	r.topics = r.topics[:nt]
	for i := range r.topics {
		t := &r.topics[i]
		if n, b, ok = readLen(b, flex, 2); !ok || n < 0 {
			return errShortProduce
		}
		t.name = unsafe.String(unsafe.SliceData(b), n)
		b = b[n:]
		var np int
		if np, b, ok = readLen(b, flex, 4); !ok || np > len(b)/5 {
			return errShortProduce
		}
		np = max(np, 0)
		if cap(t.parts) < np {
			t.parts = append(t.parts[:cap(t.parts)], make([]produceReqPart, np-cap(t.parts))...)
		}
		t.parts = t.parts[:np]
		for j := range t.parts {
			p := &t.parts[j]
			if len(b) < 4 {
				return errShortProduce
			}
			p.id = int32(binary.BigEndian.Uint32(b))
			if n, b, ok = readLen(b[4:], flex, 4); !ok {
				return errShortProduce
			}
			p.records = nil
			if n >= 0 {
				p.records, b = b[:n:n], b[n:]
			}
			if flex {
				if b, ok = skipTags(b); !ok {
					return errShortProduce
				}
			}
		}
		if flex {
			if b, ok = skipTags(b); !ok {
				return errShortProduce
			}
		}
	}
	if flex {
		if _, ok = skipTags(b); !ok {
			return errShortProduce
		}
	}
	return nil
}

// readLen reads a length prefix: in flexible versions a uvarint n+1 (0: null), else a big-endian
// int of width bytes (2 for strings, 4 for arrays and bytes), -1 meaning null. It returns -1 for
// null, and ok false when the prefix is cut short, negative other than null, or longer than what
// follows it (an array's count is checked by the caller against its elements' least size).
func readLen(b []byte, flex bool, width int) (n int, rest []byte, ok bool) {
	if flex {
		u, k := binary.Uvarint(b)
		if k <= 0 || u > uint64(len(b)) {
			return 0, nil, false
		}
		n, rest = int(u)-1, b[k:]
	} else {
		if len(b) < width {
			return 0, nil, false
		}
		if width == 2 {
			n = int(int16(binary.BigEndian.Uint16(b)))
		} else {
			n = int(int32(binary.BigEndian.Uint32(b)))
		}
		rest = b[width:]
	}
	if n < -1 || n > len(rest) {
		return 0, nil, false
	}
	return n, rest, true
}
