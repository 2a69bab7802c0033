package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/engine/server"
)

// runLocal runs a command that needs no broker in-process (no --addr).
func runLocal(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(testCtx(t), args, strings.NewReader(stdin), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// TestUserCommands: sluice user add (password from stdin, a file, SLUICE_USERS), list, delete, and
// their usage errors; then --user with --password-file or SLUICE_PASSWORD authenticates against a
// broker holding that file, by each mechanism, and a wrong password fails with one error line.
func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	expect := func(r result, code int, what string) {
		t.Helper()
		if r.code != code {
			t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, r.code, code, r.stdout, r.stderr)
		}
	}
	r := runLocal(t, "secret\n", "user", "add", "alice", "--users", users, "--password-stdin")
	expect(r, 0, "add alice")
	if r.stdout != "added user alice\n" {
		t.Errorf("add alice: %q", r.stdout)
	}
	expect(runLocal(t, "", "user", "add", "bob", "--users", users, "--password-file", pwFile, "--iterations", "8192"), 0, "add bob")
	r = runLocal(t, "secret\n", "user", "add", "alice", "--users", users, "--password-stdin")
	expect(r, 0, "add alice again")
	if r.stdout != "set the password of user alice\n" {
		t.Errorf("add alice again: %q", r.stdout)
	}
	t.Setenv("SLUICE_USERS", users)
	r = runLocal(t, "", "user", "list")
	expect(r, 0, "list")
	if r.stdout != "alice\tSCRAM-SHA-256,SCRAM-SHA-512\nbob\tSCRAM-SHA-256,SCRAM-SHA-512\n" {
		t.Errorf("list: %q", r.stdout)
	}
	data, _ := os.ReadFile(users)
	if strings.Contains(string(data), "secret") || strings.Contains(string(data), "hunter2") || !strings.Contains(string(data), "SCRAM-SHA-512$8192:") {
		t.Errorf("users file:\n%s", data)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"user", "add", "carol", "--users", "", "--password-stdin"}, exitUsage, "no users file"},
		{[]string{"user", "add", "carol", "--password-stdin", "--iterations", "100"}, exitUsage, "--iterations"},
		{[]string{"user", "add", "a b", "--password-stdin"}, exitUsage, "invalid user name"},
		{[]string{"user", "add", "--password-stdin"}, exitUsage, "missing NAME"},
		{[]string{"user", "add", "carol", "--password-stdin", "--password-file", pwFile}, exitUsage, "choose one"},
		{[]string{"user", "add", "carol"}, exitFail, "terminal"}, // stdin is not a terminal here
		{[]string{"user", "add", "carol", "--password-file", filepath.Join(dir, "none")}, exitFail, "password file"},
		{[]string{"user", "delete", "nobody"}, exitFail, "unknown user"},
		{[]string{"user", "list", "--users", filepath.Join(dir, "none")}, exitFail, "no such file"},
	} {
		r := runLocal(t, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d stderr %q, want exit %d mentioning %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
	expect(runLocal(t, "", "user", "delete", "bob"), 0, "delete bob")
	expect(runLocal(t, "", "user", "add", "bob", "--password-file", pwFile), 0, "add bob again")

	loaded, err := auth.LoadUsers(users)
	if err != nil {
		t.Fatal(err)
	}
	addr := startBrokerWith(t, func(o *server.Options) { o.Authenticator = &auth.Authenticator{Users: loaded} })
	for i, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"} {
		r := ok(t, addr, nil, "topic", "create", "t"+string(rune('a'+i)), "--partitions", "1", "--user", "bob", "--password-file", pwFile, "--mechanism", mech)
		if !strings.HasPrefix(r.stdout, "created topic") {
			t.Errorf("%s: %q", mech, r.stdout)
		}
	}
	t.Setenv("SLUICE_PASSWORD", "secret")
	ok(t, addr, nil, "topic", "list", "--user", "alice")
	t.Setenv("SLUICE_PASSWORD", "wrong")
	oneErrorLine(t, sluice(t, addr, nil, "topic", "list", "--user", "alice"), "auth")
	oneErrorLine(t, sluice(t, addr, nil, "topic", "list"), "auth")
	oneErrorLine(t, sluice(t, addr, nil, "topic", "list", "--user", "alice", "--mechanism", "SCRAM-SHA-1"), "SCRAM-SHA-1")
	t.Setenv("SLUICE_PASSWORD", "")
	oneErrorLine(t, sluice(t, addr, nil, "topic", "list", "--user", "alice"), "needs a password")
}

// TestUserAddPrompt: without --password-file or --password-stdin, user add asks twice on the
// terminal (a pseudo-terminal here), with echo off, and refuses two passwords that differ.
func TestUserAddPrompt(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	for _, tc := range []struct {
		typed string
		code  int
	}{
		{"s3cret\ns3cret\n", exitOK},
		{"s3cret\nother\n", exitFail},
	} {
		master, slave := openPTY(t)
		if _, err := master.Write([]byte(tc.typed)); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := run(testCtx(t), []string{"user", "add", "bob", "--users", users}, slave, &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), "Password for bob: ") {
			t.Fatalf("typed %q: exit %d, stderr %q", tc.typed, code, errb.String())
		}
		old, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil || old.Lflag&unix.ECHO == 0 {
			t.Fatalf("echo not restored: %v", err)
		}
	}
	u, err := auth.LoadUsers(users)
	if err != nil || !slices.Equal(u.Names(), []string{"bob"}) {
		t.Fatalf("users %v %v", u.Names(), err)
	}
}

// openPTY opens a pseudo-terminal pair, closed at the end of the test.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}
