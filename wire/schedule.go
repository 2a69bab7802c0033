package wire

import "math"

// Scheduling headers. A record may carry them to change when, whether and in which order it is
// delivered; the broker reads them, never rewrites them. Values are ASCII decimal; a value that is
// not a decimal in range is ignored (the record is delivered as if it had no such header), as is
// every occurrence of a header after its first.
//
//	sluice-ttl         milliseconds, 1 or more: the record expires TTL after its timestamp. An
//	                   expired record is never delivered: stream consumers skip it, a work queue
//	                   moves it to its dead-letter topic with reason "expired".
//	sluice-deliver-at  milliseconds since the Unix epoch: a work queue holds the record back from
//	                   its members until then (stream consumers see it at once).
//	sluice-priority    0-9, default 0: a work queue's members get records of higher priority first
//	                   among those ready (see docs/protocol.md for the starvation bound).
const (
	HeaderTTL       = "sluice-ttl"
	HeaderDeliverAt = "sluice-deliver-at"
	HeaderPriority  = "sluice-priority"
)

// PriorityLevels is the number of priority levels, 0 (the default, lowest) to PriorityLevels-1.
const PriorityLevels = 10

// Schedule is what a record's scheduling headers ask. The zero Schedule is a record without them.
type Schedule struct {
	TTLMs       int64 // 0: no TTL of its own
	DeliverAtMs int64 // unix milliseconds; 0: deliverable at once
	Priority    uint8 // 0 to PriorityLevels-1
}

// ReadSchedule reads r's scheduling headers without allocating. has reports whether r carries at
// least one valid one.
func ReadSchedule(r *Record) (s Schedule, has bool) {
	if r.headerCount == 0 {
		return s, false
	}
	var seenTTL, seenAt, seenPrio bool
	r.Headers(func(k, v []byte) bool {
		if len(k) < len("sluice-ttl") || k[0] != 's' {
			return true
		}
		switch string(k) {
		case HeaderTTL:
			if n, ok := parseDecimal(v); ok && n > 0 && !seenTTL {
				s.TTLMs, has = n, true
			}
			seenTTL = true
		case HeaderDeliverAt:
			if n, ok := parseDecimal(v); ok && !seenAt {
				s.DeliverAtMs, has = n, true
			}
			seenAt = true
		case HeaderPriority:
			if n, ok := parseDecimal(v); ok && n < PriorityLevels && !seenPrio {
				s.Priority, has = uint8(n), true
			}
			seenPrio = true
		}
		return true
	})
	return s, has
}

// ExpiresAtMs is when a record stamped ts (unix ms) with s expires under a topic TTL of topicTTLMs
// (0: none): the earlier of the two TTLs after ts, or 0 for never.
func (s Schedule) ExpiresAtMs(ts, topicTTLMs int64) int64 {
	ttl := s.TTLMs
	if topicTTLMs > 0 && (ttl == 0 || topicTTLMs < ttl) {
		ttl = topicTTLMs
	}
	if ttl == 0 {
		return 0
	}
	if ts > math.MaxInt64-ttl {
		return math.MaxInt64
	}
	return ts + ttl
}

// parseDecimal parses a non-negative ASCII decimal of at most 18 digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hasHeader reports whether r carries a header named key, without allocating.
func (r *Record) hasHeader(key string) bool {
	b := r.headers
	for i := 0; i < r.headerCount; i++ {
		k, n := readBytes(b)
		b = b[n:]
		if string(k) == key {
			return true
		}
		_, n = readBytes(b)
		b = b[n:]
	}
	return false
}
