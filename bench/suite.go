package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Scenario is one entry of a suite: a target under one configuration, run once or swept over rates.
type Scenario struct {
	// Name labels the scenario in the report and names its plot file.
	Name string `json:"name"`
	// Config names the target (Config.Target, a Registry name) and sets the mode, rate, payload size,
	// durability, producers, keys and batching. Duration, Warmup, DrainTimeout and Progress are set by
	// the suite from its budget.
	Config Config `json:"config"`
	// Sweep (open loop only) doubles the rate after every step whose p99 stays within P99Limit with
	// nothing lost or unsent, for at most MaxSteps steps; the first step that breaks ends the sweep.
	Sweep    bool          `json:"sweep"`
	P99Limit time.Duration `json:"p99_limit_ns"` // default 10ms
	MaxSteps int           `json:"max_steps"`    // default 6
	// NoFloor skips the floor run that otherwise follows every step on the same schedule.
	NoFloor bool `json:"no_floor"`
}

func (s Scenario) withDefaults() Scenario {
	if s.P99Limit == 0 {
		s.P99Limit = 10 * time.Millisecond
	}
	if s.MaxSteps == 0 {
		s.MaxSteps = 6
	}
	if !s.Sweep || s.Config.Mode == ClosedLoop {
		s.Sweep, s.MaxSteps = false, 1
	}
	if s.Name == "" {
		s.Name = fmt.Sprintf("%s-%s-%dB-%s", s.Config.Target, s.Config.WithDefaults().Mode,
			s.Config.WithDefaults().PayloadSize, s.Config.WithDefaults().Durability)
	}
	return s
}

// StandardScenarios is the suite docs/benchmarks.md reports for one target: open-loop rate sweeps at
// each durability level and a closed-loop maximum.
func StandardScenarios(target string) []Scenario {
	base := Config{Target: target, PayloadSize: 128}
	with := func(f func(*Config)) Config { c := base; f(&c); return c }
	return []Scenario{
		{Name: target + "-128B-none", Config: with(func(c *Config) { c.Rate = 10000 }), Sweep: true},
		{Name: target + "-1KiB-written", Config: with(func(c *Config) {
			c.Rate, c.PayloadSize, c.Durability = 5000, 1024, DurabilityWritten
		}), Sweep: true},
		{Name: target + "-128B-fsync", Config: with(func(c *Config) {
			c.Rate, c.Durability = 1000, DurabilityFsync
		}), Sweep: true, MaxSteps: 5},
		{Name: target + "-4KiB-max", Config: with(func(c *Config) {
			c.Mode, c.PayloadSize, c.BatchBytes = ClosedLoop, 4096, 256<<10
		})},
	}
}

// SuiteOptions configures RunSuite.
type SuiteOptions struct {
	// Registry resolves Config.Target; nil means NewRegistry() (the floor target only).
	Registry *Registry
	// Budget is the suite's total wall time, limits included. Every run gets an equal share of what the
	// limits leave; runs that would start past the budget are skipped and reported. Default 5m.
	Budget time.Duration
	// LimitsDir is where the disk probes write: the broker's data disk. Default os.TempDir().
	LimitsDir string
	// LimitsProbe is the time of each limit probe. Default 1s.
	LimitsProbe time.Duration
	// PlotDir receives one SVG (and one .hgrm per target and floor) per scenario; empty writes none.
	PlotDir string
	// PlotLink is the path from the Markdown report to PlotDir, used in image links. Default PlotDir.
	PlotLink string
	// Progress receives progress lines; nil is quiet.
	Progress io.Writer
}

// SuiteResult is everything a suite measured.
type SuiteResult struct {
	Started   time.Time        `json:"started"`
	Elapsed   time.Duration    `json:"elapsed_ns"`
	Host      string           `json:"host"` // GOOS/GOARCH, CPUs, Go version
	Limits    Limits           `json:"limits"`
	LimitsErr string           `json:"limits_err,omitempty"`
	Scenarios []ScenarioResult `json:"scenarios"`
	PlotLink  string           `json:"plot_link"`
}

// ScenarioResult is one scenario's steps, in the order run.
type ScenarioResult struct {
	Scenario Scenario `json:"scenario"`
	Steps    []Step   `json:"steps"`
	// Broke is set when a step exceeded P99Limit or dropped messages; that step is the last one.
	Broke bool `json:"broke"`
	// Skipped counts steps not run because the budget ran out.
	Skipped int `json:"skipped"`
	// Plot is the SVG's file name inside PlotDir, if written.
	Plot string `json:"plot,omitempty"`
	Err  string `json:"err,omitempty"`
}

// Step is one rate of a scenario: the target and the floor on the same schedule.
type Step struct {
	Target *Result `json:"target"`
	Floor  *Result `json:"floor,omitempty"`
}

// best returns the highest-rate step that held the limit, or the first step if none did.
func (sr *ScenarioResult) best() *Step {
	if len(sr.Steps) == 0 {
		return nil
	}
	n := len(sr.Steps)
	if sr.Broke && n > 1 {
		n--
	}
	return &sr.Steps[n-1]
}

// suiteOverhead is the time a run takes beyond warm-up and duration (open, drain, close), assumed when
// dividing the budget.
const suiteOverhead = 300 * time.Millisecond

// RunSuite measures the physical limits, then runs every scenario within opts.Budget, and writes the plots.
// It returns an error only for problems outside the measurements (an unknown target, an unwritable plot
// directory); a failed run is recorded in its ScenarioResult.
func RunSuite(ctx context.Context, opts SuiteOptions, scenarios []Scenario) (*SuiteResult, error) {
	if opts.Registry == nil {
		opts.Registry = NewRegistry()
	}
	if opts.Budget <= 0 {
		opts.Budget = 5 * time.Minute
	}
	if opts.LimitsDir == "" {
		opts.LimitsDir = os.TempDir()
	}
	if opts.LimitsProbe <= 0 {
		opts.LimitsProbe = time.Second
	}
	if opts.PlotLink == "" {
		opts.PlotLink = opts.PlotDir
	}
	scenarios = append([]Scenario(nil), scenarios...) // defaults are filled in on a copy
	runs := 0
	for i, s := range scenarios {
		s = s.withDefaults()
		scenarios[i] = s
		if _, err := opts.Registry.New(s.Config.Target); err != nil {
			return nil, err
		}
		if err := s.Config.Validate(); err != nil {
			return nil, fmt.Errorf("bench: scenario %s: %w", s.Name, err)
		}
		perStep := 2
		if s.NoFloor {
			perStep = 1
		}
		runs += perStep * s.MaxSteps
	}
	if opts.PlotDir != "" {
		if err := os.MkdirAll(opts.PlotDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: plot dir: %w", err)
		}
	}

	started := time.Now()
	deadline := started.Add(opts.Budget)
	res := &SuiteResult{
		Started:  started.UTC(),
		Host:     fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
		PlotLink: opts.PlotLink,
	}
	lim, err := MeasureLimits(ctx, LimitsOptions{Dir: opts.LimitsDir, Probe: opts.LimitsProbe})
	res.Limits = lim
	if err != nil {
		res.LimitsErr = err.Error()
		slog.Warn("bench: limits", "err", err)
	}

	// Share what is left equally between the runs: a fifth warm-up, the rest measured.
	perRun := (time.Until(deadline) - time.Duration(runs)*suiteOverhead) / time.Duration(max(runs, 1))
	if perRun < 500*time.Millisecond {
		slog.Warn("bench: budget too small for the scenarios; runs get 500ms each", "budget", opts.Budget, "runs", runs)
		perRun = 500 * time.Millisecond
	}
	timing := func(c Config) Config {
		c.Warmup = perRun / 5
		c.Duration = perRun - c.Warmup
		c.DrainTimeout = max(time.Second, c.Duration/2)
		c.Progress = opts.Progress
		return c
	}

	for _, s := range scenarios {
		sr := ScenarioResult{Scenario: s}
		cfg := timing(s.Config)
		for step := 0; step < s.MaxSteps; step++ {
			if ctx.Err() != nil || time.Now().Add(perRun).After(deadline.Add(perRun/2)) {
				sr.Skipped = s.MaxSteps - step
				break
			}
			st, err := runStep(ctx, opts.Registry, cfg, !s.NoFloor)
			if st.Target != nil {
				sr.Steps = append(sr.Steps, st)
			}
			if err != nil {
				sr.Err = err.Error()
				sr.Broke = true
				slog.Warn("bench: scenario step failed", "scenario", s.Name, "rate", cfg.Rate, "err", err)
				break
			}
			t := st.Target
			if t.Latency.P99 > s.P99Limit || t.Lost > 0 || t.Unsent > 0 {
				sr.Broke = s.Sweep
				break
			}
			cfg.Rate *= 2
		}
		if opts.PlotDir != "" && len(sr.Steps) > 0 {
			if sr.Plot, err = writeScenarioPlots(opts.PlotDir, &sr); err != nil {
				return nil, err
			}
		}
		res.Scenarios = append(res.Scenarios, sr)
	}
	res.Elapsed = time.Since(started)
	return res, nil
}

func runStep(ctx context.Context, reg *Registry, cfg Config, floor bool) (Step, error) {
	var st Step
	t, err := reg.New(cfg.Target)
	if err != nil {
		return st, err
	}
	st.Target, err = Run(ctx, t, cfg)
	if err != nil || !floor {
		return st, err
	}
	fc := cfg
	fc.Target = FloorName
	st.Floor, err = Run(ctx, NewFloorTarget(), fc)
	return st, err
}

// writeScenarioPlots writes <name>.svg with every step of the target and the floor at the best step,
// and <name>.hgrm and <name>-floor.hgrm for the best step. It returns the SVG's file name.
func writeScenarioPlots(dir string, sr *ScenarioResult) (string, error) {
	stem := fileStem(sr.Scenario.Name)
	var series []Series
	for _, st := range sr.Steps {
		series = append(series, Series{Name: fmt.Sprintf("%s @ %s msg/s", st.Target.Target, rateString(st.Target.Config)), Hist: st.Target.Hist})
	}
	best := sr.best()
	if best.Floor != nil {
		series = append(series, Series{Name: fmt.Sprintf("harness floor @ %s msg/s", rateString(best.Floor.Config)), Hist: best.Floor.Hist})
	}
	var svg bytes.Buffer
	if err := WriteSVG(&svg, sr.Scenario.Name+": latency by percentile", series...); err != nil {
		return "", err
	}
	files := map[string]*bytes.Buffer{stem + ".svg": &svg}
	var h bytes.Buffer
	if err := WriteHGRM(&h, best.Target.Hist, 1e3); err != nil {
		return "", err
	}
	files[stem+".hgrm"] = &h
	if best.Floor != nil {
		var f bytes.Buffer
		if err := WriteHGRM(&f, best.Floor.Hist, 1e3); err != nil {
			return "", err
		}
		files[stem+"-floor.hgrm"] = &f
	}
	for name, b := range files {
		if err := writeFileAtomic(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return "", err
		}
	}
	return stem + ".svg", nil
}

func fileStem(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '-'
	}, name)
}

// WriteMarkdown writes the suite's report: the limits, one table per scenario with the floor beside
// every step, the ratios against the limits, and links to the plots.
func WriteMarkdown(w io.Writer, sr *SuiteResult) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "### Harness run, %s\n\n", sr.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "%s; the suite took %s. Latency is open-loop (from the intended send time) unless the mode says "+
		"closed-loop; every step is followed by the harness floor (in-process hand-off, no broker) on the same schedule. "+
		"See docs/bench.md for how to read these.\n\n", sr.Host, sr.Elapsed.Round(time.Second))

	l := sr.Limits
	b.WriteString("#### Physical limits (same run)\n\n| limit | value |\n|---|---:|\n")
	fmt.Fprintf(&b, "| loopback TCP, 256 KiB writes | %.0f MB/s |\n", l.LoopbackMBps)
	fmt.Fprintf(&b, "| loopback TCP, 128 B writes | %.0f MB/s |\n", l.LoopbackSmallMBps)
	fmt.Fprintf(&b, "| memcpy, 32 MiB buffers | %.0f MB/s |\n", l.MemcpyMBps)
	if l.Dir != "" {
		fmt.Fprintf(&b, "| disk sequential write (`%s`) | %.0f MB/s |\n", l.Dir, l.DiskWriteMBps)
		fmt.Fprintf(&b, "| 4 KiB write + fdatasync p50 / p99 (%d syncs) | %s / %s |\n",
			l.FdatasyncN, FormatLatency(l.FdatasyncP50), FormatLatency(l.FdatasyncP99))
	}
	if sr.LimitsErr != "" {
		fmt.Fprintf(&b, "\nLimit probes reported: `%s`\n", sr.LimitsErr)
	}
	b.WriteString("\n")

	for i := range sr.Scenarios {
		s := &sr.Scenarios[i]
		c := s.Scenario.Config.WithDefaults()
		fmt.Fprintf(&b, "#### %s\n\n", s.Scenario.Name)
		fmt.Fprintf(&b, "Target `%s`, %s, %d B payload, durability %s, %d producer(s), %d consumer(s), %d partition(s), keys %s",
			c.Target, c.Mode, c.PayloadSize, c.Durability, c.Producers, c.Consumers, c.Partitions, c.KeyDist)
		if s.Scenario.Sweep {
			fmt.Fprintf(&b, "; rate doubled until p99 exceeds %s (at most %d steps)", FormatLatency(s.Scenario.P99Limit), s.Scenario.MaxSteps)
		}
		if len(s.Steps) > 0 {
			fmt.Fprintf(&b, "; %s measured per step after %s warm-up", s.Steps[0].Target.Config.Duration.Round(time.Millisecond), s.Steps[0].Target.Config.Warmup.Round(time.Millisecond))
		}
		b.WriteString(".\n\n")
		b.WriteString("| run | rate | msgs/s | MB/s | p50 | p90 | p99 | p99.9 | p99.99 | max | lost | unsent |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, st := range s.Steps {
			for _, r := range []*Result{st.Target, st.Floor} {
				if r == nil {
					continue
				}
				name := r.Target
				if r.Target == FloorName {
					name = "floor"
				}
				fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f | %s | %s | %s | %s | %s | %s | %d | %d |\n",
					name, rateString(r.Config), r.Rate, r.MBps, FormatLatency(r.Latency.P50), FormatLatency(r.Latency.P90),
					FormatLatency(r.Latency.P99), FormatLatency(r.Latency.P999), FormatLatency(r.Latency.P9999),
					FormatLatency(r.Latency.Max), r.Lost, r.Unsent)
			}
		}
		b.WriteString("\n")
		if best := s.best(); best != nil {
			t := best.Target
			switch {
			case s.Scenario.Sweep && s.Broke:
				fmt.Fprintf(&b, "- Highest rate within the p99 limit: %s msg/s", rateString(t.Config))
				if len(s.Steps) == 1 {
					b.WriteString(" (none: the first step broke)")
				}
				b.WriteString(".\n")
			case s.Scenario.Sweep:
				fmt.Fprintf(&b, "- p99 held up to the last step, %s msg/s; the limit was not reached.\n", rateString(t.Config))
			}
			if l.LoopbackMBps > 0 {
				fmt.Fprintf(&b, "- Produce-to-consume %.2f MB/s = %.4f of loopback TCP bandwidth.\n", t.MBps, t.MBps/l.LoopbackMBps)
			}
			if c.Durability == DurabilityFsync && l.FdatasyncP99 > 0 {
				fmt.Fprintf(&b, "- fsync-durable p99 %s = %.2f × raw fdatasync p99 (%s).\n", FormatLatency(t.Latency.P99),
					float64(t.Latency.P99)/float64(l.FdatasyncP99), FormatLatency(l.FdatasyncP99))
			}
			if best.Floor != nil && best.Floor.Latency.P99 > 0 {
				fmt.Fprintf(&b, "- p99 over the harness floor's: %.1f×; pacer wake-up error p99 %s.\n",
					float64(t.Latency.P99)/float64(best.Floor.Latency.P99), FormatLatency(t.Pacer.P99))
			}
		}
		if s.Skipped > 0 {
			fmt.Fprintf(&b, "- %d step(s) skipped: the suite's budget ran out.\n", s.Skipped)
		}
		if s.Err != "" {
			fmt.Fprintf(&b, "- Error: `%s`\n", s.Err)
		}
		if s.Plot != "" {
			link := s.Plot
			if sr.PlotLink != "" {
				link = strings.TrimSuffix(filepath.ToSlash(sr.PlotLink), "/") + "/" + s.Plot
			}
			fmt.Fprintf(&b, "\n![%s latency by percentile](%s)\n", s.Scenario.Name, link)
		}
		b.WriteString("\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// The markers that delimit the generated part of a report file.
const (
	BeginMarker = "<!-- bench:begin -->"
	EndMarker   = "<!-- bench:end -->"
)

// ErrMarkers is returned when a file holds the markers out of order or more than once.
var ErrMarkers = errors.New("bench: report markers malformed")

// UpdateMarkedFile replaces what lies between BeginMarker and EndMarker in the file at path with body,
// keeping every byte outside the markers. A file without the markers gets them appended at its end; a
// missing file is created. The file is replaced atomically (temp file, fsync, rename, directory fsync).
func UpdateMarkedFile(path string, body []byte) error {
	old, err := os.ReadFile(path)
	mode := fs.FileMode(0o644)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return fmt.Errorf("bench: read report: %w", err)
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	out, err := spliceMarked(old, body)
	if err != nil {
		return fmt.Errorf("%w in %s", err, path)
	}
	return writeFileAtomic(path, out, mode)
}

// spliceMarked returns doc with the text between the markers replaced by body.
func spliceMarked(doc, body []byte) ([]byte, error) {
	begin, end := []byte(BeginMarker), []byte(EndMarker)
	nb, ne := bytes.Count(doc, begin), bytes.Count(doc, end)
	var out bytes.Buffer
	block := func() {
		out.Write(begin)
		out.WriteByte('\n')
		out.Write(body)
		if len(body) > 0 && body[len(body)-1] != '\n' {
			out.WriteByte('\n')
		}
		out.Write(end)
	}
	switch {
	case nb == 0 && ne == 0:
		out.Write(doc)
		if len(doc) > 0 && !bytes.HasSuffix(doc, []byte("\n")) {
			out.WriteByte('\n')
		}
		if len(doc) > 0 {
			out.WriteByte('\n')
		}
		block()
		out.WriteByte('\n')
	case nb == 1 && ne == 1:
		i, j := bytes.Index(doc, begin), bytes.Index(doc, end)
		if j < i {
			return nil, ErrMarkers
		}
		out.Write(doc[:i])
		block()
		out.Write(doc[j+len(end):])
	default:
		return nil, ErrMarkers
	}
	return out.Bytes(), nil
}

// writeFileAtomic writes data to path through a temp file in the same directory: write, fsync, rename,
// fsync the directory. A reader sees the old file or the new one, never a torn one.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("bench: sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("bench: sync dir %s: %w", dir, err)
	}
	return nil
}
