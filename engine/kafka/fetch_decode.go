package kafka

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// Fetch requests are read by the walker below, not by kmsg, for the reason Produce's are (kmsg
// allocates the request, its topic array and each topic's partition array and name per decode).
// The request layout (Kafka's FetchRequest v4-v12, frozen by it; v12 is the flexible version):
//
//	replica_id int32 | max_wait_ms int32 | min_bytes int32 | max_bytes int32 |
//	isolation_level int8 | session_id int32 (v7+) | session_epoch int32 (v7+) | topics [
//	  name string | partitions [
//	    partition int32 | current_leader_epoch int32 (v9+) | fetch_offset int64 |
//	    last_fetched_epoch int32 (v12+) | log_start_offset int64 (v5+) |
//	    partition_max_bytes int32 | tags (v12) ]
//	  | tags (v12) ] |
//	forgotten_topics (v7+) [ name string | partitions [ int32 ] | tags (v12) ] |
//	rack_id string (v11+) | tags (v12)
//
// Only the fields the listener acts on are kept; the rest are checked for length and skipped.

// errShortFetch reports a Fetch request cut short or with a length that does not fit.
var errShortFetch = errors.New("kafka: malformed fetch request")

// fetchReq is a decoded Fetch request. A Fetch may wait in its slot across turns, after gnet has
// reused the frame's buffer, so the topic names are copied into names, which the request owns:
// each name aliases it and stays valid until the request is decoded again. The arrays keep their
// capacity from one decode to the next, so a connection's fetches allocate nothing once it has
// seen their shape. Loop-owned.
type fetchReq struct {
	version       int16
	maxWaitMillis int32
	minBytes      int32
	maxBytes      int32
	isolation     int8 // isolation_level: 0 read_uncommitted, 1 read_committed (docs/kafka.md)
	sessionID     int32
	topics        []fetchReqTopic
	names         []byte
}

type fetchReqTopic struct {
	name    string // aliases fetchReq.names
	nameLen int    // len(name), known before name can be made
	parts   []fetchReqPart
}

type fetchReqPart struct {
	id       int32
	offset   int64
	maxBytes int32 // partition_max_bytes
}

// decode reads body, a Fetch request of r.version (4-12), into r.
func (r *fetchReq) decode(body []byte) error {
	v := r.version
	flex := v >= 12
	b := body
	fixed := 17 // replica, max wait, min bytes, max bytes, isolation level
	if v >= 7 {
		fixed += 8
	}
	if len(b) < fixed {
		return errShortFetch
	}
	r.maxWaitMillis = int32(binary.BigEndian.Uint32(b[4:]))
	r.minBytes = int32(binary.BigEndian.Uint32(b[8:]))
	r.maxBytes = int32(binary.BigEndian.Uint32(b[12:]))
	r.isolation = int8(b[16])
	r.sessionID = 0
	if v >= 7 {
		r.sessionID = int32(binary.BigEndian.Uint32(b[17:]))
	}
	b = b[fixed:]
	partSize := 16 // partition, fetch offset, partition max bytes
	if v >= 9 {
		partSize += 4
	}
	if v >= 12 {
		partSize += 4
	}
	if v >= 5 {
		partSize += 8
	}
	var ok bool
	var n, nt int
	if nt, b, ok = readLen(b, flex, 4); !ok || nt > len(b)/2 {
		return errShortFetch
	}
	nt = max(nt, 0)
	if cap(r.topics) < nt {
		r.topics = append(r.topics[:cap(r.topics)], make([]fetchReqTopic, nt-cap(r.topics))...)
	}
	r.topics = r.topics[:nt]
	r.names = r.names[:0]
	for i := range r.topics {
		t := &r.topics[i]
		if n, b, ok = readLen(b, flex, 2); !ok || n < 0 {
			return errShortFetch
		}
		r.names = append(r.names, b[:n]...)
		t.nameLen, b = n, b[n:]
		var np int
		if np, b, ok = readLen(b, flex, 4); !ok || np > len(b)/partSize {
			return errShortFetch
		}
		np = max(np, 0)
		if cap(t.parts) < np {
			t.parts = append(t.parts[:cap(t.parts)], make([]fetchReqPart, np-cap(t.parts))...)
		}
		t.parts = t.parts[:np]
		for j := range t.parts {
			p := &t.parts[j]
			if len(b) < partSize {
				return errShortFetch
			}
			p.id = int32(binary.BigEndian.Uint32(b))
			at := 4
			if v >= 9 {
				at += 4 // current leader epoch
			}
			p.offset = int64(binary.BigEndian.Uint64(b[at:]))
			at += 8
			if v >= 12 {
				at += 4 // last fetched epoch
			}
			if v >= 5 {
				at += 8 // log start offset
			}
			p.maxBytes = int32(binary.BigEndian.Uint32(b[at:]))
			b = b[partSize:]
			if flex {
				if b, ok = skipTags(b); !ok {
					return errShortFetch
				}
			}
		}
		if flex {
			if b, ok = skipTags(b); !ok {
				return errShortFetch
			}
		}
	}
	// The names alias names only once it has stopped growing.
	at := 0
	for i := range r.topics {
		t := &r.topics[i]
		t.name = ""
		if t.nameLen > 0 {
			t.name = unsafe.String(&r.names[at], t.nameLen)
		}
		at += t.nameLen
	}
	if v >= 7 { // forgotten topics: skipped
		var nf int
		if nf, b, ok = readLen(b, flex, 4); !ok || nf > len(b)/2 {
			return errShortFetch
		}
		for range max(nf, 0) {
			if n, b, ok = readLen(b, flex, 2); !ok || n < 0 {
				return errShortFetch
			}
			b = b[n:]
			if n, b, ok = readLen(b, flex, 4); !ok || n > len(b)/4 {
				return errShortFetch
			}
			b = b[max(n, 0)*4:]
			if flex {
				if b, ok = skipTags(b); !ok {
					return errShortFetch
				}
			}
		}
	}
	if v >= 11 { // rack id
		if n, b, ok = readLen(b, flex, 2); !ok || n < 0 {
			return errShortFetch
		}
		b = b[n:]
	}
	if flex {
		if _, ok = skipTags(b); !ok {
			return errShortFetch
		}
	}
	return nil
}
