package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/ring"
	"github.com/sluicemq/sluice/wire"
)

// event is work handed to a session's loop from another goroutine.
type event struct {
	cursor   *engine.Cursor       // a cursor with data again
	reassign *engine.Subscription // a group member whose partitions changed
	synced   *engine.Partition    // a partition whose synced offset advanced
}

// pendingAck is a produce waiting for the fdatasync that covers its last offset.
type pendingAck struct {
	part  *engine.Partition
	last  int64
	base  int64
	corr  uint32
	start int64 // a sampled produce's arrival (unix nanos), else 0
}

// inboxCapacity bounds a session's inbox: 128 slots of 32 bytes, 4 KiB a connection. Events are
// coalesced at their sources (a cursor wakes once per caught-up episode), so the inbox holds about one
// entry per cursor, watched partition and group subscription; past that the overflow flag makes the
// loop rescan everything instead, which redoes whatever a dropped event asked for.
const inboxCapacity = 128

// session is one client connection's protocol state. Every field is owned by the connection's event
// loop unless its comment says otherwise.
type session struct {
	srv *Server
	c   transport

	handshaken bool
	principal  string // authenticated principal; "" when authentication is off or not yet done
	authed     bool
	// authConv is the authentication exchange in progress (a SCRAM exchange spans two Auth frames)
	// and authMech its mechanism; nil between exchanges.
	authConv auth.Conversation
	authMech string
	// established: the handshake is complete (Hello, and Auth when required). Until then frames are
	// limited to MaxPreAuthFrame and the session counts against the server's unauthenticated limits.
	established bool
	// peerMax is the largest frame (bytes, header included) the client accepts, from its Hello: no
	// frame sent to it may be larger. wire.DefaultMaxFrame until Hello.
	peerMax int
	addr    netip.Addr // the client's IP address, for the per-address limit; immutable
	opened  int64      // unix nanos when the connection opened, for the handshake timeout; immutable

	// version is the protocol version the handshake settled (the lower of the client's and
	// wire.ProtocolVersion): replies carry only what it reads. 0 until Hello. clientID is the
	// Hello's client id. Both written once by hello, on the loop.
	version  uint16
	clientID string

	subs    map[uint32]*engine.Subscription
	active  []*engine.Subscription // subscriptions with ready cursors to serve
	pending []pendingAck           // fsync-level acks in offset order per partition
	watched map[*engine.Partition]struct{}
	// topics holds, per topic name, the incarnation this connection last subscribed to. Its commits
	// for that name go to that incarnation, so a consumer still committing positions of a deleted
	// topic is refused instead of writing them onto a topic recreated under the name.
	topics map[string]*engine.Topic

	out []byte // responses gathered during one OnTraffic, written with one write at its end
	hdr [wire.FrameHeaderSize + wire.DeliverHeaderSize]byte
	iov [2][]byte

	// hdrTopic is the scratch of a DeliverTopic header (a pattern subscription's delivery): frame
	// header, Deliver fields, topic. Reused; it grows to the longest topic name once.
	hdrTopic []byte

	// deliverFn is writeDelivery bound to this session.
	deliverFn engine.DeliverFunc
	dead      bool // a fatal error frame was queued; close after flushing
	// closed is set by close (OnClose), which gnet may run in the middle of onTraffic: a Write or
	// Writev that fails closes the connection at once. From then on the inbox is closed (its Arm is
	// false for ever) and the connection may not be touched, so every loop in onTraffic stops.
	closed bool

	inbox    *ring.MPSC[event] // written by any goroutine, drained by the loop
	overflow atomic.Bool       // the inbox was full: rescan all cursors and acks

	// parked is set while the frame at the head of the inbound buffer waits for its topic to be
	// auto-created off the loop (see park), or for a PLAIN step to be verified off the loop (auth):
	// readFrames reads nothing until created holds the result, so the frame is then served again, in
	// its place on the connection.
	parked  bool
	created atomic.Pointer[createResult] // set by the creating goroutine, taken by readFrames
	// createErr is the failed creation of createName, answered when the parked frame is served again.
	createName string
	createErr  error
	// authDone is the result of the off-loop step for the parked Auth frame, taken by auth when the
	// frame is served again; nil otherwise.
	authDone *authStep

	lastActive atomic.Int64 // unix nanos of the last frame received; read by the ticker
	produceSeq uint32       // produces served; selects the sampled ones (loop-owned)
	blocked    atomic.Bool  // deliveries paused on a full outbound buffer; the ticker wakes the loop
	closing    atomic.Bool  // closeWith has run; any goroutine

	// outCounted is this connection's share of Server.outbound: its outbound buffer as last measured
	// by its loop (updateOutbound), in bytes. Loop-owned.
	outCounted int64
	// subPrincipal maps each subscription counted against a principal's cap to that principal (a
	// connection may authenticate again as another). Loop-owned.
	subPrincipal map[uint32]string
	// inboxesOrphaned is set when the connection closes: an inbox it creates after that starts
	// orphaned. Guarded by Server.inboxMu.
	inboxesOrphaned bool
	// drained is stored by the loop once the server is stopping, at the end of each turn: true once
	// no produce awaits an fsync, every answer has left gnet's buffer and the write side is shut
	// (halfClosed). Read by Server.drain.
	drained atomic.Bool
	// halfClosed: the stopping server has shut this connection's write side (FIN after the last
	// answer) and now only discards input until the client closes, so that closing never finds
	// unread input, which would make the kernel reset the connection and could cost the client
	// answers it had not read yet.
	halfClosed bool
}

// transport is what a session needs of its connection: gnet.Conn provides it for plain TCP, tlsConn
// for TLS. Peek, Discard, Write, Writev and the Buffered calls run on the session's loop; AsyncWrite,
// Wake and Close may be called from any goroutine.
type transport interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	InboundBuffered() int
	OutboundBuffered() int
	Write(b []byte) (int, error)
	Writev(bs [][]byte) (int, error)
	AsyncWrite(b []byte, cb gnet.AsyncCallback) error
	Wake(cb gnet.AsyncCallback) error
	Close() error
	RemoteAddr() net.Addr
}

func newSession(srv *Server, c transport) (*session, error) {
	ss := &session{srv: srv, c: c, subs: map[uint32]*engine.Subscription{}, watched: map[*engine.Partition]struct{}{},
		topics: map[string]*engine.Topic{}}
	ss.deliverFn = ss.writeDelivery // bound once: a method value taken per call would allocate
	inbox, err := ring.NewMPSC[event](ring.Options{Capacity: inboxCapacity, Waker: ss.wakeLoop})
	if err != nil {
		return nil, err
	}
	ss.inbox = inbox
	ss.opened = time.Now().UnixNano()
	ss.lastActive.Store(ss.opened)
	ss.addr = addrOf(c.RemoteAddr())
	ss.peerMax = wire.DefaultMaxFrame
	ss.authed = !srv.auth.Load().authn.Enabled()
	return ss, nil
}

// wakeLoop asks gnet to run OnTraffic for the connection on its loop. Any goroutine.
func (ss *session) wakeLoop() { _ = ss.c.Wake(nil) }

// post hands ev to the loop. Any goroutine; never blocks.
func (ss *session) post(ev event) {
	if !ss.inbox.Offer(ev) {
		ss.overflow.Store(true)
		ss.wakeLoop()
	}
}

// Wake implements engine.Owner.
func (ss *session) Wake(c *engine.Cursor) { ss.post(event{cursor: c}) }

// Reassign implements engine.Owner.
func (ss *session) Reassign(s *engine.Subscription) { ss.post(event{reassign: s}) }

// Synced implements engine.SyncWatcher.
func (ss *session) Synced(p *engine.Partition, _ int64) { ss.post(event{synced: p}) }

// onTraffic serves the connection: inbox events, then every whole frame buffered, then deliveries,
// then one write of the gathered responses.
func (ss *session) onTraffic() gnet.Action {
	if ss.halfClosed {
		_, _ = ss.c.Discard(ss.c.InboundBuffered())
		return gnet.None
	}
	for {
		ss.drainInbox()
		if ss.dead {
			break
		}
		ss.readFrames()
		if !ss.dead {
			ss.serveDeliveries()
		}
		ss.flush()
		// Sleep only if nothing arrived meanwhile; Arm's false means poll again. A closed session's
		// inbox never arms: stop (polling it again spun the loop for ever).
		if ss.dead || ss.closed || ss.inbox.Arm() {
			break
		}
	}
	if ss.closed {
		return gnet.None // gnet closed the connection during a write: nothing more to do
	}
	ss.flush()
	if ss.srv.stopping.Load() {
		ss.noteDrain()
	}
	if ss.dead {
		return gnet.Close
	}
	if ss.updateOutbound() > 0 {
		// Something is unsent: have the ticker bring the loop back to measure it again, so the
		// server's outbound total does not keep a share gnet has since drained.
		ss.blocked.Store(true)
	}
	return gnet.None
}

// noteDrain runs at the end of a turn while the server stops: it asks for the syncs the pending
// acks wait for (their flusher then wakes this loop); once none remain and gnet has sent all the
// output, it shuts the write side and marks the session drained.
func (ss *session) noteDrain() {
	for _, a := range ss.pending {
		a.part.SyncNow()
	}
	if len(ss.pending) > 0 || ss.c.OutboundBuffered() > 0 {
		return
	}
	if hc, ok := ss.c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	} else if fc, ok := ss.c.(interface{ Fd() int }); ok {
		_ = unix.Shutdown(fc.Fd(), unix.SHUT_WR)
	}
	ss.halfClosed = true
	ss.drained.Store(true)
}

func (ss *session) drainInbox() {
	ss.inbox.Poll(inboxCapacity, func(ev *event) {
		switch {
		case ev.cursor != nil:
			if s := ev.cursor.Subscription(); s != nil && ss.subs[s.ID] == s {
				s.Ready(ev.cursor)
				ss.activate(s)
			}
		case ev.reassign != nil:
			if s := ev.reassign; ss.subs[s.ID] == s {
				// An error ends the subscription: activate's delivery reports it. A pattern's new topics
				// are not announced.
				a, _ := s.ApplyAssignment()
				if s.Grouped() {
					ss.push(wire.OpAssign, &a)
				}
				ss.activate(s)
			}
		case ev.synced != nil:
			ss.releaseAcks()
		}
	})
	if ss.overflow.CompareAndSwap(true, false) {
		// Events were dropped: redo what any of them could have asked for.
		for _, s := range ss.subs {
			if s.Grouped() {
				a, _ := s.ApplyAssignment() // an error ends the subscription: activate's delivery reports it
				ss.push(wire.OpAssign, &a)
			} else if s.Pattern() {
				_, _ = s.ApplyAssignment() // topics created meanwhile; an error ends it as above
			}
			s.ReadyAll()
			ss.activate(s)
		}
		ss.releaseAcks()
	}
}

// createResult is the outcome of the off-loop work for a parked frame: an auto-create run (name,
// err), or an authentication step (auth).
type createResult struct {
	name string
	err  error
	auth *authStep
}

// authStep is one Conversation.Step's result.
type authStep struct {
	out  []byte
	done bool
	err  error
}

// autoCreate creates a topic for a parked frame. Tests replace it to make creation slow.
var autoCreate = func(e *engine.Engine, name string) error {
	_, err := e.AutoCreate(name)
	return err
}

// park leaves the frame being served in the inbound buffer and creates topic name on a goroutine:
// creation runs mkdir, fsync and a segment's fallocate, which must not stall the loop's other
// connections. The goroutine wakes the loop when done, and readFrames serves the frame again.
func (ss *session) park(name string) {
	ss.parked = true
	e := ss.srv.e
	go func() {
		ss.created.Store(&createResult{name: name, err: autoCreate(e, name)})
		ss.wakeLoop()
	}()
}

// createFailed reports, once, why the creation of name for the frame served again failed.
func (ss *session) createFailed(name string) error {
	if ss.createErr == nil || ss.createName != name {
		return nil
	}
	err := ss.createErr
	ss.createErr, ss.createName = nil, ""
	return err
}

// readFrames serves every whole frame in gnet's inbound buffer. Until the handshake is complete a
// frame may be at most MaxPreAuthFrame: the limit is checked from the header, before the body is
// waited for, so an unauthenticated peer never makes the broker hold more than that for it.
func (ss *session) readFrames() {
	c := ss.c
	if ss.parked {
		r := ss.created.Swap(nil)
		if r == nil {
			return // the creation is still running
		}
		ss.parked, ss.createName, ss.createErr, ss.authDone = false, r.name, r.err, r.auth
	}
	for !ss.dead && !ss.closed {
		n := c.InboundBuffered()
		if n < wire.FrameHeaderSize {
			return
		}
		limit := ss.srv.opts.MaxFrame
		if !ss.established {
			limit = ss.srv.opts.MaxPreAuthFrame
		}
		hb, _ := c.Peek(wire.FrameHeaderSize)
		h, err := wire.ParseFrameHeader(hb, limit)
		if !ss.handshaken && (err != nil || h.Op != wire.OpHello) && ss.mismatch(hb) {
			return // another protocol on the Sluice port: closed with a hint
		}
		if err != nil {
			msg := err.Error()
			if !ss.established {
				msg += " before the handshake completed"
			}
			ss.fatal(wire.CodeOf(err), msg)
			return
		}
		if n < h.Size {
			return
		}
		buf, _ := c.Peek(h.Size)
		ss.lastActive.Store(time.Now().UnixNano())
		ss.handle(wire.Frame{Op: h.Op, Flags: h.Flags, Corr: h.Corr, Body: buf[wire.FrameHeaderSize:]})
		if ss.parked {
			return // the frame stays buffered until its topic exists
		}
		if ss.createName != "" {
			ss.createName, ss.createErr = "", nil // the frame served again has had its answer
		}
		_, _ = c.Discard(h.Size)
		if !ss.established && ss.handshaken && ss.authed && !ss.dead {
			ss.establish()
		}
	}
}

// establish marks the handshake complete: the session leaves the unauthenticated connections and
// frames up to MaxFrame are accepted from now on.
func (ss *session) establish() {
	ss.established = true
	ss.srv.authenticated(ss)
	if t, ok := ss.c.(interface{ SetMaxInput(n int) }); ok { // a TLS connection: twice the largest frame
		t.SetMaxInput(2 * ss.srv.opts.MaxFrame)
	}
}

// peerMaxFrame is the maximum frame a client announced in Hello, as the protocol reads it: 0 means
// the default, and a value below wire.MinMaxFrame is raised to it.
func peerMaxFrame(announced uint32) int {
	switch {
	case announced == 0:
		return wire.DefaultMaxFrame
	case announced < wire.MinMaxFrame:
		return wire.MinMaxFrame
	}
	return int(announced)
}

// push queues a frame the broker sends unasked (correlation id 0). One with a field too long to
// encode is not sent: the connection closes with CodeInternal, as the client's view of it would be
// wrong.
func (ss *session) push(op wire.Op, m message) {
	out, err := appendMsg(ss.out, op, 0, 0, m)
	if err != nil {
		ss.fatal(wire.CodeInternal, err.Error())
		return
	}
	ss.out = out
}

// fatal queues an error frame with correlation id 0 and closes the connection after it.
func (ss *session) fatal(code wire.Code, msg string) {
	ss.srv.stats.ProtocolErrors.Add(1)
	ss.srv.log.Debug("closing connection", "remote", ss.c.RemoteAddr(), "code", code.String(), "reason", msg)
	ss.out = wire.AppendError(ss.out, 0, code, msg)
	ss.dead = true
}

// closeWith closes the connection from another goroutine (the ticker, an eviction) with an error
// frame. Only its first call does anything.
func (ss *session) closeWith(code wire.Code, msg string) {
	if !ss.closing.CompareAndSwap(false, true) {
		return
	}
	_ = ss.c.AsyncWrite(wire.AppendError(nil, 0, code, msg), func(gnet.Conn, error) error {
		return ss.c.Close()
	})
}

// flush writes the gathered responses.
func (ss *session) flush() {
	if len(ss.out) == 0 || ss.closed {
		return
	}
	_, _ = ss.c.Write(ss.out)
	if cap(ss.out) > 1<<20 {
		ss.out = nil // a burst grew it: do not pin the memory
	} else {
		ss.out = ss.out[:0]
	}
}

func (ss *session) activate(s *engine.Subscription) {
	for _, x := range ss.active {
		if x == s {
			return
		}
	}
	ss.active = append(ss.active, s)
}

// serveDeliveries writes what active subscriptions have, within their credit. Pending responses go
// first so that a SubscribeReply precedes the subscription's first delivery. Nothing is written while
// the connection's outbound buffer is over its bound (outboundFull): the ticker wakes the loop to look
// again, so a consumer that stopped reading costs at most its bound plus one delivery, however often
// it is woken.
func (ss *session) serveDeliveries() {
	if len(ss.active) == 0 {
		return
	}
	ss.flush()
	maxBytes := min(ss.srv.e.Options().MaxDeliverBytes, ss.srv.opts.MaxFrame-len(ss.hdr), ss.peerMax-len(ss.hdr))
	keep := ss.active[:0]
	for i, s := range ss.active {
		if ss.closed {
			return // a write failed and gnet closed the connection
		}
		if ss.subs[s.ID] != s {
			continue
		}
		err := errPause
		if !ss.outboundFull() {
			mb := maxBytes
			if s.Pattern() {
				mb -= 2 + maxTopicName // a DeliverTopic also names the topic
			}
			err = s.Deliver(ss.deliverBytes(mb), ss.deliverFn)
		}
		if err == errPause {
			// The consumer is not reading: keep the rest for when gnet has drained the buffer.
			keep = append(keep, ss.active[i:]...)
			ss.blocked.Store(true)
			break
		}
		if err != nil {
			ss.endSub(s, err)
			continue
		}
		if s.HasReady() && s.Credit() > 0 {
			keep = append(keep, s) // stopped by the frame size, not by credit: more to do
		} else if s.HasReady() {
			continue // out of credit: an OpCredit re-activates it
		}
	}
	ss.active = keep
}

// endSub ends subscription s after err and tells the client with a SubEnded push naming it. The
// failure is that subscription's alone: the connection and its other subscriptions carry on (an
// Error frame with correlation id 0 would be fatal to the whole connection).
func (ss *session) endSub(s *engine.Subscription, err error) {
	ss.srv.log.Debug("subscription ended", "remote", ss.c.RemoteAddr(), "sub", s.ID, "topic", s.Spec().Topic, "err", err)
	m := wire.SubEnded{SubID: s.ID, Code: wire.CodeOf(err), Message: "subscription " + s.Spec().Topic + ": " + errMessage(err)}
	ss.push(wire.OpSubEnded, &m)
	ss.closeSub(s.ID)
}

// lowDeliverBytes caps a delivery to a connection with an empty outbound buffer while the server's
// outbound total is over its budget: what the socket does not take of it stays bounded.
const lowDeliverBytes = 64 << 10

// updateOutbound measures the connection's outbound buffer, folds the change into the server's
// total and returns it in bytes. Loop only.
func (ss *session) updateOutbound() int64 {
	n := int64(ss.c.OutboundBuffered())
	if d := n - ss.outCounted; d != 0 {
		ss.srv.outbound.Add(d)
		ss.outCounted = n
	}
	return n
}

// outboundFull reports whether deliveries must wait for gnet to drain the outbound buffer: it holds
// more than MaxOutboundBytes, or it holds anything while every connection's buffers together are over
// MaxOutboundTotal. A connection with an empty buffer may always deliver (see deliverBytes), so
// consumers that stopped reading cannot starve one that reads.
func (ss *session) outboundFull() bool {
	n := ss.updateOutbound()
	return n > int64(ss.srv.opts.MaxOutboundBytes) || (n > 0 && ss.srv.outbound.Load() > int64(ss.srv.opts.MaxOutboundTotal))
}

// deliverBytes is the most one delivery may carry now: maxBytes, or lowDeliverBytes while the
// server's outbound total is over its budget.
func (ss *session) deliverBytes(maxBytes int) int {
	if ss.srv.outbound.Load() > int64(ss.srv.opts.MaxOutboundTotal) {
		return min(maxBytes, lowDeliverBytes)
	}
	return maxBytes
}

// writeDelivery sends one Deliver frame: header from the session's scratch, batches straight out of
// the segment mapping. gnet writes them with writev, or copies what the socket did not take into its
// outbound buffer before returning, so data need not outlive the call. A delivery larger than the
// client's maximum frame (one batch bigger than it: deliveries are cut to fit otherwise) is not
// sent; the error ends the subscription.
func (ss *session) writeDelivery(s *engine.Subscription, p *engine.Partition, hw int64, data []byte) error {
	n := len(ss.hdr) + len(data)
	if s.Pattern() {
		n += 2 + len(p.Topic().Name()) // DeliverTopic's topic
	}
	if n > ss.peerMax {
		return &wire.ProtocolError{Code: wire.CodeBatchTooLarge, Message: fmt.Sprintf(
			"partition %d: the batch at offset %d makes a delivery of %d bytes, above the client's maximum frame of %d",
			p.ID(), wire.BaseOffset(data), n, ss.peerMax)}
	}
	if s.Pattern() {
		// The topic's name goes with each delivery of a pattern subscription (DeliverTopic).
		d := wire.Deliver{SubID: s.ID, Partition: p.ID(), HighWatermark: hw}
		ss.hdrTopic = append(ss.hdrTopic[:0], make([]byte, wire.FrameHeaderSize)...) // filled below
		ss.hdrTopic = wire.AppendDeliverTopicHeader(ss.hdrTopic, &d, p.Topic().Name())
		wire.PutFrameHeader(ss.hdrTopic, wire.OpDeliverTopic, 0, 0, len(ss.hdrTopic)-wire.FrameHeaderSize+len(data))
		ss.iov[0] = ss.hdrTopic
	} else {
		wire.PutFrameHeader(ss.hdr[:], wire.OpDeliver, 0, 0, wire.DeliverHeaderSize+len(data))
		d := wire.Deliver{SubID: s.ID, Partition: p.ID(), HighWatermark: hw}
		d.PutHeader(ss.hdr[wire.FrameHeaderSize:])
		ss.iov[0] = ss.hdr[:]
	}
	ss.iov[1] = data
	_, err := ss.c.Writev(ss.iov[:])
	ss.iov[1] = nil
	if ss.closed {
		return errPause // the write failed and closed the connection: stop delivering
	}
	ss.srv.e.Delivered(len(data))
	if err == nil && ss.outboundFull() {
		return errPause // written; stop before the next one
	}
	return err
}

// maxTopicName is the longest topic name (engine.validTopicName), in bytes.
const maxTopicName = 249

// errPause stops a subscription's deliveries while its connection's outbound buffer is full.
var errPause = errors.New("server: outbound buffer full")

func (ss *session) closeSub(id uint32) {
	if s := ss.subs[id]; s != nil {
		s.Close()
		delete(ss.subs, id)
		ss.releaseSub(id)
	}
}

// errTooManySubs refuses a subscribe past the connection's or the principal's subscription cap.
var errTooManySubs = errors.New("server: too many subscriptions")

// reserveSub takes one subscription slot, for subscription id, on the connection and for its
// principal, or reports why not (a CodeThrottled error for the subscribe; the connection stays open).
// A slot taken is given back by releaseSub when the subscription closes, or by the caller when the
// subscribe then fails.
func (ss *session) reserveSub(id uint32) error {
	if len(ss.subs) >= ss.srv.opts.MaxSubscriptionsPerConn {
		return &wire.ProtocolError{Code: wire.CodeThrottled, Message: fmt.Sprintf("%v: %d on this connection", errTooManySubs, len(ss.subs))}
	}
	if ss.principal == "" {
		return nil
	}
	srv := ss.srv
	srv.subMu.Lock()
	defer srv.subMu.Unlock()
	if n := srv.principalSubs[ss.principal]; n >= srv.opts.MaxSubscriptionsPerPrincipal {
		return &wire.ProtocolError{Code: wire.CodeThrottled, Message: fmt.Sprintf("%v: %d for principal %q", errTooManySubs, n, ss.principal)}
	}
	srv.principalSubs[ss.principal]++
	if ss.subPrincipal == nil {
		ss.subPrincipal = map[uint32]string{}
	}
	ss.subPrincipal[id] = ss.principal
	return nil
}

// releaseSub gives back the principal's slot reserveSub took for subscription id (the connection's
// is len(ss.subs)), to the principal it was counted against.
func (ss *session) releaseSub(id uint32) {
	principal, ok := ss.subPrincipal[id]
	if !ok {
		return
	}
	delete(ss.subPrincipal, id)
	srv := ss.srv
	srv.subMu.Lock()
	if srv.principalSubs[principal]--; srv.principalSubs[principal] <= 0 {
		delete(srv.principalSubs, principal)
	}
	srv.subMu.Unlock()
}

// releaseAcks answers the fsync-level produces now covered by their partition's synced offset.
func (ss *session) releaseAcks() {
	keep := ss.pending[:0]
	for _, a := range ss.pending {
		if a.part.SyncedOffset() > a.last {
			ss.out = appendProduceReply(ss.out, a.corr, a.part.ID(), a.base, a.last)
			ss.srv.sampleProduce(a.start)
		} else {
			keep = append(keep, a)
		}
	}
	clear(ss.pending[len(keep):])
	ss.pending = keep
}

// close runs on the loop from OnClose, possibly inside a Write of onTraffic (see closed).
func (ss *session) close() {
	ss.closed = true
	for id := range ss.subs {
		ss.closeSub(id)
	}
	for p := range ss.watched {
		p.Unwatch(ss)
	}
	ss.pending = nil
	ss.srv.orphanInboxes(ss)
	ss.srv.outbound.Add(-ss.outCounted)
	ss.outCounted = 0
	ss.inbox.Close()
}
