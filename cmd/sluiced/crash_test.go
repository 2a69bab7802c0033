package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// The crash loop: producers write to one partition while sluiced is SIGKILLed and restarted over and
// over, at random moments and right after segment rolls, and the producers ride through on their own
// reconnects and resends. At the end the partition is read back and held against every producer's
// acknowledgements.

// crashProducer is one producer of the crash loop and what it was told.
type crashProducer struct {
	id         int
	durability wire.Durability
	idempotent bool
	p          *client.Producer

	mu sync.Mutex
	// acks holds, per sequence number (the record's position in this producer's Produce order), the
	// offset its acknowledgement reported: ackPending until it completes, ackFailed if it failed,
	// -1 when acknowledged at an unknown offset (an idempotent resend the broker no longer had the
	// offsets of). Guarded by mu.
	acks     []int64
	failed   int   // guarded by mu: records that completed with an error
	firstErr error // guarded by mu
	acked    atomic.Int64
}

const (
	ackPending = -2
	ackFailed  = -3
)

func (cp *crashProducer) String() string {
	idem := ""
	if cp.idempotent {
		idem = ", idempotent"
	}
	return fmt.Sprintf("producer %d (%v%s)", cp.id, cp.durability, idem)
}

// crashValue is the value of producer id's record seq: it names both, and a filler derived from them
// makes a byte-for-byte comparison meaningful (and the records big enough to roll segments often).
func crashValue(id, seq int) []byte {
	v := fmt.Appendf(nil, "p%d-%09d-", id, seq)
	for i := range 60 + seq%97 {
		v = append(v, 'a'+byte((seq+id*7+i)%26))
	}
	return v
}

// parseCrashValue returns the producer and sequence a crash-loop value names.
func parseCrashValue(v []byte) (id, seq int, ok bool) {
	s, ok := strings.CutPrefix(string(v), "p")
	if !ok {
		return 0, 0, false
	}
	idS, rest, ok1 := strings.Cut(s, "-")
	seqS, _, ok2 := strings.Cut(rest, "-")
	id, err1 := strconv.Atoi(idS)
	seq, err2 := strconv.Atoi(seqS)
	return id, seq, ok1 && ok2 && err1 == nil && err2 == nil
}

// run produces records until stop is closed, a few thousand a second, and records every result.
func (cp *crashProducer) run(ctx context.Context, stop <-chan struct{}) error {
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return nil
		default:
		}
		cp.mu.Lock()
		cp.acks = append(cp.acks, ackPending)
		cp.mu.Unlock()
		err := cp.p.Produce(ctx, client.Record{Value: crashValue(cp.id, seq)}, func(r client.Result) {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			if r.Err != nil {
				cp.acks[seq] = ackFailed
				cp.failed++
				if cp.firstErr == nil {
					cp.firstErr = fmt.Errorf("record %d: %w", seq, r.Err)
				}
				return
			}
			cp.acks[seq] = r.Offset
			cp.acked.Add(1)
		})
		if err != nil {
			cp.mu.Lock()
			cp.acks = cp.acks[:seq]
			cp.mu.Unlock()
			return fmt.Errorf("%v: produce: %w", cp, err)
		}
		if seq%16 == 15 {
			// Pace the producers (about 16,000 records a second each) so that the records of a few
			// hundred cycles stay a few million.
			time.Sleep(time.Millisecond)
		}
	}
}

// segmentCount counts the segment files of a partition directory.
func segmentCount(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".log") {
			n++
		}
	}
	return n
}

// TestCrashLoopBroker SIGKILLs sluiced again and again while four producers (written and fsync
// durability, each with and without idempotence, each on its own connection) write to one partition
// of 1 MiB segments; every other kill lands right after a segment roll, the rest at random moments.
// The producers are never restarted: they reconnect and resend on their own. Afterwards every record
// acknowledged is in the partition, byte-identical, at the offset its acknowledgement reported;
// exactly once for the idempotent producers (at least once for the others); and each producer's
// acknowledged records appear in the order Produce accepted them. No record may fail. A short run
// in make test; SLUICE_SOAK=1 (make soak) runs 220 cycles.
func TestCrashLoopBroker(t *testing.T) {
	cycles := 20
	if os.Getenv("SLUICE_SOAK") != "" {
		cycles = 220
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	data := t.TempDir()
	b := startBroker(t, data, "--segment-bytes", "1048576")
	admin := dialBroker(t, b)
	createTopic(t, admin, "crashy", 1)
	partDir := filepath.Join(data, "topics", "crashy", "0")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	var producers []*crashProducer
	for i, d := range []wire.Durability{wire.DurabilityWritten, wire.DurabilityFsync} {
		for j, idem := range []bool{false, true} {
			cp := &crashProducer{id: 2*i + j, durability: d, idempotent: idem}
			opts := []client.ProducerOption{client.WithDurability(d), client.WithLinger(time.Millisecond),
				client.WithMaxBatchBytes(16 << 10), client.WithRetries(1000)}
			if idem {
				opts = append(opts, client.WithIdempotence())
			}
			var err error
			if cp.p, err = dialBroker(t, b).Producer("crashy", opts...); err != nil {
				t.Fatal(err)
			}
			producers = append(producers, cp)
		}
	}
	stop := make(chan struct{})
	errs := make(chan error, len(producers))
	for _, cp := range producers {
		go func() { errs <- cp.run(ctx, stop) }()
	}
	stopped := false
	stopProducers := func() {
		if !stopped {
			stopped = true
			close(stop)
			for range producers {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		}
	}
	defer stopProducers()

	// progress waits until every producer has had records acknowledged since acked was taken.
	progress := func(what string) {
		t.Helper()
		var base []int64
		for _, cp := range producers {
			base = append(base, cp.acked.Load())
		}
		deadline := time.Now().Add(time.Minute)
		for i := 0; i < len(producers); {
			if producers[i].acked.Load() > base[i]+20 {
				i++
				continue
			}
			if time.Now().After(deadline) {
				cp := producers[i]
				cp.mu.Lock()
				err := cp.firstErr
				cp.mu.Unlock()
				t.Fatalf("%s: %v made no progress in a minute (first error: %v)\n%s", what, cp, err, b.log())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	start := time.Now()
	var restarts, resumes []time.Duration
	rollKills := 0
	for cycle := range cycles {
		progress(fmt.Sprintf("cycle %d", cycle))
		if cycle%2 == 1 {
			// Right after a roll: the new segment exists, the old one's seal and the spare's
			// creation are in progress or just done.
			segs := segmentCount(t, partDir)
			deadline := time.Now().Add(time.Minute)
			for segmentCount(t, partDir) == segs {
				if time.Now().After(deadline) {
					t.Fatalf("cycle %d: no segment roll in a minute", cycle)
				}
				time.Sleep(500 * time.Microsecond)
			}
			rollKills++
		} else {
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		}
		b.kill() // SIGKILL: no shutdown, no final sync
		t0 := time.Now()
		b.start()
		restarts = append(restarts, time.Since(t0))
		progress(fmt.Sprintf("after restart %d", cycle))
		resumes = append(resumes, time.Since(t0))
	}
	stopProducers()
	for _, cp := range producers {
		if err := cp.p.Close(ctx); err != nil {
			t.Fatalf("%v: close: %v", cp, err)
		}
	}
	elapsed := time.Since(start)

	// Every record completed, and none failed: the producers rode through every crash.
	total := 0
	for _, cp := range producers {
		cp.mu.Lock()
		if cp.failed > 0 {
			t.Errorf("%v: %d of %d records failed; first: %v", cp, cp.failed, len(cp.acks), cp.firstErr)
		}
		if i := slices.Index(cp.acks, ackPending); i >= 0 {
			t.Errorf("%v: record %d never completed", cp, i)
		}
		total += len(cp.acks)
		cp.mu.Unlock()
	}
	if t.Failed() {
		t.FailNow()
	}

	// Read the partition back.
	info, err := admin.DescribeTopic(ctx, "crashy")
	if err != nil {
		t.Fatal(err)
	}
	end := info.Partitions[0].EndOffset
	cons, err := admin.Subscribe(ctx, "crashy", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	copies := make([][]uint8, len(producers)) // per producer and sequence: copies stored
	for i, cp := range producers {
		copies[i] = make([]uint8, len(cp.acks))
	}
	lastAcked := make([]int, len(producers)) // per producer: the sequence of the last acknowledged copy read
	found := make([]int, len(producers))     // per producer: acknowledged copies read
	for i := range lastAcked {
		lastAcked[i] = -1
	}
	for off := int64(0); off < end; off++ {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d records: %v", off, end, err)
		}
		if m.Offset != off {
			t.Fatalf("offset %d where %d was expected", m.Offset, off)
		}
		id, seq, ok := parseCrashValue(m.Value)
		if !ok || id < 0 || id >= len(producers) || seq < 0 || seq >= len(copies[id]) || string(m.Value) != string(crashValue(id, seq)) {
			t.Fatalf("offset %d holds %q, which no producer produced", off, m.Value)
		}
		cp := producers[id]
		copies[id][seq]++
		// The acknowledged copy: the one at the reported offset, or (an idempotent producer's
		// record acknowledged at an unknown offset) its only copy.
		if ack := cp.acks[seq]; ack == off || (ack == -1 && cp.idempotent) {
			if seq <= lastAcked[id] {
				t.Fatalf("%v: record %d acknowledged at offset %d, after record %d: stored out of Produce order", cp, seq, off, lastAcked[id])
			}
			lastAcked[id] = seq
			found[id]++
		}
	}
	dups := make([]int, len(producers))
	unknown := make([]int, len(producers)) // acknowledged at an unknown offset
	for id, cp := range producers {
		for seq, n := range copies[id] {
			ack := cp.acks[seq]
			if ack == -1 {
				unknown[id]++
			}
			switch {
			case n == 0:
				t.Fatalf("%v: record %d, acknowledged at offset %d, is missing", cp, seq, ack)
			case n > 1 && cp.idempotent:
				t.Fatalf("%v: record %d stored %d times", cp, seq, n)
			}
			dups[id] += int(n) - 1
		}
		// The acknowledged copies were read in strictly increasing sequence order; as many as there
		// are records means each one's was found, at its reported offset.
		if found[id] != len(cp.acks) {
			t.Fatalf("%v: %d of %d acknowledged offsets hold their record", cp, found[id], len(cp.acks))
		}
	}
	var summary []string
	for id, cp := range producers {
		summary = append(summary, fmt.Sprintf("%v: %d records, %d extra copies, %d acknowledged at an unknown offset", cp, len(cp.acks), dups[id], unknown[id]))
	}
	slices.Sort(restarts)
	slices.Sort(resumes)
	t.Logf("%d SIGKILL cycles (%d right after a segment roll) in %v; %d records acknowledged, %d stored; restart to listening: median %v, max %v; restart to every producer acknowledging again: median %v, max %v\n%s",
		cycles, rollKills, elapsed.Round(time.Millisecond), total, end,
		restarts[len(restarts)/2].Round(time.Millisecond), restarts[len(restarts)-1].Round(time.Millisecond),
		resumes[len(resumes)/2].Round(time.Millisecond), resumes[len(resumes)-1].Round(time.Millisecond),
		strings.Join(summary, "\n"))
}
