package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is the outcome of one run. Latencies are nanoseconds; the histograms hold nanoseconds too.
type Result struct {
	Target string    `json:"target"`
	Config Config    `json:"config"`
	Start  time.Time `json:"start"` // wall clock at the schedule's origin

	Scheduled int64 `json:"scheduled"` // messages the schedule held (closed loop: = Sent)
	Sent      int64 `json:"sent"`
	Received  int64 `json:"received"`
	Measured  int64 `json:"measured"` // received and recorded (after warm-up)
	Unsent    int64 `json:"unsent"`   // scheduled but dropped: the target fell more than DrainTimeout behind
	Lost      int64 `json:"lost"`     // sent but not received before the drain timeout
	Late      int64 `json:"late"`     // sent in a burst because they were already due
	Clamped   int64 `json:"clamped"`  // latencies above MaxLatency, recorded as MaxLatency

	// Elapsed is the measured window: Duration, stretched to the last measured receipt if later.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Rate is Measured / Elapsed in messages per second; MBps is Rate × PayloadSize / 1e6.
	Rate float64 `json:"rate_msgs"`
	MBps float64 `json:"mb_per_s"`

	// Latency is measured from the intended send time (closed loop: the actual send time).
	Latency Percentiles `json:"latency"`
	// Uncorrected is measured from the actual send time, what a closed-loop tool would report for the same
	// messages. Empty when PayloadSize < StampSize.
	Uncorrected Percentiles `json:"uncorrected"`
	// Pacer is the pacer's own error: wake-up time minus intended time, once per wait (open loop only).
	Pacer Percentiles `json:"pacer"`
	// Stalls are the stall watcher's late wake-ups over the measured window (Config.WatchStalls);
	// nil when not watched.
	Stalls *Stalls `json:"stalls,omitempty"`
	// Settings are the system under test's settings the run was given, by flag name and value
	// (`sluice bench` records the in-process engine's --flush-interval and --sync-spacing); nil for
	// none. Run leaves it to its caller.
	Settings map[string]string `json:"settings,omitempty"`

	// The merged histograms, in nanoseconds. JSON carries them V2-encoded (see MarshalJSON).
	Hist            *hdr.Histogram `json:"-"`
	UncorrectedHist *hdr.Histogram `json:"-"`
	PacerHist       *hdr.Histogram `json:"-"`
}

// Percentiles summarises a latency histogram, in nanoseconds.
type Percentiles struct {
	Count int64         `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p99_9_ns"`
	P9999 time.Duration `json:"p99_99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Summarize reads the standard percentiles off h.
func Summarize(h *hdr.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	v := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9, 99.99})
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  time.Duration(h.Mean()),
		P50:   time.Duration(v[0]),
		P90:   time.Duration(v[1]),
		P99:   time.Duration(v[2]),
		P999:  time.Duration(v[3]),
		P9999: time.Duration(v[4]),
		Max:   time.Duration(h.Max()),
	}
}

// Run opens t, runs one measurement as cfg describes and closes t. The result is returned along with any
// error from the target; a result whose Lost or Unsent is not zero is valid but means the target did not
// keep up. The context cancels the run early.
func Run(ctx context.Context, t Target, cfg Config) (*Result, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Target == "" {
		cfg.Target = t.Name()
	}
	if err := t.Open(ctx, cfg); err != nil {
		return nil, fmt.Errorf("bench: open %s: %w", t.Name(), err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = t.Close()
		}
	}()

	recs := make([]*recorder, cfg.Consumers)
	for i := range recs {
		recs[i] = newRecorder(cfg.MaxLatency)
		recs[i].from.Store(1<<63 - 1) // nothing is recorded until the schedule is set
		if err := t.Consume(i, recs[i].deliver); err != nil {
			return nil, fmt.Errorf("bench: %s consumer %d: %w", t.Name(), i, err)
		}
	}
	senders := make([]*sender, cfg.Producers)
	for i := range senders {
		senders[i] = newSender(i, t.Producer(i), cfg)
	}

	// Collect now what opening the target and allocating the histograms left, so that the heap's
	// next goal is twice what is live with the histograms in it: a collection owed from the set-up
	// would otherwise fall in the measured window (a target or floor that allocates nothing per
	// message still crosses a goal set before its histograms, a few MB, with the progress lines),
	// and its stop-the-world pauses stall the spinning goroutines of a busy-poll run for a
	// millisecond or more. A target's own garbage is still collected whenever it is due.
	runtime.GC()

	// The schedule starts a little after now so every producer goroutine is running at its origin.
	const lead = 2 * time.Millisecond
	start := Now() + int64(lead)
	wallStart := time.Now().Add(lead).UTC()
	from := start + int64(cfg.Warmup)
	end := from + int64(cfg.Duration)
	for _, r := range recs {
		r.from.Store(from)
	}

	var stop atomic.Bool
	stopWatch := context.AfterFunc(ctx, func() { stop.Store(true) })
	defer stopWatch()
	var stalls <-chan Stalls
	if cfg.WatchStalls {
		stalls = watchStalls(from, end, stop.Load)
	}

	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.Mode == ClosedLoop {
				s.waitUntil(start, -1)
				s.runClosed(end, &stop)
				return
			}
			iv := cfg.interval()
			s.runOpen(schedule{
				start:    start,
				end:      end,
				giveUp:   end + int64(cfg.DrainTimeout),
				interval: iv,
				offset:   float64(s.id) * iv / float64(cfg.Producers),
				spin:     int64(cfg.SpinThreshold),
				flush:    cfg.Linger == 0,
			}, &stop)
		}()
	}

	sent := func() (n int64) {
		for _, s := range senders {
			n += s.sent.Load()
		}
		return n
	}
	received := func() (n int64) {
		for _, r := range recs {
			n += r.received.Load()
		}
		return n
	}
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if cfg.Progress != nil {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			progress(cfg, t.Name(), start, sent, received, progressDone)
		}()
	}

	wg.Wait()
	// Drain: wait for the consumers to catch up with every message sent.
	total := sent()
	deadline := time.Now().Add(cfg.DrainTimeout)
	for received() < total && time.Now().Before(deadline) && !stop.Load() {
		time.Sleep(time.Millisecond)
	}
	close(progressDone)
	progressWG.Wait()

	closed = true
	closeErr := t.Close()

	res := &Result{Target: t.Name(), Config: cfg, Start: wallStart}
	res.Config.Progress = nil // the writer is the caller's; the result outlives the run
	res.Hist = newHist(cfg.MaxLatency)
	res.UncorrectedHist = newHist(cfg.MaxLatency)
	res.PacerHist = newHist(cfg.MaxLatency)
	var errs []error
	var lastRecv int64
	for _, r := range recs {
		res.Received += r.received.Load()
		res.Measured += r.measured
		res.Clamped += r.clamped
		res.Hist.Merge(r.hist)
		if cfg.PayloadSize >= StampSize {
			res.UncorrectedHist.Merge(r.raw)
		}
		lastRecv = max(lastRecv, r.lastRecv)
		if r.short > 0 {
			errs = append(errs, fmt.Errorf("bench: %s delivered %d payloads under 8 bytes", t.Name(), r.short))
		}
	}
	for _, s := range senders {
		res.Scheduled += s.sched
		res.Sent += s.sent.Load()
		res.Unsent += s.unsent
		res.Late += s.late
		res.PacerHist.Merge(s.wake)
		if s.err != nil {
			errs = append(errs, fmt.Errorf("bench: %s producer %d: %w", t.Name(), s.id, s.err))
		}
	}
	res.Lost = max(0, res.Sent-res.Received)
	res.Elapsed = max(cfg.Duration, time.Duration(lastRecv-from))
	if res.Elapsed > 0 {
		res.Rate = float64(res.Measured) / res.Elapsed.Seconds()
	}
	res.MBps = res.Rate * float64(cfg.PayloadSize) / 1e6
	res.Latency = Summarize(res.Hist)
	res.Uncorrected = Summarize(res.UncorrectedHist)
	res.Pacer = Summarize(res.PacerHist)
	if stalls != nil {
		st := <-stalls
		res.Stalls = &st
	}
	if closeErr != nil {
		errs = append(errs, fmt.Errorf("bench: close %s: %w", t.Name(), closeErr))
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	if res.Lost > 0 || res.Unsent > 0 {
		slog.Warn("bench: target did not keep up", "target", t.Name(), "rate", cfg.Rate,
			"lost", res.Lost, "unsent", res.Unsent)
	}
	return res, errors.Join(errs...)
}

// progress writes one line per interval until done is closed.
func progress(cfg Config, name string, start int64, sent, received func() int64, done <-chan struct{}) {
	tick := time.NewTicker(cfg.ProgressInterval)
	defer tick.Stop()
	var lastSent, lastRecv int64
	last := Now()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		now := Now()
		s, r := sent(), received()
		dt := float64(now-last) / 1e9
		// The time shown counts from the start of the phase: a measured part of --duration 3s
		// shows 1.0s to 3.0s, whatever the warm-up.
		phase, from := "measure", start+int64(cfg.Warmup)
		switch {
		case now < start+int64(cfg.Warmup):
			phase, from = "warm-up", start
		case now >= start+int64(cfg.Warmup+cfg.Duration):
			phase, from = "drain", start+int64(cfg.Warmup+cfg.Duration)
		}
		_, err := fmt.Fprintf(cfg.Progress, "bench %s %s %5.1fs: sent %d recv %d, %.0f msg/s sent, %.0f msg/s recv\n",
			name, phase, float64(now-from)/1e9, s, r, float64(s-lastSent)/dt, float64(r-lastRecv)/dt)
		if err != nil {
			return
		}
		lastSent, lastRecv, last = s, r, now
	}
}
