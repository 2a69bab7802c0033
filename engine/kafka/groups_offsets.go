package kafka

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// maxNamedOffsetVersion is the last OffsetCommit and OffsetFetch version that names topics; v10
// names them by topic id, which this broker does not keep: it is answered UNSUPPORTED_VERSION (and
// not advertised).
const maxNamedOffsetVersion = 9

// offsetCommit serves an OffsetCommit into the engine's durable offset store, the one native
// groups use: it is answered once every partition's commit is durable (fdatasynced) or refused.
//
// A commit from a member (a member id, or a generation of 0 or more) must come from a member of
// the group's current generation, and not while the group waits for its leader's assignment
// (REBALANCE_IN_PROGRESS); during PreparingRebalance it is accepted, as Kafka does, so a member
// can commit what it processed before it rejoins. A commit with generation -1 and no member id (a
// simple consumer: kcat, a client with assign(), a tool) is accepted while the group has no
// members, as in Kafka, and refused UNKNOWN_MEMBER_ID while it has: Kafka members, or native
// Sluice members, whose progress it would overwrite. A member's commit is also a sign of life:
// it restarts the member's session timer. Commit metadata is not stored.
func (c *coordinator) offsetCommit(rc requestContext, req *kmsg.OffsetCommitRequest, respond func(kmsg.Response)) {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	fail := func(code int16) {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = code
			}
		}
		respond(resp)
	}
	gen := req.Generation
	simple := gen < 0 && req.MemberID == "" && req.InstanceID == nil
	if req.Version == 0 {
		gen, simple = -1, true // v0 carries no generation and no member: a simple commit
	}
	switch {
	case req.Version > maxNamedOffsetVersion:
		fail(gErrUnsupportedVersion)
		return
	case req.Group == "":
		fail(gErrInvalidGroupID)
		return
	case !c.mayGroup(rc, req.Group):
		fail(gErrGroupAuthorization)
		return
	case c.e == nil:
		fail(gErrCoordinatorNotAvailable)
		return
	case c.nativeMembers(req.Group):
		fail(gErrUnknownMemberID)
		return
	}
	if code := c.checkCommit(req, gen, simple); code != gErrNone {
		fail(code)
		return
	}

	var left atomic.Int64 // partitions still to be answered; the last answer sends resp
	for _, t := range resp.Topics {
		left.Add(int64(len(t.Partitions)))
	}
	if left.Load() == 0 {
		respond(resp)
		return
	}
	finish := func() {
		if left.Add(-1) == 0 {
			respond(resp)
		}
	}
	for i, t := range req.Topics {
		allowed := auth.MayTopic(c.acl(), rc.Principal, auth.ActConsume, t.Topic)
		for j, p := range t.Partitions {
			rp := &resp.Topics[i].Partitions[j] // each callback writes only its own partition's slot
			if !allowed {
				rp.ErrorCode = gErrTopicAuthorization
				finish()
				continue
			}
			c.e.CommitOffset(req.Group, t.Topic, p.Partition, p.Offset, func(err error) {
				rp.ErrorCode = groupErrCode(err)
				finish()
			})
		}
	}
}

// checkCommit validates a commit's member and generation against the group's membership.
func (c *coordinator) checkCommit(req *kmsg.OffsetCommitRequest, gen int32, simple bool) int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return gErrCoordinatorNotAvailable
	}
	g := c.groups[req.Group]
	switch {
	case g == nil || len(g.members) == 0:
		if gen >= 0 {
			return gErrIllegalGeneration // a member of a generation that no longer exists
		}
		return gErrNone // no members: the group only keeps offsets here
	case simple:
		return gErrUnknownMemberID
	}
	m, code := checkMemberLocked(g, req.MemberID, req.InstanceID, gen)
	switch {
	case code != gErrNone:
		return code
	case g.state == stateCompletingRebalance:
		return gErrRebalanceInProgress
	}
	c.touchLocked(g, m)
	return gErrNone
}

// groupErrCode maps an engine error to the Kafka error code of a group or offset answer.
func groupErrCode(err error) int16 {
	switch wire.CodeOf(err) {
	case wire.CodeOK:
		return gErrNone
	case wire.CodeUnknownTopic, wire.CodeUnknownPartition:
		return gErrUnknownTopicOrPartition
	case wire.CodeOffsetOutOfRange:
		return gErrOffsetOutOfRange
	case wire.CodeInvalidRequest:
		return gErrInvalidRequest
	case wire.CodeShuttingDown:
		return gErrCoordinatorNotAvailable
	case wire.CodeUnknownGroup:
		return gErrGroupIDNotFound
	}
	return gErrUnknownServer
}

// offsetFetch serves an OffsetFetch from the engine's offset store: the committed offset of each
// partition asked for, or -1; with no topics named (v2+), every offset the group has committed on
// topics the principal may consume. v8+ asks for several groups at once. Committed offsets are
// durable when read, so RequireStable needs nothing more.
func (c *coordinator) offsetFetch(rc requestContext, req *kmsg.OffsetFetchRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version > maxNamedOffsetVersion {
		for _, rg := range req.Groups {
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group, g.ErrorCode = rg.Group, gErrUnsupportedVersion
			resp.Groups = append(resp.Groups, g)
		}
		return resp
	}
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			topics := make([]kmsg.OffsetFetchRequestTopic, 0, len(rg.Topics))
			for _, t := range rg.Topics {
				topics = append(topics, kmsg.OffsetFetchRequestTopic{Topic: t.Topic, Partitions: t.Partitions})
			}
			if rg.Topics == nil {
				topics = nil
			}
			code, got := c.fetchGroup(rc, rg.Group, topics)
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group, g.ErrorCode = rg.Group, code
			for _, t := range got {
				gt := kmsg.NewOffsetFetchResponseGroupTopic()
				gt.Topic = t.Topic
				for _, p := range t.Partitions {
					gp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					gp.Partition, gp.Offset, gp.LeaderEpoch, gp.Metadata, gp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
					gt.Partitions = append(gt.Partitions, gp)
				}
				g.Topics = append(g.Topics, gt)
			}
			resp.Groups = append(resp.Groups, g)
		}
		return resp
	}
	code, got := c.fetchGroup(rc, req.Group, req.Topics)
	resp.Topics = got
	if req.Version >= 2 {
		resp.ErrorCode = code
	} else if code != gErrNone {
		// v0 and v1 have no group error: every partition asked for carries it.
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = code
			}
		}
	}
	return resp
}

// fetchGroup answers one group's part of an OffsetFetch: a group error code, and the partitions
// (those asked for, or all the group has committed when topics is nil).
func (c *coordinator) fetchGroup(rc requestContext, group string, topics []kmsg.OffsetFetchRequestTopic) (int16, []kmsg.OffsetFetchResponseTopic) {
	code := gErrNone
	switch {
	case group == "":
		code = gErrInvalidGroupID
	case !c.mayGroup(rc, group):
		code = gErrGroupAuthorization
	case c.e == nil:
		code = gErrCoordinatorNotAvailable
	}
	var out []kmsg.OffsetFetchResponseTopic
	if topics == nil {
		if code != gErrNone {
			return code, nil
		}
		info, err := c.e.DescribeGroup(group) // every committed offset, sorted by topic and partition
		if err != nil {
			return gErrNone, nil // no offsets: an empty answer, as Kafka gives for an unknown group
		}
		for _, o := range info.Offsets {
			if !auth.MayTopic(c.acl(), rc.Principal, auth.ActConsume, o.Topic) {
				continue // Kafka leaves out the topics the principal may not describe
			}
			if len(out) == 0 || out[len(out)-1].Topic != o.Topic {
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = o.Topic
				out = append(out, rt)
			}
			rt := &out[len(out)-1]
			rt.Partitions = append(rt.Partitions, fetchedPartition(o.Partition, o.Committed, gErrNone))
		}
		return gErrNone, out
	}
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.Topic
		allowed := code == gErrNone && auth.MayTopic(c.acl(), rc.Principal, auth.ActConsume, t.Topic)
		for _, p := range t.Partitions {
			switch {
			case code != gErrNone:
				rt.Partitions = append(rt.Partitions, fetchedPartition(p, -1, gErrNone))
			case !allowed:
				rt.Partitions = append(rt.Partitions, fetchedPartition(p, -1, gErrTopicAuthorization))
			default:
				rt.Partitions = append(rt.Partitions, fetchedPartition(p, c.e.CommittedOffset(group, t.Topic, p), gErrNone))
			}
		}
		out = append(out, rt)
	}
	return code, out
}

func fetchedPartition(p int32, offset int64, code int16) kmsg.OffsetFetchResponseTopicPartition {
	rp := kmsg.NewOffsetFetchResponseTopicPartition()
	rp.Partition, rp.Offset, rp.ErrorCode = p, offset, code
	rp.Metadata = kmsg.StringPtr("")
	return rp
}
