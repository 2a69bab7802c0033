package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/sluicemq/sluice/internal/buildinfo"
	"github.com/sluicemq/sluice/wire"
)

func init() {
	register(command{name: "ping", summary: "check that the broker answers, and how fast", run: runPing})
	register(command{name: "version", summary: "print the version of this command", run: runVersion})
}

func runPing(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("ping", "", "Connect to the broker and time ping round trips.", stdout, stderr)
	count := f.Int("count", 1, "send `N` pings")
	interval := f.Duration("interval", time.Second, "wait `D` between pings")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if *count < 1 {
		return f.usageError("--count must be at least 1")
	}
	start := time.Now()
	c, err := f.g.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(stdout, "connected to %s in %v\n", f.g.addr, time.Since(start).Round(time.Microsecond))
	for i := 0; i < *count; i++ {
		if i > 0 {
			select {
			case <-time.After(*interval):
			case <-ctx.Done():
				return nil
			}
		}
		rctx, cancel := f.g.request(ctx)
		rtt, err := c.Ping(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		fmt.Fprintf(stdout, "pong from %s: time=%v\n", f.g.addr, rtt.Round(time.Microsecond))
	}
	return nil
}

func runVersion(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("version", "", "Print the version of this command, the protocol version it speaks and its Go version.", stdout, stderr)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	printVersion(stdout)
	return nil
}

// printVersion writes the line of sluice version and sluice --version. The version is make build's
// VERSION, else what the Go toolchain recorded (internal/buildinfo).
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "sluice %s (protocol %d, %s %s/%s)\n", buildinfo.Version(), wire.ProtocolVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
