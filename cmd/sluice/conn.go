package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
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
	tcfg, err := g.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tcfg != nil {
		opts = append(opts, client.WithTLS(tcfg))
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
		de := &dialError{addr: g.addr, err: err, tls: tcfg != nil, token: g.token != "", user: g.user != ""}
		var op *net.OpError
		var pe *wire.ProtocolError // the broker's own answer: it speaks Sluice
		var code wire.Code         // a refusal the client read from the broker's answers: likewise
		if !errors.As(err, &op) && !errors.As(err, &pe) && !errors.As(err, &code) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// Something answered, but not a Sluice handshake: find out what, to say what to do.
			pctx, cancel := context.WithTimeout(ctx, min(g.timeout, 5*time.Second))
			de.peer = probePeer(pctx, g.addr)
			cancel()
		}
		return nil, de
	}
	return c, nil
}

// tlsConfig is the client's TLS configuration from --tls, --tls-ca, --tls-cert and --tls-key; nil
// without TLS.
func (g *globals) tlsConfig() (*tls.Config, error) {
	if !g.tls && g.tlsCA == "" && g.tlsCert == "" && g.tlsKey == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.tlsCA != "" {
		pem, err := os.ReadFile(g.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", g.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if (g.tlsCert == "") != (g.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if g.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(g.tlsCert, g.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// What answers at an address where the Sluice handshake failed (probePeer).
const (
	peerUnknown = iota
	peerHTTP    // an HTTP server: the broker's metrics port, or another service
	peerTLS     // a TLS server: the broker's --tls-listen port
	peerPlain   // neither HTTP nor TLS: a plain Sluice listener, when the client asked for TLS
)

// probePeer connects to addr once more and starts a TLS handshake, to tell from the first bytes that
// come back what listens there: a TLS server answers with a handshake record or an alert, an HTTP
// server with "HTTP/1.1 400 Bad Request", and a Sluice broker with an error frame. Only the first
// record's header is read; no certificate is trusted and nothing is sent after the ClientHello.
func probePeer(ctx context.Context, addr string) int {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return peerUnknown
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	// The handshake stops at the first answer; verification is off because no data is ever sent.
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	err = tc.HandshakeContext(ctx)
	var rh tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case err == nil, errors.As(err, &alert):
		return peerTLS
	case errors.As(err, &rh) && bytes.HasPrefix(rh.RecordHeader[:], []byte("HTTP/")):
		return peerHTTP
	case errors.As(err, &rh):
		return peerPlain
	}
	return peerUnknown
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
	tls  bool // the client asked for TLS
	peer int  // what answers at addr when something did but not a Sluice broker (probePeer)
	// token and user say which credentials the client offered (--token, --user), for the advice on
	// a refused authentication.
	token, user bool
}

func (e *dialError) Error() string {
	switch {
	case e.peer == peerHTTP:
		return fmt.Sprintf("%s answers HTTP, not the Sluice protocol: is it the broker's HTTP API or metrics port? "+
			"Point --addr at sluiced's --listen address (default %s)", e.addr, defaultAddr)
	case e.peer == peerTLS && !e.tls:
		return fmt.Sprintf("the broker at %s expects TLS: add --tls (and --tls-ca FILE for a private CA)", e.addr)
	case e.peer == peerPlain && e.tls:
		return fmt.Sprintf("%s does not answer TLS: drop --tls, or point --addr at sluiced's --tls-listen address", e.addr)
	}
	if errors.Is(e.err, client.ErrHandshake) && (errors.Is(e.err, io.EOF) || errors.Is(e.err, syscall.ECONNRESET)) {
		// Closed without a word: another protocol's listener (sluiced's Kafka or MQTT face drops a
		// connection whose first bytes are not its protocol's).
		return fmt.Sprintf("cannot connect to the broker at %s: something listens there but closed the connection without a Sluice hello; "+
			"is it another of the broker's listeners (Kafka, MQTT)? Point --addr at sluiced's --listen address (default %s)", e.addr, defaultAddr)
	}
	var op *net.OpError
	if errors.As(e.err, &op) && op.Err != nil {
		// "dial tcp 127.0.0.1:1: connect: connection refused" says the address twice.
		return fmt.Sprintf("cannot reach the broker at %s: %v", e.addr, op.Err)
	}
	if errors.Is(e.err, context.DeadlineExceeded) {
		return fmt.Sprintf("cannot reach the broker at %s: no answer within the timeout", e.addr)
	}
	msg := fmt.Sprintf("cannot connect to the broker at %s: %s", e.addr, errorLine(e.err))
	if errors.Is(e.err, wire.CodeAuthFailed) {
		switch {
		case e.user:
			msg += ": check --user and its password (sluiced reads its --users file at start)"
		case e.token:
			msg += ": is --token one of the broker's tokens (sluiced --token, --token-file)?"
		default:
			msg += ": give --token T (env SLUICE_TOKEN), or --user NAME with --password-file F"
		}
	}
	return msg
}

func (e *dialError) Unwrap() error { return e.err }

// errorLine renders err as one line for a human: the package prefixes the client and wire errors
// carry ("client: ", "wire: ") are dropped, and the broker's errors read as "unknown topic: orders".
func errorLine(err error) string {
	var de *dialError
	if errors.As(err, &de) {
		return de.Error()
	}
	s := err.Error()
	for _, p := range []string{"client: ", "wire: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	s = strings.ReplaceAll(s, "\n", "; ")
	return s
}
