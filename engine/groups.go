package engine

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// groupTable holds every consumer group's membership. The broker assigns partitions itself: when a
// member joins or leaves, the group's generation advances and each topic's partitions are dealt
// round-robin over the members subscribed to it, in join order. Members learn their share through
// Owner.Reassign. Offsets live in the offset store, not here, so membership is soft state.
//
// A group is over topics named one by one, or over one topic pattern (group.pattern): every member
// of a pattern group subscribes to that same pattern, and join refuses a mix. A pattern member reads
// the matching topics its principal may consume (Subscription.mayTopic), so members' topic sets may
// differ; the group deals every partition of every topic some member reads, in topic-name order,
// round-robin over that topic's members with one count running across topics (so a group over many
// one-partition topics spreads them). A matching topic created later joins the members' topic sets
// as each member's owner applies it (applyPending, then addTopics), and a deleted one leaves them
// (topicDeleted); either rebalances.
//
// A partition changes hands in two phases, so that its new member starts where the old one stopped:
// the member losing it is told at once (an assignment without it) and holds it as revoking; the
// member dealt it gets it only once the old one hands it back (a commit for the partition, offset -1
// included: handBack), leaves, or has not done so within GroupRevokeTimeout.
type groupTable struct {
	e      *Engine
	mu     sync.Mutex // guards groups and everything inside them
	groups map[string]*group

	stop    chan struct{} // closed by close: the expirer returns
	stopped chan struct{} // closed by the expirer on return
	started atomic.Bool   // startExpirer ran
}

type group struct {
	name       string
	generation uint32
	members    []*groupMember // join order
	joined     uint64         // members ever joined: names new members
	// pattern is the topic pattern every member subscribes to, "" for a group over named topics. Set
	// by the first member to join an empty group.
	pattern string
}

// topicPart names one partition of one topic (one incarnation: a topic deleted and created again
// under its name is another *Topic).
type topicPart struct {
	t *Topic
	p int32
}

type groupMember struct {
	id    string
	sub   *Subscription
	group *group
	// clientID and addr name the member's client for DescribeGroup (SubscribeOptions); immutable.
	clientID, addr string
	// All below guarded by groupTable.mu.
	//
	// topics are the topics the member reads: its subscription's topic, or, for a pattern member, the
	// matching topics its owner found it may consume (at join, then addTopics), less those deleted
	// since (topicDeleted).
	topics []*Topic
	// dealt is the member's share of its topics from the last deal, by topic name then partition.
	// parts is what it has been told it holds, in the same order: dealt less the partitions another
	// member still revokes. revoking holds the partitions taken from it and not yet handed back,
	// each with the timer that gives it up after GroupRevokeTimeout; no partition is in parts and in
	// any member's revoking.
	dealt    []topicPart
	parts    []topicPart
	revoking map[topicPart]*time.Timer
}

// newGroupTable creates the table; Open starts its expirer once the queue table exists.
func newGroupTable(e *Engine) *groupTable {
	return &groupTable{e: e, groups: map[string]*group{}, stop: make(chan struct{}), stopped: make(chan struct{})}
}

// startExpirer starts the goroutine that expires abandoned groups; close stops it.
func (gt *groupTable) startExpirer() {
	gt.started.Store(true)
	go gt.expirer()
}

// expirer drops abandoned groups' offsets every expiryInterval of OffsetsRetention (e.expireGroups).
func (gt *groupTable) expirer() {
	defer close(gt.stopped)
	r := gt.e.opts.OffsetsRetention
	if r <= 0 {
		<-gt.stop
		return
	}
	t := time.NewTicker(min(maxExpiryInterval, max(time.Second, r/10)))
	defer t.Stop()
	for {
		select {
		case <-gt.stop:
			return
		case <-t.C:
			gt.e.expireGroups()
		}
	}
}

// maxExpiryInterval is the longest wait between two expiry checks (Kafka's
// offsets.retention.check.interval.ms default).
const maxExpiryInterval = 10 * time.Minute

// close stops the expirer, if started, and the hand-over timers. Safe to call twice.
func (gt *groupTable) close() {
	select {
	case <-gt.stop:
	default:
		close(gt.stop)
	}
	if gt.started.Load() {
		<-gt.stopped
	}
	gt.mu.Lock()
	for _, g := range gt.groups {
		for _, m := range g.members {
			for _, t := range m.revoking {
				t.Stop() // a closed engine hands nothing over
			}
		}
	}
	gt.mu.Unlock()
}

// queueGroups names the groups with work-queue members. It takes qt.mu, then each queue's mu alone.
func (e *Engine) queueGroups() map[string]bool {
	out := map[string]bool{}
	qt := e.queues
	if qt == nil {
		return out
	}
	qt.mu.Lock()
	qs := make([]*queue, 0, len(qt.queues))
	for _, q := range qt.queues {
		qs = append(qs, q)
	}
	qt.mu.Unlock()
	for _, q := range qs {
		q.mu.Lock()
		if len(q.members) > 0 {
			out[q.key.group] = true
		}
		q.mu.Unlock()
	}
	return out
}

// hasMembersLocked reports whether the group named name has consumer-group subscriptions (the
// caller holds gt.mu) or work-queue members (queued, from queueGroups).
func (gt *groupTable) hasMembersLocked(name string, queued map[string]bool) bool {
	g := gt.groups[name]
	return g != nil && len(g.members) > 0 || queued[name]
}

// expireGroups drops every group that has no members and whose newest commit is older than
// OffsetsRetention by the engine's clock (as Kafka's offsets.retention.minutes): its committed
// offsets, so its lag series leave /metrics, and its empty membership entry. It returns the names
// dropped. The expirer calls it periodically; tests call it directly.
func (e *Engine) expireGroups() []string {
	if e.opts.OffsetsRetention <= 0 {
		return nil
	}
	cutoff := e.opts.Clock().Add(-e.opts.OffsetsRetention).UnixMilli()
	stale := e.offsets.GroupsCommittedBefore(cutoff)
	if len(stale) == 0 {
		return nil
	}
	queued := e.queueGroups() // a queue member joining after this finds the offsets gone: it starts anew
	for _, name := range stale {
		if _, others, _ := e.otherGroupMembers(name); len(others) > 0 {
			queued[name] = true // in use through another face (the Kafka listener's members)
		}
	}
	gt := e.groups
	gt.mu.Lock()
	idle := stale[:0]
	for _, name := range stale {
		if !gt.hasMembersLocked(name, queued) {
			idle = append(idle, name)
			delete(gt.groups, name)
		}
	}
	// Under gt.mu: a subscription joining now waits, and then finds no offsets to resume from.
	gone := e.offsets.DeleteGroups(idle, nil)
	gt.mu.Unlock()
	if len(gone) > 0 {
		e.log.Info("consumer groups expired", "groups", len(gone), "retention", e.opts.OffsetsRetention, "first", gone[0])
	}
	return gone
}

// DeleteGroup forgets a consumer group: its committed offsets and its membership entry. A group
// with members (consumer-group or work-queue subscriptions, or members another face reports:
// AddGroupSource) is refused with CodeInvalidRequest; an unknown group with CodeUnknownGroup. done runs once the deletion is durable, or with the error
// that kept it from being so.
func (e *Engine) DeleteGroup(name string, done func(error)) {
	if _, others, _ := e.otherGroupMembers(name); len(others) > 0 {
		done(&wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "group " + name + " has members (" + others[0].Member + " through another listener)"})
		return
	}
	queued := e.queueGroups()
	gt := e.groups
	gt.mu.Lock()
	if gt.hasMembersLocked(name, queued) {
		gt.mu.Unlock()
		done(&wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "group " + name + " has members"})
		return
	}
	_, known := gt.groups[name]
	delete(gt.groups, name)
	if !known && !e.offsets.HasGroup(name) {
		gt.mu.Unlock()
		done(&wire.ProtocolError{Code: wire.CodeUnknownGroup, Message: name})
		return
	}
	e.offsets.DeleteGroups([]string{name}, done)
	gt.mu.Unlock()
	e.log.Info("consumer group deleted", "group", name)
}

// join adds s to its group as a new member reading topics (its topic, or a pattern's matches);
// clientID and addr name its client (SubscribeOptions). A pattern subscription joining a group whose
// members subscribe to another pattern or to named topics, or a named topic's joining a pattern
// group, is refused with CodeInvalidRequest (errGroupMix).
func (gt *groupTable) join(s *Subscription, clientID, addr string, topics []*Topic) error {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	g := gt.groups[s.spec.Group]
	if g == nil {
		g = &group{name: s.spec.Group}
		gt.groups[g.name] = g
	}
	pattern := ""
	if s.pattern {
		pattern = s.spec.Topic
	}
	if len(g.members) > 0 && g.pattern != pattern {
		return errGroupMix(g, pattern)
	}
	g.pattern = pattern
	g.joined++
	m := &groupMember{id: fmt.Sprintf("%s-%d", g.name, g.joined), sub: s, group: g, clientID: clientID, addr: addr,
		topics: slices.DeleteFunc(topics, func(t *Topic) bool { return t.deleted.Load() })}
	s.member = m
	g.members = append(g.members, m)
	gt.rebalanceLocked(g, m)
	return nil
}

// errGroupMix is join's refusal of a member subscribing otherwise than g's members do (pattern is
// the joining member's, "" for a named topic).
func errGroupMix(g *group, pattern string) error {
	var msg string
	switch {
	case g.pattern == "":
		msg = fmt.Sprintf("group %s reads topics by name: a member over the pattern %s cannot join it (a group is over one pattern or over named topics)", g.name, pattern)
	case pattern == "":
		msg = fmt.Sprintf("group %s reads the pattern %s: a member naming a topic cannot join it (a group is over one pattern or over named topics)", g.name, g.pattern)
	default:
		msg = fmt.Sprintf("group %s reads the pattern %s: a member over %s cannot join it (every member subscribes to the same pattern)", g.name, g.pattern, pattern)
	}
	return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: msg}
}

// addTopics adds topics (matching s's pattern, allowed by its mayTopic, not yet among its topics) to
// pattern member s's topics and rebalances its group. Deleted ones are left out: topicDeleted ran
// or will run after this, under gt.mu either way.
func (gt *groupTable) addTopics(s *Subscription, topics []*Topic) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	m := s.member
	if m == nil {
		return
	}
	n := len(m.topics)
	for _, t := range topics {
		if !t.deleted.Load() && !slices.Contains(m.topics, t) {
			m.topics = append(m.topics, t)
		}
	}
	if len(m.topics) > n {
		gt.rebalanceLocked(m.group, nil)
	}
}

func (gt *groupTable) leave(s *Subscription) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	m := s.member
	if m == nil {
		return
	}
	g := m.group
	g.members = slices.DeleteFunc(g.members, func(x *groupMember) bool { return x == m })
	s.member = nil
	for p, t := range m.revoking { // a member that left has nothing more to hand back
		t.Stop()
		delete(m.revoking, p)
	}
	gt.rebalanceLocked(g, nil)
}

// rebalanceLocked deals each topic's partitions over the members reading it (in join order; in a
// pattern group with one count running across the topics, in name order), takes from each member
// what it was not dealt (revokeLocked), and tells every member whose share changed (and joined, who
// must hear its first assignment even when empty).
func (gt *groupTable) rebalanceLocked(g *group, joined *groupMember) {
	g.generation++
	byTopic := map[*Topic][]*groupMember{}
	var topics []*Topic
	for _, m := range g.members {
		m.dealt = nil
		for _, t := range m.topics {
			if byTopic[t] == nil {
				topics = append(topics, t)
			}
			byTopic[t] = append(byTopic[t], m)
		}
	}
	slices.SortFunc(topics, func(a, b *Topic) int { return strings.Compare(a.cfg.Name, b.cfg.Name) })
	n := 0
	for _, t := range topics {
		members := byTopic[t]
		if g.pattern == "" {
			n = 0 // a group over named topics deals each topic from its first member
		}
		for p := range t.parts {
			m := members[n%len(members)]
			m.dealt = append(m.dealt, topicPart{t, int32(p)})
			n++
		}
	}
	for _, m := range g.members {
		for _, tp := range m.parts {
			if !slices.Contains(m.dealt, tp) && !tp.t.deleted.Load() { // a deleted topic's just go
				gt.revokeLocked(m, tp)
			}
		}
	}
	gt.handOverLocked(g, joined)
}

// revokeLocked marks partition tp, taken from m, as revoking until m hands it back or the revoke
// timeout passes; with a negative GroupRevokeTimeout it is handed over at once.
func (gt *groupTable) revokeLocked(m *groupMember, tp topicPart) {
	d := gt.e.opts.GroupRevokeTimeout
	if d < 0 {
		return
	}
	if m.revoking == nil {
		m.revoking = map[topicPart]*time.Timer{}
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		gt.mu.Lock()
		defer gt.mu.Unlock()
		if m.revoking[tp] != t {
			return // handed back already, or revoked again since
		}
		delete(m.revoking, tp)
		gt.e.log.Warn("consumer group member did not hand a partition back in time: handing it over",
			"group", m.group.name, "member", m.id, "topic", tp.t.cfg.Name, "partition", tp.p, "timeout", d)
		gt.handOverLocked(m.group, nil)
	})
	m.revoking[tp] = t
}

// handOverLocked gives every member of g its dealt partitions that no member still revokes, and
// takes away those it was not dealt, telling each member whose partitions changed (and joined).
func (gt *groupTable) handOverLocked(g *group, joined *groupMember) {
	held := map[topicPart]bool{}
	for _, m := range g.members {
		for tp := range m.revoking {
			held[tp] = true
		}
	}
	for _, m := range g.members {
		parts := make([]topicPart, 0, len(m.dealt))
		for _, tp := range m.dealt {
			if !held[tp] {
				parts = append(parts, tp)
			}
		}
		if slices.Equal(m.parts, parts) && m != joined {
			continue
		}
		m.parts = parts
		m.sub.owner.Reassign(m.sub)
	}
}

// handBack hears that partition p of topic, in group, was committed (or handed back with offset
// -1), durably: a member revoking it has handed it back, and the member dealt it gets it now,
// starting at that commit.
func (gt *groupTable) handBack(group string, t *Topic, p int32) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	g := gt.groups[group]
	if g == nil {
		return
	}
	released := false
	tp := topicPart{t, p}
	for _, m := range g.members {
		if tm := m.revoking[tp]; tm != nil {
			tm.Stop()
			delete(m.revoking, tp)
			released = true
		}
	}
	if released {
		gt.handOverLocked(g, nil)
	}
}

// handBackRevoked hands back every partition being revoked from s: an embedded member (Local) has
// stopped reading them once it applied the assignment that took them, and commits on its own.
func (gt *groupTable) handBackRevoked(s *Subscription) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	m := s.member
	if m == nil || len(m.revoking) == 0 {
		return
	}
	for tp, t := range m.revoking {
		t.Stop()
		delete(m.revoking, tp)
	}
	gt.handOverLocked(m.group, nil)
}

// topicDeleted tells every member subscribed to t that its assignment changed: applying it finds the
// topic deleted and ends the subscription. t.close wakes only members holding cursors; a member dealt
// no partition would otherwise stay in its group for as long as its connection. A pattern group's
// members drop t from their topics (with what they were revoking of it) and the group rebalances:
// the rest of the pattern goes on.
func (gt *groupTable) topicDeleted(t *Topic) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	for _, g := range gt.groups {
		changed := false
		for _, m := range g.members {
			if g.pattern == "" {
				if m.sub.topic == t {
					m.sub.owner.Reassign(m.sub)
				}
				continue
			}
			if i := slices.Index(m.topics, t); i >= 0 {
				m.topics = slices.Delete(m.topics, i, i+1)
				changed = true
			}
			for tp, tm := range m.revoking {
				if tp.t == t {
					tm.Stop()
					delete(m.revoking, tp)
				}
			}
		}
		if changed {
			gt.rebalanceLocked(g, nil)
		}
	}
}

// assignment returns the generation and the partitions currently assigned to s.
func (gt *groupTable) assignment(s *Subscription) (uint32, []topicPart) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	if s.member == nil {
		return 0, nil
	}
	return s.member.group.generation, slices.Clone(s.member.parts)
}

// ListGroups names every group with members or committed offsets, sorted.
func (e *Engine) ListGroups() []string {
	set := map[string]bool{}
	e.groups.mu.Lock()
	for name, g := range e.groups.groups {
		if len(g.members) > 0 {
			set[name] = true
		}
	}
	e.groups.mu.Unlock()
	for _, k := range e.offsets.Keys() {
		set[k.Group] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// DescribeGroup reports a group's members, their partitions and clients (SubscribeOptions; and the
// members other faces report, AddGroupSource), and its committed offsets with lag. A group with
// neither is CodeUnknownGroup (a *wire.ProtocolError).
func (e *Engine) DescribeGroup(name string) (wire.GroupInfo, error) {
	info := wire.GroupInfo{Name: name}
	e.groups.mu.Lock()
	if g := e.groups.groups[name]; g != nil {
		info.Generation = g.generation
		for _, m := range g.members {
			info.Members = appendMemberInfo(info.Members, m)
		}
	}
	e.groups.mu.Unlock()
	if gen, others, ok := e.otherGroupMembers(name); ok {
		info.Generation = max(info.Generation, uint32(max(gen, 0)))
		info.Members = append(info.Members, others...)
	}
	for _, k := range e.offsets.Keys() {
		if k.Group != name {
			continue
		}
		off, _ := e.offsets.Get(k.Group, k.Topic, k.Partition)
		end := int64(-1)
		if t := e.TopicByName(k.Topic); t != nil {
			if p := t.Partition(k.Partition); p != nil {
				end = p.NextOffset()
			}
		}
		info.Offsets = append(info.Offsets, wire.GroupOffset{Topic: k.Topic, Partition: k.Partition, Committed: off, End: end})
	}
	info.Offsets = e.appendUncommitted(info.Offsets, name)
	slices.SortFunc(info.Offsets, func(a, b wire.GroupOffset) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	if len(info.Members) == 0 && len(info.Offsets) == 0 {
		return info, &wire.ProtocolError{Code: wire.CodeUnknownGroup, Message: name}
	}
	return info, nil
}

// appendMemberInfo appends m's entries to a group description: one naming its topic and partitions;
// for a pattern member one per topic it holds partitions of, by name, or one naming its pattern when
// it holds none. Caller holds groupTable.mu.
func appendMemberInfo(dst []wire.GroupMember, m *groupMember) []wire.GroupMember {
	entry := func(topic string) wire.GroupMember {
		return wire.GroupMember{Member: m.id, Topic: topic, Partitions: []int32{}, ClientID: m.clientID, Addr: m.addr}
	}
	if !m.sub.pattern {
		e := entry(m.sub.topic.cfg.Name)
		for _, tp := range m.parts {
			e.Partitions = append(e.Partitions, tp.p)
		}
		return append(dst, e)
	}
	if len(m.parts) == 0 {
		return append(dst, entry(m.sub.spec.Topic))
	}
	for i, tp := range m.parts {
		if i == 0 || m.parts[i-1].t != tp.t {
			dst = append(dst, entry(tp.t.cfg.Name))
		}
		e := &dst[len(dst)-1]
		e.Partitions = append(e.Partitions, tp.p)
	}
	return dst
}

// CommitOffset stores group's committed offset for a partition of the topic now named topic: the
// next offset the group will read, at most the partition's end. done runs once the offset is durable
// (from the offset store's writer goroutine), or with the error that kept it from being so:
// CodeOffsetOutOfRange beyond the end, CodeUnknownTopic or CodeUnknownPartition.
func (e *Engine) CommitOffset(group, topic string, partition int32, offset int64, done func(error)) {
	t := e.TopicByName(topic)
	if t == nil {
		done(&wire.ProtocolError{Code: wire.CodeUnknownTopic, Message: topic})
		return
	}
	e.CommitTopicOffset(t, group, partition, offset, done)
}

// CommitTopicOffset is CommitOffset for one incarnation of a topic: a consumer of a topic that was
// deleted (and perhaps recreated under the same name since) is refused with CodeUnknownTopic, so its
// offsets never land on the new topic. The check and the store happen under the offset store's lock,
// which DeleteTopic takes after marking the topic deleted: a commit either lands before the delete
// removes the topic's offsets, or is refused.
//
// A commit for a partition being revoked from a member is that member's hand-back (groupTable): the
// partition goes to its new member once the commit is durable. HandBackOffset hands it back without
// storing an offset.
func (e *Engine) CommitTopicOffset(t *Topic, group string, partition int32, offset int64, done func(error)) {
	p := t.Partition(partition)
	switch {
	case group == "":
		done(&wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "commit without a group"})
		return
	case p == nil:
		done(wire.CodeUnknownPartition)
		return
	case offset == HandBackOffset:
		e.groups.handBack(group, t, partition)
		done(nil)
		return
	case offset < 0:
		done(&wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "negative offset"})
		return
	case offset > p.NextOffset():
		// An offset beyond the end would make the group skip records produced up to it.
		done(&wire.ProtocolError{Code: wire.CodeOffsetOutOfRange, Message: fmt.Sprintf(
			"commit %d beyond the end %d of %s partition %d", offset, p.NextOffset(), t.cfg.Name, partition)})
		return
	}
	e.offsets.commitLive(OffsetKey{Group: group, Topic: t.cfg.Name, Partition: partition}, offset, t.deleted.Load, func(err error) {
		if err == nil {
			e.groups.handBack(group, t, partition) // the offset is durable: its next member starts there
		}
		done(err)
	})
}

// HandBackOffset, committed, stores nothing: it tells the group that the member a partition was
// taken from has stopped reading it, and the partition may go to its new member at the offset
// already committed.
const HandBackOffset = -1

// CommittedOffset returns group's committed offset for a partition, or -1.
func (e *Engine) CommittedOffset(group, topic string, partition int32) int64 {
	if off, ok := e.offsets.Get(group, topic, partition); ok {
		return off
	}
	return -1
}
