package engine

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/sluicemq/sluice/wire"
)

// Topic patterns, in NATS's convention. A topic name is a sequence of tokens separated by '.'; a
// pattern is one too, where the token '*' matches exactly one token and the token '>', last only,
// matches one or more tokens:
//
//	telemetry.*.temp   telemetry.eu.temp, telemetry.us.temp; not telemetry.temp, telemetry.eu.x.temp
//	orders.>           orders.new, orders.eu.paid; not orders
//	>                  every topic
//
// '*' and '>' never occur in topic names (validTopicName), so a subscription's topic is a pattern
// exactly when it holds one of them. A pattern subscription covers the matching topics that exist
// when it opens and those created while it lives (patternTable); a matching topic deleted under it
// ends that topic's part only.

// IsPattern reports whether name is a topic pattern rather than a topic name.
func IsPattern(name string) bool { return strings.ContainsAny(name, "*>") }

// checkPattern refuses a pattern whose wildcards are not whole tokens, a '>' that is not the last
// token, or an empty token, with CodeInvalidRequest.
func checkPattern(p string) error {
	for i, rest := 0, p; ; i++ {
		tok, more, found := strings.Cut(rest, ".")
		switch {
		case tok == "":
			return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("pattern %q: empty token", p)}
		case tok == ">" && found:
			return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("pattern %q: '>' is only the last token", p)}
		case tok != "*" && tok != ">" && strings.ContainsAny(tok, "*>"):
			return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("pattern %q: a wildcard is a whole token", p)}
		case tok != "*" && tok != ">" && validTopicName(tok) != nil:
			return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf("pattern %q: token %q is not in the topic alphabet", p, tok)}
		}
		if !found {
			return nil
		}
		rest = more
	}
}

// MatchPattern reports whether topic name matches pattern (see the top of this file). It does not
// allocate.
func MatchPattern(pattern, name string) bool {
	for {
		ptok, prest, pmore := strings.Cut(pattern, ".")
		if ptok == ">" {
			return name != ""
		}
		ntok, nrest, nmore := strings.Cut(name, ".")
		if ptok != "*" && ptok != ntok || ntok == "" && ptok == "*" {
			return false
		}
		if !pmore || !nmore {
			return pmore == nmore
		}
		pattern, name = prest, nrest
	}
}

// patternTable holds the live pattern subscriptions, so that a topic created later joins those it
// matches. mu guards subs; it is taken after Engine.adminMu (CreateTopic) and never with a
// Subscription's owner-goroutine state held by another goroutine.
type patternTable struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

func (pt *patternTable) add(s *Subscription) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.subs == nil {
		pt.subs = map[*Subscription]struct{}{}
	}
	pt.subs[s] = struct{}{}
}

func (pt *patternTable) remove(s *Subscription) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	delete(pt.subs, s)
}

// created tells every live pattern subscription matching t's name that t exists: the topic is queued
// on the subscription (pending) and its owner told through Owner.Reassign, whose ApplyAssignment
// adds t's cursors on the owner goroutine.
func (pt *patternTable) created(t *Topic) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for s := range pt.subs {
		if MatchPattern(s.spec.Topic, t.cfg.Name) {
			s.pendingMu.Lock()
			s.pending = append(s.pending, t)
			s.pendingMu.Unlock()
			s.owner.Reassign(s)
		}
	}
}

// subscribePattern is SubscribeWith for a pattern.
func (e *Engine) subscribePattern(spec wire.Subscribe, owner Owner, opts SubscribeOptions) (*Subscription, []wire.PartitionOffset, error) {
	if err := checkPattern(spec.Topic); err != nil {
		return nil, nil, err
	}
	switch {
	case spec.Mode == wire.ModeQueue:
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "pattern " + spec.Topic + ": no work queue over a pattern in this version"}
	case spec.Partition >= 0:
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "pattern " + spec.Topic + ": a pattern subscription takes every partition (-1)"}
	case spec.Start == wire.StartOffset:
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "pattern " + spec.Topic + ": an offset names a partition of one topic; start earliest, latest or at a time"}
	}
	s := &Subscription{ID: spec.SubID, e: e, owner: owner, spec: spec, credit: int64(spec.Credit),
		pattern: true, mayTopic: opts.MayTopic, matched: map[*Topic]bool{}}
	var err error
	if s.filter, err = parseFilter(spec.Filter, spec.FilterLang, e.opts.MaxBatchBytes); err != nil {
		return nil, nil, err
	}
	// Registered before the topics are listed: a topic created meanwhile is in the listing, or
	// pending, or both (addTopic takes it once).
	e.patterns.add(s)
	topics := *e.topics.Load()
	names := make([]string, 0, len(topics))
	for name := range topics {
		if MatchPattern(spec.Topic, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names) // a stable cursor order: the round-robin starts the same way every time
	if spec.Group != "" {
		// A group member offers its group the topics it may read; the assignment arrives through
		// Reassign, as for a named topic's.
		var offered []*Topic
		for _, name := range names {
			if t := topics[name]; s.mayRead(t) {
				s.matched[t] = false
				offered = append(offered, t)
			}
		}
		if err := e.groups.join(s, opts.ClientID, opts.Addr, offered); err != nil {
			s.Close()
			return nil, nil, err
		}
		return s, nil, nil
	}
	for _, name := range names {
		if err := s.addTopic(topics[name], false); err != nil {
			s.Close()
			return nil, nil, err
		}
	}
	return s, nil, nil
}

// mayRead reports whether the pattern subscription takes t: not matched yet, not deleted, and
// allowed by mayTopic. Owner goroutine.
func (s *Subscription) mayRead(t *Topic) bool {
	if _, ok := s.matched[t]; ok || t.deleted.Load() || s.closed {
		return false
	}
	return s.mayTopic == nil || s.mayTopic(t.cfg.Name)
}

// addTopic adds cursors on every partition of t, unless t is already matched, deleted, or refused by
// mayTopic. A topic there at subscribe starts where spec.Start says; one created later starts at its
// first record (created), so nothing produced to it after its creation is missed. Owner goroutine.
func (s *Subscription) addTopic(t *Topic, created bool) error {
	if !s.mayRead(t) {
		return nil
	}
	offs := make([]int64, len(t.parts))
	for i, p := range t.parts {
		var err error
		switch {
		case created:
			offs[i] = p.StartOffset()
		default:
			if offs[i], err = s.startOffset(p); err != nil {
				return err
			}
		}
	}
	s.matched[t] = created
	for i, p := range t.parts {
		s.addCursor(p, offs[i])
	}
	return nil
}

// applyPending adds the topics created since the last call: a group member offers those it may read
// to its group (which rebalances); any other subscription reads them. Owner goroutine.
func (s *Subscription) applyPending() {
	s.pendingMu.Lock()
	pending := s.pending
	s.pending = nil
	s.pendingMu.Unlock()
	if s.spec.Group != "" {
		var offered []*Topic
		for _, t := range pending {
			if s.mayRead(t) {
				s.matched[t] = true
				offered = append(offered, t)
			}
		}
		if len(offered) > 0 {
			s.e.groups.addTopics(s, offered)
		}
		return
	}
	for _, t := range pending {
		if err := s.addTopic(t, true); err != nil && s.err == nil {
			s.err = err // a storage failure resolving its start: the subscription ends with it
		}
	}
}

// dropTopic removes the cursors of a deleted matched topic: its part of the subscription ends, the
// rest goes on. Owner goroutine.
func (s *Subscription) dropTopic(t *Topic) {
	delete(s.matched, t)
	kept := s.cursors[:0]
	for _, c := range s.cursors {
		if c.part.topic != t {
			kept = append(kept, c)
			continue
		}
		c.part.removeCursor(c)
		c.sub = nil // stale wake-ups for it are ignored
		c.ready = false
	}
	clear(s.cursors[len(kept):])
	s.cursors = kept
	s.ready = slices.DeleteFunc(s.ready, func(c *Cursor) bool { return c.part.topic == t })
}

// applyTopicAssignment is ApplyAssignment for a pattern group member: its cursors become the
// partitions its group assigns it, across topics, a new one starting at the group's committed
// offset (else at its first record for a topic created while the subscription lives, else where
// spec.Start says). The Assign names them per topic, in name order. Owner goroutine.
func (s *Subscription) applyTopicAssignment() (wire.Assign, error) {
	gen, parts := s.e.groups.assignment(s)
	a := wire.Assign{SubID: s.ID, Generation: gen}
	if s.err != nil {
		return a, s.err
	}
	kept := s.cursors[:0]
	for _, c := range s.cursors {
		if slices.Contains(parts, topicPart{c.part.topic, c.part.id}) {
			kept = append(kept, c)
			continue
		}
		c.part.removeCursor(c)
		c.sub = nil // stale wake-ups for it are ignored
		c.ready = false
		if i := slices.Index(s.ready, c); i >= 0 {
			s.ready = slices.Delete(s.ready, i, i+1)
		}
	}
	clear(s.cursors[len(kept):])
	s.cursors = kept
	for _, tp := range parts {
		c := s.cursorOn(tp)
		if c == nil {
			if tp.t.deleted.Load() {
				continue // the group hears of it and deals again
			}
			p := tp.t.parts[tp.p]
			off, err := s.startOffset(p)
			if err != nil {
				s.err = err
				continue
			}
			s.addCursor(p, off)
			c = s.cursors[len(s.cursors)-1]
		}
		if n := len(a.Topics); n == 0 || a.Topics[n-1].Topic != tp.t.cfg.Name {
			a.Topics = append(a.Topics, wire.TopicAssign{Topic: tp.t.cfg.Name})
		}
		ta := &a.Topics[len(a.Topics)-1]
		ta.Partitions = append(ta.Partitions, wire.PartitionOffset{Partition: tp.p, Offset: c.next})
	}
	return a, s.err
}

// cursorOn returns the subscription's cursor on tp, or nil. Owner goroutine.
func (s *Subscription) cursorOn(tp topicPart) *Cursor {
	for _, c := range s.cursors {
		if c.part.topic == tp.t && c.part.id == tp.p {
			return c
		}
	}
	return nil
}
