// Command sluicebench runs the benchmark suite and writes the report.
//
//	go run ./bench/cmd/sluicebench -targets floor -budget 5m \
//	    -report docs/benchmarks.md -plots docs/bench -plot-link bench -limits-dir ./data
//
// Every named target runs bench.StandardScenarios, or with -suite broker the broker suite
// (targets.Suite: 100 B and 1 KiB records, written and fsync, rate sweeps and a closed-loop maximum).
// The broker targets embedded, tcp and addr are registered in registry below. `make bench` runs
//
//	go run ./bench/cmd/sluicebench -suite broker -targets embedded,tcp -budget 8m \
//	    -report docs/benchmarks.md -plots docs/bench -plot-link bench -limits-dir ./data
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/sluicemq/sluice/bench"
	"github.com/sluicemq/sluice/bench/targets"
)

// registry holds every target the command can run: the floor and the broker targets (embedded, tcp,
// addr), whose data directories go under dataDir.
func registry(dataDir, addr string) *bench.Registry {
	r := bench.NewRegistry()
	targets.Register(r, targets.Options{Dir: dataDir, Addr: addr})
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
		suite       = flag.String("suite", "standard", "scenarios per target: standard (bench.StandardScenarios) or broker (targets.Suite)")
		dataDir     = flag.String("data", "", "parent of the broker targets' data directories (default -limits-dir, else the temp dir)")
		addr        = flag.String("addr", "127.0.0.1:7450", "broker address for the addr target")
		cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the whole suite to this file")
	)
	flag.Parse()
	if *dataDir == "" {
		*dataDir = *limitsDir
	}
	err := withProfile(*cpuProfile, func() error {
		return run(*targets, *suite, *budget, *report, *plots, *plotLink, *limitsDir, *limitsProbe, *jsonOut, *quiet,
			registry(*dataDir, *addr))
	})
	if err != nil {
		slog.Error("sluicebench", "err", err)
		os.Exit(1)
	}
}

// withProfile runs fn under a CPU profile written to path (empty: no profile).
func withProfile(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	err = fn()
	pprof.StopCPUProfile()
	return errors.Join(err, f.Close())
}

func run(targetList, suite string, budget time.Duration, report, plots, plotLink, limitsDir string,
	limitsProbe time.Duration, jsonOut string, quiet bool, reg *bench.Registry) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var names []string
	for _, t := range strings.Split(targetList, ",") {
		names = append(names, strings.TrimSpace(t))
	}
	var scenarios []bench.Scenario
	switch suite {
	case "standard":
		for _, t := range names {
			scenarios = append(scenarios, bench.StandardScenarios(t)...)
		}
	case "broker":
		scenarios = targets.Suite(names...)
	default:
		return fmt.Errorf("unknown -suite %q (want standard or broker)", suite)
	}
	opts := bench.SuiteOptions{
		Registry: reg, Budget: budget, LimitsDir: limitsDir, LimitsProbe: limitsProbe,
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
	writeHeadline(&md, sr)
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
