package server

import (
	"errors"
	"strings"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// Reply inboxes are ephemeral: a requester creates a memory-only topic named InboxPrefix+<random>
// (client.Request) and consumes it for as long as it lives. The server remembers which connection
// created each one; when that connection closes, the inbox is deleted — its topic, its memory
// segments — once InboxGrace passes without a connection claiming it by subscribing to it (a client
// that reconnects resubscribes to its inbox).

// InboxPrefix starts the name of every reply inbox. A memory-only topic with this prefix is owned by
// the connection that created it and deleted after its owner is gone.
const InboxPrefix = engine.InboxPrefix

// inbox is one reply inbox's ownership. Guarded by Server.inboxMu.
type inbox struct {
	owner *session    // the connection that created or last claimed it; nil while orphaned
	timer *time.Timer // set while orphaned: deletes the inbox when it fires
	// claimants are the other open connections that subscribed to it while it had an owner (a
	// client that reconnected before the broker saw its old connection go): the first of them
	// still open becomes the owner when the owner closes.
	claimants map[*session]struct{}
}

// isInbox reports whether a topic named name with flags is a reply inbox.
func isInbox(name string, flags wire.TopicFlags) bool {
	return strings.HasPrefix(name, InboxPrefix) && flags&wire.TopicMemory != 0
}

// claimInbox makes ss the owner of the inbox name: always when ss created it (created), otherwise
// while the inbox has no live owner; else ss becomes a claimant. Any goroutine.
func (s *Server) claimInbox(ss *session, name string, created bool) {
	s.inboxMu.Lock()
	defer s.inboxMu.Unlock()
	in := s.inboxes[name]
	switch {
	case in == nil && created && ss.inboxesOrphaned:
		// ss closed while the create ran: the inbox starts orphaned.
		in = &inbox{}
		s.inboxes[name] = in
		s.orphanLocked(name, in)
	case in == nil && created:
		s.inboxes[name] = &inbox{owner: ss}
	case in != nil && (created || in.owner == nil):
		if in.timer != nil {
			in.timer.Stop()
			in.timer = nil
		}
		in.owner = ss
	case in != nil && in.owner != ss && !ss.inboxesOrphaned:
		if in.claimants == nil {
			in.claimants = map[*session]struct{}{}
		}
		in.claimants[ss] = struct{}{}
	}
}

// orphanInboxes starts the grace period of every inbox ss owns; called when ss closes.
func (s *Server) orphanInboxes(ss *session) {
	s.inboxMu.Lock()
	defer s.inboxMu.Unlock()
	ss.inboxesOrphaned = true
	for name, in := range s.inboxes {
		delete(in.claimants, ss)
		if in.owner != ss {
			continue
		}
		in.owner = nil
		for c := range in.claimants {
			delete(in.claimants, c)
			in.owner = c
			break
		}
		if in.owner == nil {
			s.orphanLocked(name, in)
		}
	}
}

// orphanLocked starts the grace period of the inbox in, named name. Caller holds inboxMu.
func (s *Server) orphanLocked(name string, in *inbox) {
	in.owner = nil
	var t *time.Timer
	t = time.AfterFunc(s.opts.InboxGrace, func() { s.expireInbox(name, t) })
	in.timer = t
}

// expireInbox deletes the inbox name if it is still orphaned by the timer t that fired.
func (s *Server) expireInbox(name string, t *time.Timer) {
	s.inboxMu.Lock()
	in := s.inboxes[name]
	if in == nil || in.owner != nil || in.timer != t {
		s.inboxMu.Unlock()
		return // claimed again meanwhile
	}
	delete(s.inboxes, name)
	s.inboxMu.Unlock()
	if err := s.e.DeleteTopic(name); errors.Is(err, wire.CodeUnknownTopic) {
		return // deleted by a client meanwhile
	} else if err != nil {
		s.log.Warn("deleting an orphaned reply inbox", "topic", name, "err", err)
		return
	}
	s.log.Debug("deleted an orphaned reply inbox", "topic", name)
}
