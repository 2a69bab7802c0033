package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
)

var quiet = servertest.Logger()

// startBroker runs a real engine and server in-process on a loopback port, with topics created only
// on request (so unknown topics stay unknown), and returns its address.
func startBroker(t *testing.T) string {
	t.Helper()
	return startBrokerWith(t, nil)
}

// startBrokerWith is startBroker with server options adjusted by set.
func startBrokerWith(t *testing.T, set func(*server.Options)) string {
	t.Helper()
	srv, _ := servertest.Start(t, nil, set)
	return srv.Addr().String()
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// result is one in-process run of the command line.
type result struct {
	code           int
	stdout, stderr string
}

// sluice runs the command line in-process against addr with stdin as input.
func sluice(t *testing.T, addr string, stdin []byte, args ...string) result {
	t.Helper()
	return sluiceCtx(t, testCtx(t), addr, bytes.NewReader(stdin), args...)
}

func sluiceCtx(t *testing.T, ctx context.Context, addr string, stdin io.Reader, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"--addr", addr}, args...), stdin, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// ok runs the command line and fails the test unless it succeeds.
func ok(t *testing.T, addr string, stdin []byte, args ...string) result {
	t.Helper()
	r := sluice(t, addr, stdin, args...)
	if r.code != 0 {
		t.Fatalf("sluice %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// oneErrorLine checks that a failed command printed exactly one "sluice: " line on stderr
// containing want, and exited 1.
func oneErrorLine(t *testing.T, r result, want string) {
	t.Helper()
	if r.code != exitFail {
		t.Errorf("exit %d, want %d (stderr %q)", r.code, exitFail, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "sluice: ") || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not one sluice: line: %q", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q does not mention %q", r.stderr, want)
	}
}

func dialT(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.Dial(testCtx(t), addr, client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ownFlags are the flags each of this package's commands must list in --help.
var ownFlags = map[string][]string{
	"topic create":   {"--partitions", "--retention-bytes", "--retention-age", "--segment-bytes", "--memory"},
	"topic list":     nil,
	"topic describe": nil,
	"topic delete":   nil,
	"produce":        {"--file", "--delim", "--whole", "--key", "--key-field", "--header", "--partition", "--durability", "--compression", "--quiet"},
	"consume":        {"--from", "--group", "--partition", "--count", "--idle", "--format", "--delim", "--key-field"},
	"group list":     nil,
	"group describe": nil,
	"ping":           {"--count", "--interval"},
	"version":        nil,
}

func TestHelp(t *testing.T) {
	addr := deadAddr(t) // help never dials
	for name, flags := range ownFlags {
		if commands[name] == nil {
			t.Errorf("command %q is not registered", name)
			continue
		}
		for _, h := range []string{"--help", "-h"} {
			args := append(strings.Fields(name), h)
			r := sluice(t, addr, nil, args...)
			if r.code != 0 || r.stderr != "" {
				t.Errorf("sluice %s %s: exit %d, stderr %q", name, h, r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stdout, "Usage: sluice "+name) {
				t.Errorf("sluice %s %s: usage starts %q", name, h, firstLine(r.stdout))
			}
			for _, fl := range append(flags, "--addr", "--token", "--timeout") {
				if !strings.Contains(r.stdout, "  "+fl+" ") && !strings.Contains(r.stdout, "  "+fl+"\n") {
					t.Errorf("sluice %s --help does not list %s:\n%s", name, fl, r.stdout)
				}
			}
		}
		// "sluice help CMD" and global flags before the command.
		if r := sluice(t, addr, nil, append([]string{"help"}, strings.Fields(name)...)...); r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: sluice "+name) {
			t.Errorf("sluice help %s: exit %d, %q", name, r.code, firstLine(r.stdout))
		}
	}
	// Every registered command, those of other files included, has a --help that exits 0.
	for name := range commands {
		if r := sluice(t, addr, nil, append(strings.Fields(name), "--help")...); r.code != 0 {
			t.Errorf("sluice %s --help: exit %d, stderr %q", name, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"topic", "--help"}, {"group", "--help"}, {"help", "topic"}} {
		r := sluice(t, addr, nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: sluice") || r.stderr != "" {
			t.Errorf("sluice %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), r.code, firstLine(r.stdout), r.stderr)
		}
	}
	r := sluice(t, addr, nil, "--help")
	for name := range commands {
		if !strings.Contains(r.stdout, "  "+name+" ") {
			t.Errorf("sluice --help does not list %q", name)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	addr := deadAddr(t) // usage errors are found before dialing: a dial would exit 1, not 2
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "Usage: sluice"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"--bogus", "topic", "list"}, "unknown flag --bogus"},
		{[]string{"--adr", "x", "topic", "list"}, "unknown flag --adr (did you mean --addr?)"},
		{[]string{"topic"}, "topic needs a command"},
		{[]string{"topic", "frob"}, `unknown command "topic frob"`},
		{[]string{"group", "frob"}, `unknown command "group frob"`},
		{[]string{"topic", "create"}, "missing NAME"},
		{[]string{"topic", "create", "t", "--partitions", "x"}, `invalid value "x" for flag -partitions`},
		{[]string{"topic", "create", "t", "--retention-bytes", "lots"}, "retention-bytes"},
		{[]string{"topic", "create", "t", "--retention-age", "forever"}, "retention-age"},
		{[]string{"topic", "describe", "a", "b"}, `unexpected argument "b"`},
		{[]string{"topic", "list", "--bogus"}, "unknown flag --bogus"},
		{[]string{"produce"}, "missing TOPIC"},
		{[]string{"produce", "t", "--durability", "maybe"}, "want none, written or fsync"},
		{[]string{"produce", "t", "--compression", "brotli"}, "want none, gzip, snappy, lz4 or zstd"},
		{[]string{"produce", "t", "--whole", "--delim", ","}, "--whole and --delim exclude each other"},
		{[]string{"produce", "t", "--key", "k", "--key-field"}, "--key and --key-field exclude each other"},
		{[]string{"produce", "t", "--header", "novalue"}, `--header "novalue" is not k=v`},
		{[]string{"produce", "t", "--delim", `\q`}, "unknown escape"},
		{[]string{"produce", "t", "--delim", ""}, "empty delimiter"},
		{[]string{"consume", "t", "--bogus"}, "unknown flag --bogus"},
		{[]string{"consume", "t", "--form", "json"}, "unknown flag --form (did you mean --format?)"},
		{[]string{"consume", "t", "--format", "xml"}, `--format "xml": want raw, json or a template`},
		{[]string{"consume", "t", "--from", "yesterday"}, "want earliest, latest, an offset, -N, or an RFC 3339 time"},
		{[]string{"consume", "t", "--group", "g", "--partition", "0"}, "--partition and --group exclude each other"},
		{[]string{"consume", "t", "--format", "json", "--delim", ","}, "apply to --format raw only"},
		{[]string{"consume", "t", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"group", "describe"}, "missing GROUP"},
		{[]string{"ping", "--count", "0"}, "--count must be at least 1"},
		{[]string{"consume", "t", "--from", "-0"}, "-N takes N of at least 1"},
		{[]string{"bench", "--size", "0"}, "--size 0: at least 8 bytes"},
		{[]string{"bench", "--rate", "0"}, "--rate 0: more than 0"},
		{[]string{"bench", "--batch-bytes", "0"}, "--batch-bytes 0"},
		{[]string{"bench", "--keys", "uniform", "--key-count", "0"}, "--key-count 0"},
		{[]string{"topic", "create", "t", "--partitions", "-1"}, "at least 1 partition"},
	} {
		r := sluice(t, addr, nil, tc.args...)
		if r.code != exitUsage {
			t.Errorf("sluice %s: exit %d, want %d; stderr %q", strings.Join(tc.args, " "), r.code, exitUsage, r.stderr)
		}
		if !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "Usage: sluice") {
			t.Errorf("sluice %s: stderr lacks %q or the usage:\n%s", strings.Join(tc.args, " "), tc.want, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("sluice %s: stdout %q", strings.Join(tc.args, " "), r.stdout)
		}
	}
}

func TestBrokerErrors(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "exists", "--partitions", "2")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"topic", "describe", "nope"}, "unknown topic"},
		{[]string{"topic", "delete", "nope"}, "unknown topic"},
		{[]string{"topic", "create", "exists"}, "topic exists"},
		{[]string{"produce", "nope"}, "unknown topic"},
		{[]string{"consume", "nope", "--idle", "100ms"}, "unknown topic"},
		{[]string{"consume", "exists", "--from", "99", "--idle", "100ms"}, "start offset 99 of exists partition 0 outside its records"},
		{[]string{"group", "describe", "nope"}, "unknown group"},
		{[]string{"produce", "exists", "--partition", "5"}, "has no partition 5"},
		{[]string{"consume", "exists", "--partition", "5", "--idle", "100ms"}, "unknown partition"},
		{[]string{"produce", "exists", "--file", filepath.Join(t.TempDir(), "missing")}, "no such file"},
	} {
		r := sluice(t, addr, []byte("x\n"), tc.args...)
		t.Logf("sluice %s: %s", strings.Join(tc.args, " "), strings.TrimSpace(r.stderr))
		oneErrorLine(t, r, tc.want)
	}

	dead := deadAddr(t)
	for _, args := range [][]string{{"ping"}, {"topic", "list"}, {"topic", "create", "t"}, {"produce", "t"}, {"consume", "t"}, {"group", "list"}} {
		r := sluice(t, dead, []byte("x\n"), args...)
		oneErrorLine(t, r, "cannot reach the broker at "+dead)
	}
}

func TestToken(t *testing.T) {
	addr := startBrokerWith(t, func(o *server.Options) { o.Tokens = map[string]string{"s3cret": "ops"} })
	r := ok(t, addr, nil, "topic", "create", "guarded", "--token", "s3cret")
	if r.stdout != "created topic guarded with 4 partitions\n" {
		t.Errorf("create with a token: %q", r.stdout)
	}
	ok(t, addr, []byte("x\n"), "--token=s3cret", "produce", "guarded", "--quiet")
	r = sluice(t, addr, nil, "topic", "list")
	t.Logf("without a token: %s", r.stderr)
	oneErrorLine(t, r, "auth")
	r = sluice(t, addr, nil, "topic", "list", "--token", "wrong")
	t.Logf("with a wrong token: %s", r.stderr)
	oneErrorLine(t, r, "auth")
}

func TestPingVersion(t *testing.T) {
	addr := startBroker(t)
	r := ok(t, addr, nil, "ping", "--count", "3", "--interval", "1ms")
	if n := strings.Count(r.stdout, "pong from "+addr); n != 3 {
		t.Errorf("3 pings printed %d pongs:\n%s", n, r.stdout)
	}
	r = ok(t, addr, nil, "version")
	if !strings.HasPrefix(r.stdout, "sluice ") || !strings.Contains(r.stdout, "protocol 2") {
		t.Errorf("version: %q", r.stdout)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestUnknownTopicHint: a command that reads or writes a topic that does not exist says how to see
// the topics and make one, on its one error line; describe and delete, which name a topic to act on
// and not to use, do not.
func TestUnknownTopicHint(t *testing.T) {
	addr := startBroker(t)
	const hint = "sluice topic create nope"
	for _, args := range [][]string{
		{"produce", "nope"},
		{"consume", "nope", "--idle", "100ms"},
		{"queue", "consume", "nope", "--group", "g", "--idle", "100ms"},
		{"request", "nope", "hi"},
		{"reply", "nope", "--idle", "100ms"},
	} {
		r := sluice(t, addr, []byte("x\n"), args...)
		oneErrorLine(t, r, "unknown topic: nope")
		if !strings.Contains(r.stderr, hint) {
			t.Errorf("sluice %s: stderr %q lacks %q", strings.Join(args, " "), r.stderr, hint)
		}
	}
	for _, args := range [][]string{{"topic", "describe", "nope"}, {"topic", "delete", "nope"}} {
		r := sluice(t, addr, nil, args...)
		oneErrorLine(t, r, "unknown topic: nope")
		if strings.Contains(r.stderr, "topic create") {
			t.Errorf("sluice %s: stderr %q suggests creating the topic", strings.Join(args, " "), r.stderr)
		}
	}
}

// TestAuthFailureSaysWhatToDo: a refused handshake says what to give (no credentials), or what to
// check (a wrong token, a wrong password), on one line, and opens no second connection to probe the
// port: the broker answered the Sluice handshake, so it is no mismatch (the probe counted as a
// protocol error, with a "looks like TLS" warning in the broker's log).
func TestAuthFailureSaysWhatToDo(t *testing.T) {
	srv, _ := servertest.Start(t, nil, func(o *server.Options) { o.Tokens = map[string]string{"s3cret": "ops"} })
	addr := srv.Addr().String()
	for _, tc := range []struct {
		args []string
		want string
		// protoErrs is what the broker counts as protocol errors: it closes a wrong token's
		// connection, which counts as one.
		protoErrs uint64
	}{
		{[]string{"topic", "list"}, "give --token", 0},
		{[]string{"topic", "list", "--token", "wrong"}, "is --token one of the broker's tokens", 1},
	} {
		before, pbefore := srv.Stats().Accepted.Load(), srv.Stats().ProtocolErrors.Load()
		r := sluice(t, addr, nil, tc.args...)
		oneErrorLine(t, r, tc.want)
		if n := srv.Stats().Accepted.Load() - before; n != 1 {
			t.Errorf("sluice %s: %d connections, want 1", strings.Join(tc.args, " "), n)
		}
		if n := uint64(srv.Stats().ProtocolErrors.Load() - pbefore); n != tc.protoErrs {
			t.Errorf("sluice %s: %d protocol errors counted, want %d", strings.Join(tc.args, " "), n, tc.protoErrs)
		}
	}
}
