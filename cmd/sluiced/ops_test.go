package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// TestSettingsSources: every flag also comes from SLUICE_* environment variables and the config
// file, in that order of precedence, with sluice's units: days for durations, IEC and SI sizes,
// range-checked whatever their source.
func TestSettingsSources(t *testing.T) {
	cfg, _, err := parseConfig([]string{"--retention-age", "7d", "--segment-bytes", "64MiB", "--max-batch-bytes", "2MB", "--offsets-retention", "-1d"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RetentionAge != 7*24*time.Hour || cfg.SegmentBytes != 64<<20 || cfg.MaxBatchBytes != 2e6 || cfg.GroupRetention != -24*time.Hour {
		t.Errorf("units: %+v", cfg)
	}
	for _, args := range [][]string{
		{"--segment-bytes", "2GiB"}, {"--retention-age", "110000d"}, {"--max-frame", "3GiB"}, {"--segment-bytes", "lots"},
	} {
		if _, _, err := parseConfig(args); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: %v, want an error naming the flag", args, err)
		}
	}

	file := filepath.Join(t.TempDir(), "sluiced.json")
	if err := os.WriteFile(file, []byte(`{"retention-age": "2d", "partitions": 6, "max-frame": "1MiB", "loops": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_RETENTION_AGE", "3d")   // the environment wins over the file
	t.Setenv("SLUICE_SEGMENT_BYTES", "8MiB") // and loses to the command line
	t.Setenv("SLUICE_MAX_FRAME", "")         // empty: not set
	cfg, _, err = parseConfig([]string{"--config", file, "--segment-bytes", "16MiB"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RetentionAge != 72*time.Hour || cfg.SegmentBytes != 16<<20 || cfg.Partitions != 6 || cfg.MaxFrame != 1<<20 || cfg.Loops != 3 {
		t.Errorf("layered settings: %+v", cfg)
	}
	t.Setenv("SLUICE_SEGMENT_BYTES", "2GiB")
	if _, _, err := parseConfig(nil); err == nil || !strings.Contains(err.Error(), "SLUICE_SEGMENT_BYTES") {
		t.Errorf("out-of-range environment variable: %v", err)
	}
	t.Setenv("SLUICE_SEGMENT_BYTES", "")

	var out bytes.Buffer
	if _, help, err := parseConfigTo([]string{"--version"}, &out); err != nil || !help || !strings.HasPrefix(out.String(), "sluiced ") {
		t.Errorf("--version: %v %v %q", help, err, out.String())
	}
	out.Reset()
	if _, help, err := parseConfigTo([]string{"--help"}, &out); err != nil || !help ||
		!strings.Contains(out.String(), "  --retention-age D") || !strings.Contains(out.String(), "SLUICE_RETENTION_AGE") {
		t.Errorf("--help: %v %v\n%s", help, err, out.String())
	}
}

// TestOperatorBasics runs the binary: --version; the version in the startup log and in
// sluice_build_info; /healthz and /readyz; tokens and ACL rules from files; SIGHUP rereading them
// and reopening the log file, a bad file leaving the previous settings and the broker running.
func TestOperatorBasics(t *testing.T) {
	out, err := exec.Command(sluicedBinary(t), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "sluiced ") {
		t.Fatalf("sluiced --version: %v %q", err, out)
	}
	version := strings.Fields(string(out))[1]

	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	acls := filepath.Join(dir, "acl")
	logPath := filepath.Join(dir, "sluiced.log")
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tokens, "# who may connect\nt-alice=alice\nt-admin=admin\n")
	write(acls, "admin:all:*\nalice:produce:a\n")
	b := startBroker(t, filepath.Join(dir, "data"), "--token-file", tokens, "--acl-file", acls, "--log-file", logPath,
		"--log-level", "info", "--auto-create")

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + b.metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s", what)
			}
		}
	}
	readLog := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	waitFor("ready", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, `sluice_build_info{goversion="`) ||
		!strings.Contains(body, `version="`+version+`"} 1`) {
		t.Errorf("/metrics lacks sluice_build_info for %s:\n%.600s", version, body)
	}
	waitFor("the ready line in the log file", func() bool { return strings.Contains(readLog(), "sluiced ready") })
	if l := readLog(); !strings.Contains(l, "version="+version) {
		t.Errorf("the startup log does not name the version %s:\n%s", version, l)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, b.addr, client.WithAuthToken("t-admin"), client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := c.CreateTopic(ctx, client.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if code := rawProduce(t, b.addr, "t-alice", "a"); code != wire.CodeOK {
		t.Fatalf("alice produces to a: %v", code)
	}
	if code := rawProduce(t, b.addr, "t-alice", "b"); code != wire.CodeNotAuthorized {
		t.Fatalf("alice produces to b: %v, want not authorized", code)
	}

	// Log rotation: the file is moved away, SIGHUP opens a new one. New tokens and rules apply.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	write(tokens, "t-bob=bob\nt-admin=admin\n")
	write(acls, "admin:all:*\nbob:produce:b\n")
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("SIGHUP's log line in the new log file", func() bool { return strings.Contains(readLog(), "SIGHUP: reloaded") })
	if code := rawProduce(t, b.addr, "t-bob", "b"); code != wire.CodeOK {
		t.Errorf("bob produces to b after SIGHUP: %v", code)
	}
	if c, err := client.Dial(ctx, b.addr, client.WithAuthToken("t-alice"), client.WithLogger(slog.New(slog.DiscardHandler))); !errors.Is(err, wire.CodeAuthFailed) {
		if err == nil {
			c.Close()
		}
		t.Errorf("alice's removed token after SIGHUP: %v, want auth failed", err)
	}

	// A bad file: logged, the previous settings stay, the broker keeps running.
	write(acls, "bob:fly:b\n")
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the failed reload's log line", func() bool { return strings.Contains(readLog(), "tokens and ACLs not reloaded") })
	if code := rawProduce(t, b.addr, "t-bob", "b"); code != wire.CodeOK {
		t.Errorf("bob after a failed reload: %v", code)
	}
	c, err = client.Dial(ctx, b.addr, client.WithAuthToken("t-admin"), client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	b.stop()
	if l := readLog(); !strings.Contains(l, "stopped cleanly") {
		t.Errorf("no clean stop in the log:\n%s", l)
	}
	if _, err := os.Stat(logPath + ".1"); errors.Is(err, os.ErrNotExist) {
		t.Error("the rotated log file is gone")
	}
}
