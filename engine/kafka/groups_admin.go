package kafka

import (
	"slices"
	"strings"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine/auth"
)

// nativeProtocolType is the protocol type DescribeGroups and ListGroups show for a group whose
// members are native Sluice consumers: Kafka tools then leave its members' (empty) metadata alone.
const nativeProtocolType = "sluice"

// Kafka's ACL operation bits (AclOperation codes) a DescribeGroups v3+ reports as authorized.
const (
	aclOpRead     = 3
	aclOpDelete   = 6
	aclOpDescribe = 8
)

// describeGroups serves a DescribeGroups: a Kafka group's state, protocol and members (with their
// metadata and, once Stable, assignment); a group known only from its committed offsets is Empty;
// a group of native Sluice members is Stable with protocol type "sluice" and its members' ids; any
// other is Dead (GROUP_ID_NOT_FOUND from v6, as Kafka).
func (c *coordinator) describeGroups(rc requestContext, req *kmsg.DescribeGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = name
		allowed := c.mayGroup(rc, name)
		if req.IncludeAuthorizedOperations && allowed {
			rg.AuthorizedOperations = 1<<aclOpRead | 1<<aclOpDescribe | 1<<aclOpDelete
		}
		switch {
		case name == "":
			rg.ErrorCode = gErrInvalidGroupID
		case !allowed:
			rg.ErrorCode = gErrGroupAuthorization
		case !c.describeKafkaGroup(&rg):
			c.describeEngineGroup(req.Version, &rg)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// describeKafkaGroup fills rg from the coordinator's group of that name, if there is one.
func (c *coordinator) describeKafkaGroup(rg *kmsg.DescribeGroupsResponseGroup) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[rg.Group]
	if c.closed {
		rg.ErrorCode = gErrCoordinatorNotAvailable
		return true
	}
	if g == nil {
		return false
	}
	rg.State, rg.ProtocolType = g.state.String(), g.protocolType
	if g.state == stateStable || g.state == stateCompletingRebalance {
		rg.Protocol = g.protocol
	}
	for _, m := range g.orderedLocked() {
		rm := kmsg.NewDescribeGroupsResponseGroupMember()
		rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
		for _, p := range m.protocols {
			if p.Name == g.protocol {
				rm.ProtocolMetadata = p.Metadata
			}
		}
		if g.state == stateStable {
			rm.MemberAssignment = m.assignment
		}
		rg.Members = append(rg.Members, rm)
	}
	return true
}

// describeEngineGroup fills rg from the engine: native members, or committed offsets only.
func (c *coordinator) describeEngineGroup(version int16, rg *kmsg.DescribeGroupsResponseGroup) {
	rg.State = stateDead.String()
	if c.e == nil {
		return
	}
	info, err := c.e.DescribeGroup(rg.Group)
	switch {
	case err != nil:
		if version >= 6 {
			rg.ErrorCode = gErrGroupIDNotFound
		}
	case len(info.Members) > 0 || c.nativeMembers(rg.Group):
		rg.State, rg.ProtocolType = stateStable.String(), nativeProtocolType
		for _, m := range info.Members {
			rm := kmsg.NewDescribeGroupsResponseGroupMember()
			rm.MemberID = m.Member
			rg.Members = append(rg.Members, rm)
		}
	default:
		rg.State = stateEmpty.String()
	}
}

// listGroups serves a ListGroups: the Kafka groups with members, and every group the engine knows
// (native members or committed offsets), those the principal may use, filtered by state (v4+,
// case-insensitive) and type (v5+: every group here is "classic").
func (c *coordinator) listGroups(rc requestContext, req *kmsg.ListGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	seen := map[string]bool{}
	var groups []kmsg.ListGroupsResponseGroup
	add := func(name, protocolType string, state groupState) {
		if seen[name] || !c.mayGroup(rc, name) {
			return
		}
		seen[name] = true
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = name, protocolType, state.String(), "classic"
		groups = append(groups, lg)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		resp.ErrorCode = gErrCoordinatorNotAvailable
		return resp
	}
	for name, g := range c.groups {
		add(name, g.protocolType, g.state)
	}
	c.mu.Unlock()
	if c.e != nil {
		for _, name := range c.e.ListGroups() {
			if c.nativeMembers(name) {
				add(name, nativeProtocolType, stateStable)
			} else {
				add(name, "", stateEmpty)
			}
		}
	}
	for _, lg := range groups {
		if len(req.StatesFilter) > 0 && !slices.ContainsFunc(req.StatesFilter, func(s string) bool { return strings.EqualFold(s, lg.GroupState) }) {
			continue
		}
		if len(req.TypesFilter) > 0 && !slices.ContainsFunc(req.TypesFilter, func(s string) bool { return strings.EqualFold(s, lg.GroupType) }) {
			continue
		}
		resp.Groups = append(resp.Groups, lg)
	}
	slices.SortFunc(resp.Groups, func(a, b kmsg.ListGroupsResponseGroup) int { return strings.Compare(a.Group, b.Group) })
	return resp
}

// deleteGroups serves a DeleteGroups through engine.DeleteGroup: a group's committed offsets are
// forgotten, durably, before the answer. A group with members (Kafka or native) is refused
// NON_EMPTY_GROUP, an unknown one GROUP_ID_NOT_FOUND. As on the native face, deleting a group takes
// admin on every topic it has offsets on (TOPIC_AUTHORIZATION_FAILED), besides the right to use the
// group (GROUP_AUTHORIZATION_FAILED).
func (c *coordinator) deleteGroups(rc requestContext, req *kmsg.DeleteGroupsRequest, respond func(kmsg.Response)) {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = name
		resp.Groups = append(resp.Groups, rg)
	}
	var left atomic.Int64 // groups still to be answered; the last answer sends resp
	left.Store(int64(len(resp.Groups)) + 1)
	finish := func() {
		if left.Add(-1) == 0 {
			respond(resp)
		}
	}
	for i := range resp.Groups {
		rg := &resp.Groups[i] // each deletion writes only its own slot
		if code := c.checkDelete(rc, rg.Group); code != gErrNone {
			rg.ErrorCode = code
			finish()
			continue
		}
		c.e.DeleteGroup(rg.Group, func(err error) {
			rg.ErrorCode = groupErrCode(err)
			if rg.ErrorCode == gErrInvalidRequest {
				rg.ErrorCode = gErrNonEmptyGroup // the engine refuses a group with native members so
			}
			finish()
		})
	}
	finish()
}

// checkDelete decides whether the group name may be deleted by rc's principal now.
func (c *coordinator) checkDelete(rc requestContext, name string) int16 {
	switch {
	case name == "":
		return gErrInvalidGroupID
	case !c.mayGroup(rc, name):
		return gErrGroupAuthorization
	case c.e == nil:
		return gErrCoordinatorNotAvailable
	}
	c.mu.Lock()
	g, closed := c.groups[name], c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return gErrCoordinatorNotAvailable
	case g != nil:
		return gErrNonEmptyGroup // members, or members being admitted
	}
	if info, err := c.e.DescribeGroup(name); err == nil {
		for _, o := range info.Offsets {
			if !auth.MayTopic(c.acl(), rc.Principal, auth.ActAdmin, o.Topic) {
				return gErrTopicAuthorization
			}
		}
	}
	return gErrNone
}
