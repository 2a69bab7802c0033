package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// produce --ttl, --deliver-at and --priority set the scheduling headers on every record; bad values
// are usage errors.
func TestProduceScheduleFlags(t *testing.T) {
	addr := startBroker(t)
	ok(t, addr, nil, "topic", "create", "s")
	before := time.Now()
	ok(t, addr, []byte("a\nb\n"), "produce", "s", "--ttl", "30s", "--deliver-at", "+10s", "--priority", "7", "--quiet")
	ok(t, addr, []byte("c\n"), "produce", "s", "--deliver-at", "2026-12-01T10:00:00Z", "--quiet")
	r := ok(t, addr, nil, "consume", "s", "--count", "3", "--format", "json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("consumed %q", r.stdout)
	}
	hdrs := func(line string) map[string]string {
		var rec jsonRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, h := range rec.Headers {
			m[h.Key] = *h.Value
		}
		return m
	}
	for _, line := range lines[:2] {
		h := hdrs(line)
		at, _ := strconv.ParseInt(h[wire.HeaderDeliverAt], 10, 64)
		if h[wire.HeaderTTL] != "30000" || h[wire.HeaderPriority] != "7" ||
			at < before.Add(10*time.Second).UnixMilli() || at > time.Now().Add(10*time.Second).UnixMilli() {
			t.Errorf("headers %v", h)
		}
	}
	if h := hdrs(lines[2]); len(h) != 1 || h[wire.HeaderDeliverAt] != strconv.FormatInt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixMilli(), 10) {
		t.Errorf("headers %v", h)
	}
	for _, args := range [][]string{{"--ttl", "0s"}, {"--priority", "10"}, {"--priority", "-1"}, {"--deliver-at", "tomorrow"}, {"--deliver-at", "+-1s"}} {
		r := sluice(t, addr, []byte("x\n"), append([]string{"produce", "s"}, args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, args[0]) {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}
