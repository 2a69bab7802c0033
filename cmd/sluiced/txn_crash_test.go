package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
)

// txnTargets are the partitions every transaction of TestTxnCrashLoop writes: three partitions of
// two topics.
var txnTargets = []struct {
	topic string
	part  int32
}{{"txa", 0}, {"txa", 1}, {"txb", 0}}

// txnRecordsPerPart is how many records a transaction writes to each partition (two batches).
const txnRecordsPerPart = 4

// TestTxnCrashLoop kills the broker (SIGKILL) at random points of multi-partition transactions:
// while the batches are produced, while the commit is under way (a delay drawn from the last
// commit's duration), or just after it answered. Then a read-committed consumer reads everything
// and requires every transaction whole or absent, never a part, and every commit the broker
// answered whole. 50 cycles (a few seconds); SLUICE_SOAK=1 runs 200.
func TestTxnCrashLoop(t *testing.T) {
	cycles := 50
	if os.Getenv("SLUICE_SOAK") != "" {
		cycles = 200
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 17))
	data := t.TempDir()
	b := startBroker(t, data)
	admin := dialBroker(t, b)
	createTopic(t, admin, "txa", 2)
	createTopic(t, admin, "txb", 1)
	admin.Close()
	txnLog := filepath.Join(data, "offsets", "txn.log")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	acked := map[int]bool{} // transactions whose Commit the broker answered
	commitDur := 5 * time.Millisecond
	stages := map[string]int{}
	start := time.Now()
	for cycle := range cycles {
		c := dialBroker(t, b)
		tx := c.NewTransaction()
		// 0: mid-produce; 1: mid-commit, at a delay drawn from the last commit's duration; 2: as soon
		// as the decision is in the transaction log (the markers being written); 3: after the
		// commit answered.
		stage := rng.IntN(4)
		cut := len(txnTargets) * 2
		if stage == 0 {
			cut = rng.IntN(cut)
		}
		for i := 0; i < cut; i++ {
			tg := txnTargets[i%len(txnTargets)]
			var recs []client.Record
			for j := range txnRecordsPerPart / 2 {
				recs = append(recs, client.Record{Value: []byte(fmt.Sprintf("t%d-%s-%d-%d", cycle, tg.topic, tg.part, i/len(txnTargets)*2+j))})
			}
			if err := tx.Produce(ctx, tg.topic, tg.part, recs...); err != nil {
				t.Fatalf("cycle %d: produce: %v\n%s", cycle, err, b.log())
			}
		}
		switch stage {
		case 0:
			stages["mid-produce"]++
		case 1, 2:
			done := make(chan error, 1)
			t0 := time.Now()
			logSize := fileSize(txnLog)
			go func() { done <- tx.Commit(ctx) }()
			if stage == 1 {
				stages["mid-commit"]++
				time.Sleep(time.Duration(rng.Int64N(int64(commitDur) * 3 / 2)))
			} else {
				stages["after-decision"]++
				deadline := time.Now().Add(10 * time.Second)
				for fileSize(txnLog) == logSize && time.Now().Before(deadline) {
					time.Sleep(50 * time.Microsecond)
				}
			}
			b.kill()
			if err := <-done; err == nil {
				acked[cycle] = true
				commitDur = time.Since(t0)
			}
		case 3:
			stages["after-commit"]++
			t0 := time.Now()
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("cycle %d: commit: %v\n%s", cycle, err, b.log())
			}
			commitDur = time.Since(t0)
			acked[cycle] = true
		}
		b.kill() // a no-op when the commit stage killed it already
		c.Close()
		b.start()
	}
	elapsed := time.Since(start)

	// A last transaction marks the end of every partition: once a consumer has it, it has read
	// everything before it.
	c := dialBroker(t, b)
	tx := c.NewTransaction()
	for _, tg := range txnTargets {
		if err := tx.Produce(ctx, tg.topic, tg.part, client.Record{Value: []byte("end")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, topic := range []string{"txa", "txb"} {
		cons, err := c.Subscribe(ctx, topic, client.WithStartEarliest())
		if err != nil {
			t.Fatal(err)
		}
		ends := 0
		want := 1
		if topic == "txa" {
			want = 2
		}
		rctx, rcancel := context.WithTimeout(ctx, time.Minute)
		for ends < want {
			m, err := cons.Next(rctx)
			if err != nil {
				t.Fatalf("reading %s: %v (ends seen %d)\n%s", topic, err, ends, b.log())
			}
			v := string(m.Value)
			if v == "end" {
				ends++
				continue
			}
			n, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(v, "t"), "-", 2)[0])
			if err != nil {
				t.Fatalf("record %q", v)
			}
			counts[n]++
		}
		rcancel()
		_ = cons.Close(ctx)
	}
	whole, none := 0, 0
	for cycle := range cycles {
		switch got := counts[cycle]; {
		case got == len(txnTargets)*txnRecordsPerPart:
			whole++
		case got == 0 && !acked[cycle]:
			none++
		case got == 0:
			t.Errorf("transaction %d: its commit was answered, and none of it is visible", cycle)
		default:
			t.Errorf("transaction %d: %d of %d records visible: a part of a transaction", cycle, got, len(txnTargets)*txnRecordsPerPart)
		}
	}
	for n := range counts {
		if n < 0 || n >= cycles {
			t.Errorf("records of an unknown transaction %d", n)
		}
	}
	t.Logf("%d cycles in %v (%v per cycle): kills %v; %d transactions visible whole (%d commits answered), %d not at all",
		cycles, elapsed.Round(time.Millisecond), (elapsed / time.Duration(cycles)).Round(time.Millisecond), stages, whole, len(acked), none)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("out of time")
	}
}

// fileSize is path's size, -1 when it cannot be read.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}
