package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// TestRequestReplyUnderACLs (issue 12, item 3): with the Go client against a broker with ACLs and no
// rule naming any inbox, alice's request is answered by bob through her inbox, which is named after
// her; carol, who reads the same requests, may neither subscribe to that inbox nor see it listed.
func TestRequestReplyUnderACLs(t *testing.T) {
	var rules server.Rules
	for _, s := range []string{"alice:produce:rpc", "bob:consume:rpc", "carol:consume:rpc", "root:all:*"} {
		r, err := server.ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	s, _ := servertest.Start(t, nil, func(o *server.Options) {
		o.Tokens = map[string]string{"ta": "alice", "tb": "bob", "tc": "carol", "tr": "root"}
		o.ACL = rules
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(token string) *client.Client {
		c, err := client.Dial(ctx, s.Addr().String(), client.WithAuthToken(token), client.WithLogger(servertest.Logger()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	root, alice, bob, carol := dial("tr"), dial("ta"), dial("tb"), dial("tc")
	if err := root.CreateTopic(ctx, client.TopicConfig{Name: "rpc", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	bobReqs, err := bob.Subscribe(ctx, "rpc", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	carolReqs, err := carol.Subscribe(ctx, "rpc", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		m, err := bobReqs.Next(ctx)
		if err == nil {
			err = bob.Reply(ctx, m, client.Record{Value: []byte(strings.ToUpper(string(m.Value)))})
		}
		if err != nil && ctx.Err() == nil {
			t.Errorf("bob: %v", err)
		}
	}()
	m, err := alice.Request(ctx, "rpc", client.Record{Value: []byte("ping")})
	if err != nil {
		t.Fatalf("alice's request: %v", err)
	}
	if string(m.Value) != "PING" {
		t.Fatalf("reply %q", m.Value)
	}

	req, err := carolReqs.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inbox, ok := req.Header(client.HeaderReplyTo)
	if !ok || !strings.HasPrefix(string(inbox), wire.InboxPrefix+"alice.") {
		t.Fatalf("reply-to %q, want alice's inbox", inbox)
	}
	if _, err := carol.Subscribe(ctx, string(inbox), client.WithPartition(0), client.WithStartEarliest()); !errors.Is(err, wire.CodeNotAuthorized) {
		t.Fatalf("carol subscribing to alice's inbox: %v, want CodeNotAuthorized", err)
	}
	for _, c := range []*client.Client{carol, root} {
		topics, err := c.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range topics {
			if tc.Name == string(inbox) {
				t.Fatalf("alice's inbox is listed to another principal: %v", topics)
			}
		}
	}
}

// TestRequestNeverCreates (issue 12, item 1): on an auto-creating broker, a request to a topic that
// does not exist fails with CodeUnknownTopic and creates nothing (the client's producer describes
// the topic, and describing never creates).
func TestRequestNeverCreates(t *testing.T) {
	s, e := servertest.Start(t, func(o *engine.Options) { o.AutoCreateTopics = true }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.Addr().String(), client.WithLogger(servertest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Request(ctx, "absent", client.Record{Value: []byte("anyone?")}); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("request to an unknown topic: %v, want CodeUnknownTopic", err)
	}
	if e.TopicByName("absent") != nil {
		t.Fatal("the request created its topic")
	}
}
