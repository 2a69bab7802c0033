package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicemq/sluice/bench"
)

func TestBenchJSON(t *testing.T) {
	addr := startBroker(t)
	for _, tc := range []struct {
		target, durability string
		extra              []string
		batchBytes         int // the batch cap the run must have used
	}{
		{"embedded", "fsync", []string{"--sync-spacing", "1ms", "--flush-interval", "2s"}, 64 << 10},
		{"tcp", "written", []string{"--floor"}, 1 << 20},                               // the Go client's default
		{"addr", "none", []string{"--addr", addr, "--batch-bytes", "32KiB"}, 32 << 10}, // given: kept
		{"floor", "none", nil, 64 << 10},
	} {
		t.Run(tc.target, func(t *testing.T) {
			dir := t.TempDir()
			hgrm, svg := filepath.Join(dir, "run.hgrm"), filepath.Join(dir, "run.svg")
			args := append([]string{"--target", tc.target, "--durability", tc.durability, "--rate", "2000",
				"--duration", "300ms", "--warmup", "50ms", "--size", "100", "--data", dir, "--json", "--quiet",
				"--hgrm", hgrm, "--svg", svg}, tc.extra...)
			var stdout, stderr bytes.Buffer
			if err := runBench(context.Background(), args, &stdout, &stderr); err != nil {
				t.Fatalf("runBench: %v\nstderr: %s", err, stderr.String())
			}
			var results []*bench.Result
			if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
				t.Fatalf("output is not JSON results: %v\n%s", err, stdout.String())
			}
			want := 1
			if len(tc.extra) > 0 && tc.extra[0] == "--floor" {
				want = 2
			}
			if len(results) != want {
				t.Fatalf("%d results, want %d", len(results), want)
			}
			r := results[0]
			if r.Target != tc.target || r.Config.Durability != tc.durability || r.Config.PayloadSize != 100 {
				t.Errorf("result for %s/%s/%d B, want %s/%s/100 B", r.Target, r.Config.Durability, r.Config.PayloadSize, tc.target, tc.durability)
			}
			if r.Sent == 0 || r.Received != r.Sent || r.Lost != 0 || r.Unsent != 0 {
				t.Errorf("sent %d, received %d, lost %d, unsent %d", r.Sent, r.Received, r.Lost, r.Unsent)
			}
			if r.Config.BatchBytes != tc.batchBytes {
				t.Errorf("batch bytes %d, want %d", r.Config.BatchBytes, tc.batchBytes)
			}
			if tc.target == "embedded" && (r.Settings["sync-spacing"] != "1ms" || r.Settings["flush-interval"] != "2s") {
				t.Errorf("settings %v: want the engine's sync-spacing 1ms and flush-interval 2s recorded", r.Settings)
			}
			if tc.target != "embedded" && r.Settings != nil {
				t.Errorf("settings %v recorded for a run given none", r.Settings)
			}
			if r.Hist == nil || r.Hist.TotalCount() != r.Measured {
				t.Errorf("latency histogram missing or short: measured %d", r.Measured)
			}
			for _, p := range []string{hgrm, svg} {
				if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
					t.Errorf("%s not written: %v", p, err)
				}
			}
		})
	}
}

// TestBenchTable runs the default table output, with a CPU profile and an execution trace.
func TestBenchTable(t *testing.T) {
	dir := t.TempDir()
	prof, tr := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "run.trace")
	var stdout, stderr bytes.Buffer
	err := runBench(context.Background(), []string{"--target", "embedded", "--rate", "1000", "--duration", "200ms",
		"--warmup", "0", "--data", dir, "--cpuprofile", prof, "--trace", tr}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("runBench: %v\nstderr: %s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "p99.9") || !strings.Contains(stdout.String(), "embedded") {
		t.Errorf("no table on stdout:\n%s", stdout.String())
	}
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		t.Errorf("CPU profile not written: %v", err)
	}
	if b, err := os.ReadFile(tr); err != nil || !bytes.HasPrefix(b, []byte("go 1.")) {
		t.Errorf("execution trace not written (read: %v, %d bytes)", err, len(b))
	}
}

// TestBenchBatchFollowsPayload: without --batch-bytes, a payload larger than the target's default
// cap gets a cap that holds it instead of a usage error.
func TestBenchBatchFollowsPayload(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"--target", "embedded", "--size", "96KiB", "--rate", "200", "--duration", "200ms",
		"--warmup", "50ms", "--data", dir, "--json", "--quiet"}
	if err := runBench(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("runBench: %v\nstderr: %s", err, stderr.String())
	}
	var results []*bench.Result
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil || len(results) != 1 {
		t.Fatalf("output is not one JSON result (%v):\n%s", err, stdout.String())
	}
	if r := results[0]; r.Config.BatchBytes != 96<<10 || r.Sent == 0 || r.Received != r.Sent {
		t.Errorf("batch bytes %d, sent %d, received %d: want 98304 and every message", r.Config.BatchBytes, r.Sent, r.Received)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--target", "nosuch"},
		{"--mode", "sideways"},
		{"--durability", "maybe"},
		{"--size", "4"},
		{"--producers", "0"},
		{"--target", "tcp", "--sync-spacing", "-1ms"},
		{"--target", "tcp", "--sync-spacing", "2s"},
		{"--target", "addr", "--sync-spacing", "1ms"},
		{"--target", "floor", "--flush-interval", "1s"},
		{"--target", "embedded", "--size", "96KiB", "--batch-bytes", "64KiB"}, // a given cap below the payload
	} {
		var stdout, stderr bytes.Buffer
		if err := runBench(context.Background(), args, &stdout, &stderr); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"bench", "--help"}, nil, &stdout, &stderr); code != exitOK {
		t.Errorf("sluice bench --help: exit %d", code)
	}
	if !strings.Contains(stdout.String(), "--durability") {
		t.Errorf("help does not list the flags:\n%s", stdout.String())
	}
}
