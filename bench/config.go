package bench

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors returned by the harness.
var (
	ErrInvalidConfig = errors.New("bench: invalid config")
	ErrUnknownTarget = errors.New("bench: unknown target")
)

// Mode selects how producers decide when to send.
type Mode string

const (
	// OpenLoop sends on a fixed-rate schedule and measures from the intended send time.
	OpenLoop Mode = "open-loop"
	// ClosedLoop sends as fast as the target accepts and measures from the actual send time.
	ClosedLoop Mode = "closed-loop"
)

// Key distributions for Config.KeyDist.
const (
	KeysNone    = "none"    // nil keys
	KeysUniform = "uniform" // uniform over KeyCount keys
	KeysZipf    = "zipf"    // Zipf(ZipfS) over KeyCount keys: key 0 is the hottest
)

// Durability levels passed to the target in Config.Durability.
const (
	DurabilityNone    = "none"
	DurabilityWritten = "written"
	DurabilityFsync   = "fsync"
)

// StampSize is how many leading payload bytes carry both the intended and the actual send time. Payloads
// between 8 and StampSize bytes carry the intended time only.
const StampSize = 16

// Config is one run's parameters. The zero value of each field means its default; call
// [Config.WithDefaults] to see them filled in and [Config.Validate] to check a config.
type Config struct {
	// Target names the target in a Registry (used by suites; Run takes the Target itself).
	Target string `json:"target"`
	// Mode is OpenLoop (default) or ClosedLoop.
	Mode Mode `json:"mode"`
	// Rate is the total scheduled send rate over all producers, in messages per second (open loop only).
	// Default 10000.
	Rate float64 `json:"rate"`
	// Duration is the measured part of the run. Default 5s.
	Duration time.Duration `json:"duration"`
	// Warmup precedes the measured part; messages scheduled (or sent, closed loop) during it are delivered
	// but not recorded. Default 1s. Negative means none.
	Warmup time.Duration `json:"warmup"`
	// PayloadSize is the size of every payload in bytes, at least 8. Default 128.
	PayloadSize int `json:"payload_size"`
	// KeyDist is KeysNone (default), KeysUniform or KeysZipf.
	KeyDist string `json:"key_dist"`
	// KeyCount is the number of distinct keys for uniform and zipf. Default 1024.
	KeyCount int `json:"key_count"`
	// ZipfS is the Zipf exponent, > 1. Default 1.1.
	ZipfS float64 `json:"zipf_s"`
	// Producers and Consumers are the goroutine counts on each side. Default 1 each.
	Producers int `json:"producers"`
	Consumers int `json:"consumers"`
	// Partitions is passed to the target. Default 1.
	Partitions int `json:"partitions"`
	// Durability is passed to the target: DurabilityNone (default), DurabilityWritten or DurabilityFsync.
	Durability string `json:"durability"`
	// BatchBytes is the producer's maximum batch size, passed to the target. Default 64 KiB (the sluice
	// bench CLI and the suite default per target instead: targets.DefaultBatchBytes).
	BatchBytes int `json:"batch_bytes"`
	// Linger is how long a producer may hold a partial batch, passed to the target. Default 0.
	Linger time.Duration `json:"linger"`
	// SpinThreshold is how long before a send the pacer stops sleeping and spins; negative disables
	// spinning (nanosleep only). Default (autoSpin): a quarter of the interval between one producer's
	// sends, at most 50µs; 50µs, spinning only, when that interval is 5µs or less.
	SpinThreshold time.Duration `json:"spin_threshold"`
	// DrainTimeout bounds the wait for consumers after the last send. Default 5s.
	DrainTimeout time.Duration `json:"drain_timeout"`
	// WatchStalls runs the stall watcher through the measured window (Result.Stalls, stalls.go):
	// one more thread, waking every StallTick.
	WatchStalls bool `json:"watch_stalls,omitempty"`
	// MaxLatency is the largest latency the histograms track; larger values are clamped to it and
	// counted in Result.Clamped. Default 1m.
	MaxLatency time.Duration `json:"max_latency"`
	// Progress, if set, receives one progress line per ProgressInterval during the run.
	Progress io.Writer `json:"-"`
	// ProgressInterval defaults to 1s.
	ProgressInterval time.Duration `json:"progress_interval"`
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Mode == "" {
		c.Mode = OpenLoop
	}
	if c.Rate == 0 && c.Mode == OpenLoop {
		c.Rate = 10000
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = time.Second
	} else if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = 128
	}
	if c.KeyDist == "" {
		c.KeyDist = KeysNone
	}
	if c.KeyCount == 0 {
		c.KeyCount = 1024
	}
	if c.ZipfS == 0 {
		c.ZipfS = 1.1
	}
	if c.Producers == 0 {
		c.Producers = 1
	}
	if c.Consumers == 0 {
		c.Consumers = 1
	}
	if c.Partitions == 0 {
		c.Partitions = 1
	}
	if c.Durability == "" {
		c.Durability = DurabilityNone
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 64 << 10
	}
	if c.SpinThreshold == 0 {
		c.SpinThreshold = maxSpin
		if c.Mode == OpenLoop && c.Rate > 0 {
			c.SpinThreshold = autoSpin(c.interval())
		}
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 5 * time.Second
	}
	if c.MaxLatency == 0 {
		c.MaxLatency = time.Minute
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = time.Second
	}
	return c
}

// Validate reports the first problem with c after defaults are applied.
func (c Config) Validate() error {
	c = c.WithDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch c.Mode {
	case OpenLoop:
		if c.Rate <= 0 {
			return bad("rate %v must be > 0 in open-loop mode", c.Rate)
		}
	case ClosedLoop:
	default:
		return bad("mode %q (want %q or %q)", c.Mode, OpenLoop, ClosedLoop)
	}
	if c.Duration < 0 {
		return bad("duration %v < 0", c.Duration)
	}
	if c.PayloadSize < 8 {
		return bad("payload size %d < 8 (the intended send time takes 8 bytes)", c.PayloadSize)
	}
	switch c.KeyDist {
	case KeysNone:
	case KeysUniform, KeysZipf:
		if c.KeyCount < 1 {
			return bad("key count %d < 1", c.KeyCount)
		}
		if c.KeyDist == KeysZipf && c.ZipfS <= 1 {
			return bad("zipf exponent %v must be > 1", c.ZipfS)
		}
	default:
		return bad("key distribution %q (want none, uniform or zipf)", c.KeyDist)
	}
	if c.Producers < 1 || c.Consumers < 1 || c.Partitions < 1 {
		return bad("producers %d, consumers %d, partitions %d: each must be >= 1",
			c.Producers, c.Consumers, c.Partitions)
	}
	switch c.Durability {
	case DurabilityNone, DurabilityWritten, DurabilityFsync:
	default:
		return bad("durability %q (want none, written or fsync)", c.Durability)
	}
	if c.BatchBytes < c.PayloadSize {
		return bad("batch bytes %d < payload size %d", c.BatchBytes, c.PayloadSize)
	}
	if c.Linger < 0 || c.DrainTimeout < 0 {
		return bad("linger %v and drain timeout %v must be >= 0", c.Linger, c.DrainTimeout)
	}
	if c.MaxLatency < time.Millisecond {
		return bad("max latency %v < 1ms", c.MaxLatency)
	}
	return nil
}

// maxSpin is the longest the pacer spins before a send: about the latest a nanosleep on the
// project's VMs wakes with the timer slack lowered.
const maxSpin = 50 * time.Microsecond

// autoSpin is the default spin for a producer sending every interval ns: a quarter of the interval,
// at most maxSpin, so that the pacer leaves its core to the target for most of each interval; at
// 5 µs and less (200 000 msg/s per producer and more) a nanosleep, which takes longer than that,
// cannot pace the sends and the pacer spins only (maxSpin). Measured on 2 cores (docs/benchmarks.md,
// "The pacer's spin"): at 20 000 msg/s over TCP a pacer spinning through the whole 50 µs interval
// left the broker, the client and the consumer one core and tripled their p50 and p90.
func autoSpin(interval float64) time.Duration {
	if interval <= 5e3 {
		return maxSpin
	}
	return min(maxSpin, time.Duration(interval/4))
}

// interval returns one producer's send interval in nanoseconds (open loop).
func (c Config) interval() float64 {
	return 1e9 * float64(c.Producers) / c.Rate
}
