package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluicemq/sluice/client"
)

// TestMetricsExposition scrapes the binary's /metrics: Prometheus's content type; go_*, process_*
// and sluice_build_info beside the broker's own; label values escaped as the text format wants (a
// group name with a tab, a quote, a backslash and a newline); the produce latency histogram and the
// authentication failures; and the whole body parses with Prometheus's own parser.
func TestMetricsExposition(t *testing.T) {
	b := startBroker(t, filepath.Join(t.TempDir(), "data"), "--token", "good=alice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, b.addr, client.WithAuthToken("good"), client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic(ctx, client.TopicConfig{Name: "m", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Producer("m", client.WithLinger(0), client.WithMaxInFlight(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 128 { // one produce in 64 is timed
		if _, err := p.Publish(ctx, client.Record{Value: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	const group = "odd\tgroup \"q\" \\ \nname"
	if err := c.CommitOffset(ctx, group, "m", 0, 100); err != nil {
		t.Fatal(err)
	}
	if bad, err := client.Dial(ctx, b.addr, client.WithAuthToken("bad"), client.WithLogger(slog.New(slog.DiscardHandler))); err == nil {
		bad.Close()
		t.Fatal("a bad token was accepted")
	}

	resp, err := http.Get("http://" + b.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	for _, want := range []string{
		"\ngo_goroutines ", "\ngo_memstats_heap_alloc_bytes ", "\nprocess_cpu_seconds_total ", "\nprocess_open_fds ",
		"\nsluice_build_info{goversion=\"go", "\nsluice_auth_failures_total 1\n",
		"\nsluice_produce_latency_seconds_count 2\n", "\nsluice_produce_latency_seconds_bucket{le=\"+Inf\"} 2\n",
		"\nsluice_produced_records_total 128\n", "\nsluice_protocol_errors_total{kind=\"malformed\"} ",
		// The text format escapes \, " and newlines in label values, nothing else (a tab stays a tab).
		"\nsluice_consumer_group_lag{group=\"odd\tgroup \\\"q\\\" \\\\ \\nname\",partition=\"0\",topic=\"m\"} 28\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus cannot parse /metrics: %v", err)
	}
	lag := families["sluice_consumer_group_lag"]
	if lag == nil || len(lag.GetMetric()) != 1 || lag.GetMetric()[0].GetLabel()[0].GetValue() != group {
		t.Errorf("the lag series does not carry the group name %q: %v", group, lag)
	}
}
