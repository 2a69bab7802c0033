package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine/auth"
)

// TestHTTPTokensBesideUsers runs sluiced with --users and --token together: the HTTP face takes the
// token as a bearer token and as a Basic password for its principal, and a user's password as Basic,
// as the native and Kafka faces do (it once got the users without the tokens, and refused every token).
func TestHTTPTokensBesideUsers(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if _, err := auth.AddUser(users, "bob", "hunter2", 0); err != nil {
		t.Fatal(err)
	}
	httpAddr := freePort(t)
	b := startBroker(t, filepath.Join(dir, "data"), "--http-listen", httpAddr, "--users", users, "--token", "s3cret=alice")
	defer b.stop()
	whoami := func(set func(*http.Request)) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v1/whoami", nil)
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, _ := whoami(func(*http.Request) {}); st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HTTP listener did not answer\n%s", b.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		set  func(*http.Request)
		want string
	}{
		{"bearer token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, `"principal":"alice","authenticated":true`},
		{"basic with the token", func(r *http.Request) { r.SetBasicAuth("alice", "s3cret") }, `"principal":"alice","authenticated":true`},
		{"basic with a user's password", func(r *http.Request) { r.SetBasicAuth("bob", "hunter2") }, `"principal":"bob","authenticated":true`},
	} {
		if st, body := whoami(tc.set); st != 200 || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want 200 and %s", tc.name, st, body, tc.want)
		}
	}
	if st, body := whoami(func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }); st != 401 {
		t.Errorf("a wrong token: %d %s, want 401", st, body)
	}
}
