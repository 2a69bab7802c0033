package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFile writes data to a new file in t's temporary directory.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRoundTripLines produces a multi-line text file, one record per line, and consumes it back byte
// for byte: empty lines, CR LF endings, tabs, UTF-8 and long lines included.
func TestRoundTripLines(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "lines", "--partitions", "1")
	var in bytes.Buffer
	in.WriteString("first line\n\n  indented\twith a tab\r\nünïcödé ✓\n\n")
	in.WriteString(strings.Repeat("long ", 20000) + "\n")
	for i := range 500 {
		fmt.Fprintf(&in, "record %d\n", i)
	}
	in.WriteString("last\n")
	nrec := bytes.Count(in.Bytes(), []byte("\n"))
	path := writeFile(t, "lines.txt", in.Bytes())

	r := ok(t, addr, nil, "produce", "lines", "--file", path)
	want := fmt.Sprintf("produced %d records (%d bytes) to lines: partition 0 offsets 0-%d\n", nrec, in.Len()-nrec, nrec-1)
	if r.stderr != want || r.stdout != "" {
		t.Errorf("produce summary %q, want %q (stdout %q)", r.stderr, want, r.stdout)
	}
	r = ok(t, addr, nil, "consume", "lines", "--count", fmt.Sprint(nrec), "--format", "raw")
	if r.stdout != in.String() {
		t.Errorf("consumed %d bytes differ from the %d produced", len(r.stdout), in.Len())
	}
	// The same again, from stdin and with gzip.
	ok(t, addr, nil, "topic", "create", "lines2", "--partitions", "1")
	ok(t, addr, in.Bytes(), "produce", "lines2", "--compression", "gzip", "--quiet")
	if r = ok(t, addr, nil, "consume", "lines2", "--idle", "300ms"); r.stdout != in.String() {
		t.Errorf("stdin round trip: consumed %d bytes differ from the %d produced", len(r.stdout), in.Len())
	}
}

// TestRoundTripBinary sends random binary records split by a two-byte delimiter, with every codec,
// and consumes them back byte-identical with the same delimiter and --format raw.
func TestRoundTripBinary(t *testing.T) {
	addr := startBroker(t)
	rng := rand.New(rand.NewPCG(1, 2))
	delim := []byte{0x00, 0xff}
	var in bytes.Buffer
	const nrec = 1500
	for i := range nrec {
		rec := make([]byte, rng.IntN(3000))
		for j := range rec {
			rec[j] = byte(rng.Uint32())
		}
		if i%100 == 0 {
			rec = rec[:0] // empty records survive too
		}
		rec = bytes.ReplaceAll(rec, delim, []byte{0x01, 0xff})
		in.Write(rec)
		in.Write(delim)
	}
	path := writeFile(t, "records.bin", in.Bytes())
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			topic := "bin-" + codec
			ok(t, addr, nil, "topic", "create", topic, "--partitions", "1")
			r := ok(t, addr, nil, "produce", topic, "--file", path, "--delim", `\0\xff`, "--compression", codec, "--durability", "fsync")
			if !strings.Contains(r.stderr, fmt.Sprintf("produced %d records", nrec)) {
				t.Errorf("summary %q", r.stderr)
			}
			r = ok(t, addr, nil, "consume", topic, "--format", "raw", "--delim", `\x00\xff`, "--count", fmt.Sprint(nrec))
			if !bytes.Equal([]byte(r.stdout), in.Bytes()) {
				t.Errorf("consumed %d bytes differ from the %d produced", len(r.stdout), in.Len())
			}
		})
	}
}

// TestProduceWhole sends a whole file, newlines and binary bytes included, as one record.
func TestProduceWhole(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "docs", "--partitions", "1")
	doc := []byte("line one\nline two\n\x00\x01\x02binary\xff\nno final newline")
	path := writeFile(t, "doc", doc)
	r := ok(t, addr, nil, "produce", "docs", "--whole", "--file", path, "--key", "doc-1")
	if want := fmt.Sprintf("produced 1 record (%d bytes) to docs: partition 0 offset 0\n", len(doc)); r.stderr != want {
		t.Errorf("summary %q, want %q", r.stderr, want)
	}
	r = ok(t, addr, nil, "consume", "docs", "--count", "1", "--format", "raw", "--delim", `\0\0\0`)
	if want := string(doc) + "\x00\x00\x00"; r.stdout != want {
		t.Errorf("consumed %q, want %q", r.stdout, want)
	}
	r = ok(t, addr, nil, "consume", "docs", "--count", "1", "--format", "json")
	var rec jsonRecord
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
		t.Fatal(err)
	}
	got, _ := base64.StdEncoding.DecodeString(*rec.Value)
	if !rec.ValueBase64 || !bytes.Equal(got, doc) || *rec.Key != "doc-1" {
		t.Errorf("json: %+v", rec)
	}
	// An empty input is one empty record.
	ok(t, addr, nil, "produce", "docs", "--whole", "--quiet")
	r = ok(t, addr, nil, "topic", "describe", "docs")
	if !regexp.MustCompile(`(?m)^\s*0\s+0\s+2\s+2\s`).MatchString(r.stdout) {
		t.Errorf("describe after two whole produces:\n%s", r.stdout)
	}
}

// TestConsumeJSON checks every field of --format json: text values as strings, binary ones base64
// with the flag, null keys as null, headers in order.
func TestConsumeJSON(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "events", "--partitions", "1")
	before := time.Now().Add(-time.Second)
	input := []byte("hello|{\"quoted\": \"<json>\"}|\xff\xfe binary|\n")
	ok(t, addr, input, "produce", "events", "--delim", "|", "--header", "source=test", "--header", "empty=", "--header", "source=again", "--quiet")
	ok(t, addr, []byte("k1\tv1\nk2\t\n"), "produce", "events", "--key-field", "--quiet")

	r := ok(t, addr, nil, "consume", "events", "--format", "json", "--count", "6")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines:\n%s", len(lines), r.stdout)
	}
	var recs []map[string]any
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	wantValues := []any{"hello", `{"quoted": "<json>"}`, base64.StdEncoding.EncodeToString([]byte("\xff\xfe binary")), "\n", "v1", ""}
	wantKeys := []any{nil, nil, nil, nil, "k1", "k2"}
	for i, m := range recs {
		if m["topic"] != "events" || m["partition"] != 0.0 || m["offset"] != float64(i) {
			t.Errorf("record %d: %v", i, m)
		}
		ts, err := time.Parse(time.RFC3339, m["timestamp"].(string))
		if err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("record %d: timestamp %v, %v", i, m["timestamp"], err)
		}
		if m["value"] != wantValues[i] || m["key"] != wantKeys[i] {
			t.Errorf("record %d: key %v value %v, want %v %v", i, m["key"], m["value"], wantKeys[i], wantValues[i])
		}
		if _, flagged := m["value_base64"]; flagged != (i == 2) {
			t.Errorf("record %d: value_base64 %v", i, m["value_base64"])
		}
		hs := m["headers"].([]any)
		if i < 4 {
			want := []any{
				map[string]any{"key": "source", "value": "test"},
				map[string]any{"key": "empty", "value": ""},
				map[string]any{"key": "source", "value": "again"},
			}
			if fmt.Sprint(hs) != fmt.Sprint(want) {
				t.Errorf("record %d: headers %v", i, hs)
			}
		} else if len(hs) != 0 {
			t.Errorf("record %d: headers %v", i, hs)
		}
	}
	// --key-field round trips with consume --key-field.
	r = ok(t, addr, nil, "consume", "events", "--from", "4", "--count", "2", "--key-field")
	if r.stdout != "k1\tv1\nk2\t\n" {
		t.Errorf("key-field output %q", r.stdout)
	}
}

// TestConsumeGroupResume consumes with a group in several runs: each starts where the last one's
// commits left off, and together they see every record exactly once.
func TestConsumeGroupResume(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "jobs", "--partitions", "3")
	var in bytes.Buffer
	for i := range 30 {
		fmt.Fprintf(&in, "k%d\tjob-%02d\n", i, i)
	}
	ok(t, addr, in.Bytes(), "produce", "jobs", "--key-field", "--quiet")

	var seen []string
	r := ok(t, addr, nil, "consume", "jobs", "--group", "workers", "--count", "10", "--idle", "10s")
	seen = append(seen, strings.Fields(r.stdout)...)
	if len(seen) != 10 {
		t.Fatalf("first run printed %d records:\n%s", len(seen), r.stdout)
	}
	r = ok(t, addr, nil, "group", "list")
	if r.stdout != "workers\n" {
		t.Errorf("group list %q", r.stdout)
	}
	r = ok(t, addr, nil, "group", "describe", "workers")
	committed := 0
	for _, m := range regexp.MustCompile(`(?m)^\s*jobs\s+\d\s+(\d+)\s+\d+\s+\d+$`).FindAllStringSubmatch(r.stdout, -1) {
		var n int
		fmt.Sscan(m[1], &n)
		committed += n
	}
	if committed != 10 || !strings.Contains(r.stdout, "0 members") {
		t.Errorf("describe after 10 of 30 records shows %d committed:\n%s", committed, r.stdout)
	}

	r = ok(t, addr, nil, "consume", "jobs", "--group", "workers", "--count", "20", "--idle", "10s")
	seen = append(seen, strings.Fields(r.stdout)...)
	r = ok(t, addr, nil, "consume", "jobs", "--group", "workers", "--idle", "300ms")
	if r.stdout != "" {
		t.Errorf("third run printed %q", r.stdout)
	}
	slices.Sort(seen)
	var want []string
	for i := range 30 {
		want = append(want, fmt.Sprintf("job-%02d", i))
	}
	if !slices.Equal(seen, want) {
		t.Errorf("the runs together printed %v", seen)
	}

	r = ok(t, addr, nil, "group", "describe", "workers")
	for _, re := range []string{
		`(?m)^group:\s+workers$`,
		`(?m)^\s*TOPIC\s+PARTITION\s+COMMITTED\s+END\s+LAG$`,
		`(?m)^\s*total\s+0$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("describe does not match %s:\n%s", re, r.stdout)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^\s*jobs\s+\d\s+(\d+)\s+(\d+)\s+0$`).FindAllString(r.stdout, -1)); n != 3 {
		t.Errorf("describe shows %d partitions with lag 0:\n%s", n, r.stdout)
	}

	// Records produced later are what the next run gets; a member of the group shows in describe.
	ok(t, addr, []byte("late\n"), "produce", "jobs", "--quiet")
	ctx, cancel := context.WithCancel(testCtx(t))
	pr, pw := io.Pipe()
	defer pw.Close()
	done := make(chan result, 1)
	go func() {
		defer pr.Close()
		var out, errb bytes.Buffer
		code := run(ctx, []string{"--addr", addr, "consume", "jobs", "--group", "workers"}, nil, io.MultiWriter(&out, pw), &errb)
		done <- result{code, out.String(), errb.String()}
	}()
	line := make([]byte, 5)
	if _, err := io.ReadFull(pr, line); err != nil || string(line) != "late\n" {
		t.Fatalf("live consumer printed %q, %v", line, err)
	}
	r = ok(t, addr, nil, "group", "describe", "workers")
	if !strings.Contains(r.stdout, "1 member\n") {
		t.Errorf("describe with a live member:\n%s", r.stdout)
	}
	cancel() // an interrupt ends consume normally, committing what it printed
	go io.Copy(io.Discard, pr)
	if res := <-done; res.code != 0 || res.stderr != "" {
		t.Errorf("interrupted consume: exit %d, stderr %q", res.code, res.stderr)
	}
	r = ok(t, addr, nil, "group", "describe", "workers")
	if !regexp.MustCompile(`(?m)^\s*total\s+0$`).MatchString(r.stdout) {
		t.Errorf("the interrupted consumer did not commit:\n%s", r.stdout)
	}

	// Deleting the topic drops the group's offsets on it, so a topic created later under the same name
	// does not inherit them: the group, left with nothing, is unknown.
	ok(t, addr, nil, "topic", "delete", "jobs")
	r = sluice(t, addr, nil, "group", "describe", "workers")
	if r.code != 1 || !strings.Contains(r.stderr, "unknown group") {
		t.Errorf("describe after the topic's deletion: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestConsumeFrom covers --from latest, an offset with --partition, and a time.
func TestConsumeFrom(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "ticks", "--partitions", "2")
	ok(t, addr, []byte("a\nb\nc\nd\ne\n"), "produce", "ticks", "--partition", "1", "--quiet")
	time.Sleep(20 * time.Millisecond)
	mark := time.Now()
	time.Sleep(20 * time.Millisecond)
	ok(t, addr, []byte("f\ng\n"), "produce", "ticks", "--partition", "1", "--quiet")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "latest", "--idle", "200ms"}, ""},
		{[]string{"--from", "earliest", "--idle", "300ms"}, "a\nb\nc\nd\ne\nf\ng\n"},
		{[]string{"--partition", "1", "--from", "3", "--idle", "300ms"}, "d\ne\nf\ng\n"},
		{[]string{"--partition", "1", "--from", "3", "--count", "2"}, "d\ne\n"},
		{[]string{"--partition", "0", "--idle", "200ms"}, ""},
		{[]string{"--from", mark.Format(time.RFC3339Nano), "--idle", "300ms"}, "f\ng\n"},
	} {
		r := ok(t, addr, nil, append([]string{"consume", "ticks"}, tc.args...)...)
		if r.stdout != tc.want {
			t.Errorf("consume %s: %q, want %q", strings.Join(tc.args, " "), r.stdout, tc.want)
		}
	}
}

// TestProduceOptions covers keys, partitions, durabilities and the summary.
func TestProduceOptions(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "p", "--partitions", "3")

	r := ok(t, addr, []byte("1\n2\n3\n"), "produce", "p", "--partition", "2")
	if r.stderr != "produced 3 records (3 bytes) to p: partition 2 offsets 0-2\n" {
		t.Errorf("summary %q", r.stderr)
	}
	r = ok(t, addr, []byte("x\n"), "produce", "p", "--durability", "none")
	if r.stderr != "produced 1 record (1 bytes) to p: offsets unknown at durability none\n" {
		t.Errorf("summary %q", r.stderr)
	}
	r = ok(t, addr, []byte("a,b,c,d"), "produce", "p", "--delim", ",", "--key", "same", "--durability", "fsync", "--compression", "snappy")
	if !regexp.MustCompile(`^produced 4 records \(4 bytes\) to p: partition \d offsets \d-\d\n$`).MatchString(r.stderr) {
		t.Errorf("keyed summary %q: one key, one partition", r.stderr)
	}
	if r = ok(t, addr, []byte("q\n"), "produce", "p", "--quiet"); r.stderr != "" || r.stdout != "" {
		t.Errorf("--quiet printed %q %q", r.stdout, r.stderr)
	}
	r = ok(t, addr, nil, "consume", "p", "--partition", "2", "--count", "3")
	if r.stdout != "1\n2\n3\n" {
		t.Errorf("partition 2 holds %q", r.stdout)
	}

	// A record the input cannot be split into fails with the records before it sent.
	r = sluice(t, addr, []byte("k\tv\nno tab\n"), "produce", "p", "--key-field", "--partition", "0")
	if r.code != 1 || !strings.Contains(r.stderr, "produced 1 record") || !strings.HasSuffix(r.stderr, "sluice: record 2 has no tab to end its key (--key-field)\n") {
		t.Errorf("key-field without a tab: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestProduceInterrupted ends a produce whose input never ends: it sends what it read and fails.
func TestProduceInterrupted(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "live", "--partitions", "1")
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan result, 1)
	go func() { done <- sluiceCtx(t, ctx, addr, pr, "produce", "live") }()
	if _, err := pw.Write([]byte("one\ntwo\n")); err != nil {
		t.Fatal(err)
	}
	c := dialT(t, addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ti, err := c.DescribeTopic(testCtx(t), "live")
		if err != nil {
			t.Fatal(err)
		}
		if ti.Partitions[0].EndOffset == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the records typed never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case r := <-done:
		if r.code != 1 || r.stderr != "produced 2 records (6 bytes) to live: partition 0 offsets 0-1\nsluice: interrupted\n" {
			t.Errorf("interrupted produce: exit %d, stderr %q", r.code, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("produce did not end on interrupt")
	}
}
