package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/engine/server/servertest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// builtSluice builds the sluice command once per test binary and returns its path.
func builtSluice(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "sluice")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// binRun runs the built sluice against addr (SLUICE_ADDR) with stdin and returns what a shell sees.
func binRun(t *testing.T, addr string, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, builtSluice(t), args...)
	cmd.Env = append(os.Environ(), "SLUICE_ADDR="+addr, "SLUICE_TOKEN=", "SLUICE_TLS_CA=")
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sluice %s: %v", strings.Join(args, " "), err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// binOK is binRun that fails the test unless the command exits 0.
func binOK(t *testing.T, addr string, stdin []byte, args ...string) result {
	t.Helper()
	r := binRun(t, addr, stdin, args...)
	if r.code != 0 {
		t.Fatalf("sluice %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// TestBinaryVersionCompletionSuggest: sluice --version, the bash completion script completing
// commands, subcommands and flags in a real bash, and "did you mean" for a mistyped command.
func TestBinaryVersionCompletionSuggest(t *testing.T) {
	r := binOK(t, deadAddr(t), nil, "--version")
	if !strings.HasPrefix(r.stdout, "sluice ") || !strings.Contains(r.stdout, "protocol ") {
		t.Errorf("--version: %q", r.stdout)
	}

	r = binRun(t, deadAddr(t), nil, "topic", "craete")
	if r.code != 2 || !strings.Contains(r.stderr, `Did you mean "sluice topic create"?`) {
		t.Errorf("topic craete: exit %d, stderr %q", r.code, r.stderr)
	}
	r = binRun(t, deadAddr(t), nil, "prodcue")
	if r.code != 2 || !strings.Contains(r.stderr, `Did you mean "sluice produce"?`) {
		t.Errorf("prodcue: exit %d, stderr %q", r.code, r.stderr)
	}

	zsh := binOK(t, deadAddr(t), nil, "completion", "zsh")
	if !strings.HasPrefix(zsh.stdout, "#compdef sluice\n") {
		t.Errorf("zsh script starts %q", firstLine(zsh.stdout))
	}
	script := filepath.Join(t.TempDir(), "sluice.bash")
	if err := os.WriteFile(script, []byte(binOK(t, deadAddr(t), nil, "completion", "bash").stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to run the completion script: ", err)
	}
	for _, tc := range []struct {
		words string // the command line typed so far; the last word is being completed
		want  string
	}{
		{"sluice gr", "group"},
		{"sluice group s", "seek"},
		{"sluice group re", "reset"},
		{"sluice que", "queue"},
		{"sluice queue consume t --gr", "--group"},
		{"sluice --addr 127.0.0.1:1 top", "topic"},
		{"sluice consume t --fo", "--format"},
		{"sluice completion z", "zsh"},
	} {
		shell := "source " + script + "\nCOMP_WORDS=(" + tc.words + ")\n"
		if strings.HasSuffix(tc.words, " ") {
			shell = "source " + script + "\nCOMP_WORDS=(" + tc.words + " '')\n"
		}
		shell += "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n_sluice\necho \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command(bash, "-c", shell).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("completing %q: %q (%v), want %q", tc.words, out, err, tc.want)
		}
	}
}

// TestBinaryConsumeWindow: consume -e ends at the end of the data, --from -N prints the last N records
// of each partition, and --format templates render every field.
func TestBinaryConsumeWindow(t *testing.T) {
	addr := startBroker(t)
	binOK(t, addr, nil, "topic", "create", "w", "--partitions", "2")
	binOK(t, addr, nil, "topic", "create", "empty", "--partitions", "3")
	binOK(t, addr, []byte("a\nb\nc\nd\ne\n"), "produce", "w", "--partition", "0", "--key", "k0", "--header", "h=1", "--quiet")
	binOK(t, addr, []byte("x\ny\nz\n"), "produce", "w", "--partition", "1", "--key", "k1", "--quiet")

	lines := func(s string) string {
		l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		sort.Strings(l)
		return strings.Join(l, " ")
	}
	if r := binOK(t, addr, nil, "consume", "w", "-e"); lines(r.stdout) != "a b c d e x y z" {
		t.Errorf("consume -e: %q", r.stdout)
	}
	if r := binOK(t, addr, nil, "consume", "empty", "-e"); r.stdout != "" {
		t.Errorf("consume -e of an empty topic: %q", r.stdout)
	}
	if r := binOK(t, addr, nil, "consume", "w", "--from", "-2", "-e"); lines(r.stdout) != "d e y z" {
		t.Errorf("consume --from -2 -e: %q", r.stdout)
	}
	if r := binOK(t, addr, nil, "consume", "w", "--from", "-10", "--exit-at-end", "--partition", "1"); r.stdout != "x\ny\nz\n" {
		t.Errorf("consume --from -10 --partition 1: %q", r.stdout)
	}
	r := binOK(t, addr, nil, "consume", "w", "--partition", "0", "--from", "-2", "-e", "--format", `%t/%p@%o %k=%s [%h] %K %S%%\n`)
	if r.stdout != "w/0@3 k0=d [h=1] 2 1%\nw/0@4 k0=e [h=1] 2 1%\n" {
		t.Errorf("--format template: %q", r.stdout)
	}
	r = binOK(t, addr, nil, "consume", "w", "--partition", "1", "--from", "2", "--count", "1", "--format", `%T\t%s\n`)
	ts, val, _ := strings.Cut(strings.TrimSuffix(r.stdout, "\n"), "\t")
	if val != "z" || len(ts) != 13 {
		t.Errorf("--format %%T: %q", r.stdout)
	}
	if r := binRun(t, addr, nil, "consume", "w", "-e", "--partition", "7"); r.code != 1 || !strings.Contains(r.stderr, "has no partition 7") {
		t.Errorf("consume -e of a partition that does not exist: exit %d, %q", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"consume", "w", "--format", "%q"},
		{"consume", "w", "-e", "--group", "g"},
		{"consume", "w", "--from", "-2", "--group", "g"},
	} {
		if r := binRun(t, addr, nil, args...); r.code != 2 {
			t.Errorf("sluice %s: exit %d, want 2 (usage)\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// TestBinaryFilter: --filter keeps the records whose headers match (work queues take every record,
// so queue consume has no --filter).
func TestBinaryFilter(t *testing.T) {
	addr := startBroker(t)
	binOK(t, addr, nil, "topic", "create", "f", "--partitions", "1")
	binOK(t, addr, []byte("r1\nr2\n"), "produce", "f", "--header", "color=red", "--quiet")
	binOK(t, addr, []byte("b1\n"), "produce", "f", "--header", "color=blue", "--quiet")
	binOK(t, addr, []byte("r3\n"), "produce", "f", "--header", "color=red", "--header", "size=xl", "--quiet")
	if r := binOK(t, addr, nil, "consume", "f", "--filter", "color=red", "--count", "3"); r.stdout != "r1\nr2\nr3\n" {
		t.Errorf("--filter color=red: %q", r.stdout)
	}
	if r := binOK(t, addr, nil, "consume", "f", "--filter", "color=red&size=xl", "--count", "1"); r.stdout != "r3\n" {
		t.Errorf("--filter color=red&size=xl: %q", r.stdout)
	}
	if r := binOK(t, addr, nil, "consume", "f", "--filter", "color!=red", "--count", "1"); r.stdout != "b1\n" {
		t.Errorf("--filter color!=red: %q", r.stdout)
	}
}

// TestBinaryQueueConsume: queue consume prints and acks; with --exec it acks on exit 0 and nacks
// otherwise, a record failing --max-deliveries times lands in the dead-letter topic, and nothing
// acked is delivered again.
func TestBinaryQueueConsume(t *testing.T) {
	addr := startBroker(t)
	binOK(t, addr, nil, "topic", "create", "jobs", "--partitions", "1")
	binOK(t, addr, []byte("a\nb\n"), "produce", "jobs", "--quiet")
	if r := binOK(t, addr, nil, "queue", "consume", "jobs", "--group", "workers", "--count", "2"); r.stdout != "a\nb\n" {
		t.Errorf("queue consume: %q", r.stdout)
	}
	if r := binOK(t, addr, nil, "queue", "consume", "jobs", "--group", "workers", "--idle", "500ms"); r.stdout != "" {
		t.Errorf("acked records delivered again: %q", r.stdout)
	}
	if r := binRun(t, addr, nil, "queue", "consume", "jobs"); r.code != 2 || !strings.Contains(r.stderr, "missing --group") {
		t.Errorf("queue consume without --group: exit %d, %q", r.code, r.stderr)
	}

	binOK(t, addr, nil, "topic", "create", "tasks", "--partitions", "1")
	binOK(t, addr, []byte("ok1\nbad\nok2\n"), "produce", "tasks", "--quiet")
	log := filepath.Join(t.TempDir(), "handled")
	// CMD records each delivery, and fails for "bad": 3 records, "bad" delivered twice, 4 runs.
	cmd := `v=$(cat); echo "$SLUICE_OFFSET:$v" >> ` + log + `; [ "$v" != bad ]`
	r := binOK(t, addr, nil, "queue", "consume", "tasks", "--group", "workers", "--exec", cmd, "--max-deliveries", "2", "--count", "4")
	if strings.Count(r.stderr, "nacked") != 2 {
		t.Errorf("two failed runs should be reported, stderr:\n%s", r.stderr)
	}
	got, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	l := strings.Fields(string(got))
	sort.Strings(l)
	if strings.Join(l, " ") != "0:ok1 1:bad 1:bad 2:ok2" {
		t.Errorf("--exec runs: %q", got)
	}
	// The broker dead-letters the record after the second nack, on its own time.
	for deadline := time.Now().Add(20 * time.Second); ; {
		r := binRun(t, addr, nil, "consume", "tasks.dlq", "--count", "1")
		if r.code == 0 && r.stdout == "bad\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead-letter topic: exit %d, %q, %q", r.code, r.stdout, r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := binOK(t, addr, nil, "queue", "consume", "tasks", "--group", "workers", "--idle", "500ms"); r.stdout != "" {
		t.Errorf("settled records delivered again: %q", r.stdout)
	}
}

// TestBinaryRequestReply: sluice reply answers sluice request, through --exec and --value.
func TestBinaryRequestReply(t *testing.T) {
	addr := startBroker(t)
	binOK(t, addr, nil, "topic", "create", "upper", "--partitions", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	svc := exec.CommandContext(ctx, builtSluice(t), "reply", "upper", "--exec", "tr a-z A-Z", "--count", "1")
	svc.Env = append(os.Environ(), "SLUICE_ADDR="+addr)
	var svcErr bytes.Buffer
	svc.Stderr = &svcErr
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	// The service reads requests sent after it joined: ask until it answers.
	var r result
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if r = binRun(t, addr, nil, "request", "upper", "hello", "--timeout", "2s"); r.code == 0 {
			break
		}
	}
	if r.code != 0 || r.stdout != "HELLO\n" {
		t.Fatalf("request: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if err := svc.Wait(); err != nil {
		t.Errorf("reply --count 1: %v, stderr %q", err, svcErr.String())
	}
	r = binRun(t, addr, nil, "request", "upper", "anyone?", "--timeout", "300ms")
	if r.code != 1 || !strings.Contains(r.stderr, "no reply from upper") {
		t.Errorf("request without a service: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestBinaryGroupSeekReset: group reset and group seek move a group without members.
func TestBinaryGroupSeekReset(t *testing.T) {
	addr := startBroker(t)
	binOK(t, addr, nil, "topic", "create", "s", "--partitions", "1")
	binOK(t, addr, []byte("a\nb\nc\nd\ne\n"), "produce", "s", "--quiet")
	binOK(t, addr, nil, "consume", "s", "--group", "g", "--count", "5")
	lag := func() string {
		d := binOK(t, addr, nil, "group", "describe", "g").stdout
		for _, line := range strings.Split(d, "\n") {
			if f := strings.Fields(line); len(f) == 5 && f[0] == "s" {
				return strings.Join(f, " ")
			}
		}
		t.Fatalf("no offset line in:\n%s", d)
		return ""
	}
	if got := lag(); got != "s 0 5 5 0" {
		t.Errorf("after consuming: %q", got)
	}
	if r := binOK(t, addr, nil, "group", "reset", "g", "s"); r.stdout != "group g: s partition 0 now at offset 0\n" {
		t.Errorf("reset: %q", r.stdout)
	}
	if got := lag(); got != "s 0 0 5 5" {
		t.Errorf("after reset: %q", got)
	}
	binOK(t, addr, nil, "group", "seek", "g", "s", "3")
	if r := binOK(t, addr, nil, "consume", "s", "--group", "g", "--count", "2"); r.stdout != "d\ne\n" {
		t.Errorf("after seek 3: %q", r.stdout)
	}
	binOK(t, addr, nil, "group", "reset", "g", "s", "--to", "latest")
	if got := lag(); got != "s 0 5 5 0" {
		t.Errorf("after reset --to latest: %q", got)
	}
	if r := binRun(t, addr, nil, "group", "seek", "g", "s", "x"); r.code != 2 {
		t.Errorf("seek to x: exit %d", r.code)
	}
}

// TestBinaryWrongPort: the CLI pointed at an HTTP port, at a port that closes without a word (another
// face's), at the TLS port without --tls, or with --tls at the plain port says what to do; --tls-ca connects to the TLS port.
func TestBinaryWrongPort(t *testing.T) {
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	httpAddr := strings.TrimPrefix(web.URL, "http://")
	r := binRun(t, httpAddr, nil, "ping")
	oneErrorLine(t, r, "answers HTTP, not the Sluice protocol: is it the broker's HTTP API or metrics port?")

	// A listener that closes without a word, as the Kafka and MQTT faces do on foreign bytes.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		for {
			nc, err := mute.Accept()
			if err != nil {
				return
			}
			nc.Close()
		}
	}()
	oneErrorLine(t, binRun(t, mute.Addr().String(), nil, "ping"), "closed the connection without a Sluice hello")

	cert, _ := servertest.SelfSigned(t)
	var plainAddr, tlsAddr string
	srv, _ := servertest.Start(t, nil, func(o *server.Options) {
		o.TLSAddr = "127.0.0.1:0"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	plainAddr = srv.Addr().String()
	tlsAddr = srv.TLSAddr().String()
	oneErrorLine(t, binRun(t, tlsAddr, nil, "ping"), "expects TLS: add --tls")
	oneErrorLine(t, binRun(t, plainAddr, nil, "ping", "--tls"), "does not answer TLS: drop --tls")

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := binOK(t, tlsAddr, nil, "ping", "--tls-ca", ca); !strings.Contains(r.stdout, "pong from") {
		t.Errorf("ping over TLS: %q", r.stdout)
	}
	if r := binOK(t, tlsAddr, nil, "--tls", "--tls-ca", ca, "topic", "list"); r.stderr != "" {
		t.Errorf("topic list over TLS: %q", r.stderr)
	}
	oneErrorLine(t, binRun(t, tlsAddr, nil, "ping", "--tls"), "certificate")
}

// TestBinaryGroupLagUncommitted: group describe and sluice_consumer_group_lag count the partitions
// where the group has no committed offset, from the log start.
func TestBinaryGroupLagUncommitted(t *testing.T) {
	srv, _ := servertest.Start(t, nil, nil)
	addr := srv.Addr().String()
	binOK(t, addr, nil, "topic", "create", "lag", "--partitions", "3")
	binOK(t, addr, []byte("a\nb\nc\n"), "produce", "lag", "--partition", "0", "--quiet")
	binOK(t, addr, []byte("d\ne\n"), "produce", "lag", "--partition", "1", "--quiet")
	binOK(t, addr, nil, "group", "seek", "g", "lag", "2", "--partition", "0") // partitions 1 and 2: no commit
	d := binOK(t, addr, nil, "group", "describe", "g").stdout
	flat := strings.Join(strings.Fields(d), " ")
	for _, want := range []string{"lag 0 2 3 1", "lag 1 0 2 2", "lag 2 0 0 0", "total 3"} {
		if !strings.Contains(flat, want) {
			t.Errorf("group describe lacks %q:\n%s", want, d)
		}
	}
	var m bytes.Buffer
	srv.WriteMetrics(&m)
	for _, want := range []string{
		`sluice_consumer_group_lag{group="g",partition="0",topic="lag"} 1`,
		`sluice_consumer_group_lag{group="g",partition="1",topic="lag"} 2`,
		`sluice_consumer_group_lag{group="g",partition="2",topic="lag"} 0`,
	} {
		if !strings.Contains(m.String(), want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestBinaryQueueMetrics: sluice_queue_ready, sluice_queue_pending and
// sluice_queue_dead_lettered_total follow a work queue.
func TestBinaryQueueMetrics(t *testing.T) {
	srv, _ := servertest.Start(t, nil, nil)
	addr := srv.Addr().String()
	binOK(t, addr, nil, "topic", "create", "qm", "--partitions", "1")
	binOK(t, addr, []byte("a\n"), "produce", "qm", "--quiet")
	binOK(t, addr, nil, "queue", "consume", "qm", "--group", "w", "--count", "1") // acks a
	binOK(t, addr, []byte("b\n"), "produce", "qm", "--quiet")
	// b fails once, its limit: dead-lettered.
	binOK(t, addr, nil, "queue", "consume", "qm", "--group", "w", "--count", "1", "--exec", "exit 3", "--max-deliveries", "1")
	binOK(t, addr, []byte("c\nd\n"), "produce", "qm", "--quiet")
	// b, due again, is past its limit: dead-lettered when next dispatched; c is taken; d stays ready.
	if r := binOK(t, addr, nil, "queue", "consume", "qm", "--group", "w", "--count", "1", "--max-deliveries", "1"); r.stdout != "c\n" {
		t.Fatalf("third consume: %q", r.stdout)
	}
	metrics := func() string {
		var m bytes.Buffer
		srv.WriteMetrics(&m)
		return m.String()
	}
	want := []string{
		`sluice_queue_ready{group="w",partition="0",topic="qm"} 1`,
		`sluice_queue_pending{group="w",partition="0",topic="qm"} 0`,
		`sluice_queue_dead_lettered_total 1`,
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m, missing := metrics(), ""
		for _, w := range want {
			if !strings.Contains(m, w+"\n") {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %s:\n%s", missing, m)
		}
	}
}
