package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	} {
		if _, _, err := parseConfig(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.want)
		}
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
	cfg, _, err := parseConfig([]string{"--config", good, "--flush-interval", "5ms", "--retention-bytes", "0x100000"})
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
