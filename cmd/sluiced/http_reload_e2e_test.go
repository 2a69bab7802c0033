package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHTTPReloadsTokensAndACL: SIGHUP's new --token-file and --acl-file reach the HTTP face as they
// reach the native listener (it kept the start-up tokens and rules: a new token was refused with 401
// and an old one still served).
func TestHTTPReloadsTokensAndACL(t *testing.T) {
	dir := t.TempDir()
	tokens, acls := filepath.Join(dir, "tokens"), filepath.Join(dir, "acl")
	write := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tokens, "t-alice=alice\n")
	write(acls, "alice:all:*\n")
	httpAddr := freePort(t)
	b := startBroker(t, filepath.Join(dir, "data"), "--http-listen", httpAddr, "--token-file", tokens, "--acl-file", acls)
	defer b.stop()
	whoami := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s\n%s", what, b.log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("alice's token over HTTP", func() bool { st, _ := whoami("t-alice"); return st == 200 })

	write(tokens, "t-bob=bob\n")
	write(acls, "bob:all:*\n")
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("bob's new token over HTTP after SIGHUP", func() bool {
		st, body := whoami("t-bob")
		return st == 200 && strings.Contains(body, `"principal":"bob"`)
	})
	if st, body := whoami("t-alice"); st != 401 {
		t.Errorf("alice's removed token over HTTP after SIGHUP: %d %s, want 401", st, body)
	}
}
