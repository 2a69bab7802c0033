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
}

type groupMember struct {
	id    string
	sub   *Subscription
	group *group
	// clientID and addr name the member's client for DescribeGroup (SubscribeOptions); immutable.
	clientID, addr string
	// All below guarded by groupTable.mu.
	//
	// dealt is the member's share of sub's topic from the last deal, ascending. parts is what it
	// has been told it holds, ascending: dealt less the partitions another member still revokes.
	// revoking holds the partitions taken from it and not yet handed back, each with the timer that
	// gives it up after GroupRevokeTimeout; no partition is in parts and in any member's revoking.
	dealt    []int32
	parts    []int32
	revoking map[int32]*time.Timer
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
// with members (consumer-group or work-queue subscriptions) is refused with CodeInvalidRequest; an
// unknown group with CodeUnknownGroup. done runs once the deletion is durable, or with the error
// that kept it from being so.
func (e *Engine) DeleteGroup(name string, done func(error)) {
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

// join adds s to its group as a new member; clientID and addr name its client (SubscribeOptions).
func (gt *groupTable) join(s *Subscription, clientID, addr string) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	g := gt.groups[s.spec.Group]
	if g == nil {
		g = &group{name: s.spec.Group}
		gt.groups[g.name] = g
	}
	g.joined++
	m := &groupMember{id: fmt.Sprintf("%s-%d", g.name, g.joined), sub: s, group: g, clientID: clientID, addr: addr}
	s.member = m
	g.members = append(g.members, m)
	gt.rebalanceLocked(g, m)
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

// rebalanceLocked deals each topic's partitions over its members, takes from each member what it
// was not dealt (revokeLocked), and tells every member whose share changed (and joined, who must
// hear its first assignment even when empty).
func (gt *groupTable) rebalanceLocked(g *group, joined *groupMember) {
	g.generation++
	byTopic := map[*Topic][]*groupMember{}
	for _, m := range g.members {
		byTopic[m.sub.topic] = append(byTopic[m.sub.topic], m)
	}
	for t, members := range byTopic {
		shares := make([][]int32, len(members))
		for p := range t.parts {
			i := p % len(members)
			shares[i] = append(shares[i], int32(p))
		}
		for i, m := range members {
			m.dealt = shares[i]
			for _, p := range m.parts {
				if !slices.Contains(m.dealt, p) {
					gt.revokeLocked(m, p)
				}
			}
		}
	}
	gt.handOverLocked(g, joined)
}

// revokeLocked marks partition p, taken from m, as revoking until m hands it back or the revoke
// timeout passes; with a negative GroupRevokeTimeout it is handed over at once.
func (gt *groupTable) revokeLocked(m *groupMember, p int32) {
	d := gt.e.opts.GroupRevokeTimeout
	if d < 0 {
		return
	}
	if m.revoking == nil {
		m.revoking = map[int32]*time.Timer{}
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		gt.mu.Lock()
		defer gt.mu.Unlock()
		if m.revoking[p] != t {
			return // handed back already, or revoked again since
		}
		delete(m.revoking, p)
		gt.e.log.Warn("consumer group member did not hand a partition back in time: handing it over",
			"group", m.group.name, "member", m.id, "topic", m.sub.topic.cfg.Name, "partition", p, "timeout", d)
		gt.handOverLocked(m.group, nil)
	})
	m.revoking[p] = t
}

// handOverLocked gives every member of g its dealt partitions that no member still revokes, and
// takes away those it was not dealt, telling each member whose partitions changed (and joined).
func (gt *groupTable) handOverLocked(g *group, joined *groupMember) {
	type key struct {
		t *Topic
		p int32
	}
	held := map[key]bool{}
	for _, m := range g.members {
		for p := range m.revoking {
			held[key{m.sub.topic, p}] = true
		}
	}
	for _, m := range g.members {
		parts := make([]int32, 0, len(m.dealt))
		for _, p := range m.dealt {
			if !held[key{m.sub.topic, p}] {
				parts = append(parts, p)
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
	for _, m := range g.members {
		if tm := m.revoking[p]; tm != nil && m.sub.topic == t {
			tm.Stop()
			delete(m.revoking, p)
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
	for p, t := range m.revoking {
		t.Stop()
		delete(m.revoking, p)
	}
	gt.handOverLocked(m.group, nil)
}

// topicDeleted tells every member subscribed to t that its assignment changed: applying it finds the
// topic deleted and ends the subscription. t.close wakes only members holding cursors; a member dealt
// no partition would otherwise stay in its group for as long as its connection.
func (gt *groupTable) topicDeleted(t *Topic) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	for _, g := range gt.groups {
		for _, m := range g.members {
			if m.sub.topic == t {
				m.sub.owner.Reassign(m.sub)
			}
		}
	}
}

// assignment returns the generation and the partitions currently assigned to s.
func (gt *groupTable) assignment(s *Subscription) (uint32, []int32) {
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

// DescribeGroup reports a group's members, their partitions and clients (SubscribeOptions), and its
// committed offsets with lag. A group with neither is CodeUnknownGroup (a *wire.ProtocolError).
func (e *Engine) DescribeGroup(name string) (wire.GroupInfo, error) {
	info := wire.GroupInfo{Name: name}
	e.groups.mu.Lock()
	if g := e.groups.groups[name]; g != nil {
		info.Generation = g.generation
		for _, m := range g.members {
			info.Members = append(info.Members, wire.GroupMember{Member: m.id, Topic: m.sub.topic.cfg.Name, Partitions: slices.Clone(m.parts),
				ClientID: m.clientID, Addr: m.addr})
		}
	}
	e.groups.mu.Unlock()
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
