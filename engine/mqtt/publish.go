package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// Inbound PUBLISH. The MQTT topic is mapped onto its Sluice topic (topics.go), checked against the
// principal's produce right, and the message appended as one record to the partition the client
// id hashes to (one client's messages to a topic stay in order), with headers:
//
//	mqtt.topic             the MQTT topic, as published
//	mqtt.qos               "0", "1" or "2"
//	mqtt.retain            "1" when published retained
//	mqtt.client-id         the publishing client (for MQTT 5's No Local)
//	mqtt.packet-id         the PUBLISH's packet id, at QoS 1 and 2 (to recognize a resend: below)
//	mqtt.content-type      MQTT 5 Content Type
//	mqtt.response-topic    MQTT 5 Response Topic
//	mqtt.correlation-data  MQTT 5 Correlation Data
//	mqtt.payload-format    "1" for MQTT 5 Payload Format Indicator 1 (UTF-8)
//	sluice-ttl             MQTT 5 Message Expiry Interval, in milliseconds (the engine's TTL)
//	<key>                  each MQTT 5 User Property, as its own header
//
// A QoS 1 or 2 PUBLISH marked DUP (a resend, typically after a reconnect or a broker restart) is
// looked up among the last dedupeWindow records of its partition: when the latest record of the
// same client with the same packet id has the same payload, it is acknowledged and not stored again,
// so a message the broker stored but could not acknowledge before it went down is stored once.
//
// A topic that does not exist is created off the loop when the engine auto-creates topics (under
// ACLs the principal needs the admin right on it, as for a native produce); the packet waits,
// parked, and is served again. A retained PUBLISH is stored in the retained store first (off the
// loop, fdatasync'd), then appended like any other.

// Header keys the listener writes and reads.
const (
	HeaderTopic         = "mqtt.topic"
	HeaderQoS           = "mqtt.qos"
	HeaderRetain        = "mqtt.retain"
	HeaderClientID      = "mqtt.client-id"
	HeaderPacketID      = "mqtt.packet-id"
	HeaderContentType   = "mqtt.content-type"
	HeaderResponseTopic = "mqtt.response-topic"
	HeaderCorrelation   = "mqtt.correlation-data"
	HeaderPayloadFormat = "mqtt.payload-format"
)

var (
	hTopic       = []byte(HeaderTopic)
	hQoS         = []byte(HeaderQoS)
	hRetain      = []byte(HeaderRetain)
	hClientID    = []byte(HeaderClientID)
	hPacketID    = []byte(HeaderPacketID)
	hContentType = []byte(HeaderContentType)
	hResponse    = []byte(HeaderResponseTopic)
	hCorrelation = []byte(HeaderCorrelation)
	hFormat      = []byte(HeaderPayloadFormat)
	hTTL         = []byte(wire.HeaderTTL)
	qosValues    = [3][]byte{[]byte("0"), []byte("1"), []byte("2")}
	one          = []byte("1")
)

// parkedPublish is a PUBLISH waiting for off-loop work (topic creation, the retained store): its
// packet copied out of the input buffer, and what is done already.
type parkedPublish struct {
	pk       *packets.Packet
	created  bool  // the topic was created (or found): append now
	retained bool  // the retained store has it
	err      error // the work's outcome; written by the work's goroutine before parkDone closes
}

// park runs work off the loop for the PUBLISH pk and serves it again when it is done: then records
// what the work did. pk may hold views of the input buffer: it is copied (r, when the PUBLISH was
// parked before, holds a copy already).
func (c *conn) park(pk *packets.Packet, r *parkedPublish, work func() error, then func(r *parkedPublish)) {
	if r == nil {
		cp := *pk
		cp.TopicName = string([]byte(pk.TopicName))
		cp.Payload = bytes.Clone(pk.Payload)
		cp.Properties = pk.Properties.Copy(true)
		r = &parkedPublish{pk: &cp}
	}
	c.parkPub = r
	c.parkOff(func() error {
		r.err = work()
		if r.err == nil {
			then(r)
		}
		return r.err
	}, func(c *conn, err error) {
		c.parkPub = nil
		if err != nil {
			c.publishFailed(r.pk, err)
			return
		}
		c.retry = r
	})
}

// parkOff runs work on a goroutine, the connection parked meanwhile (no packet read), then done on
// the loop with work's error. parkDone is closed when work has returned, for a connection that
// closes meanwhile (handOff).
func (c *conn) parkOff(work func() error, done func(c *conn, err error)) {
	ch := make(chan struct{})
	c.parked, c.parkDone = true, ch
	go func() {
		err := work()
		close(ch)
		c.complete(func(c *conn) {
			c.parked, c.parkDone = false, nil
			done(c, err)
		})
	}()
}

// publishFailed answers a PUBLISH that could not be stored: MQTT 5 acknowledges QoS 1 and 2 with
// a reason code and a Reason String; MQTT 3.1.1 has no way to say it and closes the connection (a
// QoS 0 PUBLISH is dropped and counted). A PUBLISH to a topic the broker does not have (and will not
// create: no --auto-create) gets 0x83 (implementation specific error: the name is valid, the broker
// is not willing to accept it), and is logged at info level once per connection, since the client
// may have no way to show why.
func (c *conn) publishFailed(pk *packets.Packet, err error) {
	c.srv.stats.PublishRefused.Add(1)
	code := packets.ErrUnspecifiedError.Code
	reason := ""
	switch {
	case errors.Is(err, errDenied):
		code = packets.ErrNotAuthorized.Code
	case errors.Is(err, ErrTopicInvalid):
		code = packets.ErrTopicNameInvalid.Code
	case errors.Is(err, wire.CodeUnknownTopic):
		code = packets.ErrImplementationSpecificError.Code
		reason = unknownTopicReason
		if !c.warnedUnknown {
			c.warnedUnknown = true
			c.srv.log.Info("mqtt: publish to a topic that does not exist refused; create it (sluice topic create) or start the broker with --auto-create",
				"remote", c.remote, "client", c.clientID, "topic", pk.TopicName)
		}
	}
	c.srv.log.Debug("mqtt: publish refused", "remote", c.remote, "client", c.clientID, "topic", pk.TopicName, "err", err)
	switch {
	case pk.FixedHeader.Qos == 0:
		if c.version != 5 && errors.Is(err, errDenied) {
			c.dead = true // MQTT 3.1.1 3.3.5: refusing is closing
		}
	case c.version == 5:
		kind := byte(packets.Puback)
		if pk.FixedHeader.Qos == 2 {
			kind = packets.Pubrec
		}
		c.queueAck(ackWait{kind: kind, id: pk.PacketID, code: code, reason: reason})
	default:
		c.dead = true
	}
}

var errDenied = errors.New("mqtt: not authorized")

// unknownTopicReason is the Reason String of a PUBLISH refused because its topic does not exist.
const unknownTopicReason = "topic does not exist: create it (sluice topic create) or start the broker with --auto-create"

// servePublish stores one inbound PUBLISH and queues its acknowledgement. r is its parked state
// when it is served again after off-loop work, else nil (pk then holds views of the input buffer,
// valid during the call only).
func (c *conn) servePublish(pk *packets.Packet, r *parkedPublish) {
	if !c.connected.Load() {
		c.protocolError(packets.ErrProtocolViolation.Code, errors.New("PUBLISH before CONNACK"))
		return
	}
	if code := pk.PublishValidate(c.maxAliases); code != packets.CodeSuccess {
		c.protocolError(code.Code, code)
		return
	}
	if pk.FixedHeader.Qos == 2 && c.sess.qos2In[pk.PacketID] {
		c.queueAck(ackWait{kind: packets.Pubrec, id: pk.PacketID}) // stored once already: not again
		return
	}
	topic := pk.TopicName
	if c.version == 5 && pk.Properties.TopicAliasFlag {
		a := pk.Properties.TopicAlias
		if topic != "" {
			if c.aliases == nil {
				c.aliases = map[uint16]string{}
			}
			c.aliases[a] = string([]byte(topic))
		} else if topic = c.aliases[a]; topic == "" {
			c.protocolError(packets.ErrTopicAliasInvalid.Code, fmt.Errorf("topic alias %d not set", a))
			return
		}
	}
	name, err := c.sluiceName(topic)
	if err != nil {
		if c.version == 5 && pk.FixedHeader.Qos == 0 {
			c.protocolError(packets.ErrTopicNameInvalid.Code, err)
			return
		}
		c.publishFailed(pk, err)
		return
	}
	acl, principal := c.srv.acl(), c.principal
	if !auth.MayTopic(acl, principal, auth.ActProduce, name) {
		c.publishFailed(pk, errDenied)
		return
	}
	if pk.FixedHeader.Retain && (r == nil || !r.retained) {
		msg := retainedFrom(pk, topic)
		c.park(pk, r, func() error { return c.srv.retained.set(msg) }, func(r *parkedPublish) { r.retained = true })
		return
	}
	e := c.srv.e
	t := e.TopicByName(name)
	if t == nil {
		if r != nil && r.created {
			c.publishFailed(pk, fmt.Errorf("%w: topic %s", wire.CodeUnknownTopic, name))
			return
		}
		c.park(pk, r, func() error {
			if !auth.MayCreate(acl, principal, wire.TopicConfig{Name: name}) {
				return fmt.Errorf("%w: creating topic %s", errDenied, name)
			}
			_, err := e.AutoCreate(name)
			return err
		}, func(r *parkedPublish) { r.created = true })
		return
	}
	p := t.Partition(int32(c.partitionHash() % uint32(t.Partitions())))
	if pk.FixedHeader.Dup && pk.FixedHeader.Qos > 0 {
		if off, ok := c.storedBefore(p, pk); ok {
			c.srv.stats.DuplicatesDropped.Add(1)
			c.ackStored(pk, t, p, off)
			return
		}
	}
	batch, err := c.buildRecord(pk, topic)
	if err != nil {
		c.publishFailed(pk, err)
		return
	}
	_, last, err := p.Append(batch)
	if err != nil {
		c.publishFailed(pk, err)
		return
	}
	if hook := publishHook.Load(); hook != nil {
		(*hook)()
	}
	c.srv.stats.PublishedIn.Add(1)
	c.srv.stats.PublishedInBytes.Add(uint64(len(pk.Payload)))
	c.ackStored(pk, t, p, last)
}

// publishHook, when set (tests only), runs on the loop after a PUBLISH is stored, before its
// acknowledgement is queued.
var publishHook atomic.Pointer[func()]

// ackStored queues the acknowledgement of a QoS 1 or 2 PUBLISH stored at offset last of p: at
// once, or once synced under an fsync floor.
func (c *conn) ackStored(pk *packets.Packet, t *engine.Topic, p *engine.Partition, last int64) {
	if pk.FixedHeader.Qos == 0 {
		return
	}
	a := ackWait{kind: packets.Puback, id: pk.PacketID}
	if pk.FixedHeader.Qos == 2 {
		a.kind = packets.Pubrec
		c.sess.qos2In[pk.PacketID] = true
		c.logFlow(flowIn, pk.PacketID)
	}
	if c.srv.opts.MinDurability == wire.DurabilityFsync && !t.Memory() {
		p.RequestSync()
		if p.SyncedOffset() <= last {
			c.watch(p)
			a.part, a.last = p, last
		}
	}
	c.queueAck(a)
}

// dedupeWindow is how many of a partition's last records a DUP PUBLISH is looked up among.
const dedupeWindow = 4096

// storedBefore looks for the record a DUP PUBLISH resends among p's last dedupeWindow records: the
// latest one from this client with its packet id, if its payload is the same. It returns that
// record's offset. Pages not in memory end the look (the PUBLISH is then stored again).
func (c *conn) storedBefore(p *engine.Partition, pk *packets.Packet) (int64, bool) {
	id := strconv.AppendUint(c.idBuf[:0], uint64(pk.PacketID), 10)
	cid := c.clientIDb
	if cid == nil {
		cid = []byte(c.clientID)
	}
	r := p.NewReader(c)
	defer r.Close()
	end := p.NextOffset()
	found, same := int64(-1), false
	var it wire.RecordIter
	var rec wire.Record
	for off := max(p.StartOffset(), end-dedupeWindow); off < end; {
		d, err := r.Read(off, 256<<10)
		if err != nil || len(d.Batches()) == 0 {
			d.Release()
			break
		}
		next := off
		for rest := d.Batches(); len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				break
			}
			rest = rest[h.Size():]
			for it.Next(&rec) {
				next = rec.Offset + 1
				if rec.Offset < off {
					continue
				}
				if v, ok := rec.Header(HeaderClientID); !ok || !bytes.Equal(v, cid) {
					continue
				}
				if v, ok := rec.Header(HeaderPacketID); ok && bytes.Equal(v, id) {
					found, same = rec.Offset, bytes.Equal(rec.Value, pk.Payload)
				}
			}
		}
		d.Release()
		if next <= off {
			break
		}
		off = next
	}
	return found, found >= 0 && same
}

// queueAck queues an acknowledgement behind those waiting for an fsync (MQTT orders them), or
// writes it at once when none wait.
func (c *conn) queueAck(a ackWait) {
	if len(c.acks) == 0 && a.part == nil {
		c.ackWith(a.kind, a.id, a.code, a.reason)
		return
	}
	c.acks = append(c.acks, a)
	c.waitingAcks.Store(int64(len(c.acks)))
	c.releaseAcks() // the sync may be in already
}

// onPubrel completes an inbound QoS 2 exchange: the packet id may be used again.
func (c *conn) onPubrel(pk *packets.Packet) {
	code := packets.CodeSuccess.Code
	if !c.sess.qos2In[pk.PacketID] {
		code = packets.ErrPacketIdentifierNotFound.Code
	} else {
		delete(c.sess.qos2In, pk.PacketID)
		c.logFlow(flowInDone, pk.PacketID)
	}
	c.queueAck(ackWait{kind: packets.Pubcomp, id: pk.PacketID, code: code})
}

// sluiceName maps an MQTT topic through the connection's cache.
func (c *conn) sluiceName(topic string) (string, error) {
	if n, ok := c.names[topic]; ok {
		return n, nil
	}
	n, err := SluiceTopic(topic)
	if err != nil {
		return "", err
	}
	if len(c.names) >= maxNameCache {
		clear(c.names)
	}
	c.names[string([]byte(topic))] = n // topic may be a view of the input buffer
	return n, nil
}

// partitionHash picks the partition of the client's publishes: FNV-1a of the client id.
func (c *conn) partitionHash() uint32 {
	if c.sess != nil && c.sess.hash != 0 {
		return c.sess.hash
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(c.clientID))
	return h.Sum32()
}

// buildRecord builds the one-record batch of an inbound PUBLISH (see the table above).
func (c *conn) buildRecord(pk *packets.Packet, topic string) ([]byte, error) {
	h := c.hdrs[:0]
	// The topic's bytes are read, not kept: Append copies them into the batch. A view, not a copy,
	// so that a QoS 0 publish allocates nothing here.
	tb := unsafe.Slice(unsafe.StringData(topic), len(topic))
	h = append(h, wire.Header{Key: hTopic, Value: tb}, wire.Header{Key: hQoS, Value: qosValues[pk.FixedHeader.Qos]})
	if pk.FixedHeader.Retain {
		h = append(h, wire.Header{Key: hRetain, Value: one})
	}
	if c.clientIDb == nil {
		c.clientIDb = []byte(c.clientID)
	}
	h = append(h, wire.Header{Key: hClientID, Value: c.clientIDb})
	if pk.FixedHeader.Qos > 0 {
		h = append(h, wire.Header{Key: hPacketID, Value: strconv.AppendUint(c.idBuf[:0], uint64(pk.PacketID), 10)})
	}
	if c.version == 5 {
		h = appendProps(h, &pk.Properties)
	}
	c.hdrs = h
	if c.bb == nil {
		c.bb = wire.NewBatchBuilder(256 + len(pk.Payload)) // a subscriber-only device never needs one
	}
	c.bb.Reset()
	c.bb.Append(nil, pk.Payload, h, time.Now().UnixMilli())
	return c.bb.Build()
}

// appendProps appends the headers MQTT 5 publish properties map onto.
func appendProps(h []wire.Header, p *packets.Properties) []wire.Header {
	if p.ContentType != "" {
		h = append(h, wire.Header{Key: hContentType, Value: []byte(p.ContentType)})
	}
	if p.ResponseTopic != "" {
		h = append(h, wire.Header{Key: hResponse, Value: []byte(p.ResponseTopic)})
	}
	if len(p.CorrelationData) > 0 {
		h = append(h, wire.Header{Key: hCorrelation, Value: p.CorrelationData})
	}
	if p.PayloadFormatFlag && p.PayloadFormat == 1 {
		h = append(h, wire.Header{Key: hFormat, Value: one})
	}
	if p.MessageExpiryInterval > 0 {
		h = append(h, wire.Header{Key: hTTL, Value: strconv.AppendInt(nil, int64(p.MessageExpiryInterval)*1000, 10)})
	}
	for _, u := range p.User {
		h = append(h, wire.Header{Key: []byte(u.Key), Value: []byte(u.Val)})
	}
	return h
}

// publishInternal appends a message the broker publishes on a client's behalf (a will, or a
// PUBLISH its connection had read when it closed: handOff): it runs off any loop, creating the
// topic when the engine auto-creates topics.
func (s *Server) publishInternal(clientID, principal string, pk *packets.Packet) error {
	name, err := SluiceTopic(pk.TopicName)
	if err != nil {
		return err
	}
	acl := s.acl()
	if !auth.MayTopic(acl, principal, auth.ActProduce, name) {
		return errDenied
	}
	if pk.FixedHeader.Retain {
		if err := s.retained.set(retainedFrom(pk, pk.TopicName)); err != nil {
			return err
		}
	}
	if s.e.TopicByName(name) == nil && !auth.MayCreate(acl, principal, wire.TopicConfig{Name: name}) {
		return errDenied
	}
	t, err := s.e.AutoCreate(name)
	if err != nil {
		return err
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(clientID))
	hdrs := []wire.Header{{Key: hTopic, Value: []byte(pk.TopicName)}, {Key: hQoS, Value: qosValues[pk.FixedHeader.Qos]}}
	if pk.FixedHeader.Retain {
		hdrs = append(hdrs, wire.Header{Key: hRetain, Value: one})
	}
	hdrs = append(hdrs, wire.Header{Key: hClientID, Value: []byte(clientID)})
	hdrs = appendProps(hdrs, &pk.Properties)
	b := wire.NewBatchBuilder(256 + len(pk.Payload))
	b.Append(nil, pk.Payload, hdrs, time.Now().UnixMilli())
	batch, err := b.Build()
	if err != nil {
		return err
	}
	_, _, err = t.Partition(int32(h.Sum32() % uint32(t.Partitions()))).Append(batch)
	return err
}
