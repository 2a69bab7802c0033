package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/sluicemq/sluice/client"
)

// dial connects to the broker the global flags name, within --timeout. The client's own logs go to
// stderr with --verbose and nowhere otherwise: a failing command prints one line, its error.
func (g *globals) dial(ctx context.Context, stderr io.Writer) (*client.Client, error) {
	log := slog.New(slog.DiscardHandler)
	if g.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts := []client.Option{
		client.WithClientID("sluice-cli"),
		client.WithDialTimeout(g.timeout),
		client.WithRequestTimeout(g.timeout),
		client.WithLogger(log),
	}
	if g.token != "" {
		opts = append(opts, client.WithAuthToken(g.token))
	}
	if g.user != "" {
		pass, err := g.password()
		if err != nil {
			return nil, err
		}
		switch g.mechanism {
		case "PLAIN":
			opts = append(opts, client.WithPlain(g.user, pass))
		default: // client.Dial refuses a mechanism it does not know
			opts = append(opts, client.WithSCRAM(g.user, pass, g.mechanism))
		}
	}
	dctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	c, err := client.Dial(dctx, g.addr, opts...)
	if err != nil {
		return nil, &dialError{addr: g.addr, err: err}
	}
	return c, nil
}

// password returns the password of --user: the first line of --password-file, else
// SLUICE_PASSWORD.
func (g *globals) password() (string, error) {
	if g.passwordFile != "" {
		return readPasswordFile(g.passwordFile)
	}
	if p := os.Getenv("SLUICE_PASSWORD"); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("--user %s needs a password: --password-file FILE or env SLUICE_PASSWORD", g.user)
}

// request bounds one request by --timeout.
func (g *globals) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, g.timeout)
}

// call parses f's arguments (between min and max operands), connects, and runs fn with a context
// bounded by --timeout: the shape of every one-request command.
func (f *cmdFlags) call(ctx context.Context, args []string, min, max int, fn func(ctx context.Context, c *client.Client, ops []string) error) error {
	ops, err := f.parse(args, min, max)
	if err != nil {
		return err
	}
	c, err := f.g.dial(ctx, f.stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := f.g.request(ctx)
	defer cancel()
	return fn(rctx, c, ops)
}

// dialError is a failure to reach or handshake with the broker.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string {
	var op *net.OpError
	if errors.As(e.err, &op) && op.Err != nil {
		// "dial tcp 127.0.0.1:1: connect: connection refused" says the address twice.
		return fmt.Sprintf("cannot reach the broker at %s: %v", e.addr, op.Err)
	}
	if errors.Is(e.err, context.DeadlineExceeded) {
		return fmt.Sprintf("cannot reach the broker at %s: no answer within the timeout", e.addr)
	}
	return fmt.Sprintf("cannot connect to the broker at %s: %s", e.addr, errorLine(e.err))
}

func (e *dialError) Unwrap() error { return e.err }

// errorLine renders err as one line for a human: the package prefixes the client and wire errors
// carry ("client: ", "sluice: ") are dropped, and the broker's errors read as "unknown topic: orders".
func errorLine(err error) string {
	var de *dialError
	if errors.As(err, &de) {
		return de.Error()
	}
	s := err.Error()
	for _, p := range []string{"client: ", "sluice: ", "wire: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	s = strings.ReplaceAll(s, "\n", "; ")
	return s
}
