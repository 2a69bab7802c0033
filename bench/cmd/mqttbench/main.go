// Command mqttbench measures sluiced's MQTT listener beside its native protocol, in one run on one
// broker: publish->subscribe throughput and open-loop latency at MQTT QoS 0 and QoS 1 (Eclipse
// paho.golang, MQTT 5) and with Sluice's Go client at durability none and written (the durabilities
// the MQTT listener acknowledges QoS 0 and QoS 1 at by default), then the broker's resident memory
// holding 10,000 idle MQTT connections. It starts the sluiced binary it is given on loopback, on a
// fresh data directory, and raises its own file-descriptor limit (inherited by sluiced) first.
//
//	go build -o /tmp/sluiced ./cmd/sluiced
//	go run ./bench/cmd/mqttbench -sluiced /tmp/sluiced
//
// Every round runs the four throughput figures and the four open-loop figures, in an order that
// alternates between rounds; ratios are to the native figure of the same round. docs/benchmarks.md
// ("MQTT listener beside the native protocol") holds a run.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/eclipse/paho.golang/paho"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// brokerArgs collects repeated -broker-arg flags.
type brokerArgs []string

func (a *brokerArgs) String() string     { return strings.Join(*a, " ") }
func (a *brokerArgs) Set(s string) error { *a = append(*a, s); return nil }

type config struct {
	sluiced  string
	n        int           // messages per throughput figure
	size     int           // payload bytes, at least 8 (the send time)
	rate     int           // open-loop messages per second
	duration time.Duration // open-loop run length per figure
	conns    int           // idle MQTT connections
	rounds   int
	extra    brokerArgs
}

func main() {
	var cfg config
	flag.StringVar(&cfg.sluiced, "sluiced", "", "the sluiced `binary` to start (required)")
	flag.IntVar(&cfg.n, "n", 200_000, "messages per throughput figure")
	flag.IntVar(&cfg.size, "size", 100, "payload `bytes` (at least 8)")
	flag.IntVar(&cfg.rate, "rate", 5000, "open-loop messages per second")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "open-loop run length per figure")
	flag.IntVar(&cfg.conns, "conns", 10_000, "idle MQTT connections to hold (0: skip)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds of the throughput and latency figures")
	flag.Var(&cfg.extra, "broker-arg", "an extra sluiced argument (repeatable), e.g. -broker-arg=--mqtt-max-connections=20000")
	flag.Parse()
	if cfg.sluiced == "" || cfg.size < 8 || cfg.n < 1 || cfg.rate < 1 || cfg.rounds < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		log.Fatal(err)
	}
}

func run(cfg config) error {
	limit, err := raiseFileLimit(cfg.conns + 1024)
	if err != nil {
		return err
	}
	fmt.Printf("file descriptors (ulimit -n, inherited by sluiced): %d\n", limit)
	fmt.Printf("load average at start: %s\n", loadAvg())

	b, err := startSluiced(cfg)
	if err != nil {
		return err
	}
	defer b.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	c, err := client.Dial(ctx, b.native, client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	defer c.Close()

	type figure struct {
		name string
		run  func(topic string) (result, error)
	}
	thr := []figure{
		{"MQTT QoS 0", func(tp string) (result, error) { return mqttRun(ctx, b.mqtt, tp, 0, cfg, false) }},
		{"native, none", func(tp string) (result, error) { return nativeRun(ctx, c, tp, wire.DurabilityNone, cfg, false) }},
		{"MQTT QoS 1", func(tp string) (result, error) { return mqttRun(ctx, b.mqtt, tp, 1, cfg, false) }},
		{"native, written", func(tp string) (result, error) { return nativeRun(ctx, c, tp, wire.DurabilityWritten, cfg, false) }},
	}
	open := []figure{
		{"MQTT QoS 0", func(tp string) (result, error) { return mqttRun(ctx, b.mqtt, tp, 0, cfg, true) }},
		{"native, none", func(tp string) (result, error) { return nativeRun(ctx, c, tp, wire.DurabilityNone, cfg, true) }},
		{"MQTT QoS 1", func(tp string) (result, error) { return mqttRun(ctx, b.mqtt, tp, 1, cfg, true) }},
		{"native, written", func(tp string) (result, error) { return nativeRun(ctx, c, tp, wire.DurabilityWritten, cfg, true) }},
	}
	topicN := 0
	runAll := func(round int, kind string, figs []figure) error {
		res := make([]result, len(figs))
		order := []int{0, 1, 2, 3}
		if round%2 == 0 {
			order = []int{1, 0, 3, 2}
		}
		for _, i := range order {
			topicN++
			name := fmt.Sprintf("bench.t%d", topicN) // MQTT topic bench/tN
			if err := c.CreateTopic(ctx, client.TopicConfig{Name: name, Partitions: 1}); err != nil {
				return err
			}
			r, err := figs[i].run(name)
			if err != nil {
				return fmt.Errorf("round %d %s %s: %w", round, kind, figs[i].name, err)
			}
			res[i] = r
		}
		for i, r := range res {
			base := res[i|1] // the native figure of the pair
			fmt.Printf("round %d | %-10s | %-15s | %9.0f msg/s | x%.2f | p50 %8s | p99 %8s | p99.9 %8s | max %8s | %d msgs\n",
				round, kind, figs[i].name, r.rate(), r.rate()/base.rate(), r.p(50), r.p(99), r.p(99.9), r.max(), r.msgs)
		}
		return nil
	}
	for round := 1; round <= cfg.rounds; round++ {
		if err := runAll(round, "throughput", thr); err != nil {
			return err
		}
		if err := runAll(round, "open-loop", open); err != nil {
			return err
		}
		fmt.Printf("load average after round %d: %s\n", round, loadAvg())
	}
	if cfg.conns > 0 {
		if err := idle(b, cfg.conns); err != nil {
			return err
		}
	}
	fmt.Printf("load average at end: %s\n", loadAvg())
	return nil
}

// raiseFileLimit raises RLIMIT_NOFILE's soft limit to its hard limit and fails if that is below need.
func raiseFileLimit(need int) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("raising the file-descriptor limit to %d: %w", rl.Max, err)
	}
	if rl.Cur < uint64(need) {
		return rl.Cur, fmt.Errorf("file-descriptor hard limit %d is below the %d needed: raise ulimit -Hn", rl.Cur, need)
	}
	return rl.Cur, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// sluiced is the broker child process.
type sluiced struct {
	cmd          *exec.Cmd
	native, mqtt string
	data         string
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startSluiced(cfg config) (*sluiced, error) {
	data, err := os.MkdirTemp("", "mqttbench-data")
	if err != nil {
		return nil, err
	}
	b := &sluiced{data: data}
	var metrics string
	for _, p := range []*string{&b.native, &b.mqtt, &metrics} {
		if *p, err = freePort(); err != nil {
			return nil, err
		}
	}
	args := append([]string{"--data", filepath.Join(data, "d"), "--listen", b.native, "--mqtt-listen", b.mqtt,
		"--metrics", metrics, "--kafka-listen", "", "--log-level", "warn"}, cfg.extra...)
	b.cmd = exec.Command(cfg.sluiced, args...)
	b.cmd.Stderr = os.Stderr
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	fmt.Printf("sluiced pid %d: %s %s\n", b.cmd.Process.Pid, cfg.sluiced, strings.Join(args, " "))
	for _, addr := range []string{b.native, b.mqtt} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			nc, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				nc.Close()
				break
			}
			if time.Now().After(deadline) {
				b.stop()
				return nil, fmt.Errorf("sluiced does not listen on %s: %w", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return b, nil
}

func (b *sluiced) stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(b.data)
}

// result is one figure: messages received, the time from the first send to the last receipt, and
// the latencies (receipt minus send time; in open loop, minus the time the schedule gave the send).
type result struct {
	msgs    int
	elapsed time.Duration
	lat     *hdr.Histogram // nanoseconds
}

func newHist() *hdr.Histogram { return hdr.New(1_000, int64(60*time.Second), 3) }

func (r result) rate() float64 { return float64(r.msgs) / r.elapsed.Seconds() }

func (r result) p(q float64) time.Duration {
	return time.Duration(r.lat.ValueAtQuantile(q)).Round(time.Microsecond)
}

func (r result) max() time.Duration { return time.Duration(r.lat.Max()).Round(time.Microsecond) }

// receiver counts messages and records their latency from the send time in their first 8 bytes.
// Deliveries come on one goroutine (the client's); done is closed at want messages.
type receiver struct {
	want  int
	got   atomic.Int64
	lat   *hdr.Histogram // written by the delivering goroutine until done
	last  atomic.Int64   // UnixNano of the latest receipt
	done  chan struct{}
	close sync.Once
}

func newReceiver(want int) *receiver {
	return &receiver{want: want, lat: newHist(), done: make(chan struct{})}
}

func (r *receiver) take(payload []byte) {
	now := time.Now().UnixNano()
	if len(payload) >= 8 {
		_ = r.lat.RecordValue(max(now-int64(binary.LittleEndian.Uint64(payload)), 1_000))
	}
	r.last.Store(now)
	if r.got.Add(1) == int64(r.want) {
		r.close.Do(func() { close(r.done) })
	}
}

// wait waits for every message, or fails after 15 s without progress.
func (r *receiver) wait(ctx context.Context) error {
	seen := int64(-1)
	for {
		select {
		case <-r.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(15 * time.Second):
			n := r.got.Load()
			if n == seen {
				return fmt.Errorf("received %d of %d messages, none in 15 s", n, r.want)
			}
			seen = n
		}
	}
}

// pace calls send n times; in open loop it keeps to rate a second, stamping each payload with the
// time the schedule gave it (a late send counts its lateness), else it stamps the time of sending.
func pace(n, rate int, open bool, payload []byte, send func([]byte) error) (time.Time, error) {
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range n {
		at := time.Now()
		if open {
			at = start.Add(time.Duration(i) * interval)
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
		}
		binary.LittleEndian.PutUint64(payload, uint64(at.UnixNano()))
		if err := send(payload); err != nil {
			return start, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return start, nil
}

func count(cfg config, open bool) int {
	if open {
		return int(cfg.duration.Seconds() * float64(cfg.rate))
	}
	return cfg.n
}

// mqttRun publishes to the MQTT topic of the Sluice topic name with one paho.golang client and
// receives with another, subscribed at the same QoS. QoS 1 publishes are sent without waiting for
// their PUBACK (PublishMethod_AsyncSend), up to the receive maximum the broker announces.
func mqttRun(ctx context.Context, addr, name string, qos byte, cfg config, open bool) (result, error) {
	n := count(cfg, open)
	topic := strings.ReplaceAll(name, ".", "/")
	rcv := newReceiver(n)
	sub, err := dialMQTT(ctx, addr, "bench-sub-"+name, func(pr paho.PublishReceived) (bool, error) {
		rcv.take(pr.Packet.Payload)
		return true, nil
	})
	if err != nil {
		return result{}, err
	}
	defer sub.Disconnect(&paho.Disconnect{})
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: qos}}}); err != nil {
		return result{}, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	pub, err := dialMQTT(ctx, addr, "bench-pub-"+name, nil)
	if err != nil {
		return result{}, err
	}
	defer pub.Disconnect(&paho.Disconnect{})
	payload := make([]byte, cfg.size)
	start, err := pace(n, cfg.rate, open, payload, func(p []byte) error {
		_, err := pub.PublishWithOptions(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: p},
			paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
		return err
	})
	if err != nil {
		return result{}, err
	}
	if err := rcv.wait(ctx); err != nil {
		return result{}, err
	}
	return result{msgs: n, elapsed: time.Unix(0, rcv.last.Load()).Sub(start), lat: rcv.lat}, nil
}

func dialMQTT(ctx context.Context, addr, id string, onPublish func(paho.PublishReceived) (bool, error)) (*paho.Client, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	cfg := paho.ClientConfig{Conn: nc, PacketTimeout: 30 * time.Second}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPublish}
	}
	c := paho.NewClient(cfg)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60}); err != nil {
		return nil, fmt.Errorf("MQTT CONNECT %s: %w", id, err)
	}
	return c, nil
}

// nativeRun produces to the topic with Sluice's Go client at durability d (none: no
// acknowledgement) and consumes it with a subscription of the same client, started before.
func nativeRun(ctx context.Context, c *client.Client, topic string, d wire.Durability, cfg config, open bool) (result, error) {
	n := count(cfg, open)
	rcv := newReceiver(n)
	cons, err := c.Subscribe(ctx, topic, client.WithStartEarliest())
	if err != nil {
		return result{}, err
	}
	defer cons.Close(ctx)
	consErr := make(chan error, 1)
	go func() {
		for range n {
			m, err := cons.Next(ctx)
			if err != nil {
				consErr <- err
				return
			}
			rcv.take(m.Value)
		}
		consErr <- nil
	}()
	p, err := c.Producer(topic, client.WithDurability(d))
	if err != nil {
		return result{}, err
	}
	var prodErr atomic.Pointer[error]
	start, err := pace(n, cfg.rate, open, make([]byte, cfg.size), func(v []byte) error {
		return p.Produce(ctx, client.Record{Value: v}, func(r client.Result) {
			if r.Err != nil {
				prodErr.CompareAndSwap(nil, &r.Err)
			}
		})
	})
	if err != nil {
		return result{}, err
	}
	if err := p.Close(ctx); err != nil {
		return result{}, err
	}
	if e := prodErr.Load(); e != nil {
		return result{}, *e
	}
	if err := rcv.wait(ctx); err != nil {
		return result{}, err
	}
	if err := <-consErr; err != nil {
		return result{}, err
	}
	return result{msgs: n, elapsed: time.Unix(0, rcv.last.Load()).Sub(start), lat: rcv.lat}, nil
}

var statusLine = regexp.MustCompile(`(?m)^(VmRSS|RssAnon|RssFile):\s+(\d+) kB$`)

// rss reads the broker's VmRSS, RssAnon and RssFile from /proc/PID/status, in KiB.
func rss(pid int) (map[string]int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, m := range statusLine.FindAllSubmatch(raw, -1) {
		out[string(m[1])], _ = strconv.ParseInt(string(m[2]), 10, 64)
	}
	return out, nil
}

// connect311 is an MQTT 3.1.1 CONNECT, clean session, keep-alive 0 (none: an idle connection is
// held however long it is silent).
func connect311(id string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, byte(len(id) >> 8), byte(len(id))}
	body = append(body, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// idle opens n MQTT connections from 127.0.0.1 (CONNECT, CONNACK), holds them, and reports the
// broker's memory before, with them open, and after they close; every 100th answers a PINGREQ.
func idle(b *sluiced, n int) error {
	pid := b.cmd.Process.Pid
	time.Sleep(2 * time.Second)
	before, err := rss(pid)
	if err != nil {
		return err
	}
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
			ack := make([]byte, 4)
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				nc, err := d.Dial("tcp", b.mqtt)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i] = nc
				_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := nc.Write(connect311(fmt.Sprintf("idle-%05d", i))); err != nil {
					errs <- fmt.Errorf("connection %d: CONNECT: %w", i, err)
					return
				}
				if _, err := io.ReadFull(nc, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
					errs <- fmt.Errorf("connection %d: CONNACK %x: %v", i, ack, err)
					return
				}
				_ = nc.SetDeadline(time.Time{})
			}
		}()
	}
	wg.Wait()
	close(errs)
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	if err := <-errs; err != nil {
		return err
	}
	took := time.Since(start)
	time.Sleep(5 * time.Second) // let the broker settle (GC, buffers) before reading its memory
	held, err := rss(pid)
	if err != nil {
		return err
	}
	var pinged int
	for i := 0; i < n; i += 100 {
		nc := conns[i]
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		resp := make([]byte, 2)
		if _, err := nc.Write([]byte{0xc0, 0}); err != nil {
			return fmt.Errorf("connection %d: PINGREQ: %w", i, err)
		}
		if _, err := io.ReadFull(bufio.NewReader(nc), resp); err != nil || resp[0] != 0xd0 {
			return fmt.Errorf("connection %d: PINGRESP %x: %v", i, resp, err)
		}
		pinged++
	}
	fmt.Printf("idle MQTT connections: %d opened in %v; %d of them answered a PINGREQ\n", n, took.Round(time.Millisecond), pinged)
	for _, k := range []string{"VmRSS", "RssAnon", "RssFile"} {
		fmt.Printf("  %-7s before %7d KiB, holding %7d KiB: +%d KiB, %.1f KiB per connection\n",
			k, before[k], held[k], held[k]-before[k], float64(held[k]-before[k])/float64(n))
	}
	if held["VmRSS"] == 0 {
		return errors.New("no VmRSS in /proc status")
	}
	return nil
}
