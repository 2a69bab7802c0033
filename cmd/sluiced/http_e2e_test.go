package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// TestHTTPListen runs sluiced with --http-listen and a token: records produced natively are read
// over HTTP and the other way round, with the same principal and durability floor; the console and
// the OpenAPI document are served; and SIGTERM stops the broker cleanly while an SSE stream is open.
func TestHTTPListen(t *testing.T) {
	httpAddr := freePort(t)
	b := startBroker(t, t.TempDir(), "--http-listen", httpAddr, "--token", "s3cret=alice", "--durability", "written",
		"--acl", "alice:all:*", "--acl", "alice:consume:group:*")
	base := "http://" + httpAddr
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
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
		st, _ := call("GET", "/v1/whoami", "", "")
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HTTP listener did not answer\n%s", b.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, body := call("GET", "/v1/topics", "", ""); st != 401 || !strings.Contains(body, `"name":"authentication failed"`) {
		t.Fatalf("no token: %d %s", st, body)
	}
	if st, body := call("POST", "/v1/topics", "s3cret", `{"name":"web","partitions":1}`); st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	// Native produce, HTTP consume.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, b.addr, client.WithAuthToken("s3cret"), client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Producer("web", client.WithDurability(wire.DurabilityWritten))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, client.Record{Value: []byte("native"), Headers: []client.Header{{Key: []byte("h"), Value: []byte("1")}}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, body := call("GET", "/v1/topics/web/partitions/0/records?offset=0&wait_ms=5000", "s3cret", "")
	if st != 200 || !strings.Contains(body, `"value":"native"`) || !strings.Contains(body, `"headers":[{"key":"h","value":"1"}]`) {
		t.Fatalf("HTTP consume: %d %s", st, body)
	}
	// HTTP produce (durability none, raised to the floor), native consume.
	st, body = call("POST", "/v1/topics/web/records", "s3cret", `{"records":[{"key":"k","value":"over http"}],"durability":"none"}`)
	if st != 200 || !strings.Contains(body, `"durability":"written"`) || !strings.Contains(body, `"base_offset":1`) {
		t.Fatalf("HTTP produce: %d %s", st, body)
	}
	cons, err := c.Subscribe(ctx, "web", client.WithPartition(0), client.WithStartOffset(1))
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(ctx)
	if err != nil || string(m.Value) != "over http" || string(m.Key) != "k" {
		t.Fatalf("native consume: %v %+v", err, m)
	}
	// Request/reply across the faces: an HTTP request answered by a Go client's Reply.
	if st, body := call("POST", "/v1/topics", "s3cret", `{"name":"svc","partitions":1}`); st != 201 {
		t.Fatalf("create svc: %d %s", st, body)
	}
	svc, err := c.Subscribe(ctx, "svc", client.WithPartition(0), client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	replied := make(chan error, 1)
	go func() {
		m, err := svc.Next(ctx)
		if err == nil {
			err = c.Reply(ctx, m, client.Record{Value: append([]byte("re: "), m.Value...)})
		}
		replied <- err
	}()
	st, body = call("POST", "/v1/topics/svc/request", "s3cret", `{"record":{"value":"ping"},"timeout_ms":10000}`)
	if st != 200 || !strings.Contains(body, `"value":"re: ping"`) {
		t.Fatalf("request: %d %s", st, body)
	}
	if err := <-replied; err != nil {
		t.Fatal(err)
	}
	// The native listener's connections are reported.
	var stats struct{ Connections map[string]int64 }
	_, body = call("GET", "/v1/stats", "s3cret", "")
	if err := json.Unmarshal([]byte(body), &stats); err != nil || stats.Connections["open"] < 1 {
		t.Fatalf("stats: %v %s", err, body)
	}
	for _, path := range []string{"/", "/app.js", "/openapi.json"} {
		if st, _ := call("GET", path, "", ""); st != 200 {
			t.Fatalf("GET %s: %d", path, st)
		}
	}
	// An open SSE stream does not hold up a clean stop.
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/topics/web/partitions/0/stream?offset=0", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != "id: 1" {
	}
	b.stop()
}
