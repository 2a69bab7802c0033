package targets

import (
	"context"
	"testing"

	"github.com/sluicemq/sluice/bench"
)

// TestEmbeddedSpinCarriesEveryRecord: with busy-polling consumers (Options.SpinConsumer) the
// embedded target delivers every record once, at each durability and with a consumer per partition.
func TestEmbeddedSpinCarriesEveryRecord(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Logger: quiet, SpinConsumer: true}
	for _, d := range []string{bench.DurabilityWritten, bench.DurabilityFsync} {
		for _, parts := range []int{1, 2} {
			target := NewEmbedded(opts)
			if target.Name() != "embedded-spin" {
				t.Fatalf("name %q", target.Name())
			}
			cfg := shortRun(d)
			cfg.Partitions, cfg.Consumers, cfg.Producers = parts, parts, parts
			res, err := bench.Run(context.Background(), target, cfg)
			if err != nil {
				t.Fatalf("%s, %d partitions: %v", d, parts, err)
			}
			checkCounts(t, res)
		}
	}
}
