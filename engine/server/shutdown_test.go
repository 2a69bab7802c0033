package server

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// TestCloseAnswersStoredProduces: a client pipelines fsync-level produces (one record each) while the
// server is closed. Every produce the partition stored must have been answered with its offset
// before the connection closed, and every other one refused with CodeShuttingDown or left unread:
// answered and stored agree exactly.
func TestCloseAnswersStoredProduces(t *testing.T) {
	for round := range 5 {
		dir := t.TempDir()
		e, err := engine.Open(engine.Options{DataDir: dir, MemoryDir: filepath.Join(dir, "mem"), SegmentBytes: 4 << 20, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.CreateTopic(wire.TopicConfig{Name: "g", Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		s, err := Start(Options{Addr: "127.0.0.1:0", Engine: e, Loops: 2, Logger: quiet})
		if err != nil {
			e.Close()
			t.Fatal(err)
		}
		c := dial(t, s)
		c.hello()
		const n = 20_000
		go func() {
			batch := batchOf(t, 1, "g")
			var buf []byte
			for corr := uint32(100); corr < 100+n; corr++ {
				buf = mustAppendMsg(buf[:0], wire.OpProduce, 0, corr, &wire.Produce{Durability: wire.DurabilityFsync, Partition: 0, Topic: []byte("g"), Batches: batch})
				if _, err := c.c.Write(buf); err != nil {
					return // the server closed the connection
				}
			}
		}()
		var answered atomic.Int64
		acked := map[int64]uint32{} // offset -> corr
		refused := 0
		done := make(chan error, 1)
		go func() {
			for {
				f, err := c.next()
				if err != nil {
					c.c.Close() // as a client does once the broker has closed its side
					done <- nil
					return
				}
				switch {
				case f.Op == wire.OpError:
					var eb wire.ErrorBody
					if err := eb.Decode(f.Body); err != nil {
						done <- err
						return
					}
					switch {
					case f.Corr != 0 && eb.Code == wire.CodeShuttingDown:
						refused++
					case f.Corr != 0 && eb.Code == wire.CodeThrottled:
						// Past MaxPendingAcks produces awaiting fsync: refused, nothing stored.
					default:
						done <- fmt.Errorf("error frame %d for request %d: %s", eb.Code, f.Corr, eb.Message)
						return
					}
				case f.Op == wire.OpProduce:
					var pr wire.ProduceReply
					if err := pr.Decode(f.Body); err != nil {
						done <- err
						return
					}
					acked[pr.BaseOffset] = f.Corr
				}
				answered.Add(1)
			}
		}()
		deadline := time.Now().Add(20 * time.Second)
		for answered.Load() < int64(500*(round+1)) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d answers", round, answered.Load())
			}
			time.Sleep(time.Millisecond)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: unexpected answer: %v", round, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: the connection outlived Close", round)
		}
		stored := e.TopicByName("g").Partition(0).NextOffset()
		missing := 0
		for off := range stored {
			if _, ok := acked[off]; !ok {
				missing++
			}
		}
		if missing > 0 || int64(len(acked)) != stored {
			t.Errorf("round %d: %d records stored, %d answered with an offset (%d stored ones unanswered), %d refused",
				round, stored, len(acked), missing, refused)
		}
		t.Logf("round %d: %d stored and answered, %d refused with CodeShuttingDown", round, stored, refused)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
