package kafka

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"net"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupState is a group's state in Kafka's classic protocol:
//
//	Empty ──join──► PreparingRebalance ──every member joined, or rebalance timeout──► CompletingRebalance
//	                  ▲       │ no member left: Empty                                      │ leader's SyncGroup
//	                  │       ▼                                                            ▼
//	                  └── a member joins, leaves, changes its protocols, or times out ── Stable
//
// A group with no members and none being admitted is dropped from the coordinator (its offsets stay
// in the engine's store), so Empty is what describes a group known only from its offsets, and Dead
// one the broker knows nothing of.
type groupState uint8

const (
	stateEmpty groupState = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
	stateDead
)

func (s groupState) String() string {
	switch s {
	case statePreparingRebalance:
		return "PreparingRebalance"
	case stateCompletingRebalance:
		return "CompletingRebalance"
	case stateStable:
		return "Stable"
	case stateDead:
		return "Dead"
	}
	return "Empty"
}

// group is one Kafka consumer group's membership. Every field is guarded by coordinator.mu.
type group struct {
	name       string
	state      groupState
	generation int32 // advanced by every completed rebalance, and when the group empties

	protocolType string // the members' protocol type ("consumer"); fixed while the group has members
	protocol     string // the assignor chosen at the last completed rebalance; "" while Empty
	leader       string // the member id that assigns; "" while Empty

	members map[string]*member        // admitted members by id
	pending map[string]*pendingMember // ids handed out with MEMBER_ID_REQUIRED, not yet used to join
	static  map[string]string         // group.instance.id -> the member id that holds it
	joined  uint64                    // members ever admitted: orders members by arrival

	// timer is the rebalance timer (PreparingRebalance: members not rejoined by then are dropped)
	// or the sync timer (CompletingRebalance: members not synced by then are dropped), nil in
	// other states. A firing timer acts only if it is still g.timer.
	timer *time.Timer
}

// member is one admitted member. Every field is guarded by coordinator.mu.
type member struct {
	id         string
	instanceID *string // group.instance.id of a static member; nil for a dynamic one
	clientID   string
	clientHost string
	seq        uint64 // arrival order in the group

	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol // preference order, as joined
	assignment       []byte                          // from the leader's last SyncGroup

	// join is the member's parked JoinGroup (PreparingRebalance), answered when the rebalance
	// completes; sync its parked SyncGroup (CompletingRebalance), answered with the leader's
	// assignment. Each is nil when nothing is parked.
	join *parked
	sync *parked

	// session expires the member unless it is heard from (heartbeat, commit, sync) within
	// sessionTimeout; nil while its JoinGroup is parked. A firing timer acts only if it is still
	// m.session.
	session *time.Timer
}

// parked is a request waiting for the group: its version and where its answer goes.
type parked struct {
	version int16
	respond func(kmsg.Response)
}

// pendingMember is a member id handed out with MEMBER_ID_REQUIRED: the client joins again with it
// within its session timeout, or the id is forgotten.
type pendingMember struct {
	id    string
	timer *time.Timer
}

// newMemberID returns prefix-<32 hex digits>, as Kafka names members (client id, or instance id
// for a static member, then a random UUID).
func newMemberID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return prefix + "-" + hex.EncodeToString(b[:])
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return "/" + h
	}
	return addr
}

// join serves a JoinGroup: a new member is admitted (after MEMBER_ID_REQUIRED on v4+, for a
// dynamic member) and its request parked until the rebalance completes.
func (c *coordinator) join(rc requestContext, req *kmsg.JoinGroupRequest, respond func(kmsg.Response)) {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	fail := func(code int16) {
		resp.ErrorCode = code
		respond(resp)
	}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	rebalance := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if req.Version == 0 || rebalance <= 0 {
		rebalance = session // v0 has no rebalance timeout: the session timeout serves
	}
	rebalance = min(rebalance, c.lim.MaxRebalance)
	switch {
	case req.Group == "":
		fail(gErrInvalidGroupID)
		return
	case !c.mayGroup(rc, req.Group):
		fail(gErrGroupAuthorization)
		return
	case session < c.lim.MinSession || session > c.lim.MaxSession:
		fail(gErrInvalidSessionTimeout)
		return
	case req.ProtocolType == "" || len(req.Protocols) == 0:
		fail(gErrInconsistentGroupProtocol)
		return
	case c.nativeMembers(req.Group):
		// Native Sluice members use this name: a Kafka group beside them would commit over
		// their offsets. Kafka answers this code to a member of another protocol type.
		fail(gErrInconsistentGroupProtocol)
		return
	}

	var out replies
	defer func() { out.send() }() // after c.mu is released: a deferred call evaluates its receiver at once
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		fail(gErrCoordinatorNotAvailable)
		return
	}
	g := c.groups[req.Group]
	if g == nil {
		if req.MemberID != "" {
			fail(gErrUnknownMemberID)
			return
		}
		if len(c.groups) >= c.lim.MaxGroups {
			c.log.Warn("kafka group refused: the coordinator's group cap is reached", "group", req.Group, "cap", c.lim.MaxGroups)
			fail(gErrGroupMaxSizeReached)
			return
		}
		g = &group{name: req.Group, members: map[string]*member{}, pending: map[string]*pendingMember{}, static: map[string]string{}}
		c.groups[g.name] = g
		defer c.dropIfEmptyLocked(g) // a refused first member leaves no group behind
	}
	if len(g.members) > 0 && !g.supportsLocked(req.ProtocolType, req.Protocols, req.MemberID) {
		fail(gErrInconsistentGroupProtocol)
		return
	}

	if req.MemberID == "" {
		if req.InstanceID != nil {
			if old := g.members[g.static[*req.InstanceID]]; old != nil {
				c.replaceStaticLocked(g, old, rc, req, session, rebalance, respond, &out)
				return
			}
		}
		if len(g.members)+len(g.pending) >= c.lim.MaxMembers {
			fail(gErrGroupMaxSizeReached)
			return
		}
		prefix := rc.ClientID
		if req.InstanceID != nil {
			prefix = *req.InstanceID
		}
		id := newMemberID(prefix)
		if req.Version >= 4 && req.InstanceID == nil {
			// Kafka's two-step join: the member learns its id first and joins with it, so a
			// client that times out and retries never leaves a ghost member behind.
			c.addPendingLocked(g, id, session)
			resp.MemberID = id
			fail(gErrMemberIDRequired)
			return
		}
		m := c.newMemberLocked(g, id, rc, req, session, rebalance)
		m.join = &parked{version: req.Version, respond: respond}
		c.prepareRebalanceLocked(g, &out)
		c.maybeCompleteJoinLocked(g, &out)
		return
	}

	if req.InstanceID != nil && g.static[*req.InstanceID] != req.MemberID {
		if _, ok := g.static[*req.InstanceID]; ok {
			fail(gErrFencedInstanceID)
		} else {
			fail(gErrUnknownMemberID)
		}
		return
	}
	if p := g.pending[req.MemberID]; p != nil {
		p.timer.Stop()
		delete(g.pending, p.id)
		m := c.newMemberLocked(g, p.id, rc, req, session, rebalance)
		m.join = &parked{version: req.Version, respond: respond}
		c.prepareRebalanceLocked(g, &out)
		c.maybeCompleteJoinLocked(g, &out)
		return
	}
	m := g.members[req.MemberID]
	if m == nil {
		fail(gErrUnknownMemberID)
		return
	}
	same := m.sameJoinLocked(req)
	m.sessionTimeout, m.rebalanceTimeout = session, rebalance
	m.protocolType, m.protocols = req.ProtocolType, cloneProtocols(req.Protocols)
	switch {
	case g.state == stateCompletingRebalance && same,
		g.state == stateStable && same && m.id != g.leader:
		// Nothing changed: the member missed the JoinGroup response, or rejoins for nothing.
		c.touchLocked(g, m)
		out.add(respond, g.joinResponseLocked(req.Version, m))
		return
	}
	if m.join != nil {
		out.failJoinLocked(m, gErrRebalanceInProgress) // a second JoinGroup replaces the first
	}
	m.stopSessionLocked()
	m.join = &parked{version: req.Version, respond: respond}
	c.prepareRebalanceLocked(g, &out)
	c.maybeCompleteJoinLocked(g, &out)
}

// replaceStaticLocked admits a static member joining again without a member id under the instance
// id old holds: old is fenced (its parked requests answered FENCED_INSTANCE_ID, its later ones
// refused so), and the new member takes its place and last assignment, then the group rebalances.
func (c *coordinator) replaceStaticLocked(g *group, old *member, rc requestContext, req *kmsg.JoinGroupRequest,
	session, rebalance time.Duration, respond func(kmsg.Response), out *replies) {
	out.failJoinLocked(old, gErrFencedInstanceID)
	out.failSyncLocked(old, gErrFencedInstanceID)
	old.stopSessionLocked()
	delete(g.members, old.id)
	m := c.newMemberLocked(g, newMemberID(*req.InstanceID), rc, req, session, rebalance)
	m.assignment = old.assignment
	if g.leader == old.id {
		g.leader = m.id
	}
	m.join = &parked{version: req.Version, respond: respond}
	c.prepareRebalanceLocked(g, out)
	c.maybeCompleteJoinLocked(g, out)
}

// newMemberLocked admits a member to g.
func (c *coordinator) newMemberLocked(g *group, id string, rc requestContext, req *kmsg.JoinGroupRequest, session, rebalance time.Duration) *member {
	g.joined++
	m := &member{id: id, instanceID: req.InstanceID, clientID: rc.ClientID, clientHost: hostOf(rc.ClientHost), seq: g.joined,
		sessionTimeout: session, rebalanceTimeout: rebalance, protocolType: req.ProtocolType, protocols: cloneProtocols(req.Protocols)}
	if req.InstanceID != nil {
		id := *req.InstanceID
		m.instanceID = &id
		g.static[id] = m.id
	}
	g.members[m.id] = m
	if len(g.members) == 1 {
		g.protocolType = req.ProtocolType
	}
	return m
}

// addPendingLocked remembers a member id handed out with MEMBER_ID_REQUIRED for one session timeout.
func (c *coordinator) addPendingLocked(g *group, id string, session time.Duration) {
	p := &pendingMember{id: id}
	p.timer = time.AfterFunc(session, func() {
		var out replies
		c.mu.Lock()
		if g.pending[id] == p && !c.closed {
			delete(g.pending, id)
			c.maybeCompleteJoinLocked(g, &out)
			c.dropIfEmptyLocked(g)
		}
		c.mu.Unlock()
		out.send()
	})
	g.pending[id] = p
}

func cloneProtocols(ps []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := make([]kmsg.JoinGroupRequestProtocol, len(ps))
	for i, p := range ps {
		out[i] = kmsg.JoinGroupRequestProtocol{Name: p.Name, Metadata: slices.Clone(p.Metadata)}
	}
	return out
}

// sameJoinLocked reports whether req asks for what m already has: the same protocols and metadata.
func (m *member) sameJoinLocked(req *kmsg.JoinGroupRequest) bool {
	if m.protocolType != req.ProtocolType || len(m.protocols) != len(req.Protocols) {
		return false
	}
	for i, p := range req.Protocols {
		if m.protocols[i].Name != p.Name || string(m.protocols[i].Metadata) != string(p.Metadata) {
			return false
		}
	}
	return true
}

// supportsLocked reports whether a member joining with protocolType and protocols can be in g: the same
// protocol type, and at least one protocol every other member (all but except) supports.
func (g *group) supportsLocked(protocolType string, protocols []kmsg.JoinGroupRequestProtocol, except string) bool {
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		all := true
		for _, m := range g.members {
			if m.id != except && !slices.ContainsFunc(m.protocols, func(q kmsg.JoinGroupRequestProtocol) bool { return q.Name == p.Name }) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// prepareRebalanceLocked moves g to PreparingRebalance (from any state but PreparingRebalance):
// parked SyncGroups are answered REBALANCE_IN_PROGRESS, and the rebalance timer gives the members
// the longest of their rebalance timeouts to join again.
func (c *coordinator) prepareRebalanceLocked(g *group, out *replies) {
	if g.state == statePreparingRebalance {
		return
	}
	for _, m := range g.members {
		if m.sync != nil {
			out.failSyncLocked(m, gErrRebalanceInProgress)
			c.touchLocked(g, m) // its session runs again from the answer that tells it to rejoin
		}
	}
	g.state = statePreparingRebalance
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	c.setGroupTimerLocked(g, d, func(out *replies) { c.completeJoinLocked(g, out) })
}

// setGroupTimerLocked replaces g's timer with one that runs fn under c.mu after d, if still
// current, and sends the replies fn collects once c.mu is released.
func (c *coordinator) setGroupTimerLocked(g *group, d time.Duration, fn func(out *replies)) {
	g.stopTimersLocked()
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		var out replies
		c.mu.Lock()
		if g.timer == t && !c.closed {
			g.timer = nil
			fn(&out)
		}
		c.mu.Unlock()
		out.send()
	})
	g.timer = t
}

// stopTimersLocked stops g's rebalance or sync timer.
func (g *group) stopTimersLocked() {
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
}

// maybeCompleteJoinLocked completes g's rebalance if every member has joined again and no member
// id handed out is still waiting to be used.
func (c *coordinator) maybeCompleteJoinLocked(g *group, out *replies) {
	if g.state != statePreparingRebalance || len(g.pending) > 0 {
		return
	}
	for _, m := range g.members {
		if m.join == nil {
			return
		}
	}
	c.completeJoinLocked(g, out)
}

// completeJoinLocked ends g's PreparingRebalance: members that did not join again are dropped, the
// generation advances, the protocol most members prefer among those all support is chosen, and
// every member's JoinGroup is answered (the leader's with every member's metadata). Then g waits in
// CompletingRebalance for the leader's SyncGroup.
func (c *coordinator) completeJoinLocked(g *group, out *replies) {
	for _, m := range g.members {
		if m.join == nil {
			c.removeMemberLocked(g, m, out)
		}
	}
	for id, p := range g.pending { // a rebalance timeout ends the wait for them too
		p.timer.Stop()
		delete(g.pending, id)
	}
	g.stopTimersLocked()
	g.generation++
	if len(g.members) == 0 {
		g.state, g.protocol, g.leader = stateEmpty, "", ""
		c.dropIfEmptyLocked(g)
		return
	}
	g.protocol = g.electProtocolLocked()
	if g.members[g.leader] == nil {
		g.leader = g.orderedLocked()[0].id
	}
	g.state = stateCompletingRebalance
	var d time.Duration
	for _, m := range g.orderedLocked() {
		out.add(m.join.respond, g.joinResponseLocked(m.join.version, m))
		m.join = nil
		c.touchLocked(g, m)
		d = max(d, m.rebalanceTimeout)
	}
	gen := g.generation
	c.setGroupTimerLocked(g, d, func(out *replies) {
		// The leader's assignment did not come: drop the members that have not synced, as
		// Kafka does, and rebalance those that have.
		if g.state != stateCompletingRebalance || g.generation != gen {
			return
		}
		for _, m := range g.members {
			if m.sync == nil {
				c.removeMemberLocked(g, m, out)
			}
		}
		c.prepareRebalanceLocked(g, out)
		c.maybeCompleteJoinLocked(g, out)
		c.dropIfEmptyLocked(g)
	})
}

// electProtocolLocked returns the protocol every member supports that most members list first among
// those; ties go to the leader's (or first member's) preference.
func (g *group) electProtocolLocked() string {
	ms := g.orderedLocked()
	if l := g.members[g.leader]; l != nil {
		ms = append([]*member{l}, slices.DeleteFunc(ms, func(m *member) bool { return m == l })...)
	}
	var candidates []string
	for _, p := range ms[0].protocols {
		all := true
		for _, m := range ms[1:] {
			if !slices.ContainsFunc(m.protocols, func(q kmsg.JoinGroupRequestProtocol) bool { return q.Name == p.Name }) {
				all = false
				break
			}
		}
		if all {
			candidates = append(candidates, p.Name)
		}
	}
	votes := map[string]int{}
	for _, m := range ms {
		for _, p := range m.protocols {
			if slices.Contains(candidates, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for _, name := range candidates { // in the first member's preference order: ties go to it
		if best == "" || votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

// orderedLocked returns g's members by arrival.
func (g *group) orderedLocked() []*member {
	ms := make([]*member, 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *member) int { return cmp.Compare(a.seq, b.seq) })
	return ms
}

// joinResponseLocked is the JoinGroup answer for m at g's current generation: the leader gets every
// member's metadata for the chosen protocol.
func (g *group) joinResponseLocked(version int16, m *member) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Version = version
	resp.Generation = g.generation
	resp.ProtocolType = kmsg.StringPtr(g.protocolType)
	resp.Protocol = kmsg.StringPtr(g.protocol)
	resp.LeaderID = g.leader
	resp.MemberID = m.id
	if m.id == g.leader {
		for _, o := range g.orderedLocked() {
			rm := kmsg.NewJoinGroupResponseMember()
			rm.MemberID = o.id
			rm.InstanceID = o.instanceID
			for _, p := range o.protocols {
				if p.Name == g.protocol {
					rm.ProtocolMetadata = p.Metadata
					break
				}
			}
			resp.Members = append(resp.Members, rm)
		}
	}
	return resp
}

// touchLocked restarts m's session timer: it is dropped unless heard from within its session
// timeout, or waiting for the group (a parked JoinGroup or SyncGroup), as Kafka's
// hasSatisfiedHeartbeat.
func (c *coordinator) touchLocked(g *group, m *member) {
	m.stopSessionLocked()
	if m.join != nil {
		return // a member waiting for the rebalance is timed by the rebalance
	}
	var t *time.Timer
	t = time.AfterFunc(m.sessionTimeout, func() {
		var out replies
		c.mu.Lock()
		switch {
		case m.session != t || g.members[m.id] != m || c.closed:
		case m.sync != nil:
			c.touchLocked(g, m) // waiting for the leader's assignment, as Kafka: not expired
		default:
			m.session = nil
			c.log.Info("kafka group member expired: no heartbeat within its session timeout",
				"group", g.name, "member", m.id, "timeout", m.sessionTimeout)
			c.memberGoneLocked(g, m, &out)
		}
		c.mu.Unlock()
		out.send()
	})
	m.session = t
}

// stopSessionLocked stops m's session timer, if running.
func (m *member) stopSessionLocked() {
	if m.session != nil {
		m.session.Stop()
		m.session = nil
	}
}

// removeMemberLocked drops m from g, answering its parked requests UNKNOWN_MEMBER_ID; the caller
// rebalances.
func (c *coordinator) removeMemberLocked(g *group, m *member, out *replies) {
	m.stopSessionLocked()
	out.failJoinLocked(m, gErrUnknownMemberID)
	out.failSyncLocked(m, gErrUnknownMemberID)
	delete(g.members, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
}

// memberGoneLocked drops m (it left or expired) and rebalances the rest.
func (c *coordinator) memberGoneLocked(g *group, m *member, out *replies) {
	c.removeMemberLocked(g, m, out)
	switch g.state {
	case stateCompletingRebalance, stateStable:
		c.prepareRebalanceLocked(g, out)
	}
	c.maybeCompleteJoinLocked(g, out)
	c.dropIfEmptyLocked(g)
}

// dropIfEmptyLocked forgets g once it has no members and none being admitted (it is Empty).
func (c *coordinator) dropIfEmptyLocked(g *group) {
	if len(g.members) == 0 && len(g.pending) == 0 && c.groups[g.name] == g {
		g.stopTimersLocked()
		g.state = stateEmpty
		delete(c.groups, g.name)
	}
}

// failJoinLocked answers m's parked JoinGroup, if any, with code.
func (out *replies) failJoinLocked(m *member, code int16) {
	if m.join == nil {
		return
	}
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Version = m.join.version
	resp.ErrorCode = code
	resp.MemberID = m.id
	out.add(m.join.respond, resp)
	m.join = nil
}

// failSyncLocked answers m's parked SyncGroup, if any, with code.
func (out *replies) failSyncLocked(m *member, code int16) {
	if m.sync == nil {
		return
	}
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.Version = m.sync.version
	resp.ErrorCode = code
	out.add(m.sync.respond, resp)
	m.sync = nil
}

// checkMemberLocked validates a request from member id of group g at generation gen (with
// instance, for a static member): FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION.
func checkMemberLocked(g *group, id string, instance *string, gen int32) (*member, int16) {
	if g == nil {
		return nil, gErrUnknownMemberID
	}
	if instance != nil {
		holder, ok := g.static[*instance]
		switch {
		case !ok:
			return nil, gErrUnknownMemberID
		case holder != id:
			return nil, gErrFencedInstanceID
		}
	}
	m := g.members[id]
	if m == nil {
		return nil, gErrUnknownMemberID
	}
	if gen != g.generation {
		return m, gErrIllegalGeneration
	}
	return m, gErrNone
}

// sync serves a SyncGroup: the leader's carries every member's assignment and makes the group
// Stable; the others are parked until it comes.
func (c *coordinator) sync(rc requestContext, req *kmsg.SyncGroupRequest, respond func(kmsg.Response)) {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	fail := func(code int16) {
		resp.ErrorCode = code
		respond(resp)
	}
	switch {
	case req.Group == "":
		fail(gErrInvalidGroupID)
		return
	case !c.mayGroup(rc, req.Group):
		fail(gErrGroupAuthorization)
		return
	}
	var out replies
	defer func() { out.send() }() // after c.mu is released: a deferred call evaluates its receiver at once
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		fail(gErrCoordinatorNotAvailable)
		return
	}
	g := c.groups[req.Group]
	m, code := checkMemberLocked(g, req.MemberID, req.InstanceID, req.Generation)
	switch {
	case code != gErrNone:
		fail(code)
		return
	case req.ProtocolType != nil && *req.ProtocolType != g.protocolType,
		req.Protocol != nil && *req.Protocol != g.protocol:
		fail(gErrInconsistentGroupProtocol)
		return
	}
	switch g.state {
	case statePreparingRebalance:
		fail(gErrRebalanceInProgress)
	case stateStable:
		c.touchLocked(g, m)
		out.add(respond, g.syncResponseLocked(req.Version, m))
	case stateCompletingRebalance:
		c.touchLocked(g, m)
		out.failSyncLocked(m, gErrRebalanceInProgress) // a second SyncGroup replaces the first
		m.sync = &parked{version: req.Version, respond: respond}
		if m.id != g.leader {
			return
		}
		for _, a := range req.GroupAssignment {
			if am := g.members[a.MemberID]; am != nil {
				am.assignment = slices.Clone(a.MemberAssignment)
			}
		}
		for _, am := range g.members {
			if !slices.ContainsFunc(req.GroupAssignment, func(a kmsg.SyncGroupRequestGroupAssignment) bool { return a.MemberID == am.id }) {
				am.assignment = nil // the leader gave it nothing
			}
		}
		g.stopTimersLocked()
		g.state = stateStable
		for _, am := range g.members {
			if am.sync != nil {
				out.add(am.sync.respond, g.syncResponseLocked(am.sync.version, am))
				am.sync = nil
			}
		}
	default:
		fail(gErrUnknownMemberID)
	}
}

// syncResponseLocked is the SyncGroup answer for m: its assignment from the leader (empty if none).
func (g *group) syncResponseLocked(version int16, m *member) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.Version = version
	resp.ProtocolType = kmsg.StringPtr(g.protocolType)
	resp.Protocol = kmsg.StringPtr(g.protocol)
	resp.MemberAssignment = m.assignment
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
	return resp
}

// heartbeat serves a Heartbeat: it keeps the member's session, and tells it of a rebalance.
func (c *coordinator) heartbeat(rc requestContext, req *kmsg.HeartbeatRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	switch {
	case req.Group == "":
		resp.ErrorCode = gErrInvalidGroupID
		return resp
	case !c.mayGroup(rc, req.Group):
		resp.ErrorCode = gErrGroupAuthorization
		return resp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		resp.ErrorCode = gErrCoordinatorNotAvailable
		return resp
	}
	g := c.groups[req.Group]
	m, code := checkMemberLocked(g, req.MemberID, req.InstanceID, req.Generation)
	if code != gErrNone {
		resp.ErrorCode = code
		return resp
	}
	c.touchLocked(g, m)
	if g.state == statePreparingRebalance {
		resp.ErrorCode = gErrRebalanceInProgress
	}
	return resp
}

// leave serves a LeaveGroup: each member named (by member id, or by instance id from v3) leaves,
// and the group rebalances.
func (c *coordinator) leave(rc requestContext, req *kmsg.LeaveGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	switch {
	case req.Group == "":
		resp.ErrorCode = gErrInvalidGroupID
		return resp
	case !c.mayGroup(rc, req.Group):
		resp.ErrorCode = gErrGroupAuthorization
		return resp
	}
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	var out replies
	defer func() { out.send() }() // after c.mu is released: a deferred call evaluates its receiver at once
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		resp.ErrorCode = gErrCoordinatorNotAvailable
		return resp
	}
	g := c.groups[req.Group]
	for _, lm := range leaving {
		r := kmsg.NewLeaveGroupResponseMember()
		r.MemberID, r.InstanceID = lm.MemberID, lm.InstanceID
		r.ErrorCode = c.leaveOneLocked(g, lm, &out)
		resp.Members = append(resp.Members, r)
	}
	if req.Version < 3 {
		resp.ErrorCode = resp.Members[0].ErrorCode
		resp.Members = nil
	}
	return resp
}

func (c *coordinator) leaveOneLocked(g *group, lm kmsg.LeaveGroupRequestMember, out *replies) int16 {
	if g == nil {
		return gErrUnknownMemberID
	}
	id := lm.MemberID
	if lm.InstanceID != nil {
		holder, ok := g.static[*lm.InstanceID]
		switch {
		case !ok:
			return gErrUnknownMemberID
		case id != "" && id != holder:
			return gErrFencedInstanceID
		}
		id = holder
	}
	if p := g.pending[id]; p != nil {
		p.timer.Stop()
		delete(g.pending, id)
		c.maybeCompleteJoinLocked(g, out)
		c.dropIfEmptyLocked(g)
		return gErrNone
	}
	m := g.members[id]
	if m == nil {
		return gErrUnknownMemberID
	}
	c.memberGoneLocked(g, m, out)
	return gErrNone
}
