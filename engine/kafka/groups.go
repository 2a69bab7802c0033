package kafka

import (
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// requestContext is what a group request carries besides its body: who sent it and from where.
type requestContext struct {
	Principal  string // authenticated principal; "" without authentication
	ClientID   string // the request header's client id
	ClientHost string // the peer's address, "ip:port"
}

// Kafka error codes the coordinator answers with (Kafka's protocol guide, "Error Codes"). They are
// frozen by Kafka: clients decide on retries by them.
const (
	gErrNone                      int16 = 0
	gErrUnknownServer             int16 = -1
	gErrOffsetOutOfRange          int16 = 1
	gErrUnknownTopicOrPartition   int16 = 3
	gErrCoordinatorNotAvailable   int16 = 15
	gErrIllegalGeneration         int16 = 22
	gErrInconsistentGroupProtocol int16 = 23
	gErrInvalidGroupID            int16 = 24
	gErrUnknownMemberID           int16 = 25
	gErrInvalidSessionTimeout     int16 = 26
	gErrRebalanceInProgress       int16 = 27
	gErrTopicAuthorization        int16 = 29
	gErrGroupAuthorization        int16 = 30
	gErrUnsupportedVersion        int16 = 35
	gErrInvalidRequest            int16 = 42
	gErrNonEmptyGroup             int16 = 68
	gErrGroupIDNotFound           int16 = 69
	gErrMemberIDRequired          int16 = 79
	gErrGroupMaxSizeReached       int16 = 81
	gErrFencedInstanceID          int16 = 82
)

// groupLimits bounds the coordinator and sets its timeouts. defaultGroupLimits holds the values
// the listener uses; tests lower them.
type groupLimits struct {
	// MaxGroups caps the groups with members (or members being admitted) at once; a JoinGroup
	// that would start one more is refused with GROUP_MAX_SIZE_REACHED. Groups known only from
	// their committed offsets do not count: they live in the engine's offset store.
	MaxGroups int
	// MaxMembers caps one group's members, admitted or being admitted (Kafka's
	// group.max.size); one more is refused with GROUP_MAX_SIZE_REACHED.
	MaxMembers int
	// MinSession and MaxSession bound a member's session timeout (Kafka's
	// group.min.session.timeout.ms and group.max.session.timeout.ms); outside them a JoinGroup is
	// refused with INVALID_SESSION_TIMEOUT.
	MinSession, MaxSession time.Duration
	// MaxRebalance caps a member's rebalance timeout: how long a rebalance waits for members to
	// join again, and then for the leader's assignment.
	MaxRebalance time.Duration
}

var defaultGroupLimits = groupLimits{
	MaxGroups:    10_000,
	MaxMembers:   1_000,
	MinSession:   6 * time.Second,
	MaxSession:   30 * time.Minute,
	MaxRebalance: 30 * time.Minute,
}

// coordinator is the group coordinator of Kafka's classic protocol (JoinGroup, SyncGroup,
// Heartbeat, LeaveGroup with client-side assignors), with offsets kept in the engine's durable
// offset store shared with native consumer groups.
//
// Membership is soft state held here, behind mu, never on an event loop: a request takes mu
// briefly and either answers at once or parks its respond callback on the member (a JoinGroup
// waiting for the rebalance, a SyncGroup waiting for the leader's assignment), to be answered by
// a later request or by a timer. Timers are time.AfterFunc callbacks that take mu; each checks
// that it is still the member's or group's current timer before acting. respond callbacks are
// collected under mu and called after it is released (replies.send).
//
// A group name used by native Sluice members (consumer-group subscriptions or work-queue members,
// engine.GroupHasMembers) is not joined and not committed to through Kafka: see docs/kafka.md,
// "Consumer groups".
type coordinator struct {
	e   *engine.Engine  // nil in tests of the membership state machine alone
	acl func() auth.ACL // the ACL in force (nil: ACLs off), read per request
	log *slog.Logger
	lim groupLimits // read-only after construction

	mu     sync.Mutex        // guards everything below and every group and member in groups
	groups map[string]*group // groups with members or members being admitted; an Empty group is dropped
	closed bool              // close ran: every request is answered COORDINATOR_NOT_AVAILABLE
}

func newCoordinator(e *engine.Engine, acl func() auth.ACL, log *slog.Logger) *coordinator {
	if acl == nil {
		acl = func() auth.ACL { return nil }
	}
	if log == nil {
		log = slog.Default()
	}
	return &coordinator{e: e, acl: acl, log: log, lim: defaultGroupLimits, groups: map[string]*group{}}
}

// groupMembers reports the coordinator's group name to the engine (Engine.AddGroupSource, so that
// `sluice group describe` lists Kafka members and deleting, seeking or resetting the group is
// refused while it has any): each member with the partitions of its last assignment, read as the
// "consumer" protocol's ConsumerMemberAssignment; a member of another protocol, or not yet
// assigned, is listed without partitions.
func (c *coordinator) groupMembers(name string) (int32, []wire.GroupMember, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[name]
	if g == nil || c.closed {
		return 0, nil, false
	}
	var out []wire.GroupMember
	for _, m := range g.orderedLocked() {
		var a kmsg.ConsumerMemberAssignment
		if g.protocolType == "consumer" && len(m.assignment) > 0 && a.ReadFrom(m.assignment) == nil && len(a.Topics) > 0 {
			for _, t := range a.Topics {
				out = append(out, wire.GroupMember{Member: m.id, Topic: t.Topic, Partitions: t.Partitions, ClientID: m.clientID, Addr: m.clientHost})
			}
			continue
		}
		out = append(out, wire.GroupMember{Member: m.id, ClientID: m.clientID, Addr: m.clientHost})
	}
	return g.generation, out, true
}

// handles reports whether key is an API the coordinator serves.
func (c *coordinator) handles(key int16) bool {
	switch kmsg.Key(key) {
	case kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.LeaveGroup,
		kmsg.OffsetCommit, kmsg.OffsetFetch,
		kmsg.DescribeGroups, kmsg.ListGroups, kmsg.DeleteGroups:
		return true
	}
	return false
}

// serve answers a group request (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
// OffsetFetch, DescribeGroups, ListGroups, DeleteGroups). It never blocks: respond is called
// exactly once, possibly later and from another goroutine (a JoinGroup waits for the rebalance,
// an OffsetCommit for the offset store's fdatasync). A request of any other kind is answered with
// its response kind carrying nothing.
func (c *coordinator) serve(rc requestContext, req kmsg.Request, respond func(kmsg.Response)) {
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		c.join(rc, r, respond)
	case *kmsg.SyncGroupRequest:
		c.sync(rc, r, respond)
	case *kmsg.HeartbeatRequest:
		respond(c.heartbeat(rc, r))
	case *kmsg.LeaveGroupRequest:
		respond(c.leave(rc, r))
	case *kmsg.OffsetCommitRequest:
		c.offsetCommit(rc, r, respond)
	case *kmsg.OffsetFetchRequest:
		respond(c.offsetFetch(rc, r))
	case *kmsg.DescribeGroupsRequest:
		respond(c.describeGroups(rc, r))
	case *kmsg.ListGroupsRequest:
		respond(c.listGroups(rc, r))
	case *kmsg.DeleteGroupsRequest:
		c.deleteGroups(rc, r, respond)
	default:
		respond(req.ResponseKind())
	}
}

// close ends every pending request and timer: parked JoinGroup and SyncGroup requests are
// answered COORDINATOR_NOT_AVAILABLE, and so is every request after. Safe to call twice.
func (c *coordinator) close() {
	var out replies
	c.mu.Lock()
	c.closed = true
	for name, g := range c.groups {
		g.stopTimersLocked()
		for _, m := range g.members {
			m.stopSessionLocked()
			out.failJoinLocked(m, gErrCoordinatorNotAvailable)
			out.failSyncLocked(m, gErrCoordinatorNotAvailable)
		}
		for _, p := range g.pending {
			p.timer.Stop()
		}
		delete(c.groups, name)
	}
	c.mu.Unlock()
	out.send()
}

// nativeMembers reports whether native Sluice members use the group name. It takes the engine's
// group locks: call it without c.mu.
func (c *coordinator) nativeMembers(name string) bool {
	return c.e != nil && c.e.GroupHasMembers(name)
}

// mayGroup reports whether rc's principal may use the group name (join, commit, fetch, describe).
func (c *coordinator) mayGroup(rc requestContext, name string) bool {
	return auth.MayGroup(c.acl(), rc.Principal, auth.ActConsume, name)
}

// replies collects responses decided under c.mu, to be sent after it is released.
type replies []func()

func (out *replies) add(respond func(kmsg.Response), resp kmsg.Response) {
	*out = append(*out, func() { respond(resp) })
}

// send calls every collected respond. Call it without c.mu.
func (out replies) send() {
	for _, f := range out {
		f()
	}
}
