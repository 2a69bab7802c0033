package server

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// The principals of the authorization tests: alice and bob hold the rules below, carol holds the
// prefix orders.* (which must not reach orders.dlq), root holds everything.
var aclTokens = map[string]string{"ta": "alice", "tb": "bob", "tc": "carol", "tr": "root"}

func aclRules(t testing.TB) Rules {
	t.Helper()
	var rs Rules
	for _, s := range []string{
		"alice:all:orders",
		"alice:all:scratch.*",
		"alice:consume:group:billing*",
		"bob:produce,consume:public",
		"bob:produce:scratch.*", // produce without admin: may not create
		"bob:consume:group:bob-*",
		"carol:all:orders.*",
		"carol:consume:group:*",
		"root:all:*",
		"root:all:group:*",
	} {
		r, err := ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

// startACLServer runs an auto-creating broker (startServer) with aclTokens and aclRules.
func startACLServer(t testing.TB) (*Server, *engine.Engine) {
	t.Helper()
	rules := aclRules(t)
	return startServer(t, func(o *Options) {
		o.Tokens = aclTokens
		o.ACL = rules
	})
}

// as dials s, says hello and authenticates with token ("" stays unauthenticated).
func as(t testing.TB, s *Server, token string) *rawConn {
	t.Helper()
	c := dial(t, s)
	c.hello()
	if token != "" {
		corr := c.send(wire.OpAuth, 0, &wire.Auth{Mechanism: "token", Payload: []byte(token)})
		var a wire.Auth
		c.expectReply(corr, &a)
		if string(a.Payload) != aclTokens[token] {
			t.Fatalf("auth reply names %q, want %q", a.Payload, aclTokens[token])
		}
	}
	return c
}

// answer reads the answer to corr, skipping pushes (deliveries, assignments): its error code
// (CodeOK for a response) and body.
func (r *rawConn) answer(corr uint32) (wire.Code, []byte) {
	r.t.Helper()
	for {
		f := r.mustNext()
		if f.Corr == 0 && (f.Op == wire.OpDeliver || f.Op == wire.OpAssign) {
			continue
		}
		if f.Corr != corr {
			r.t.Fatalf("got %v corr %d, want the answer to %d", f.Op, f.Corr, corr)
		}
		if f.Op != wire.OpError {
			return wire.CodeOK, f.Body
		}
		var eb wire.ErrorBody
		if err := eb.Decode(f.Body); err != nil {
			r.t.Fatal(err)
		}
		return eb.Code, nil
	}
}

// do sends a request and returns the code of its answer.
func (r *rawConn) do(op wire.Op, m message) wire.Code {
	r.t.Helper()
	code, _ := r.answer(r.send(op, 0, m))
	return code
}

// must sends a request that must succeed.
func (r *rawConn) must(op wire.Op, m message) []byte {
	r.t.Helper()
	code, body := r.answer(r.send(op, 0, m))
	if code != wire.CodeOK {
		r.t.Fatalf("%v: %v", op, code)
	}
	return body
}

type rawBody []byte

func (b rawBody) Append(dst []byte) []byte { return append(dst, b...) }

func produceMsg(t testing.TB, topic string) *wire.Produce {
	return &wire.Produce{Durability: wire.DurabilityWritten, Partition: -1, Topic: []byte(topic), Batches: batchOf(t, 1, "acl")}
}

func subMsg(id uint32, topic, group string, mode wire.SubMode) *wire.Subscribe {
	part := int32(-1)
	if group == "" {
		part = 0
	}
	return &wire.Subscribe{SubID: id, Topic: topic, Partition: part, Group: group, Mode: mode, Credit: 1 << 20}
}

func inboxConfig(name string) *wire.TopicConfig {
	return &wire.TopicConfig{Name: name, Partitions: 1, Flags: wire.TopicMemory}
}

func topicNames(t testing.TB, body []byte) []string {
	var l wire.TopicList
	if err := l.Decode(body); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tc := range l.Topics {
		names = append(names, tc.Name)
	}
	return names
}

func groupNames(t testing.TB, body []byte) []string {
	var l wire.GroupList
	if err := l.Decode(body); err != nil {
		t.Fatal(err)
	}
	return l.Groups
}

func wantCode(t testing.TB, what string, got, want wire.Code) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

// TestAutoCreateNeedsAdmin (issue 12, item 1): a produce the ACL denies creates nothing; creating by a
// produce needs admin on the name as well as produce; describe and subscribe never create, with or
// without ACLs.
func TestAutoCreateNeedsAdmin(t *testing.T) {
	s, e := startACLServer(t)
	mallory := as(t, s, "tb") // bob: produce on scratch.*, no admin; nothing on other names
	wantCode(t, "produce to a name with no rights", mallory.do(wire.OpProduce, produceMsg(t, "fill-1")), wire.CodeNotAuthorized)
	wantCode(t, "produce without admin on the name", mallory.do(wire.OpProduce, produceMsg(t, "scratch.fill-2")), wire.CodeNotAuthorized)
	wantCode(t, "describe of a name with no rights", mallory.do(wire.OpDescribe, &wire.Name{Name: "fill-3"}), wire.CodeNotAuthorized)
	wantCode(t, "describe of a name with produce rights", mallory.do(wire.OpDescribe, &wire.Name{Name: "scratch.fill-4"}), wire.CodeUnknownTopic)
	wantCode(t, "subscribe to a name with no rights", mallory.do(wire.OpSubscribe, subMsg(1, "fill-5", "", wire.ModeStream)), wire.CodeNotAuthorized)
	alice := as(t, s, "ta")
	wantCode(t, "subscribe to a name alice administers", alice.do(wire.OpSubscribe, subMsg(1, "scratch.fill-6", "", wire.ModeStream)), wire.CodeUnknownTopic)
	wantCode(t, "describe of a name alice administers", alice.do(wire.OpDescribe, &wire.Name{Name: "scratch.fill-7"}), wire.CodeUnknownTopic)
	for _, name := range []string{"fill-1", "scratch.fill-2", "fill-3", "scratch.fill-4", "fill-5", "scratch.fill-6", "scratch.fill-7"} {
		if e.TopicByName(name) != nil {
			t.Errorf("topic %s was created", name)
		}
	}
	// produce and admin on the name: the produce creates it.
	alice.must(wire.OpProduce, produceMsg(t, "scratch.made"))
	if e.TopicByName("scratch.made") == nil {
		t.Fatal("a produce with produce and admin rights did not create the topic")
	}
}

// TestDescribeAndSubscribeNeverCreate: without ACLs, on an auto-creating broker, describe and
// subscribe of an unknown topic answer CodeUnknownTopic and create nothing; a produce creates it.
func TestDescribeAndSubscribeNeverCreate(t *testing.T) {
	s, e := startServer(t, nil)
	c := dial(t, s)
	c.hello()
	wantCode(t, "describe", c.do(wire.OpDescribe, &wire.Name{Name: "fresh"}), wire.CodeUnknownTopic)
	wantCode(t, "subscribe", c.do(wire.OpSubscribe, subMsg(1, "fresh", "", wire.ModeStream)), wire.CodeUnknownTopic)
	wantCode(t, "group subscribe", c.do(wire.OpSubscribe, subMsg(2, "fresh", "g", wire.ModeStream)), wire.CodeUnknownTopic)
	if e.TopicByName("fresh") != nil {
		t.Fatal("describe or subscribe created the topic")
	}
	c.must(wire.OpProduce, produceMsg(t, "fresh"))
	if e.TopicByName("fresh") == nil {
		t.Fatal("produce did not auto-create")
	}
}

// TestListingsFiltered (issue 12, item 2): a principal allowed only consume on public sees only
// public, cannot describe payments nor fetch its offsets, and does not see another principal's group.
func TestListingsFiltered(t *testing.T) {
	s, _ := startACLServer(t)
	root := as(t, s, "tr")
	for _, name := range []string{"public", "payments", "orders"} {
		root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: name, Partitions: 1})
		root.must(wire.OpProduce, produceMsg(t, name))
	}
	root.must(wire.OpCommit, &wire.Commit{Group: "billing-payments", Topic: "payments", Partition: 0, Offset: 1})
	root.must(wire.OpCommit, &wire.Commit{Group: "bob-public", Topic: "public", Partition: 0, Offset: 1})
	root.must(wire.OpCommit, &wire.Commit{Group: "billing-payments", Topic: "orders", Partition: 0, Offset: 1})

	bob := as(t, s, "tb")
	if got := topicNames(t, bob.must(wire.OpListTopics, nil)); !slices.Equal(got, []string{"public"}) {
		t.Fatalf("bob lists topics %v, want [public]", got)
	}
	wantCode(t, "bob describes payments", bob.do(wire.OpDescribe, &wire.Name{Name: "payments"}), wire.CodeNotAuthorized)
	wantCode(t, "bob fetches payments' offset", bob.do(wire.OpFetchOffset, &wire.Commit{Group: "bob-public", Topic: "payments"}), wire.CodeNotAuthorized)
	if got := groupNames(t, bob.must(wire.OpListGroups, nil)); !slices.Equal(got, []string{"bob-public"}) {
		t.Fatalf("bob lists groups %v, want [bob-public]", got)
	}
	wantCode(t, "bob describes another principal's group", bob.do(wire.OpDescribeGrp, &wire.Name{Name: "billing-payments"}), wire.CodeNotAuthorized)

	// alice may describe the group billing-payments but only orders among its topics.
	alice := as(t, s, "ta")
	var gi wire.GroupInfo
	if err := gi.Decode(alice.must(wire.OpDescribeGrp, &wire.Name{Name: "billing-payments"})); err != nil {
		t.Fatal(err)
	}
	if len(gi.Offsets) != 1 || gi.Offsets[0].Topic != "orders" {
		t.Fatalf("alice's description of billing-payments shows %+v, want only orders", gi.Offsets)
	}
	if got := topicNames(t, root.must(wire.OpListTopics, nil)); len(got) != 3 {
		t.Fatalf("root lists %v, want every topic", got)
	}
}

// TestDerivedObjects (issue 12, item 3): a dead-letter topic takes its source's rights, never a
// prefix rule's on its own name; a reply inbox belongs to the principal named in it.
func TestDerivedObjects(t *testing.T) {
	s, _ := startACLServer(t)
	root := as(t, s, "tr")
	root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: "orders", Partitions: 1})
	root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: "orders.dlq", Partitions: 1})
	root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: "orders.eu", Partitions: 1})
	root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: "orders.eu.dlq", Partitions: 1})
	root.must(wire.OpProduce, produceMsg(t, "orders.dlq"))

	alice := as(t, s, "ta") // exactly orders
	alice.must(wire.OpSubscribe, subMsg(1, "orders.dlq", "", wire.ModeStream))
	alice.must(wire.OpDescribe, &wire.Name{Name: "orders.dlq"})
	carol := as(t, s, "tc") // orders.*
	wantCode(t, "orders.* subscribes to orders.dlq", carol.do(wire.OpSubscribe, subMsg(1, "orders.dlq", "", wire.ModeStream)), wire.CodeNotAuthorized)
	wantCode(t, "orders.* describes orders.dlq", carol.do(wire.OpDescribe, &wire.Name{Name: "orders.dlq"}), wire.CodeNotAuthorized)
	carol.must(wire.OpSubscribe, subMsg(2, "orders.eu.dlq", "", wire.ModeStream))
	if got := topicNames(t, carol.must(wire.OpListTopics, nil)); !slices.Equal(got, []string{"orders.eu", "orders.eu.dlq"}) {
		t.Fatalf("carol lists %v", got)
	}
	bob := as(t, s, "tb")
	wantCode(t, "a principal without rights on orders produces to orders.dlq", bob.do(wire.OpProduce, produceMsg(t, "orders.dlq")), wire.CodeNotAuthorized)

	// alice's inbox: no rule names it; only alice reads it; bob may reply to it but not see it listed.
	inbox := wire.InboxName("alice", "00ff")
	wantCode(t, "bob creates an inbox named for alice", bob.do(wire.OpCreateTopic, inboxConfig(inbox)), wire.CodeNotAuthorized)
	wantCode(t, "alice creates a disk inbox", alice.do(wire.OpCreateTopic, &wire.TopicConfig{Name: inbox, Partitions: 1}), wire.CodeNotAuthorized)
	wantCode(t, "alice auto-creates her inbox by a produce", alice.do(wire.OpProduce, produceMsg(t, inbox)), wire.CodeNotAuthorized)
	alice.must(wire.OpCreateTopic, inboxConfig(inbox))
	wantCode(t, "bob subscribes to alice's inbox", bob.do(wire.OpSubscribe, subMsg(1, inbox, "", wire.ModeStream)), wire.CodeNotAuthorized)
	wantCode(t, "root subscribes to alice's inbox", root.do(wire.OpSubscribe, subMsg(1, inbox, "", wire.ModeStream)), wire.CodeNotAuthorized)
	bob.must(wire.OpDescribe, &wire.Name{Name: inbox})
	bob.must(wire.OpProduce, produceMsg(t, inbox))
	if got := topicNames(t, bob.must(wire.OpListTopics, nil)); slices.Contains(got, inbox) {
		t.Fatalf("bob's listing shows alice's inbox: %v", got)
	}
	if got := topicNames(t, root.must(wire.OpListTopics, nil)); slices.Contains(got, inbox) {
		t.Fatalf("root's listing shows alice's inbox: %v", got)
	}
	if got := topicNames(t, alice.must(wire.OpListTopics, nil)); !slices.Contains(got, inbox) {
		t.Fatalf("alice's listing misses her inbox: %v", got)
	}
	alice.must(wire.OpSubscribe, subMsg(3, inbox, "", wire.ModeStream))
	wantCode(t, "bob deletes alice's inbox", bob.do(wire.OpDeleteTopic, &wire.Name{Name: inbox}), wire.CodeNotAuthorized)
}

// TestGroupsAuthorizedPerGroup (issue 12, item 4): consume on a topic does not open every group:
// joining, committing, fetching and queue consumption need consume on the group as well.
func TestGroupsAuthorizedPerGroup(t *testing.T) {
	s, e := startACLServer(t)
	root := as(t, s, "tr")
	root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: "public", Partitions: 1})
	bob := as(t, s, "tb") // consume on public; groups bob-*
	wantCode(t, "commit to another's group", bob.do(wire.OpCommit, &wire.Commit{Group: "billing", Topic: "public", Partition: 0, Offset: 123456}), wire.CodeNotAuthorized)
	if off := e.CommittedOffset("billing", "public", 0); off != -1 {
		t.Fatalf("the refused commit stored offset %d", off)
	}
	wantCode(t, "fetch another's group", bob.do(wire.OpFetchOffset, &wire.Commit{Group: "billing", Topic: "public"}), wire.CodeNotAuthorized)
	wantCode(t, "join another's group", bob.do(wire.OpSubscribe, subMsg(1, "public", "billing", wire.ModeStream)), wire.CodeNotAuthorized)
	wantCode(t, "queue as another's group", bob.do(wire.OpSubscribe, subMsg(2, "public", "billing", wire.ModeQueue)), wire.CodeNotAuthorized)
	bob.must(wire.OpCommit, &wire.Commit{Group: "bob-1", Topic: "public", Partition: 0, Offset: 0})
	bob.must(wire.OpSubscribe, subMsg(3, "public", "bob-1", wire.ModeStream))
	bob.must(wire.OpSubscribe, subMsg(4, "public", "bob-q", wire.ModeQueue))
}

// TestParseRule: the three rule forms, and the rules refused.
func TestParseRule(t *testing.T) {
	good := map[string]Rule{
		"alice:produce,consume:orders.*": {Principal: "alice", Actions: ActProduce | ActConsume, Topic: "orders.*"},
		"alice:all:topic:orders":         {Principal: "alice", Actions: ActProduce | ActConsume | ActAdmin, Topic: "orders"},
		"*:consume:group:billing*":       {Principal: "*", Actions: ActConsume, Group: "billing*"},
		"ops:all:group:a:b":              {Principal: "ops", Actions: ActConsume, Group: "a:b"},
		"ops:admin:*":                    {Principal: "ops", Actions: ActAdmin, Topic: "*"},
	}
	for s, want := range good {
		got, err := ParseRule(s)
		if err != nil || got != want {
			t.Errorf("ParseRule(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{
		"alice:consume", ":consume:x", "alice:consume:", "alice:read:x", "alice:produce:group:g",
		"alice:admin:group:g", "alice:consume:group:", "alice:consume:a:b", "alice:consume:_inbox.*",
		"alice:consume:_inbox.alice.1", "alice:consume:orders.dlq", "alice:consume:topic:",
	} {
		if r, err := ParseRule(s); err == nil {
			t.Errorf("ParseRule(%q) = %+v, want an error", s, r)
		}
	}
}

// TestAuthorizeDoesNotAllocate: the check on the produce path allocates nothing on a grant.
func TestAuthorizeDoesNotAllocate(t *testing.T) {
	rules := aclRules(t)
	var acl ACL = rules
	if n := testing.AllocsPerRun(100, func() {
		if !auth.MayTopic(acl, "carol", ActProduce, "orders.eu") || !auth.MayTopic(acl, "alice", ActConsume, "orders.dlq") {
			t.Fatal("denied")
		}
	}); n != 0 {
		t.Errorf("mayTopic allocates %v times", n)
	}
}

// tableEnv is what a row's case gets: connections as the allowed principal (alice), the denied one
// (bob), root for setup, and one that never authenticated.
type tableEnv struct {
	t                        *testing.T
	e                        *engine.Engine
	alice, bob, root, noAuth *rawConn
	n                        int
}

// fresh returns a name not used before in the walk.
func (v *tableEnv) fresh(prefix string) string {
	v.n++
	return prefix + strconv.Itoa(v.n)
}

// securityTable maps each row of docs/security.md's table to its case: allowed runs the operation as
// a principal the row allows and requires success; denied runs it as one the row refuses.
var securityTable = map[string]struct{ allowed, denied func(v *tableEnv) }{
	"topic-produce": {
		func(v *tableEnv) {
			v.root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: "orders", Partitions: 1})
			v.alice.must(wire.OpProduce, produceMsg(v.t, "orders"))
		},
		func(v *tableEnv) {
			wantCode(v.t, "produce", v.bob.do(wire.OpProduce, produceMsg(v.t, "orders")), wire.CodeNotAuthorized)
		},
	},
	"admin-auto-create": {
		func(v *tableEnv) {
			name := v.fresh("scratch.p")
			v.alice.must(wire.OpProduce, produceMsg(v.t, name))
			if v.e.TopicByName(name) == nil {
				v.t.Fatal("not created")
			}
		},
		func(v *tableEnv) {
			name := v.fresh("scratch.p")
			wantCode(v.t, "produce creating", v.bob.do(wire.OpProduce, produceMsg(v.t, name)), wire.CodeNotAuthorized)
			if v.e.TopicByName(name) != nil {
				v.t.Fatal("created")
			}
		},
	},
	"topic-subscribe": {
		func(v *tableEnv) { v.alice.must(wire.OpSubscribe, subMsg(v.sub(), "orders", "", wire.ModeStream)) },
		func(v *tableEnv) {
			wantCode(v.t, "subscribe", v.bob.do(wire.OpSubscribe, subMsg(v.sub(), "orders", "", wire.ModeStream)), wire.CodeNotAuthorized)
		},
	},
	"topic-describe": {
		func(v *tableEnv) { v.alice.must(wire.OpDescribe, &wire.Name{Name: "orders"}) },
		func(v *tableEnv) {
			wantCode(v.t, "describe", v.bob.do(wire.OpDescribe, &wire.Name{Name: "orders"}), wire.CodeNotAuthorized)
		},
	},
	"admin-create": {
		func(v *tableEnv) {
			v.alice.must(wire.OpCreateTopic, &wire.TopicConfig{Name: v.fresh("scratch.c"), Partitions: 1})
		},
		func(v *tableEnv) {
			wantCode(v.t, "create", v.bob.do(wire.OpCreateTopic, &wire.TopicConfig{Name: v.fresh("scratch.c"), Partitions: 1}), wire.CodeNotAuthorized)
		},
	},
	"admin-delete": {
		func(v *tableEnv) {
			name := v.fresh("scratch.d")
			v.root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: name, Partitions: 1})
			v.alice.must(wire.OpDeleteTopic, &wire.Name{Name: name})
		},
		func(v *tableEnv) {
			name := v.fresh("scratch.d")
			v.root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: name, Partitions: 1})
			wantCode(v.t, "delete", v.bob.do(wire.OpDeleteTopic, &wire.Name{Name: name}), wire.CodeNotAuthorized)
		},
	},
	"dlq-subscribe": {
		func(v *tableEnv) {
			v.root.must(wire.OpCreateTopic, &wire.TopicConfig{Name: "orders.dlq", Partitions: 1})
			v.alice.must(wire.OpSubscribe, subMsg(v.sub(), "orders.dlq", "", wire.ModeStream))
		},
		func(v *tableEnv) {
			wantCode(v.t, "subscribe", v.bob.do(wire.OpSubscribe, subMsg(v.sub(), "orders.dlq", "", wire.ModeStream)), wire.CodeNotAuthorized)
		},
	},
	"dlq-produce": {
		func(v *tableEnv) { v.alice.must(wire.OpProduce, produceMsg(v.t, "orders.dlq")) },
		func(v *tableEnv) {
			wantCode(v.t, "produce", v.bob.do(wire.OpProduce, produceMsg(v.t, "orders.dlq")), wire.CodeNotAuthorized)
		},
	},
	"dlq-describe": {
		func(v *tableEnv) { v.alice.must(wire.OpDescribe, &wire.Name{Name: "orders.dlq"}) },
		func(v *tableEnv) {
			wantCode(v.t, "describe", v.bob.do(wire.OpDescribe, &wire.Name{Name: "orders.dlq"}), wire.CodeNotAuthorized)
		},
	},
	"dlq-create": {
		func(v *tableEnv) {
			v.alice.must(wire.OpCreateTopic, &wire.TopicConfig{Name: v.fresh("scratch.q") + ".dlq", Partitions: 1})
		},
		func(v *tableEnv) {
			// bob produces and consumes public, but has no admin on it.
			wantCode(v.t, "create", v.bob.do(wire.OpCreateTopic, &wire.TopicConfig{Name: "public.dlq", Partitions: 1}), wire.CodeNotAuthorized)
		},
	},
	"group-join": {
		func(v *tableEnv) {
			v.alice.must(wire.OpSubscribe, subMsg(v.sub(), "orders", "billing-1", wire.ModeStream))
		},
		func(v *tableEnv) {
			v.root.createOnce(v, "public")
			wantCode(v.t, "join", v.bob.do(wire.OpSubscribe, subMsg(v.sub(), "public", "billing-1", wire.ModeStream)), wire.CodeNotAuthorized)
		},
	},
	"group-commit": {
		func(v *tableEnv) {
			v.alice.must(wire.OpCommit, &wire.Commit{Group: "billing-1", Topic: "orders", Partition: 0, Offset: 1})
		},
		func(v *tableEnv) {
			wantCode(v.t, "commit", v.bob.do(wire.OpCommit, &wire.Commit{Group: "billing-1", Topic: "public", Partition: 0, Offset: 123456}), wire.CodeNotAuthorized)
		},
	},
	"group-fetch": {
		func(v *tableEnv) {
			var o wire.Offset
			if err := o.Decode(v.alice.must(wire.OpFetchOffset, &wire.Commit{Group: "billing-1", Topic: "orders"})); err != nil || o.Offset != 1 {
				v.t.Fatalf("fetched %d, %v", o.Offset, err)
			}
		},
		func(v *tableEnv) {
			wantCode(v.t, "fetch", v.bob.do(wire.OpFetchOffset, &wire.Commit{Group: "billing-1", Topic: "public"}), wire.CodeNotAuthorized)
		},
	},
	"group-describe": {
		func(v *tableEnv) { v.alice.must(wire.OpDescribeGrp, &wire.Name{Name: "billing-1"}) },
		func(v *tableEnv) {
			wantCode(v.t, "describe", v.bob.do(wire.OpDescribeGrp, &wire.Name{Name: "billing-1"}), wire.CodeNotAuthorized)
		},
	},
	"queue-subscribe": {
		func(v *tableEnv) {
			v.alice.must(wire.OpSubscribe, subMsg(queueSubID, "orders", "billing-q", wire.ModeQueue))
		},
		func(v *tableEnv) {
			wantCode(v.t, "queue", v.bob.do(wire.OpSubscribe, subMsg(v.sub(), "public", "billing-q", wire.ModeQueue)), wire.CodeNotAuthorized)
		},
	},
	"queue-ack": {
		func(v *tableEnv) {
			v.alice.must(wire.OpAck, rawBody(wire.AppendAck(nil, queueSubID, 0, 0, []int64{0})))
			v.alice.must(wire.OpNack, rawBody(wire.AppendAck(nil, queueSubID, 0, 10, []int64{0})))
		},
		func(v *tableEnv) {
			// bob could not open the queue subscription: there is nothing his ack could settle.
			wantCode(v.t, "ack", v.bob.do(wire.OpAck, rawBody(wire.AppendAck(nil, queueSubID, 0, 0, []int64{0}))), wire.CodeUnknownSubscription)
		},
	},
	"inbox-create": {
		func(v *tableEnv) { v.alice.must(wire.OpCreateTopic, inboxConfig(wire.InboxName("alice", "01"))) },
		func(v *tableEnv) {
			wantCode(v.t, "create", v.bob.do(wire.OpCreateTopic, inboxConfig(wire.InboxName("alice", "02"))), wire.CodeNotAuthorized)
		},
	},
	"inbox-subscribe": {
		func(v *tableEnv) {
			v.alice.must(wire.OpSubscribe, subMsg(v.sub(), wire.InboxName("alice", "01"), "", wire.ModeStream))
		},
		func(v *tableEnv) {
			wantCode(v.t, "subscribe", v.bob.do(wire.OpSubscribe, subMsg(v.sub(), wire.InboxName("alice", "01"), "", wire.ModeStream)), wire.CodeNotAuthorized)
		},
	},
	"inbox-produce": {
		func(v *tableEnv) { v.bob.must(wire.OpProduce, produceMsg(v.t, wire.InboxName("alice", "01"))) },
		func(v *tableEnv) {
			wantCode(v.t, "produce", v.noAuth.do(wire.OpProduce, produceMsg(v.t, wire.InboxName("alice", "01"))), wire.CodeAuthFailed)
		},
	},
	"inbox-describe": {
		func(v *tableEnv) { v.bob.must(wire.OpDescribe, &wire.Name{Name: wire.InboxName("alice", "01")}) },
		func(v *tableEnv) {
			wantCode(v.t, "describe", v.noAuth.do(wire.OpDescribe, &wire.Name{Name: wire.InboxName("alice", "01")}), wire.CodeAuthFailed)
		},
	},
	"inbox-delete": {
		func(v *tableEnv) {
			name := wire.InboxName("alice", "03")
			v.alice.must(wire.OpCreateTopic, inboxConfig(name))
			v.alice.must(wire.OpDeleteTopic, &wire.Name{Name: name})
		},
		func(v *tableEnv) {
			wantCode(v.t, "delete", v.bob.do(wire.OpDeleteTopic, &wire.Name{Name: wire.InboxName("alice", "01")}), wire.CodeNotAuthorized)
		},
	},
	"list-topics": {
		func(v *tableEnv) {
			got := topicNames(v.t, v.alice.must(wire.OpListTopics, nil))
			for _, want := range []string{"orders", "orders.dlq", wire.InboxName("alice", "01")} {
				if !slices.Contains(got, want) {
					v.t.Fatalf("alice's listing %v misses %s", got, want)
				}
			}
		},
		func(v *tableEnv) {
			got := topicNames(v.t, v.bob.must(wire.OpListTopics, nil))
			for _, hidden := range []string{"orders", "orders.dlq", wire.InboxName("alice", "01")} {
				if slices.Contains(got, hidden) {
					v.t.Fatalf("bob's listing %v shows %s", got, hidden)
				}
			}
		},
	},
	"list-groups": {
		func(v *tableEnv) {
			if got := groupNames(v.t, v.alice.must(wire.OpListGroups, nil)); !slices.Contains(got, "billing-1") {
				v.t.Fatalf("alice's listing %v misses billing-1", got)
			}
		},
		func(v *tableEnv) {
			if got := groupNames(v.t, v.bob.must(wire.OpListGroups, nil)); slices.Contains(got, "billing-1") {
				v.t.Fatalf("bob's listing %v shows billing-1", got)
			}
		},
	},
}

// sub returns a fresh subscription id.
func (v *tableEnv) sub() uint32 { v.n++; return uint32(v.n) }

// queueSubID is alice's queue subscription, opened by queue-subscribe and settled by queue-ack.
const queueSubID = 9999

// createOnce creates topic name (one partition) unless it exists.
func (r *rawConn) createOnce(v *tableEnv, name string) {
	if v.e.TopicByName(name) == nil {
		r.must(wire.OpCreateTopic, &wire.TopicConfig{Name: name, Partitions: 1})
	}
}

// tableRows reads the row keys of the table in docs/security.md, in order.
func tableRows(t *testing.T) []string {
	f, err := os.Open("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z-]+)` \\|")
	var rows []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			rows = append(rows, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestSecurityTable walks docs/security.md's table against a real server: for every row, the
// allowed principal succeeds and the denied one is refused; every row has a case and every case a row.
func TestSecurityTable(t *testing.T) {
	rows := tableRows(t)
	if len(rows) == 0 {
		t.Fatal("no rows found in docs/security.md")
	}
	for _, r := range rows {
		if _, ok := securityTable[r]; !ok {
			t.Errorf("row %s of docs/security.md has no case", r)
		}
	}
	for k := range securityTable {
		if !slices.Contains(rows, k) {
			t.Errorf("case %s is not a row of docs/security.md", k)
		}
	}
	s, e := startACLServer(t)
	v := &tableEnv{t: t, e: e, alice: as(t, s, "ta"), bob: as(t, s, "tb"), root: as(t, s, "tr"), noAuth: as(t, s, "")}
	for _, r := range rows {
		c, ok := securityTable[r]
		if !ok {
			continue
		}
		t.Run(r, func(t *testing.T) {
			v.t = t
			for _, conn := range []*rawConn{v.alice, v.bob, v.root, v.noAuth} {
				conn.t = t
			}
			c.allowed(v)
			c.denied(v)
		})
	}
}
