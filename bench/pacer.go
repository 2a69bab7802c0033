package bench

import (
	"encoding/binary"
	"runtime"
	"sync/atomic"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// sender drives one Producer from one goroutine. In open-loop mode that goroutine is also the pacer.
type sender struct {
	sent paddedInt64 // written by the sender goroutine, read by Run and the progress line

	// Owned by the sender goroutine until Run's WaitGroup says it is done.
	id      int
	p       Producer
	buf     []byte // the payload, reused: Producer.Send must not retain it
	keys    *keyPicker
	wake    *hdr.Histogram // pacer error: Now() at wake-up minus the intended time, per wait
	late    int64          // messages already due when the previous send returned (sent in a burst)
	unsent  int64          // scheduled messages dropped because the target fell too far behind
	sched   int64          // messages the schedule held
	err     error
	maxWake int64
	locked  bool // runOpen held its OS thread (the schedule let it sleep between sends)
}

func newSender(id int, p Producer, cfg Config) *sender {
	s := &sender{
		id:      id,
		p:       p,
		buf:     make([]byte, cfg.PayloadSize),
		keys:    newKeyPicker(cfg, uint64(id)+1),
		wake:    newHist(cfg.MaxLatency),
		maxWake: int64(cfg.MaxLatency),
	}
	for i := 8; i < len(s.buf); i++ {
		s.buf[i] = byte(i) // filler; the stamps overwrite the first bytes
	}
	return s
}

// stamp writes the intended and (room permitting) the actual send time.
func (s *sender) stamp(intended, actual int64) {
	StampIntended(s.buf, intended)
	if len(s.buf) >= StampSize {
		binary.LittleEndian.PutUint64(s.buf[8:], uint64(actual))
	}
}

// schedule describes one producer's share of an open-loop run. Producer i of P sends message k at
// start + (k*P + i) * 1e9/Rate: the producers interleave, so the total is evenly spaced.
type schedule struct {
	start    int64   // Now() of the schedule's origin
	end      int64   // no message is scheduled at or after end
	giveUp   int64   // past this instant the backlog is dropped and counted as unsent
	interval float64 // ns between this producer's messages
	offset   float64 // ns from start to this producer's first message
	spin     int64   // spin for the last spin ns before a send; < 0: never spin
	flush    bool    // call Flush before every wait (Linger == 0)
}

// sleeps reports whether the pacer ever sleeps between sends: when the interval is longer than the
// spin threshold. A schedule denser than that is paced by spinning alone.
func (sc *schedule) sleeps() bool { return sc.spin < 0 || sc.interval > float64(sc.spin) }

func (sc *schedule) at(k int64) int64 {
	return sc.start + int64(sc.offset+float64(k)*sc.interval)
}

func (sc *schedule) count() int64 {
	n := int64(0)
	if span := float64(sc.end-sc.start) - sc.offset; span > 0 {
		n = int64(span / sc.interval)
		for sc.at(n) < sc.end { // float rounding: settle the exact count
			n++
		}
		for n > 0 && sc.at(n-1) >= sc.end {
			n--
		}
	}
	return n
}

// runOpen sends on the schedule. It sleeps with nanosleep until spin ns before the next send and spins
// for the rest. When it wakes late, or the previous send returned late, it sends every message that is
// due back to back, each stamped with its own intended time: the target's stall is charged to every
// message it delayed.
//
// A schedule that lets it sleep between sends (sc.sleeps) has it lock its OS thread and lower the
// thread's timer slack, so that nanosleep wakes it on time. A denser one (1M msg/s with the default
// 50 µs spin) never sleeps after the first send, and then the goroutine stays unlocked: a locked
// goroutine that leaves its P, as it does when sysmon preempts a goroutine that has run for 10 ms or
// when a target's Send yields on a full queue (runtime.Gosched), cannot be picked up again by the
// thread that ran it. Its thread hands the P to another thread and sleeps; whichever thread next
// finds the goroutine in the run queue hands the P back and wakes it: two thread wake-ups per
// yield, tens of microseconds on a quiet machine and milliseconds under load, where an unlocked
// goroutine is resumed by the same thread at once. (A trace of the spsc floor at 1M msg/s, locked:
// the pacer was off its P 5.0 s of 9, in 120,756 yields; see docs/benchmarks.md.)
func (s *sender) runOpen(sc schedule, stop *atomic.Bool) {
	if s.locked = sc.sleeps(); s.locked {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		lowerTimerSlack()
	}

	s.sched = sc.count()
	pending := false
	var k int64
	for ; k < s.sched && !stop.Load(); k++ {
		intended := sc.at(k)
		now := Now()
		if now < intended {
			if pending && sc.flush {
				if s.err = s.p.Flush(); s.err != nil {
					break
				}
				pending = false
			}
			now = s.waitUntil(intended, sc.spin)
			wake := now - intended
			if wake > s.maxWake {
				wake = s.maxWake
			}
			_ = s.wake.RecordValue(wake) // 0 <= wake <= highest trackable
		} else {
			if now >= sc.giveUp {
				break
			}
			s.late++
		}
		s.stamp(intended, now)
		if s.err = s.p.Send(s.keys.next(), s.buf); s.err != nil {
			break
		}
		pending = true
		s.sent.Add(1)
	}
	s.unsent = s.sched - s.sent.Load()
	if s.err == nil {
		s.err = s.p.Flush()
	}
}

// waitUntil returns at or after t: nanosleep while more than spin ns remain, then spin on the clock.
func (s *sender) waitUntil(t, spin int64) int64 {
	for {
		now := Now()
		gap := t - now
		if gap <= 0 {
			return now
		}
		if spin < 0 {
			sleepNs(gap)
			continue
		}
		if gap > spin {
			sleepNs(gap - spin)
			continue
		}
		for now < t {
			now = Now()
		}
		return now
	}
}

// runClosed sends as fast as the producer accepts until end, stamping each message with the actual send
// time as both the intended and the actual time.
func (s *sender) runClosed(end int64, stop *atomic.Bool) {
	for !stop.Load() {
		now := Now()
		if now >= end {
			break
		}
		s.stamp(now, now)
		if s.err = s.p.Send(s.keys.next(), s.buf); s.err != nil {
			break
		}
		s.sent.Add(1)
	}
	s.sched = s.sent.Load()
	if s.err == nil {
		s.err = s.p.Flush()
	}
}
