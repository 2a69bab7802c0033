package server_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// TestPatternAndCELThroughClient: with the Go client against a broker with ACLs, a pattern consumer
// reads the matching topics its principal may consume, those there at subscribe and one created
// later, each record naming its topic, and never a matching topic it may not consume; CEL filters
// over headers and JSON values select records at their offsets; a bad expression fails Subscribe
// with the reason.
func TestPatternAndCELThroughClient(t *testing.T) {
	var rules server.Rules
	for _, s := range []string{"alice:consume:orders.eu", "alice:consume:orders.new.*", "root:all:*"} {
		r, err := server.ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	s, _ := servertest.Start(t, nil, func(o *server.Options) {
		o.Tokens = map[string]string{"ta": "alice", "tr": "root"}
		o.ACL = rules
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
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
	produce := func(topic string, recs ...client.Record) {
		t.Helper()
		p, err := root.Producer(topic, client.WithDurability(wire.DurabilityWritten))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			f, err := p.Send(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	reading := func(temp int, region string) client.Record {
		return client.Record{Key: []byte(region), Value: fmt.Appendf(nil, `{"temp": %d}`, temp),
			Headers: []client.Header{{Key: []byte("region"), Value: []byte(region)}}}
	}
	for _, name := range []string{"orders.eu", "orders.secret"} {
		if err := root.CreateTopic(ctx, client.TopicConfig{Name: name, Partitions: 2}); err != nil {
			t.Fatal(err)
		}
	}
	produce("orders.eu", reading(20, "eu"), reading(35, "eu"))
	produce("orders.secret", reading(99, "eu"))

	all, err := alice.Subscribe(ctx, "orders.>", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	hot, err := alice.Subscribe(ctx, "orders.>", client.WithStartEarliest(),
		client.WithFilterCEL(`value.temp > 30 && headers["region"] == "eu"`))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.CreateTopic(ctx, client.TopicConfig{Name: "orders.new.x", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce("orders.new.x", reading(40, "eu"), reading(50, "us"))
	produce("orders.secret", reading(98, "eu"))

	take := func(c *client.Consumer, n int) []string {
		t.Helper()
		var got []string
		for len(got) < n {
			m, err := c.Next(ctx)
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			got = append(got, fmt.Sprintf("%s/%d/%s", m.Topic, m.Offset, m.Value))
		}
		slices.Sort(got)
		return got
	}
	want := []string{`orders.eu/0/{"temp": 20}`, `orders.eu/1/{"temp": 35}`, `orders.new.x/0/{"temp": 40}`, `orders.new.x/1/{"temp": 50}`}
	// Both eu records share a key, so one partition: offsets 0 and 1.
	if got := take(all, 4); !slices.Equal(got, want) {
		t.Fatalf("pattern consumer got %q, want %q", got, want)
	}
	want = []string{`orders.eu/1/{"temp": 35}`, `orders.new.x/0/{"temp": 40}`}
	if got := take(hot, 2); !slices.Equal(got, want) {
		t.Fatalf("filtered pattern consumer got %q, want %q", got, want)
	}
	// Nothing of orders.secret, before or after: a later record of a visible topic comes next.
	produce("orders.eu", reading(36, "eu"))
	if got := take(hot, 1); !slices.Equal(got, []string{`orders.eu/2/{"temp": 36}`}) {
		t.Fatalf("then got %q", got)
	}

	// A plain topic with a CEL filter on the key.
	keyed, err := alice.Subscribe(ctx, "orders.eu", client.WithStartEarliest(), client.WithFilterCEL(`key == b"eu" && int(value.temp) % 2 == 1`))
	if err != nil {
		t.Fatal(err)
	}
	if got := take(keyed, 1); !slices.Equal(got, []string{`orders.eu/1/{"temp": 35}`}) {
		t.Fatalf("key filter got %q", got)
	}

	_, err = alice.Subscribe(ctx, "orders.>", client.WithFilterCEL(`value.temp >`))
	if !errors.Is(err, wire.CodeInvalidRequest) || !strings.Contains(err.Error(), "Syntax error") {
		t.Fatalf("bad expression: %v", err)
	}
	_, err = alice.Subscribe(ctx, "orders.>", client.WithGroup("g"), client.WithQueue(time.Second, 3))
	if !errors.Is(err, client.ErrOptions) {
		t.Fatalf("pattern with a work queue: %v", err)
	}
}
