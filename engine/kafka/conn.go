package kafka

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
)

// Kafka answers a connection's requests in the order they arrived, whatever order they finish in
// (an fsync-level produce, a long-poll Fetch, a JoinGroup waiting for its rebalance, a SASL step
// run off the loop). Each request read takes the next slot of the connection's slot queue; a slot
// is filled when its answer is ready, by the loop or through the connection's done list by another
// goroutine, and answers leave from the head of the queue only. A Fetch is evaluated when it
// reaches the head, so the record bytes it answers with are read from the mapping and written
// with writev in the same turn, never held across turns.

// Wake-up flags: work other goroutines signal to the connection's loop. They coalesce: each is a
// request to look again, not a count.
const (
	flagSynced uint32 = 1 << iota // a watched partition's synced offset advanced: release fsync acks
	flagData                      // a partition a parked Fetch waits on grew, or cold pages are in
	flagRetry                     // a parked Fetch's max wait passed, or the outbound buffer may have drained
	flagDone                      // an answer finished on another goroutine (see conn.done)
)

// transport is what a connection needs of its socket: gnet.Conn for plain TCP, tlsConn for TLS.
// Peek, Discard, Write, Writev and the Buffered calls run on the connection's loop; Wake and Close
// may be called from any goroutine.
type transport interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	InboundBuffered() int
	OutboundBuffered() int
	Write(b []byte) (int, error)
	Writev(bs [][]byte) (int, error)
	Wake(cb gnet.AsyncCallback) error
	Close() error
	RemoteAddr() net.Addr
	LocalAddr() net.Addr
}

// slot is one request's place in the answer order.
type slot struct {
	// buf is the whole answer (size prefix included) once ready; nil for an acks=0 produce's
	// placeholder, which answers nothing. Owned by the slot until written.
	buf   []byte
	ready bool
	// acks counts the partitions whose fsync this produce answer still waits for.
	acks int
	// produceBytes are the record bytes this produce holds in conn.inflightProduce until answered.
	produceBytes int
	// fetch is a Fetch to evaluate at the head of the queue; nil otherwise.
	fetch *fetchWait
	// closeAfter closes the connection once the answer is written (a failed authentication).
	closeAfter bool
}

// slotQueue is a ring of slots with a power-of-two capacity that doubles when full. Slot seq
// lives at index (head + seq - headSeq) & mask. Loop-owned.
type slotQueue struct {
	s       []slot
	head, n int
	headSeq uint64 // sequence number of the slot at head
}

func (q *slotQueue) push() (uint64, *slot) {
	if q.n == len(q.s) {
		ns := make([]slot, max(16, 2*len(q.s)))
		for i := 0; i < q.n; i++ {
			ns[i] = q.s[(q.head+i)&(len(q.s)-1)]
		}
		q.s, q.head = ns, 0
	}
	seq := q.headSeq + uint64(q.n)
	s := &q.s[(q.head+q.n)&(len(q.s)-1)]
	*s = slot{}
	q.n++
	return seq, s
}

// at returns the slot of seq, or nil when it has left the queue.
func (q *slotQueue) at(seq uint64) *slot {
	if seq < q.headSeq || seq >= q.headSeq+uint64(q.n) {
		return nil
	}
	return &q.s[(q.head+int(seq-q.headSeq))&(len(q.s)-1)]
}

func (q *slotQueue) front() *slot { return &q.s[q.head] }

func (q *slotQueue) pop() {
	q.s[q.head] = slot{}
	q.head = (q.head + 1) & (len(q.s) - 1)
	q.n--
	q.headSeq++
}

// asyncDone is an answer finished on another goroutine, for the slot seq; apply, when set, runs on
// the loop first (it updates loop-owned state, e.g. the authenticated principal).
type asyncDone struct {
	seq   uint64
	buf   []byte
	apply func(c *conn)
	close bool
}

// ackWait is a produce answer waiting for its partition's fsync to cover last.
type ackWait struct {
	seq  uint64
	part *engine.Partition
	last int64
}

// conn is one client connection. Every field is owned by the connection's loop unless its comment
// says otherwise.
type conn struct {
	srv *Server
	t   transport

	// principal is the authenticated principal; "" without authentication. authed: requests other
	// than ApiVersions and SASL may be served.
	principal string
	authed    bool
	// sasl is the authentication conversation after SaslHandshake; saslRaw: the handshake was v0, so
	// the next frames are bare SASL tokens, not Kafka requests. authBusy: a SASL step runs off the
	// loop; nothing more is read until it has answered.
	sasl     auth.Conversation
	saslMech string
	saslRaw  bool
	authBusy bool
	clientID string // the last request header's client id, for group requests
	remote   string // the peer's "ip:port"; immutable
	local    net.Addr

	q    slotQueue
	acks []ackWait // fsync-level produce answers not yet covered, in arrival order
	// waitingAcks mirrors len(acks) for Server.Close, which reads it from another goroutine.
	waitingAcks atomic.Int64
	// producing is set while the loop serves a Produce, from before it checks whether the listener
	// stops until its answer is queued or counted in waitingAcks: Close waits for it, so that a
	// Produce whose batches were stored as Close began still gets its answer (conn.produce).
	producing atomic.Bool
	// inflightProduce are the record bytes of produces not yet answered (MaxInflightProduceBytes).
	inflightProduce int
	watched         map[*engine.Partition]struct{}
	// readers are the connection's partition readers, for long-poll Fetch wake-ups; closed on close.
	readers map[*engine.Partition]*engine.Reader

	out  []byte // answers gathered during one turn, written with one write at its end
	fbuf []byte // a Fetch answer's bytes other than records; scratch reused by every Fetch
	fseg []fetchSeg
	// fparts are the partitions of the Fetch being answered; scratch reused by every Fetch.
	fparts []fetchPart
	// faborted is a read_committed answer's aborted transactions of one partition; scratch reused
	// by every Fetch, so serving one allocates nothing once it has grown.
	faborted []engine.AbortedTxn
	iov      [][]byte

	// fetchFree are answered fetchWaits kept for the next Fetch (at most maxFetchFree).
	fetchFree []*fetchWait
	prodReq   produceReq           // reused by every produce; decoded in place, nothing kept past the call
	prodResp  kmsg.ProduceResponse // reused by every produce answer

	flags atomic.Uint32 // flag* bits; any goroutine sets, the loop takes
	// doneMu guards done: answers finished on other goroutines, applied by the loop in onTraffic.
	doneMu sync.Mutex
	done   []asyncDone

	// authDone mirrors authed for the ticker's handshake timeout; opened is when the connection
	// opened (unix nanos, immutable); closing is set once by whoever closes it from another goroutine.
	authDone atomic.Bool
	opened   int64
	closing  atomic.Bool
	// lastActive is when the connection last sent a request or was answered (unix nanos), and busy
	// whether it has requests unanswered: stored by the loop, read by the ticker for IdleTimeout.
	lastActive atomic.Int64
	busy       atomic.Bool

	// outCounted is this connection's share of Server.outbound, in bytes, as last measured.
	outCounted int64

	blocked atomic.Bool // a Fetch answer waits for the outbound buffer to drain; the ticker wakes
	dead    bool        // close once what is gathered is written
	closed  bool        // OnClose ran (possibly inside a Write): touch nothing more
}

func newConn(s *Server, t transport) *conn {
	c := &conn{srv: s, t: t, watched: map[*engine.Partition]struct{}{}, readers: map[*engine.Partition]*engine.Reader{},
		local: t.LocalAddr()}
	if a, ok := c.local.(*net.TCPAddr); !ok || a.Port == 0 {
		c.local = s.addr // gnet reports the listen address, port 0 included
	}
	if a := t.RemoteAddr(); a != nil {
		c.remote = a.String()
	}
	c.authed = !s.authn().Enabled()
	c.authDone.Store(c.authed)
	c.opened = time.Now().UnixNano()
	c.lastActive.Store(c.opened)
	return c
}

// signal asks the loop to look again for flag's work. Any goroutine; never blocks.
func (c *conn) signal(flag uint32) {
	if c.flags.Or(flag) == 0 { // else a wake-up is on its way and the loop will see flag
		_ = c.t.Wake(nil)
	}
}

// complete hands an answer finished on another goroutine to the loop. Any goroutine.
func (c *conn) complete(d asyncDone) {
	c.doneMu.Lock()
	c.done = append(c.done, d)
	c.doneMu.Unlock()
	c.signal(flagDone)
}

// Wake implements engine.Owner: a partition a Reader waits on grew, or its cold pages are in.
func (c *conn) Wake(*engine.Cursor) { c.signal(flagData) }

// Reassign implements engine.Owner; a connection has no subscriptions.
func (c *conn) Reassign(*engine.Subscription) {}

// Synced implements engine.SyncWatcher.
func (c *conn) Synced(*engine.Partition, int64) { c.signal(flagSynced) }

// onTraffic is one turn of the connection's loop: what other goroutines finished, every whole
// request buffered, answers from the head of the queue, one write.
func (c *conn) onTraffic() gnet.Action {
	anyAnswered := false
	for !c.closed {
		fl := c.flags.Swap(0)
		if fl&flagDone != 0 {
			c.takeDone()
		}
		if fl&flagSynced != 0 {
			c.releaseAcks()
		}
		held := c.readFrames()
		answered := c.advance()
		anyAnswered = anyAnswered || answered
		c.flush()
		if c.dead {
			break
		}
		// Go round again when another goroutine signalled meanwhile, or when requests were left
		// unread for a limit that the answers just written may have lifted: nothing else would
		// bring the loop back to them (gnet calls OnTraffic for new input only).
		if c.flags.Load() == 0 && !(held && answered) {
			break
		}
	}
	if c.closed {
		return gnet.None // gnet closed the connection during a write
	}
	if c.dead {
		return gnet.Close
	}
	// Waiting on the broker is not idleness: the idle clock runs from the last answer.
	if c.busy.Store(c.q.n > 0); c.q.n > 0 || anyAnswered {
		c.lastActive.Store(time.Now().UnixNano())
	}
	if c.updateOutbound() > 0 {
		// Something is unsent: have the ticker bring the loop back to measure it again (and to
		// serve a Fetch that waits for it), so the listener's total does not keep a stale share.
		c.blocked.Store(true)
	}
	return gnet.None
}

func (c *conn) takeDone() {
	c.doneMu.Lock()
	done := c.done
	c.done = nil
	c.doneMu.Unlock()
	for _, d := range done {
		if d.apply != nil {
			d.apply(c)
		}
		if s := c.q.at(d.seq); s != nil {
			s.buf, s.ready, s.closeAfter = d.buf, true, d.close
		}
	}
}

// readFrames serves every whole request in the inbound buffer, unless the connection must wait:
// too many requests unanswered, too many produce bytes awaiting fsync, or a SASL step running. It
// reports whether it stopped for one of those with input left unread.
func (c *conn) readFrames() (held bool) {
	o := &c.srv.opts
	for !c.dead && !c.closed {
		n := c.t.InboundBuffered()
		if n < 4 {
			return false
		}
		if c.authBusy || c.q.n >= o.MaxInflightRequests || c.inflightProduce > o.MaxInflightProduceBytes {
			return true
		}
		hb, _ := c.t.Peek(4)
		size := int(int32(binary.BigEndian.Uint32(hb)))
		limit := o.MaxFrame
		if !c.authed {
			limit = preAuthMaxFrame
		}
		if size < 0 || size > limit {
			c.protocolError("frame size", "size", size, "limit", limit)
			return false
		}
		if n < 4+size {
			return false
		}
		buf, _ := c.t.Peek(4 + size)
		c.lastActive.Store(time.Now().UnixNano())
		c.handleFrame(buf[4:])
		_, _ = c.t.Discard(4 + size)
	}
	return false
}

// protocolError closes the connection after what is gathered, for a request that cannot be
// answered: Kafka has no frame to carry the reason, so it is logged.
func (c *conn) protocolError(msg string, args ...any) {
	c.srv.stats.ProtocolErrors.Add(1)
	c.srv.log.Debug("kafka: closing connection: "+msg, append([]any{"remote", c.remote}, args...)...)
	c.dead = true
}

// advance writes the answers at the head of the queue that are ready, and evaluates a Fetch that
// has reached the head. It reports whether any answer left the queue.
func (c *conn) advance() (answered bool) {
	for c.q.n > 0 && !c.closed {
		s := c.q.front()
		if s.fetch != nil {
			if !c.serveFetch(s.fetch) {
				return answered
			}
			c.freeFetch(s.fetch)
			c.q.pop()
			answered = true
			continue
		}
		if !s.ready || s.acks > 0 {
			return answered
		}
		c.out = append(c.out, s.buf...)
		c.inflightProduce -= s.produceBytes
		if s.closeAfter {
			c.dead = true
		}
		c.q.pop()
		answered = true
		if c.dead {
			return answered
		}
	}
	return answered
}

// flush writes the gathered answers.
func (c *conn) flush() {
	if len(c.out) == 0 || c.closed {
		return
	}
	_, _ = c.t.Write(c.out)
	if cap(c.out) > 1<<20 {
		c.out = nil // a burst grew it: do not pin the memory
	} else {
		c.out = c.out[:0]
	}
}

// releaseAcks marks the produce answers now covered by their partition's synced offset; while the
// listener stops it asks again for the syncs the rest wait for.
func (c *conn) releaseAcks() {
	keep := c.acks[:0]
	stopping := c.srv.conns.Stopping()
	for _, a := range c.acks {
		if a.part.SyncedOffset() > a.last {
			if s := c.q.at(a.seq); s != nil {
				s.acks--
			}
			continue
		}
		if stopping {
			a.part.SyncNow()
		}
		keep = append(keep, a)
	}
	clear(c.acks[len(keep):])
	c.acks = keep
	c.waitingAcks.Store(int64(len(keep)))
}

// updateOutbound measures the connection's outbound buffer, folds the change into the listener's
// total and returns it in bytes. Loop only.
func (c *conn) updateOutbound() int64 {
	n := int64(c.t.OutboundBuffered())
	if d := n - c.outCounted; d != 0 {
		c.srv.outbound.Add(d)
		c.outCounted = n
	}
	return n
}

// outboundFull reports whether a Fetch answer must wait for gnet to drain: this connection holds
// more than MaxOutboundBytes unsent, or anything while all connections together hold more than
// MaxOutboundTotal. A connection with nothing unsent may always answer (see fetchBudget).
func (c *conn) outboundFull() bool {
	n := c.updateOutbound()
	return n > int64(c.srv.opts.MaxOutboundBytes) || (n > 0 && c.srv.outbound.Load() > int64(c.srv.opts.MaxOutboundTotal))
}

// lowFetchBytes caps a Fetch answer's records (beyond its first batch) while the listener's
// outbound total is over its budget: what the socket does not take of it stays bounded.
const lowFetchBytes = 64 << 10

// fetchBudget is the most record bytes a Fetch answer may carry now.
func (c *conn) fetchBudget() int {
	if c.srv.outbound.Load() > int64(c.srv.opts.MaxOutboundTotal) {
		return min(c.srv.opts.MaxFetchBytes, lowFetchBytes)
	}
	return c.srv.opts.MaxFetchBytes
}

// close runs on the loop from OnClose, possibly inside a Write of onTraffic (see closed).
func (c *conn) close() {
	c.closed = true
	c.srv.outbound.Add(-c.outCounted)
	c.outCounted = 0
	for p := range c.watched {
		p.Unwatch(c)
	}
	for _, r := range c.readers {
		r.Close()
	}
	for c.q.n > 0 {
		if f := c.q.front().fetch; f != nil && f.timer != nil {
			f.timer.Stop()
		}
		c.q.pop()
	}
	c.acks = nil
	c.waitingAcks.Store(0)
}

// reader returns the connection's Reader of p, registering one the first time.
func (c *conn) reader(p *engine.Partition) *engine.Reader {
	r := c.readers[p]
	if r == nil {
		r = p.NewReader(c)
		c.readers[p] = r
	}
	return r
}

// watch registers the connection for p's synced offset, once.
func (c *conn) watch(p *engine.Partition) {
	if _, ok := c.watched[p]; !ok {
		c.watched[p] = struct{}{}
		p.Watch(c)
	}
}

var (
	_ engine.Owner       = (*conn)(nil)
	_ engine.SyncWatcher = (*conn)(nil)
)
