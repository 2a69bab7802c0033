package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// message is any frame body that encodes itself.
type message interface{ Append([]byte) []byte }

// appendMsg appends a whole frame carrying m.
func appendMsg(dst []byte, op wire.Op, flags wire.Flags, corr uint32, m message) ([]byte, error) {
	dst, start := wire.BeginFrame(dst, op, flags, corr)
	if m != nil {
		dst = m.Append(dst)
	}
	return wire.EndFrame(dst, start), nil
}

func appendProduceReply(dst []byte, corr uint32, part int32, base, last int64) []byte {
	dst, start := wire.BeginFrame(dst, wire.OpProduce, wire.FlagResponse, corr)
	r := wire.ProduceReply{Partition: part, BaseOffset: base, LastOffset: last}
	return wire.EndFrame(r.Append(dst), start)
}

// reply appends a response frame for request f.
func (ss *session) reply(f wire.Frame, m message) {
	ss.out, _ = appendMsg(ss.out, f.Op, wire.FlagResponse, f.Corr, m)
}

// fail appends an error frame answering request f.
func (ss *session) fail(f wire.Frame, err error) {
	var pe *wire.ProtocolError
	msg := ""
	if errors.As(err, &pe) {
		msg = pe.Message
	} else if _, isCode := err.(wire.Code); !isCode {
		msg = err.Error()
	}
	ss.out = wire.AppendError(ss.out, f.Corr, wire.CodeOf(err), msg)
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
		if !ss.allowed(f, ActConsume, m.Topic) {
			return
		}
		ss.reply(f, &wire.Offset{Offset: ss.srv.e.CommittedOffset(m.Group, m.Topic, m.Partition)})
	case wire.OpAuth:
		ss.auth(f)
	case wire.OpHello:
		ss.fatal(wire.CodeInvalidRequest, "second hello")
	case wire.OpAck, wire.OpNack:
		ss.settle(f)
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
	if m.Version != wire.ProtocolVersion {
		ss.fatal(wire.CodeUnsupportedVersion, fmt.Sprintf("version %d; this broker speaks %d", m.Version, wire.ProtocolVersion))
		return
	}
	ss.handshaken = true
	ss.reply(f, &wire.HelloReply{Version: wire.ProtocolVersion, MaxFrame: uint32(ss.srv.opts.MaxFrame),
		AuthRequired: !ss.authed, ServerID: "sluice"})
}

func (ss *session) auth(f wire.Frame) {
	var m wire.Auth
	if !ss.decode(f, &m) {
		return
	}
	principal, ok := ss.srv.opts.Tokens[string(m.Payload)]
	if m.Mechanism != "token" || !ok {
		ss.fatal(wire.CodeAuthFailed, "mechanism "+m.Mechanism)
		return
	}
	ss.authed, ss.principal = true, principal
	ss.reply(f, &wire.Auth{Mechanism: m.Mechanism})
}

// allowed checks the ACL and answers f with CodeNotAuthorized when it denies.
func (ss *session) allowed(f wire.Frame, act Action, topic string) bool {
	if acl := ss.srv.opts.ACL; acl != nil && !acl.Allow(ss.principal, act, topic) {
		ss.fail(f, &wire.ProtocolError{Code: wire.CodeNotAuthorized, Message: act.String() + " " + topic})
		return false
	}
	return true
}

// produce is the hot path: decode in place, append (the one copy), answer per durability.
func (ss *session) produce(f wire.Frame) {
	var m wire.Produce
	if err := m.Decode(f.Body); err != nil {
		ss.fatal(wire.CodeMalformedFrame, err.Error())
		return
	}
	e := ss.srv.e
	t := e.Topic(m.Topic)
	if t == nil {
		var err error
		if t, err = e.AutoCreate(string(m.Topic)); err != nil {
			ss.fail(f, err)
			return
		}
	}
	if ss.srv.opts.ACL != nil && !ss.allowed(f, ActProduce, t.Name()) {
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
	base, last, err := p.Append(m.Batches)
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
		ss.pending = append(ss.pending, pendingAck{part: p, last: last, base: base, corr: f.Corr})
		p.RequestSync()
		if p.SyncedOffset() > last {
			ss.releaseAcks() // the flusher synced between the append and the Watch
		}
	default:
		ss.out = appendProduceReply(ss.out, f.Corr, p.ID(), base, last)
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
				b, _ = appendMsg(nil, op, wire.FlagResponse, corr, nil)
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
	if !ss.allowed(f, ActConsume, m.Topic) {
		return
	}
	if ss.subs[m.SubID] != nil {
		ss.fail(f, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "subscription id in use"})
		return
	}
	s, starts, err := ss.srv.e.Subscribe(m, ss)
	if err != nil {
		ss.fail(f, err)
		return
	}
	ss.subs[m.SubID] = s
	ss.reply(f, &wire.SubscribeReply{SubID: m.SubID, Starts: starts})
	ss.activate(s)
}

func (ss *session) commit(f wire.Frame) {
	var m wire.Commit
	if !ss.decode(f, &m) {
		return
	}
	if !ss.allowed(f, ActConsume, m.Topic) {
		return
	}
	corr, op := f.Corr, f.Op
	// The store acknowledges from its writer goroutine once the offset is on disk.
	ss.srv.e.CommitOffset(m.Group, m.Topic, m.Partition, m.Offset, func(err error) {
		var b []byte
		if err != nil {
			b = wire.AppendError(nil, corr, wire.CodeOf(err), err.Error())
		} else {
			b, _ = appendMsg(nil, op, wire.FlagResponse, corr, nil)
		}
		_ = ss.c.AsyncWrite(b, nil)
	})
}

// admin serves topic and group administration. Creating and deleting topics touch the file system
// (mkdir, fsync), so they run off the loop and answer with AsyncWrite.
func (ss *session) admin(f wire.Frame) {
	e := ss.srv.e
	switch f.Op {
	case wire.OpListTopics:
		ss.reply(f, &wire.TopicList{Topics: e.Topics()})
	case wire.OpListGroups:
		ss.reply(f, &wire.GroupList{Groups: e.ListGroups()})
	case wire.OpDescribe:
		var m wire.Name
		if !ss.decode(f, &m) {
			return
		}
		// As Kafka's metadata request does, describing a topic creates it on an auto-creating broker,
		// so that a producer can learn the partition count of a topic it is about to create.
		t := e.TopicByName(m.Name)
		if t == nil && e.Options().AutoCreateTopics {
			ss.async(f, func() error { _, err := e.AutoCreate(m.Name); return err }, func() message {
				info := e.TopicByName(m.Name).Info()
				return &info
			})
			return
		}
		if t == nil {
			ss.fail(f, &wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: m.Name})
			return
		}
		info := t.Info()
		ss.reply(f, &info)
	case wire.OpDescribeGrp:
		var m wire.Name
		if !ss.decode(f, &m) {
			return
		}
		info, err := e.DescribeGroup(m.Name)
		if err != nil {
			ss.fail(f, err)
			return
		}
		ss.reply(f, &info)
	case wire.OpCreateTopic:
		var m wire.TopicConfig
		if !ss.decode(f, &m) {
			return
		}
		if !ss.allowed(f, ActAdmin, m.Name) {
			return
		}
		ss.async(f, func() error { _, err := e.CreateTopic(m); return err }, nil)
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
	corr, op := f.Corr, f.Op
	go func() {
		var b []byte
		if err := fn(); err != nil {
			b = wire.AppendError(nil, corr, wire.CodeOf(err), errMessage(err))
		} else {
			var m message
			if reply != nil {
				m = reply()
			}
			b, _ = appendMsg(nil, op, wire.FlagResponse, corr, m)
		}
		_ = ss.c.AsyncWrite(b, nil)
	}()
}

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
