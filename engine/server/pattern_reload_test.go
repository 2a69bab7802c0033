package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// TestPatternACLReload: a pattern's per-topic check reads the rules in force when a topic matches
// (Server.SetAuth, as SIGHUP's reread installs them), not those the server started with: a topic
// created after the rules grant it is read, one created while they did not is not.
func TestPatternACLReload(t *testing.T) {
	rules := func(ss ...string) server.Rules {
		var rs server.Rules
		for _, s := range ss {
			r, err := server.ParseRule(s)
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	tokens := map[string]string{"ta": "alice", "tr": "root"}
	s, _ := servertest.Start(t, nil, func(o *server.Options) {
		o.Tokens = tokens
		o.ACL = rules("alice:consume:orders.eu", "root:all:*")
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
	root, alice := dial("tr"), dial("ta")
	cons, err := alice.Subscribe(ctx, "orders.*", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	create := func(name string) {
		t.Helper()
		if err := root.CreateTopic(ctx, client.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		p, err := root.Producer(name, client.WithDurability(wire.DurabilityWritten))
		if err != nil {
			t.Fatal(err)
		}
		f, err := p.Send(ctx, client.Record{Value: []byte(name)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	create("orders.us") // not granted yet: never read
	if err := s.SetAuth(tokens, rules("alice:consume:orders.eu", "alice:consume:orders.asia", "root:all:*")); err != nil {
		t.Fatal(err)
	}
	create("orders.asia")
	m, err := cons.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Topic != "orders.asia" {
		t.Fatalf("got a record of %s, want orders.asia (granted by the reloaded rules)", m.Topic)
	}
}
