package targets

import (
	"time"

	"github.com/sluicemq/sluice/bench"
)

// Suite is the broker suite `make bench` reports for each named target: open-loop rate sweeps with
// 100 B and 1 KiB records at durability written and fsync (the rate doubles until p99 passes the
// limit or messages are dropped), then a closed-loop run with 1 KiB records for the throughput ceiling.
//
// Sweeps start low enough that the first step holds on a loaded 2-core machine and double from there:
// written from 5 000 msg/s to 320 000, fsync from 1 000 to 64 000. The p99 limit is 10 ms for written
// and 25 ms for fsync, where every record also waits for a group commit's fdatasync.
//
// The pacer sleeps without spinning (SpinThreshold -1). On a 2-core machine a spinning pacer takes a
// whole core once the send interval drops under the spin threshold (50µs: from 20 000 msg/s), leaving
// the broker, the client and the consumer one core between them; profiled at 40 000 msg/s over TCP the
// spin was 80% of the process's CPU. The sleep-only pacer wakes a few µs late at p50 and ~100µs at p99
// (reported as Pacer); the floor runs with the same pacer, so its figures include that error too.
func Suite(names ...string) []bench.Scenario {
	var out []bench.Scenario
	for _, name := range names {
		base := bench.Config{Target: name, Producers: 1, Consumers: 1, Partitions: 1, SpinThreshold: -1}
		with := func(size int, durability string, rate float64) bench.Config {
			c := base
			c.PayloadSize, c.Durability, c.Rate = size, durability, rate
			c.BatchBytes = DefaultBatchBytes(name, size)
			return c
		}
		out = append(out,
			bench.Scenario{Name: name + "-100B-written", Config: with(100, bench.DurabilityWritten, 5000),
				Sweep: true, MaxSteps: 7, P99Limit: 10 * time.Millisecond},
			bench.Scenario{Name: name + "-1KiB-written", Config: with(1024, bench.DurabilityWritten, 5000),
				Sweep: true, MaxSteps: 6, P99Limit: 10 * time.Millisecond},
			bench.Scenario{Name: name + "-100B-fsync", Config: with(100, bench.DurabilityFsync, 1000),
				Sweep: true, MaxSteps: 7, P99Limit: 25 * time.Millisecond},
			bench.Scenario{Name: name + "-1KiB-fsync", Config: with(1024, bench.DurabilityFsync, 1000),
				Sweep: true, MaxSteps: 7, P99Limit: 25 * time.Millisecond},
		)
		max := with(1024, bench.DurabilityWritten, 0)
		max.Mode = bench.ClosedLoop
		out = append(out, bench.Scenario{Name: name + "-1KiB-written-max", Config: max, NoFloor: true})
	}
	return out
}
