package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/sluicemq/sluice/bench"
)

// bestStep is the highest-rate step of a scenario that held its p99 limit, or the first step when
// none did (the rule of the per-scenario report below the headline).
func bestStep(s *bench.ScenarioResult) *bench.Step {
	n := len(s.Steps)
	if n == 0 {
		return nil
	}
	if s.Broke && n > 1 {
		n--
	}
	return &s.Steps[n-1]
}

// writeHeadline writes one row per scenario, its best step against the floor and the physical limits,
// ahead of the per-scenario report: the figures a reader wants first.
func writeHeadline(w io.Writer, sr *bench.SuiteResult) {
	l := sr.Limits
	var b strings.Builder
	b.WriteString("#### Headline\n\n")
	b.WriteString("Each scenario's best step: the highest rate whose p99 held the limit with nothing lost (a sweep's " +
		"first step when none held; the closed-loop maximum as measured). Latency is intended send to delivery; " +
		"at fsync a record is delivered only once its producer holds the fsync acknowledgement. " +
		"\"vs limit\" is MB/s over loopback TCP bandwidth for the TCP targets and p99 over raw fdatasync p99 at fsync.\n\n")
	b.WriteString("| scenario | held | msgs/s | MB/s | p50 | p99 | p99.9 | floor p99 | vs limit |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for i := range sr.Scenarios {
		s := &sr.Scenarios[i]
		st := bestStep(s)
		if st == nil || st.Target == nil {
			fmt.Fprintf(&b, "| %s | not run | | | | | | | |\n", s.Scenario.Name)
			continue
		}
		t := st.Target
		held := "max"
		if t.Config.Mode == bench.OpenLoop {
			held = fmt.Sprintf("%.0f", t.Config.Rate)
			if s.Broke && len(s.Steps) == 1 {
				held += " (broke)"
			}
		}
		floor := "-"
		if st.Floor != nil {
			floor = bench.FormatLatency(st.Floor.Latency.P99)
		}
		var vs []string
		if t.Target != bench.FloorName && t.Target != "embedded" && l.LoopbackMBps > 0 {
			vs = append(vs, fmt.Sprintf("%.4f of loopback", t.MBps/l.LoopbackMBps))
		}
		if t.Config.Durability == bench.DurabilityFsync && l.FdatasyncP99 > 0 {
			vs = append(vs, fmt.Sprintf("p99 %.2f× fdatasync p99", float64(t.Latency.P99)/float64(l.FdatasyncP99)))
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f | %s | %s | %s | %s | %s |\n", s.Scenario.Name, held, t.Rate, t.MBps,
			bench.FormatLatency(t.Latency.P50), bench.FormatLatency(t.Latency.P99), bench.FormatLatency(t.Latency.P999),
			floor, strings.Join(vs, "; "))
	}
	fmt.Fprintf(&b, "\nLimits in the same run: loopback TCP %.0f MB/s (256 KiB writes), raw 4 KiB write + fdatasync p50 %s / p99 %s, "+
		"disk sequential write %.0f MB/s, memcpy %.0f MB/s.\n\n", l.LoopbackMBps,
		bench.FormatLatency(l.FdatasyncP50), bench.FormatLatency(l.FdatasyncP99), l.DiskWriteMBps, l.MemcpyMBps)
	_, _ = io.WriteString(w, b.String())
}
