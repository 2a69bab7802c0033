package main

import (
	"strings"
	"testing"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server/servertest"
)

// TestProduceUnderTheBrokersBatchLimit (issue 21, item 3): `seq 1 20000 | sluice produce t` against a
// broker whose batch limit is 64 KiB stores every record, with the default batch size and with
// --batch-bytes; a --batch-bytes too small for a record is a usage error. (Before, every record
// failed: "batch of 260699 bytes, limit 65536".)
func TestProduceUnderTheBrokersBatchLimit(t *testing.T) {
	srv, _ := servertest.Start(t, func(o *engine.Options) { o.MaxBatchBytes = 64 << 10 }, nil)
	addr := srv.Addr().String()
	ok(t, addr, nil, "topic", "create", "t", "--partitions", "1")
	var in strings.Builder
	for i := 1; i <= 20000; i++ {
		in.WriteString(strings.Repeat("x", i%13) + "\n")
	}
	for _, args := range [][]string{{"produce", "t"}, {"produce", "t", "--batch-bytes", "4KiB"}} {
		r := ok(t, addr, []byte(in.String()), args...)
		if !strings.HasPrefix(r.stderr, "produced 20000 records") {
			t.Fatalf("%s: %q", strings.Join(args, " "), r.stderr)
		}
	}
	r := ok(t, addr, nil, "consume", "t", "--from", "39999", "--count", "1")
	if r.stdout != strings.Repeat("x", 20000%13)+"\n" {
		t.Fatalf("the last record reads %q", r.stdout)
	}
	if r := sluice(t, addr, []byte("a\n"), "produce", "t", "--batch-bytes", "10"); r.code != 2 || !strings.Contains(r.stderr, "--batch-bytes 10 outside") {
		t.Fatalf("--batch-bytes 10: exit %d, %q", r.code, r.stderr)
	}
}
