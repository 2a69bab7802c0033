// Package bench is Sluice's latency harness and load generator.
//
// The harness is open-loop by default: every producer follows a fixed-rate schedule and every message
// carries its intended send time, so a stall in the system under test shows up as the latency of every
// message that should have been sent during it (coordinated-omission correction, as wrk2 does it), not as
// one slow request. Latency is recorded in HdrHistogram, one histogram per consumer goroutine, merged at
// the end. A closed-loop mode sends as fast as the target accepts and measures from the actual send time.
//
// # Payload layout
//
// The harness owns the first bytes of every payload; the rest is filler. Integers are little-endian.
//
//	 0                   8                  16                  PayloadSize
//	+-------------------+-------------------+-------------------+
//	| intended send ns  | actual send ns    | filler ...        |
//	+-------------------+-------------------+-------------------+
//
// Both times are nanoseconds on the harness's monotonic clock (see [Now]). The actual send time is written
// only when PayloadSize >= 16 ([StampSize]); it feeds the uncorrected view of an open-loop run. In
// closed-loop mode both fields hold the same value. The layout is private to one process, not frozen.
//
// # Pieces
//
//   - [Target] and [Producer]: the system under test, registered by name in a [Registry].
//   - [Config]: one run's parameters, with defaults and [Config.Validate].
//   - [Run]: one run; returns a [Result] with the merged histograms.
//   - [WriteTable], [WriteJSON], [WriteHGRM], [WriteSVG]: the outputs.
//   - [MeasureLimits]: loopback TCP, disk, fdatasync and memcpy limits of this machine.
//   - [RunSuite], [WriteMarkdown], [UpdateMarkedFile]: scenario suites and the docs/benchmarks.md report.
//
// The floor target ([FloorTarget], registered as "floor") is an in-process hand-off with no broker. Run it
// on the same schedule as a broker target to see the harness's own contribution to every percentile. The
// busy-poll floor ([SPSCFloorTarget], registered as "spsc") is the same for a spinning consumer: a bare
// ring.SPSC hand-off that never parks, the floor of the embedded target with a spinning consumer.
//
// # Resolution
//
// What the harness can tell apart is bounded by its clock read ([Now]: time.Since on the vDSO clock,
// BenchmarkNow), by the histograms' three significant digits (1 ns steps below 2 µs, 0.1% above), and,
// in open loop, by the pacer: it reads the clock at least twice per message, so one sender paces at
// most 1e9 / (the sender's per-message cost) messages a second, and a spin-paced sender wakes within a
// clock read of its intended time while it owns a core (Result.Pacer measures this every run). The
// spsc floor on the same schedule is everything else the harness costs: docs/bench.md has the figures.
package bench
