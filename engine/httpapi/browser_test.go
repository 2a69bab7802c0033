package httpapi

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// chromiumPath finds the Debian chromium browser (apt-get install chromium; .ci/run installs it).
// The browser tests do not skip without it: they fail and say how to get it.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the console's browser tests need headless Chromium: install it with `apt-get install -y chromium` (.ci/run does)")
	return ""
}

// browser is a headless Chromium for the test, bounded to three minutes, with the console errors
// (console.error calls, uncaught exceptions, the browser log's errors such as failed loads) of
// its tabs. Screenshots go to the test's temp dir, or to $SLUICE_SCREENSHOTS when set.
type browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	mu   sync.Mutex
	errs []string
}

func newBrowser(t *testing.T) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	// A browser that dies before it listens (seen once in CI, crashing during start-up with nothing
	// but its crash handler's lines on stderr) is started again, up to three times; what each failed
	// start printed is logged.
	const starts = 3
	var bctx context.Context
	for attempt := 1; bctx == nil; attempt++ {
		actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
		c, bcancel := chromedp.NewContext(actx)
		err := chromedp.Do(c) // starts the browser
		if err == nil {
			t.Cleanup(acancel)
			t.Cleanup(bcancel)
			bctx = c
			break
		}
		bcancel()
		acancel()
		if attempt == starts {
			t.Fatalf("starting chromium (%d attempts): %v", starts, err)
		}
		t.Logf("starting chromium, attempt %d of %d: %v", attempt, starts, err)
	}
	dir := t.TempDir()
	if d := os.Getenv("SLUICE_SCREENSHOTS"); d != "" { // keep them past the test, e.g. as CI artifacts
		dir = d
	}
	return &browser{t: t, ctx: bctx, dir: dir}
}

// tab opens a new tab (its own sessionStorage: a fresh login) and collects its console errors.
func (b *browser) tab(name string) context.Context {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errs = append(b.errs, fmt.Sprintf("%s: %s (%s %s)", name, m, m.Source, m.URL))
				b.mu.Unlock()
			}
		}
	}()
	return ctx
}

func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// do runs steps in the tab; on failure it saves a screenshot and fails the test.
func (b *browser) do(ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot(ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v (console errors: %v)", what, err, b.errors())
	}
}

// eval evaluates a JavaScript expression in the tab.
func eval[T any](b *browser, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// shot saves a full-page screenshot as <name>.png under the test's temp dir.
func (b *browser) shot(ctx context.Context, name string) {
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
}

// waitText polls the text of the first element matching the CSS selector sel until ok accepts it
// (the console refreshes every second), for at most 30 s.
func waitText(sel string, ok func(string) bool) chromedp.Action[chromedp.Void] {
	expr := fmt.Sprintf(`(() => { const n = document.querySelector(%q); return n ? n.innerText : "\x00absent"; })()`, sel)
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var last string
		for {
			v, err := chromedp.Evaluate[string](expr)(ctx, t)
			if err == nil {
				last = v
				if ok(v) {
					return nil
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: last text %q: %w", sel, last, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

func login(url, token string) []chromedp.Action[chromedp.Void] {
	return []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(url + "/#topics"),
		chromedp.WaitVisible(css("#login-token")),
		chromedp.SendKeys(css("#login-token"), token),
		chromedp.Click(css("#login-form button[type=submit]")),
		waitText("#principal", func(s string) bool { return strings.Contains(s, "Logged in as") }),
	}
}

// TestConsoleInBrowser drives the console in headless Chromium against a real engine: it loads
// without console errors, pages through 1,000 topics and finds the test's by filter, shows a group's
// lag falling to zero as a consumer catches up, browses a message with its headers, produces one,
// and hides and refuses writes for a read-only principal.
func TestConsoleInBrowser(t *testing.T) {
	rules := auth.Rules{}
	for _, s := range []string{"alice:all:*", "alice:consume:group:*", "bob:consume:*", "bob:consume:group:*"} {
		r, err := auth.ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	f := newFixture(t, fixtureOpts{
		auth:   &auth.Authenticator{Tokens: map[string]string{"alice-token": "alice", "bob-token": "bob"}},
		acl:    rules,
		engine: func(o *engine.Options) { o.SegmentBytes = 1 << 20 },
	})
	const many = 1000
	for i := range many {
		if _, err := f.e.CreateTopic(wire.TopicConfig{Name: fmt.Sprintf("bulk.%04d", i), Partitions: 1, Flags: wire.TopicMemory}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.e.CreateTopic(wire.TopicConfig{Name: "web.orders", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bb := wire.NewBatchBuilder(4096)
	for i := range 10 {
		bb.Append([]byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf(`{"n":%d}`, i)), []wire.Header{{Key: []byte("trace"), Value: []byte(fmt.Sprintf("t-%d", i))}}, time.Now().UnixMilli())
	}
	batch, _ := bb.Build()
	if _, _, err := f.e.Publish(ctx, "web.orders", 0, batch, wire.DurabilityWritten); err != nil {
		t.Fatal(err)
	}
	commit := func(off int64) {
		done := make(chan error, 1)
		f.e.CommitOffset("billing", "web.orders", 0, off, func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	commit(0)

	b := newBrowser(t)
	alice := b.tab("alice")
	b.do(alice, "login as alice", login(f.srv.URL, "alice-token")...)
	b.do(alice, "topic list", waitText("#topics-page", func(s string) bool { return strings.HasSuffix(s, "of 1001") }))
	if rows := eval[int](b, alice, `document.querySelectorAll('#topics-table tbody tr').length`); rows != 50 {
		t.Fatalf("the first page shows %d rows, want 50", rows)
	}
	b.shot(alice, "1-topics")
	b.do(alice, "next page",
		chromedp.Click(css("#topics-next")),
		waitText("#topics-page", func(s string) bool { return strings.HasPrefix(s, "51–100") }))
	b.do(alice, "filter",
		chromedp.SendKeys(css("#topic-prefix"), "web."),
		chromedp.WaitVisible(css(`#topics-table tr[data-topic="web.orders"]`)),
		waitText("#topics-page", func(s string) bool { return s == "1–1 of 1" }),
		waitText(`#topics-table tr[data-topic="web.orders"]`, func(s string) bool { return strings.Contains(s, "admin") && strings.Contains(s, "Delete") }))
	b.shot(alice, "2-topics-filtered")

	// Group lag: 10 behind, then a consumer commits its way to the end.
	b.do(alice, "group",
		chromedp.Navigate(f.srv.URL+"/#groups"),
		chromedp.Click(css(`button[data-group="billing"]`)),
		waitText("#group-lag", func(s string) bool { return s == "10" }))
	b.shot(alice, "3-group-lagging")
	caughtUp := make(chan error, 1)
	go func() {
		l, err := f.e.SubscribeLocal(wire.Subscribe{Topic: "web.orders", Partition: 0, Group: "", Start: wire.StartOffset, StartValue: 0})
		if err != nil {
			caughtUp <- err
			return
		}
		defer l.Close()
		var it wire.RecordIter
		var rec wire.Record
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for n := int64(0); n < 10; {
			d, err := l.Next(cctx)
			if err != nil {
				caughtUp <- err
				return
			}
			for rest := d.Batches(); len(rest) > 0; {
				sz, _ := wire.BatchSize(rest)
				it.Reset(rest[:sz])
				for it.Next(&rec) {
					n = rec.Offset + 1
					done := make(chan error, 1)
					f.e.CommitOffset("billing", "web.orders", 0, n, func(err error) { done <- err })
					if err := <-done; err != nil {
						caughtUp <- err
						return
					}
					time.Sleep(150 * time.Millisecond) // a consumer working through its records, seen by the 1 s refresh
				}
				rest = rest[sz:]
			}
		}
		caughtUp <- nil
	}()
	var seen []string
	b.do(alice, "lag to zero", waitText("#group-lag", func(s string) bool {
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		return s == "0"
	}))
	if err := <-caughtUp; err != nil {
		t.Fatal(err)
	}
	t.Logf("lag shown: %v", seen)
	b.shot(alice, "4-group-caught-up")

	// Browse a message with headers, as JSON.
	b.do(alice, "browse",
		chromedp.Navigate(f.srv.URL+"/#browse"),
		chromedp.SendKeys(css("#browse-topic"), "web.orders"),
		chromedp.SetValue(css("#browse-at"), "3"),
		chromedp.SetValue(css("#browse-as"), "json"),
		chromedp.Click(css("#browse-form button[type=submit]")),
		waitText(`#browse-table tr[data-offset="3"] .headers`, func(s string) bool { return s == "trace: t-3" }),
		waitText(`#browse-table tr[data-offset="3"] .value`, func(s string) bool { return strings.Contains(s, `"n": 3`) }))
	b.shot(alice, "5-browse")
	b.do(alice, "browse hex",
		chromedp.SetValue(css("#browse-as"), "hex"),
		chromedp.Click(css("#browse-form button[type=submit]")),
		waitText(`#browse-table tr[data-offset="3"] .value`, func(s string) bool { return strings.HasPrefix(s, "7b 22 6e 22") }))

	// Produce one.
	b.do(alice, "produce",
		chromedp.Navigate(f.srv.URL+"/#produce"),
		chromedp.SendKeys(css("#produce-topic"), "web.orders"),
		chromedp.SendKeys(css("#produce-key"), "console-key"),
		chromedp.SendKeys(css("#produce-headers"), "source=console"),
		chromedp.SendKeys(css("#produce-value"), "from the console"),
		chromedp.Click(css("#produce-send")),
		waitText("#produce-result", func(s string) bool { return strings.Contains(s, "offset 10") }))
	b.shot(alice, "6-produced")
	var got ConsumeResponse
	f.must("GET", "/v1/topics/web.orders/partitions/0/records?offset=10", "alice-token", nil, 200, &got)
	if len(got.Records) != 1 || *got.Records[0].Value != "from the console" || *got.Records[0].Key != "console-key" ||
		len(got.Records[0].Headers) != 1 || *got.Records[0].Headers[0].Value != "console" {
		t.Fatalf("the produced record: %+v", got)
	}

	// Charts and connections render.
	b.do(alice, "metrics",
		chromedp.Navigate(f.srv.URL+"/#metrics"),
		waitText("#counters-table tbody", func(s string) bool { return strings.Contains(s, "produced_records_total") }))
	b.shot(alice, "7-metrics")
	if errs := b.errors(); len(errs) > 0 {
		t.Fatalf("console errors as alice: %v", errs)
	}

	// Bob may only consume: no delete button, no produce button, and the API refuses a write.
	bob := b.tab("bob")
	b.do(bob, "login as bob", login(f.srv.URL, "bob-token")...)
	b.do(bob, "bob's topics",
		chromedp.SendKeys(css("#topic-prefix"), "web."),
		waitText(`#topics-table tr[data-topic="web.orders"]`, func(s string) bool { return strings.Contains(s, "consume") }))
	if deletes := eval[int](b, bob, `document.querySelectorAll('#topics-table button.delete').length`); deletes != 0 {
		t.Fatalf("bob sees %d delete buttons", deletes)
	}
	b.do(bob, "bob's produce form",
		chromedp.Navigate(f.srv.URL+"/#produce"),
		chromedp.SendKeys(css("#produce-topic"), "web.orders\t"),
		chromedp.WaitVisible(css("#produce-denied")))
	sendHidden := eval[bool](b, bob, `document.getElementById('produce-send').offsetParent === null`)
	deniedShown := eval[bool](b, bob, `!document.getElementById('produce-denied').classList.contains('hidden')`)
	if !sendHidden || !deniedShown {
		t.Fatalf("bob's produce button hidden %v, refusal shown %v", sendHidden, deniedShown)
	}
	b.shot(bob, "8-read-only")
	if errs := b.errors(); len(errs) > 0 {
		t.Fatalf("console errors as bob: %v", errs)
	}
	// A write forced past the hidden button is refused by the broker.
	status := eval[int](b, bob, `fetch('/v1/topics/web.orders/records', {method: 'POST',
		headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('sluice-token'), 'Content-Type': 'application/json'},
		body: JSON.stringify({records: [{value: 'x'}]})}).then(r => r.status)`, chromedp.EvalAwaitPromise)
	if status != 403 {
		t.Fatalf("bob's forced produce: status %d, want 403", status)
	}
	if end := f.e.TopicByName("web.orders").Partition(0).NextOffset(); end != 11 {
		t.Fatalf("web.orders ends at %d after bob's refused produce, want 11", end)
	}
}
