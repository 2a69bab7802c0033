package engine

import (
	"bytes"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"

	"github.com/sluicemq/sluice/wire"
)

// Server-side header filters. A subscription's filter is a list of terms joined by '&'; a record is
// delivered when every term holds:
//
//	key=value    a header named key has exactly this value
//	key!=value   no header named key has this value
//	key          a header named key exists
//	!key         no header named key exists
//
// A filtered delivery cannot be a slice of the mapping: the matching records are copied into new
// batches (one per run of consecutive matching offsets, keeping each record's offset, timestamp, key,
// value and headers). Unfiltered subscriptions keep the zero-copy path.
//
// Inflating a compressed batch is bounded by the broker's batch limit (MaxBatchBytes): every batch
// accepted by a produce inflates within it, and a stored batch that does not (or does not inflate, or
// whose records lie about their count: data written before produces checked compressed records) is
// refused after taking at most about that much memory. Such an unreadable batch is passed on as
// stored, unfiltered, for the consumer to apply its own policy to (the Go client stops or skips it,
// client.WithOnCorrupt); the filter never drops records it could not read.

type filterTerm struct {
	key, value []byte
	hasValue   bool
	negate     bool
	lastValue  bool // compare the last header named key only (CEL's headers["k"] == "v"); never negated
}

type filter struct {
	terms []filterTerm // header terms (wire.FilterHeaders), all of which must hold
	prog  cel.Program  // a CEL expression (wire.FilterCEL, celfilter.go), else nil
	act   celRecord    // prog's activation, reset per record
	err   error        // a CEL evaluation that must end the subscription (cost limit), set by match
	stop  int64        // after apply: -1, or the offset to resume from (stopAt)

	// Reused across deliveries: the filtered batches stay valid until the next one (owner goroutine).
	out     []byte
	builder *wire.BatchBuilder
	it      wire.RecordIter // inflation bounded by the batch limit (SetMaxInflated at parse)
	hdrs    []wire.Header
}

// parseFilter parses a filter spec in language lang (header terms or CEL); maxInflated bounds what
// one compressed batch may inflate to (the broker's MaxBatchBytes). An empty spec is no filter (nil).
func parseFilter(s string, lang wire.FilterLang, maxInflated int) (*filter, error) {
	if s == "" {
		return nil, nil
	}
	f := &filter{}
	f.it.SetMaxInflated(maxInflated)
	switch lang {
	case wire.FilterHeaders:
	case wire.FilterCEL:
		var err error
		if f.prog, f.terms, err = compileCEL(s); err != nil {
			return nil, err
		}
		return f, nil
	default:
		return nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("filter language %d", lang)}
	}
	for _, t := range strings.Split(s, "&") {
		var term filterTerm
		switch {
		case strings.Contains(t, "!="):
			k, v, _ := strings.Cut(t, "!=")
			term = filterTerm{key: []byte(k), value: []byte(v), hasValue: true, negate: true}
		case strings.Contains(t, "="):
			k, v, _ := strings.Cut(t, "=")
			term = filterTerm{key: []byte(k), value: []byte(v), hasValue: true}
		case strings.HasPrefix(t, "!"):
			term = filterTerm{key: []byte(t[1:]), negate: true}
		default:
			term = filterTerm{key: []byte(t)}
		}
		if len(term.key) == 0 {
			return nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("filter %q: empty header name in %q", s, t)}
		}
		f.terms = append(f.terms, term)
	}
	return f, nil
}

// match reports whether r, of topic, passes the filter: satisfies every term, or makes the CEL
// expression true. A CEL evaluation that must end the subscription sets f.err and matches nothing.
func (f *filter) match(r *wire.Record, topic string) bool {
	if f.prog != nil {
		f.act.reset(r, topic)
		ok, err := evalCEL(f.prog, &f.act)
		f.act.reset(nil, "") // hold no record past its batch
		if err != nil && f.err == nil {
			f.err = err
		}
		return ok
	}
	for i := range f.terms {
		t := &f.terms[i]
		if t.lastValue {
			var last []byte
			found := false
			r.Headers(func(k, v []byte) bool {
				if bytes.Equal(k, t.key) {
					last, found = v, true
				}
				return true
			})
			if !found || !bytes.Equal(last, t.value) {
				return false
			}
			continue
		}
		found := false
		r.Headers(func(k, v []byte) bool {
			if bytes.Equal(k, t.key) && (!t.hasValue || bytes.Equal(v, t.value)) {
				found = true
				return false
			}
			return true
		})
		if found == t.negate {
			return false
		}
	}
	return true
}

// stopAt ends a filtering pass at the record at off whose evaluation failed (f.err): the matches
// before it are returned, with f.stop = off so the cursor resumes there and meets the error on the
// next pass; with no matches before it, the error.
func (f *filter) stopAt(off int64, flush func() error) ([]byte, error) {
	err := f.err
	f.err = nil
	if ferr := flush(); ferr != nil {
		return nil, ferr
	}
	if len(f.out) == 0 {
		return nil, err
	}
	f.stop = off
	return f.out, nil
}

// apply returns the records of batches (of topic) at or above from that match, as new batches. The
// result is valid until the next call.
func (f *filter) apply(batches []byte, from int64, topic string) ([]byte, error) {
	if f.builder == nil {
		f.builder = wire.NewBatchBuilder(16 << 10)
	}
	f.out = f.out[:0]
	f.stop = -1
	b := f.builder
	b.Reset()
	runBase, next := int64(-1), int64(-1)
	flush := func() error {
		if b.Count() == 0 {
			return nil
		}
		batch, err := b.Build()
		if err != nil {
			return err
		}
		start := len(f.out)
		f.out = append(f.out, batch...)
		wire.SetBaseOffset(f.out[start:], runBase)
		b.Reset()
		return nil
	}
	var r wire.Record
	for rest := batches; len(rest) > 0; {
		h, err := f.it.Reset(rest)
		if err == nil && h.Codec() != wire.CodecNone {
			err = f.it.Check() // the whole batch before any of it, so a lying batch yields nothing
		}
		if err != nil {
			if h.Magic != wire.Magic || h.Size() < wire.BatchHeaderSize || h.Size() > len(rest) {
				return nil, err // not even framed: the log itself is damaged
			}
			// Framed but unreadable: pass it on as stored (see the top of this file).
			if err := flush(); err != nil {
				return nil, err
			}
			if h.LastOffset() >= from {
				f.out = append(f.out, rest[:h.Size()]...)
			}
			rest, next = rest[h.Size():], -1
			continue
		}
		rest = rest[h.Size():]
		for f.it.Next(&r) {
			if r.Offset < from || !f.match(&r, topic) {
				if f.err != nil {
					return f.stopAt(r.Offset, flush)
				}
				continue
			}
			if r.Offset != next { // a gap: close the run so offsets stay base + index
				if err := flush(); err != nil {
					return nil, err
				}
				runBase = r.Offset
			}
			f.hdrs = r.AppendHeaders(f.hdrs[:0])
			b.Append(r.Key, r.Value, f.hdrs, r.Timestamp)
			next = r.Offset + 1
		}
		if err := f.it.Err(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return f.out, nil
}
