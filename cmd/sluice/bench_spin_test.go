package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/sluicemq/sluice/bench"
)

// TestBenchSpinConsumer: --spin-consumer runs the busy-polling embedded target, and --floor then
// runs the spsc floor on the same schedule; the flag is refused for other targets.
func TestBenchSpinConsumer(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := runBench(context.Background(), []string{"--target", "embedded", "--spin-consumer", "--floor",
		"--rate", "5000", "--duration", "300ms", "--warmup", "50ms", "--size", "100", "--data", dir, "--json", "--quiet"},
		&stdout, &stderr)
	if err != nil {
		t.Fatalf("runBench: %v\nstderr: %s", err, stderr.String())
	}
	var results []*bench.Result
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		t.Fatalf("output is not JSON results: %v\n%s", err, stdout.String())
	}
	if len(results) != 2 || results[0].Target != "embedded-spin" || results[1].Target != bench.SPSCName {
		t.Fatalf("results %d, want embedded-spin then spsc", len(results))
	}
	for _, r := range results {
		if r.Sent == 0 || r.Received != r.Sent || r.Lost != 0 || r.Unsent != 0 || r.Config.Rate != 5000 {
			t.Errorf("%s: rate %v, sent %d, received %d, lost %d, unsent %d", r.Target, r.Config.Rate, r.Sent, r.Received, r.Lost, r.Unsent)
		}
	}
	if err := runBench(context.Background(), []string{"--target", "tcp", "--spin-consumer"}, &stdout, &stderr); !errors.Is(err, errUsage) {
		t.Errorf("--spin-consumer with tcp: %v, want a usage error", err)
	}
}
