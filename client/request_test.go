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
	// The services stop when the test ends: their last Reply may still wait for its produce ack
	// when the answer has already reached the caller, so an error after cancel is not a failure.
	var services sync.WaitGroup
	defer services.Wait()
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

// TestRequestReplyCopiedHeaders: service B handles A's request by sending its own request to C with
// the incoming headers copied (as trace propagation does), then replies to A with the headers of C's
// answer copied. Each caller gets its own answer: routing headers are replaced, not appended, by
// Request and by Reply, and a reply is matched by the correlation id that belongs to it. Raw records
// with the routing headers twice (as a client that appended them sends) are answered by the last.
func TestRequestReplyCopiedHeaders(t *testing.T) {
	b := startBroker(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	// The services stop when the test ends: their last Reply may still wait for its produce ack
	// when the answer has already reached the caller, so an error after cancel is not a failure.
	var services sync.WaitGroup
	defer services.Wait()
	defer cancel()
	dialc := func() *Client {
		c, err := Dial(ctx, b.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, svcB, svcC := dialc(), dialc(), dialc()
	for _, name := range []string{"b", "c"} {
		if err := a.CreateTopic(ctx, TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	serve := func(c *Client, topic string, handle func(m *Message) (Record, error)) {
		sub, err := c.Subscribe(ctx, topic, WithStartLatest())
		if err != nil {
			t.Fatal(err)
		}
		services.Add(1)
		go func() {
			defer services.Done()
			for {
				m, err := sub.Next(ctx)
				if err != nil {
					return
				}
				rec, err := handle(m.Clone())
				if err != nil && ctx.Err() == nil {
					t.Errorf("%s: %v", topic, err)
				}
				if err != nil {
					return
				}
				if err := c.Reply(ctx, m, rec); err != nil {
					if ctx.Err() == nil {
						t.Errorf("%s reply: %v", topic, err)
					}
					return
				}
			}
		}()
	}
	serve(svcC, "c", func(m *Message) (Record, error) {
		return Record{Value: append([]byte("C("), append(m.Value, ')')...),
			Headers: append(m.AppendHeaders(nil), Header{Key: []byte("trace"), Value: []byte("c")})}, nil
	})
	serve(svcB, "b", func(m *Message) (Record, error) {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		ans, err := svcB.Request(rctx, "c", Record{Value: m.Value, Headers: m.AppendHeaders(nil)})
		if err != nil {
			return Record{}, fmt.Errorf("B's request to C: %w", err)
		}
		return Record{Value: append([]byte("B("), append(ans.Value, ')')...), Headers: ans.AppendHeaders(nil)}, nil
	})
	for i := 0; i < 5; i++ {
		q := fmt.Sprintf("job %d", i)
		m, err := a.Request(ctx, "b", Record{Value: []byte(q)})
		if err != nil {
			t.Fatalf("request %q: %v", q, err)
		}
		if want := "B(C(" + q + "))"; string(m.Value) != want {
			t.Fatalf("request %q answered %q, want %q", q, m.Value, want)
		}
		n := 0
		m.Headers(func(k, _ []byte) bool {
			if string(k) == HeaderCorrelationID || string(k) == HeaderReplyTo {
				n++
			}
			return true
		})
		if n != 1 {
			t.Fatalf("the reply carries %d routing headers, want its one correlation id", n)
		}
	}

	// A request whose routing headers were appended after copied ones is answered to the last.
	p, err := a.Producer("c", WithDurability(wire.DurabilityWritten))
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.requester(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.next++
	id := r.next
	ch := make(chan *Message, 1)
	r.waiting[id] = ch
	r.mu.Unlock()
	if _, err := p.Publish(ctx, Record{Value: []byte("raw"), Headers: []Header{
		{Key: []byte(HeaderReplyTo), Value: []byte(r.inbox + "-not-mine")},
		{Key: []byte(HeaderCorrelationID), Value: []byte("999999")},
		{Key: []byte(HeaderReplyTo), Value: []byte(r.inbox)},
		{Key: []byte(HeaderCorrelationID), Value: []byte(fmt.Sprint(id))},
	}}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		if string(m.Value) != "C(raw)" {
			t.Fatalf("raw request answered %q", m.Value)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request with its routing headers appended last was not answered to them")
	}
}
