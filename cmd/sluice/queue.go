package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/sluicemq/sluice/client"
)

func init() {
	register(command{name: "queue consume", summary: "take records from a work queue, acking each one handled", run: runQueueConsume})
}

func runQueueConsume(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("queue consume", "TOPIC",
		"Take records from TOPIC as a work queue shared by every consumer of group G: each record goes\n"+
			"to one of them and is delivered again (to any) unless it is acked within --ack-timeout.\n"+
			"Without --exec each record is printed (as consume --format) and acked once written. With\n"+
			"--exec CMD, CMD runs once a record under sh -c, with the value on its stdin and the\n"+
			"record in SLUICE_TOPIC, SLUICE_PARTITION, SLUICE_OFFSET and SLUICE_KEY: exit status 0\n"+
			"acks the record, any other nacks it for delivery again after --nack-delay, and a record\n"+
			"delivered --max-deliveries times goes to the dead-letter topic TOPIC.dlq.", stdout, stderr)
	group := f.String("group", "", "the work queue's consumer group `G` (required)")
	execCmd := f.String("exec", "", "run `CMD` (sh -c) for each record: exit 0 acks it, anything else nacks it")
	count := f.Int("count", 0, "stop after `N` records (default: no limit)")
	idle := f.Duration("idle", 0, "stop after `D` without a record (default: wait until interrupted)")
	ackTimeout := f.Duration("ack-timeout", 0, "deliver a record again if not acked within `D` (default: the broker's, 30s)")
	maxDeliveries := f.Int("max-deliveries", 0, "dead-letter a record after `N` deliveries (default: the broker's)")
	nackDelay := f.Duration("nack-delay", 0, "with --exec: deliver a failed record again after `D`")
	format := f.String("format", "raw", "without --exec: output format `F`, raw or a template as consume's")
	delim := delimFlag("\n")
	f.Var(&delim, "delim", "with --format raw: write `D` after each value")
	ops, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	var tmpl []fmtPiece
	if *format != "raw" {
		if tmpl, err = parseTemplate(*format); err != nil {
			return f.usageError("--format %q: %v", *format, err)
		}
	}
	switch {
	case *group == "":
		return f.usageError("missing --group: a work queue is shared by the members of a group")
	case *count < 0 || *idle < 0 || *ackTimeout < 0 || *nackDelay < 0:
		return f.usageError("--count, --idle, --ack-timeout and --nack-delay cannot be negative")
	case *maxDeliveries < 0 || *maxDeliveries > 0xffff:
		return f.usageError("--max-deliveries %d outside 0..65535", *maxDeliveries)
	}
	copts := []client.ConsumerOption{client.WithGroup(*group), client.WithQueue(*ackTimeout, *maxDeliveries)}
	c, err := f.g.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	sctx, cancel := f.g.request(ctx)
	cons, err := c.Subscribe(sctx, ops[0], copts...)
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

	out := bufio.NewWriterSize(stdout, 64<<10)
	w := &recordWriter{out: out, delim: delim, tmpl: tmpl}
	for n := 0; *count == 0 || n < *count; n++ {
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if *idle > 0 {
			wctx, cancel = context.WithTimeout(ctx, *idle)
		}
		m, err := cons.Next(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil // interrupted: unacked records go to another member after their timeout
		case err != nil && *idle > 0 && errors.Is(err, context.DeadlineExceeded):
			return nil
		case err != nil:
			return err
		}
		if *execCmd == "" {
			if err := w.write(m); err != nil {
				return fmt.Errorf("writing the output: %w", err)
			}
			if err := out.Flush(); err != nil {
				return fmt.Errorf("writing the output: %w", err)
			}
			if err := settle(ctx, f.g.timeout, m, true, 0); err != nil {
				return err
			}
			continue
		}
		runErr := runForRecord(ctx, *execCmd, m, stdout, stderr)
		if ctx.Err() != nil {
			return nil // interrupted while CMD ran: the record is redelivered
		}
		if runErr != nil {
			fmt.Fprintf(stderr, "sluice: %s partition %d offset %d: %v: nacked\n", m.Topic, m.Partition, m.Offset, runErr)
		}
		if err := settle(ctx, f.g.timeout, m, runErr == nil, *nackDelay); err != nil {
			return err
		}
	}
	return nil
}

// settle acks m (waiting for the broker to have written it, so a command that exits has settled
// what it handled) or nacks it for delivery again after delay.
func settle(ctx context.Context, timeout time.Duration, m *client.Message, ack bool, delay time.Duration) error {
	if !ack {
		return m.Nack(delay)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	return m.AckSync(actx)
}

// runForRecord runs cmd under sh -c with m's value on its stdin and m's coordinates in its
// environment; its output goes to stdout and stderr.
func runForRecord(ctx context.Context, cmd string, m *client.Message, stdout, stderr io.Writer) error {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdin = bytes.NewReader(m.Value)
	c.Stdout, c.Stderr = stdout, stderr
	c.Env = append(os.Environ(),
		"SLUICE_TOPIC="+m.Topic,
		"SLUICE_PARTITION="+strconv.Itoa(int(m.Partition)),
		"SLUICE_OFFSET="+strconv.FormatInt(m.Offset, 10),
		"SLUICE_KEY="+string(m.Key))
	return c.Run()
}
