package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// TestFilterOption: --filter text that reads as header terms is sent as header terms; anything else
// (a CEL expression) as CEL.
func TestFilterOption(t *testing.T) {
	cases := []struct {
		text string
		want wire.FilterLang
	}{
		{"region=eu", wire.FilterHeaders},
		{"region=eu&tier!=gold&vip&!debug", wire.FilterHeaders},
		{"trace-id", wire.FilterHeaders},
		{`headers["region"] == "eu"`, wire.FilterCEL},
		{"value.temp > 30", wire.FilterCEL},
		{`key == b"k"`, wire.FilterCEL},
		{"has(value.temp)", wire.FilterCEL},
		{"a=b&value.x > 1", wire.FilterCEL},
	}
	for _, tc := range cases {
		var o client.ConsumerOptions
		filterOption(tc.text)(&o)
		if o.FilterLang != tc.want || o.Filter != tc.text {
			t.Errorf("%q: lang %d filter %q, want lang %d", tc.text, o.FilterLang, o.Filter, tc.want)
		}
	}
}

// TestConsumePatternAndFilter: sluice consume reads every topic a pattern matches (--format json names
// each record's topic), and --filter selects on the broker by header terms or a CEL expression; a
// bad expression fails at once with CEL's reason.
func TestConsumePatternAndFilter(t *testing.T) {
	addr := startBroker(t)
	for _, name := range []string{"orders.eu", "orders.us", "other"} {
		ok(t, addr, nil, "topic", "create", name, "--partitions", "1")
	}
	ok(t, addr, []byte("{\"temp\": 20}\n{\"temp\": 35}\n"), "produce", "orders.eu", "--header", "region=eu", "--quiet")
	ok(t, addr, []byte("{\"temp\": 40}\n"), "produce", "orders.us", "--header", "region=us", "--quiet")
	ok(t, addr, []byte("{\"temp\": 99}\n"), "produce", "other", "--header", "region=eu", "--quiet")

	r := ok(t, addr, nil, "consume", "orders.>", "--format", "json", "--count", "3")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var rec struct {
			Topic  string `json:"topic"`
			Offset int64  `json:"offset"`
			Value  string `json:"value"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got = append(got, fmt.Sprintf("%s/%d/%s", rec.Topic, rec.Offset, rec.Value))
	}
	slices.Sort(got)
	want := []string{`orders.eu/0/{"temp": 20}`, `orders.eu/1/{"temp": 35}`, `orders.us/0/{"temp": 40}`}
	if !slices.Equal(got, want) {
		t.Fatalf("pattern: got %q, want %q", got, want)
	}
	for _, tc := range []struct{ filter, want string }{
		{`value.temp > 30`, "{\"temp\": 35}\n{\"temp\": 40}\n"},
		{`value.temp > 30 && headers["region"] == "eu"`, "{\"temp\": 35}\n"},
		{`region=us`, "{\"temp\": 40}\n"},
	} {
		r := ok(t, addr, nil, "consume", "orders.*", "--filter", tc.filter, "--idle", "500ms")
		if lines := strings.SplitAfter(r.stdout, "\n"); !sameLines(lines, strings.SplitAfter(tc.want, "\n")) {
			t.Errorf("--filter %s: got %q, want %q", tc.filter, r.stdout, tc.want)
		}
	}
	oneErrorLine(t, sluice(t, addr, nil, "consume", "orders.>", "--filter", "value.temp >", "--idle", "500ms"), "Syntax error")
	if r := sluice(t, addr, nil, "consume", "orders.>", "--partition", "0"); r.code == 0 {
		t.Fatal("a pattern with --partition was accepted")
	}
}

// TestConsumePatternGroup: sluice consume over a pattern with --group reads every matching topic as
// a member of the group and commits each topic-partition: a second run of the group prints only
// what was produced since.
func TestConsumePatternGroup(t *testing.T) {
	addr := startBroker(t)
	for _, name := range []string{"orders.eu", "orders.us", "other"} {
		ok(t, addr, nil, "topic", "create", name, "--partitions", "2")
	}
	ok(t, addr, []byte("eu1\neu2\n"), "produce", "orders.eu", "--quiet")
	ok(t, addr, []byte("us1\n"), "produce", "orders.us", "--quiet")
	ok(t, addr, []byte("other1\n"), "produce", "other", "--quiet")

	r := ok(t, addr, nil, "consume", "orders.>", "--group", "g", "--format", "%t:%s\n", "--count", "3")
	if got := strings.SplitAfter(r.stdout, "\n"); !sameLines(got, []string{"orders.eu:eu1\n", "orders.eu:eu2\n", "orders.us:us1\n", ""}) {
		t.Fatalf("first run: got %q", r.stdout)
	}
	ok(t, addr, []byte("us2\n"), "produce", "orders.us", "--quiet")
	r = ok(t, addr, nil, "consume", "orders.>", "--group", "g", "--format", "%t:%s\n", "--idle", "500ms")
	if r.stdout != "orders.us:us2\n" {
		t.Fatalf("second run: got %q, want only what was produced since the first run's commits", r.stdout)
	}
	r = ok(t, addr, nil, "group", "describe", "g")
	for _, want := range []string{"orders.eu", "orders.us"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("group describe names no committed offsets of %s:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "other") {
		t.Errorf("group describe names a topic the pattern does not match:\n%s", r.stdout)
	}
}

// sameLines compares two line lists in any order.
func sameLines(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
