package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// TestRequestReply: requesters on two clients send requests to a service topic; a responder on a
// third client answers each through its reply inbox; every caller gets its own answer.
func TestRequestReply(t *testing.T) {
	b := startBroker(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dialc := func() *Client {
		c, err := Dial(ctx, b.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	svc := dialc()
	if err := svc.CreateTopic(ctx, TopicConfig{Name: "upper", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	reqs, err := svc.Subscribe(ctx, "upper", WithStartLatest())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			m, err := reqs.Next(ctx)
			if err != nil {
				return
			}
			if err := svc.Reply(ctx, m, Record{Value: []byte(strings.ToUpper(string(m.Value)))}); err != nil {
				t.Errorf("reply: %v", err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for _, c := range []*Client{dialc(), dialc()} {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					q := fmt.Sprintf("hello %d/%d", g, i)
					m, err := c.Request(ctx, "upper", Record{Value: []byte(q)})
					if err != nil {
						t.Errorf("request %q: %v", q, err)
						return
					}
					if string(m.Value) != strings.ToUpper(q) {
						t.Errorf("request %q answered %q", q, m.Value)
					}
				}
			}()
		}
	}
	wg.Wait()

	// A request nobody answers times out; a message that is not a request cannot be replied to.
	lonely := dialc()
	if err := lonely.CreateTopic(ctx, TopicConfig{Name: "void", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer tcancel()
	if _, err := lonely.Request(tctx, "void", Record{Value: []byte("anyone?")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered request: %v", err)
	}
	plain := &Message{}
	if err := lonely.Reply(ctx, plain, Record{}); !errors.Is(err, ErrNotRequest) {
		t.Fatalf("reply to a plain message: %v", err)
	}
	// The inbox is a memory topic and goes away with its client.
	topics, _ := svc.ListTopics(ctx)
	inboxes := 0
	for _, tc := range topics {
		if strings.HasPrefix(tc.Name, "_inbox.") {
			inboxes++
			if tc.Flags&wire.TopicMemory == 0 {
				t.Fatalf("inbox %s is not memory-only", tc.Name)
			}
		}
	}
	if inboxes < 3 {
		t.Fatalf("%d inboxes, want one per requesting client", inboxes)
	}
	lonely.Close()
	topics, _ = svc.ListTopics(ctx)
	after := 0
	for _, tc := range topics {
		if strings.HasPrefix(tc.Name, "_inbox.") {
			after++
		}
	}
	if after != inboxes-1 {
		t.Fatalf("inboxes %d after a client closed, want %d", after, inboxes-1)
	}
}
