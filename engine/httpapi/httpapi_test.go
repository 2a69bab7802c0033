package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// fixture is a real engine in a temporary directory with the handler on an httptest server.
type fixture struct {
	t   *testing.T
	e   *engine.Engine
	h   *Handler
	srv *httptest.Server
}

type fixtureOpts struct {
	auth   *auth.Authenticator
	acl    auth.ACL
	tweak  func(*Options)
	engine func(*engine.Options)
}

func newFixture(t *testing.T, fo fixtureOpts) *fixture {
	t.Helper()
	eo := engine.Options{DataDir: t.TempDir(), AutoCreateTopics: true, DefaultPartitions: 2, Logger: slog.New(slog.DiscardHandler)}
	if fo.engine != nil {
		fo.engine(&eo)
	}
	e, err := engine.Open(eo)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Engine: e, Auth: fo.auth, ACL: fo.acl}
	if fo.tweak != nil {
		fo.tweak(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		h.Close()
		e.Close()
	})
	return &fixture{t: t, e: e, h: h, srv: srv}
}

// do sends a request (body: nil, []byte, string, or a value encoded as JSON) with the bearer token
// tok (none if empty) and returns the status and body.
func (f *fixture) do(method, path, tok string, body any) (int, []byte) {
	f.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/octet-stream"
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	default:
		js, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(js), "application/json"
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// must sends a request and decodes a JSON answer of status want into v (nil: ignored).
func (f *fixture) must(method, path, tok string, body any, want int, v any) {
	f.t.Helper()
	st, out := f.do(method, path, tok, body)
	if st != want {
		f.t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, out)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			f.t.Fatalf("%s %s: %v: %s", method, path, err, out)
		}
	}
}

// wantError checks an error answer: the status and the protocol code in the JSON body.
func (f *fixture) wantError(method, path, tok string, body any, status int, code wire.Code) {
	f.t.Helper()
	st, out := f.do(method, path, tok, body)
	var e struct{ Error Error }
	if err := json.Unmarshal(out, &e); err != nil {
		f.t.Fatalf("%s %s: not a JSON error (%v): %s", method, path, err, out)
	}
	if st != status || e.Error.Code != uint16(code) || e.Error.Name != code.String() {
		f.t.Fatalf("%s %s: status %d code %d (%s), want %d code %d (%s): %s", method, path, st, e.Error.Code, e.Error.Name, status, code, code, out)
	}
}

func ptr[T any](v T) *T { return &v }

func TestOpenAPIListsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	inMux := map[string]bool{}
	for _, rt := range routes {
		inMux[strings.ToLower(rt.method)+" "+rt.path] = true
	}
	inDoc := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			if m != "parameters" {
				inDoc[m+" "+path] = true
			}
		}
	}
	for k := range inMux {
		if !inDoc[k] {
			t.Errorf("route %s is not in openapi.json", k)
		}
	}
	for k := range inDoc {
		if !inMux[k] {
			t.Errorf("openapi.json has %s, which no route serves", k)
		}
	}
	// And the document is served.
	f := newFixture(t, fixtureOpts{})
	st, body := f.do("GET", "/openapi.json", "", nil)
	if st != 200 || !bytes.Equal(body, openAPI) {
		t.Fatalf("GET /openapi.json: %d", st)
	}
}

func TestProduceAndConsume(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.must("POST", "/v1/topics", "", TopicConfig{Name: "orders", Partitions: 2}, 201, nil)

	// JSON: text, base64 (binary), headers, a null key, to partition 1, each durability.
	bin := []byte{0, 1, 0xff, 0xfe}
	req := ProduceRequest{Partition: ptr(int32(1)), Records: []Record{
		{Key: ptr("k1"), Value: ptr("hello"), Headers: []HeaderJSON{{Key: "trace", Value: ptr("abc")}, {Key: "nil", Value: nil}}},
		{Value: ptr(base64.StdEncoding.EncodeToString(bin)), Encoding: "base64"},
	}}
	for i, d := range []string{"written", "fsync", "none"} {
		req.Durability = d
		var res ProduceResponse
		want := 200
		if d == "none" {
			want = 202
		}
		f.must("POST", "/v1/topics/orders/records", "", req, want, &res)
		if res.Partition != 1 || res.BaseOffset != int64(2*i) || res.LastOffset != int64(2*i+1) || res.Durability != d {
			t.Fatalf("%s: %+v", d, res)
		}
	}
	// fsync means synced: the partition's synced offset covers it.
	if p := f.e.TopicByName("orders").Partition(1); p.SyncedOffset() < 4 {
		t.Fatalf("synced offset %d after an fsync produce of offsets 2-3", p.SyncedOffset())
	}
	// A raw body is one record; key and headers from the query.
	var raw ProduceResponse
	f.must("POST", "/v1/topics/orders/records?partition=1&key=rk&header=a:1&header=b:2", "", []byte("raw\nbody"), 200, &raw)
	if raw.BaseOffset != 6 {
		t.Fatalf("raw: %+v", raw)
	}

	var got ConsumeResponse
	f.must("GET", "/v1/topics/orders/partitions/1/records?offset=0&max=100", "", nil, 200, &got)
	if len(got.Records) != 7 || got.NextOffset != 7 || got.EndOffset != 7 {
		t.Fatalf("consume: %d records, next %d end %d", len(got.Records), got.NextOffset, got.EndOffset)
	}
	r0, r1, r6 := got.Records[0], got.Records[1], got.Records[6]
	if *r0.Key != "k1" || *r0.Value != "hello" || r0.Encoding != "text" || *r0.Offset != 0 || *r0.Partition != 1 ||
		len(r0.Headers) != 2 || r0.Headers[0].Key != "trace" || *r0.Headers[0].Value != "abc" || r0.Headers[1].Value != nil {
		t.Fatalf("record 0: %+v", r0)
	}
	if r1.Key != nil || r1.Encoding != "base64" || *r1.Value != base64.StdEncoding.EncodeToString(bin) {
		t.Fatalf("record 1: %+v", r1)
	}
	if *r6.Key != "rk" || *r6.Value != "raw\nbody" || len(r6.Headers) != 2 || *r6.Headers[1].Value != "2" {
		t.Fatalf("record 6: %+v", r6)
	}
	// From an offset within a batch, with max.
	f.must("GET", "/v1/topics/orders/partitions/1/records?offset=3&max=2", "", nil, 200, &got)
	if len(got.Records) != 2 || *got.Records[0].Offset != 3 || got.NextOffset != 5 {
		t.Fatalf("offset 3 max 2: %+v", got)
	}
	// By time: records stamped 1000 and 2000 ms.
	f.must("POST", "/v1/topics/orders/records", "", ProduceRequest{Partition: ptr(int32(0)), Records: []Record{
		{Value: ptr("old"), Timestamp: 1000}, {Value: ptr("new"), Timestamp: 2000}}}, 200, nil)
	f.must("GET", "/v1/topics/orders/partitions/0/records?time=1500", "", nil, 200, &got)
	if len(got.Records) != 1 || *got.Records[0].Value != "new" || got.Records[0].Timestamp != 2000 {
		t.Fatalf("by time: %+v", got)
	}
	// from=latest with no wait is empty.
	f.must("GET", "/v1/topics/orders/partitions/0/records?from=latest", "", nil, 200, &got)
	if len(got.Records) != 0 || got.NextOffset != 2 {
		t.Fatalf("latest: %+v", got)
	}

	// Errors carry the protocol's codes.
	f.wantError("GET", "/v1/topics/nope/partitions/0/records", "", nil, 404, wire.CodeUnknownTopic)
	f.wantError("GET", "/v1/topics/orders/partitions/9/records", "", nil, 404, wire.CodeUnknownPartition)
	f.wantError("GET", "/v1/topics/orders/partitions/1/records?offset=99", "", nil, 416, wire.CodeOffsetOutOfRange)
	f.wantError("POST", "/v1/topics/orders/records", "", `{"records":[{"value":"x","encoding":"base64"}]}`, 400, wire.CodeInvalidRequest)
	f.wantError("POST", "/v1/topics/orders/records", "", `{"records":[],"bogus":1}`, 400, wire.CodeInvalidRequest)
	f.wantError("POST", "/v1/topics/orders/records", "", `{"records":[]}`, 400, wire.CodeInvalidRequest)
	f.wantError("POST", "/v1/topics/orders/records", "", `{"records":[{"value":"x"}],"durability":"maybe"}`, 400, wire.CodeInvalidRequest)
	f.wantError("GET", "/v1/nothing", "", nil, 404, wire.CodeInvalidRequest)
}

func TestProduceLimits(t *testing.T) {
	f := newFixture(t, fixtureOpts{tweak: func(o *Options) { o.MaxRequestBytes = 64 << 10; o.MaxRecords = 10 }})
	big := bytes.Repeat([]byte("x"), 65<<10)
	f.wantError("POST", "/v1/topics/t/records", "", big, 413, wire.CodeFrameTooLarge)
	recs := make([]Record, 11)
	for i := range recs {
		recs[i].Value = ptr("v")
	}
	f.wantError("POST", "/v1/topics/t/records", "", ProduceRequest{Records: recs}, 413, wire.CodeBatchTooLarge)
	// Over the broker's batch limit (1 MiB by default) but under the body limit.
	g := newFixture(t, fixtureOpts{tweak: func(o *Options) { o.MaxRequestBytes = 4 << 20 }})
	huge := ProduceRequest{Records: []Record{{Value: ptr(strings.Repeat("y", 1100<<10))}}}
	g.wantError("POST", "/v1/topics/t/records", "", huge, 413, wire.CodeBatchTooLarge)
	// The consume answer is bounded by MaxResponseBytes (the first record always whole).
	h := newFixture(t, fixtureOpts{tweak: func(o *Options) { o.MaxResponseBytes = 4096 }})
	h.must("POST", "/v1/topics", "", TopicConfig{Name: "t", Partitions: 1}, 201, nil)
	for range 3 {
		h.must("POST", "/v1/topics/t/records", "", ProduceRequest{Records: []Record{{Value: ptr(strings.Repeat("z", 3000))}}}, 200, nil)
	}
	var got ConsumeResponse
	h.must("GET", "/v1/topics/t/partitions/0/records?max=10", "", nil, 200, &got)
	if len(got.Records) != 2 || got.NextOffset != 2 {
		t.Fatalf("bounded answer: %d records, next %d; want 2, 2", len(got.Records), got.NextOffset)
	}
	// Too many waiting requests: 429.
	w := newFixture(t, fixtureOpts{tweak: func(o *Options) { o.MaxWaiting = 1 }})
	w.must("POST", "/v1/topics", "", TopicConfig{Name: "t", Partitions: 1}, 201, nil)
	done := make(chan int)
	go func() {
		st, _ := w.do("GET", "/v1/topics/t/partitions/0/records?wait_ms=20000", "", nil)
		done <- st
	}()
	waitUntil(t, func() bool { return w.h.waiting.Load() == 1 })
	w.wantError("GET", "/v1/topics/t/partitions/0/records?wait_ms=10", "", nil, 429, wire.CodeThrottled)
	w.must("POST", "/v1/topics/t/records", "", ProduceRequest{Records: []Record{{Value: ptr("wake")}}}, 200, nil)
	if st := <-done; st != 200 {
		t.Fatalf("long poll: %d", st)
	}
}

// waitUntil polls cond every 5 ms for up to 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLongPollWakesOnProduce: a consume waiting (wait_ms 30 s) at the partition's end returns once a
// record is produced, long before its wait is over. The bound (10 s) is generous: it tells a
// wake-up from a timeout, not a fast machine from a slow one.
func TestLongPollWakesOnProduce(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.must("POST", "/v1/topics", "", TopicConfig{Name: "lp", Partitions: 1}, 201, nil)
	for round := range 3 {
		type result struct {
			st   int
			resp ConsumeResponse
			at   time.Time
		}
		done := make(chan result, 1)
		go func() {
			st, body := f.do("GET", fmt.Sprintf("/v1/topics/lp/partitions/0/records?offset=%d&wait_ms=30000", round), "", nil)
			var r result
			r.st, r.at = st, time.Now()
			_ = json.Unmarshal(body, &r.resp)
			done <- r
		}()
		waitUntil(t, func() bool { return f.h.waiting.Load() == 1 })
		select {
		case r := <-done:
			t.Fatalf("round %d: the poll returned before any produce: %d %+v", round, r.st, r.resp)
		case <-time.After(50 * time.Millisecond):
		}
		produced := time.Now()
		f.must("POST", "/v1/topics/lp/records", "", ProduceRequest{Records: []Record{{Value: ptr("r" + strconv.Itoa(round))}}}, 200, nil)
		r := <-done
		if r.st != 200 || len(r.resp.Records) != 1 || *r.resp.Records[0].Value != "r"+strconv.Itoa(round) {
			t.Fatalf("round %d: %d %+v", round, r.st, r.resp)
		}
		if lat := r.at.Sub(produced); lat > 10*time.Second {
			t.Fatalf("round %d: the poll returned %v after the produce", round, lat)
		} else {
			t.Logf("round %d: woken %v after the produce", round, lat)
		}
	}
	// A poll that nothing wakes answers empty after its wait.
	start := time.Now()
	var got ConsumeResponse
	f.must("GET", "/v1/topics/lp/partitions/0/records?offset=3&wait_ms=200", "", nil, 200, &got)
	if len(got.Records) != 0 || got.NextOffset != 3 || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("empty poll: %+v after %v", got, time.Since(start))
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// readSSE parses events from r, calling fn for each until it returns false.
func readSSE(r io.Reader, fn func(sseEvent) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.data != "" || ev.event != "" {
				if !fn(ev) {
					return nil
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
	return sc.Err()
}

// TestSSEStream100k streams 100,000 records of one partition and checks each arrives once, in
// order, with id = offset; then resumes with Last-Event-ID from the middle.
func TestSSEStream100k(t *testing.T) {
	const n = 100_000
	f := newFixture(t, fixtureOpts{})
	f.must("POST", "/v1/topics", "", TopicConfig{Name: "sse", Partitions: 1}, 201, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/v1/topics/sse/partitions/0/stream?offset=0", nil)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("stream: %d %q", resp.StatusCode, ct)
	}
	// Produce while the stream is open: half before reading starts, half during.
	produced := make(chan error, 1)
	go func() {
		bb := wire.NewBatchBuilder(64 << 10)
		for i := 0; i < n; {
			bb.Reset()
			for j := 0; j < 1000; j, i = j+1, i+1 {
				bb.Append(nil, []byte("m"+strconv.Itoa(i)), nil, int64(i))
			}
			b, _ := bb.Build()
			if _, _, err := f.e.Publish(ctx, "sse", 0, b, wire.DurabilityWritten); err != nil {
				produced <- err
				return
			}
		}
		produced <- nil
	}()
	next := 0
	err = readSSE(resp.Body, func(ev sseEvent) bool {
		var rec Record
		if ev.id != strconv.Itoa(next) || json.Unmarshal([]byte(ev.data), &rec) != nil || *rec.Offset != int64(next) || *rec.Value != "m"+strconv.Itoa(next) {
			t.Errorf("event %d: %+v", next, ev)
			return false
		}
		next++
		return next < n
	})
	if err != nil || next != n {
		t.Fatalf("read %d of %d events: %v", next, n, err)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// Resume after event 49999, as a reconnecting EventSource does.
	req, _ = http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/v1/topics/sse/partitions/0/stream", nil)
	req.Header.Set("Last-Event-ID", "49999")
	resp2, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	next = 50_000
	_ = readSSE(resp2.Body, func(ev sseEvent) bool {
		if ev.id != strconv.Itoa(next) {
			t.Errorf("resumed event: id %q, want %d", ev.id, next)
			return false
		}
		next++
		return next < 50_010
	})
	if next != 50_010 {
		t.Fatalf("resumed stream stopped at %d", next)
	}
}

func TestTopicAdmin(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for i := range 250 {
		f.must("POST", "/v1/topics", "", TopicConfig{Name: fmt.Sprintf("t%04d", i), Partitions: 1, Memory: i%2 == 0}, 201, nil)
	}
	f.wantError("POST", "/v1/topics", "", TopicConfig{Name: "t0000", Partitions: 1}, 409, wire.CodeTopicExists)
	f.wantError("POST", "/v1/topics", "", TopicConfig{Name: "bad/name", Partitions: 1}, 400, wire.CodeInvalidRequest)
	var page TopicList
	f.must("GET", "/v1/topics?offset=100&limit=50", "", nil, 200, &page)
	if page.Total != 250 || len(page.Topics) != 50 || page.Topics[0].Name != "t0100" || page.Topics[49].Name != "t0149" {
		t.Fatalf("page: total %d, %d topics from %s", page.Total, len(page.Topics), page.Topics[0].Name)
	}
	f.must("GET", "/v1/topics?prefix=t01&limit=1000", "", nil, 200, &page)
	if page.Total != 100 || len(page.Topics) != 100 || page.Limit != maxPage {
		t.Fatalf("prefix: total %d, %d topics, limit %d", page.Total, len(page.Topics), page.Limit)
	}
	f.must("POST", "/v1/topics/t0001/records", "", ProduceRequest{Records: []Record{{Value: ptr("abc")}}}, 200, nil)
	var d TopicDescription
	f.must("GET", "/v1/topics/t0001", "", nil, 200, &d)
	if d.Config.Name != "t0001" || d.Config.Memory || len(d.Partitions) != 1 || d.Partitions[0].EndOffset != 1 || d.Partitions[0].Bytes == 0 || !d.Rights.Admin {
		t.Fatalf("describe: %+v", d)
	}
	f.must("DELETE", "/v1/topics/t0001", "", nil, 204, nil)
	f.wantError("GET", "/v1/topics/t0001", "", nil, 404, wire.CodeUnknownTopic)
	f.wantError("DELETE", "/v1/topics/t0001", "", nil, 404, wire.CodeUnknownTopic)
	// Produce auto-creates when the broker does.
	f.must("POST", "/v1/topics/fresh/records", "", ProduceRequest{Records: []Record{{Value: ptr("x")}}}, 200, nil)
	f.must("GET", "/v1/topics/fresh", "", nil, 200, &d)
	if len(d.Partitions) != 2 {
		t.Fatalf("auto-created with %d partitions", len(d.Partitions))
	}
}

func TestGroupsDescribeSeekReset(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.must("POST", "/v1/topics", "", TopicConfig{Name: "g", Partitions: 2}, 201, nil)
	for p := range int32(2) {
		recs := make([]Record, 10)
		for i := range recs {
			recs[i] = Record{Value: ptr("v"), Timestamp: int64(1000 * (i + 1))}
		}
		f.must("POST", "/v1/topics/g/records", "", ProduceRequest{Partition: &p, Records: recs}, 200, nil)
	}
	f.wantError("GET", "/v1/groups/app", "", nil, 404, wire.CodeUnknownGroup)
	var gd GroupDescription
	f.must("POST", "/v1/groups/app/seek", "", SeekRequest{Topic: "g", Partition: ptr(int32(0)), Offset: ptr(int64(4))}, 200, &gd)
	// Partition 1, without a commit, counts from its log start (engine.DescribeGroup).
	if len(gd.Offsets) != 2 || gd.Offsets[0].Committed != 4 || gd.Offsets[0].Lag != 6 ||
		gd.Offsets[1].Committed != 0 || gd.Offsets[1].Lag != 10 || gd.Lag != 16 {
		t.Fatalf("seek: %+v", gd)
	}
	f.must("POST", "/v1/groups/app/seek", "", SeekRequest{Topic: "g", Time: ptr(int64(7000))}, 200, &gd)
	if len(gd.Offsets) != 2 || gd.Offsets[0].Committed != 6 || gd.Offsets[1].Committed != 6 || gd.Lag != 8 {
		t.Fatalf("seek by time: %+v", gd)
	}
	f.must("POST", "/v1/groups/app/reset", "", ResetRequest{Topic: "g", To: "latest"}, 200, &gd)
	if gd.Lag != 0 || gd.Offsets[0].Committed != 10 {
		t.Fatalf("reset latest: %+v", gd)
	}
	f.must("POST", "/v1/groups/app/reset", "", ResetRequest{Topic: "g", To: "earliest"}, 200, &gd)
	if gd.Lag != 20 {
		t.Fatalf("reset earliest: %+v", gd)
	}
	var list struct{ Groups []string }
	f.must("GET", "/v1/groups", "", nil, 200, &list)
	if !slices.Equal(list.Groups, []string{"app"}) {
		t.Fatalf("groups: %v", list.Groups)
	}
	f.wantError("POST", "/v1/groups/app/seek", "", SeekRequest{Topic: "g", Partition: ptr(int32(0)), Offset: ptr(int64(11))}, 416, wire.CodeOffsetOutOfRange)
	f.wantError("POST", "/v1/groups/app/seek", "", SeekRequest{Topic: "g", Partition: ptr(int32(0))}, 400, wire.CodeInvalidRequest)
	f.wantError("POST", "/v1/groups/app/reset", "", ResetRequest{Topic: "nope", To: "latest"}, 404, wire.CodeUnknownTopic)
}

func TestWorkQueueSessions(t *testing.T) {
	f := newFixture(t, fixtureOpts{tweak: func(o *Options) { o.MaxSessions = 2; o.SessionTTL = 3 * time.Second }})
	f.must("POST", "/v1/topics", "", TopicConfig{Name: "jobs", Partitions: 1}, 201, nil)
	recs := make([]Record, 5)
	for i := range recs {
		recs[i] = Record{Value: ptr("job" + strconv.Itoa(i))}
	}
	f.must("POST", "/v1/topics/jobs/records", "", ProduceRequest{Records: recs}, 200, nil)
	var s SessionJSON
	f.must("POST", "/v1/queues/workers/sessions", "", OpenSession{Topic: "jobs", AckTimeoutMs: 60_000}, 201, &s)
	var got ReceiveResponse
	f.must("POST", "/v1/queues/workers/sessions/"+s.Session+"/receive?max=3", "", nil, 200, &got)
	if len(got.Records) != 3 || *got.Records[0].Value != "job0" || *got.Records[2].Offset != 2 {
		t.Fatalf("receive 3: %+v", got)
	}
	// The other two come next (from the session's buffer or the queue).
	var rest ReceiveResponse
	f.must("POST", "/v1/queues/workers/sessions/"+s.Session+"/receive?max=10", "", nil, 200, &rest)
	if len(rest.Records) != 2 || *rest.Records[0].Offset != 3 {
		t.Fatalf("receive rest: %+v", rest)
	}
	var qs struct{ Queues []QueueJSON }
	f.must("GET", "/v1/queues", "", nil, 200, &qs)
	if len(qs.Queues) != 1 || qs.Queues[0].Pending != 5 || qs.Queues[0].Ready != 0 || qs.Queues[0].Members != 1 {
		t.Fatalf("queues: %+v", qs)
	}
	settle := SettleRequest{}
	for _, off := range []int64{0, 1, 2, 3} {
		settle.Records = append(settle.Records, struct {
			Partition int32 `json:"partition"`
			Offset    int64 `json:"offset"`
		}{0, off})
	}
	f.must("POST", "/v1/queues/workers/sessions/"+s.Session+"/ack", "", settle, 204, nil)
	settle.Records = settle.Records[:0]
	settle.Records = append(settle.Records, struct {
		Partition int32 `json:"partition"`
		Offset    int64 `json:"offset"`
	}{0, 4})
	f.must("POST", "/v1/queues/workers/sessions/"+s.Session+"/nack", "", settle, 204, nil)
	// The nacked record comes back.
	f.must("POST", "/v1/queues/workers/sessions/"+s.Session+"/receive?wait_ms=5000", "", nil, 200, &got)
	if len(got.Records) != 1 || *got.Records[0].Offset != 4 {
		t.Fatalf("redelivery: %+v", got)
	}
	f.must("GET", "/v1/queues", "", nil, 200, &qs)
	if qs.Queues[0].Pending != 1 {
		t.Fatalf("after acks: %+v", qs.Queues[0])
	}
	// A long receive is woken by a produce.
	done := make(chan ReceiveResponse, 1)
	go func() {
		var r ReceiveResponse
		f.must("POST", "/v1/queues/workers/sessions/"+s.Session+"/receive?wait_ms=30000", "", nil, 200, &r)
		done <- r
	}()
	waitUntil(t, func() bool { return f.h.waiting.Load() == 1 })
	f.must("POST", "/v1/topics/jobs/records", "", ProduceRequest{Records: []Record{{Value: ptr("late")}}}, 200, nil)
	select {
	case r := <-done:
		if len(r.Records) != 1 || *r.Records[0].Value != "late" {
			t.Fatalf("woken receive: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a produce did not wake the receive")
	}
	// Bounded count; unknown, wrong-group and deleted sessions.
	var s2 SessionJSON
	f.must("POST", "/v1/queues/workers/sessions", "", OpenSession{Topic: "jobs"}, 201, &s2)
	f.wantError("POST", "/v1/queues/workers/sessions", "", OpenSession{Topic: "jobs"}, 429, wire.CodeThrottled)
	f.wantError("POST", "/v1/queues/other/sessions/"+s.Session+"/receive", "", nil, 404, wire.CodeUnknownSubscription)
	f.must("DELETE", "/v1/queues/workers/sessions/"+s2.Session, "", nil, 204, nil)
	f.wantError("POST", "/v1/queues/workers/sessions/"+s2.Session+"/receive", "", nil, 404, wire.CodeUnknownSubscription)
	f.wantError("POST", "/v1/queues/workers/sessions", "", OpenSession{Topic: "nope"}, 404, wire.CodeUnknownTopic)
	// An idle session expires (TTL 3 s) and its slot is free again.
	waitUntil(t, func() bool { return f.h.sessions.count() == 0 })
	f.wantError("POST", "/v1/queues/workers/sessions/"+s.Session+"/receive", "", nil, 404, wire.CodeUnknownSubscription)
}

func TestRequestReply(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.must("POST", "/v1/topics", "", TopicConfig{Name: "svc", Partitions: 1}, 201, nil)
	// A responder in-process: upper-cases each request into its reply inbox.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := f.e.SubscribeLocal(wire.Subscribe{Topic: "svc", Partition: 0, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	responderDone := make(chan struct{})
	go func() {
		defer close(responderDone)
		defer l.Close()
		var it wire.RecordIter
		var rec wire.Record
		for {
			d, err := l.Next(ctx)
			if err != nil {
				return
			}
			for rest := d.Batches(); len(rest) > 0; {
				n, _ := wire.BatchSize(rest)
				it.Reset(rest[:n])
				for it.Next(&rec) {
					to, _ := rec.Header(headerReplyTo)
					corr, _ := rec.Header(headerCorrelationID)
					if string(rec.Value) == "ignore" {
						continue
					}
					bb := wire.NewBatchBuilder(256)
					bb.Append(nil, bytes.ToUpper(rec.Value), []wire.Header{{Key: []byte(headerCorrelationID), Value: corr}}, 1)
					b, _ := bb.Build()
					if _, _, err := f.e.Publish(ctx, string(to), 0, b, wire.DurabilityWritten); err != nil {
						t.Errorf("reply: %v", err)
					}
				}
				rest = rest[n:]
			}
		}
	}()
	var rr RequestResponse
	f.must("POST", "/v1/topics/svc/request", "", RequestBody{Record: Record{Value: ptr("ping"),
		Headers: []HeaderJSON{{Key: headerCorrelationID, Value: ptr("spoofed")}}}}, 200, &rr)
	if *rr.Reply.Value != "PING" || rr.Request.BaseOffset != 0 {
		t.Fatalf("reply: %+v", rr)
	}
	f.wantError("POST", "/v1/topics/svc/request", "", RequestBody{Record: Record{Value: ptr("ignore")}, TimeoutMs: 200}, 504, wire.CodeTimeout)
	// Inboxes are gone after each request.
	for _, cfg := range f.e.Topics() {
		if wire.IsInbox(cfg.Name) {
			t.Fatalf("inbox %s left behind", cfg.Name)
		}
	}
	cancel()
	<-responderDone
}

func TestStats(t *testing.T) {
	f := newFixture(t, fixtureOpts{tweak: func(o *Options) {
		o.Connections = func() map[string]int64 { return map[string]int64{"open": 3} }
	}})
	f.must("POST", "/v1/topics/s/records", "", ProduceRequest{Records: []Record{{Value: ptr("a")}, {Value: ptr("b")}}}, 200, nil)
	var s Stats
	f.must("GET", "/v1/stats", "", nil, 200, &s)
	if s.Counters["produced_records_total"] != 2 || s.Counters["http_produce_requests_total"] != 1 || s.Connections["open"] != 3 || s.TimeMs == 0 {
		t.Fatalf("stats: %+v", s)
	}
	if _, ok := s.Counters["sync_duration_seconds_count"]; !ok {
		t.Fatalf("no sync histogram count: %+v", s.Counters)
	}
}

// aclFixture: tokens for alice (everything on orders.*, group app), bob (consume only on orders.*
// and group app) and mallory (nothing).
func aclFixture(t *testing.T) *fixture {
	usersFile := filepath.Join(t.TempDir(), "users")
	if _, err := auth.AddUser(usersFile, "carol", "s3cret", 4096); err != nil {
		t.Fatal(err)
	}
	users, err := auth.LoadUsers(usersFile)
	if err != nil {
		t.Fatal(err)
	}
	a := &auth.Authenticator{Tokens: map[string]string{"ta": "alice", "tb": "bob", "tm": "mallory"}, Users: users}
	var rules auth.Rules
	for _, s := range []string{"alice:all:orders.*", "alice:consume:group:app", "bob:consume:orders.*", "bob:consume:group:app", "carol:all:orders.*"} {
		r, err := auth.ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	return newFixture(t, fixtureOpts{auth: a, acl: rules})
}

func TestAuthAndACL(t *testing.T) {
	f := aclFixture(t)
	// Authentication.
	f.wantError("GET", "/v1/topics", "", nil, 401, wire.CodeAuthFailed)
	f.wantError("GET", "/v1/topics", "wrong", nil, 401, wire.CodeAuthFailed)
	f.wantError("GET", "/v1/whoami", "wrong", nil, 401, wire.CodeAuthFailed)
	var who Whoami
	f.must("GET", "/v1/whoami", "", nil, 200, &who) // without credentials: says so
	if who.Principal != "" || who.Authenticated || !who.AuthEnabled {
		t.Fatalf("anonymous whoami: %+v", who)
	}
	f.must("GET", "/v1/whoami", "ta", nil, 200, &who)
	if who.Principal != "alice" || !who.Authenticated || !who.AuthEnabled || !who.ACLEnabled {
		t.Fatalf("whoami: %+v", who)
	}
	basic := func(user, pass string) int {
		req, _ := http.NewRequest("GET", f.srv.URL+"/v1/whoami", nil)
		req.SetBasicAuth(user, pass)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&who)
		return resp.StatusCode
	}
	if st := basic("carol", "s3cret"); st != 200 || who.Principal != "carol" { // a user's password (PLAIN)
		t.Fatalf("basic carol: %d %+v", st, who)
	}
	if st := basic("carol", "wrong"); st != 401 {
		t.Fatalf("basic carol, wrong password: %d", st)
	}
	if st := basic("alice", "ta"); st != 200 || who.Principal != "alice" { // a token as a password, for its own principal
		t.Fatalf("basic alice with her token: %d %+v", st, who)
	}
	if st := basic("bob", "ta"); st != 401 {
		t.Fatalf("basic bob with alice's token: %d", st)
	}
	if st := basic("alice", "wrong"); st != 401 {
		t.Fatalf("basic wrong password: %d", st)
	}

	// Rights: alice administers orders.*, bob only consumes, mallory has nothing.
	f.must("POST", "/v1/topics", "ta", TopicConfig{Name: "orders.eu", Partitions: 1}, 201, nil)
	f.wantError("POST", "/v1/topics", "tb", TopicConfig{Name: "orders.us", Partitions: 1}, 403, wire.CodeNotAuthorized)
	f.wantError("POST", "/v1/topics", "ta", TopicConfig{Name: "payments", Partitions: 1}, 403, wire.CodeNotAuthorized)
	f.must("POST", "/v1/topics/orders.eu/records", "ta", ProduceRequest{Records: []Record{{Value: ptr("x")}}}, 200, nil)
	f.wantError("POST", "/v1/topics/orders.eu/records", "tb", ProduceRequest{Records: []Record{{Value: ptr("x")}}}, 403, wire.CodeNotAuthorized)
	f.wantError("POST", "/v1/topics/orders.eu/records", "tb", []byte("raw"), 403, wire.CodeNotAuthorized)
	// A produce that would auto-create needs admin too; produce-only on a name is not enough.
	f.wantError("POST", "/v1/topics/payments/records", "ta", ProduceRequest{Records: []Record{{Value: ptr("x")}}}, 403, wire.CodeNotAuthorized)
	if f.e.TopicByName("payments") != nil {
		t.Fatal("a refused produce created its topic")
	}
	var got ConsumeResponse
	f.must("GET", "/v1/topics/orders.eu/partitions/0/records", "tb", nil, 200, &got)
	if len(got.Records) != 1 {
		t.Fatalf("bob reads: %+v", got)
	}
	f.wantError("GET", "/v1/topics/orders.eu/partitions/0/records", "tm", nil, 403, wire.CodeNotAuthorized)
	f.wantError("GET", "/v1/topics/orders.eu/partitions/0/stream", "tm", nil, 403, wire.CodeNotAuthorized)
	f.wantError("GET", "/v1/topics/orders.eu", "tm", nil, 403, wire.CodeNotAuthorized)
	f.wantError("GET", "/v1/topics/no.such", "tm", nil, 403, wire.CodeNotAuthorized) // refused whether or not it exists
	f.wantError("DELETE", "/v1/topics/orders.eu", "tb", nil, 403, wire.CodeNotAuthorized)
	f.wantError("POST", "/v1/topics/orders.eu/request", "tb", RequestBody{Record: Record{Value: ptr("x")}}, 403, wire.CodeNotAuthorized)
	var d TopicDescription
	f.must("GET", "/v1/topics/orders.eu", "tb", nil, 200, &d)
	if d.Rights != (Rights{Consume: true}) {
		t.Fatalf("bob's rights: %+v", d.Rights)
	}
	// Listings show only what the principal may describe.
	var page TopicList
	f.must("GET", "/v1/topics", "tm", nil, 200, &page)
	if page.Total != 0 {
		t.Fatalf("mallory lists %+v", page)
	}
	f.must("GET", "/v1/topics", "tb", nil, 200, &page)
	if page.Total != 1 || page.Topics[0].Rights.Produce {
		t.Fatalf("bob lists %+v", page)
	}
	// Groups: app for alice and bob, not mallory; other groups for nobody.
	f.must("POST", "/v1/groups/app/seek", "tb", SeekRequest{Topic: "orders.eu", Offset: ptr(int64(1))}, 200, nil)
	f.wantError("POST", "/v1/groups/app/seek", "tm", SeekRequest{Topic: "orders.eu", Offset: ptr(int64(1))}, 403, wire.CodeNotAuthorized)
	f.wantError("POST", "/v1/groups/other/reset", "ta", ResetRequest{Topic: "orders.eu", To: "latest"}, 403, wire.CodeNotAuthorized)
	f.wantError("GET", "/v1/groups/app", "tm", nil, 403, wire.CodeNotAuthorized)
	var groups struct{ Groups []string }
	f.must("GET", "/v1/groups", "tm", nil, 200, &groups)
	if len(groups.Groups) != 0 {
		t.Fatalf("mallory sees groups %v", groups.Groups)
	}
	// Work queues: group and topic rights; a session belongs to its opener.
	f.wantError("POST", "/v1/queues/other/sessions", "tb", OpenSession{Topic: "orders.eu"}, 403, wire.CodeNotAuthorized)
	f.wantError("POST", "/v1/queues/app/sessions", "tm", OpenSession{Topic: "orders.eu"}, 403, wire.CodeNotAuthorized)
	var s SessionJSON
	f.must("POST", "/v1/queues/app/sessions", "tb", OpenSession{Topic: "orders.eu"}, 201, &s)
	f.wantError("POST", "/v1/queues/app/sessions/"+s.Session+"/receive", "ta", nil, 404, wire.CodeUnknownSubscription)
	f.must("POST", "/v1/queues/app/sessions/"+s.Session+"/receive", "tb", nil, 200, nil)
	// The console and the OpenAPI document need no credentials (they hold no data).
	if st, _ := f.do("GET", "/openapi.json", "", nil); st != 200 {
		t.Fatalf("openapi.json without credentials: %d", st)
	}
	if st, _ := f.do("GET", "/", "", nil); st != 200 {
		t.Fatalf("console without credentials: %d", st)
	}
}

func TestSecurityHeadersAndCSRF(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	resp, err := f.srv.Client().Get(f.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, want := range map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	for _, dir := range []string{"script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, dir) || strings.Contains(ContentSecurityPolicy, "unsafe-inline") {
			t.Errorf("CSP lacks %q or allows unsafe-inline", dir)
		}
	}
	post := func(hdr map[string]string) int {
		req, _ := http.NewRequest("POST", f.srv.URL+"/v1/topics", strings.NewReader(`{"name":"csrf","partitions":1}`))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// A browser on another site: refused, and nothing created.
	if st := post(map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}); st != 403 {
		t.Fatalf("cross-site POST: %d", st)
	}
	if st := post(map[string]string{"Origin": "https://evil.example"}); st != 403 {
		t.Fatalf("cross-origin POST (Origin only): %d", st)
	}
	if f.e.TopicByName("csrf") != nil {
		t.Fatal("a cross-site request created a topic")
	}
	// A cross-site GET is not state-changing: answered (the CSP and CORS keep its body from the site).
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/topics", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := f.srv.Client().Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("cross-site GET: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The console itself (same origin), and a client that is not a browser: served.
	if st := post(map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": f.srv.URL}); st != 201 {
		t.Fatalf("same-origin POST: %d", st)
	}
	if st := post(nil); st != 409 { // exists now: got past the protection
		t.Fatalf("non-browser POST: %d", st)
	}
}

// TestDurabilityFloor: the broker's floor (sluiced --durability) raises what a produce asks for.
func TestDurabilityFloor(t *testing.T) {
	f := newFixture(t, fixtureOpts{
		tweak:  func(o *Options) { o.MinDurability = wire.DurabilityFsync },
		engine: func(o *engine.Options) { o.FlushInterval = time.Hour; o.FlushBytes = 1 << 40 }, // no sync unless asked
	})
	f.must("POST", "/v1/topics", "", TopicConfig{Name: "floor", Partitions: 1}, 201, nil)
	for _, d := range []string{"none", "written", ""} {
		var res ProduceResponse
		f.must("POST", "/v1/topics/floor/records", "", ProduceRequest{Durability: d, Records: []Record{{Value: ptr("x")}}}, 200, &res)
		if res.Durability != "fsync" {
			t.Fatalf("asked %q: answered %q", d, res.Durability)
		}
		if synced := f.e.TopicByName("floor").Partition(0).SyncedOffset(); synced <= res.LastOffset {
			t.Fatalf("asked %q: synced offset %d after the answer for offset %d", d, synced, res.LastOffset)
		}
	}
}

// TestSlowBodyRefused: a request body that does not arrive within BodyTimeout + MaxWait ends the
// request; the handler is not held.
func TestSlowBodyRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{tweak: func(o *Options) { o.BodyTimeout = time.Second; o.MaxWait = time.Millisecond }})
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", f.srv.URL+"/v1/topics/slow/records", pr)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = 100
	go func() { _, _ = pw.Write([]byte(`{"records":`)) }() // and then nothing
	start := time.Now()
	cl := &http.Client{Timeout: 20 * time.Second}
	resp, err := cl.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a stalled body was answered %d", resp.StatusCode)
		}
	}
	if d := time.Since(start); d >= 20*time.Second {
		t.Fatalf("a stalled body held the request %v (%v)", d, err)
	}
	if f.e.TopicByName("slow") != nil {
		t.Fatal("a stalled body created a topic")
	}
}

// TestSessionHoldsAtMostMaxAckPending: a session takes records ahead of its receives only up to its
// bound (default DefaultSessionAckPending), so the rest stay ready for other members.
func TestSessionHoldsAtMostMaxAckPending(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.must("POST", "/v1/topics", "", TopicConfig{Name: "many", Partitions: 1}, 201, nil)
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i].Value = ptr("r")
	}
	f.must("POST", "/v1/topics/many/records", "", ProduceRequest{Records: recs}, 200, nil)
	var s SessionJSON
	f.must("POST", "/v1/queues/w/sessions", "", OpenSession{Topic: "many"}, 201, &s)
	var got ReceiveResponse
	f.must("POST", "/v1/queues/w/sessions/"+s.Session+"/receive?max=5", "", nil, 200, &got)
	if len(got.Records) != 5 {
		t.Fatalf("received %d", len(got.Records))
	}
	var qs struct{ Queues []QueueJSON }
	f.must("GET", "/v1/queues", "", nil, 200, &qs)
	if q := qs.Queues[0]; q.Pending > DefaultSessionAckPending || q.Ready < 1000-DefaultSessionAckPending {
		t.Fatalf("after a receive of 5: pending %d, ready %d", q.Pending, q.Ready)
	}
}

// TestSSEEndsWhenTopicDeleted: deleting the topic under an open stream ends it with an error event.
func TestSSEEndsWhenTopicDeleted(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.must("POST", "/v1/topics", "", TopicConfig{Name: "gone", Partitions: 1}, 201, nil)
	f.must("POST", "/v1/topics/gone/records", "", ProduceRequest{Records: []Record{{Value: ptr("a")}}}, 200, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/v1/topics/gone/partitions/0/stream", nil)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []sseEvent
	deleted := false
	err = readSSE(resp.Body, func(ev sseEvent) bool {
		events = append(events, ev)
		if !deleted {
			deleted = true
			f.must("DELETE", "/v1/topics/gone", "", nil, 204, nil)
		}
		return ev.event != "error"
	})
	if err != nil || len(events) != 2 || events[0].id != "0" || events[1].event != "error" ||
		events[1].data != `{"code":9,"name":"unknown topic"}` {
		t.Fatalf("events %+v, err %v", events, err)
	}
	t.Logf("error event: %s", events[1].data)
}
