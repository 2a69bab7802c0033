package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

func TestTopicLifecycle(t *testing.T) {
	addr := startBroker(t)
	c := dialT(t, addr)

	r := ok(t, addr, nil, "topic", "create", "orders", "--partitions", "3",
		"--retention-bytes", "1MiB", "--retention-age", "2d", "--segment-bytes", "2MiB")
	if r.stdout != "created topic orders with 3 partitions\n" {
		t.Errorf("create: %q", r.stdout)
	}
	// Flags after the operand and global flags before the command both work.
	ok(t, addr, nil, "--timeout", "5s", "topic", "create", "--memory", "ticks", "--partitions=1")
	ok(t, addr, nil, "topic", "create", "plain")
	for _, n := range []string{"0", "-1"} {
		if r := sluice(t, addr, nil, "topic", "create", "none", "--partitions", n); r.code != 2 || !strings.Contains(r.stderr, "at least 1 partition") {
			t.Errorf("--partitions %s: exit %d, stderr %q", n, r.code, r.stderr)
		}
	}

	ti, err := c.DescribeTopic(testCtx(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := ti.Config; cfg.Partitions != 3 || cfg.RetentionBytes != 1<<20 || cfg.RetentionMs != 2*86400*1000 || cfg.SegmentBytes != 2<<20 || cfg.Flags != 0 {
		t.Errorf("orders created as %+v", cfg)
	}
	if ti, err = c.DescribeTopic(testCtx(t), "ticks"); err != nil || ti.Config.Flags&wire.TopicMemory == 0 || len(ti.Partitions) != 1 {
		t.Errorf("ticks created as %+v, %v", ti, err)
	}

	r = ok(t, addr, nil, "topic", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	for i, want := range []string{
		`^orders\s+3\s+1MiB\s+2d\s+2MiB\s+disk$`,
		`^plain\s+4\s+-\s+-\s+4MiB\s+disk$`,
		`^ticks\s+1\s+\S+\s+-\s+\S+\s+memory$`,
	} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("list line %d: %q does not match %s", i+1, lines[i+1], want)
		}
	}

	// Describe shows each partition's offsets and bytes once records are in.
	ok(t, addr, []byte("a\nb\nc\nd\ne\n"), "produce", "orders", "--partition", "1", "--quiet")
	ok(t, addr, []byte("f\n"), "produce", "orders", "--partition", "2", "--quiet")
	r = ok(t, addr, nil, "topic", "describe", "orders")
	for _, want := range []string{
		`(?m)^topic:\s+orders$`, `(?m)^partitions:\s+3$`, `(?m)^retention-bytes:\s+1MiB$`,
		`(?m)^retention-age:\s+2d$`, `(?m)^segment-bytes:\s+2MiB$`, `(?m)^storage:\s+disk$`,
		`(?m)^\s*PARTITION\s+START\s+END\s+RECORDS\s+BYTES$`,
		`(?m)^\s*0\s+0\s+0\s+0\s+0$`,
		`(?m)^\s*1\s+0\s+5\s+5\s+[1-9]\d*$`,
		`(?m)^\s*2\s+0\s+1\s+1\s+[1-9]\d*$`,
		`(?m)^\s*total\s+6\s+[1-9]\d*$`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("describe does not match %s:\n%s", want, r.stdout)
		}
	}

	r = ok(t, addr, nil, "topic", "delete", "orders")
	if r.stdout != "deleted topic orders\n" {
		t.Errorf("delete: %q", r.stdout)
	}
	r = ok(t, addr, nil, "topic", "list")
	if strings.Contains(r.stdout, "orders") || !strings.Contains(r.stdout, "plain") {
		t.Errorf("list after delete:\n%s", r.stdout)
	}
	oneErrorLine(t, sluice(t, addr, nil, "topic", "describe", "orders"), "unknown topic")
	oneErrorLine(t, sluice(t, addr, nil, "topic", "delete", "orders"), "unknown topic")
}

// Sizes and ages are range-checked as they are parsed (a usage error, before dialing); what only the
// broker can judge (a segment below its batch limit, not page-aligned) it refuses whole, with a
// message saying why, and nothing of the topic is left.
func TestTopicCreateRangeChecked(t *testing.T) {
	dead := deadAddr(t)
	for _, args := range [][]string{
		{"--retention-age", "213504d"}, // 18446744073710 ms and more: wrapped as a time.Duration
		{"--retention-age", "3000000h"},
		{"--retention-age", "1e300d"},
		{"--retention-age", "500us"},
		{"--segment-bytes", "2GiB"},
	} {
		r := sluice(t, dead, nil, append([]string{"topic", "create", "orders"}, args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "Usage: sluice topic create") {
			t.Errorf("topic create %v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	addr := startBroker(t) // batches up to 1 MiB
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--segment-bytes", "512KiB"}, "below the broker's max batch bytes 1048576"},
		{[]string{"--segment-bytes", "1049000"}, "not a multiple of the page size"},
		{[]string{"--memory", "--segment-bytes", "4096"}, "below the broker's max batch bytes"},
	} {
		r := sluice(t, addr, nil, append([]string{"topic", "create", "orders"}, tc.args...)...)
		oneErrorLine(t, r, tc.want)
	}
	if r := ok(t, addr, nil, "topic", "list"); strings.Contains(r.stdout, "orders") {
		t.Fatalf("a refused topic is listed:\n%s", r.stdout)
	}
	ok(t, addr, nil, "topic", "create", "orders", "--segment-bytes", "1MiB", "--retention-age", "106751d")
}

func TestSizesAndDelimiters(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512": 512, "64KiB": 64 << 10, "1MiB": 1 << 20, "1.5GiB": 3 << 29, "10MB": 10e6,
		"2k": 2048, "3M": 3 << 20, "1G": 1 << 30, "100B": 100, "1TB": 1e12,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1XB", "MiB", "1e30GiB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) succeeded", bad)
		}
	}
	for in, want := range map[string]string{
		`\n`: "\n", `,`: ",", `\0`: "\x00", `\t\r\n`: "\t\r\n", `\\`: `\`, `\x00\xff`: "\x00\xff", `--`: "--",
	} {
		var d delimFlag
		if err := d.Set(in); err != nil || string(d) != want {
			t.Errorf("delim %q = %q, %v; want %q", in, d, err, want)
		}
		if d.String() != in && in != `\x00\xff` {
			t.Errorf("delim %q prints as %q", in, d.String())
		}
	}
	for _, bad := range []string{"", `\`, `\x`, `\x1`, `\xzz`, `\q`} {
		var d delimFlag
		if err := d.Set(bad); err == nil {
			t.Errorf("delim %q accepted", bad)
		}
	}
	var a ageFlag
	if err := a.Set("7d"); err != nil || formatMs(int64(a)/1e6) != "7d" {
		t.Errorf("7d: %v %v", a, err)
	}
	if err := a.Set("90m"); err != nil || formatMs(int64(a)/1e6) != "1h30m0s" {
		t.Errorf("90m: %v %v", a, err)
	}
	for _, bad := range []string{"213504d", "106752d", "3000000h", "1e300d", "NaNd", "Infd", "-1d", "-1h", "999us"} {
		if err := a.Set(bad); err == nil {
			t.Errorf("retention age %q accepted", bad)
		}
	}
	if err := a.Set("106751d"); err != nil || time.Duration(a).Milliseconds() != 106751*86400e3 {
		t.Errorf("106751d (292 years): %v %v", time.Duration(a), err)
	}
	if err := a.Set(strconv.FormatInt(wire.MaxRetentionMs, 10) + "ms"); err != nil || time.Duration(a).Milliseconds() != wire.MaxRetentionMs {
		t.Errorf("the longest retention: %v %v", time.Duration(a), err)
	}
}
