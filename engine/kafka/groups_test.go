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
	testSession   = 10 * time.Second
	testRebalance = 20 * time.Second
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// call is one request served: its response arrives on got, exactly once.
type call struct {
	t   *testing.T
	got chan kmsg.Response
	n   atomic.Int32
}

func (cl *call) respond(r kmsg.Response) {
	if cl.n.Add(1) > 1 {
		cl.t.Errorf("a request was answered twice: %#v", r)
		return
	}
	cl.got <- r
}

func serveReq(t *testing.T, c *coordinator, rc requestContext, req kmsg.Request) *call {
	t.Helper()
	cl := &call{t: t, got: make(chan kmsg.Response, 1)}
	c.serve(rc, req, cl.respond)
	return cl
}

// ready returns the response if it has come, or nil.
func (cl *call) ready() kmsg.Response {
	select {
	case r := <-cl.got:
		return r
	default:
		return nil
	}
}

// now returns the response, settling the bubble first; it fails the test if none came.
func (cl *call) now() kmsg.Response {
	cl.t.Helper()
	synctest.Wait()
	r := cl.ready()
	if r == nil {
		cl.t.Fatal("no response yet")
	}
	return r
}

// parkedNow checks that no response has come (the request is parked).
func (cl *call) parkedNow() {
	cl.t.Helper()
	synctest.Wait()
	if r := cl.ready(); r != nil {
		cl.t.Fatalf("answered while it should wait: %#v", r)
	}
}

func rcFor(client string) requestContext {
	return requestContext{ClientID: client, ClientHost: "127.0.0.1:5000"}
}

func joinReq(group, memberID string, version int16, protocols ...string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = version
	req.Group, req.MemberID = group, memberID
	req.SessionTimeoutMillis = int32(testSession / time.Millisecond)
	req.RebalanceTimeoutMillis = int32(testRebalance / time.Millisecond)
	req.ProtocolType = "consumer"
	if len(protocols) == 0 {
		protocols = []string{"range"}
	}
	for _, p := range protocols {
		req.Protocols = append(req.Protocols, kmsg.JoinGroupRequestProtocol{Name: p, Metadata: []byte("meta-" + p)})
	}
	return req
}

func joinResp(t *testing.T, r kmsg.Response) *kmsg.JoinGroupResponse {
	t.Helper()
	jr, ok := r.(*kmsg.JoinGroupResponse)
	if !ok {
		t.Fatalf("response %T, want JoinGroupResponse", r)
	}
	return jr
}

// joinNew runs a new member's two-step join (v9: MEMBER_ID_REQUIRED, then the join with its id)
// and returns its id and the second join's call, which may be parked.
func joinNew(t *testing.T, c *coordinator, group, client string, protocols ...string) (string, *call) {
	t.Helper()
	first := joinResp(t, serveReq(t, c, rcFor(client), joinReq(group, "", 9, protocols...)).now())
	if first.ErrorCode != gErrMemberIDRequired || first.MemberID == "" {
		t.Fatalf("first join: code %d id %q, want MEMBER_ID_REQUIRED with an id", first.ErrorCode, first.MemberID)
	}
	return first.MemberID, serveReq(t, c, rcFor(client), joinReq(group, first.MemberID, 9, protocols...))
}

func syncReq(group, member string, gen int32, assign map[string]string) *kmsg.SyncGroupRequest {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 5
	req.Group, req.MemberID, req.Generation = group, member, gen
	req.ProtocolType = kmsg.StringPtr("consumer")
	for id, a := range assign {
		req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: []byte(a)})
	}
	return req
}

func heartbeat(t *testing.T, c *coordinator, group, member string, gen int32) int16 {
	t.Helper()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = 4
	req.Group, req.MemberID, req.Generation = group, member, gen
	return serveReq(t, c, rcFor("hb"), req).now().(*kmsg.HeartbeatResponse).ErrorCode
}

func leaveGroup(t *testing.T, c *coordinator, group, member string) int16 {
	t.Helper()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version = 5
	req.Group = group
	req.Members = []kmsg.LeaveGroupRequestMember{{MemberID: member}}
	resp := serveReq(t, c, rcFor("leave"), req).now().(*kmsg.LeaveGroupResponse)
	if resp.ErrorCode != gErrNone || len(resp.Members) != 1 {
		t.Fatalf("leave: %+v", resp)
	}
	return resp.Members[0].ErrorCode
}

func newTestCoordinator(t *testing.T) *coordinator {
	c := newCoordinator(nil, nil, quietLog())
	t.Cleanup(c.close)
	return c
}

func stateOf(c *coordinator, name string) groupState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.groups[name]; g != nil {
		return g.state
	}
	return stateDead
}

// formThree brings three members into a Stable group g at its second generation: the first alone
// at generation 1, then the other two join, the first rejoins when its heartbeat says so, and the
// leader (the first) assigns "a-<id>" to each. It returns the ids in join order and the generation.
func formThree(t *testing.T, c *coordinator) ([3]string, int32) {
	t.Helper()
	var ids [3]string
	var j1 *call
	ids[0], j1 = joinNew(t, c, "g", "c1")
	r1 := joinResp(t, j1.now())
	if r1.ErrorCode != 0 || r1.Generation != 1 || r1.LeaderID != ids[0] || len(r1.Members) != 1 {
		t.Fatalf("lone join: %+v", r1)
	}
	s1 := syncReq("g", ids[0], 1, map[string]string{ids[0]: "a1"})
	if sr := serveReq(t, c, rcFor("c1"), s1).now().(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 || string(sr.MemberAssignment) != "a1" {
		t.Fatalf("lone sync: %+v", sr)
	}
	if s := stateOf(c, "g"); s != stateStable {
		t.Fatalf("state %v, want Stable", s)
	}

	var j2, j3 *call
	ids[1], j2 = joinNew(t, c, "g", "c2")
	j2.parkedNow()
	if s := stateOf(c, "g"); s != statePreparingRebalance {
		t.Fatalf("state %v after a second member, want PreparingRebalance", s)
	}
	if code := heartbeat(t, c, "g", ids[0], 1); code != gErrRebalanceInProgress {
		t.Fatalf("heartbeat during rebalance: code %d, want REBALANCE_IN_PROGRESS", code)
	}
	ids[2], j3 = joinNew(t, c, "g", "c3")
	j3.parkedNow()
	j1 = serveReq(t, c, rcFor("c1"), joinReq("g", ids[0], 9))
	resps := [3]*kmsg.JoinGroupResponse{joinResp(t, j1.now()), joinResp(t, j2.now()), joinResp(t, j3.now())}
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
	if s := stateOf(c, "g"); s != stateCompletingRebalance {
		t.Fatalf("state %v, want CompletingRebalance", s)
	}

	// The followers' syncs wait for the leader's.
	s2 := serveReq(t, c, rcFor("c2"), syncReq("g", ids[1], 2, nil))
	s3 := serveReq(t, c, rcFor("c3"), syncReq("g", ids[2], 2, nil))
	s2.parkedNow()
	s3.parkedNow()
	assign := map[string]string{}
	for _, id := range ids {
		assign[id] = "a-" + id
	}
	s1c := serveReq(t, c, rcFor("c1"), syncReq("g", ids[0], 2, assign))
	for i, cl := range []*call{s1c, s2, s3} {
		sr := cl.now().(*kmsg.SyncGroupResponse)
		if sr.ErrorCode != 0 || string(sr.MemberAssignment) != "a-"+ids[i] || *sr.Protocol != "range" {
			t.Fatalf("member %d sync: %+v", i, sr)
		}
	}
	if s := stateOf(c, "g"); s != stateStable {
		t.Fatalf("state %v, want Stable", s)
	}
	return ids, 2
}

func TestGroupJoinSyncHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCoordinator(t)
		ids, gen := formThree(t, c)
		for i, id := range ids {
			if code := heartbeat(t, c, "g", id, gen); code != 0 {
				t.Fatalf("member %d heartbeat: code %d", i, code)
			}
		}
		if code := heartbeat(t, c, "g", ids[1], gen-1); code != gErrIllegalGeneration {
			t.Fatalf("heartbeat of an old generation: code %d, want ILLEGAL_GENERATION", code)
		}
		if code := heartbeat(t, c, "g", "nobody", gen); code != gErrUnknownMemberID {
			t.Fatalf("heartbeat of an unknown member: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		if code := heartbeat(t, c, "other", ids[0], gen); code != gErrUnknownMemberID {
			t.Fatalf("heartbeat to an unknown group: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		// A sync of an old generation, and one once Stable (a member that missed the answer).
		if sr := serveReq(t, c, rcFor("c2"), syncReq("g", ids[1], gen-1, nil)).now().(*kmsg.SyncGroupResponse); sr.ErrorCode != gErrIllegalGeneration {
			t.Fatalf("old-generation sync: %+v", sr)
		}
		if sr := serveReq(t, c, rcFor("c2"), syncReq("g", ids[1], gen, nil)).now().(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 || string(sr.MemberAssignment) != "a-"+ids[1] {
			t.Fatalf("sync when Stable: %+v", sr)
		}
		// A follower rejoining with nothing changed is answered at once, with no rebalance.
		jr := joinResp(t, serveReq(t, c, rcFor("c2"), joinReq("g", ids[1], 9)).now())
		if jr.ErrorCode != 0 || jr.Generation != gen || stateOf(c, "g") != stateStable {
			t.Fatalf("unchanged rejoin: %+v, state %v", jr, stateOf(c, "g"))
		}
		// An unknown member id joining is refused.
		if jr := joinResp(t, serveReq(t, c, rcFor("c9"), joinReq("g", "c9-unknown", 9)).now()); jr.ErrorCode != gErrUnknownMemberID {
			t.Fatalf("unknown member join: %+v", jr)
		}
	})
}

func TestGroupLeaveRebalances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCoordinator(t)
		ids, gen := formThree(t, c)
		if code := leaveGroup(t, c, "g", ids[1]); code != 0 {
			t.Fatalf("leave: code %d", code)
		}
		if code := leaveGroup(t, c, "g", ids[1]); code != gErrUnknownMemberID {
			t.Fatalf("second leave: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		for _, id := range []string{ids[0], ids[2]} {
			if code := heartbeat(t, c, "g", id, gen); code != gErrRebalanceInProgress {
				t.Fatalf("heartbeat after a leave: code %d, want REBALANCE_IN_PROGRESS", code)
			}
		}
		if code := heartbeat(t, c, "g", ids[1], gen); code != gErrUnknownMemberID {
			t.Fatalf("heartbeat of the member that left: code %d", code)
		}
		j3 := serveReq(t, c, rcFor("c3"), joinReq("g", ids[2], 9))
		j3.parkedNow()
		j1 := serveReq(t, c, rcFor("c1"), joinReq("g", ids[0], 9))
		r1, r3 := joinResp(t, j1.now()), joinResp(t, j3.now())
		if r1.Generation != gen+1 || r3.Generation != gen+1 || len(r1.Members) != 2 || r1.LeaderID != ids[0] {
			t.Fatalf("rejoin after a leave: %+v / %+v", r1, r3)
		}
		// The leader leaves too: the last member becomes the leader of the next generation.
		s3 := serveReq(t, c, rcFor("c3"), syncReq("g", ids[2], gen+1, nil))
		s3.parkedNow()
		if code := leaveGroup(t, c, "g", ids[0]); code != 0 {
			t.Fatalf("leader leave: code %d", code)
		}
		if sr := s3.now().(*kmsg.SyncGroupResponse); sr.ErrorCode != gErrRebalanceInProgress {
			t.Fatalf("a parked sync when the leader leaves: %+v", sr)
		}
		r3 = joinResp(t, serveReq(t, c, rcFor("c3"), joinReq("g", ids[2], 9)).now())
		if r3.ErrorCode != 0 || r3.LeaderID != ids[2] || r3.Generation != gen+2 {
			t.Fatalf("last member's rejoin: %+v", r3)
		}
		if code := leaveGroup(t, c, "g", ids[2]); code != 0 {
			t.Fatalf("last leave: code %d", code)
		}
		if s := stateOf(c, "g"); s != stateDead {
			t.Fatalf("an emptied group is %v in the coordinator, want it dropped", s)
		}
	})
}

func TestGroupSessionTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCoordinator(t)
		ids, gen := formThree(t, c)
		// Members 0 and 2 heartbeat every 3s; member 1 is silent and expires after its session
		// timeout, which starts a rebalance.
		start := time.Now()
		for time.Since(start) < testSession+3*time.Second {
			time.Sleep(3 * time.Second)
			code0 := heartbeat(t, c, "g", ids[0], gen)
			code2 := heartbeat(t, c, "g", ids[2], gen)
			if time.Since(start) < testSession && (code0 != 0 || code2 != 0) {
				t.Fatalf("heartbeats before the timeout: %d %d", code0, code2)
			}
		}
		if code := heartbeat(t, c, "g", ids[1], gen); code != gErrUnknownMemberID {
			t.Fatalf("silent member after its session timeout: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		if code := heartbeat(t, c, "g", ids[0], gen); code != gErrRebalanceInProgress {
			t.Fatalf("heartbeat after an expiry: code %d, want REBALANCE_IN_PROGRESS", code)
		}
		j0 := serveReq(t, c, rcFor("c1"), joinReq("g", ids[0], 9))
		j2 := serveReq(t, c, rcFor("c3"), joinReq("g", ids[2], 9))
		if r := joinResp(t, j0.now()); r.Generation != gen+1 || len(r.Members) != 2 {
			t.Fatalf("rejoin after expiry: %+v", r)
		}
		j2.now()
	})
}

func TestGroupRebalanceTimeoutDropsLateMembers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCoordinator(t)
		ids, gen := formThree(t, c)
		if code := leaveGroup(t, c, "g", ids[2]); code != 0 {
			t.Fatal(code)
		}
		// Only member 0 rejoins; member 1 keeps heartbeating (REBALANCE_IN_PROGRESS) but never
		// joins: the rebalance timeout drops it.
		j0 := serveReq(t, c, rcFor("c1"), joinReq("g", ids[0], 9))
		for range 5 {
			time.Sleep(testRebalance / 5)
			heartbeat(t, c, "g", ids[1], gen)
		}
		time.Sleep(time.Second)
		r := joinResp(t, j0.now())
		if r.ErrorCode != 0 || r.Generation != gen+1 || len(r.Members) != 1 {
			t.Fatalf("join after the rebalance timeout: %+v", r)
		}
		if code := heartbeat(t, c, "g", ids[1], gen); code != gErrUnknownMemberID {
			t.Fatalf("member that never rejoined: code %d, want UNKNOWN_MEMBER_ID", code)
		}
	})
}

func TestGroupSyncTimeoutDropsUnsynced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCoordinator(t)
		ids, gen := formThree(t, c)
		if code := leaveGroup(t, c, "g", ids[2]); code != 0 {
			t.Fatal(code)
		}
		j0 := serveReq(t, c, rcFor("c1"), joinReq("g", ids[0], 9))
		j1 := serveReq(t, c, rcFor("c2"), joinReq("g", ids[1], 9))
		j0.now()
		j1.now()
		// The follower syncs; the leader heartbeats but never syncs. After the rebalance timeout
		// the leader is dropped and the follower told to rejoin, and it then leads alone. The
		// follower's parked sync keeps it in the group past its session timeout.
		s1 := serveReq(t, c, rcFor("c2"), syncReq("g", ids[1], gen+1, nil))
		s1.parkedNow()
		for range 6 { // 18s of the 20s
			time.Sleep(3 * time.Second)
			if code := heartbeat(t, c, "g", ids[0], gen+1); code != 0 {
				t.Fatalf("leader heartbeat while CompletingRebalance: %d", code)
			}
		}
		s1.parkedNow()
		time.Sleep(3 * time.Second)
		if sr := s1.now().(*kmsg.SyncGroupResponse); sr.ErrorCode != gErrRebalanceInProgress {
			t.Fatalf("parked follower sync: %+v", sr)
		}
		if code := heartbeat(t, c, "g", ids[0], gen+1); code != gErrUnknownMemberID {
			t.Fatalf("leader that never synced: code %d, want UNKNOWN_MEMBER_ID", code)
		}
		r := joinResp(t, serveReq(t, c, rcFor("c2"), joinReq("g", ids[1], 9)).now())
		if r.ErrorCode != 0 || r.LeaderID != ids[1] || len(r.Members) != 1 {
			t.Fatalf("rejoin after the sync timeout: %+v", r)
		}
	})
}

func TestGroupPendingMemberIDExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCoordinator(t)
		first := joinResp(t, serveReq(t, c, rcFor("c1"), joinReq("g", "", 9)).now())
		if first.ErrorCode != gErrMemberIDRequired {
			t.Fatalf("%+v", first)
		}
		time.Sleep(testSession + time.Second)
		synctest.Wait()
		if s := stateOf(c, "g"); s != stateDead {
			t.Fatalf("a member id never used keeps the group: %v", s)
		}
		if r := joinResp(t, serveReq(t, c, rcFor("c1"), joinReq("g", first.MemberID, 9)).now()); r.ErrorCode != gErrUnknownMemberID {
			t.Fatalf("join with an expired member id: %+v", r)
		}
	})
}

func TestGroupProtocolChoice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCoordinator(t)
		a, ja := joinNew(t, c, "g", "a", "range", "roundrobin")
		ja.now()
		b, jb := joinNew(t, c, "g", "b", "cooperative-sticky", "roundrobin")
		jb.parkedNow()
		ja = serveReq(t, c, rcFor("a"), joinReq("g", a, 9, "range", "roundrobin"))
		ra, rb := joinResp(t, ja.now()), joinResp(t, jb.now())
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
		if r := joinResp(t, serveReq(t, c, rcFor("x"), joinReq("g", "", 9, "sticky")).now()); r.ErrorCode != gErrInconsistentGroupProtocol {
			t.Fatalf("incompatible join: %+v", r)
		}
		other := joinReq("g", "", 9, "roundrobin")
		other.ProtocolType = "connect"
		if r := joinResp(t, serveReq(t, c, rcFor("x"), other).now()); r.ErrorCode != gErrInconsistentGroupProtocol {
			t.Fatalf("other protocol type: %+v", r)
		}
		empty := joinReq("h", "", 9)
		empty.Protocols = nil
		if r := joinResp(t, serveReq(t, c, rcFor("x"), empty).now()); r.ErrorCode != gErrInconsistentGroupProtocol {
			t.Fatalf("no protocols: %+v", r)
		}
	})
}

func TestGroupRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCoordinator(t)
		c.lim.MaxMembers = 2
		c.lim.MaxGroups = 2
		short := joinReq("g", "", 9)
		short.SessionTimeoutMillis = 1000
		if r := joinResp(t, serveReq(t, c, rcFor("x"), short).now()); r.ErrorCode != gErrInvalidSessionTimeout {
			t.Fatalf("1s session: %+v", r)
		}
		if r := joinResp(t, serveReq(t, c, rcFor("x"), joinReq("", "", 9)).now()); r.ErrorCode != gErrInvalidGroupID {
			t.Fatalf("empty group: %+v", r)
		}
		joinNew(t, c, "g", "a")
		joinNew(t, c, "g", "b")
		if r := joinResp(t, serveReq(t, c, rcFor("c"), joinReq("g", "", 9)).now()); r.ErrorCode != gErrGroupMaxSizeReached {
			t.Fatalf("third member over a cap of 2: %+v", r)
		}
		joinNew(t, c, "h", "a")
		if r := joinResp(t, serveReq(t, c, rcFor("c"), joinReq("i", "", 9)).now()); r.ErrorCode != gErrGroupMaxSizeReached {
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
		c := newTestCoordinator(t)
		// JoinGroup v0-v3 admit a member at once (no MEMBER_ID_REQUIRED); v0 has no rebalance
		// timeout. LeaveGroup v0 names one member and answers at the top level.
		req := joinReq("g", "", 0)
		req.RebalanceTimeoutMillis = 0
		r := joinResp(t, serveReq(t, c, rcFor("py"), req).now())
		if r.ErrorCode != 0 || r.MemberID == "" || r.Generation != 1 {
			t.Fatalf("v0 join: %+v", r)
		}
		c.mu.Lock()
		rt := c.groups["g"].members[r.MemberID].rebalanceTimeout
		c.mu.Unlock()
		if rt != testSession {
			t.Fatalf("v0 rebalance timeout %v, want the session timeout", rt)
		}
		lv := kmsg.NewPtrLeaveGroupRequest()
		lv.Group, lv.MemberID = "g", r.MemberID
		if resp := serveReq(t, c, rcFor("py"), lv).now().(*kmsg.LeaveGroupResponse); resp.ErrorCode != 0 || len(resp.Members) != 0 {
			t.Fatalf("v0 leave: %+v", resp)
		}
		if resp := serveReq(t, c, rcFor("py"), lv).now().(*kmsg.LeaveGroupResponse); resp.ErrorCode != gErrUnknownMemberID {
			t.Fatalf("v0 second leave: %+v", resp)
		}
	})
}

func TestGroupStaticMembership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCoordinator(t)
		static := func(member string) *kmsg.JoinGroupRequest {
			req := joinReq("g", member, 9)
			req.InstanceID = kmsg.StringPtr("pod-1")
			return req
		}
		// A static member is admitted on its first join (no MEMBER_ID_REQUIRED).
		r := joinResp(t, serveReq(t, c, rcFor("c"), static("")).now())
		if r.ErrorCode != 0 || r.Generation != 1 {
			t.Fatalf("static join: %+v", r)
		}
		old := r.MemberID
		if sr := serveReq(t, c, rcFor("c"), syncReq("g", old, 1, map[string]string{old: "x"})).now().(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 {
			t.Fatalf("%+v", sr)
		}
		// It restarts: the same instance id with no member id replaces the old member, which is
		// fenced from then on; the new one keeps the leadership.
		r = joinResp(t, serveReq(t, c, rcFor("c"), static("")).now())
		if r.ErrorCode != 0 || r.MemberID == old || r.LeaderID != r.MemberID || r.Generation != 2 {
			t.Fatalf("static rejoin: %+v", r)
		}
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = "g", old, 2, kmsg.StringPtr("pod-1")
		hb.Version = 4
		if resp := serveReq(t, c, rcFor("c"), hb).now().(*kmsg.HeartbeatResponse); resp.ErrorCode != gErrFencedInstanceID {
			t.Fatalf("fenced member heartbeat: %+v", resp)
		}
		// Leaving by instance id.
		lv := kmsg.NewPtrLeaveGroupRequest()
		lv.Version = 4
		lv.Group = "g"
		lv.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: kmsg.StringPtr("pod-1")}}
		if resp := serveReq(t, c, rcFor("c"), lv).now().(*kmsg.LeaveGroupResponse); resp.Members[0].ErrorCode != 0 {
			t.Fatalf("static leave: %+v", resp)
		}
		if s := stateOf(c, "g"); s != stateDead {
			t.Fatalf("state %v after the only member left", s)
		}
	})
}

func TestGroupCloseAnswersParked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCoordinator(nil, nil, quietLog())
		a, ja := joinNew(t, c, "g", "a")
		ja.now()
		_, jb := joinNew(t, c, "g", "b")
		jb.parkedNow()
		c.close()
		if r := joinResp(t, jb.now()); r.ErrorCode != gErrCoordinatorNotAvailable {
			t.Fatalf("parked join at close: %+v", r)
		}
		if code := heartbeat(t, c, "g", a, 1); code != gErrCoordinatorNotAvailable {
			t.Fatalf("heartbeat after close: %d", code)
		}
		c.close()
	})
}
