// Module tailtools holds the tools behind docs/benchmarks.md's latency-tail sections: waits reads a
// `sluice bench --trace` file, wakelat measures how late a thread wakes beside page population. A
// module of its own, so that golang.org/x/exp/trace stays out of the broker's dependencies.
module github.com/sluicemq/sluice/bench/tailtools

go 1.26.0

require (
	golang.org/x/exp v0.0.0-20261113113407-e3970619a1a4
	golang.org/x/sys v0.35.0
)
