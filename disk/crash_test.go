package disk

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a child that appends under load and prints every
// acknowledged (written-level) append; the parent SIGKILLs it at random moments, reopens the log
// and checks that every acknowledged batch is there, intact, at its offset, in order.

const (
	crashDirEnv = "SLUICE_CRASH_DIR"
	crashIDEnv  = "SLUICE_CRASH_ID0"
	soakEnv     = "SLUICE_SOAK"
)

func crashOptions(dir string) Options {
	o := testOptions(dir)
	o.SegmentBytes = 256 << 10
	return o
}

// crashBatch is the batch for an id: the parent regenerates it to check the stored bytes.
func crashBatch(tb testing.TB, id uint64) []byte {
	return testBatch(tb, id, 1+int(id%4), int(id%700), int64(id))
}

// crashWorkload appends from three goroutines and writes "writer id base ok" per acknowledged
// append to out. It stops after limit appends per writer (0: never).
func crashWorkload(tb testing.TB, dir string, id0 uint64, out io.Writer, limit int) error {
	l, err := Open(crashOptions(dir))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; limit == 0 || i < limit; i++ {
				id := id0 + uint64(w)<<32 + uint64(i)
				res, err := l.Append(crashBatch(tb, id))
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				_, err = fmt.Fprintf(out, "%d %d %d ok\n", w, id, res.BaseOffset)
				mu.Unlock()
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		l.Close()
		return err
	}
	return l.Close()
}

type crashAck struct {
	writer int
	id     uint64
	base   int64
}

func parseAcks(r io.Reader) []crashAck {
	var acks []crashAck
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[3] != "ok" { // a line cut by the kill
			continue
		}
		w, _ := strconv.Atoi(f[0])
		id, _ := strconv.ParseUint(f[1], 10, 64)
		base, _ := strconv.ParseInt(f[2], 10, 64)
		acks = append(acks, crashAck{w, id, base})
	}
	return acks
}

// verifyAcks reopens the log and checks every acknowledged append.
func verifyAcks(t *testing.T, dir string, acks []crashAck) Recovery {
	t.Helper()
	l := mustOpen(t, crashOptions(dir))
	defer l.Close()
	byBase := map[int64][]byte{}
	for _, s := range readAll(t, l, 1<<20) { // checks validity and dense offsets
		byBase[s.base] = s.bytes
	}
	last := map[int]int64{}
	for _, a := range acks {
		got, ok := byBase[a.base]
		if !ok {
			t.Fatalf("acknowledged append %d at offset %d is missing (log ends at %d)", a.id, a.base, l.NextOffset())
		}
		if err := sameBatch(got, crashBatch(t, a.id), a.base); err != nil {
			t.Fatalf("acknowledged append %d at offset %d: %v", a.id, a.base, err)
		}
		if p, ok := last[a.writer]; ok && a.base <= p {
			t.Fatalf("writer %d: offsets out of order (%d after %d)", a.writer, a.base, p)
		}
		last[a.writer] = a.base
	}
	return l.Recovery()
}

// TestCrashChild is the child's body when the crash test runs it; run directly it checks the
// workload itself: every acknowledgement it prints names a stored, intact batch.
func TestCrashChild(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		id0, _ := strconv.ParseUint(os.Getenv(crashIDEnv), 10, 64)
		if err := crashWorkload(t, dir, id0, os.Stdout, 0); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		return
	}
	dir := t.TempDir()
	var out strings.Builder
	if err := crashWorkload(t, dir, 0, &out, 100); err != nil {
		t.Fatal(err)
	}
	acks := parseAcks(strings.NewReader(out.String()))
	if len(acks) != 300 {
		t.Fatalf("%d acknowledgements, want 300", len(acks))
	}
	verifyAcks(t, dir, acks)
}

func TestCrash(t *testing.T) {
	iters, budget := 4, 30*time.Second
	if os.Getenv(soakEnv) == "1" {
		iters, budget = 200, 10*time.Minute
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	start := time.Now()
	var acks []crashAck
	repaired := 0
	for it := 0; it < iters && time.Since(start) < budget; it++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s=%d", crashIDEnv, uint64(it+1)<<40))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got := make(chan []crashAck)
		go func() { got <- parseAcks(stdout) }()
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		batch := <-got
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("child exited before the kill: %v", err)
		}
		acks = append(acks, batch...)
		rec := verifyAcks(t, dir, acks)
		if rec.InvalidPosition >= 0 || len(rec.Removed) > 0 {
			repaired++
		}
		t.Logf("iteration %d: %d acknowledged appends so far; recovery %+v", it, len(acks), rec)
	}
	if len(acks) == 0 {
		t.Fatal("the child acknowledged nothing")
	}
	t.Logf("%d acknowledged appends survived; %d recoveries repaired something", len(acks), repaired)
}
