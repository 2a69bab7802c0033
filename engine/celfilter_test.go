package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// TestCELFilters: CEL expressions over headers, key, JSON values, timestamp and topic select records
// at their original offsets; records whose evaluation errs (a missing header, a field of a non-JSON
// value) do not match.
func TestCELFilters(t *testing.T) {
	pe := newPatternEnv(t, "s.a", "s.b")
	// s.a: offsets 0-3 JSON readings from eu, 4 a non-JSON value, 5 no region header.
	pe.produce("s.a", "dev1", []string{"region=eu"}, `{"temp": 20}`, `{"temp": 35.5}`, `{"temp": 31, "unit": "c"}`, `{"hum": 1}`)
	pe.produce("s.a", "dev2", []string{"region=us"}, `not json`)
	pe.produce("s.a", "dev2", nil, `{"temp": 99}`)
	pe.produce("s.b", "dev1", []string{"region=eu"}, `{"temp": 40}`)
	cases := []struct {
		expr string
		want []string
	}{
		{`headers["region"] == "eu"`, []string{"s.a/0/0", "s.a/0/1", "s.a/0/2", "s.a/0/3", "s.b/0/0"}},
		{`value.temp > 30 && headers["region"] == "eu"`, []string{"s.a/0/1", "s.a/0/2", "s.b/0/0"}},
		{`has(value.temp) && value.temp > 30`, []string{"s.a/0/1", "s.a/0/2", "s.a/0/5", "s.b/0/0"}},
		{`!("region" in headers)`, []string{"s.a/0/5"}},
		{`key == b"dev2"`, []string{"s.a/0/4", "s.a/0/5"}},
		{`value == b"not json"`, []string{"s.a/0/4"}},
		{`value.unit == "c"`, []string{"s.a/0/2"}},
		{`timestamp > timestamp("1970-01-01T00:00:01.001Z")`, []string{"s.a/0/2", "s.a/0/3"}},
		{`topic == "s.b"`, []string{"s.b/0/0"}},
		{`false`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			l, err := pe.e.SubscribeLocal(wire.Subscribe{Topic: "s.*", Partition: -1, Filter: tc.expr, FilterLang: wire.FilterCEL})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			got := pe.read(l, len(tc.want))
			for i := range got {
				got[i] = got[i][:strings.LastIndexByte(got[i], '/')]
			}
			eq(t, got, tc.want...)
			pe.quiet(l)
		})
	}
}

// TestCELFilterOneTopic: a CEL filter on a plain topic subscription, starting mid-batch, keeps the
// original offsets and validating batches, as header filters do.
func TestCELFilterOneTopic(t *testing.T) {
	pe := newPatternEnv(t, "one")
	var vals []string
	for i := range 20 {
		vals = append(vals, fmt.Sprintf(`{"n": %d}`, i))
	}
	pe.produce("one", "k", nil, vals...)
	l, err := pe.e.SubscribeLocal(wire.Subscribe{Topic: "one", Partition: 0, Start: wire.StartOffset, StartValue: 5,
		Filter: "int(value.n) % 3 == 0", FilterLang: wire.FilterCEL})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	eq(t, pe.read(l, 5), `one/0/12/{"n": 12}`, `one/0/15/{"n": 15}`, `one/0/18/{"n": 18}`, `one/0/6/{"n": 6}`, `one/0/9/{"n": 9}`)
	pe.quiet(l)
}

// TestCELFilterRefused: an expression that does not parse, names an unknown variable or does not yield
// a bool is refused at subscribe with CodeInvalidRequest and CEL's reason; so is an unknown filter
// language, and a CEL filter on a work queue.
func TestCELFilterRefused(t *testing.T) {
	pe := newPatternEnv(t, "r")
	cases := []struct {
		spec wire.Subscribe
		msg  string
	}{
		{wire.Subscribe{Filter: `value.temp >`, FilterLang: wire.FilterCEL}, "Syntax error"},
		{wire.Subscribe{Filter: `nope == 1`, FilterLang: wire.FilterCEL}, "undeclared reference to 'nope'"},
		{wire.Subscribe{Filter: `headers["a"]`, FilterLang: wire.FilterCEL}, "not bool"},
		{wire.Subscribe{Filter: `key + 1 == 2`, FilterLang: wire.FilterCEL}, "no matching overload"},
		{wire.Subscribe{Filter: `true`, FilterLang: 7}, "filter language 7"},
		{wire.Subscribe{Filter: `true`, FilterLang: wire.FilterCEL, Mode: wire.ModeQueue, Group: "g"}, "no filter"},
	}
	for _, tc := range cases {
		tc.spec.Topic, tc.spec.Partition = "r", -1
		_, err := pe.e.SubscribeLocal(tc.spec)
		if !errors.Is(err, wire.CodeInvalidRequest) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: %v, want invalid request with %q", tc.spec.Filter, err, tc.msg)
		}
	}
}

// TestCELFilterCostLimit: a record whose evaluation passes the cost limit ends the subscription with
// CodeInvalidRequest naming the limit and the offset, rather than being dropped silently; records
// before it are delivered.
func TestCELFilterCostLimit(t *testing.T) {
	pe := newPatternEnv(t, "c")
	big := "[" + strings.Repeat("1,", 50_000) + "1]"
	pe.produce("c", "k", nil, `{"xs": [1]}`)
	pe.produce("c", "k", nil, `{"xs": `+big+`}`)
	l, err := pe.e.SubscribeLocal(wire.Subscribe{Topic: "c", Partition: -1,
		Filter: "value.xs.map(x, x * x).exists(x, x == 1.0)", FilterLang: wire.FilterCEL})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	eq(t, pe.read(l, 1), `c/0/0/{"xs": [1]}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = l.Next(ctx)
	if !errors.Is(err, wire.CodeInvalidRequest) || !strings.Contains(err.Error(), "cost limit") || !strings.Contains(err.Error(), "offset 1") {
		t.Fatalf("got %v, want the cost limit at offset 1", err)
	}
}

// TestDeliveryAllocs: an unfiltered delivery allocates nothing per Next; a CEL-filtered one over
// headers allocates a bounded amount per record (logged: the figure docs/benchmarks.md quotes).
func TestDeliveryAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	pe := newPatternEnv(t, "al")
	vals := make([]string, 100)
	for i := range vals {
		vals[i] = `{"temp": 31}`
	}
	for range 200 {
		pe.produce("al", "k", []string{"region=eu"}, vals...)
	}
	measure := func(spec wire.Subscribe) float64 {
		l, err := pe.e.SubscribeLocal(spec)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ctx := context.Background()
		return testing.AllocsPerRun(150, func() {
			if _, err := l.Next(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A delivery of at most one batch, so every Next has data (200 batches, 151 runs).
	maxOne := pe.e.opts.MaxDeliverBytes
	pe.e.opts.MaxDeliverBytes = 1
	defer func() { pe.e.opts.MaxDeliverBytes = maxOne }()
	if n := measure(wire.Subscribe{Topic: "al", Partition: 0}); n != 0 {
		t.Errorf("unfiltered: %v allocations per delivery, want 0", n)
	}
	if n := measure(wire.Subscribe{Topic: "*", Partition: -1}); n != 0 {
		t.Errorf("unfiltered pattern: %v allocations per delivery, want 0", n)
	}
	if n := measure(wire.Subscribe{Topic: "al", Partition: 0, Isolation: wire.ReadUncommitted}); n != 0 {
		t.Errorf("unfiltered read-uncommitted: %v allocations per delivery, want 0", n)
	}
	hdr := measure(wire.Subscribe{Topic: "al", Partition: 0, Filter: `headers["region"] == "eu"`, FilterLang: wire.FilterCEL}) / 100
	val := measure(wire.Subscribe{Topic: "al", Partition: 0, Filter: `value.temp > 30`, FilterLang: wire.FilterCEL}) / 100
	terms := measure(wire.Subscribe{Topic: "al", Partition: 0, Filter: `region=eu`}) / 100
	t.Logf("allocations per record: CEL on a header %.1f, CEL on a JSON field %.1f, header terms %.2f", hdr, val, terms)
	if hdr > 20 || val > 60 {
		t.Errorf("CEL filter allocations per record: header %v, JSON %v", hdr, val)
	}
}

// TestCELHeaderTerms: header comparisons joined by && are matched as header terms, without CEL's
// evaluation, and select exactly what CEL's evaluation does (the same expression made unrecognisable
// runs through CEL): a repeated header is read at its last value, a missing one fails a comparison.
func TestCELHeaderTerms(t *testing.T) {
	for _, tc := range []struct {
		expr string
		fast bool
	}{
		{`headers["region"] == "eu"`, true},
		{`"eu" == headers["region"] && "vip" in headers`, true},
		{`headers["region"] == "eu" && headers["tier"] == "gold" && "vip" in headers`, true},
		{`headers["region"] != "eu"`, false},
		{`headers["region"] == headers["tier"]`, false},
		{`headers["region"] == "eu" || "vip" in headers`, false},
		{`headers["region"] == "eu" && value.temp > 1`, false},
	} {
		f, err := parseFilter(tc.expr, wire.FilterCEL, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if fast := f.prog == nil; fast != tc.fast {
			t.Errorf("%s: matched as header terms %v, want %v", tc.expr, fast, tc.fast)
		}
	}

	pe := newPatternEnv(t, "h")
	pe.produce("h", "k", []string{"region=us", "region=eu"}, "us-then-eu")
	pe.produce("h", "k", []string{"region=eu", "region=us"}, "eu-then-us")
	pe.produce("h", "k", []string{"region=eu", "vip="}, "eu-vip")
	pe.produce("h", "k", []string{"tier=gold"}, "no-region")
	for _, expr := range []string{`headers["region"] == "eu"`, `headers["region"] == "us"`, `"vip" in headers && headers["region"] == "eu"`,
		`headers["vip"] == ""`, `headers["region"] == "eu" && headers["tier"] == "gold"`} {
		read := func(expr string) []string {
			l, err := pe.e.SubscribeLocal(wire.Subscribe{Topic: "h", Partition: 0, Filter: expr, FilterLang: wire.FilterCEL})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var got []string
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			for {
				d, err := l.Next(ctx)
				if err != nil {
					return got
				}
				var it wire.RecordIter
				var r wire.Record
				for rest := d.Batches(); len(rest) > 0; {
					h, _ := it.Reset(rest)
					rest = rest[h.Size():]
					for it.Next(&r) {
						got = append(got, string(r.Value))
					}
				}
			}
		}
		fast, slow := read(expr), read("("+expr+") == true")
		if !slices.Equal(fast, slow) {
			t.Errorf("%s: as header terms %q, through CEL %q", expr, fast, slow)
		}
	}
}
