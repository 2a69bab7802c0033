package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	"github.com/sluicemq/sluice/bench"
	"github.com/sluicemq/sluice/bench/targets"
	"github.com/sluicemq/sluice/disk"
)

func init() {
	register(command{name: "bench", summary: "measure the broker's throughput and latency (open-loop harness)",
		run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
			return runBench(ctx, args, stdout, stderr)
		}})
}

const benchAbout = `Run one measurement with the open-loop latency harness (docs/bench.md): producers send on a
fixed-rate schedule, every message carries its intended send time, and latency is measured from it to
the consumer (coordinated-omission corrected), recorded in HdrHistogram.

Targets: embedded (the engine in-process, no socket), tcp (engine and server in-process, the Go client
over loopback), addr (the Go client against the broker at --addr, e.g. one started with make run; the
run uses a topic of its own and deletes it), floor (the harness alone: an in-process hand-off over a
channel), spsc (the harness alone: a busy-polled ring.SPSC hand-off, the floor of --spin-consumer), relay
(producer -> a goroutine that only reads and writes the bytes -> consumer over loopback TCP, no broker:
the two-hop limit of the machine; --relay runs it after the target on the same schedule).

--spin-consumer makes the embedded target's consumer busy-poll (engine.LocalOptions.Spin: it never
parks, and appends wake nobody); --floor then runs the spsc floor on the same schedule. It takes a
core for the consumer and, spin-paced (the default --spin at 200k msg/s and more), one for the producer.

Prints a table on stdout, or the full result as JSON with --json; a progress line a second on stderr.`

// benchFlags are the command's own flags, one per bench.Config field it exposes.
type benchFlags struct {
	target      string
	mode        string
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	size        byteSize
	producers   int
	consumers   int
	partitions  int
	durability  string
	batchBytes  byteSize
	linger      time.Duration
	keys        string
	keyCount    int
	spin        time.Duration
	drain       time.Duration
	floor       bool
	relay       bool
	limits      bool
	stalls      bool
	jsonOut     bool
	hgrm        string
	svg         string
	dataDir     string
	cpuProfile  string
	traceFile   string
	noProgress  bool
	flushPeriod time.Duration
	syncSpacing time.Duration
	spinCons    bool
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("bench", "", benchAbout, stdout, stderr)
	var b benchFlags
	b.size = 128
	f.StringVar(&b.target, "target", targets.TCPName, "system under test: embedded, tcp, addr, floor, spsc or relay")
	f.StringVar(&b.mode, "mode", "open", "open (fixed-rate schedule) or closed (send as fast as accepted)")
	f.Float64Var(&b.rate, "rate", 10000, "total scheduled `msgs/s` over all producers (open loop)")
	f.DurationVar(&b.duration, "duration", 5*time.Second, "measured part of the run")
	f.DurationVar(&b.warmup, "warmup", time.Second, "warm-up before the measured part (negative: none)")
	f.Var(&b.size, "size", "payload `bytes` per message, at least 8 (units: 1KiB, 4k)")
	f.IntVar(&b.producers, "producers", 1, "producer goroutines (one connection each over TCP)")
	f.IntVar(&b.consumers, "consumers", 1, "consumer goroutines: 1 reads every partition, else one partition each (at least --partitions of them; those beyond read nothing)")
	f.IntVar(&b.partitions, "partitions", 1, "partitions of the benchmark topic")
	f.StringVar(&b.durability, "durability", bench.DurabilityWritten, "none, written or fsync")
	f.Var(&b.batchBytes, "batch-bytes", "largest producer batch in `bytes` (default: the Go client's, 1 MiB, for tcp, addr and relay; 64 KiB embedded; at least --size)")
	f.DurationVar(&b.linger, "linger", 0, "how long a producer may hold a partial batch (0: send after every burst)")
	f.StringVar(&b.keys, "keys", bench.KeysNone, "key distribution: none, uniform or zipf")
	f.IntVar(&b.keyCount, "key-count", 1024, "distinct keys for uniform and zipf")
	f.DurationVar(&b.spin, "spin", 0, "pacer spins this long before each send (default: a quarter of the interval between a producer's sends, at most 50µs; 50µs, spin only, from 200k msg/s per producer; negative: sleep only)")
	f.DurationVar(&b.drain, "drain", 0, "longest wait for consumers after the schedule ends (default 5s)")
	f.BoolVar(&b.floor, "floor", false, "also run the harness floor on the same schedule, for comparison (spsc with --spin-consumer)")
	f.BoolVar(&b.relay, "relay", false, "also run the loopback relay (the two-hop limit) on the same schedule, for comparison")
	f.BoolVar(&b.stalls, "stalls", false, "also watch for stalls of the whole machine through each measured window (a goroutine sleeping 1ms at a time; wake-ups 2ms or more late, and the hypervisor's steal time) and print them after the table")
	f.BoolVar(&b.limits, "limits", false, "also measure the machine's limits after the runs (loopback TCP, memcpy, and in the --data directory's file system sequential write, fdatasync latency and buffered writes for as long as the run) and print them after the table; not with --json")
	f.BoolVar(&b.spinCons, "spin-consumer", false, "embedded target: the consumer busy-polls instead of parking")
	f.BoolVar(&b.jsonOut, "json", false, "print the results as JSON (histograms included) instead of a table")
	f.StringVar(&b.hgrm, "hgrm", "", "write the latency distribution to `FILE` in HdrHistogram's .hgrm format (µs)")
	f.StringVar(&b.svg, "svg", "", "write a latency-by-percentile plot to `FILE`")
	f.StringVar(&b.dataDir, "data", "", "parent of the in-process targets' temporary data directory (default the temp dir; not a tmpfs for fsync figures)")
	f.DurationVar(&b.flushPeriod, "flush-interval", 0, "in-process engine's group-commit interval (default the engine's)")
	f.DurationVar(&b.syncSpacing, "sync-spacing", 0, "in-process engine's shortest time between the starts of a partition's fdatasyncs, 0..1s (sluiced --sync-spacing; default 0: none)")
	f.StringVar(&b.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to `FILE`")
	f.StringVar(&b.traceFile, "trace", "", "write a Go execution trace of the run to `FILE` (go tool trace): where a latency spike's time went")
	f.BoolVar(&b.noProgress, "quiet", false, "no progress lines on stderr")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if !flagGiven(f, "batch-bytes") {
		b.batchBytes = byteSize(targets.DefaultBatchBytes(b.target, int(b.size)))
	}
	cfg, err := b.config()
	if err != nil {
		return f.usageError("%v", err)
	}
	if !b.noProgress {
		cfg.Progress = stderr
	}

	reg := bench.NewRegistry()
	to := targets.Options{Dir: b.dataDir, Addr: f.g.addr, AuthToken: f.g.token, Timeout: f.g.timeout, FlushInterval: b.flushPeriod, SyncSpacing: b.syncSpacing,
		SpinConsumer: b.spinCons}
	if f.g.verbose {
		to.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	targets.Register(reg, to)
	tg, err := reg.New(cfg.Target)
	if err != nil {
		return f.usageError("--target %q: want embedded, tcp, addr, floor, spsc or relay", cfg.Target)
	}
	if b.spinCons && cfg.Target != targets.EmbeddedName {
		return f.usageError("--spin-consumer is for --target embedded")
	}
	if b.syncSpacing < 0 || b.syncSpacing > disk.MaxSyncSpacing {
		return f.usageError("--sync-spacing %v: want 0..%v", b.syncSpacing, disk.MaxSyncSpacing)
	}
	inProcess := cfg.Target == targets.EmbeddedName || cfg.Target == targets.TCPName
	if !inProcess && (b.syncSpacing != 0 || b.flushPeriod != 0) {
		if cfg.Target == targets.AddrName {
			return f.usageError("--sync-spacing and --flush-interval set the in-process engine (--target embedded or tcp); for --target addr, set them on the broker (sluiced)")
		}
		return f.usageError("--sync-spacing and --flush-interval set the in-process engine (--target embedded or tcp); --target %s has none", cfg.Target)
	}
	if b.limits && b.jsonOut {
		return f.usageError("--limits prints after the table: not with --json")
	}

	if b.cpuProfile != "" {
		pf, err := os.Create(b.cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if b.traceFile != "" {
		tf, err := os.Create(b.traceFile)
		if err != nil {
			return err
		}
		defer tf.Close()
		if err := trace.Start(tf); err != nil {
			return err
		}
		defer trace.Stop()
	}

	res, runErr := bench.Run(ctx, tg, cfg)
	if res == nil {
		return runErr
	}
	if inProcess {
		res.Settings = engineSettings(&b)
	}
	results := []*bench.Result{res}
	if b.floor && runErr == nil && cfg.Target != bench.FloorName && cfg.Target != bench.SPSCName {
		fc := cfg
		var floor bench.Target = bench.NewFloorTarget()
		if b.spinCons {
			floor = bench.NewSPSCFloorTarget() // the same hand-off without the broker: busy-polled
		}
		fc.Target = floor.Name()
		fr, err := bench.Run(ctx, floor, fc)
		if fr != nil {
			results = append(results, fr)
		}
		runErr = errors.Join(runErr, err)
	}
	if b.relay && runErr == nil && cfg.Target != bench.RelayName {
		rc := cfg
		rc.Target = bench.RelayName
		rr, err := bench.Run(ctx, bench.NewRelayTarget(), rc)
		if rr != nil {
			results = append(results, rr)
		}
		runErr = errors.Join(runErr, err)
	}
	if err := writeBenchOutputs(b, results, stdout); err != nil {
		return errors.Join(runErr, err)
	}
	if b.limits && runErr == nil {
		dir := b.dataDir
		if dir == "" {
			dir = os.TempDir()
		}
		lim, err := bench.MeasureLimits(ctx, bench.LimitsOptions{Dir: dir, Buffered: cfg.Duration, BufferedWarmup: max(cfg.Warmup, 0)})
		if err != nil {
			return fmt.Errorf("limits: %w", err)
		}
		fmt.Fprintln(stdout, lim.Summary())
	}
	if runErr != nil {
		return runErr
	}
	if res.Lost > 0 || res.Unsent > 0 {
		return fmt.Errorf("the target did not sustain %s msg/s: %d lost, %d unsent", rateLabel(cfg), res.Lost, res.Unsent)
	}
	return nil
}

// config turns the flags into a bench.Config and validates it.
func (b *benchFlags) config() (bench.Config, error) {
	cfg := bench.Config{
		Target:        b.target,
		Rate:          b.rate,
		Duration:      b.duration,
		Warmup:        b.warmup,
		PayloadSize:   int(b.size),
		KeyDist:       b.keys,
		KeyCount:      b.keyCount,
		Producers:     b.producers,
		Consumers:     b.consumers,
		Partitions:    b.partitions,
		Durability:    b.durability,
		BatchBytes:    int(b.batchBytes),
		Linger:        b.linger,
		SpinThreshold: b.spin,
		DrainTimeout:  b.drain,
		WatchStalls:   b.stalls,
	}
	switch strings.ToLower(b.mode) {
	case "open", string(bench.OpenLoop):
		cfg.Mode = bench.OpenLoop
	case "closed", string(bench.ClosedLoop):
		cfg.Mode = bench.ClosedLoop
		cfg.Rate = 0
	default:
		return cfg, fmt.Errorf("--mode %q: want open or closed", b.mode)
	}
	if b.warmup == 0 {
		cfg.Warmup = -1 // the flag's 0 means none; Config's 0 means its default
	}
	// Config's zero values mean its defaults; the flags carry the defaults, so a 0 here was typed.
	switch {
	case b.size == 0:
		return cfg, fmt.Errorf("--size 0: at least 8 bytes (the intended send time takes 8)")
	case b.batchBytes == 0:
		return cfg, fmt.Errorf("--batch-bytes 0: at least the payload size")
	case b.keyCount == 0:
		return cfg, fmt.Errorf("--key-count 0: at least 1")
	case cfg.Mode == bench.OpenLoop && b.rate == 0:
		return cfg, fmt.Errorf("--rate 0: more than 0 msgs/s (--mode closed sends as fast as it is accepted)")
	}
	if b.duration <= 0 {
		return cfg, fmt.Errorf("--duration must be positive")
	}
	if b.producers < 1 || b.consumers < 1 || b.partitions < 1 {
		return cfg, fmt.Errorf("--producers, --consumers and --partitions must be at least 1")
	}
	return cfg, cfg.Validate()
}

// writeBenchOutputs prints the table or JSON and writes the .hgrm and SVG files asked for.
func writeBenchOutputs(b benchFlags, results []*bench.Result, stdout io.Writer) error {
	var err error
	if b.jsonOut {
		err = bench.WriteJSON(stdout, results...)
	} else {
		err = bench.WriteTable(stdout, results...)
		for _, r := range results {
			if err == nil && r.Stalls != nil {
				_, err = fmt.Fprintln(stdout, r.Stalls.Summary(r.Target))
			}
		}
	}
	if err != nil {
		return err
	}
	res := results[0]
	if b.hgrm != "" {
		if err := writeFileWith(b.hgrm, func(w io.Writer) error { return bench.WriteHGRM(w, res.Hist, 1e3) }); err != nil {
			return err
		}
	}
	if b.svg != "" {
		var series []bench.Series
		for _, r := range results {
			name := fmt.Sprintf("%s @ %s msg/s", r.Target, rateLabel(r.Config))
			if (r.Target == bench.FloorName || r.Target == bench.SPSCName) && res.Target != r.Target {
				name = "harness floor (" + r.Target + ") @ " + rateLabel(r.Config) + " msg/s"
			}
			series = append(series, bench.Series{Name: name, Hist: r.Hist})
		}
		c := res.Config
		title := fmt.Sprintf("%s, %d B, %s: latency by percentile", res.Target, c.PayloadSize, c.Durability)
		if err := writeFileWith(b.svg, func(w io.Writer) error { return bench.WriteSVG(w, title, series...) }); err != nil {
			return err
		}
	}
	return nil
}

func rateLabel(c bench.Config) string {
	if c.Mode == bench.ClosedLoop {
		return "max"
	}
	return fmt.Sprintf("%g", c.Rate)
}

func writeFileWith(path string, write func(io.Writer) error) error {
	fl, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(fl); err != nil {
		fl.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := fl.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// engineSettings names the in-process engine's settings given on the command line, by flag, for the
// result (Result.Settings): runs that differ only in them can be told apart afterwards. nil when none.
func engineSettings(b *benchFlags) map[string]string {
	var m map[string]string
	set := func(flag string, d time.Duration) {
		if d != 0 {
			if m == nil {
				m = map[string]string{}
			}
			m[flag] = d.String()
		}
	}
	set("flush-interval", b.flushPeriod)
	set("sync-spacing", b.syncSpacing)
	return m
}
