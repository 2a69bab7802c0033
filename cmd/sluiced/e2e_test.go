package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// These tests run the real sluiced binary as a child process on loopback and drive it with the Go
// client, as a deployment would.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func sluicedBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluiced-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sluiced")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// broker is a running sluiced child process.
type broker struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	metrics string
	data    string
	args    []string
	bin     string // the sluiced binary; empty: sluicedBinary's
	logs    *strings.Builder
	mu      sync.Mutex
	exited  chan error
}

func startBroker(t *testing.T, data string, extra ...string) *broker {
	t.Helper()
	b := &broker{t: t, addr: freePort(t), metrics: freePort(t), data: data, args: extra}
	b.start()
	t.Cleanup(func() { b.kill() })
	return b
}

func (b *broker) start() {
	b.t.Helper()
	args := append([]string{"--data", b.data, "--listen", b.addr, "--metrics", b.metrics, "--log-level", "warn",
		"--kafka-listen", "", "--mqtt-listen", ""}, b.args...) // the Kafka and MQTT faces off: their default ports would be shared by every broker started
	bin := b.bin
	if bin == "" {
		bin = sluicedBinary(b.t)
	}
	b.cmd = exec.Command(bin, args...)
	b.logs = &strings.Builder{}
	stderr, _ := b.cmd.StderrPipe()
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			b.mu.Lock()
			b.logs.WriteString(s.Text() + "\n")
			b.mu.Unlock()
		}
	}()
	b.exited = make(chan error, 1)
	go func() { b.exited <- b.cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-b.exited:
			b.t.Fatalf("sluiced exited at start: %v\n%s", err, b.log())
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("sluiced did not listen on %s\n%s", b.addr, b.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *broker) log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logs.String()
}

// stop sends SIGTERM and requires a clean exit.
func (b *broker) stop() {
	b.t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-b.exited:
		if err != nil {
			b.t.Fatalf("sluiced exited with %v after SIGTERM\n%s", err, b.log())
		}
	case <-time.After(20 * time.Second):
		b.t.Fatalf("sluiced did not stop after SIGTERM\n%s", b.log())
	}
	b.cmd = nil
}

func (b *broker) kill() {
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Kill()
		<-b.exited
		b.cmd = nil
	}
}

// metric reads one sample from the broker's Prometheus endpoint.
func (b *broker) metric(t *testing.T, name, labels string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + b.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	series := name
	if labels != "" { // the exposition sorts labels by name
		l := strings.Split(labels, ",")
		sort.Strings(l)
		series += "{" + strings.Join(l, ",") + "}"
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		t.Fatalf("metric %s{%s} not found in\n%s", name, labels, body)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64) // 1e+06 for a million
	if err != nil {
		t.Fatalf("metric %s{%s}: %v", name, labels, err)
	}
	return int64(v)
}

func dialBroker(t *testing.T, b *broker) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, b.addr, client.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond),
		client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func keyOf(i int) string   { return "key-" + strconv.Itoa(i%1000) }
func valueOf(i int) string { return "value-" + strconv.Itoa(i) + "-" + strings.Repeat("x", i%17) }

// produceN produces records 0..n-1 with keys spread over 1000 keys.
func produceN(t *testing.T, c *client.Client, topic string, n int, d wire.Durability) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := c.Producer(topic, client.WithDurability(d), client.WithLinger(2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var failed error
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		err := p.Produce(ctx, client.Record{Key: []byte(keyOf(i)), Value: []byte(valueOf(i))}, func(r client.Result) {
			if r.Err != nil {
				mu.Lock()
				failed = r.Err
				mu.Unlock()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if failed != nil {
		t.Fatal(failed)
	}
}

// checker verifies what consumers see: per partition, offsets strictly increase; per key, values
// arrive in produce order; every record is byte-identical to what was produced.
type checker struct {
	t        *testing.T
	mu       sync.Mutex
	seen     map[int]int // record index -> times seen
	lastOff  map[int32]int64
	lastIdx  map[string]int
	partOf   map[string]int32
	distinct int
}

func newChecker(t *testing.T) *checker {
	return &checker{t: t, seen: map[int]int{}, lastOff: map[int32]int64{}, lastIdx: map[string]int{}, partOf: map[string]int32{}}
}

func (k *checker) add(m *client.Message, strict bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v := string(m.Value)
	rest, ok := strings.CutPrefix(v, "value-")
	idxStr, _, _ := strings.Cut(rest, "-")
	i, err := strconv.Atoi(idxStr)
	if !ok || err != nil || v != valueOf(i) || string(m.Key) != keyOf(i) {
		k.t.Fatalf("record at %d/%d is not one that was produced: key %q value %q", m.Partition, m.Offset, m.Key, m.Value)
	}
	if p, ok := k.partOf[keyOf(i)]; ok && p != m.Partition {
		k.t.Fatalf("key %s in partitions %d and %d", keyOf(i), p, m.Partition)
	}
	k.partOf[keyOf(i)] = m.Partition
	if strict {
		if last, ok := k.lastOff[m.Partition]; ok && m.Offset != last+1 {
			k.t.Fatalf("partition %d: offset %d after %d", m.Partition, m.Offset, last)
		}
		if last, ok := k.lastIdx[keyOf(i)]; ok && i <= last {
			k.t.Fatalf("key %s: record %d after %d", keyOf(i), i, last)
		}
	}
	k.lastOff[m.Partition] = m.Offset
	k.lastIdx[keyOf(i)] = i
	if k.seen[i] == 0 {
		k.distinct++
	}
	k.seen[i]++
}

func (k *checker) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.distinct
}

func consumeAll(t *testing.T, c *client.Client, topic string, n int, k *checker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cons, err := c.Subscribe(ctx, topic, client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	for got := 0; got < n; got++ {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d records: %v", got, n, err)
		}
		k.add(m, true)
	}
	if k.count() != n {
		t.Fatalf("%d distinct records, want %d", k.count(), n)
	}
}

func createTopic(t *testing.T, c *client.Client, name string, parts uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, client.TopicConfig{Name: name, Partitions: parts}); err != nil {
		t.Fatal(err)
	}
}

// TestMillionRecordsThroughRestart: 1,000,000 keyed records over 4 partitions come back complete,
// in per-partition and per-key order, byte-identical — after a clean restart and after SIGKILL.
func TestMillionRecordsThroughRestart(t *testing.T) {
	const n = 1_000_000
	b := startBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "events", 4)
	produceN(t, c, "events", n, wire.DurabilityWritten)
	c.Close()

	b.stop() // graceful: drain, fsync, close
	b.start()
	c = dialBroker(t, b)
	consumeAll(t, c, "events", n, newChecker(t))
	var total int64
	for p := 0; p < 4; p++ {
		total += b.metric(t, "sluice_partition_end_offset", fmt.Sprintf(`topic="events",partition="%d"`, p))
	}
	if total != n {
		t.Fatalf("partitions hold %d records, want %d", total, n)
	}

	// A crash loses nothing acknowledged at written durability: the page cache holds it.
	createTopic(t, c, "crash", 2)
	produceN(t, c, "crash", 20_000, wire.DurabilityWritten)
	c.Close()
	b.kill()
	b.start()
	c = dialBroker(t, b)
	consumeAll(t, c, "crash", 20_000, newChecker(t))
}

// TestGroupMembersShareAndResume: a group of 3 shares 4 partitions; as members leave and join, the
// others resume from the committed offsets; together they see every record.
func TestGroupMembersShareAndResume(t *testing.T) {
	const n = 30_000
	b := startBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "jobs", 4)
	produceN(t, c, "jobs", n, wire.DurabilityWritten)

	k := newChecker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	join := func() *client.Consumer {
		cons, err := c.Subscribe(ctx, "jobs", client.WithGroup("workers"), client.WithStartCommitted())
		if err != nil {
			t.Fatal(err)
		}
		return cons
	}
	// consume reads up to max records from cons, committing as it goes.
	consume := func(cons *client.Consumer, max int) int {
		got := 0
		for got < max && k.count() < n {
			mctx, mcancel := context.WithTimeout(ctx, 2*time.Second)
			m, err := cons.Next(mctx)
			mcancel()
			if err != nil {
				break // nothing more for this member now
			}
			k.add(m, false)
			got++
			if got%500 == 0 {
				if err := cons.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := cons.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return got
	}
	members := []*client.Consumer{join(), join(), join()}
	waitAssigned(t, members, 4)
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() { defer wg.Done(); consume(m, 3000) }()
	}
	wg.Wait()
	// One member leaves; a new one joins; the survivors carry on from the committed offsets.
	members[0].Close(ctx)
	members = append(members[1:], join())
	waitAssigned(t, members, 4)
	for k.count() < n {
		before := k.count()
		for _, m := range members {
			wg.Add(1)
			go func() { defer wg.Done(); consume(m, 4000) }()
		}
		wg.Wait()
		if k.count() == before {
			t.Fatalf("group stalled at %d of %d records", before, n)
		}
	}
	info, err := c.DescribeGroup(ctx, "workers")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Members) != 3 {
		t.Fatalf("group has %d members, want 3", len(info.Members))
	}
	var committed int64
	for _, o := range info.Offsets {
		committed += o.Committed
	}
	if committed != n {
		t.Fatalf("committed offsets add up to %d, want %d", committed, n)
	}
	for _, m := range members {
		m.Close(ctx)
	}
}

// waitAssigned waits until the members' assignments cover parts partitions without overlap.
func waitAssigned(t *testing.T, members []*client.Consumer, parts int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen, dup := map[int32]bool{}, false
		for _, m := range members {
			for _, p := range m.Assigned() {
				dup = dup || seen[p]
				seen[p] = true
			}
		}
		if len(seen) == parts && !dup {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("assignments never covered %d partitions exactly: %v", parts, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFsyncAcksFollowTheSync: an fsync-level produce is acknowledged only once the partition's synced
// offset (the broker's own gauge) covers it.
func TestFsyncAcksFollowTheSync(t *testing.T) {
	b := startBroker(t, t.TempDir(), "--flush-interval", "20ms")
	c := dialBroker(t, b)
	createTopic(t, c, "durable", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := c.Producer("durable", client.WithDurability(wire.DurabilityFsync))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	for i := 0; i < 10; i++ {
		r, err := p.Publish(ctx, client.Record{Value: []byte("must survive power loss")})
		if err != nil {
			t.Fatal(err)
		}
		if synced := b.metric(t, "sluice_partition_synced_offset", `topic="durable",partition="0"`); synced <= r.Offset {
			t.Fatalf("record %d acknowledged at fsync durability while the synced offset is %d", r.Offset, synced)
		}
	}
	// The metrics count what happened: 10 records, and at least one sync round in the histogram.
	if n := b.metric(t, "sluice_produced_records_total", ""); n != 10 {
		t.Fatalf("sluice_produced_records_total %d, want 10", n)
	}
	if n := b.metric(t, "sluice_sync_duration_seconds_bucket", `le="+Inf"`); n < 1 {
		t.Fatalf("sync histogram counted %d rounds", n)
	}
}

// rssAnon reads a process's resident anonymous memory (heap, stacks, gnet buffers) in bytes. Pages
// of the mapped segment files are page cache, shared with the kernel and reclaimable, and are
// reported apart as RssFile: the bound is on the memory the broker itself allocates.
func rssAnon(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RssAnon:\s+(\d+) kB$`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("no RssAnon in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// memoryBound is the documented ceiling on sluiced's anonymous memory under a stalled consumer
// (docs/architecture.md, "Memory bounds").
const memoryBound = 192 << 20

// TestStalledConsumerKeepsMemoryBounded: a consumer that grants 4 GiB of credit and then never reads
// its socket, while 256 MiB are produced: the broker's anonymous memory stays under the bound,
// because deliveries pause once a connection's outbound buffer passes MaxOutboundBytes.
func TestStalledConsumerKeepsMemoryBounded(t *testing.T) {
	b := startBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "flood", 2)

	stalled, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	var req []byte
	req, start := wire.BeginFrame(req, wire.OpHello, 0, 1)
	req = wire.EndFrame((&wire.Hello{Version: wire.ProtocolVersion}).Append(req), start)
	req, start = wire.BeginFrame(req, wire.OpSubscribe, 0, 2)
	req = wire.EndFrame((&wire.Subscribe{SubID: 1, Topic: "flood", Partition: -1, Start: wire.StartEarliest, Credit: 1<<32 - 1}).Append(req), start)
	if _, err := stalled.Write(req); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := c.Producer("flood", client.WithDurability(wire.DurabilityWritten), client.WithMaxBatchBytes(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("m", 4096))
	var peak int64
	for i := 0; i < 65536; i++ { // 256 MiB
		if err := p.Produce(ctx, client.Record{Value: value}, nil); err != nil {
			t.Fatal(err)
		}
		if i%4096 == 0 {
			peak = max(peak, rssAnon(t, b.cmd.Process.Pid))
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let deliveries to the stalled consumer run into the cap
	peak = max(peak, rssAnon(t, b.cmd.Process.Pid))
	t.Logf("sluiced anonymous RSS peak %d MiB with a stalled consumer and 256 MiB produced", peak>>20)
	if peak > memoryBound {
		t.Fatalf("sluiced anonymous RSS reached %d MiB, bound %d MiB", peak>>20, memoryBound>>20)
	}
	// The broker still serves: a fresh consumer reads everything.
	cons, err := c.Subscribe(ctx, "flood", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	for i := 0; i < 65536; i++ {
		if _, err := cons.Next(ctx); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}

// TestPreAuthFloodKeepsMemoryBounded: 16 connections each send the header of a frame just under
// 16 MiB and then its body but for the last byte, before authenticating (half before Hello, half
// after it). The broker refuses each from its header (CodeFrameTooLarge) instead of buffering the
// body, so its anonymous memory stays near its idle value; the report measured +351 MiB. Then a
// client holding a token still works.
func TestPreAuthFloodKeepsMemoryBounded(t *testing.T) {
	b := startBroker(t, t.TempDir(), "--token", "tok=alice", "--handshake-timeout", "30s", "--max-unauthenticated", "100")
	idle := rssAnon(t, b.cmd.Process.Pid)
	var hello []byte
	hello, start := wire.BeginFrame(hello, wire.OpHello, 0, 1)
	hello = wire.EndFrame((&wire.Hello{Version: wire.ProtocolVersion}).Append(hello), start)
	const frame = wire.DefaultMaxFrame - 1
	body := make([]byte, frame-wire.FrameHeaderSize-1)
	codes := make(chan wire.Code, 16)
	var wg sync.WaitGroup
	for i := range 16 {
		nc, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		var msg []byte
		if i%2 == 1 {
			msg = append(msg, hello...)
		}
		hdr := make([]byte, wire.FrameHeaderSize)
		wire.PutFrameHeader(hdr, wire.OpProduce, 0, 2, frame-wire.FrameHeaderSize)
		msg = append(msg, hdr...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := nc.Write(msg); err != nil {
				return
			}
			_, _ = nc.Write(body) // fails once the broker has closed the connection
		}()
		go func() { // the last error frame before the broker closes, CodeOK if none
			code := wire.CodeOK
			dec := wire.NewDecoder(wire.DefaultMaxFrame)
			buf := make([]byte, 4096)
			for {
				n, err := nc.Read(buf)
				_ = dec.Feed(buf[:n], func(f wire.Frame) error {
					var eb wire.ErrorBody
					if f.Op == wire.OpError && eb.Decode(f.Body) == nil {
						code = eb.Code
					}
					return nil
				})
				if err != nil {
					codes <- code
					return
				}
			}
		}()
	}
	wg.Wait() // every body is written or refused
	peak := rssAnon(t, b.cmd.Process.Pid)
	t.Logf("sluiced anonymous RSS %d MiB idle, %d MiB after 16 pre-auth 16 MiB frames", idle>>20, peak>>20)
	if peak > idle+64<<20 {
		t.Fatalf("16 unauthenticated partial frames grew sluiced's anonymous RSS from %d to %d MiB", idle>>20, peak>>20)
	}
	for range 16 {
		if code := <-codes; code != wire.CodeFrameTooLarge {
			t.Fatalf("a pre-auth 16 MiB frame was answered with %v, want frame too large", code)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, b.addr, client.WithAuthToken("tok"), client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConfigFile: settings come from a JSON config whose keys are the flag names; flags on the command
// line override it; an unknown key is refused with a clear error.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluiced.json")
	if err := os.WriteFile(cfg, []byte(`{"partitions": 3, "auto-create": true, "listen": "127.0.0.1:1", "retention-age": "168h", "token": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// --listen (set by startBroker) overrides the file's unusable address; partitions comes from the file.
	b := startBroker(t, filepath.Join(dir, "data"), "--config", cfg)
	c := dialBroker(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The file turns auto-create on (off by default): a produce creates the topic, with the file's
	// partition count.
	if code := rawProduce(t, b.addr, "", "from-config"); code != wire.CodeOK {
		t.Fatalf("produce creating a topic: %v", code)
	}
	info, err := c.DescribeTopic(ctx, "from-config")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Partitions) != 3 {
		t.Fatalf("auto-created topic has %d partitions, want 3 from the config file", len(info.Partitions))
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"partitionz": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sluicedBinary(t), "--config", bad, "--data", filepath.Join(dir, "bad")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown key "partitionz"`) {
		t.Fatalf("bad config: err %v, output %q", err, out)
	}
}
