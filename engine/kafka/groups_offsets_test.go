package kafka

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// These tests run the coordinator over a real engine (offset store on disk), on the wall clock:
// nothing in them waits for a timeout, and every asynchronous answer is awaited with a deadline.

func groupEngineOptions(dir string) engine.Options {
	return engine.Options{DataDir: dir, MemoryDir: filepath.Join(dir, "mem"), SegmentBytes: 1 << 20, Logger: groupTestLog()}
}

func openGroupEngine(t *testing.T, dir string) *engine.Engine {
	t.Helper()
	e, err := engine.Open(groupEngineOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// groupTopic creates topic name with parts partitions of n records each.
func groupTopic(t *testing.T, e *engine.Engine, name string, parts, n int) {
	t.Helper()
	if _, err := e.CreateTopic(wire.TopicConfig{Name: name, Partitions: uint32(parts)}); err != nil {
		t.Fatal(err)
	}
	b := wire.NewBatchBuilder(4096)
	for p := range int32(parts) {
		b.Reset()
		for i := range n {
			b.Append([]byte(fmt.Sprint(i)), []byte("v"), nil, 1700000000000)
		}
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.Publish(context.Background(), name, p, batch, wire.DurabilityWritten); err != nil {
			t.Fatal(err)
		}
	}
}

// wait returns the response, failing the test if none comes within 10s.
func (cl *groupCall) wait() kmsg.Response {
	cl.t.Helper()
	select {
	case r := <-cl.got:
		return r
	case <-time.After(10 * time.Second):
		cl.t.Fatal("no response within 10s")
		return nil
	}
}

func commitReq(group, member string, gen int32, topic string, offsets map[int32]int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group, req.MemberID, req.Generation = group, member, gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	for p, off := range offsets {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = p, off
		rp.Metadata = kmsg.StringPtr("ignored")
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
	return req
}

// commitCodes serves req and returns each partition's code.
func commitCodes(t *testing.T, c *coordinator, rc requestContext, req *kmsg.OffsetCommitRequest) map[int32]int16 {
	t.Helper()
	resp := serveGroup(t, c, rc, req).wait().(*kmsg.OffsetCommitResponse)
	out := map[int32]int16{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			out[rp.Partition] = rp.ErrorCode
		}
	}
	return out
}

// fetchOffsets serves an OffsetFetch v5 of one topic's partitions and returns offset and code of each.
func fetchOffsets(t *testing.T, c *coordinator, rc requestContext, group, topic string, parts ...int32) (int16, map[int32][2]int64) {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 5
	req.Group = group
	req.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: topic, Partitions: parts}}
	resp := serveGroup(t, c, rc, req).wait().(*kmsg.OffsetFetchResponse)
	out := map[int32][2]int64{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			out[rp.Partition] = [2]int64{rp.Offset, int64(rp.ErrorCode)}
		}
	}
	return resp.ErrorCode, out
}

func TestGroupOffsetsDurableAndShared(t *testing.T) {
	dir := t.TempDir()
	e := openGroupEngine(t, dir)
	groupTopic(t, e, "t", 3, 20)
	c := newCoordinator(e, func() auth.ACL { return nil }, groupTestLog())

	codes := commitCodes(t, c, groupRC("kcat"), commitReq("g", "", -1, "t", map[int32]int64{0: 5, 1: 7, 2: 20}))
	for p, code := range codes {
		if code != 0 {
			t.Fatalf("simple commit partition %d: code %d", p, code)
		}
	}
	// Answered only once durable: the commit is in the offsets log already.
	logged, err := os.ReadFile(filepath.Join(dir, "offsets", "offsets.log"))
	if err != nil || bytes.Count(logged, []byte("g")) < 3 {
		t.Fatalf("offsets log after the answer: %d bytes, err %v", len(logged), err)
	}
	_, got := fetchOffsets(t, c, groupRC("x"), "g", "t", 0, 1, 2, 3)
	want := map[int32][2]int64{0: {5, 0}, 1: {7, 0}, 2: {20, 0}, 3: {-1, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fetched %v, want %v", got, want)
	}
	// Committed offsets past the end, on a missing partition or topic are refused.
	codes = commitCodes(t, c, groupRC("kcat"), commitReq("g", "", -1, "t", map[int32]int64{0: 21, 9: 1}))
	if codes[0] != gErrOffsetOutOfRange || codes[9] != gErrUnknownTopicOrPartition {
		t.Fatalf("bad commits: %v", codes)
	}
	if codes := commitCodes(t, c, groupRC("kcat"), commitReq("g", "", -1, "nope", map[int32]int64{0: 1})); codes[0] != gErrUnknownTopicOrPartition {
		t.Fatalf("commit to a missing topic: %v", codes)
	}

	// The group's offsets are what `sluice group describe` shows, and native consumers resume there.
	info, err := e.DescribeGroup("g")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(info.Offsets) != fmt.Sprint([]wire.GroupOffset{{Topic: "t", Partition: 0, Committed: 5, End: 20},
		{Topic: "t", Partition: 1, Committed: 7, End: 20}, {Topic: "t", Partition: 2, Committed: 20, End: 20}}) {
		t.Fatalf("DescribeGroup offsets: %+v", info.Offsets)
	}
	if off := e.CommittedOffset("g", "t", 1); off != 7 {
		t.Fatalf("engine.CommittedOffset %d, want 7", off)
	}

	// v8 fetch of every offset of two groups (topics nil: all).
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 8
	req.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g"}, {Group: "none"}}
	resp := serveGroup(t, c, groupRC("x"), req).wait().(*kmsg.OffsetFetchResponse)
	if len(resp.Groups) != 2 || len(resp.Groups[0].Topics) != 1 || len(resp.Groups[0].Topics[0].Partitions) != 3 ||
		resp.Groups[0].Topics[0].Partitions[1].Offset != 7 || len(resp.Groups[1].Topics) != 0 {
		t.Fatalf("v8 fetch: %+v", resp.Groups)
	}

	// A broker restart: the offsets come back from disk.
	c.close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openGroupEngine(t, dir)
	c = newCoordinator(e, func() auth.ACL { return nil }, groupTestLog())
	defer c.close()
	if _, got := fetchOffsets(t, c, groupRC("x"), "g", "t", 0, 1, 2, 3); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart: fetched %v, want %v", got, want)
	}
}

// joinV3 sends a JoinGroup v3 (no MEMBER_ID_REQUIRED: a new member is admitted at once) for member
// ("" for a new one) and returns the call, answered once the rebalance completes.
func joinV3(t *testing.T, c *coordinator, group, member string) *groupCall {
	t.Helper()
	return serveGroup(t, c, groupRC("c"), joinGroupReq(group, member, 3))
}

func TestGroupOffsetCommitGenerations(t *testing.T) {
	e := openGroupEngine(t, t.TempDir())
	groupTopic(t, e, "t", 1, 20)
	c := newCoordinator(e, func() auth.ACL { return nil }, groupTestLog())
	defer c.close()

	r := asJoinResp(t, joinV3(t, c, "g", "").wait())
	a := r.MemberID
	if r.ErrorCode != 0 || r.Generation != 1 {
		t.Fatalf("join: %+v", r)
	}
	if sr := serveGroup(t, c, groupRC("c"), syncGroupReq("g", a, 1, map[string]string{a: "x"})).wait().(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 {
		t.Fatalf("sync: %+v", sr)
	}
	check := func(what string, req *kmsg.OffsetCommitRequest, want int16) {
		t.Helper()
		if got := commitCodes(t, c, groupRC("c"), req)[0]; got != want {
			t.Fatalf("%s: code %d, want %d", what, got, want)
		}
	}
	one := map[int32]int64{0: 3}
	check("member commit", commitReq("g", a, 1, "t", one), 0)
	check("old generation", commitReq("g", a, 0, "t", one), gErrIllegalGeneration)
	check("unknown member", commitReq("g", "ghost", 1, "t", one), gErrUnknownMemberID)
	check("simple commit into a group with members", commitReq("g", "", -1, "t", map[int32]int64{0: 9}), gErrUnknownMemberID)
	check("member of a group that does not exist", commitReq("h", a, 4, "t", one), gErrIllegalGeneration)
	check("simple commit, v0", func() *kmsg.OffsetCommitRequest { r := commitReq("h", "", 4, "t", one); r.Version = 0; return r }(), 0)
	if off := e.CommittedOffset("g", "t", 0); off != 3 {
		t.Fatalf("committed %d, want 3 (refused commits store nothing)", off)
	}

	// A second member starts a rebalance: the first may still commit for its generation while the
	// group prepares (what it processed before it rejoins), not once it waits for the assignment.
	jb := joinV3(t, c, "g", "")
	check("commit while PreparingRebalance", commitReq("g", a, 1, "t", map[int32]int64{0: 4}), 0)
	ja := joinV3(t, c, "g", a)
	ra, rb := asJoinResp(t, ja.wait()), asJoinResp(t, jb.wait())
	if ra.Generation != 2 || rb.Generation != 2 {
		t.Fatalf("rebalance: %+v / %+v", ra, rb)
	}
	check("commit while CompletingRebalance", commitReq("g", a, 2, "t", one), gErrRebalanceInProgress)
	check("commit of the previous generation", commitReq("g", a, 1, "t", one), gErrIllegalGeneration)
	if off := e.CommittedOffset("g", "t", 0); off != 4 {
		t.Fatalf("committed %d, want 4", off)
	}
}

func TestGroupACL(t *testing.T) {
	e := openGroupEngine(t, t.TempDir())
	groupTopic(t, e, "t", 1, 10)
	groupTopic(t, e, "u", 1, 10)
	acl := auth.Rules{
		{Principal: "alice", Actions: auth.ActConsume, Group: "g"},
		{Principal: "alice", Actions: auth.ActConsume, Topic: "t"},
		{Principal: "bob", Actions: auth.ActConsume, Topic: "*"},
	}
	c := newCoordinator(e, func() auth.ACL { return acl }, groupTestLog())
	defer c.close()
	alice, bob := requestContext{Principal: "alice", ClientID: "a"}, requestContext{Principal: "bob", ClientID: "b"}

	if r := asJoinResp(t, serveGroup(t, c, bob, joinGroupReq("g", "", 9)).wait()); r.ErrorCode != gErrGroupAuthorization {
		t.Fatalf("bob joins g: %+v", r)
	}
	if codes := commitCodes(t, c, bob, commitReq("g", "", -1, "t", map[int32]int64{0: 1})); codes[0] != gErrGroupAuthorization {
		t.Fatalf("bob commits to g: %v", codes)
	}
	if codes := commitCodes(t, c, alice, commitReq("g", "", -1, "u", map[int32]int64{0: 1})); codes[0] != gErrTopicAuthorization {
		t.Fatalf("alice commits on u: %v", codes)
	}
	if codes := commitCodes(t, c, alice, commitReq("g", "", -1, "t", map[int32]int64{0: 2})); codes[0] != 0 {
		t.Fatalf("alice commits on t: %v", codes)
	}
	if code, got := fetchOffsets(t, c, bob, "g", "t", 0); code != gErrGroupAuthorization || got[0][0] != -1 {
		t.Fatalf("bob fetches g: code %d %v", code, got)
	}
	if code, got := fetchOffsets(t, c, alice, "g", "u", 0); code != 0 || got[0] != [2]int64{-1, int64(gErrTopicAuthorization)} {
		t.Fatalf("alice fetches u: code %d %v", code, got)
	}
	if _, got := fetchOffsets(t, c, alice, "g", "t", 0); got[0] != [2]int64{2, 0} {
		t.Fatalf("alice fetches t: %v", got)
	}

	dreq := kmsg.NewPtrDescribeGroupsRequest()
	dreq.Version = 5
	dreq.Groups = []string{"g"}
	if d := serveGroup(t, c, bob, dreq).wait().(*kmsg.DescribeGroupsResponse); d.Groups[0].ErrorCode != gErrGroupAuthorization {
		t.Fatalf("bob describes g: %+v", d.Groups[0])
	}
	if d := serveGroup(t, c, alice, dreq).wait().(*kmsg.DescribeGroupsResponse); d.Groups[0].ErrorCode != 0 || d.Groups[0].State != "Empty" {
		t.Fatalf("alice describes g: %+v", d.Groups[0])
	}
	lreq := kmsg.NewPtrListGroupsRequest()
	if l := serveGroup(t, c, bob, lreq).wait().(*kmsg.ListGroupsResponse); len(l.Groups) != 0 {
		t.Fatalf("bob lists %+v", l.Groups)
	}
	if l := serveGroup(t, c, alice, lreq).wait().(*kmsg.ListGroupsResponse); len(l.Groups) != 1 || l.Groups[0].Group != "g" {
		t.Fatalf("alice lists %+v", l.Groups)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"g"}
	if d := serveGroup(t, c, bob, del).wait().(*kmsg.DeleteGroupsResponse); d.Groups[0].ErrorCode != gErrGroupAuthorization {
		t.Fatalf("bob deletes g: %+v", d.Groups)
	}
	// Deleting a group takes admin on the topics it has offsets on, as on the native face.
	if d := serveGroup(t, c, alice, del).wait().(*kmsg.DeleteGroupsResponse); d.Groups[0].ErrorCode != gErrTopicAuthorization {
		t.Fatalf("alice deletes g without admin on t: %+v", d.Groups)
	}
	if off := e.CommittedOffset("g", "t", 0); off != 2 {
		t.Fatalf("a refused delete dropped the offsets: %d", off)
	}
}

func TestGroupNativeNameRefused(t *testing.T) {
	e := openGroupEngine(t, t.TempDir())
	groupTopic(t, e, "t", 1, 10)
	c := newCoordinator(e, func() auth.ACL { return nil }, groupTestLog())
	defer c.close()
	done := make(chan error, 1)
	e.CommitOffset("native", "t", 0, 4, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "t", Group: "native", Partition: -1})
	if err != nil {
		t.Fatal(err)
	}

	if r := asJoinResp(t, serveGroup(t, c, groupRC("k"), joinGroupReq("native", "", 9)).wait()); r.ErrorCode != gErrInconsistentGroupProtocol {
		t.Fatalf("Kafka join of a native group: %+v", r)
	}
	if codes := commitCodes(t, c, groupRC("k"), commitReq("native", "", -1, "t", map[int32]int64{0: 9})); codes[0] != gErrUnknownMemberID {
		t.Fatalf("Kafka commit into a native group: %v", codes)
	}
	if off := e.CommittedOffset("native", "t", 0); off != 4 {
		t.Fatalf("native offset %d, want 4 (untouched)", off)
	}
	// Reading it is harmless, and so is describing it.
	if _, got := fetchOffsets(t, c, groupRC("k"), "native", "t", 0); got[0][0] != 4 {
		t.Fatalf("fetch of a native group's offset: %v", got)
	}
	dreq := kmsg.NewPtrDescribeGroupsRequest()
	dreq.Groups = []string{"native"}
	d := serveGroup(t, c, groupRC("k"), dreq).wait().(*kmsg.DescribeGroupsResponse).Groups[0]
	if d.State != "Stable" || d.ProtocolType != nativeProtocolType || len(d.Members) != 1 {
		t.Fatalf("describe of a native group: %+v", d)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"native"}
	if r := serveGroup(t, c, groupRC("k"), del).wait().(*kmsg.DeleteGroupsResponse); r.Groups[0].ErrorCode != gErrNonEmptyGroup {
		t.Fatalf("delete of a native group with members: %+v", r.Groups)
	}

	// Work-queue members hold their group's name as well.
	q, err := e.SubscribeLocal(wire.Subscribe{Topic: "t", Group: "queue", Mode: wire.ModeQueue})
	if err != nil {
		t.Fatal(err)
	}
	if r := asJoinResp(t, serveGroup(t, c, groupRC("k"), joinGroupReq("queue", "", 9)).wait()); r.ErrorCode != gErrInconsistentGroupProtocol {
		t.Fatalf("Kafka join of a work queue's group: %+v", r)
	}
	q.Close()

	// Once the native members are gone, the name is free for a Kafka group, which starts from
	// the offsets the native one committed.
	l.Close()
	r := asJoinResp(t, joinV3(t, c, "native", "").wait())
	if r.ErrorCode != 0 {
		t.Fatalf("join once the native members left: %+v", r)
	}
	if _, got := fetchOffsets(t, c, groupRC("k"), "native", "t", 0); got[0][0] != 4 {
		t.Fatalf("fetch: %v", got)
	}
}

func TestGroupDescribeListDelete(t *testing.T) {
	e := openGroupEngine(t, t.TempDir())
	groupTopic(t, e, "t", 1, 10)
	c := newCoordinator(e, func() auth.ACL { return nil }, groupTestLog())
	defer c.close()

	r := asJoinResp(t, joinV3(t, c, "live", "").wait())
	sr := serveGroup(t, c, groupRC("c"), syncGroupReq("live", r.MemberID, 1, map[string]string{r.MemberID: "assigned"})).wait().(*kmsg.SyncGroupResponse)
	if sr.ErrorCode != 0 {
		t.Fatal(sr)
	}
	if codes := commitCodes(t, c, groupRC("c"), commitReq("old", "", -1, "t", map[int32]int64{0: 3})); codes[0] != 0 {
		t.Fatal(codes)
	}

	dreq := kmsg.NewPtrDescribeGroupsRequest()
	dreq.Version = 5
	dreq.Groups = []string{"live", "old", "never"}
	dreq.IncludeAuthorizedOperations = true
	d := serveGroup(t, c, groupRC("c"), dreq).wait().(*kmsg.DescribeGroupsResponse)
	live, old, never := d.Groups[0], d.Groups[1], d.Groups[2]
	if live.State != "Stable" || live.ProtocolType != "consumer" || live.Protocol != "range" || len(live.Members) != 1 ||
		string(live.Members[0].MemberAssignment) != "assigned" || string(live.Members[0].ProtocolMetadata) != "meta-range" ||
		live.Members[0].ClientHost != "/127.0.0.1" || live.AuthorizedOperations == -2147483648 {
		t.Fatalf("live: %+v", live)
	}
	if old.State != "Empty" || old.ErrorCode != 0 || never.State != "Dead" || never.ErrorCode != 0 {
		t.Fatalf("old %+v, never %+v", old, never)
	}
	dreq.Version = 6
	if d := serveGroup(t, c, groupRC("c"), dreq).wait().(*kmsg.DescribeGroupsResponse); d.Groups[2].ErrorCode != gErrGroupIDNotFound {
		t.Fatalf("v6 unknown group: %+v", d.Groups[2])
	}

	lreq := kmsg.NewPtrListGroupsRequest()
	lreq.Version = 4
	l := serveGroup(t, c, groupRC("c"), lreq).wait().(*kmsg.ListGroupsResponse)
	if len(l.Groups) != 2 || l.Groups[0].Group != "live" || l.Groups[0].GroupState != "Stable" || l.Groups[1].Group != "old" || l.Groups[1].GroupState != "Empty" {
		t.Fatalf("list: %+v", l.Groups)
	}
	lreq.StatesFilter = []string{"empty"}
	if l := serveGroup(t, c, groupRC("c"), lreq).wait().(*kmsg.ListGroupsResponse); len(l.Groups) != 1 || l.Groups[0].Group != "old" {
		t.Fatalf("list of Empty groups: %+v", l.Groups)
	}

	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"live", "old", "never"}
	dr := serveGroup(t, c, groupRC("c"), del).wait().(*kmsg.DeleteGroupsResponse)
	if dr.Groups[0].ErrorCode != gErrNonEmptyGroup || dr.Groups[1].ErrorCode != 0 || dr.Groups[2].ErrorCode != gErrGroupIDNotFound {
		t.Fatalf("delete: %+v", dr.Groups)
	}
	if off := e.CommittedOffset("old", "t", 0); off != -1 {
		t.Fatalf("deleted group still has offset %d", off)
	}
	if _, err := e.DescribeGroup("old"); err == nil {
		t.Fatal("deleted group still described")
	}
}

// TestGroupEveryVersion serves every group API at every version kmsg knows, from a member's first
// join to the group's deletion, and checks that each is answered once, encodes, and succeeds.
func TestGroupEveryVersion(t *testing.T) {
	e := openGroupEngine(t, t.TempDir())
	groupTopic(t, e, "t", 2, 10)
	c := newCoordinator(e, func() auth.ACL { return nil }, groupTestLog())
	defer c.close()
	rc := groupRC("v")
	ok := func(what string, v int16, code int16) {
		t.Helper()
		if code != 0 {
			t.Fatalf("%s v%d: code %d", what, v, code)
		}
	}
	for v := range (&kmsg.JoinGroupRequest{}).MaxVersion() + 1 {
		group := fmt.Sprintf("g%d", v)
		r := asJoinResp(t, serveGroup(t, c, rc, joinGroupReq(group, "", v)).wait())
		if v >= 4 {
			if r.ErrorCode != gErrMemberIDRequired {
				t.Fatalf("join v%d: %+v", v, r)
			}
			r = asJoinResp(t, serveGroup(t, c, rc, joinGroupReq(group, r.MemberID, v)).wait())
		}
		ok("join", v, r.ErrorCode)
		id, gen := r.MemberID, r.Generation

		sv := min(v, (&kmsg.SyncGroupRequest{}).MaxVersion())
		sreq := syncGroupReq(group, id, gen, map[string]string{id: "a"})
		sreq.Version = sv
		ok("sync", sv, serveGroup(t, c, rc, sreq).wait().(*kmsg.SyncGroupResponse).ErrorCode)

		hv := min(v, (&kmsg.HeartbeatRequest{}).MaxVersion())
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Version, hb.Group, hb.MemberID, hb.Generation = hv, group, id, gen
		ok("heartbeat", hv, serveGroup(t, c, rc, hb).wait().(*kmsg.HeartbeatResponse).ErrorCode)

		for cv := range int16(maxNamedOffsetVersion + 1) {
			creq := commitReq(group, id, gen, "t", map[int32]int64{0: int64(cv), 1: 1})
			creq.Version = cv
			for p, code := range commitCodes(t, c, rc, creq) {
				if cv == 0 { // v0 carries no member: a simple commit, refused while the group has members
					if code != gErrUnknownMemberID {
						t.Fatalf("commit v0 into a group with members: code %d", code)
					}
					continue
				}
				ok(fmt.Sprintf("commit partition %d", p), cv, code)
			}
		}
		for fv := range int16(maxNamedOffsetVersion + 1) {
			freq := kmsg.NewPtrOffsetFetchRequest()
			freq.Version = fv
			topics := []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}
			if fv >= 8 {
				freq.Groups = []kmsg.OffsetFetchRequestGroup{{Group: group, Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{0, 1}}}}}
			} else {
				freq.Group, freq.Topics = group, topics
			}
			resp := serveGroup(t, c, rc, freq).wait().(*kmsg.OffsetFetchResponse)
			var offs []int64
			for _, rt := range resp.Topics {
				for _, rp := range rt.Partitions {
					offs = append(offs, rp.Offset)
				}
			}
			for _, rg := range resp.Groups {
				for _, rt := range rg.Topics {
					for _, rp := range rt.Partitions {
						offs = append(offs, rp.Offset)
					}
				}
			}
			if want := []int64{maxNamedOffsetVersion, 1}; fmt.Sprint(offs) != fmt.Sprint(want) { // the last commit's
				t.Fatalf("fetch v%d: %v, want %v", fv, offs, want)
			}
		}

		// v10 names topics by id, which the broker does not keep: refused.
		creq := commitReq(group, id, gen, "t", map[int32]int64{0: 1})
		creq.Version = maxNamedOffsetVersion + 1
		if codes := commitCodes(t, c, rc, creq); codes[0] != gErrUnsupportedVersion {
			t.Fatalf("commit v%d: %v", creq.Version, codes)
		}
		freq := kmsg.NewPtrOffsetFetchRequest()
		freq.Version, freq.Groups = maxNamedOffsetVersion+1, []kmsg.OffsetFetchRequestGroup{{Group: group}}
		if resp := serveGroup(t, c, rc, freq).wait().(*kmsg.OffsetFetchResponse); resp.Groups[0].ErrorCode != gErrUnsupportedVersion {
			t.Fatalf("fetch v%d: %+v", freq.Version, resp.Groups)
		}

		lv := min(v, (&kmsg.LeaveGroupRequest{}).MaxVersion())
		lreq := kmsg.NewPtrLeaveGroupRequest()
		lreq.Version, lreq.Group = lv, group
		if lv < 3 {
			lreq.MemberID = id
		} else {
			lreq.Members = []kmsg.LeaveGroupRequestMember{{MemberID: id}}
		}
		lresp := serveGroup(t, c, rc, lreq).wait().(*kmsg.LeaveGroupResponse)
		ok("leave", lv, lresp.ErrorCode)
		if lv >= 3 {
			ok("leave member", lv, lresp.Members[0].ErrorCode)
		}
	}
	for v := range (&kmsg.DescribeGroupsRequest{}).MaxVersion() + 1 {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Version, req.Groups = v, []string{"g0"}
		resp := serveGroup(t, c, rc, req).wait().(*kmsg.DescribeGroupsResponse)
		if resp.Groups[0].ErrorCode != 0 || resp.Groups[0].State != "Empty" {
			t.Fatalf("describe v%d: %+v", v, resp.Groups[0])
		}
	}
	for v := range (&kmsg.ListGroupsRequest{}).MaxVersion() + 1 {
		req := kmsg.NewPtrListGroupsRequest()
		req.Version = v
		resp := serveGroup(t, c, rc, req).wait().(*kmsg.ListGroupsResponse)
		if want := int((&kmsg.JoinGroupRequest{}).MaxVersion()) + 1; resp.ErrorCode != 0 || len(resp.Groups) != want {
			t.Fatalf("list v%d: %d groups, want %d", v, len(resp.Groups), want)
		}
	}
	for v := range (&kmsg.DeleteGroupsRequest{}).MaxVersion() + 1 {
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Version, req.Groups = v, []string{fmt.Sprintf("g%d", v)}
		ok("delete", v, serveGroup(t, c, rc, req).wait().(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode)
	}
}
