package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// These tests drive the MQTT listener of a real sluiced with MQTT clients written elsewhere:
// mosquitto_pub and mosquitto_sub (Debian mosquitto-clients, libmosquitto), Eclipse Paho's Go
// client for MQTT 3.1.1 (github.com/eclipse/paho.mqtt.golang) and for MQTT 5
// (github.com/eclipse/paho.golang). .ci/run installs mosquitto-clients; a missing tool fails the
// test with what to install, it is never skipped. SLUICE_SOAK=1 runs the device test longer. The
// tests do not run in parallel: freePort's ports are free when asked, not when the broker binds
// them, and two brokers starting at once could be handed the same one.

// startMQTTBroker starts sluiced with its MQTT listener on a free loopback port and returns the
// broker and that address. A restart (b.start) keeps the address: it is in b.args.
func startMQTTBroker(t *testing.T, data string, extra ...string) (*broker, string) {
	t.Helper()
	addr := freePort(t)
	b := startBroker(t, data, append([]string{"--mqtt-listen", addr}, extra...)...)
	waitListening(t, addr)
	return b, addr
}

// restartMQTT starts a stopped or killed broker again on the same data directory and addresses and
// waits for its MQTT listener.
func restartMQTT(t *testing.T, b *broker, addr string) {
	t.Helper()
	b.start()
	waitListening(t, addr)
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// mosqPub runs mosquitto_pub against addr with args; stdin feeds -l (one message a line).
func mosqPub(t *testing.T, addr string, stdin string, args ...string) {
	t.Helper()
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	h, p := hostPort(t, addr)
	var in []byte
	if stdin != "" {
		in = []byte(stdin)
	}
	runTool(t, 30*time.Second, in, pub, append([]string{"-h", h, "-p", p}, args...)...)
}

// mosqLines is lines "prefix-1\n...prefix-n\n" for mosquitto_pub -l, and the same as a slice.
func mosqLines(prefix string, n int) (string, []string) {
	var b strings.Builder
	var s []string
	for i := 1; i <= n; i++ {
		l := prefix + "-" + strconv.Itoa(i)
		b.WriteString(l + "\n")
		s = append(s, l)
	}
	return b.String(), s
}

// mosqFormat is mosquitto_sub's output format for every message: "qos retain topic payload".
const mosqFormat = "%q %r %t %p"

// mosqSub is a running mosquitto_sub with debug output (-d) on: its "Subscribed (mid: N): QOS, ..."
// line tells when the subscription stands and what was granted, and its message lines, printed as
// mosqFormat, are sent on msgs.
type mosqSub struct {
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	msgs    chan string
	subacks chan string // the granted QoS list of each SUBACK: "1" or "0, 0"
	exited  chan error
	taken   int // messages next returned
	mu      sync.Mutex
	debug   strings.Builder // debug lines and stderr, for failure messages
}

// startMosqSub starts mosquitto_sub against addr with args (its -t, -q, -c, -C ...); it is killed
// at the test's end if still running, and after 2 minutes in any case.
func startMosqSub(t *testing.T, addr string, args ...string) *mosqSub {
	t.Helper()
	bin := needTool(t, "mosquitto_sub", "mosquitto-clients")
	h, p := hostPort(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s := &mosqSub{cancel: cancel, msgs: make(chan string, 100_000), subacks: make(chan string, 16), exited: make(chan error, 1)}
	// mosquitto_sub's debug lines go through stdio, fully buffered on a pipe: stdbuf (coreutils)
	// makes its stdout line-buffered, so the SUBACK line arrives when the SUBACK does.
	stdbuf := needTool(t, "stdbuf", "coreutils")
	s.cmd = exec.CommandContext(ctx, stdbuf, append([]string{"-oL", bin, "-h", h, "-p", p, "-d", "-F", mosqFormat}, args...)...)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-s.exited })
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "Client ") || strings.HasPrefix(line, "Subscribed (mid"):
				s.mu.Lock()
				s.debug.WriteString(line + "\n")
				s.mu.Unlock()
				if _, granted, ok := strings.Cut(line, "Subscribed (mid: "); ok {
					_, granted, _ = strings.Cut(granted, "): ")
					s.subacks <- granted
				}
			default:
				s.msgs <- line
			}
		}
	}()
	go func() {
		defer wg.Done()
		b, _ := io.ReadAll(stderr)
		s.mu.Lock()
		s.debug.Write(b)
		s.mu.Unlock()
	}()
	go func() { wg.Wait(); s.exited <- s.cmd.Wait(); close(s.exited) }()
	return s
}

func (s *mosqSub) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tail(s.debug.String())
}

// waitSubacked waits for the subscription's SUBACK and returns its granted QoS list as
// mosquitto_sub prints it ("1", "0, 0").
func (s *mosqSub) waitSubacked(t *testing.T) string {
	t.Helper()
	select { // a SUBACK before the exit wins
	case granted := <-s.subacks:
		return granted
	default:
	}
	select {
	case granted := <-s.subacks:
		return granted
	case err := <-s.exited:
		var unread []string
		for len(s.msgs) > 0 {
			unread = append(unread, <-s.msgs)
		}
		t.Fatalf("mosquitto_sub exited before its SUBACK: %v; messages not yet read: %q\n%s", err, unread, s.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("mosquitto_sub got no SUBACK in 20s\n%s", s.log())
	}
	return ""
}

// next returns the next message line, failing the test after 20 seconds without one.
func (s *mosqSub) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-s.msgs:
		s.taken++
		return m
	case <-time.After(20 * time.Second):
		t.Fatalf("mosquitto_sub received nothing in 20s after %d messages\n%s", s.taken, s.log())
		return ""
	}
}

// waitLog waits up to 20 seconds for mosquitto_sub's debug output to hold substr.
func (s *mosqSub) waitLog(t *testing.T, substr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(s.log(), substr); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto_sub did not log %q in 20s\n%s", substr, s.log())
		}
	}
}

// stop kills mosquitto_sub (one without -C runs until then) and waits for it.
func (s *mosqSub) stop() {
	s.cancel()
	for range s.exited {
	}
}

// wait requires mosquitto_sub to exit by itself (after -C messages) with status 0.
func (s *mosqSub) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("mosquitto_sub: %v\n%s", err, s.log())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("mosquitto_sub did not exit after its last message\n%s", s.log())
	}
}

// TestMosquittoQoSAndWildcards: for QoS 1, 2 and 0, mosquitto_sub subscribed to a `+` filter and a `#`
// filter receives exactly the messages mosquitto_pub publishes to matching topics (including the
// `#` filter's parent level), each once, at the QoS asked for, not flagged retained, in publish
// order per topic; messages to topics neither filter matches are not delivered. Every topic is new:
// its first publish creates it (--auto-create), and mosquitto_pub disconnects right after its last
// message, which must not lose a QoS 0 message still waiting for its topic.
func TestMosquittoQoSAndWildcards(t *testing.T) {
	_, addr := startMQTTBroker(t, t.TempDir(), "--auto-create")
	for _, qos := range []int{1, 2, 0} {
		q := strconv.Itoa(qos)
		root := "q" + q
		match := []string{root + "/sensors/a/temp", root + "/sensors/b/temp", root + "/plant", root + "/plant/line1/oven/zone2"}
		miss := []string{root + "/sensors/a/b/temp", root + "/plants"} // '+' is one level; "plant/#" is not a prefix match
		s := startMosqSub(t, addr, "-q", q, "-t", root+"/sensors/+/temp", "-t", root+"/plant/#", "-C", strconv.Itoa(20*len(match)+1))
		if granted := s.waitSubacked(t); granted != q+", "+q {
			t.Fatalf("QoS %d: SUBACK granted %q, want %s for both filters", qos, granted, q)
		}
		for _, topic := range miss {
			in, _ := mosqLines(topic, 5)
			mosqPub(t, addr, in, "-q", q, "-t", topic, "-l")
		}
		want := map[string][]string{}
		for _, topic := range match {
			in, lines := mosqLines(topic, 20)
			want[topic] = lines
			mosqPub(t, addr, in, "-q", q, "-t", topic, "-l")
		}
		marker := root + "/plant/marker"
		mosqPub(t, addr, "", "-q", q, "-t", marker, "-m", "end")
		// Exactly the -C count: the matching messages and the marker. Topics are not ordered among
		// themselves, so the marker may come before others; one unwanted delivery leaves a wanted
		// one out of the count.
		got := map[string][]string{}
		for range 20*len(match) + 1 {
			line := s.next(t)
			f := strings.SplitN(line, " ", 4)
			if len(f) != 4 {
				t.Fatalf("QoS %d: mosquitto_sub printed %q", qos, line)
			}
			if f[0] != q || f[1] != "0" {
				t.Fatalf("QoS %d: %q delivered at QoS %s retain %s, want QoS %s retain 0", qos, line, f[0], f[1], q)
			}
			if f[2] == marker {
				continue
			}
			if _, ok := want[f[2]]; !ok {
				t.Fatalf("QoS %d: delivered %q: its topic matches neither filter", qos, line)
			}
			got[f[2]] = append(got[f[2]], f[3])
		}
		s.wait(t)
		for topic, lines := range want {
			if !slices.Equal(got[topic], lines) {
				t.Fatalf("QoS %d: %s delivered %v, want %v in order, each once", qos, topic, got[topic], lines)
			}
		}
	}
}

// TestMosquittoRetained: a retained message is delivered, flagged retained, to a subscriber that
// comes later, the newest per topic; a live delivery of a retained publish to a subscriber already
// there is not flagged (MQTT 3.1.1 3.3.1.3), so `mosquitto_sub -R` prints only it; an empty
// retained publish (mosquitto_pub -r -n) clears the topic's retained message, and so does
// `mosquitto_sub --remove-retained`; what is retained survives a broker restart.
func TestMosquittoRetained(t *testing.T) {
	data := t.TempDir()
	b, addr := startMQTTBroker(t, data, "--auto-create")
	mosqPub(t, addr, "", "-q", "1", "-r", "-t", "home/lamp", "-m", "on")
	mosqPub(t, addr, "", "-q", "1", "-r", "-t", "home/lamp", "-m", "dim")
	mosqPub(t, addr, "", "-q", "1", "-r", "-t", "home/door", "-m", "shut")
	mosqPub(t, addr, "", "-q", "1", "-r", "-t", "home/window", "-m", "ajar")

	// retained reads the retained messages a new subscriber to home/# gets: it waits for the SUBACK
	// and want retained messages, then publishes a live marker and collects until it arrives (a
	// retained message too many would come before it).
	retained := func(t *testing.T, want int) map[string]string {
		t.Helper()
		s := startMosqSub(t, addr, "-q", "1", "-t", "home/#")
		defer s.stop()
		s.waitSubacked(t)
		got := map[string]string{}
		take := func(line string) bool {
			f := strings.SplitN(line, " ", 4)
			if len(f) != 4 {
				t.Fatalf("mosquitto_sub printed %q", line)
			}
			if f[2] == "home/marker" {
				if f[1] != "0" {
					t.Fatalf("a live message was flagged retained: %q", line)
				}
				return false
			}
			if f[1] != "1" || f[0] != "1" {
				t.Fatalf("retained message %q: want QoS 1 and the retain flag", line)
			}
			if _, dup := got[f[2]]; dup {
				t.Fatalf("two retained messages for %s: %q and %q", f[2], got[f[2]], f[3])
			}
			got[f[2]] = f[3]
			return true
		}
		for range want {
			if !take(s.next(t)) {
				t.Fatalf("the marker came after %d retained messages, want %d", len(got), want)
			}
		}
		mosqPub(t, addr, "", "-q", "1", "-t", "home/marker", "-m", "live")
		for take(s.next(t)) {
		}
		return got
	}
	if got := retained(t, 3); len(got) != 3 || got["home/lamp"] != "dim" || got["home/door"] != "shut" || got["home/window"] != "ajar" {
		t.Fatalf("retained messages %v, want lamp=dim door=shut window=ajar", got)
	}

	// -R: the stale (retained-flagged) messages are not printed; a retained publish while it is
	// subscribed is delivered live, unflagged, and printed.
	s := startMosqSub(t, addr, "-R", "-q", "1", "-t", "home/lamp", "-C", "1")
	s.waitSubacked(t)
	mosqPub(t, addr, "", "-q", "1", "-r", "-t", "home/lamp", "-m", "bright")
	if line := s.next(t); line != "1 0 home/lamp bright" {
		t.Fatalf("mosquitto_sub -R printed %q, want the live publish, unflagged: 1 0 home/lamp bright", line)
	}
	s.wait(t)

	// Clearing: an empty retained publish, and mosquitto_sub --remove-retained.
	mosqPub(t, addr, "", "-q", "1", "-r", "-n", "-t", "home/lamp")
	// --remove-retained answers a retained message with an empty retained publish of its own (QoS
	// 1 here, mid 2); mosquitto_sub 2.0.11 does not always exit at -C after it, so it is stopped
	// once the broker has acknowledged the publish.
	s = startMosqSub(t, addr, "--remove-retained", "-q", "1", "-t", "home/window")
	if line := s.next(t); line != "1 1 home/window ajar" {
		t.Fatalf("mosquitto_sub --remove-retained printed %q, want 1 1 home/window ajar", line)
	}
	s.waitLog(t, "received PUBACK (Mid: 2, RC:0)")
	s.stop()
	if got := retained(t, 1); len(got) != 1 || got["home/door"] != "shut" {
		t.Fatalf("retained messages after clearing lamp and window: %v, want only door=shut", got)
	}

	b.stop()
	restartMQTT(t, b, addr)
	if got := retained(t, 1); len(got) != 1 || got["home/door"] != "shut" {
		t.Fatalf("retained messages after a restart: %v, want only door=shut", got)
	}
}

// TestMosquittoPersistentSession: mosquitto_sub with a persistent session (-c -i ID -q 1)
// subscribes, takes one message and disconnects; the QoS 1 messages published while it is away
// are delivered when it reconnects, in order, and the one it acknowledged is not; the same across a
// broker restart (SIGTERM, start on the same data directory).
func TestMosquittoPersistentSession(t *testing.T) {
	data := t.TempDir()
	b, addr := startMQTTBroker(t, data, "--auto-create")
	// A wildcard filter: its messages are kept by the session's commits over the matching topics
	// (docs/mqtt.md: the engine has no consumer group over a pattern yet).
	session := []string{"-c", "-i", "field-unit-7", "-q", "1", "-t", "jobs/#"}

	s := startMosqSub(t, addr, append(session, "-C", "1")...)
	s.waitSubacked(t)
	mosqPub(t, addr, "", "-q", "1", "-t", "jobs/a", "-m", "first")
	if line := s.next(t); line != "1 0 jobs/a first" {
		t.Fatalf("first delivery %q", line)
	}
	s.wait(t)

	// reconnect publishes away (QoS 1) while no one is connected, reconnects the session and
	// requires exactly those, then a live message published after its SUBACK.
	reconnect := func(t *testing.T, prefix string, restart bool) {
		t.Helper()
		in, away := mosqLines(prefix, 5)
		mosqPub(t, addr, in, "-q", "1", "-t", "jobs/a", "-l")
		if restart {
			b.stop()
			restartMQTT(t, b, addr)
		}
		// What the session kept may come before the SUBACK of mosquitto_sub's SUBSCRIBE (which
		// re-subscribes the same filter; MQTT 3.8.4: the flow is not interrupted, nothing acknowledged
		// is sent again).
		s := startMosqSub(t, addr, append(session, "-C", strconv.Itoa(len(away)+1))...)
		var got []string
		for range away {
			got = append(got, s.next(t))
		}
		if !slices.Equal(got, prefixed("1 0 jobs/a ", away)) {
			t.Fatalf("session %s resumed with %q, want %q", prefix, got, away)
		}
		s.waitSubacked(t)
		mosqPub(t, addr, "", "-q", "1", "-t", "jobs/a", "-m", prefix+"-live")
		got = append(got, s.next(t))
		want := prefixed("1 0 jobs/a ", append(away, prefix+"-live"))
		if !slices.Equal(got, want) {
			t.Fatalf("session %s resumed with %q, want %q", prefix, got, want)
		}
		s.wait(t)
	}
	reconnect(t, "away", false)
	reconnect(t, "restart", true)
}

// prefixed is each of lines after prefix.
func prefixed(prefix string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = prefix + l
	}
	return out
}

// mqttDevice is one simulated device's connection, MQTT 3.1.1 or 5.
type mqttDevice interface {
	// publish sends payload at QoS 1 and returns nil only once the broker's PUBACK says success.
	publish(ctx context.Context, topic string, payload []byte) error
	close()
}

type v3Device struct{ c pahov3.Client }

// dialV3 connects a paho.mqtt.golang client (MQTT 3.1.1) with a clean session and no automatic
// reconnection: the caller resends what was not acknowledged.
func dialV3(addr, id, user, password string) (*v3Device, pahov3.Token) {
	opts := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).SetKeepAlive(30 * time.Second).SetOrderMatters(false)
	if user != "" {
		opts.SetUsername(user).SetPassword(password)
	}
	c := pahov3.NewClient(opts)
	return &v3Device{c}, c.Connect()
}

func waitToken(tok pahov3.Token, d time.Duration) error {
	if !tok.WaitTimeout(d) {
		return fmt.Errorf("no answer in %v", d)
	}
	return tok.Error()
}

func (d *v3Device) publish(ctx context.Context, topic string, payload []byte) error {
	return waitToken(d.c.Publish(topic, 1, false, payload), 15*time.Second)
}

func (d *v3Device) close() { d.c.Disconnect(100) }

type v5Device struct{ c *paho.Client }

// dialV5 connects a paho.golang client (MQTT 5) with a clean start. It returns the CONNACK (nil if
// none came) and the client, nil unless the connection was accepted.
func dialV5(ctx context.Context, addr string, cp *paho.Connect, onPublish func(paho.PublishReceived) (bool, error)) (*v5Device, *paho.Connack, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, nil, err
	}
	cfg := paho.ClientConfig{Conn: nc, PacketTimeout: 15 * time.Second}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPublish}
	}
	c := paho.NewClient(cfg)
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		return nil, ca, err
	}
	return &v5Device{c}, ca, nil
}

func (d *v5Device) publish(ctx context.Context, topic string, payload []byte) error {
	pr, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if err != nil && pr != nil {
		return fmt.Errorf("PUBACK reason %#x: %w", pr.ReasonCode, err)
	}
	return err
}

func (d *v5Device) close() { _ = d.c.Disconnect(&paho.Disconnect{ReasonCode: 0}) }

// devicePayload is unique per device, message and attempt: a resend is told from the original.
func devicePayload(dev, seq, attempt int) string {
	return fmt.Sprintf("d%03d-m%05d-a%d", dev, seq, attempt)
}

// readAll reads every record of the topics matching pattern from the start through the Go client:
// it counts the records first (each topic's end minus start) and reads exactly that many.
func readAll(t *testing.T, c *client.Client, topics []string, pattern string) []*client.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var total int64
	for _, name := range topics {
		info, err := c.DescribeTopic(ctx, name)
		if err != nil {
			t.Fatalf("describe %s: %v", name, err)
		}
		for _, p := range info.Partitions {
			total += p.EndOffset - p.StartOffset
		}
	}
	cons, err := c.Subscribe(ctx, pattern, client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	msgs := make([]*client.Message, 0, total)
	for int64(len(msgs)) < total {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatalf("%s: after %d of %d records: %v", pattern, len(msgs), total, err)
		}
		msgs = append(msgs, m.Clone())
	}
	return msgs
}

// TestPahoDevicesSurviveCrash: 100 simulated devices, half on paho.mqtt.golang (MQTT 3.1.1), half on
// paho.golang (MQTT 5), each with its own client id and topic devices/<id>/telemetry, publish
// 10,000 QoS 1 messages in all, one in flight per device. The broker is SIGKILLed mid-stream and
// started again on the same data directory; the devices reconnect and resend what was not
// PUBACKed (as a new attempt with its own payload). Then, read through the Go client from the
// Sluice topics devices.<id>.telemetry: every PUBACKed payload is there exactly once, nothing is
// there twice, every record carries its MQTT topic, and every message has one acknowledged attempt.
// SLUICE_SOAK=1 (make soak): 300 devices, 60,000 messages, three kills, topics created by the
// devices' first publishes (--auto-create) rather than beforehand.
func TestPahoDevicesSurviveCrash(t *testing.T) {
	devices, perDevice, kills, soak := 100, 100, 1, os.Getenv("SLUICE_SOAK") == "1"
	if soak {
		devices, perDevice, kills = 300, 200, 3
	}
	total := devices * perDevice
	data := t.TempDir()
	b, addr := startMQTTBroker(t, data, "--auto-create")
	if !soak {
		// The topics exist before the devices start: a SIGKILL between a topic's mkdir and its
		// .creating marker leaves a directory the engine will not serve after the restart, and
		// that device could never publish again (engine.createTopicLocked's step 1). The soak
		// run lets the devices' first publishes create them, kills landing where they may.
		c := dialBroker(t, b)
		for d := range devices {
			createTopic(t, c, fmt.Sprintf("devices.d%03d.telemetry", d), 0)
		}
		c.Close()
	}

	limit := 2 * time.Minute
	if soak {
		limit = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	var acked atomic.Int64
	ackedAttempt := make([][]int, devices) // [device][message]: the acknowledged attempt; device's goroutine only until wg.Wait
	attempts := make([]int, devices)       // PUBLISHes sent per device
	errs := make(chan error, devices)
	var wg sync.WaitGroup
	for d := range devices {
		ackedAttempt[d] = make([]int, perDevice)
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("d%03d", d)
			topic := "devices/" + id + "/telemetry"
			var dev mqttDevice
			defer func() {
				if dev != nil {
					dev.close()
				}
			}()
			attempt, connects := 0, 0
			var lastErr error
			for seq := 0; seq < perDevice; {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("device %s: %d of %d messages acknowledged when time ran out (%d connections, %d publishes; first error %v)",
						id, seq, perDevice, connects, attempt, lastErr)
					return
				}
				if dev == nil {
					var err error
					if d%2 == 0 {
						v3, tok := dialV3(addr, id, "", "")
						if err = waitToken(tok, 10*time.Second); err != nil {
							v3.c.Disconnect(0)
						} else {
							dev = v3
						}
					} else {
						var v5 *v5Device
						if v5, _, err = dialV5(ctx, addr, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}, nil); err == nil {
							dev = v5
						}
					}
					if err != nil { // the broker is down: try again
						if lastErr == nil {
							lastErr = err
						}
						time.Sleep(50 * time.Millisecond)
						continue
					}
					connects++
				}
				attempt++
				attempts[d]++
				// paho.golang notices a dead connection only at the packet timeout: 5 s bounds the wait
				// for a PUBACK that will not come (on a loaded machine a late one just means a resend).
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				err := dev.publish(pctx, topic, []byte(devicePayload(d, seq, attempt)))
				pcancel()
				if err != nil {
					if lastErr == nil {
						lastErr = err // the first, which is what a stuck device keeps meeting
					}
					dev.close()
					dev = nil
					continue // resend seq as a new attempt
				}
				ackedAttempt[d][seq] = attempt
				acked.Add(1)
				seq++
			}
		}()
	}
	for k := 1; k <= kills; k++ {
		at := int64(total * k / (kills + 1))
		for acked.Load() < at {
			if ctx.Err() != nil {
				t.Fatalf("%d of %d messages acknowledged before kill %d", acked.Load(), total, k)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.kill()
		t.Logf("kill %d: SIGKILL with %d of %d messages acknowledged after %v", k, acked.Load(), total, time.Since(start))
		restartMQTT(t, b, addr)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.Fatalf("broker log:\n%s", tail(b.log()))
	}
	sent := 0
	for _, n := range attempts {
		sent += n
	}
	t.Logf("%d messages acknowledged, %d PUBLISHes sent, in %v", acked.Load(), sent, time.Since(start))

	c := dialBroker(t, b)
	topics := make([]string, devices)
	for d := range devices {
		topics[d] = fmt.Sprintf("devices.d%03d.telemetry", d)
	}
	msgs := readAll(t, c, topics, "devices.*.telemetry")
	seen := make(map[string]int, len(msgs))
	for _, m := range msgs {
		p := string(m.Value)
		var d, seq, attempt int
		if _, err := fmt.Sscanf(p, "d%03d-m%05d-a%d", &d, &seq, &attempt); err != nil || d >= devices || seq >= perDevice || p != devicePayload(d, seq, attempt) {
			t.Fatalf("%s/%d/%d holds %q: not a payload a device sent", m.Topic, m.Partition, m.Offset, p)
		}
		if want := fmt.Sprintf("devices.d%03d.telemetry", d); m.Topic != want {
			t.Fatalf("%q in topic %s, want %s", p, m.Topic, want)
		}
		if mt, _ := m.Header("mqtt.topic"); string(mt) != fmt.Sprintf("devices/d%03d/telemetry", d) {
			t.Fatalf("%q: header mqtt.topic %q", p, mt)
		}
		if seen[p]++; seen[p] > 1 {
			t.Fatalf("%q is in %s twice", p, m.Topic)
		}
	}
	for d := range devices {
		for seq, attempt := range ackedAttempt[d] {
			if p := devicePayload(d, seq, attempt); seen[p] != 1 {
				t.Fatalf("device %d message %d: acknowledged attempt %q is in the topic %d times", d, seq, p, seen[p])
			}
		}
	}
	t.Logf("%d records read: %d acknowledged, %d unacknowledged attempts stored", len(msgs), total, len(msgs)-total)
}

// sharedFilter is the shared subscription TestPahoSharedSubscription's members take, on an exact
// topic: the engine offers no consumer group over a pattern, so the listener refuses a shared
// subscription with a wildcard (docs/mqtt.md). sharedGroup is the engine consumer group it is.
const (
	sharedFilter = "$share/g/fleet/telemetry"
	sharedGroup  = "$share.g:fleet.telemetry"
)

// TestPahoSharedSubscription: three paho.golang (MQTT 5) subscribers share sharedFilter; 30
// devices publish 3,000 QoS 1 messages to fleet/telemetry (a Sluice topic of 6 partitions).
// Each subscriber gets a share, together they get every message, and no message twice: no member
// leaves while the messages flow.
func TestPahoSharedSubscription(t *testing.T) {
	const members, devices, perDevice = 3, 30, 100
	b, addr := startMQTTBroker(t, t.TempDir())
	c := dialBroker(t, b)
	createTopic(t, c, "fleet.telemetry", 6)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var mu sync.Mutex
	got := make([]map[string]int, members) // guarded by mu
	var total atomic.Int64
	for i := range members {
		got[i] = map[string]int{}
		onPublish := func(pr paho.PublishReceived) (bool, error) {
			mu.Lock()
			got[i][string(pr.Packet.Payload)]++
			mu.Unlock()
			total.Add(1)
			return true, nil
		}
		sub, _, err := dialV5(ctx, addr, &paho.Connect{ClientID: fmt.Sprintf("member-%d", i), CleanStart: true, KeepAlive: 30}, onPublish)
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		defer sub.close()
		sa, err := sub.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: sharedFilter, QoS: 1}}})
		if err != nil {
			t.Fatalf("member %d subscribes to %s: %v (SUBACK %+v)", i, sharedFilter, err, sa)
		}
	}
	waitGroupMembers(t, c, sharedGroup, members)

	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev, _, err := dialV5(ctx, addr, &paho.Connect{ClientID: fmt.Sprintf("fleet-%02d", d), CleanStart: true, KeepAlive: 30}, nil)
			if err != nil {
				errs <- err
				return
			}
			defer dev.close()
			for seq := range perDevice {
				if err := dev.publish(ctx, "fleet/telemetry", []byte(fmt.Sprintf("f%02d-%03d", d, seq))); err != nil {
					errs <- fmt.Errorf("device %d message %d: %w", d, seq, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for total.Load() < devices*perDevice {
		if ctx.Err() != nil {
			t.Fatalf("the members received %d of %d messages", total.Load(), devices*perDevice)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate still on its way would arrive now
	mu.Lock()
	defer mu.Unlock()
	all := map[string]int{}
	shares := make([]int, members)
	for i, m := range got {
		for p, n := range m {
			all[p] += n
			shares[i] += n
		}
	}
	t.Logf("shares %v", shares)
	for i, n := range shares {
		if n == 0 {
			t.Errorf("member %d received none of the %d messages (shares %v)", i, devices*perDevice, shares)
		}
	}
	for d := range devices {
		for seq := range perDevice {
			if p := fmt.Sprintf("f%02d-%03d", d, seq); all[p] != 1 {
				t.Errorf("%s received %d times by the members together", p, all[p])
			}
		}
	}
	if len(all) != devices*perDevice {
		t.Errorf("the members received %d distinct messages, want %d", len(all), devices*perDevice)
	}
}

// waitGroupMembers waits until the engine consumer group has n members. Messages published before
// the members settle could be sent again as partitions move, which is not what the test is about.
func waitGroupMembers(t *testing.T, c *client.Client, group string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		info, err := c.DescribeGroup(ctx, group)
		if err == nil && len(info.Members) == n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("group %s did not reach %d members: %+v, %v", group, n, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMQTTCrossProtocol: a device publishes over MQTT 5 with a user property (mosquitto_pub -V 5
// -D publish user-property); Sluice's Go client and kcat through the Kafka listener read the same
// records with the same values and mqtt.* headers; a record produced with the Go client reaches an
// MQTT subscriber (mosquitto_sub) under the MQTT topic mapped back from the Sluice name.
func TestMQTTCrossProtocol(t *testing.T) {
	kcat := needTool(t, "kcat", "kcat")
	mqttAddr, kafka := freePort(t), freePort(t)
	b := startBroker(t, t.TempDir(), "--mqtt-listen", mqttAddr, "--kafka-listen", kafka)
	waitListening(t, mqttAddr)
	waitListening(t, kafka)
	c := dialBroker(t, b)
	createTopic(t, c, "plant.line1.temp", 1)
	createTopic(t, c, "cmd.dev7.set", 1)

	in, values := mosqLines("21.5C", 3)
	mosqPub(t, mqttAddr, in, "-V", "5", "-q", "1", "-t", "plant/line1/temp", "-D", "publish", "user-property", "site", "north", "-l")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cons, err := c.Subscribe(ctx, "plant.line1.temp", client.WithStartEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	var native []string
	for _, v := range values {
		m, err := cons.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var hs []string
		m.Headers(func(k, val []byte) bool { hs = append(hs, string(k)+"="+string(val)); return true })
		if string(m.Value) != v {
			t.Fatalf("Go client read %q, want %q", m.Value, v)
		}
		for _, h := range []string{"mqtt.topic=plant/line1/temp", "mqtt.qos=1", "site=north"} {
			if !slices.Contains(hs, h) {
				t.Fatalf("record %q headers %v: no %s", m.Value, hs, h)
			}
		}
		if r, ok := m.Header("mqtt.retain"); ok && string(r) != "0" && string(r) != "false" {
			t.Fatalf("record %q: mqtt.retain %q for a publish without retain", m.Value, r)
		}
		sort.Strings(hs)
		native = append(native, string(m.Value)+"\t"+strings.Join(hs, ","))
	}

	out := runTool(t, time.Minute, nil, kcat, "-b", kafka, "-C", "-t", "plant.line1.temp", "-o", "beginning", "-e", "-f", `%s\t%h\n`)
	var viaKafka []string
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		v, hdrs, _ := strings.Cut(line, "\t")
		hs := strings.Split(hdrs, ",")
		sort.Strings(hs)
		viaKafka = append(viaKafka, v+"\t"+strings.Join(hs, ","))
	}
	if !slices.Equal(native, viaKafka) {
		t.Fatalf("kcat read\n%q\nthe Go client read\n%q", viaKafka, native)
	}

	s := startMosqSub(t, mqttAddr, "-q", "1", "-t", "cmd/dev7/set", "-C", "1")
	s.waitSubacked(t)
	p, err := c.Producer("cmd.dev7.set", client.WithDurability(wire.DurabilityWritten))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	if _, err := p.Publish(ctx, client.Record{Value: []byte("open-valve")}); err != nil {
		t.Fatal(err)
	}
	line := s.next(t)
	if f := strings.SplitN(line, " ", 4); len(f) != 4 || f[2] != "cmd/dev7/set" || f[3] != "open-valve" {
		t.Fatalf("mosquitto_sub printed %q, want the record under cmd/dev7/set", line)
	}
	s.wait(t)
}

// TestMQTTAuth: sluiced with a users file (`sluice user add`) and ACL rules. A wrong password and an
// unknown user are refused in the CONNACK: MQTT 5 reason 0x86 (Bad User Name or Password), MQTT
// 3.1.1 return code 4 (bad user name or password) or 5 (not authorized), and mosquitto_pub exits
// with the refusal. A good password connects; a subscription to a topic the ACL denies is refused
// in the SUBACK (0x80 in 3.1.1, 0x87 Not Authorized in 5), a QoS 1 publish to it with PUBACK 0x87
// (5), and nothing reaches the denied topic; the allowed topic works.
func TestMQTTAuth(t *testing.T) {
	dir := t.TempDir()
	cli := filepath.Join(dir, "sluice")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", cli, "../sluice").CombinedOutput(); err != nil {
		t.Fatalf("go build sluice: %v\n%s", err, out)
	}
	users := filepath.Join(dir, "users")
	add := exec.CommandContext(ctx, cli, "user", "add", "alice", "--password-stdin")
	add.Env = append(os.Environ(), "SLUICE_USERS="+users)
	add.Stdin = strings.NewReader("secret\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("sluice user add: %v\n%s", err, out)
	}
	b, addr := startMQTTBroker(t, filepath.Join(dir, "data"), "--users", users, "--token", "tr=root",
		"--acl", "root:all:*", "--acl", "root:all:group:*",
		"--acl", "alice:produce,consume:sensors.*", "--acl", "alice:consume:group:*")
	root, err := client.Dial(ctx, b.addr, client.WithAuthToken("tr"), client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, name := range []string{"sensors.t1", "secret.x"} {
		if err := root.CreateTopic(ctx, client.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}

	for _, cred := range [][2]string{{"alice", "wrong"}, {"mallory", "secret"}} {
		_, ca, err := dialV5(ctx, addr, &paho.Connect{ClientID: "v5-" + cred[0], CleanStart: true, Username: cred[0],
			UsernameFlag: true, Password: []byte(cred[1]), PasswordFlag: true}, nil)
		if err == nil || ca == nil || ca.ReasonCode != 0x86 {
			t.Fatalf("MQTT 5 CONNECT as %s/%s: CONNACK %+v, %v; want reason 0x86", cred[0], cred[1], ca, err)
		}
		v3, tok := dialV3(addr, "v3-"+cred[0], cred[0], cred[1])
		err = waitToken(tok, 10*time.Second)
		rc := tok.(*pahov3.ConnectToken).ReturnCode()
		v3.c.Disconnect(0)
		if err == nil || (rc != 4 && rc != 5) {
			t.Fatalf("MQTT 3.1.1 CONNECT as %s/%s: return code %d, %v; want 4 or 5", cred[0], cred[1], rc, err)
		}
	}
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	h, p := hostPort(t, addr)
	out, err := exec.CommandContext(ctx, pub, "-h", h, "-p", p, "-u", "alice", "-P", "wrong", "-q", "1", "-t", "sensors/t1", "-m", "x").CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "bad user name or password") {
		t.Fatalf("mosquitto_pub with a wrong password: %v, %q; want a refusal naming a bad user name or password", err, out)
	}

	// Alice, MQTT 5: the denied topic is refused in SUBACK and PUBACK; the allowed one works.
	v5, _, err := dialV5(ctx, addr, &paho.Connect{ClientID: "alice-5", CleanStart: true, Username: "alice",
		UsernameFlag: true, Password: []byte("secret"), PasswordFlag: true}, nil)
	if err != nil {
		t.Fatalf("MQTT 5 as alice: %v", err)
	}
	defer v5.close()
	sa, _ := v5.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "secret/x", QoS: 1}, {Topic: "sensors/t1", QoS: 1}}})
	if sa == nil || !slices.Equal(sa.Reasons, []byte{0x87, 0x01}) {
		t.Fatalf("MQTT 5 SUBACK for secret/x and sensors/t1: %+v, want reasons [0x87 0x01]", sa)
	}
	pr, err := v5.c.Publish(ctx, &paho.Publish{Topic: "secret/x", QoS: 1, Payload: []byte("leak")})
	if pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("MQTT 5 QoS 1 publish to secret/x: PUBACK %+v, %v; want reason 0x87", pr, err)
	}
	if pr, err := v5.c.Publish(ctx, &paho.Publish{Topic: "sensors/t1", QoS: 1, Payload: []byte("21C")}); err != nil || pr.ReasonCode != 0 {
		t.Fatalf("MQTT 5 QoS 1 publish to sensors/t1: PUBACK %+v, %v", pr, err)
	}

	// Alice, MQTT 3.1.1: SUBACK 0x80 for the denied topic, the granted QoS for the allowed one.
	v3, tok := dialV3(addr, "alice-3", "alice", "secret")
	if err := waitToken(tok, 10*time.Second); err != nil {
		t.Fatalf("MQTT 3.1.1 as alice: %v", err)
	}
	defer v3.close()
	st := v3.c.SubscribeMultiple(map[string]byte{"secret/x": 1, "sensors/t1": 1}, func(pahov3.Client, pahov3.Message) {})
	_ = waitToken(st, 10*time.Second)
	if res := st.(*pahov3.SubscribeToken).Result(); res["secret/x"] != 0x80 || res["sensors/t1"] != 1 {
		t.Fatalf("MQTT 3.1.1 SUBACK: %v, want secret/x 0x80 and sensors/t1 1", res)
	}

	for name, want := range map[string]int64{"secret.x": 0, "sensors.t1": 1} {
		info, err := root.DescribeTopic(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if end := info.Partitions[0].EndOffset; end != want {
			t.Fatalf("%s holds %d records, want %d", name, end, want)
		}
	}
}

// mqttConnect311 is a CONNECT packet, MQTT 3.1.1, clean session, keep-alive 60 s, for clientID.
func mqttConnect311(clientID string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, byte(len(clientID) >> 8), byte(len(clientID))}
	body = append(body, clientID...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// expectClosed requires the broker to close nc within 15 seconds of what was written; what it
// sends first may only be a refusing CONNACK or a DISCONNECT.
func expectClosed(t *testing.T, name string, nc net.Conn) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	got, err := io.ReadAll(nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection is still open after 15 s (read %x)", name, got)
	}
	if len(got) > 0 && got[0] != 0xe0 && (got[0] != 0x20 || len(got) < 4 || got[3] == 0) {
		t.Fatalf("%s: the broker answered %x before closing; want nothing, a refusing CONNACK or a DISCONNECT", name, got)
	}
}

// TestMQTTBadInputClosesOnlyThatConnection: over raw TCP, malformed packets, an oversized or
// malformed remaining length and protocol violations each close their own connection, while a
// paho.golang client on the same broker keeps publishing and receiving through them.
func TestMQTTBadInputClosesOnlyThatConnection(t *testing.T) {
	_, addr := startMQTTBroker(t, t.TempDir(), "--auto-create")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	received := make(chan string, 100)
	bystander, _, err := dialV5(ctx, addr, &paho.Connect{ClientID: "bystander", CleanStart: true, KeepAlive: 30},
		func(pr paho.PublishReceived) (bool, error) { received <- string(pr.Packet.Payload); return true, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer bystander.close()
	if _, err := bystander.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ok/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	connected := mqttConnect311("raw")
	cases := []struct {
		name      string
		afterConn bool // send a valid CONNECT and read its CONNACK first
		send      []byte
	}{
		{"PUBLISH before CONNECT", false, []byte{0x30, 0x05, 0x00, 0x01, 'a', 'h', 'i'}},
		{"CONNECT with protocol name MQTX", false, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'X', 4, 0x02, 0, 60, 0, 0}},
		{"CONNECT with a string running past the packet", false, []byte{0x10, 0x0c, 0, 0x40, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 0}},
		{"CONNECT with the reserved flag set", false, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 60, 0, 0}},
		{"reserved packet type 0", true, []byte{0x00, 0x00}},
		{"SUBSCRIBE with fixed-header flags 0", true, []byte{0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}},
		{"SUBSCRIBE with no topic filter", true, []byte{0x82, 0x02, 0x00, 0x01}},
		{"PUBLISH at QoS 3", true, []byte{0x36, 0x05, 0x00, 0x01, 'a', 'h', 'i'}},
		{"a second CONNECT", true, connected},
		{"remaining length of five bytes", true, []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"remaining length 268,435,455 (the largest)", true, append([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}, make([]byte, 64<<10)...)},
		{"remaining length 268,435,455 before CONNECT", false, append([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}, make([]byte, 64<<10)...)},
	}
	for i, tc := range cases {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
		if tc.afterConn {
			if _, err := nc.Write(connected); err != nil {
				t.Fatal(err)
			}
			ack := make([]byte, 4)
			if _, err := io.ReadFull(nc, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
				t.Fatalf("%s: CONNACK %x, %v", tc.name, ack, err)
			}
		}
		_, _ = nc.Write(tc.send) // may fail once the broker has closed: that is the point
		expectClosed(t, tc.name, nc)
		nc.Close()

		want := fmt.Sprintf("still-here-%d", i)
		if err := bystander.publish(ctx, "ok/ping", []byte(want)); err != nil {
			t.Fatalf("after %s: the bystander's publish: %v", tc.name, err)
		}
		select {
		case got := <-received:
			if got != want {
				t.Fatalf("after %s: the bystander received %q, want %q", tc.name, got, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("after %s: the bystander received nothing", tc.name)
		}
	}
	select {
	case <-bystander.c.Done():
		t.Fatal("the bystander's connection closed")
	default:
	}
}
