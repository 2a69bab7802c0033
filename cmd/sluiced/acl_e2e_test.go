package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// rawProduce speaks the protocol by hand to the broker at addr: hello, auth with token (none if
// ""), one produce of one record to topic, partition chosen by the broker. It returns the code of
// the answer (CodeOK for a produce reply). The Go client cannot send this: its producer describes
// the topic first, and describing never creates one.
func rawProduce(t *testing.T, addr, token, topic string) wire.Code {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	bb := wire.NewBatchBuilder(256)
	bb.Append(nil, []byte("one record"), nil, time.Now().UnixMilli())
	batch, err := bb.Build()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	frame := func(op wire.Op, corr uint32, body func([]byte) []byte) {
		var start int
		out, start = wire.BeginFrame(out, op, 0, corr)
		out = wire.EndFrame(body(out), start)
	}
	frame(wire.OpHello, 1, (&wire.Hello{Version: wire.ProtocolVersion}).Append)
	if token != "" {
		frame(wire.OpAuth, 2, (&wire.Auth{Mechanism: "token", Payload: []byte(token)}).Append)
	}
	frame(wire.OpProduce, 3, (&wire.Produce{Durability: wire.DurabilityWritten, Partition: -1, Topic: []byte(topic), Batches: batch}).Append)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	dec := wire.NewDecoder(wire.DefaultMaxFrame)
	buf := make([]byte, 4096)
	for {
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatalf("reading the answers: %v", err)
		}
		code := wire.Code(0xffff)
		if err := dec.Feed(buf[:n], func(f wire.Frame) error {
			var eb wire.ErrorBody
			switch {
			case f.Op == wire.OpError && eb.Decode(f.Body) == nil && f.Corr < 3:
				return eb.Err()
			case f.Corr == 3 && f.Op == wire.OpError && eb.Decode(f.Body) == nil:
				code = eb.Code
			case f.Corr == 3:
				code = wire.CodeOK
			}
			return nil
		}); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if code != 0xffff {
			return code
		}
	}
}

// TestAuthorizationOnTheDaemon (issue 12, items 1, 2 and 4 on sluiced itself): auto-create is off by
// default; with it on, a produce refused by the ACL creates nothing; listings and descriptions show a
// principal only what it has rights on; groups are authorized by group rules.
func TestAuthorizationOnTheDaemon(t *testing.T) {
	acl := []string{
		"--token", "tr=root", "--token", "tb=bob", "--token", "tp=pub",
		"--acl", "root:all:*", "--acl", "root:all:group:*",
		"--acl", "bob:produce:scratch.*",
		"--acl", "pub:consume:public", "--acl", "pub:consume:group:pub-*",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(b *broker, token string) *client.Client {
		c, err := client.Dial(ctx, b.addr, client.WithAuthToken(token), client.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	b := startBroker(t, t.TempDir(), acl...)
	root, pub := dial(b, "tr"), dial(b, "tp")
	// Item 1: no auto-create by default, not even for a principal with every right.
	if code := rawProduce(t, b.addr, "tr", "nowhere"); code != wire.CodeUnknownTopic {
		t.Fatalf("produce to an unknown topic on a default sluiced: %v, want CodeUnknownTopic", code)
	}
	if _, err := root.Producer("nowhere"); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("producer for an unknown topic: %v, want CodeUnknownTopic", err)
	}
	if _, err := root.DescribeTopic(ctx, "nowhere"); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("describe of an unknown topic: %v, want CodeUnknownTopic", err)
	}

	// Item 2: listings and descriptions are filtered.
	for _, name := range []string{"public", "payments"} {
		if err := root.CreateTopic(ctx, client.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := root.CommitOffset(ctx, "billing", "payments", 0, 0); err != nil {
		t.Fatal(err)
	}
	topics, err := pub.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 1 || topics[0].Name != "public" {
		t.Fatalf("pub lists %v, want only public", topics)
	}
	if _, err := pub.DescribeTopic(ctx, "payments"); !errors.Is(err, wire.CodeNotAuthorized) {
		t.Fatalf("pub describes payments: %v", err)
	}
	if groups, err := pub.ListGroups(ctx); err != nil || slices.Contains(groups, "billing") {
		t.Fatalf("pub lists groups %v, %v", groups, err)
	}
	if _, err := pub.DescribeGroup(ctx, "billing"); !errors.Is(err, wire.CodeNotAuthorized) {
		t.Fatalf("pub describes billing: %v", err)
	}

	// Item 4: consume on public does not open the group billing; the group rule opens pub-*.
	if err := pub.CommitOffset(ctx, "billing", "public", 0, 123456); !errors.Is(err, wire.CodeNotAuthorized) {
		t.Fatalf("pub commits billing's offset: %v", err)
	}
	if _, err := pub.Subscribe(ctx, "public", client.WithGroup("billing")); !errors.Is(err, wire.CodeNotAuthorized) {
		t.Fatalf("pub joins billing: %v", err)
	}
	if err := pub.CommitOffset(ctx, "pub-1", "public", 0, 0); err != nil {
		t.Fatalf("pub commits its own group: %v", err)
	}
	b.stop()

	// Item 1 with --auto-create: creating by a produce needs admin on the name.
	b = startBroker(t, t.TempDir(), append([]string{"--auto-create"}, acl...)...)
	root = dial(b, "tr")
	if code := rawProduce(t, b.addr, "tb", "scratch.fill"); code != wire.CodeNotAuthorized {
		t.Fatalf("bob's produce creating scratch.fill: %v, want CodeNotAuthorized", code)
	}
	if code := rawProduce(t, b.addr, "tb", "elsewhere"); code != wire.CodeNotAuthorized {
		t.Fatalf("bob's produce creating elsewhere: %v, want CodeNotAuthorized", code)
	}
	if _, err := root.DescribeTopic(ctx, "described"); !errors.Is(err, wire.CodeUnknownTopic) {
		t.Fatalf("describe on an auto-creating broker: %v, want CodeUnknownTopic", err)
	}
	if code := rawProduce(t, b.addr, "tr", "made"); code != wire.CodeOK {
		t.Fatalf("root's produce creating made: %v", code)
	}
	topics, err = root.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 1 || topics[0].Name != "made" {
		t.Fatalf("topics after the refused produces: %v, want only made", topics)
	}
}
