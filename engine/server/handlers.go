package server

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// message is any frame body that encodes itself.
type message interface{ Append([]byte) []byte }

// appendMsg appends a whole frame carrying m (nil: an empty body, which always encodes). A field of
// m too long for its length prefix, or a list with more entries than its u16 count can say, appends
// nothing: it returns dst and an error wrapping wire.ErrFieldTooLong.
func appendMsg(dst []byte, op wire.Op, flags wire.Flags, corr uint32, m message) ([]byte, error) {
	out, start := wire.BeginFrame(dst, op, flags, corr)
	if m != nil {
		var err error
		if out, err = wire.AppendMessage(out, m); err != nil {
			return dst, fmt.Errorf("encode %s: %w", op, err)
		}
	}
	return wire.EndFrame(out, start), nil
}

func appendProduceReply(dst []byte, corr uint32, part int32, base, last int64) []byte {
	dst, start := wire.BeginFrame(dst, wire.OpProduce, wire.FlagResponse, corr)
	r := wire.ProduceReply{Partition: part, BaseOffset: base, LastOffset: last}
	return wire.EndFrame(r.Append(dst), start)
}

// reply appends a response frame for request f; one larger than the client's maximum frame, or
// with a field too long to encode, is replaced by an error answering f.
func (ss *session) reply(f wire.Frame, m message) {
	start := len(ss.out)
	out, err := appendMsg(ss.out, f.Op, wire.FlagResponse, f.Corr, m)
	if err != nil {
		ss.out = wire.AppendError(out, f.Corr, wire.CodeInvalidRequest, err.Error())
		return
	}
	ss.out = out
	if n := len(ss.out) - start; n > ss.peerMax {
		ss.out = appendReplyTooLarge(ss.out[:start], f.Corr, n, ss.peerMax)
	}
}

// appendReplyTooLarge answers request corr with CodeFrameTooLarge: its response of n bytes would
// exceed the client's maximum frame. The connection stays.
func appendReplyTooLarge(dst []byte, corr uint32, n, peerMax int) []byte {
	return wire.AppendError(dst, corr, wire.CodeFrameTooLarge, fmt.Sprintf("the response of %d bytes exceeds the client's maximum frame of %d", n, peerMax))
}

// fail appends an error frame answering request f.
func (ss *session) fail(f wire.Frame, err error) { ss.out = appendError(ss.out, f.Corr, err) }

// appendError appends an Error frame answering the request with correlation id corr: err's code
// (wire.CodeOf) and message (errMessage).
func appendError(dst []byte, corr uint32, err error) []byte {
	return wire.AppendError(dst, corr, wire.CodeOf(err), errMessage(err))
}

// decode parses f's body into m; a body that does not parse is fatal for the connection. Off the
// data path only: m escapes through the interface (produce and credit decode inline).
func (ss *session) decode(f wire.Frame, m interface{ Decode([]byte) error }) bool {
	if err := m.Decode(f.Body); err != nil {
		ss.fatal(wire.CodeMalformedFrame, err.Error())
		return false
	}
	return true
}

// handle serves one request. f.Body aliases gnet's buffer: nothing may keep it past this call.
func (ss *session) handle(f wire.Frame) {
	if f.Flags&wire.FlagResponse != 0 {
		ss.fatal(wire.CodeMalformedFrame, "response flag on a request")
		return
	}
	if !ss.handshaken {
		ss.hello(f)
		return
	}
	if !ss.authed && f.Op != wire.OpAuth && f.Op != wire.OpPing {
		ss.srv.stats.AuthFailures.Add(1)
		ss.fail(f, wire.CodeAuthFailed)
		return
	}
	switch f.Op {
	case wire.OpProduce:
		ss.produce(f)
	case wire.OpCredit:
		var m wire.Credit
		if err := m.Decode(f.Body); err != nil {
			ss.fatal(wire.CodeMalformedFrame, err.Error())
			return
		}
		if s := ss.subs[m.SubID]; s != nil {
			s.AddCredit(m.Bytes)
			ss.activate(s)
		}
	case wire.OpPing:
		var m wire.Ping
		if !ss.decode(f, &m) {
			return
		}
		ss.reply(f, &m)
	case wire.OpSubscribe:
		ss.subscribe(f)
	case wire.OpUnsubscribe:
		var m wire.SubID
		if !ss.decode(f, &m) {
			return
		}
		if ss.subs[m.SubID] == nil {
			ss.fail(f, wire.CodeUnknownSubscription)
			return
		}
		ss.closeSub(m.SubID)
		ss.reply(f, nil)
	case wire.OpCommit:
		ss.commit(f)
	case wire.OpFetchOffset:
		var m wire.Commit
		if !ss.decode(f, &m) {
			return
		}
		if !ss.allowed(f, ActConsume, m.Topic) || !ss.allowedGroup(f, m.Group) {
			return
		}
		ss.reply(f, &wire.Offset{Offset: ss.srv.e.CommittedOffset(m.Group, m.Topic, m.Partition)})
	case wire.OpAuth:
		ss.auth(f)
	case wire.OpHello:
		ss.fatal(wire.CodeInvalidRequest, "second hello")
	case wire.OpAck, wire.OpNack:
		ss.settle(f)
	case wire.OpEndTxn:
		ss.endTxn(f)
	case wire.OpCreateTopic, wire.OpDeleteTopic, wire.OpListTopics, wire.OpDescribe, wire.OpListGroups, wire.OpDescribeGrp, wire.OpDeleteGroup:
		ss.admin(f)
	default:
		if !f.Op.Known() {
			ss.fatal(wire.CodeUnknownOp, fmt.Sprintf("operation 0x%02x", uint8(f.Op)))
			return
		}
		ss.fatal(wire.CodeInvalidRequest, f.Op.String()+" is not a request")
	}
}

func (ss *session) hello(f wire.Frame) {
	if f.Op != wire.OpHello {
		ss.fatal(wire.CodeHandshakeRequired, "the first frame must be hello, got "+f.Op.String())
		return
	}
	var m wire.Hello
	if !ss.decode(f, &m) {
		return
	}
	if m.Version < wire.MinProtocolVersion {
		ss.fatal(wire.CodeUnsupportedVersion, fmt.Sprintf("version %d; this broker speaks %d to %d", m.Version, wire.MinProtocolVersion, wire.ProtocolVersion))
		return
	}
	ss.handshaken = true
	ss.version, ss.clientID = min(m.Version, wire.ProtocolVersion), m.ClientID
	ss.peerMax = peerMaxFrame(m.MaxFrame)
	// The broker's limits, so a client sizes its batches under the batch limit and pings often enough
	// to outlast the idle timeout (docs/protocol.md, HelloReply).
	ss.reply(f, &wire.HelloReply{Version: ss.version, MaxFrame: uint32(ss.srv.opts.MaxFrame),
		AuthRequired: !ss.authed, ServerID: "sluice",
		MaxBatchBytes: uint32(ss.srv.e.Options().MaxBatchBytes),
		IdleTimeoutMs: uint32(min(ss.srv.opts.IdleTimeout.Milliseconds(), math.MaxUint32))})
}

// authStepOffLoop runs a conversation step that is too slow for the loop. Tests replace it.
var authStepOffLoop = func(c auth.Conversation, in []byte) ([]byte, bool, error) { return c.Step(in) }

// auth serves one step of an authentication exchange (auth.Authenticator: token, PLAIN, SCRAM).
// A step that needs an answer from the client is replied to with the server's message; the last
// step sets the principal and is replied to with the server's final message (SCRAM's server
// signature) or, when the mechanism has none, the principal's name. A failure, an unknown
// mechanism, or a change of mechanism in the middle of an exchange is CodeAuthFailed, fatal.
func (ss *session) auth(f wire.Frame) {
	var m wire.Auth
	if !ss.decode(f, &m) {
		return
	}
	if ss.authConv != nil && m.Mechanism != ss.authMech {
		ss.srv.stats.AuthFailures.Add(1)
		ss.fatal(wire.CodeAuthFailed, "mechanism "+m.Mechanism+" in the middle of a "+ss.authMech+" exchange")
		return
	}
	if ss.authConv == nil {
		conv, err := ss.srv.auth.Load().authn.Start(m.Mechanism)
		if err != nil {
			ss.srv.stats.AuthFailures.Add(1)
			ss.fatal(wire.CodeAuthFailed, "mechanism "+m.Mechanism+" is not offered")
			return
		}
		ss.authConv, ss.authMech = conv, m.Mechanism
	}
	var out []byte
	var done bool
	var err error
	switch {
	case ss.authDone != nil: // the parked frame served again: its step ran off the loop
		out, done, err = ss.authDone.out, ss.authDone.done, ss.authDone.err
		ss.authDone = nil
	case m.Mechanism == auth.MechPlain:
		// PLAIN against a user derives a key (PBKDF2, about a millisecond at 4096 iterations): off
		// the loop, as park does for topic creation, so that a flood of attempts cannot stall the
		// loop's other connections. The frame stays parked until the step is done.
		conv, payload := ss.authConv, append([]byte(nil), m.Payload...) // f.Body is gnet's buffer
		ss.parked = true
		go func() {
			out, done, err := authStepOffLoop(conv, payload)
			ss.created.Store(&createResult{auth: &authStep{out: out, done: done, err: err}})
			ss.wakeLoop()
		}()
		return
	default: // token and SCRAM: a map lookup, a few HMACs
		out, done, err = ss.authConv.Step(m.Payload)
	}
	if err != nil {
		ss.authConv = nil
		msg := "mechanism " + m.Mechanism
		if len(out) > 0 {
			msg += ": " + string(out) // SCRAM's server-final error, e.g. e=invalid-proof
		}
		ss.srv.log.Debug("authentication failed", "remote", ss.addr, "mechanism", m.Mechanism, "err", err)
		ss.srv.stats.AuthFailures.Add(1)
		ss.fatal(wire.CodeAuthFailed, msg)
		return
	}
	if !done {
		ss.reply(f, &wire.Auth{Mechanism: m.Mechanism, Payload: out})
		return
	}
	principal := ss.authConv.Principal()
	ss.authConv = nil
	ss.authed, ss.principal = true, principal
	if len(out) == 0 {
		// The payload names the principal: a client names its reply inboxes after it (wire.InboxName).
		out = []byte(principal)
	}
	ss.reply(f, &wire.Auth{Mechanism: m.Mechanism, Payload: out})
}

// allowed checks that the principal may do act on topic (acl.go resolves dead-letter topics and
// inboxes) and answers f with CodeNotAuthorized when not. It does not allocate on a grant.
func (ss *session) allowed(f wire.Frame, act Action, topic string) bool {
	if !auth.MayTopic(ss.srv.auth.Load().acl, ss.principal, act, topic) {
		ss.deny(f, act.String()+" topic "+topic)
		return false
	}
	return true
}

// allowedGroup checks that the principal may consume as group (join it, commit or fetch its
// offsets, describe it) and answers f with CodeNotAuthorized when not. The empty group (a consumer
// outside any group) needs nothing.
func (ss *session) allowedGroup(f wire.Frame, group string) bool {
	if group != "" && !auth.MayGroup(ss.srv.auth.Load().acl, ss.principal, ActConsume, group) {
		ss.deny(f, "consume group "+group)
		return false
	}
	return true
}

// allowedCreate checks that the principal may create a topic with cfg (auth.MayCreate).
func (ss *session) allowedCreate(f wire.Frame, cfg wire.TopicConfig) bool {
	if !auth.MayCreate(ss.srv.auth.Load().acl, ss.principal, cfg) {
		msg := "admin topic " + cfg.Name
		if wire.IsInbox(cfg.Name) {
			msg += " (an inbox is created by its owner, memory-only, with one partition)"
		}
		ss.deny(f, msg)
		return false
	}
	return true
}

func (ss *session) deny(f wire.Frame, what string) {
	ss.fail(f, &wire.ProtocolError{Code: wire.CodeNotAuthorized, Message: what})
}

// produce is the hot path: decode in place, append (the one copy), answer per durability.
func (ss *session) produce(f wire.Frame) {
	var m wire.Produce
	if err := m.Decode(f.Body); err != nil {
		ss.fatal(wire.CodeMalformedFrame, err.Error())
		return
	}
	if ss.srv.stopping.Load() {
		ss.fail(f, wire.CodeShuttingDown) // nothing stored: the client may resend it after reconnecting
		return
	}
	e := ss.srv.e
	t := e.Topic(m.Topic)
	if t == nil {
		// Authorized before anything is created: the produce, and the creation itself.
		name := string(m.Topic)
		if !ss.allowed(f, ActProduce, name) ||
			(e.Options().AutoCreateTopics && !ss.allowedCreate(f, wire.TopicConfig{Name: name})) {
			return
		}
		ss.needTopic(f, name)
		return
	}
	if ss.srv.auth.Load().acl != nil && !ss.allowed(f, ActProduce, t.Name()) {
		return
	}
	p, err := t.PickPartition(m.Partition)
	if err != nil {
		ss.fail(f, err)
		return
	}
	if m.Durability == wire.DurabilityFsync && len(ss.pending) >= ss.srv.opts.MaxPendingAcks {
		ss.fail(f, &wire.ProtocolError{Code: wire.CodeThrottled, Message: "too many produces awaiting fsync"})
		return
	}
	var start int64 // the sampled produce's arrival, unix nanos (metrics.go, produceSampleMask)
	if ss.produceSeq++; ss.produceSeq&produceSampleMask == 0 {
		start = ss.lastActive.Load() // readFrames' clock reading for this frame
	}
	base, last, err := p.AppendAs(m.Batches, ss.principal) // a transaction is its opener's
	if err != nil {
		ss.fail(f, err)
		if errors.Is(err, wire.ErrCorrupt) || errors.Is(err, wire.ErrTruncated) {
			ss.dead = true // a corrupt batch means the stream cannot be trusted: close after the error
		}
		return
	}
	noReply := f.Flags&wire.FlagNoReply != 0 || m.Durability == wire.DurabilityNone
	if d := ss.srv.opts.MinDurability; d > m.Durability {
		m.Durability = d // the broker's floor
	}
	switch {
	case noReply:
		if m.Durability == wire.DurabilityFsync && !t.Memory() {
			p.RequestSync()
		}
	case m.Durability == wire.DurabilityFsync && p.SyncedOffset() <= last && !t.Memory():
		if _, ok := ss.watched[p]; !ok {
			ss.watched[p] = struct{}{}
			p.Watch(ss)
		}
		ss.pending = append(ss.pending, pendingAck{part: p, last: last, base: base, corr: f.Corr, start: start})
		p.RequestSync()
		if p.SyncedOffset() > last {
			ss.releaseAcks() // the flusher synced between the append and the Watch
		}
	default:
		ss.out = appendProduceReply(ss.out, f.Corr, p.ID(), base, last)
		ss.srv.sampleProduce(start)
	}
}

// needTopic answers a produce f for a topic that does not exist: CodeUnknownTopic, or on an
// auto-creating broker, the frame waits (parked) while the topic is created off the loop and is then
// served again; if that creation failed, f gets its error. The caller has authorized the creation.
func (ss *session) needTopic(f wire.Frame, name string) {
	e := ss.srv.e
	switch err := ss.createFailed(name); {
	case err != nil:
		ss.fail(f, err)
	case !e.Options().AutoCreateTopics:
		ss.fail(f, &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: name})
	default:
		ss.park(name)
	}
}

// settle serves Ack and Nack for a work-queue subscription.
func (ss *session) settle(f wire.Frame) {
	var m wire.Ack
	if !ss.decode(f, &m) {
		return
	}
	s := ss.subs[m.SubID]
	if s == nil {
		ss.fail(f, wire.CodeUnknownSubscription)
		return
	}
	var err error
	if f.Op == wire.OpAck {
		err = s.Ack(m.Partition, m.Count(), m.Offset)
	} else {
		err = s.Nack(m.Partition, m.Count(), m.Offset, time.Duration(m.DelayMs)*time.Millisecond)
	}
	switch {
	case err != nil:
		ss.fail(f, err)
	case f.Flags&wire.FlagNoReply != 0:
	case f.Op == wire.OpAck:
		// Answered from the queue state store's writer once the ack is on disk.
		corr, op := f.Corr, f.Op
		s.SyncSettlements(func(err error) {
			var b []byte
			if err != nil {
				b = wire.AppendError(nil, corr, wire.CodeOf(err), err.Error())
			} else {
				b, _ = appendMsg(nil, op, wire.FlagResponse, corr, nil) // an empty body always encodes
			}
			_ = ss.c.AsyncWrite(b, nil)
		})
	default:
		ss.reply(f, nil)
	}
}

func (ss *session) subscribe(f wire.Frame) {
	var m wire.Subscribe
	if !ss.decode(f, &m) {
		return
	}
	pattern := engine.IsPattern(m.Topic) // checked per matched topic instead (MayTopic below)
	if !pattern && !ss.allowed(f, ActConsume, m.Topic) || !ss.allowedGroup(f, m.Group) {
		return
	}
	if ss.subs[m.SubID] != nil {
		ss.fail(f, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "subscription id in use"})
		return
	}
	if err := ss.reserveSub(m.SubID); err != nil {
		ss.fail(f, err)
		return
	}
	var opts engine.SubscribeOptions
	if pattern {
		// Asked on this loop at each match, with the rules in force then (SetAuth's, not Start's).
		opts.MayTopic = func(name string) bool { return auth.MayTopic(ss.srv.auth.Load().acl, ss.principal, ActConsume, name) }
	}
	if m.Group != "" { // named in DescribeGroup's member list
		opts.ClientID = ss.clientID
		if ra := ss.c.RemoteAddr(); ra != nil {
			opts.Addr = ra.String()
		}
	}
	s, starts, err := ss.srv.e.SubscribeWith(m, ss, opts) // never creates: CodeUnknownTopic
	if err != nil {
		ss.releaseSub(m.SubID)
		ss.fail(f, err)
		return
	}
	ss.subs[m.SubID] = s
	if pattern {
		ss.reply(f, &wire.SubscribeReply{SubID: m.SubID})
		ss.activate(s)
		return
	}
	ss.topics[m.Topic] = s.Topic()
	if isInbox(m.Topic, s.Topic().Config().Flags) {
		ss.srv.claimInbox(ss, m.Topic, false)
	}
	ss.reply(f, &wire.SubscribeReply{SubID: m.SubID, Starts: starts})
	ss.activate(s)
}

func (ss *session) commit(f wire.Frame) {
	var m wire.Commit
	if !ss.decode(f, &m) {
		return
	}
	if !ss.allowed(f, ActConsume, m.Topic) || !ss.allowedGroup(f, m.Group) {
		return
	}
	corr, op := f.Corr, f.Op
	// The store acknowledges from its writer goroutine once the offset is on disk.
	done := func(err error) {
		var b []byte
		if err != nil {
			b = appendError(nil, corr, err)
		} else {
			b, _ = appendMsg(nil, op, wire.FlagResponse, corr, nil) // an empty body always encodes
		}
		_ = ss.c.AsyncWrite(b, nil)
	}
	if t := ss.topics[m.Topic]; t != nil {
		ss.srv.e.CommitTopicOffset(t, m.Group, m.Partition, m.Offset, done) // the incarnation subscribed to
		return
	}
	ss.srv.e.CommitOffset(m.Group, m.Topic, m.Partition, m.Offset, done)
}

// admin serves topic and group administration. Creating and deleting topics touch the file system
// (mkdir, fsync), so they run off the loop and answer with AsyncWrite. Listings show only what the
// principal may describe; a description of what it may not is refused whether or not it exists.
func (ss *session) admin(f wire.Frame) {
	e := ss.srv.e
	acl := ss.srv.auth.Load().acl
	switch f.Op {
	case wire.OpListTopics:
		topics := e.Topics()
		if acl != nil {
			topics = slices.DeleteFunc(topics, func(t wire.TopicConfig) bool {
				return !auth.MayList(acl, ss.principal, t.Name)
			})
		}
		ss.reply(f, &wire.TopicList{Topics: topics})
	case wire.OpListGroups:
		groups := e.ListGroups()
		if acl != nil {
			groups = slices.DeleteFunc(groups, func(g string) bool {
				return !auth.MayGroup(acl, ss.principal, ActConsume, g)
			})
		}
		ss.reply(f, &wire.GroupList{Groups: groups})
	case wire.OpDescribe:
		var m wire.Name
		if !ss.decode(f, &m) || !ss.allowed(f, auth.ActDescribe, m.Name) {
			return
		}
		// Describing never creates: a producer learns the partition count of a topic that exists.
		t := e.TopicByName(m.Name)
		if t == nil {
			ss.fail(f, &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: m.Name})
			return
		}
		info := t.Info()
		ss.reply(f, &info)
	case wire.OpDescribeGrp:
		var m wire.Name
		if !ss.decode(f, &m) || !ss.allowedGroup(f, m.Name) {
			return
		}
		info, err := e.DescribeGroup(m.Name)
		if err != nil {
			ss.fail(f, err)
			return
		}
		if acl != nil { // drop the members and offsets on topics the principal may not describe
			hidden := func(topic string) bool { return !auth.MayTopic(acl, ss.principal, auth.ActDescribe, topic) }
			info.Members = slices.DeleteFunc(info.Members, func(g wire.GroupMember) bool { return hidden(g.Topic) })
			info.Offsets = slices.DeleteFunc(info.Offsets, func(g wire.GroupOffset) bool { return hidden(g.Topic) })
		}
		if ss.version < wire.GroupMemberClientsVersion { // its decoder rejects the client section
			info.DropClients()
		}
		ss.reply(f, &info)
	case wire.OpCreateTopic:
		var m wire.TopicConfig
		if !ss.decode(f, &m) {
			return
		}
		if !ss.allowedCreate(f, m) {
			return
		}
		ss.async(f, func() error {
			_, err := e.CreateTopic(m)
			if err == nil && isInbox(m.Name, m.Flags) {
				ss.srv.claimInbox(ss, m.Name, true)
			}
			return err
		}, nil)
	case wire.OpDeleteTopic:
		var m wire.Name
		if !ss.decode(f, &m) {
			return
		}
		if !ss.allowed(f, ActAdmin, m.Name) {
			return
		}
		ss.async(f, func() error { return e.DeleteTopic(m.Name) }, nil)
	case wire.OpDeleteGroup:
		var m wire.Name
		if !ss.decode(f, &m) {
			return
		}
		// A group's offsets span topics: deleting it takes admin on each of them.
		if info, err := e.DescribeGroup(m.Name); err == nil {
			for _, o := range info.Offsets {
				if !ss.allowed(f, ActAdmin, o.Topic) {
					return
				}
			}
		}
		ss.async(f, func() error {
			done := make(chan error, 1)
			e.DeleteGroup(m.Name, func(err error) { done <- err })
			return <-done
		}, nil)
	}
}

// async runs fn off the loop and answers f with reply() (nil: an empty response) or fn's error.
func (ss *session) async(f wire.Frame, fn func() error, reply func() message) {
	corr, op, peerMax := f.Corr, f.Op, ss.peerMax
	go func() {
		var b []byte
		if err := fn(); err != nil {
			b = appendError(nil, corr, err)
		} else {
			var m message
			if reply != nil {
				m = reply()
			}
			var err error
			if b, err = appendMsg(nil, op, wire.FlagResponse, corr, m); err != nil {
				b = wire.AppendError(nil, corr, wire.CodeInvalidRequest, err.Error())
			} else if len(b) > peerMax {
				b = appendReplyTooLarge(b[:0], corr, len(b), peerMax)
			}
		}
		_ = ss.c.AsyncWrite(b, nil)
	}()
}

// errMessage is the text an Error or SubEnded frame carries for err beside its code: a
// ProtocolError's message, nothing for a bare wire.Code (the code says it all), else err's text.
func errMessage(err error) string {
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		return pe.Message
	}
	if _, ok := err.(wire.Code); ok {
		return ""
	}
	return err.Error()
}

var _ engine.Owner = (*session)(nil)
