package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// Every size and duration is range-checked where it is parsed, on the command line and in the
// config file alike, before anything is opened.
func TestConfigRangeChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"--retention-age", "3000000h"}, "retention-age"}, // 342 years: overflows a duration
		{[]string{"--retention-age", "500us"}, "retention-age"},    // would read as 0 ms: keep all
		{[]string{"--retention-age", "-1h"}, "retention-age"},
		{[]string{"--segment-bytes", "2147483648"}, "segment-bytes"},
		{[]string{"--segment-bytes", "-1"}, "segment-bytes"},
		{[]string{"--retention-bytes", "-1"}, "retention-bytes"},
		{[]string{"--flush-interval", "-1s"}, "flush-interval"},
		{[]string{"--flush-bytes", "-5"}, "flush-bytes"},
		{[]string{"--max-batch-bytes", "2147483648"}, "max-batch-bytes"},
		{[]string{"--max-frame", "-1"}, "max-frame"},
		{[]string{"--max-connections", "-1"}, "max-connections"},
		{[]string{"--idle-timeout", "-1s"}, "idle-timeout"},
		{[]string{"--partitions", "0"}, "partitions"},
		{[]string{"--partitions", "5000"}, "partitions"},
		{[]string{"--loops", "-2"}, "loops"},
		{[]string{"--group-revoke-timeout", "2h"}, "group-revoke-timeout"},
		{[]string{"--queue-max-tracked", "-1"}, "queue-max-tracked"},
		{[]string{"--queue-max-ack-pending", "-1"}, "queue-max-ack-pending"},
		{[]string{"--txn-timeout", "500ms"}, "txn-timeout"},
		{[]string{"--txn-timeout", "25h"}, "txn-timeout"},
	} {
		if _, _, err := parseConfig(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}

	cfg, _, err := parseConfig([]string{"--group-revoke-timeout", "-1s", "--queue-max-tracked", "500", "--queue-max-ack-pending", "20",
		"--txn-timeout", "5m"})
	if err != nil || cfg.GroupRevoke != -time.Second || cfg.QueueTracked != 500 || cfg.QueueAckLimit != 20 || cfg.TxnTimeout != 5*time.Minute {
		t.Fatalf("queue, group and transaction flags: %+v, %v", cfg, err)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"retention-age": "3000000h"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseConfig([]string{"--config", bad}); err == nil || !strings.Contains(err.Error(), "retention-age") {
		t.Errorf("config file with a 342-year retention: %v", err)
	}

	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"retention-age": "168h", "segment-bytes": 1073741824, "partitions": 8}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err = parseConfig([]string{"--config", good, "--flush-interval", "5ms", "--retention-bytes", "0x100000"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RetentionAge != 168*time.Hour || cfg.SegmentBytes != 1<<30 || cfg.Partitions != 8 ||
		cfg.FlushInterval != 5*time.Millisecond || cfg.RetentionBytes != 1<<20 {
		t.Fatalf("parsed %+v", cfg)
	}
	if cfg, _, err := parseConfig(nil); err != nil || cfg.Partitions != 4 || cfg.RetentionAge != 0 {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}

// The sequence against the real binary: a create the storage would refuse is refused whole,
// and a bad topic left on disk (as earlier versions left them) does not stop the broker: it starts,
// counts the topic as failed, answers it with the cause and serves the others.
func TestBrokerStartsOverBadTopic(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	b := startBroker(t, data)
	c := dialBroker(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createTopic(t, c, "good", 1)
	produceN(t, c, "good", 100, wire.DurabilityWritten)
	for _, cfg := range []client.TopicConfig{
		{Name: "orders", SegmentBytes: 512 << 10}, // below the 1 MiB batch limit
		{Name: "orders", SegmentBytes: 5000},
		{Name: "orders", SegmentBytes: 2 << 30},
		{Name: "orders", SegmentBytes: 4096, Flags: wire.TopicMemory},
		{Name: "orders", RetentionMs: 18446744073710},
	} {
		if err := c.CreateTopic(ctx, cfg); !errors.Is(err, wire.CodeInvalidRequest) {
			t.Errorf("create %+v: %v, want invalid request", cfg, err)
		}
	}
	c.Close()
	b.stop()
	if _, err := os.Stat(filepath.Join(data, "topics", "orders")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused create left its directory: %v", err)
	}

	legacy := filepath.Join(data, "topics", "legacy")
	if err := os.MkdirAll(legacy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(legacy, "topic.json"), []byte(`{"Name": "legacy", "Partitions": 4, "SegmentBytes": 524288}`), 0o644); err != nil {
		t.Fatal(err)
	}
	b.start()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) { // the metrics listener starts after the broker's
		if resp, err := http.Get("http://" + b.metrics + "/metrics"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no metrics endpoint after 10s")
		}
	}
	if n := b.metric(t, "sluice_topics_failed", ""); n != 1 {
		t.Fatalf("sluice_topics_failed %d, want 1", n)
	}
	if !strings.Contains(b.log(), "legacy") {
		t.Errorf("the failed topic is not logged:\n%s", b.log())
	}
	c = dialBroker(t, b)
	consumeAll(t, c, "good", 100, newChecker(t))
	// Subscribing and creating answer the cause.
	if _, err := c.Subscribe(ctx, "legacy", client.WithStartEarliest()); !errors.Is(err, wire.CodeStorageFailed) || !strings.Contains(err.Error(), "segment bytes 524288") {
		t.Fatalf("a subscription to the failed topic: %v, want storage failed with the cause", err)
	}
	if err := c.CreateTopic(ctx, client.TopicConfig{Name: "legacy"}); !errors.Is(err, wire.CodeStorageFailed) {
		t.Fatalf("a create over the failed topic: %v, want storage failed", err)
	}
	if err := c.DeleteTopic(ctx, "legacy"); err != nil {
		t.Fatal(err)
	}
	if n := b.metric(t, "sluice_topics_failed", ""); n != 0 {
		t.Fatalf("sluice_topics_failed %d after the delete, want 0", n)
	}
}
