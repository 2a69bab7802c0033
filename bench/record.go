package bench

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sluicemq/sluice/internal/atomicutil"
)

// epoch anchors the harness clock. time.Since reads the monotonic clock, so Now never steps with NTP.
var epoch = time.Now()

// Now returns nanoseconds since the harness epoch on the monotonic clock. Payload stamps use this clock.
func Now() int64 { return int64(time.Since(epoch)) }

// StampIntended writes the intended send time into the first 8 bytes of payload.
func StampIntended(payload []byte, intended int64) {
	binary.LittleEndian.PutUint64(payload, uint64(intended))
}

// Intended reads the intended send time from a payload stamped by the harness.
func Intended(payload []byte) int64 { return int64(binary.LittleEndian.Uint64(payload)) }

// sigFigs is the histograms' precision: 3 significant digits, 0.1% value error.
const sigFigs = 3

// newHist returns a histogram for latencies from 1 ns to max.
func newHist(max time.Duration) *hdr.Histogram { return hdr.New(1, int64(max), sigFigs) }

// paddedInt64 is a counter alone on its cache line pair: each producer and consumer bumps its own once per
// message, and the progress goroutine reads them all; without padding neighbouring counters would bounce
// one line between cores on every message.
type paddedInt64 = atomicutil.Int64

// recorder belongs to one consumer goroutine: deliver runs only there, so its histograms need no lock.
// Run reads the histograms only after Target.Close has returned, which guarantees deliver has stopped.
type recorder struct {
	received paddedInt64 // written by the consumer goroutine, read by Run and the progress line
	// from is the first intended time that is recorded (the end of warm-up). Set by Run before any
	// producer starts; atomic because the consumer goroutine may already be running.
	from     atomic.Int64
	hist     *hdr.Histogram // intended send → receipt (corrected)
	raw      *hdr.Histogram // actual send → receipt (uncorrected); only for payloads >= StampSize
	max      int64          // clamp for both histograms
	measured int64          // recorded messages
	clamped  int64          // latencies above max, recorded as max
	lastRecv int64          // Now() of the last recorded message
	short    int64          // payloads under 8 bytes (a target bug)
}

func newRecorder(max time.Duration) *recorder {
	return &recorder{hist: newHist(max), raw: newHist(max), max: int64(max)}
}

// deliver is the consumer callback. It allocates nothing: two clock reads at most, two histogram
// increments, one atomic add.
func (r *recorder) deliver(p []byte) {
	now := Now()
	if len(p) >= 8 {
		if intended := Intended(p); intended >= r.from.Load() {
			r.measured++
			r.lastRecv = now
			r.record(r.hist, now-intended)
			if len(p) >= StampSize {
				r.record(r.raw, now-int64(binary.LittleEndian.Uint64(p[8:])))
			}
		}
	} else {
		r.short++
	}
	// Last: a reader that sees the new count also sees the histogram updates before it.
	r.received.Add(1)
}

func (r *recorder) record(h *hdr.Histogram, v int64) {
	if v < 0 {
		v = 0 // clock reads on different cores are monotonic, but a target may deliver a corrupt stamp
	}
	if v > r.max {
		v = r.max
		r.clamped++
	}
	_ = h.RecordValue(v) // cannot fail: 0 <= v <= max, the histogram's highest trackable value
}
