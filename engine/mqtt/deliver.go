package mqtt

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// Outbound delivery. Each engine subscription is read record by record (as engine.Local does):
// a delivery (a run of whole batches, a view of the log's mapping) is held while its records go
// out, so a connection holds at most one delivery (at most deliverBytes, or one batch) per engine
// subscription. A record goes out as a PUBLISH at the lower of the subscription's QoS and the one
// it was published with (a record from another face, with no mqtt.qos header, at the
// subscription's). QoS 1 and 2 deliveries take a packet id from the connection's window (the
// lower of Options.MaxInflight and the client's receive maximum); a full window, or more than
// Options.MaxOutboundBytes unsent, pauses delivery until acknowledgements or the socket drain.
//
// A group member (persistent session, shared subscription) commits, per partition, the offset of
// its oldest unacknowledged record (or, with none, the offset after the last delivered): a
// resumed session, or a partition's next member, starts there and sends again what was not
// acknowledged (with DUP set when this broker remembers sending it).

const (
	// deliverBytes caps one delivery read from a subscription.
	deliverBytes = 64 << 10
	// deliverCredit is the credit a subscription starts with and is topped up by: the window and
	// the outbound bound pace delivery, not credit.
	deliverCredit = 1 << 30
)

// engSub is one engine subscription of an MQTT subscription.
type engSub struct {
	c     *conn
	ms    *mqttSub
	id    uint32
	name  string // Sluice topic or pattern
	group string // the consumer group its commits go to, "" for a plain subscription
	s     *engine.Subscription
	// resumed: opened for a resumed session (a wildcard one reads from the start, see open).
	resumed bool
	// waiting: the topic does not exist; the ticker's retry opens it when it does.
	waiting bool

	held   engine.Delivery
	has    bool
	rest   []byte
	iter   bool
	hasRec bool // rec is read and not yet sent
	it     wire.RecordIter
	rec    wire.Record

	parts map[*engine.Partition]*partState // group members: commit state by partition
}

// partState is a group member's acknowledgement state for one partition.
type partState struct {
	inflight  []int64 // offsets sent at QoS 1 or 2 and not acknowledged, in the order sent
	next      int64   // the offset after the last record delivered
	committed int64   // the last offset committed; -1 before any
	dirty     bool
}

func (ps *partState) commitPoint() int64 {
	if len(ps.inflight) > 0 {
		return ps.inflight[0]
	}
	return ps.next
}

// outMsg is a QoS 1 or 2 delivery awaiting its acknowledgement.
type outMsg struct {
	es     *engSub           // nil for a retained message or a PUBREL resent on resume
	part   *engine.Partition // nil for a retained message
	offset int64
	qos    byte
	state  byte // packets.Publish: awaiting PUBACK or PUBREC; packets.Pubrel: awaiting PUBCOMP
}

// outbound is a connection's delivery state. Loop-owned.
type outbound struct {
	c        *conn
	inflight map[uint16]*outMsg
	nextID   uint16
	retained []*retainedMsg // retained messages to send after a SUBACK, with their subscription
	retSub   []*mqttSub
	dirty    []*engSub // group members with commits to make
	props    []byte    // MQTT 5 properties of the delivery being written (appendProps), reused
	free     []*outMsg // completed outMsgs for reuse, at most window of them
}

func (o *outbound) init(c *conn) {
	o.c = c
	o.inflight = map[uint16]*outMsg{}
}

// room reports whether another delivery may be written now; qos > 0 also needs the window.
func (o *outbound) room(qos byte) bool {
	c := o.c
	if c.t.OutboundBuffered()+c.wb.Len() > c.srv.opts.MaxOutboundBytes {
		c.waitsTick.Store(true) // the ticker looks again
		return false
	}
	return qos == 0 || len(o.inflight) < c.window
}

// newID picks a free packet id.
func (o *outbound) newID() uint16 {
	for {
		o.nextID++
		if o.nextID == 0 {
			o.nextID = 1
		}
		if _, used := o.inflight[o.nextID]; !used {
			return o.nextID
		}
	}
}

// retry is the ticker's look: open subscriptions whose topic now exists.
func (o *outbound) retry() {
	c := o.c
	for _, es := range c.bySub {
		if es.waiting {
			if err := es.open(true); err != nil {
				c.srv.log.Warn("mqtt: opening a subscription", "client", c.clientID, "topic", es.name, "err", err)
			}
			if es.waiting {
				c.waitsTick.Store(true)
			}
		}
	}
}

// deliver writes what the subscriptions have, within the window and the outbound bound.
func (o *outbound) deliver() {
	c := o.c
	if !c.connected.Load() || c.dead || c.closed {
		return
	}
	for len(o.retained) > 0 && o.room(min(o.retained[0].qos, o.retSub[0].spec.QoS)) {
		o.sendRetained(o.retained[0], o.retSub[0])
		o.retained[0], o.retSub[0] = nil, nil
		o.retained, o.retSub = o.retained[1:], o.retSub[1:]
	}
	for _, es := range c.bySub {
		if es.s == nil {
			continue
		}
		for !c.dead {
			rec, part, err := es.next()
			if err != nil {
				es.failed(err)
				break
			}
			if rec == nil || !o.send(es, part, rec) {
				break
			}
		}
	}
	o.commit()
}

// next returns the subscription's next record and its partition, nil when it has none now.
func (es *engSub) next() (*wire.Record, *engine.Partition, error) {
	if es.hasRec {
		return &es.rec, es.held.Partition, nil
	}
	for {
		if es.iter {
			if es.it.Next(&es.rec) {
				if es.rec.Offset < es.held.From() {
					continue // delivered before: its batch began before the position
				}
				es.hasRec = true
				return &es.rec, es.held.Partition, nil
			}
			es.iter = false
			if err := es.it.Err(); err != nil {
				es.c.srv.log.Error("mqtt: reading a batch", "topic", es.held.Partition.Topic().Name(), "err", err)
				es.rest = nil
			}
		}
		if len(es.rest) == 0 {
			es.release()
			d, ok, err := es.s.Next(deliverBytes)
			if err != nil || !ok {
				return nil, nil, err
			}
			es.s.AddCredit(uint32(len(d.Batches())))
			es.held, es.has, es.rest = d, true, d.Batches()
			continue
		}
		h, err := es.it.Reset(es.rest)
		if err != nil {
			es.c.srv.log.Error("mqtt: reading a batch", "topic", es.held.Partition.Topic().Name(), "err", err)
			es.rest = nil
			continue
		}
		es.rest = es.rest[h.Size():]
		if h.LastOffset() < es.held.From() {
			continue
		}
		if ps := es.part(es.held.Partition); ps != nil && h.LastOffset() < ps.committed {
			continue // delivered and acknowledged before (a resumed wildcard subscription)
		}
		es.iter = true
	}
}

func (es *engSub) release() {
	if es.has {
		es.held.Release()
		es.has, es.rest, es.iter, es.hasRec = false, nil, false, false
	}
}

// failed ends an engine subscription whose Next failed: a deleted topic waits to be created again.
func (es *engSub) failed(err error) {
	es.c.srv.log.Debug("mqtt: subscription ended", "client", es.c.clientID, "topic", es.name, "err", err)
	es.release()
	es.s.Close()
	es.s = nil
	if !engine.IsPattern(es.name) {
		es.waiting = true
		es.c.waitsTick.Store(true)
	}
}

// close ends the engine subscription. commit: a group member commits what was acknowledged first
// (not when its group is about to be deleted: a commit landing after the delete would bring the
// group's offsets back).
func (es *engSub) close(commit bool) {
	es.release()
	if es.s != nil {
		if commit {
			es.c.out.commitSub(es, true)
		}
		es.s.Close()
		es.s = nil
	}
	es.waiting = false
	for _, m := range es.c.out.inflight {
		if m.es == es {
			m.es = nil // its acknowledgement no longer commits
		}
	}
	delete(es.c.bySub, es.id)
}

// applyAssignment applies a group's new assignment (or a pattern's new topics): es tracks exactly
// the topic-partitions assigned to it. Those taken away are committed (which hands them to their
// next member) and forgotten, with the delivery held on one; those kept keep their state. A group
// over one topic names its partitions in Assign.Partitions, a group over a pattern (a shared
// wildcard subscription, a persistent session's wildcard one) per topic in Assign.Topics.
func (es *engSub) applyAssignment() {
	if es.s == nil {
		return
	}
	a, err := es.s.ApplyAssignment()
	if err != nil || !es.s.Grouped() {
		return
	}
	e := es.c.srv.e
	kept := map[*engine.Partition]int64{}
	if t := es.s.Topic(); t != nil {
		for _, po := range a.Partitions {
			if p := t.Partition(po.Partition); p != nil {
				kept[p] = po.Offset
			}
		}
	}
	for _, ta := range a.Topics {
		t := e.TopicByName(ta.Topic)
		if t == nil {
			continue // deleted since: the group deals again
		}
		for _, po := range ta.Partitions {
			if p := t.Partition(po.Partition); p != nil {
				kept[p] = po.Offset
			}
		}
	}
	if es.has {
		if _, ok := kept[es.held.Partition]; !ok {
			es.release() // its records are the next member's now
		}
	}
	for p, ps := range es.parts {
		if _, ok := kept[p]; ok {
			continue
		}
		e.CommitTopicOffset(p.Topic(), es.group, p.ID(), ps.commitPoint(), func(error) {})
		delete(es.parts, p)
	}
	for p, off := range kept {
		if es.parts == nil {
			es.parts = map[*engine.Partition]*partState{}
		}
		if _, ok := es.parts[p]; !ok {
			ps := &partState{next: off, committed: e.CommittedOffset(es.group, p.Topic().Name(), p.ID())}
			es.parts[p] = ps
			if ps.committed < 0 {
				ps.dirty = true // a first position: commit it, so a resumed session starts here
				es.c.out.markDirty(es)
			}
		}
	}
}

func (o *outbound) markDirty(es *engSub) {
	if !slices_contains(o.dirty, es) {
		o.dirty = append(o.dirty, es)
	}
}

func slices_contains(s []*engSub, es *engSub) bool {
	for _, x := range s {
		if x == es {
			return true
		}
	}
	return false
}

// commit makes the commits the turn's deliveries and acknowledgements call for.
func (o *outbound) commit() {
	for _, es := range o.dirty {
		o.commitSub(es, false)
	}
	clear(o.dirty)
	o.dirty = o.dirty[:0]
}

// commitSub commits each dirty partition of es (every partition, all).
func (o *outbound) commitSub(es *engSub, all bool) {
	if es.group == "" || es.s == nil {
		return
	}
	for p, ps := range es.parts {
		if !ps.dirty && !all {
			continue
		}
		ps.dirty = false
		pt := ps.commitPoint()
		if pt <= ps.committed {
			continue
		}
		ps.committed = pt
		group, name := es.group, p.Topic().Name()
		log := o.c.srv.log
		o.c.srv.e.CommitTopicOffset(p.Topic(), group, p.ID(), pt, func(err error) {
			if err != nil {
				log.Debug("mqtt: commit", "group", group, "topic", name, "err", err)
			}
		})
	}
}

// send writes rec as a PUBLISH for es, or reports false when it must wait (the record stays next).
func (o *outbound) send(es *engSub, part *engine.Partition, rec *wire.Record) bool {
	c := o.c
	ms := es.ms
	qos := ms.spec.QoS
	if v, ok := rec.Header(HeaderQoS); ok && len(v) == 1 && v[0] >= '0' && v[0] < '0'+qos {
		qos = v[0] - '0'
	}
	if !o.room(qos) {
		return false
	}
	es.hasRec = false
	topic := c.recordTopic(rec, part.Topic().Name()) // may be a view of the record: used only in this call
	skip := ms.mapping.wildFirst && strings.HasPrefix(topic, "$")
	if ms.spec.NoLocal {
		if v, ok := rec.Header(HeaderClientID); ok && string(v) == c.clientID {
			skip = true
		}
	}
	ps := es.part(part)
	if ps != nil && rec.Offset < ps.committed {
		return true // delivered and acknowledged before (a resumed wildcard subscription)
	}
	if ps != nil {
		ps.next = rec.Offset + 1
		ps.dirty = true
		o.markDirty(es)
	}
	if skip {
		return true
	}
	retain := false
	if ms.spec.RetainAsPublished {
		if v, ok := rec.Header(HeaderRetain); ok && bytes.Equal(v, one) {
			retain = true
		}
	}
	if c.version == 5 && !o.appendProps(rec, ms) {
		return true // expired in the meantime
	}
	var id uint16
	dup := false
	if qos > 0 {
		id = o.newID()
		key := sentKey{group: es.group, topic: part.Topic().Name(), part: part.ID()}
		if c.sess.persistent {
			if up, ok := c.sess.sent[key]; ok && rec.Offset <= up {
				dup = true
			}
			c.sess.sent[key] = max(c.sess.sent[key], rec.Offset)
		}
		m := o.newMsg()
		*m = outMsg{es: es, part: part, offset: rec.Offset, qos: qos, state: packets.Publish}
		o.inflight[id] = m
		if ps != nil {
			ps.inflight = append(ps.inflight, rec.Offset)
		}
	}
	o.writePublishFrame(topic, rec.Value, qos, dup, retain, id)
	return true
}

// writePublishFrame writes a PUBLISH straight into the turn's output, without the codec's packet
// and buffers: the delivery path allocates nothing here. The layout is MQTT 3.3: header byte,
// remaining length, topic (u16 length, bytes), packet id (QoS 1 and 2), on MQTT 5 the properties
// appendProps left in o.props (their length as a variable byte integer first), payload. On MQTT 5
// a packet larger than the client's maximum packet size is not written: it is dropped as if
// delivered (MQTT 5 3.1.2.25), its packet id settled.
func (o *outbound) writePublishFrame(topic string, payload []byte, qos byte, dup, retain bool, id uint16) {
	c := o.c
	rem := 2 + len(topic) + len(payload)
	if qos > 0 {
		rem += 2
	}
	v5 := c.version == 5
	if v5 {
		rem += varintLen(len(o.props)) + len(o.props)
		if 1+varintLen(rem)+rem > c.maxOut {
			c.srv.stats.DroppedTooLarge.Add(1)
			if m := o.inflight[id]; qos > 0 && m != nil {
				delete(o.inflight, id)
				o.settle(m)
			}
			return
		}
	}
	h := byte(packets.Publish<<4) | qos<<1
	if dup {
		h |= 0x08
	}
	if retain {
		h |= 0x01
	}
	wb := &c.wb
	wb.WriteByte(h)
	writeVarint(wb, rem)
	wb.WriteByte(byte(len(topic) >> 8))
	wb.WriteByte(byte(len(topic)))
	wb.WriteString(topic)
	if qos > 0 {
		wb.WriteByte(byte(id >> 8))
		wb.WriteByte(byte(id))
	}
	if v5 {
		writeVarint(wb, len(o.props))
		wb.Write(o.props)
	}
	wb.Write(payload)
	st := &c.srv.stats
	st.packetOut(packets.Publish)
	st.PublishedOut.Add(1)
	st.PublishedOutBytes.Add(uint64(len(payload)))
}

// writePublish writes pk unless it exceeds the client's maximum packet size (MQTT 5: the server
// discards such a message as if delivered).
func (o *outbound) writePublish(pk *packets.Packet) {
	c := o.c
	start := c.wb.Len()
	c.write(pk)
	if c.wb.Len()-start > c.maxOut {
		c.wb.Truncate(start)
		c.srv.stats.DroppedTooLarge.Add(1)
		if m := o.inflight[pk.PacketID]; pk.FixedHeader.Qos > 0 && m != nil {
			delete(o.inflight, pk.PacketID) // settled as if delivered (MQTT 5 3.1.2.25)
			o.settle(m)
		}
		return
	}
	c.srv.stats.PublishedOut.Add(1)
	c.srv.stats.PublishedOutBytes.Add(uint64(len(pk.Payload)))
}

// part returns es's commit state of p, nil for a plain subscription.
func (es *engSub) part(p *engine.Partition) *partState {
	if es.group == "" {
		return nil
	}
	ps := es.parts[p]
	if ps == nil {
		if es.parts == nil {
			es.parts = map[*engine.Partition]*partState{}
		}
		ps = &partState{committed: es.c.srv.e.CommittedOffset(es.group, p.Topic().Name(), p.ID())}
		es.parts[p] = ps
	}
	return ps
}

// recordTopic is the MQTT topic a record goes out under: its mqtt.topic header when that maps onto
// the topic the record is in (the string is then a view of the record, valid while it is), else
// the topic's name mapped back (cached per connection).
func (c *conn) recordTopic(rec *wire.Record, name string) string {
	if v, ok := rec.Header(HeaderTopic); ok && len(v) > 0 {
		t := unsafe.String(&v[0], len(v))
		if n, err := appendSluiceTopic(c.scratch[:0], t); err == nil && string(n) == name {
			return t
		}
	}
	if t, ok := c.mqttNames[name]; ok {
		return t
	}
	t := MQTTTopic(name)
	if len(c.mqttNames) >= maxNameCache {
		clear(c.mqttNames)
	}
	c.mqttNames[name] = t // name is the topic's own string, not a view
	return t
}

// MQTT 5 property identifiers of a PUBLISH (MQTT 5 2.2.2.2).
const (
	propPayloadFormat = 0x01
	propMessageExpiry = 0x02
	propContentType   = 0x03
	propResponseTopic = 0x08
	propCorrelation   = 0x09
	propSubID         = 0x0B
	propUser          = 0x26
)

// appendProps encodes an MQTT 5 PUBLISH's properties from the record's headers into o.props
// (reused: it holds them until the next call); false when the record's message expiry has passed.
// A header too long for an MQTT string (65,535 bytes) is left out; mqtt.packet-id, the publisher's
// packet id, is not sent.
func (o *outbound) appendProps(rec *wire.Record, ms *mqttSub) bool {
	b := o.props[:0]
	ok := true
	rec.Headers(func(k, v []byte) bool {
		switch string(k) {
		case HeaderTopic, HeaderQoS, HeaderRetain, HeaderClientID, HeaderPacketID, wire.HeaderDeliverAt, wire.HeaderPriority:
		case HeaderContentType:
			b = appendBin(append(b, propContentType), v)
		case HeaderResponseTopic:
			b = appendBin(append(b, propResponseTopic), v)
		case HeaderCorrelation:
			b = appendBin(append(b, propCorrelation), v)
		case HeaderPayloadFormat:
			b = append(b, propPayloadFormat, 1)
		case wire.HeaderTTL:
			ttl, err := strconv.ParseInt(unsafe.String(unsafe.SliceData(v), len(v)), 10, 64)
			if err == nil && ttl > 0 {
				left := rec.Timestamp + ttl - time.Now().UnixMilli()
				if left <= 0 {
					ok = false
					return false
				}
				e := uint32(min((left+999)/1000, math.MaxUint32))
				b = append(b, propMessageExpiry, byte(e>>24), byte(e>>16), byte(e>>8), byte(e))
			}
		default:
			if len(k) <= math.MaxUint16 && len(v) <= math.MaxUint16 {
				b = appendBin(appendBin(append(b, propUser), k), v)
			}
		}
		return true
	})
	if ms.spec.ID > 0 {
		b = appendVarint(append(b, propSubID), ms.spec.ID)
	}
	o.props = b
	return ok
}

// appendBin appends an MQTT string or binary: its length as a big-endian u16, then its bytes
// (truncated at 65,535).
func appendBin(b, v []byte) []byte {
	v = v[:min(len(v), math.MaxUint16)]
	return append(append(b, byte(len(v)>>8), byte(len(v))), v...)
}

// appendVarint appends n as an MQTT variable byte integer (MQTT 1.5.5).
func appendVarint(b []byte, n int) []byte {
	for {
		d := byte(n & 0x7f)
		if n >>= 7; n > 0 {
			b = append(b, d|0x80)
			continue
		}
		return append(b, d)
	}
}

// writeVarint writes n as an MQTT variable byte integer.
func writeVarint(wb *bytes.Buffer, n int) {
	for {
		d := byte(n & 0x7f)
		if n >>= 7; n > 0 {
			wb.WriteByte(d | 0x80)
			continue
		}
		wb.WriteByte(d)
		return
	}
}

// varintLen is the length of n as an MQTT variable byte integer.
func varintLen(n int) int {
	l := 1
	for ; n > 0x7f; n >>= 7 {
		l++
	}
	return l
}

// acked applies a PUBACK, PUBREC or PUBCOMP from the client, with its reason code (MQTT 5; 0
// before): a PUBREC with a failure code ends the exchange there.
func (o *outbound) acked(id uint16, kind, code byte) {
	c := o.c
	m := o.inflight[id]
	switch {
	case m == nil:
		if kind == packets.Pubrec && code < 0x80 {
			c.ack(packets.Pubrel, id, packets.ErrPacketIdentifierNotFound.Code)
		}
		return
	case kind == packets.Puback && m.qos == 1, kind == packets.Pubcomp && m.state == packets.Pubrel:
		delete(o.inflight, id)
		if kind == packets.Pubcomp {
			delete(c.sess.relOut, id)
			c.logFlow(flowOutDone, id)
		}
		if kind == packets.Puback {
			o.settle(m)
		}
		o.freeMsg(m)
	case kind == packets.Pubrec && m.qos == 2 && m.state == packets.Publish:
		o.settle(m) // the client has it (or refused it): it will not be sent again
		if code >= 0x80 {
			delete(o.inflight, id)
			return
		}
		m.state = packets.Pubrel
		c.sess.relOut[id] = struct{}{}
		c.logFlow(flowOut, id)
		c.ack(packets.Pubrel, id, 0)
	case kind == packets.Pubrec && m.state == packets.Pubrel:
		c.ack(packets.Pubrel, id, 0) // a PUBREC again: release again
	default:
		c.protocolError(packets.ErrProtocolViolation.Code, errUnexpectedAck)
	}
}

// newMsg takes an outMsg from the free list (or makes one): a delivery at QoS 1 or 2 allocates
// nothing once the window's worth exist.
func (o *outbound) newMsg() *outMsg {
	if n := len(o.free); n > 0 {
		m := o.free[n-1]
		o.free = o.free[:n-1]
		return m
	}
	return new(outMsg)
}

// freeMsg returns m, no longer in inflight and referenced by nothing, to the free list.
func (o *outbound) freeMsg(m *outMsg) {
	if len(o.free) < o.c.window {
		*m = outMsg{}
		o.free = append(o.free, m)
	}
}

// settle removes a delivered record from its partition's unacknowledged offsets.
func (o *outbound) settle(m *outMsg) {
	if m.es == nil || m.part == nil {
		return
	}
	ps := m.es.parts[m.part]
	if ps == nil {
		return
	}
	for i, off := range ps.inflight {
		if off == m.offset {
			ps.inflight = append(ps.inflight[:i], ps.inflight[i+1:]...)
			break
		}
	}
	ps.dirty = true
	o.markDirty(m.es)
}

// resendReleases sends again the PUBRELs a resumed session had not had completed.
func (o *outbound) resendReleases() {
	for id := range o.c.sess.relOut {
		o.inflight[id] = &outMsg{qos: 2, state: packets.Pubrel}
		o.c.ack(packets.Pubrel, id, 0)
	}
}

// close ends every subscription (committing what was acknowledged) when the connection closes.
func (o *outbound) close() {
	for _, es := range o.c.bySub {
		es.close(true)
	}
	o.retained, o.retSub = nil, nil
	o.inflight = map[uint16]*outMsg{}
}

// queueRetained queues the retained messages ms's filter matches and its principal may read.
func (o *outbound) queueRetained(ms *mqttSub) {
	c := o.c
	for _, m := range c.srv.retained.matching(ms.filter, c.srv.acl(), c.principal) {
		o.retained = append(o.retained, m)
		o.retSub = append(o.retSub, ms)
	}
}

// sendRetained writes a retained message for a new subscription, with the retain flag set.
func (o *outbound) sendRetained(m *retainedMsg, ms *mqttSub) {
	c := o.c
	qos := min(m.qos, ms.spec.QoS)
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: true},
		TopicName: m.topic, Payload: m.payload}
	if c.version == 5 {
		pk.Properties = m.props.Copy(true)
		if m.expires > 0 {
			left := time.Until(time.UnixMilli(m.expires))
			if left <= 0 {
				return
			}
			pk.Properties.MessageExpiryInterval = uint32((left + time.Second - 1) / time.Second)
		}
		if ms.spec.ID > 0 {
			pk.Properties.SubscriptionIdentifier = []int{ms.spec.ID}
		}
	}
	if qos > 0 {
		pk.PacketID = o.newID()
		o.inflight[pk.PacketID] = &outMsg{qos: qos, state: packets.Publish}
	}
	o.writePublish(pk)
}
