package mqtt

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// Subscriptions. Each MQTT subscription opens one engine subscription per Sluice name its filter
// maps to (mapFilter: "a/#" is "a" and "a.>"), owned by the connection (engine.Owner):
//
//   - a clean session's: a plain subscription from the end of each partition (MQTT delivers what is
//     published after SUBSCRIBE);
//   - a persistent session's: a member of the consumer group "$mqtt.<client id>:<name>", alone in
//     it, whose committed offsets advance as the client acknowledges (deliver.go), so a resumed
//     session starts where the acknowledgements stopped;
//   - a shared subscription's ("$share/<group>/<filter>"): a member of the consumer group
//     "$share.<group>:<name>", which splits the topic's partitions among its members.
//
// A filter naming one topic that does not exist yet waits for it (the ticker looks every 100 ms)
// and then reads it from its first record. A group over a pattern is not offered by the engine
// yet: a shared subscription with a wildcard is refused (SUBACK 0x9E on MQTT 5, 0x80 before), and a
// persistent session's wildcard subscription is a plain one (it does not keep what was published
// while the client was away).

// subSpec is one MQTT subscription as a session stores it.
type subSpec struct {
	Filter            string `json:"filter"` // as subscribed, with any $share/<group>/ prefix
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
	ID                int    `json:"id,omitempty"` // MQTT 5 subscription identifier
}

// mqttSub is one MQTT subscription of a connection.
type mqttSub struct {
	spec    subSpec
	filter  string // the filter, without the $share prefix
	share   string // the share name, "" for an ordinary subscription
	mapping filterMapping
	engs    []*engSub
}

// splitShare splits "$share/<group>/<filter>" into group and filter; ok is false for a filter that
// is not a shared one, err set for a malformed one.
func splitShare(f string) (group, filter string, ok bool, err error) {
	rest, ok := strings.CutPrefix(f, "$share/")
	if !ok {
		return "", f, false, nil
	}
	group, filter, found := strings.Cut(rest, "/")
	if !found || group == "" || filter == "" || strings.ContainsAny(group, "+#") {
		return "", "", true, ErrFilterInvalid
	}
	return group, filter, true, nil
}

// groupName is the engine consumer group an engine subscription joins: "" for a plain one.
func (c *conn) groupName(ms *mqttSub, name string) string {
	switch {
	case ms.share != "":
		return "$share." + ms.share + ":" + name
	case c.sess != nil && c.sess.persistent:
		return sessionGroup(c.clientID, name)
	}
	return ""
}

// sessionGroup is the consumer group of a persistent session's subscription to name: the last ':'
// separates the client id from the Sluice name, which holds none.
func sessionGroup(clientID, name string) string { return "$mqtt." + clientID + ":" + name }

func (c *conn) onSubscribe(pk *packets.Packet) {
	if !c.connected.Load() {
		c.protocolError(packets.ErrProtocolViolation.Code, errors.New("SUBSCRIBE before CONNACK"))
		return
	}
	if code := pk.SubscribeValidate(); code != packets.CodeSuccess {
		c.protocolError(code.Code, code)
		return
	}
	codes := make([]byte, len(pk.Filters))
	for i, f := range pk.Filters {
		spec := subSpec{Filter: f.Filter, QoS: f.Qos, NoLocal: f.NoLocal, RetainAsPublished: f.RetainAsPublished,
			RetainHandling: f.RetainHandling, ID: f.Identifier}
		codes[i] = c.subscribe(spec, false)
		if c.dead {
			return
		}
	}
	ack := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, PacketID: pk.PacketID, ReasonCodes: codes}
	c.afterSessionWrite(func(c *conn) { c.write(ack) })
}

// afterSessionWrite runs then once the session's subscriptions are stored (a persistent session:
// off the loop, parked meanwhile), else at once.
func (c *conn) afterSessionWrite(then func(*conn)) {
	if !c.sess.persistent {
		then(c)
		return
	}
	snap := c.sess.snapshot()
	c.parked = true
	go func() {
		err := c.srv.sessions.store(snap)
		c.complete(func(c *conn) {
			c.parked = false
			if err != nil {
				c.srv.log.Error("mqtt: storing a session", "client", c.clientID, "err", err)
			}
			then(c)
		})
	}()
}

// subscribe opens one MQTT subscription and returns its SUBACK reason code. resumed: it is a stored
// subscription of a resumed session (no retained messages are sent for it).
func (c *conn) subscribe(spec subSpec, resumed bool) byte {
	fail := func(v5 byte) byte {
		c.srv.stats.SubscribeRefused.Add(1)
		if c.version == 5 {
			return v5
		}
		return 0x80
	}
	share, filter, shared, err := splitShare(spec.Filter)
	if err != nil {
		return fail(packets.ErrTopicFilterInvalid.Code)
	}
	if shared && spec.NoLocal && c.version == 5 {
		c.protocolError(packets.ErrProtocolViolationInvalidSharedNoLocal.Code, errors.New("no local on a shared subscription"))
		return 0x80
	}
	m, err := mapFilter(filter)
	if err != nil || spec.QoS > 2 {
		return fail(packets.ErrTopicFilterInvalid.Code)
	}
	acl := c.srv.acl()
	for _, n := range m.names {
		if !engine.IsPattern(n) && !auth.MayTopic(acl, c.principal, auth.ActConsume, n) {
			return fail(packets.ErrNotAuthorized.Code)
		}
	}
	if shared {
		for _, n := range m.names {
			if engine.IsPattern(n) {
				return fail(packets.ErrSharedSubscriptionsNotSupported.Code)
			}
		}
	}
	old := c.subs[spec.Filter]
	if old != nil {
		c.closeSub(old, false)
	}
	ms := &mqttSub{spec: spec, filter: filter, share: share, mapping: m}
	for _, n := range m.names {
		es := &engSub{c: c, ms: ms, name: n, group: c.groupName(ms, n)}
		c.nextSubID++
		es.id = c.nextSubID
		if err := es.open(false); err != nil {
			for _, o := range ms.engs {
				o.close()
			}
			c.srv.log.Debug("mqtt: subscribe refused", "client", c.clientID, "filter", spec.Filter, "err", err)
			if errors.Is(err, wire.CodeShuttingDown) {
				return fail(packets.ErrServerShuttingDown.Code)
			}
			return fail(packets.ErrUnspecifiedError.Code)
		}
		c.bySub[es.id] = es
		ms.engs = append(ms.engs, es)
	}
	c.subs[spec.Filter] = ms
	c.sess.subs[spec.Filter] = spec
	c.srv.stats.Subscriptions.Add(1)
	if !resumed && !shared && (spec.RetainHandling == 0 || spec.RetainHandling == 1 && old == nil) {
		c.out.queueRetained(ms)
	}
	return spec.QoS
}

// open subscribes es in the engine, or leaves it waiting for its topic. earliest starts it at each
// partition's first record (a topic created after the subscription), else at the end.
func (es *engSub) open(earliest bool) error {
	c := es.c
	e := c.srv.e
	if !engine.IsPattern(es.name) && e.TopicByName(es.name) == nil {
		es.waiting = true
		c.waitsTick.Store(true)
		return nil
	}
	spec := wire.Subscribe{SubID: es.id, Topic: es.name, Partition: -1, Start: wire.StartLatest, Credit: deliverCredit, Group: es.group}
	if earliest {
		spec.Start = wire.StartEarliest
	}
	principal := c.principal
	opts := engine.SubscribeOptions{ClientID: c.clientID, Addr: c.remote,
		MayTopic: func(t string) bool { return auth.MayTopic(c.srv.acl(), principal, auth.ActConsume, t) }}
	s, _, err := e.SubscribeWith(spec, c, opts)
	if err != nil && es.group != "" && es.ms.share == "" && engine.IsPattern(es.name) {
		// No group over a pattern in this engine: a persistent session's wildcard subscription
		// is a plain one (see the top of this file).
		es.group, spec.Group = "", ""
		s, _, err = e.SubscribeWith(spec, c, opts)
	}
	if err != nil {
		var pe *wire.ProtocolError
		if errors.As(err, &pe) && pe.Code == wire.CodeUnknownTopic {
			es.waiting = true // deleted between the look and the subscribe
			c.waitsTick.Store(true)
			return nil
		}
		return fmt.Errorf("mqtt: subscribing to %s: %w", es.name, err)
	}
	es.s, es.waiting = s, false
	return nil
}

func (c *conn) onUnsubscribe(pk *packets.Packet) {
	if !c.connected.Load() {
		c.protocolError(packets.ErrProtocolViolation.Code, errors.New("UNSUBSCRIBE before CONNACK"))
		return
	}
	if code := pk.UnsubscribeValidate(); code != packets.CodeSuccess {
		c.protocolError(code.Code, code)
		return
	}
	codes := make([]byte, len(pk.Filters))
	for i, f := range pk.Filters {
		ms := c.subs[f.Filter]
		if ms == nil {
			codes[i] = packets.CodeNoSubscriptionExisted.Code
			continue
		}
		c.closeSub(ms, true)
	}
	ack := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsuback}, PacketID: pk.PacketID, ReasonCodes: codes}
	c.afterSessionWrite(func(c *conn) { c.write(ack) })
}

// closeSub ends an MQTT subscription. forget: the client unsubscribed, so a persistent session's
// groups (and their committed offsets) go too.
func (c *conn) closeSub(ms *mqttSub, forget bool) {
	for _, es := range ms.engs {
		es.close()
		if forget && ms.share == "" && es.group != "" {
			c.srv.e.DeleteGroup(es.group, func(error) {})
		}
	}
	delete(c.subs, ms.spec.Filter)
	if forget {
		delete(c.sess.subs, ms.spec.Filter)
	}
	c.srv.stats.Subscriptions.Add(-1)
}

// resume reopens a resumed session's stored subscriptions and sends again the PUBRELs the client
// had not completed.
func (c *conn) resume() {
	specs := make([]subSpec, 0, len(c.sess.subs))
	for _, s := range c.sess.subs {
		specs = append(specs, s)
	}
	slices.SortFunc(specs, func(a, b subSpec) int { return strings.Compare(a.Filter, b.Filter) })
	for _, s := range specs {
		if code := c.subscribe(s, true); code >= 0x80 {
			c.srv.log.Warn("mqtt: a stored subscription did not reopen", "client", c.clientID, "filter", s.Filter, "code", code)
		}
	}
	c.out.resendReleases()
}
