package bench

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// stallTarget is the floor target with one stall: the stallAt-th Send (1-based) sleeps for stall before
// handing its message over, as a broker does during a GC pause or a slow fsync.
type stallTarget struct {
	*FloorTarget
	stallAt int64
	stall   time.Duration
	sends   atomic.Int64
}

func (t *stallTarget) Name() string { return "stall" }

func (t *stallTarget) Producer(i int) Producer {
	return &stallProducer{Producer: t.FloorTarget.Producer(i), t: t}
}

type stallProducer struct {
	Producer
	t *stallTarget
}

func (p *stallProducer) Send(key, payload []byte) error {
	if p.t.sends.Add(1) == p.t.stallAt {
		time.Sleep(p.t.stall)
	}
	return p.Producer.Send(key, payload)
}

// countAtOrAbove returns how many recorded values are equivalent to or above v.
func countAtOrAbove(h *hdr.Histogram, v int64) int64 {
	var n int64
	for _, b := range h.Distribution() {
		if b.To >= v {
			n += b.Count
		}
	}
	return n
}

// TestCoordinatedOmission runs a 1 ms schedule into a sink that stalls once for 100 ms. The harness's
// histogram must show the stall as HdrHistogram's expected-interval correction predicts from the
// uncorrected measurement: about 50 values of 50 ms or more and a maximum of about 100 ms. The
// uncorrected view of the same messages, and a closed-loop run against the same stall, must hide it: one
// slow value, nothing at p99.
func TestCoordinatedOmission(t *testing.T) {
	const (
		interval = time.Millisecond
		stall    = 100 * time.Millisecond
		half     = int64(stall / 2)
	)
	target := &stallTarget{FloorTarget: NewFloorTarget(), stallAt: 600, stall: stall}
	res, err := Run(context.Background(), target, Config{
		Rate:        float64(time.Second / interval),
		Warmup:      200 * time.Millisecond,
		Duration:    time.Second,
		PayloadSize: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 0 || res.Unsent != 0 || res.Measured < 990 {
		t.Fatalf("lost %d unsent %d measured %d: want every message of the window", res.Lost, res.Unsent, res.Measured)
	}

	// HdrHistogram's prediction: replay the uncorrected values through RecordCorrectedValue.
	predicted := newHist(time.Minute)
	for _, b := range res.UncorrectedHist.Distribution() {
		for range b.Count {
			if err := predicted.RecordCorrectedValue(b.To, int64(interval)); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, want := countAtOrAbove(res.Hist, half), countAtOrAbove(predicted, half)
	t.Logf("values >= 50ms: harness %d, predicted %d, uncorrected %d; max harness %v predicted %v; late %d",
		got, want, countAtOrAbove(res.UncorrectedHist, half),
		time.Duration(res.Hist.Max()), time.Duration(predicted.Max()), res.Late)
	if want < 48 || want > 56 {
		t.Errorf("prediction from the uncorrected view has %d values >= 50ms, want about 51", want)
	}
	if d := got - want; d < -5 || d > 5 {
		t.Errorf("harness has %d values >= 50ms, correction predicts %d (tolerance 5)", got, want)
	}
	if m := time.Duration(res.Hist.Max()); m < stall || m > stall+stall/2 {
		t.Errorf("harness max %v, want about %v", m, stall)
	}
	if p99 := res.Latency.P99; p99 < stall/2 {
		t.Errorf("harness p99 %v hides the stall (want >= %v)", p99, stall/2)
	}
	// The messages due during the stall went out as one burst, stamped with their intended times.
	if res.Late < 90 {
		t.Errorf("late sends %d, want about 99 (the stall's backlog)", res.Late)
	}

	// The uncorrected view of the same run hides the stall: one slow message, invisible at p99.
	if n := countAtOrAbove(res.UncorrectedHist, half); n > 2 {
		t.Errorf("uncorrected view has %d values >= 50ms, want 1", n)
	}
	if res.Uncorrected.P99 >= stall/2 {
		t.Errorf("uncorrected p99 %v, want well under the stall", res.Uncorrected.P99)
	}

	// So does a closed-loop run against the same stall.
	target = &stallTarget{FloorTarget: NewFloorTarget(), stallAt: 2000, stall: stall}
	closed, err := Run(context.Background(), target, Config{
		Mode: ClosedLoop, Warmup: -1, Duration: 300 * time.Millisecond, PayloadSize: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	if target.sends.Load() < 2000 {
		t.Fatalf("closed loop sent %d messages, never reached the stall", target.sends.Load())
	}
	if n := countAtOrAbove(closed.Hist, half); n != 1 {
		t.Errorf("closed loop has %d values >= 50ms, want exactly the stalled one", n)
	}
	if closed.Latency.P99 >= stall/2 {
		t.Errorf("closed-loop p99 %v, want well under the stall", closed.Latency.P99)
	}
}

// TestPacerCounts checks the open-loop schedule by counts: every scheduled message is sent once,
// received once, and the measured ones are those of the window after warm-up.
func TestPacerCounts(t *testing.T) {
	var progress bytes.Buffer
	cfg := Config{
		Rate:             3000,
		Producers:        3,
		Consumers:        2,
		Warmup:           100 * time.Millisecond,
		Duration:         400 * time.Millisecond,
		PayloadSize:      32,
		KeyDist:          KeysZipf,
		KeyCount:         100,
		Progress:         &progress,
		ProgressInterval: 100 * time.Millisecond,
	}
	res, err := Run(context.Background(), NewFloorTarget(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 3000 msg/s for 0.5 s in all, split evenly over the producers.
	if res.Scheduled != 1500 {
		t.Errorf("scheduled %d, want 1500", res.Scheduled)
	}
	if res.Sent != res.Scheduled || res.Received != res.Sent || res.Unsent != 0 || res.Lost != 0 {
		t.Errorf("scheduled %d sent %d received %d unsent %d lost %d: want all equal, none dropped",
			res.Scheduled, res.Sent, res.Received, res.Unsent, res.Lost)
	}
	if res.Measured != 1200 {
		t.Errorf("measured %d, want 1200 (0.4 s at 3000 msg/s)", res.Measured)
	}
	if res.Latency.Count != res.Measured || res.Uncorrected.Count != res.Measured {
		t.Errorf("histogram counts %d/%d, want %d", res.Latency.Count, res.Uncorrected.Count, res.Measured)
	}
	if res.Pacer.Count == 0 || res.Pacer.Count > res.Sent {
		t.Errorf("pacer recorded %d wake-ups for %d sends", res.Pacer.Count, res.Sent)
	}
	if !strings.Contains(progress.String(), "bench floor") {
		t.Errorf("no progress line in %q", progress.String())
	}
	t.Logf("pacer wake error p50 %v p99 %v max %v; latency p50 %v p99 %v; late %d",
		res.Pacer.P50, res.Pacer.P99, res.Pacer.Max, res.Latency.P50, res.Latency.P99, res.Late)
}

// TestScheduleCount checks the closed form against enumeration.
func TestScheduleCount(t *testing.T) {
	for _, c := range []struct {
		rate      float64
		producers int
		span      int64
	}{
		{1000, 1, 1e9}, {3000, 3, 5e8}, {7, 2, 3e9}, {1e6, 4, 1e8 + 1}, {333.3, 3, 1e9}, {1e5, 7, 12345678},
	} {
		cfg := Config{Rate: c.rate, Producers: c.producers}
		var total, enumerated int64
		for id := range c.producers {
			iv := cfg.interval()
			sc := schedule{start: 5e9, end: 5e9 + c.span, interval: iv, offset: float64(id) * iv / float64(c.producers)}
			total += sc.count()
			for k := int64(0); sc.at(k) < sc.end; k++ {
				enumerated++
			}
		}
		if total != enumerated {
			t.Errorf("rate %v producers %d span %d: count %d, enumeration %d", c.rate, c.producers, c.span, total, enumerated)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, c := range map[string]Config{
		"payload":    {PayloadSize: 7},
		"mode":       {Mode: "half-open"},
		"durability": {Durability: "maybe"},
		"keys":       {KeyDist: "gauss"},
		"zipf":       {KeyDist: KeysZipf, ZipfS: 0.5},
		"rate":       {Rate: -1},
		"batch":      {PayloadSize: 1 << 20, BatchBytes: 1024},
		"producers":  {Producers: -1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: %+v validated", name, c)
		}
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	if _, err := r.New("nope"); err == nil {
		t.Fatal("unknown target made")
	}
	tg, err := r.New(FloorName)
	if err != nil || tg.Name() != FloorName {
		t.Fatalf("floor: %v %v", tg, err)
	}
}

// TestDeliverAllocs: recording a message allocates nothing.
func TestDeliverAllocs(t *testing.T) {
	r := newRecorder(time.Minute)
	p := make([]byte, 64)
	StampIntended(p, Now())
	if n := testing.AllocsPerRun(1000, func() { r.deliver(p) }); n != 0 {
		t.Errorf("deliver allocates %v per call", n)
	}
}
