package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// TestUsersFileEndToEnd runs the built binaries: `sluice user add` writes a users file, `sluiced
// --users` serves it, and `sluice --user` and the Go client (SCRAM and PLAIN) authenticate against
// it, while a wrong password, an unknown user and no credentials are refused. A users file others
// may write stops sluiced at start-up.
func TestUsersFileEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cli := filepath.Join(dir, "sluice")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", cli, "../sluice").CombinedOutput(); err != nil {
		t.Fatalf("go build sluice: %v\n%s", err, out)
	}
	users := filepath.Join(dir, "users")
	env := append(os.Environ(), "SLUICE_USERS="+users, "SLUICE_TOKEN=", "SLUICE_USER=", "SLUICE_PASSWORD=", "SLUICE_PASSWORD_FILE=")
	sh := func(stdin string, args ...string) (int, string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, cli, args...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	}
	if code, out := sh("secret\n", "user", "add", "alice", "--password-stdin"); code != 0 || out != "added user alice\n" {
		t.Fatalf("user add alice: %d %q", code, out)
	}
	if code, out := sh("hunter2\n", "user", "add", "bob", "--password-stdin", "--iterations", "10000"); code != 0 {
		t.Fatalf("user add bob: %d %q", code, out)
	}
	if code, out := sh("", "user", "list"); code != 0 || !strings.HasPrefix(out, "alice\t") || !strings.Contains(out, "\nbob\t") {
		t.Fatalf("user list: %d %q", code, out)
	}

	b := startBroker(t, filepath.Join(dir, "data"), "--users", users)
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"} {
		if code, out := sh("", "--addr", b.addr, "--user", "alice", "--password-file", pw, "--mechanism", mech, "topic", "create", "t-"+strings.ToLower(mech), "--partitions", "1"); code != 0 {
			t.Errorf("%s: topic create as alice: %d %q", mech, code, out)
		}
	}
	for _, args := range [][]string{
		{"--user", "bob", "--password-file", pw},   // bob's password is not alice's
		{"--user", "carol", "--password-file", pw}, // no such user
		{}, // no credentials
	} {
		args = append([]string{"--addr", b.addr}, append(args, "topic", "list")...)
		if code, out := sh("", args...); code != 1 || !strings.Contains(out, "auth") {
			t.Errorf("sluice %v: %d %q, want exit 1 and an authentication error", args, code, out)
		}
	}
	c, err := client.Dial(ctx, b.addr, client.WithSCRAM("bob", "hunter2", "SCRAM-SHA-512"), client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("Go client as bob: %v", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := client.Dial(ctx, b.addr, client.WithSCRAM("bob", "secret", "SCRAM-SHA-512"), client.WithLogger(slog.New(slog.DiscardHandler))); !errors.Is(err, wire.CodeAuthFailed) {
		t.Errorf("Go client as bob with alice's password: %v", err)
	}
	b.stop()

	if err := os.Chmod(users, 0o666); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, sluicedBinary(t), "--users", users, "--data", filepath.Join(dir, "data2"), "--listen", freePort(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "group or others may write") {
		t.Fatalf("sluiced with a world-writable users file: err %v, output %q", err, out)
	}
}
