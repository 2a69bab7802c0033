package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sluicemq/sluice/client"
)

func init() {
	register(command{name: "request", summary: "send a request to a service topic and print the reply", run: runRequest})
	register(command{name: "reply", summary: "answer the requests of a service topic", run: runReply})
}

func runRequest(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("request", "TOPIC [VALUE]",
		"Send VALUE (or, without it, all of stdin) to TOPIC as a request and print the reply's value\n"+
			"followed by a newline. The reply comes back on a private inbox topic; a service answers\n"+
			"with `sluice reply` or the client's Reply. Fails if no reply comes within --timeout.", stdout, stderr)
	var key optString
	f.Var(&key, "key", "the request's `key`")
	var headers listFlag
	f.Var(&headers, "header", "add header `k=v`; repeatable")
	ops, err := f.parse(args, 1, 2)
	if err != nil {
		return err
	}
	hdrs, err := parseHeaders(headers)
	if err != nil {
		return f.usageError("%v", err)
	}
	var value []byte
	if len(ops) == 2 {
		value = []byte(ops[1])
	} else if value, err = io.ReadAll(stdin); err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	rec := client.Record{Value: value, Headers: hdrs}
	if key.set {
		rec.Key = []byte(key.v)
	}
	c, err := f.g.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := f.g.request(ctx)
	defer cancel()
	m, err := c.Request(rctx, ops[0], rec)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no reply from %s within %v: is a service answering it (sluice reply)?", ops[0], f.g.timeout)
	}
	if err != nil {
		return err
	}
	stdout.Write(m.Value)
	_, err = io.WriteString(stdout, "\n")
	return err
}

func runReply(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("reply", "TOPIC",
		"Answer the requests sent to TOPIC (sluice request, or the client's Request), sharing them\n"+
			"with every other member of --group as a work queue. With --exec CMD, CMD runs once a\n"+
			"request under sh -c with its value on stdin; what it writes to stdout, less one trailing\n"+
			"newline, is the reply (a failing CMD still replies, with its output, and the failure is\n"+
			"reported on stderr). With --value V every request is answered with V; without either\n"+
			"flag the request's own value is sent back (an echo service).", stdout, stderr)
	group := f.String("group", "", "the service's consumer group `G` (default: TOPIC-service)")
	execCmd := f.String("exec", "", "run `CMD` (sh -c) for each request: its stdout is the reply")
	var fixed optString
	f.Var(&fixed, "value", "answer every request with `V`")
	count := f.Int("count", 0, "stop after answering `N` requests (default: no limit)")
	idle := f.Duration("idle", 0, "stop after `D` without a request (default: wait until interrupted)")
	ops, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	switch {
	case *execCmd != "" && fixed.set:
		return f.usageError("--exec and --value exclude each other")
	case *count < 0 || *idle < 0:
		return f.usageError("--count and --idle cannot be negative")
	}
	if *group == "" {
		*group = ops[0] + "-service"
	}
	c, err := f.g.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	sctx, cancel := f.g.request(ctx)
	cons, err := c.Subscribe(sctx, ops[0], client.WithGroup(*group), client.WithQueue(0, 0), client.WithStartLatest())
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.g.timeout)
		_ = cons.Close(cctx)
		cancel()
	}()
	for n := 0; *count == 0 || n < *count; n++ {
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if *idle > 0 {
			wctx, cancel = context.WithTimeout(ctx, *idle)
		}
		m, err := cons.Next(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && *idle > 0 && errors.Is(err, context.DeadlineExceeded):
			return nil
		case err != nil:
			return err
		}
		answer := m.Value
		switch {
		case fixed.set:
			answer = []byte(fixed.v)
		case *execCmd != "":
			var out bytes.Buffer
			runErr := runForRecord(ctx, *execCmd, m, &out, stderr)
			if ctx.Err() != nil {
				return nil
			}
			if runErr != nil {
				fmt.Fprintf(stderr, "sluice: request at %s partition %d offset %d: %v\n", m.Topic, m.Partition, m.Offset, runErr)
			}
			answer = bytes.TrimSuffix(out.Bytes(), []byte("\n"))
		}
		rctx, cancel := f.g.request(ctx)
		err = c.Reply(rctx, m, client.Record{Value: answer})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// One request that cannot be answered (no reply-to header, its requester's inbox gone)
			// does not stop the service: it is reported and settled.
			fmt.Fprintf(stderr, "sluice: request at %s partition %d offset %d not answered: %s\n", m.Topic, m.Partition, m.Offset, errorLine(err))
		}
		if err := settle(ctx, f.g.timeout, m, true, 0); err != nil {
			return err
		}
	}
	return nil
}

// parseHeaders turns k=v flags into headers.
func parseHeaders(list []string) ([]client.Header, error) {
	var hdrs []client.Header
	for _, h := range list {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--header %q is not k=v", h)
		}
		hdrs = append(hdrs, client.Header{Key: []byte(k), Value: []byte(v)})
	}
	return hdrs, nil
}
