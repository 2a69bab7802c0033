package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSPSCFloorCarriesEveryPayload: through the busy-poll floor, with one producer and consumer
// (Take) and with two of each (Poll), every payload arrives once and intact, including past the slab's wrap (more sends than
// slots), and Close stops the spinning consumers.
func TestSPSCFloorCarriesEveryPayload(t *testing.T) {
	t.Run("1x1", func(t *testing.T) { testSPSCFloor(t, 1, 1) })
	t.Run("2x2", func(t *testing.T) { testSPSCFloor(t, 2, 2) })
}

func testSPSCFloor(t *testing.T, producers, consumers int) {
	const per, size = 3 * 2 * spscDepth, 40
	tg := NewSPSCFloorTarget()
	cfg := Config{Producers: producers, Consumers: consumers, PayloadSize: size}
	if err := tg.Open(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	got := make([][]atomic.Int32, producers) // per producer and sequence: times received
	for i := range got {
		got[i] = make([]atomic.Int32, per)
	}
	var bad atomic.Int64
	var received atomic.Int64
	for c := range consumers {
		if err := tg.Consume(c, func(p []byte) {
			prod, seq := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])
			for i := 8; i < len(p); i++ {
				if p[i] != byte(seq)+byte(i) {
					bad.Add(1)
					break
				}
			}
			got[prod][seq].Add(1)
			received.Add(1)
		}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := tg.Producer(i)
			buf := make([]byte, size)
			for seq := range per {
				binary.LittleEndian.PutUint32(buf, uint32(i))
				binary.LittleEndian.PutUint32(buf[4:], uint32(seq))
				for j := 8; j < size; j++ {
					buf[j] = byte(seq) + byte(j)
				}
				var key []byte
				if seq%3 == 0 {
					key = buf[4:8] // keyed: the consumer its hash picks
				}
				if err := p.Send(key, buf); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < int64(producers*per) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d payloads damaged", n)
	}
	for i := range got {
		for seq := range got[i] {
			if n := got[i][seq].Load(); n != 1 {
				t.Fatalf("producer %d message %d received %d times", i, seq, n)
			}
		}
	}
	if err := tg.Producer(0).Send(nil, make([]byte, size)); err != nil && err != ErrClosed {
		t.Fatalf("send after close: %v", err)
	}
}

// TestSPSCFloorYieldsRarely: a floor producer spinning on a full ring (no consumer here) yields its
// P only after spinYieldAfter without progress and then once per spinYieldAfter, not every few
// microseconds, and Close ends its spin with ErrClosed.
func TestSPSCFloorYieldsRarely(t *testing.T) {
	tg := NewSPSCFloorTarget()
	if err := tg.Open(context.Background(), Config{PayloadSize: 16}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var yields []time.Time
	prev := yieldP
	yieldP = func() {
		mu.Lock()
		yields = append(yields, time.Now())
		mu.Unlock()
	}
	defer func() { yieldP = prev }()
	p := tg.Producer(0)
	buf := make([]byte, 16)
	for i := range spscDepth { // fills the ring: nobody consumes
		if err := p.Send(nil, buf); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- p.Send(nil, buf) }() // spins on the full ring
	time.Sleep(30 * time.Millisecond)
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Send on a full ring after Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send still spinning 10 s after Close")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(yields) == 0 {
		t.Fatalf("no yield in %v on a full ring", time.Since(start))
	}
	last := start
	for i, at := range yields {
		if gap := at.Sub(last); gap < time.Duration(spinYieldAfter) {
			t.Fatalf("yield %d of %d came %v after the previous one (or the first spin), want >= %v",
				i, len(yields), gap, time.Duration(spinYieldAfter))
		}
		last = at
	}
}
