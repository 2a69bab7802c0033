// Command sluicebench runs the benchmark suite and writes the report.
//
//	go run ./bench/cmd/sluicebench -targets floor -budget 5m \
//	    -report docs/benchmarks.md -plots docs/bench -plot-link bench -limits-dir ./data
//
// Every named target runs bench.StandardScenarios. Broker targets are registered in registry below.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/sluicemq/sluice/bench"
)

// registry holds every target the command can run. A broker target plugs in here:
//
//	r.Register("sluice-embedded", func() bench.Target { return embedded.NewBenchTarget(...) })
func registry() *bench.Registry {
	r := bench.NewRegistry()
	return r
}

func main() {
	var (
		targets     = flag.String("targets", bench.FloorName, "comma-separated targets to run the standard scenarios on")
		budget      = flag.Duration("budget", 5*time.Minute, "total time for the suite, limits included")
		report      = flag.String("report", "", "Markdown file to update between the bench markers (empty: stdout)")
		plots       = flag.String("plots", "", "directory for SVG plots and .hgrm files (empty: none)")
		plotLink    = flag.String("plot-link", "", "path from the report to the plots directory (default -plots)")
		limitsDir   = flag.String("limits-dir", "", "directory for the disk probes (default the temp dir)")
		limitsProbe = flag.Duration("limits-probe", time.Second, "time per physical-limit probe")
		jsonOut     = flag.String("json", "", "write the suite result as JSON to this file")
		quiet       = flag.Bool("quiet", false, "no progress lines")
	)
	flag.Parse()
	if err := run(*targets, *budget, *report, *plots, *plotLink, *limitsDir, *limitsProbe, *jsonOut, *quiet); err != nil {
		slog.Error("sluicebench", "err", err)
		os.Exit(1)
	}
}

func run(targets string, budget time.Duration, report, plots, plotLink, limitsDir string,
	limitsProbe time.Duration, jsonOut string, quiet bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var scenarios []bench.Scenario
	for _, t := range strings.Split(targets, ",") {
		scenarios = append(scenarios, bench.StandardScenarios(strings.TrimSpace(t))...)
	}
	opts := bench.SuiteOptions{
		Registry: registry(), Budget: budget, LimitsDir: limitsDir, LimitsProbe: limitsProbe,
		PlotDir: plots, PlotLink: plotLink,
	}
	if !quiet {
		opts.Progress = os.Stderr
	}
	sr, err := bench.RunSuite(ctx, opts, scenarios)
	if err != nil {
		return err
	}
	if jsonOut != "" {
		f, err := os.Create(jsonOut)
		if err != nil {
			return err
		}
		if err := bench.WriteJSON(f, stepResults(sr)...); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if err := bench.WriteTable(os.Stderr, stepResults(sr)...); err != nil {
		return err
	}
	var md strings.Builder
	if err := bench.WriteMarkdown(&md, sr); err != nil {
		return err
	}
	if report == "" {
		_, err := fmt.Print(md.String())
		return err
	}
	return bench.UpdateMarkedFile(report, []byte(md.String()))
}

// stepResults flattens the suite's runs, target then floor, in the order they ran.
func stepResults(sr *bench.SuiteResult) []*bench.Result {
	var out []*bench.Result
	for _, s := range sr.Scenarios {
		for _, st := range s.Steps {
			out = append(out, st.Target)
			if st.Floor != nil {
				out = append(out, st.Floor)
			}
		}
	}
	return out
}
