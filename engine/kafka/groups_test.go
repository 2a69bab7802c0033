package kafka

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The membership state machine's tests drive a coordinator with no engine directly with kmsg
// requests, inside a synctest bubble: timers run on the bubble's clock, so session and rebalance
// timeouts pass without waiting, and synctest.Wait settles every timer callback before a check.

const (
	groupTestSession   = 10 * time.Second
	groupTestRebalance = 20 * time.Second
)

func groupTestLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// groupCall is one request served: its response arrives on got, exactly once.
type groupCall struct {
	t   *testing.T
	got chan kmsg.Response
	n   atomic.Int32
}

func (cl *groupCall) respond(r kmsg.Response) {
	if cl.n.Add(1) > 1 {
		cl.t.Errorf("a request was answered twice: %#v", r)
		return
	}
	r.AppendTo(nil) // every answer encodes at its version (kmsg panics on what it cannot)
	cl.got <- r
}

func serveGroup(t *testing.T, c *coordinator, rc requestContext, req kmsg.Request) *groupCall {
	t.Helper()
	cl := &groupCall{t: t, got: make(chan kmsg.Response, 1)}
	c.serve(rc, req, cl.respond)
	return cl
}

// ready returns the response if it has come, or nil.
func (cl *groupCall) ready() kmsg.Response {
	select {
	case r := <-cl.got:
		return r
	default:
		return nil
	}
}

// now returns the response, settling the bubble first; it fails the test if none came.
func (cl *groupCall) now() kmsg.Response {
	cl.t.Helper()
	synctest.Wait()
	r := cl.ready()
	if r == nil {
		cl.t.Fatal("no response yet")
	}
	return r
}

// parkedNow checks that no response has come (the request is parked).
func (cl *groupCall) parkedNow() {
	cl.t.Helper()
	synctest.Wait()
	if r := cl.ready(); r != nil {
		cl.t.Fatalf("answered while it should wait: %#v", r)
	}
}

func groupRC(client string) requestContext {
	return requestContext{ClientID: client, ClientHost: "127.0.0.1:5000"}
}

func joinGroupReq(group, memberID string, version int16, protocols ...string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = version
	req.Group, req.MemberID = group, memberID
	req.SessionTimeoutMillis = int32(groupTestSession / time.Millisecond)
	req.RebalanceTimeoutMillis = int32(groupTestRebalance / time.Millisecond)
	req.ProtocolType = "consumer"
	if len(protocols) == 0 {
		protocols = []string{"range"}
	}
	for _, p := range protocols {
		req.Protocols = append(req.Protocols, kmsg.JoinGroupRequestProtocol{Name: p, Metadata: []byte("meta-" + p)})
	}
	return req
}

func asJoinResp(t *testing.T, r kmsg.Response) *kmsg.JoinGroupResponse {
	t.Helper()
	jr, ok := r.(*kmsg.JoinGroupResponse)
	if !ok {
		t.Fatalf("response %T, want JoinGroupResponse", r)
	}
	return jr
}

// joinNewMember runs a new member's two-step join (v9: MEMBER_ID_REQUIRED, then the join with its id)
// and returns its id and the second join's call, which may be parked.
func joinNewMember(t *testing.T, c *coordinator, group, client string, protocols ...string) (string, *groupCall) {
	t.Helper()
	first := asJoinResp(t, serveGroup(t, c, groupRC(client), joinGroupReq(group, "", 9, protocols...)).now())
	if first.ErrorCode != gErrMemberIDRequired || first.MemberID == "" {
		t.Fatalf("first join: code %d id %q, want MEMBER_ID_REQUIRED with an id", first.ErrorCode, first.MemberID)
	}
	return first.MemberID, serveGroup(t, c, groupRC(client), joinGroupReq(group, first.MemberID, 9, protocols...))
}

func syncGroupReq(group, member string, gen int32, assign map[string]string) *kmsg.SyncGroupRequest {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 5
	req.Group, req.MemberID, req.Generation = group, member, gen
	req.ProtocolType = kmsg.StringPtr("consumer")
	for id, a := range assign {
		req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: []byte(a)})
	}
	return req
}

func sendHeartbeat(t *testing.T, c *coordinator, group, member string, gen int32) int16 {
	t.Helper()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = 4
	req.Group, req.MemberID, req.Generation = group, member, gen
	return serveGroup(t, c, groupRC("hb"), req).now().(*kmsg.HeartbeatResponse).ErrorCode
}

func sendLeave(t *testing.T, c *coordinator, group, member string) int16 {
	t.Helper()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version = 5
	req.Group = group
	req.Members = []kmsg.LeaveGroupRequestMember{{MemberID: member}}
	resp := serveGroup(t, c, groupRC("leave"), req).now().(*kmsg.LeaveGroupResponse)
	if resp.ErrorCode != gErrNone || len(resp.Members) != 1 {
		t.Fatalf("leave: %+v", resp)
	}
	return resp.Members[0].ErrorCode
}

func newGroupCoordinator(t *testing.T) *coordinator {
	c := newCoordinator(nil, nil, groupTestLog())
	t.Cleanup(c.close)
	return c
}

func groupStateOf(c *coordinator, name string) groupState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.groups[name]; g != nil {
		return g.state
	}
	return stateDead
}

// formGroupOfThree brings three members into a Stable group g at its second generation: the first alone
// at generation 1, then the other two join, the first rejoins when its heartbeat says so, and the
// leader (the first) assigns "a-<id>" to each. It returns the ids in join order and the generation.
func formGroupOfThree(t *testing.T, c *coordinator) ([3]string, int32) {
	t.Helper()
	var ids [3]string
	var j1 *groupCall
	ids[0], j1 = joinNewMember(t, c, "g", "c1")
	r1 := asJoinResp(t, j1.now())
	if r1.ErrorCode != 0 || r1.Generation != 1 || r1.LeaderID != ids[0] || len(r1.Members) != 1 {
		t.Fatalf("lone join: %+v", r1)
	}
	s1 := syncGroupReq("g", ids[0], 1, map[string]string{ids[0]: "a1"})
	if sr := serveGroup(t, c, groupRC("c1"), s1).now().(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 || string(sr.MemberAssignment) != "a1" {
		t.Fatalf("lone sync: %+v", sr)
	}
	if s := groupStateOf(c, "g"); s != stateStable {
		t.Fatalf("state %v, want Stable", s)
	}

	var j2, j3 *groupCall
	ids[1], j2 = joinNewMember(t, c, "g", "c2")
	j2.parkedNow()
	if s := groupStateOf(c, "g"); s != statePreparingRebalance {
		t.Fatalf("state %v after a second member, want PreparingRebalance", s)
	}
	if code := sendHeartbeat(t, c, "g", ids[0], 1); code != gErrRebalanceInProgress {
		t.Fatalf("heartbeat during rebalance: code %d, want REBALANCE_IN_PROGRESS", code)
	}
	ids[2], j3 = joinNewMember(t, c, "g", "c3")
	j3.parkedNow()
	j1 = serveGroup(t, c, groupRC("c1"), joinGroupReq("g", ids[0], 9))
	resps := [3]*kmsg.JoinGroupResponse{asJoinResp(t, j1.now()), asJoinResp(t, j2.now()), asJoinResp(t, j3.now())}
	for i, r := range resps {
		if r.ErrorCode != 0 || r.Generation != 2 || r.LeaderID != ids[0] || r.MemberID != ids[i] || *r.Protocol != "range" {
			t.Fatalf("member %d join: %+v", i, r)
		}
	}
	if len(resps[0].Members) != 3 || len(resps[1].Members) != 0 || len(resps[2].Members) != 0 {
		t.Fatalf("member lists: leader %d, others %d and %d; want 3, 0, 0", len(resps[0].Members), len(resps[1].Members), len(resps[2].Members))
	}
	for i, m := range resps[0].Members {
		if m.MemberID != ids[i] || string(m.ProtocolMetadata) != "meta-range" {
			t.Fatalf("leader's member %d: %+v", i, m)
		}
	}
	if s := groupStateOf(c, "g"); s != stateCompletingRebalance {
		t.Fatalf("state %v, want CompletingRebalance", s)
	}

	// The followers' syncs wait for the leader's.
	s2 := serveGroup(t, c, groupRC("c2"), syncGroupReq("g", ids[1], 2, nil))
	s3 := serveGroup(t, c, groupRC("c3"), syncGroupReq("g", ids[2], 2, nil))
	s2.parkedNow()
	s3.parkedNow()
	assign := map[string]string{}
	for _, id := range ids {
		assign[id] = "a-" + id
	}
	s1c := serveGroup(t, c, groupRC("c1"), syncGroupReq("g", ids[0], 2, assign))
	for i, cl := range []*groupCall{s1c, s2, s3} {
		sr := cl.now().(*kmsg.SyncGroupResponse)
		if sr.ErrorCode != 0 || string(sr.MemberAssignment) != "a-"+ids[i] || *sr.Protocol != "range" {
			t.Fatalf("member %d sync: %+v", i, sr)
		}
	}
	if s := groupStateOf(c, "g"); s != stateStable {
		t.Fatalf("state %v, want Stable", s)
	}
	return ids, 2
}

func TestGroupJoinSyncHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		ids, gen := formGroupOfThree(t, c)
		for i, id := range ids {
			if code := sendHeartbeat(t, c, "g", id, gen); code != 0 {
				t.Fatalf("member %d heartbeat: code %d", i, code)
			}
		}
		if code := sendHeartbeat(t, c, "g", ids[1], gen-1); code != gErrIllegalGeneration {
			t.Fatalf("heartbeat of an old generation: code %d, want ILLEGAL_GENERATION", code)
		}
		if code := sendHeartbeat(t, c, "g", "nobody", gen); code != gErrUnknownMemberID {
			t.Fatalf("heartbeat of an unknown member: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		if code := sendHeartbeat(t, c, "other", ids[0], gen); code != gErrUnknownMemberID {
			t.Fatalf("heartbeat to an unknown group: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		// A sync of an old generation, and one once Stable (a member that missed the answer).
		if sr := serveGroup(t, c, groupRC("c2"), syncGroupReq("g", ids[1], gen-1, nil)).now().(*kmsg.SyncGroupResponse); sr.ErrorCode != gErrIllegalGeneration {
			t.Fatalf("old-generation sync: %+v", sr)
		}
		if sr := serveGroup(t, c, groupRC("c2"), syncGroupReq("g", ids[1], gen, nil)).now().(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 || string(sr.MemberAssignment) != "a-"+ids[1] {
			t.Fatalf("sync when Stable: %+v", sr)
		}
		// A follower rejoining with nothing changed is answered at once, with no rebalance.
		jr := asJoinResp(t, serveGroup(t, c, groupRC("c2"), joinGroupReq("g", ids[1], 9)).now())
		if jr.ErrorCode != 0 || jr.Generation != gen || groupStateOf(c, "g") != stateStable {
			t.Fatalf("unchanged rejoin: %+v, state %v", jr, groupStateOf(c, "g"))
		}
		// An unknown member id joining is refused.
		if jr := asJoinResp(t, serveGroup(t, c, groupRC("c9"), joinGroupReq("g", "c9-unknown", 9)).now()); jr.ErrorCode != gErrUnknownMemberID {
			t.Fatalf("unknown member join: %+v", jr)
		}
	})
}

func TestGroupLeaveRebalances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		ids, gen := formGroupOfThree(t, c)
		if code := sendLeave(t, c, "g", ids[1]); code != 0 {
			t.Fatalf("leave: code %d", code)
		}
		if code := sendLeave(t, c, "g", ids[1]); code != gErrUnknownMemberID {
			t.Fatalf("second leave: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		for _, id := range []string{ids[0], ids[2]} {
			if code := sendHeartbeat(t, c, "g", id, gen); code != gErrRebalanceInProgress {
				t.Fatalf("heartbeat after a leave: code %d, want REBALANCE_IN_PROGRESS", code)
			}
		}
		if code := sendHeartbeat(t, c, "g", ids[1], gen); code != gErrUnknownMemberID {
			t.Fatalf("heartbeat of the member that left: code %d", code)
		}
		j3 := serveGroup(t, c, groupRC("c3"), joinGroupReq("g", ids[2], 9))
		j3.parkedNow()
		j1 := serveGroup(t, c, groupRC("c1"), joinGroupReq("g", ids[0], 9))
		r1, r3 := asJoinResp(t, j1.now()), asJoinResp(t, j3.now())
		if r1.Generation != gen+1 || r3.Generation != gen+1 || len(r1.Members) != 2 || r1.LeaderID != ids[0] {
			t.Fatalf("rejoin after a leave: %+v / %+v", r1, r3)
		}
		// The leader leaves too: the last member becomes the leader of the next generation.
		s3 := serveGroup(t, c, groupRC("c3"), syncGroupReq("g", ids[2], gen+1, nil))
		s3.parkedNow()
		if code := sendLeave(t, c, "g", ids[0]); code != 0 {
			t.Fatalf("leader leave: code %d", code)
		}
		if sr := s3.now().(*kmsg.SyncGroupResponse); sr.ErrorCode != gErrRebalanceInProgress {
			t.Fatalf("a parked sync when the leader leaves: %+v", sr)
		}
		r3 = asJoinResp(t, serveGroup(t, c, groupRC("c3"), joinGroupReq("g", ids[2], 9)).now())
		if r3.ErrorCode != 0 || r3.LeaderID != ids[2] || r3.Generation != gen+2 {
			t.Fatalf("last member's rejoin: %+v", r3)
		}
		if code := sendLeave(t, c, "g", ids[2]); code != 0 {
			t.Fatalf("last leave: code %d", code)
		}
		if s := groupStateOf(c, "g"); s != stateDead {
			t.Fatalf("an emptied group is %v in the coordinator, want it dropped", s)
		}
	})
}

func TestGroupSessionTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		ids, gen := formGroupOfThree(t, c)
		// Members 0 and 2 heartbeat every 3s; member 1 is silent and expires after its session
		// timeout, which starts a rebalance.
		start := time.Now()
		for time.Since(start) < groupTestSession+3*time.Second {
			time.Sleep(3 * time.Second)
			code0 := sendHeartbeat(t, c, "g", ids[0], gen)
			code2 := sendHeartbeat(t, c, "g", ids[2], gen)
			if time.Since(start) < groupTestSession && (code0 != 0 || code2 != 0) {
				t.Fatalf("heartbeats before the timeout: %d %d", code0, code2)
			}
		}
		if code := sendHeartbeat(t, c, "g", ids[1], gen); code != gErrUnknownMemberID {
			t.Fatalf("silent member after its session timeout: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		if code := sendHeartbeat(t, c, "g", ids[0], gen); code != gErrRebalanceInProgress {
			t.Fatalf("heartbeat after an expiry: code %d, want REBALANCE_IN_PROGRESS", code)
		}
		j0 := serveGroup(t, c, groupRC("c1"), joinGroupReq("g", ids[0], 9))
		j2 := serveGroup(t, c, groupRC("c3"), joinGroupReq("g", ids[2], 9))
		if r := asJoinResp(t, j0.now()); r.Generation != gen+1 || len(r.Members) != 2 {
			t.Fatalf("rejoin after expiry: %+v", r)
		}
		j2.now()
	})
}

func TestGroupRebalanceTimeoutDropsLateMembers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		ids, gen := formGroupOfThree(t, c)
		if code := sendLeave(t, c, "g", ids[2]); code != 0 {
			t.Fatal(code)
		}
		// Only member 0 rejoins; member 1 keeps heartbeating (REBALANCE_IN_PROGRESS) but never
		// joins: the rebalance timeout drops it.
		j0 := serveGroup(t, c, groupRC("c1"), joinGroupReq("g", ids[0], 9))
		for range 5 {
			time.Sleep(groupTestRebalance / 5)
			sendHeartbeat(t, c, "g", ids[1], gen)
		}
		time.Sleep(time.Second)
		r := asJoinResp(t, j0.now())
		if r.ErrorCode != 0 || r.Generation != gen+1 || len(r.Members) != 1 {
			t.Fatalf("join after the rebalance timeout: %+v", r)
		}
		if code := sendHeartbeat(t, c, "g", ids[1], gen); code != gErrUnknownMemberID {
			t.Fatalf("member that never rejoined: code %d, want UNKNOWN_MEMBER_ID", code)
		}
	})
}

func TestGroupSyncTimeoutDropsUnsynced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		ids, gen := formGroupOfThree(t, c)
		if code := sendLeave(t, c, "g", ids[2]); code != 0 {
			t.Fatal(code)
		}
		j0 := serveGroup(t, c, groupRC("c1"), joinGroupReq("g", ids[0], 9))
		j1 := serveGroup(t, c, groupRC("c2"), joinGroupReq("g", ids[1], 9))
		j0.now()
		j1.now()
		// The follower syncs; the leader heartbeats but never syncs. After the rebalance timeout
		// the leader is dropped and the follower told to rejoin, and it then leads alone. The
		// follower's parked sync keeps it in the group past its session timeout.
		s1 := serveGroup(t, c, groupRC("c2"), syncGroupReq("g", ids[1], gen+1, nil))
		s1.parkedNow()
		for range 6 { // 18s of the 20s
			time.Sleep(3 * time.Second)
			if code := sendHeartbeat(t, c, "g", ids[0], gen+1); code != 0 {
				t.Fatalf("leader heartbeat while CompletingRebalance: %d", code)
			}
		}
		s1.parkedNow()
		time.Sleep(3 * time.Second)
		if sr := s1.now().(*kmsg.SyncGroupResponse); sr.ErrorCode != gErrRebalanceInProgress {
			t.Fatalf("parked follower sync: %+v", sr)
		}
		if code := sendHeartbeat(t, c, "g", ids[0], gen+1); code != gErrUnknownMemberID {
			t.Fatalf("leader that never synced: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		r := asJoinResp(t, serveGroup(t, c, groupRC("c2"), joinGroupReq("g", ids[1], 9)).now())
		if r.ErrorCode != 0 || r.LeaderID != ids[1] || len(r.Members) != 1 {
			t.Fatalf("rejoin after the sync timeout: %+v", r)
		}
	})
}

func TestGroupPendingMemberIDExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		first := asJoinResp(t, serveGroup(t, c, groupRC("c1"), joinGroupReq("g", "", 9)).now())
		if first.ErrorCode != gErrMemberIDRequired {
			t.Fatalf("%+v", first)
		}
		time.Sleep(groupTestSession + time.Second)
		synctest.Wait()
		if s := groupStateOf(c, "g"); s != stateDead {
			t.Fatalf("a member id never used keeps the group: %v", s)
		}
		if r := asJoinResp(t, serveGroup(t, c, groupRC("c1"), joinGroupReq("g", first.MemberID, 9)).now()); r.ErrorCode != gErrUnknownMemberID {
			t.Fatalf("join with an expired member id: %+v", r)
		}
	})
}

func TestGroupProtocolChoice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		a, ja := joinNewMember(t, c, "g", "a", "range", "roundrobin")
		ja.now()
		b, jb := joinNewMember(t, c, "g", "b", "cooperative-sticky", "roundrobin")
		jb.parkedNow()
		ja = serveGroup(t, c, groupRC("a"), joinGroupReq("g", a, 9, "range", "roundrobin"))
		ra, rb := asJoinResp(t, ja.now()), asJoinResp(t, jb.now())
		if *ra.Protocol != "roundrobin" || *rb.Protocol != "roundrobin" {
			t.Fatalf("protocol %q/%q, want the one both support", *ra.Protocol, *rb.Protocol)
		}
		for _, m := range ra.Members {
			if string(m.ProtocolMetadata) != "meta-roundrobin" {
				t.Fatalf("leader sees %q for %s, want the chosen protocol's metadata", m.ProtocolMetadata, m.MemberID)
			}
		}
		_ = b
		// A member with nothing in common, or another protocol type, is refused.
		if r := asJoinResp(t, serveGroup(t, c, groupRC("x"), joinGroupReq("g", "", 9, "sticky")).now()); r.ErrorCode != gErrInconsistentGroupProtocol {
			t.Fatalf("incompatible join: %+v", r)
		}
		other := joinGroupReq("g", "", 9, "roundrobin")
		other.ProtocolType = "connect"
		if r := asJoinResp(t, serveGroup(t, c, groupRC("x"), other).now()); r.ErrorCode != gErrInconsistentGroupProtocol {
			t.Fatalf("other protocol type: %+v", r)
		}
		empty := joinGroupReq("h", "", 9)
		empty.Protocols = nil
		if r := asJoinResp(t, serveGroup(t, c, groupRC("x"), empty).now()); r.ErrorCode != gErrInconsistentGroupProtocol {
			t.Fatalf("no protocols: %+v", r)
		}
	})
}

func TestGroupRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		c.lim.MaxMembers = 2
		c.lim.MaxGroups = 2
		short := joinGroupReq("g", "", 9)
		short.SessionTimeoutMillis = 1000
		if r := asJoinResp(t, serveGroup(t, c, groupRC("x"), short).now()); r.ErrorCode != gErrInvalidSessionTimeout {
			t.Fatalf("1s session: %+v", r)
		}
		if r := asJoinResp(t, serveGroup(t, c, groupRC("x"), joinGroupReq("", "", 9)).now()); r.ErrorCode != gErrInvalidGroupID {
			t.Fatalf("empty group: %+v", r)
		}
		joinNewMember(t, c, "g", "a")
		joinNewMember(t, c, "g", "b")
		if r := asJoinResp(t, serveGroup(t, c, groupRC("c"), joinGroupReq("g", "", 9)).now()); r.ErrorCode != gErrGroupMaxSizeReached {
			t.Fatalf("third member over a cap of 2: %+v", r)
		}
		joinNewMember(t, c, "h", "a")
		if r := asJoinResp(t, serveGroup(t, c, groupRC("c"), joinGroupReq("i", "", 9)).now()); r.ErrorCode != gErrGroupMaxSizeReached {
			t.Fatalf("third group over a cap of 2: %+v", r)
		}
		c.mu.Lock()
		n := len(c.groups)
		c.mu.Unlock()
		if n != 2 {
			t.Fatalf("%d groups kept, want 2 (a refused first join leaves nothing)", n)
		}
	})
}

func TestGroupOldVersions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		// JoinGroup v0-v3 admit a member at once (no MEMBER_ID_REQUIRED); v0 has no rebalance
		// timeout. LeaveGroup v0 names one member and answers at the top level.
		req := joinGroupReq("g", "", 0)
		req.RebalanceTimeoutMillis = 0
		r := asJoinResp(t, serveGroup(t, c, groupRC("py"), req).now())
		if r.ErrorCode != 0 || r.MemberID == "" || r.Generation != 1 {
			t.Fatalf("v0 join: %+v", r)
		}
		c.mu.Lock()
		rt := c.groups["g"].members[r.MemberID].rebalanceTimeout
		c.mu.Unlock()
		if rt != groupTestSession {
			t.Fatalf("v0 rebalance timeout %v, want the session timeout", rt)
		}
		lv := kmsg.NewPtrLeaveGroupRequest()
		lv.Group, lv.MemberID = "g", r.MemberID
		if resp := serveGroup(t, c, groupRC("py"), lv).now().(*kmsg.LeaveGroupResponse); resp.ErrorCode != 0 || len(resp.Members) != 0 {
			t.Fatalf("v0 leave: %+v", resp)
		}
		if resp := serveGroup(t, c, groupRC("py"), lv).now().(*kmsg.LeaveGroupResponse); resp.ErrorCode != gErrUnknownMemberID {
			t.Fatalf("v0 second leave: %+v", resp)
		}
	})
}

func TestGroupStaticMembership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newGroupCoordinator(t)
		static := func(member string) *kmsg.JoinGroupRequest {
			req := joinGroupReq("g", member, 9)
			req.InstanceID = kmsg.StringPtr("pod-1")
			return req
		}
		// A static member is admitted on its first join (no MEMBER_ID_REQUIRED).
		r := asJoinResp(t, serveGroup(t, c, groupRC("c"), static("")).now())
		if r.ErrorCode != 0 || r.Generation != 1 {
			t.Fatalf("static join: %+v", r)
		}
		old := r.MemberID
		if sr := serveGroup(t, c, groupRC("c"), syncGroupReq("g", old, 1, map[string]string{old: "x"})).now().(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 {
			t.Fatalf("%+v", sr)
		}
		// It restarts: the same instance id with no member id replaces the old member, which is
		// fenced from then on; the new one keeps the leadership.
		r = asJoinResp(t, serveGroup(t, c, groupRC("c"), static("")).now())
		if r.ErrorCode != 0 || r.MemberID == old || r.LeaderID != r.MemberID || r.Generation != 2 {
			t.Fatalf("static rejoin: %+v", r)
		}
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = "g", old, 2, kmsg.StringPtr("pod-1")
		hb.Version = 4
		if resp := serveGroup(t, c, groupRC("c"), hb).now().(*kmsg.HeartbeatResponse); resp.ErrorCode != gErrFencedInstanceID {
			t.Fatalf("fenced member heartbeat: %+v", resp)
		}
		// Leaving by instance id.
		lv := kmsg.NewPtrLeaveGroupRequest()
		lv.Version = 4
		lv.Group = "g"
		lv.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: kmsg.StringPtr("pod-1")}}
		if resp := serveGroup(t, c, groupRC("c"), lv).now().(*kmsg.LeaveGroupResponse); resp.Members[0].ErrorCode != 0 {
			t.Fatalf("static leave: %+v", resp)
		}
		if s := groupStateOf(c, "g"); s != stateDead {
			t.Fatalf("state %v after the only member left", s)
		}
	})
}

func TestGroupCloseAnswersParked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCoordinator(nil, nil, groupTestLog())
		a, ja := joinNewMember(t, c, "g", "a")
		ja.now()
		_, jb := joinNewMember(t, c, "g", "b")
		jb.parkedNow()
		c.close()
		if r := asJoinResp(t, jb.now()); r.ErrorCode != gErrCoordinatorNotAvailable {
			t.Fatalf("parked join at close: %+v", r)
		}
		if code := sendHeartbeat(t, c, "g", a, 1); code != gErrCoordinatorNotAvailable {
			t.Fatalf("heartbeat after close: %d", code)
		}
		c.close()
	})
}

func TestGroupHandles(t *testing.T) {
	c := newCoordinator(nil, nil, groupTestLog())
	for _, k := range []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.LeaveGroup, kmsg.OffsetCommit,
		kmsg.OffsetFetch, kmsg.DescribeGroups, kmsg.ListGroups, kmsg.DeleteGroups} {
		if !c.handles(int16(k)) {
			t.Errorf("coordinator does not handle %v", k.Name())
		}
	}
	for _, k := range []kmsg.Key{kmsg.Produce, kmsg.Fetch, kmsg.FindCoordinator, kmsg.ApiVersions, kmsg.TxnOffsetCommit, kmsg.OffsetDelete} {
		if c.handles(int16(k)) {
			t.Errorf("coordinator claims %v", k.Name())
		}
	}
}
