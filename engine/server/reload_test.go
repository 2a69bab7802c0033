package server_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// TestSetAuth: tokens and rules swapped while connections authenticate and are authorized on the
// event loops (run under -race: the loops read them through one atomic pointer); a new token works
// at once, a removed one fails, and turning authentication or ACLs off is refused.
func TestSetAuth(t *testing.T) {
	rules := func(s ...string) server.Rules {
		var out server.Rules
		for _, r := range s {
			rule, err := server.ParseRule(r)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rule)
		}
		return out
	}
	srv, eng := servertest.Start(t, nil, func(o *server.Options) {
		o.Tokens = map[string]string{"t0": "p0"}
		o.ACL = rules("*:all:*")
	})
	if _, err := eng.CreateTopic(wire.TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(token string) (*client.Client, error) {
		return client.Dial(ctx, srv.Addr().String(), client.WithAuthToken(token), client.WithLogger(servertest.Logger()))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 { // traffic on the loops while the settings change
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := dial("t0"); err == nil {
					_, _ = c.DescribeTopic(ctx, "t")
					c.Close()
				}
			}
		})
	}
	for i := 1; i <= 20; i++ {
		tok := fmt.Sprintf("t%d", i)
		if err := srv.SetAuth(map[string]string{"t0": "p0", tok: "p"}, rules("*:all:*")); err != nil {
			t.Fatal(err)
		}
		c, err := dial(tok)
		if err != nil {
			t.Fatalf("token %s after SetAuth: %v", tok, err)
		}
		c.Close()
		if c, err := dial(fmt.Sprintf("t%d", i-1)); i > 1 && !errors.Is(err, wire.CodeAuthFailed) {
			if err == nil {
				c.Close()
			}
			t.Fatalf("removed token t%d: %v", i-1, err)
		}
	}
	close(stop)
	wg.Wait()
	if err := srv.SetAuth(nil, rules("*:all:*")); !errors.Is(err, server.ErrAuthMode) {
		t.Errorf("turning authentication off: %v", err)
	}
	if err := srv.SetAuth(map[string]string{"t0": "p0"}, nil); !errors.Is(err, server.ErrAuthMode) {
		t.Errorf("turning ACLs off: %v", err)
	}
}
