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
// and then reads it from its first record. A wildcard filter's name is a pattern, and its group a
// consumer group over that pattern (engine.SubscribeWith with the pattern and the group): the
// group deals the partitions of every matching topic, one created later included, among its
// members, and a member tracks the topic-partitions its assignment names (applyAssignment). A
// resumed session's wildcard subscription starts each partition at its group's commit, a topic
// without one (created while the client was away) at its first record.

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
		return shareGroup(ms.share, name)
	case c.sess != nil && c.sess.persistent:
		return sessionGroup(c.clientID, name)
	}
	return ""
}

// shareGroup is the consumer group of a shared subscription "$share/<share>/..." to name.
func shareGroup(share, name string) string { return "$share." + share + ":" + name }

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

// afterSessionWrite runs then once the session's subscriptions are stored (a persistent session
// whose subscriptions changed: off the loop, parked meanwhile), else at once.
func (c *conn) afterSessionWrite(then func(*conn)) {
	changed := c.subsChanged
	c.subsChanged = false
	if !c.sess.persistent || !changed {
		then(c)
		return
	}
	snap := c.sess.snapshot()
	c.parkOff(func() error { return c.srv.sessions.store(snap) }, func(c *conn, err error) {
		if err != nil {
			c.srv.log.Error("mqtt: storing a session", "client", c.clientID, "err", err)
		}
		then(c)
	})
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
		// A shared subscription joins a consumer group: the principal needs the group's consume
		// right, as a native member of it would. A session's own group is the session's.
		if shared && !auth.MayGroup(acl, c.principal, auth.ActConsume, shareGroup(share, n)) {
			return fail(packets.ErrNotAuthorized.Code)
		}
	}
	if old := c.subs[spec.Filter]; old != nil {
		// The same filter again replaces the subscription's options but keeps its engine
		// subscriptions, so nothing is lost or sent twice (MQTT 3.8.4): mosquitto_sub, resuming a
		// session, subscribes again to what the session holds.
		if old.spec != spec {
			c.subsChanged = true
		}
		old.spec = spec
		c.sess.subs[spec.Filter] = spec
		if !resumed && !shared && spec.RetainHandling == 0 {
			c.out.queueRetained(old)
		}
		return spec.QoS
	}
	ms := &mqttSub{spec: spec, filter: filter, share: share, mapping: m}
	for _, n := range m.names {
		es := &engSub{c: c, ms: ms, name: n, group: c.groupName(ms, n), resumed: resumed}
		c.nextSubID++
		es.id = c.nextSubID
		// A resumed session's partitions without a commit are of topics created while it was
		// away (a subscription commits its first position at once): read them from the start.
		if err := es.open(resumed && es.group != ""); err != nil {
			for _, o := range ms.engs {
				o.close(true)
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
	if !resumed {
		c.subsChanged = true
	}
	c.sess.subs[spec.Filter] = spec
	c.srv.stats.Subscriptions.Add(1)
	if !resumed && !shared && spec.RetainHandling < 2 {
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
	if t := e.TopicByName(es.name); t != nil && es.group != "" {
		// Every partition of a group's topic gets a commit before the member joins: a partition
		// dealt to a member later (a shared group's member leaving, or handing it over after the
		// revoke timeout) or read by a resumed session starts where the group began, not at the end
		// of the partition when it was dealt.
		for i := range t.Partitions() {
			p := t.Partition(int32(i))
			if e.CommittedOffset(es.group, es.name, p.ID()) < 0 {
				off := p.NextOffset()
				if earliest {
					off = p.StartOffset()
				}
				e.CommitTopicOffset(t, es.group, p.ID(), off, func(error) {})
			}
		}
	}
	spec := wire.Subscribe{SubID: es.id, Topic: es.name, Partition: -1, Start: wire.StartLatest, Credit: deliverCredit, Group: es.group}
	if earliest {
		spec.Start = wire.StartEarliest
	}
	principal := c.principal
	opts := engine.SubscribeOptions{ClientID: c.clientID, Addr: c.remote,
		MayTopic: func(t string) bool { return auth.MayTopic(c.srv.acl(), principal, auth.ActConsume, t) }}
	if es.group != "" && engine.IsPattern(es.name) && !es.resumed {
		// As for a topic above, for every topic the pattern matches now: a partition dealt to a
		// member later starts where the group began.
		es.baselinePattern(opts.MayTopic)
	}
	s, _, err := e.SubscribeWith(spec, c, opts)
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

// baselinePattern commits, to es's group, the end of every partition of the topics es's pattern
// matches now and that have no commit: on resume those start there, and only topics created later
// are read from their first record.
func (es *engSub) baselinePattern(may func(string) bool) {
	e := es.c.srv.e
	for _, cfg := range e.Topics() {
		if !engine.MatchPattern(es.name, cfg.Name) || !may(cfg.Name) {
			continue
		}
		t := e.TopicByName(cfg.Name)
		if t == nil {
			continue
		}
		for i := range t.Partitions() {
			p := t.Partition(int32(i))
			if e.CommittedOffset(es.group, cfg.Name, p.ID()) < 0 {
				e.CommitTopicOffset(t, es.group, p.ID(), p.NextOffset(), func(error) {})
			}
		}
	}
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
		drop := forget && ms.share == "" && es.group != ""
		es.close(!drop)
		if drop {
			c.srv.e.DeleteGroup(es.group, func(error) {})
		}
	}
	delete(c.subs, ms.spec.Filter)
	if forget {
		delete(c.sess.subs, ms.spec.Filter)
		c.subsChanged = true
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
