package mqtt

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/panjf2000/gnet/v2"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/ring"
	"github.com/sluicemq/sluice/wire"
)

// Wake-up flags: work other goroutines signal to the connection's loop. They coalesce: each is a
// request to look again, not a count.
const (
	flagEvent     uint32 = 1 << iota // the inbox holds cursor wake-ups, reassignments or syncs
	flagDone                         // work finished off the loop (see conn.done)
	flagRetry                        // the ticker's look: outbound room, topics waited for
	flagKeepAlive                    // the ticker saw the keep-alive pass: check and close
	flagKick                         // another connection took the session over: close
)

// transport is what a connection needs of its socket: gnet.Conn for plain TCP, tlsConn for TLS.
type transport interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	InboundBuffered() int
	OutboundBuffered() int
	Write(b []byte) (int, error)
	Wake(cb gnet.AsyncCallback) error
	Close() error
	RemoteAddr() net.Addr
}

// event is what the engine tells the connection from other goroutines, through its inbox.
type event struct {
	cursor   *engine.Cursor
	reassign *engine.Subscription
	synced   bool
}

// inboxCapacity is the inbox ring's size (32 bytes a slot); when it is full the loop rescans every
// subscription. Small, because every connection has one and most are idle devices: 2 KiB each.
const inboxCapacity = 64

// ackWait is an inbound QoS 1 or 2 PUBLISH whose acknowledgement waits for its record's fsync.
type ackWait struct {
	part *engine.Partition // nil: nothing to wait for (a refusal, or a duplicate QoS 2)
	last int64
	kind byte // packets.Puback or packets.Pubrec
	id   uint16
	code byte // the reason code to send
	// reason is the Reason String sent with a refusal's code (MQTT 5 only), empty for none.
	reason string
}

// conn is one client connection. Every field is owned by the connection's loop unless its comment
// says otherwise.
type conn struct {
	srv *Server
	// warnedUnknown: a PUBLISH to a topic that does not exist was logged at info level already.
	warnedUnknown bool
	t             transport
	remote        string // the peer's "ip:port"; immutable
	opened        int64  // unix nanos; immutable

	// version is the protocol level from CONNECT (3, 4 or 5); 0 before it.
	version byte
	// connected mirrors whether CONNACK accepted the connection, for the ticker.
	connected atomic.Bool
	// connecting: CONNECT was read and is being served (authentication, session takeover).
	connecting bool
	principal  string
	clientID   string
	sess       *session
	// keepAlive is the negotiated keep-alive in nanoseconds (0: none), lastRecv when the last
	// packet arrived (unix nanos): stored by the loop, read by the ticker.
	keepAlive atomic.Int64
	lastRecv  atomic.Int64
	// waitsTick asks the ticker to signal flagRetry: a delivery paused on a full outbound buffer,
	// or an exact subscription waits for its topic to be created.
	waitsTick atomic.Bool
	// closing is set once by whoever closes the connection from another goroutine.
	closing atomic.Bool
	// gone is set when the connection has closed, before it lets its session go: a session claim
	// finishing later must not make it the holder (sessionTable.claim).
	gone atomic.Bool

	// parked: work for the packet at the head of the input runs off the loop (authentication, topic
	// creation, a retained or session write); no packet is read until it finishes. retry is a
	// PUBLISH to serve again once it has (its body copied).
	parked bool
	retry  *parkedPublish
	// parkDone is closed when the off-loop work of a park has returned (nil when not parked), and
	// parkPub is the PUBLISH parked, if any: a connection closing while parked hands them over.
	parkDone chan struct{}
	parkPub  *parkedPublish

	will       *packets.Packet // CONNECT's will, nil without one or after a normal DISCONNECT
	willDelay  time.Duration
	cleanExit  bool // a DISCONNECT 0x00 (or 0x04 with will) arrived
	maxOut     int  // the client's maximum packet size (MQTT 5), or maxMQTTPacket
	window     int  // how many QoS 1 and 2 deliveries may be unacknowledged
	aliases    map[uint16]string
	maxAliases uint16

	// Inbound QoS 1 and 2 acknowledgements, in arrival order (MQTT 4.6 orders them).
	acks []ackWait
	// waitingAcks mirrors len(acks) for Server.Close.
	waitingAcks atomic.Int64
	// reading is set while the loop serves packets (readPackets), from before it checks whether the
	// listener stops: Close waits for it, so that a PUBLISH stored as Close began still gets its
	// acknowledgement queued, and then sent.
	reading atomic.Bool
	watched map[*engine.Partition]struct{}

	// Subscriptions. subs holds the MQTT subscriptions by filter as given; bySub the engine
	// subscriptions (several per filter: "a/#" is two) by their engine ID.
	subs map[string]*mqttSub
	// subsChanged: the SUBSCRIBE or UNSUBSCRIBE being served changed the session's subscriptions
	// (afterSessionWrite stores them).
	subsChanged bool
	bySub       map[uint32]*engSub
	nextSubID   uint32
	out         outbound

	bb    *wire.BatchBuilder // builds each inbound PUBLISH's one-record batch; made at the first, then reused
	hdrs  []wire.Header      // the record's headers; reused
	names map[string]string  // MQTT topic -> Sluice name, bounded by maxNameCache
	// mqttNames maps Sluice names back (deliveries of records without a usable mqtt.topic),
	// bounded by maxNameCache; scratch holds a mapped name being compared (recordTopic).
	mqttNames map[string]string
	scratch   [maxTopicName + 3]byte
	clientIDb []byte         // clientID's bytes, for the records' mqtt.client-id header
	idBuf     [8]byte        // a packet id in decimal, for the records' mqtt.packet-id header
	wb        bytes.Buffer   // packets gathered during a turn, written with one write at its end
	pk        packets.Packet // the PUBLISH or acknowledgement being served; reused (handle)

	inbox    *ring.MPSC[event]
	overflow atomic.Bool
	flags    atomic.Uint32
	doneMu   sync.Mutex    // guards done
	done     []func(*conn) // work finished off the loop, applied on it

	dead   bool // close once what is gathered is written
	closed bool // OnClose ran: touch nothing more
}

// maxNameCache bounds a connection's cache of mapped topic names.
const maxNameCache = 1024

func newConn(s *Server, t transport) *conn {
	c := &conn{srv: s, t: t, watched: map[*engine.Partition]struct{}{}, subs: map[string]*mqttSub{},
		bySub: map[uint32]*engSub{}, names: map[string]string{}, mqttNames: map[string]string{}, maxOut: maxMQTTPacket}
	if a := t.RemoteAddr(); a != nil {
		c.remote = a.String()
	}
	c.opened = time.Now().UnixNano()
	c.lastRecv.Store(c.opened)
	c.inbox, _ = ring.NewMPSC[event](ring.Options{Capacity: inboxCapacity, Waker: func() {}})
	c.out.init(c)
	return c
}

// signal asks the loop to look again for flag's work. Any goroutine; never blocks.
func (c *conn) signal(flag uint32) {
	if c.flags.Or(flag) == 0 {
		_ = c.t.Wake(nil)
	}
}

// complete hands work finished on another goroutine to the loop. Any goroutine.
func (c *conn) complete(fn func(*conn)) {
	c.doneMu.Lock()
	c.done = append(c.done, fn)
	c.doneMu.Unlock()
	c.signal(flagDone)
}

func (c *conn) post(ev event) {
	if !c.inbox.Offer(ev) {
		c.overflow.Store(true)
	}
	c.signal(flagEvent)
}

// Wake implements engine.Owner.
func (c *conn) Wake(cur *engine.Cursor) { c.post(event{cursor: cur}) }

// Reassign implements engine.Owner.
func (c *conn) Reassign(s *engine.Subscription) { c.post(event{reassign: s}) }

// Synced implements engine.SyncWatcher.
func (c *conn) Synced(*engine.Partition, int64) { c.post(event{synced: true}) }

// onTraffic is one turn of the connection's loop.
func (c *conn) onTraffic() gnet.Action {
	for !c.closed {
		fl := c.flags.Swap(0)
		if fl&flagKick != 0 {
			c.dead = true
			c.sendDisconnect(packets.ErrSessionTakenOver.Code)
			break
		}
		if fl&flagKeepAlive != 0 && c.keepAliveExpired() {
			c.srv.log.Debug("mqtt: closing connection: keep-alive expired", "remote", c.remote, "client", c.clientID)
			c.srv.stats.KeepAliveExpired.Add(1)
			c.sendDisconnect(packets.ErrKeepAliveTimeout.Code)
			c.dead = true
			break
		}
		if fl&flagDone != 0 {
			c.takeDone()
		}
		if fl&flagEvent != 0 {
			c.drainInbox()
		}
		if fl&flagRetry != 0 {
			c.waitsTick.Store(false)
			c.out.retry()
		}
		c.readPackets()
		c.out.deliver()
		c.flush()
		if c.dead || c.flags.Load() == 0 {
			break
		}
	}
	if c.closed {
		return gnet.None
	}
	if c.dead {
		c.flush() // a DISCONNECT with its reason, gathered before the loop broke off
		return gnet.Close
	}
	return gnet.None
}

func (c *conn) keepAliveExpired() bool {
	ka := c.keepAlive.Load()
	return ka > 0 && time.Now().UnixNano()-c.lastRecv.Load() > ka+ka/2
}

func (c *conn) takeDone() {
	c.doneMu.Lock()
	done := c.done
	c.done = nil
	c.doneMu.Unlock()
	for _, fn := range done {
		if c.closed {
			return
		}
		fn(c)
	}
}

func (c *conn) drainInbox() {
	synced := false
	c.inbox.Poll(inboxCapacity, func(ev *event) {
		switch {
		case ev.cursor != nil:
			if s := ev.cursor.Subscription(); s != nil {
				if es := c.bySub[s.ID]; es != nil && es.s == s {
					s.Ready(ev.cursor)
				}
			}
		case ev.reassign != nil:
			if es := c.bySub[ev.reassign.ID]; es != nil && es.s == ev.reassign {
				es.applyAssignment()
			}
		case ev.synced:
			synced = true
		}
	})
	if c.overflow.CompareAndSwap(true, false) {
		for _, es := range c.bySub {
			if es.s != nil {
				if es.s.Grouped() || es.s.Pattern() {
					es.applyAssignment()
				}
				es.s.ReadyAll()
			}
		}
		synced = true
	}
	if synced || c.srv.conns.Stopping() {
		c.releaseAcks()
	}
	if c.inbox.Len() > 0 {
		c.flags.Or(flagEvent) // more than one Poll's worth: go round again
	}
}

// readPackets serves every whole packet buffered, unless the connection must wait: parked on work
// off the loop, or ReceiveMaximum acknowledgements pending.
func (c *conn) readPackets() {
	// Set before the loop's Stopping check and read by Close after it sets Stopping (both
	// sequentially consistent): either the loop sees the listener stopping and serves no packet,
	// or Close sees it serving and waits until the acknowledgements are queued.
	c.reading.Store(true)
	defer c.reading.Store(false)
	o := &c.srv.opts
	for !c.dead && !c.closed && !c.parked && !c.srv.conns.Stopping() { // a stopping listener drains acks only
		if c.retry != nil {
			r := c.retry
			c.retry = nil
			c.servePublish(r.pk, r)
			continue
		}
		n := c.t.InboundBuffered()
		if n < 2 || len(c.acks) >= o.ReceiveMaximum {
			return
		}
		head, _ := c.t.Peek(min(n, 5))
		size, _, err := frameSize(head, o.MaxPacketSize)
		if err != nil {
			code := packets.ErrMalformedPacket.Code
			if errors.Is(err, ErrTooLarge) {
				code = packets.ErrPacketTooLarge.Code
			}
			c.protocolError(code, err)
			return
		}
		if size == 0 || n < size {
			return
		}
		buf, _ := c.t.Peek(size)
		hdr, body, _, _ := readFrame(buf, o.MaxPacketSize)
		c.lastRecv.Store(time.Now().UnixNano())
		c.handle(hdr, body)
		_, _ = c.t.Discard(size)
	}
}

// protocolError closes the connection after what is gathered, with a DISCONNECT carrying code on
// MQTT 5 (after CONNECT; before it there is no DISCONNECT to send).
func (c *conn) protocolError(code byte, err error) {
	c.srv.stats.ProtocolErrors.Add(1)
	c.srv.log.Debug("mqtt: closing connection", "remote", c.remote, "client", c.clientID, "err", err)
	if c.connected.Load() {
		c.sendDisconnect(code)
	}
	c.dead = true
}

// handle serves one packet. body is a view of gnet's input buffer, valid during the call only.
func (c *conn) handle(hdr byte, body []byte) {
	typ := hdr >> 4
	c.srv.stats.packetIn(typ)
	var pk *packets.Packet
	var err error
	if typ != packets.Publish && typ != packets.Puback && typ != packets.Pubrec && typ != packets.Pubcomp && typ != packets.Pubrel {
		// What the codec hands back of these (strings, filters, will) may be kept: decode a copy.
		pk, err = decodePacket(hdr, bytes.Clone(body), c.version)
	} else {
		// The hot path: into the connection's packet, whose views of body nothing keeps (a
		// PUBLISH that must wait is copied: park).
		pk = &c.pk
		err = decodePacketInto(pk, hdr, body, c.version)
	}
	if err != nil {
		c.protocolError(packets.ErrMalformedPacket.Code, err)
		return
	}
	if c.version == 0 && typ != packets.Connect {
		c.protocolError(packets.ErrProtocolViolationRequireFirstConnect.Code, errors.New("first packet is not CONNECT"))
		return
	}
	if typ != packets.Connect && !c.connected.Load() {
		c.protocolError(packets.ErrProtocolViolation.Code, errors.New("a packet before CONNACK"))
		return
	}
	switch typ {
	case packets.Connect:
		if c.version != 0 {
			c.protocolError(packets.ErrProtocolViolationSecondConnect.Code, errors.New("second CONNECT"))
			return
		}
		c.onConnect(pk)
	case packets.Publish:
		c.servePublish(pk, nil)
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
		c.out.acked(pk.PacketID, typ, pk.ReasonCode)
	case packets.Pubrel:
		c.onPubrel(pk)
	case packets.Subscribe:
		c.onSubscribe(pk)
	case packets.Unsubscribe:
		c.onUnsubscribe(pk)
	case packets.Pingreq:
		c.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}})
	case packets.Disconnect:
		c.onDisconnect(pk)
	case packets.Auth:
		c.protocolError(packets.ErrProtocolViolation.Code, errors.New("AUTH: extended authentication is not offered"))
	}
}

// write encodes pk (for the connection's protocol version) into the turn's output.
func (c *conn) write(pk *packets.Packet) {
	pk.ProtocolVersion = c.version
	pk.Mods.AllowResponseInfo = true // else the codec leaves out Response Topic and Correlation Data
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackEncode(&c.wb)
	case packets.Publish:
		err = pk.PublishEncode(&c.wb)
	case packets.Puback:
		err = pk.PubackEncode(&c.wb)
	case packets.Pubrec:
		err = pk.PubrecEncode(&c.wb)
	case packets.Pubrel:
		err = pk.PubrelEncode(&c.wb)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&c.wb)
	case packets.Suback:
		err = pk.SubackEncode(&c.wb)
	case packets.Unsuback:
		err = pk.UnsubackEncode(&c.wb)
	case packets.Pingresp:
		err = pk.PingrespEncode(&c.wb)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&c.wb)
	}
	if err != nil {
		c.srv.log.Error("mqtt: encoding a packet", "type", pk.FixedHeader.Type, "err", err)
		return
	}
	c.srv.stats.packetOut(pk.FixedHeader.Type)
}

// ack writes a PUBACK, PUBREC, PUBREL or PUBCOMP with a reason code (MQTT 5; dropped before).
func (c *conn) ack(kind byte, id uint16, code byte) { c.ackWith(kind, id, code, "") }

// ackWith is ack with a Reason String (MQTT 5 3.4.2.2.2; dropped before version 5), empty for none.
func (c *conn) ackWith(kind byte, id uint16, code byte, reason string) {
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: kind}, PacketID: id, ReasonCode: code}
	if kind == packets.Pubrel {
		pk.FixedHeader.Qos = 1
	}
	// A Reason String must not take the packet past the client's maximum packet size (MQTT 5
	// 3.4.2.2.2): an acknowledgement without one is at most 6 bytes, the property adds 3 to it.
	if c.version == 5 && 6+3+len(reason) <= c.maxOut {
		pk.Properties.ReasonString = reason
	}
	c.write(pk)
}

// sendDisconnect writes a DISCONNECT with reason code (MQTT 5 only: before it the server sends
// none and just closes).
func (c *conn) sendDisconnect(code byte) {
	if c.version == 5 && c.connected.Load() {
		c.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: code})
	}
}

// flush writes what the turn gathered.
func (c *conn) flush() {
	if c.wb.Len() == 0 || c.closed {
		return
	}
	_, _ = c.t.Write(c.wb.Bytes())
	if c.wb.Cap() > 1<<20 {
		c.wb = bytes.Buffer{} // a burst grew it: do not pin the memory
	} else {
		c.wb.Reset()
	}
}

// onDisconnect is the client's DISCONNECT: a normal one (0x00) drops the will; 0x04 (MQTT 5) keeps
// it. MQTT 5 may also change the session expiry interval here.
func (c *conn) onDisconnect(pk *packets.Packet) {
	c.cleanExit = true
	if pk.ReasonCode != packets.CodeDisconnectWillMessage.Code {
		c.will = nil
	}
	if c.version == 5 && pk.Properties.SessionExpiryIntervalFlag && c.sess != nil {
		c.srv.sessions.setExpiry(c.sess, time.Duration(pk.Properties.SessionExpiryInterval)*time.Second)
	}
	c.dead = true
}

// close runs on the loop from OnClose: the connection's subscriptions end and its session is let
// go (kept for a persistent session, dropped otherwise), the will published if the connection
// ended without a normal DISCONNECT.
func (c *conn) close() {
	if c.closed {
		return
	}
	c.closed = true
	c.gone.Store(true)
	for p := range c.watched {
		p.Unwatch(c)
	}
	c.srv.stats.Subscriptions.Add(-int64(len(c.subs)))
	c.settleBuffered()
	c.out.close()
	c.inbox.Close()
	c.acks = nil
	c.waitingAcks.Store(0)
	if c.sess != nil {
		will := c.will
		if c.srv.conns.Stopping() {
			will = nil // the broker went away, not the client
		}
		if c.parkDone != nil || c.retry != nil {
			c.handOff(will)
			return
		}
		c.srv.sessions.release(c, c.sess, will, c.willDelay)
	} else if c.clientID != "" {
		c.srv.sessions.abandon(c, c.clientID) // closed while its claim was under way
	}
}

// settleBuffered applies the acknowledgements (PUBACK, PUBREC, PUBCOMP) left unread in the input
// buffer of a closing connection (it was parked, or they came with the packet that closed it), so
// the subscriptions commit what the client did acknowledge before they close.
func (c *conn) settleBuffered() {
	if !c.connected.Load() || c.sess == nil {
		return
	}
	n := c.t.InboundBuffered()
	if n < 2 {
		return
	}
	rest, _ := c.t.Peek(n)
	for len(rest) > 0 {
		hdr, body, size, err := readFrame(rest, c.srv.opts.MaxPacketSize)
		if size == 0 || err != nil {
			return
		}
		rest = rest[size:]
		switch typ := hdr >> 4; typ {
		case packets.Puback, packets.Pubrec, packets.Pubcomp:
			if pk, err := decodePacket(hdr, body, c.version); err == nil {
				c.out.acked(pk.PacketID, typ, pk.ReasonCode)
			}
		}
	}
}

// handOff finishes, on a goroutine, what a connection closing while parked had read: the parked
// PUBLISH once its work is done, then the packets left in the input buffer (gnet drops them with
// the connection): each PUBLISH stored as publishInternal stores a will, a normal DISCONNECT
// dropping the will. Then the session is let go. Without it a client that sends PUBLISH and
// DISCONNECT and closes at once (mosquitto_pub) would lose the PUBLISH to a new topic, and have its
// will published.
func (c *conn) handOff(will *packets.Packet) {
	var rest []byte
	if n := c.t.InboundBuffered(); n > 0 {
		b, _ := c.t.Peek(n)
		rest = bytes.Clone(b)
	}
	srv, sess, id, principal, version, delay := c.srv, c.sess, c.clientID, c.principal, c.version, c.willDelay
	done, parked := c.parkDone, c.parkPub
	if parked == nil {
		parked = c.retry
	}
	go func() {
		if done != nil {
			<-done
		}
		if parked != nil && parked.err == nil {
			pk := *parked.pk
			pk.FixedHeader.Retain = pk.FixedHeader.Retain && !parked.retained // stored already
			if err := srv.publishInternal(id, principal, &pk); err != nil {
				srv.log.Debug("mqtt: a publish read before the close not stored", "client", id, "err", err)
			}
		}
		for len(rest) > 0 {
			hdr, body, n, err := readFrame(rest, srv.opts.MaxPacketSize)
			if n == 0 || err != nil {
				break
			}
			rest = rest[n:]
			pk, err := decodePacket(hdr, body, version)
			if err != nil {
				break
			}
			switch pk.FixedHeader.Type {
			case packets.Publish:
				if err := srv.publishInternal(id, principal, pk); err != nil {
					srv.log.Debug("mqtt: a publish read before the close not stored", "client", id, "err", err)
				}
			case packets.Disconnect:
				if pk.ReasonCode != packets.CodeDisconnectWillMessage.Code {
					will = nil
				}
			}
		}
		srv.sessions.release(c, sess, will, delay)
	}()
}

// watch registers the connection for p's synced offset, once.
func (c *conn) watch(p *engine.Partition) {
	if _, ok := c.watched[p]; !ok {
		c.watched[p] = struct{}{}
		p.Watch(c)
	}
}

// releaseAcks sends the acknowledgements at the head of the queue whose records are synced.
func (c *conn) releaseAcks() {
	i := 0
	for ; i < len(c.acks); i++ {
		a := &c.acks[i]
		if a.part != nil && a.part.SyncedOffset() <= a.last {
			if c.srv.conns.Stopping() {
				a.part.SyncNow()
			}
			break
		}
		c.ackWith(a.kind, a.id, a.code, a.reason)
	}
	if i > 0 {
		n := copy(c.acks, c.acks[i:])
		clear(c.acks[n:])
		c.acks = c.acks[:n]
	}
	c.waitingAcks.Store(int64(len(c.acks)))
}

var (
	_ engine.Owner       = (*conn)(nil)
	_ engine.SyncWatcher = (*conn)(nil)
)
