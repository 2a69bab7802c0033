package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBinary builds the real sluice command and runs it as a process against an in-process broker:
// exit statuses, stdout and stderr as a shell sees them, SLUICE_ADDR, and SIGINT.
func TestBinary(t *testing.T) {
	addr := startBroker(t)
	bin := filepath.Join(t.TempDir(), "sluice")
	gobin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first on PATH
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	env := append(os.Environ(), "SLUICE_ADDR="+addr, "SLUICE_TOKEN=")
	sh := func(stdin []byte, args ...string) result {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
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
	expect := func(r result, code int, args ...string) {
		t.Helper()
		if r.code != code {
			t.Errorf("sluice %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
		}
	}

	args := []string{"version"}
	r := sh(nil, args...)
	expect(r, 0, args...)
	if !strings.HasPrefix(r.stdout, "sluice ") {
		t.Errorf("version: %q", r.stdout)
	}
	for _, args := range [][]string{{"--help"}, {"topic", "--help"}, {"produce", "--help"}, {"consume", "-h"}, {"help", "group", "describe"}} {
		r := sh(nil, args...)
		expect(r, 0, args...)
		if !strings.HasPrefix(r.stdout, "Usage: sluice") || r.stderr != "" {
			t.Errorf("sluice %s: stdout %q, stderr %q", strings.Join(args, " "), firstLine(r.stdout), r.stderr)
		}
	}

	// The address comes from SLUICE_ADDR.
	args = []string{"topic", "create", "shell", "--partitions", "1"}
	r = sh(nil, args...)
	expect(r, 0, args...)
	if r.stdout != "created topic shell with 1 partition\n" {
		t.Errorf("create: %q", r.stdout)
	}
	var in bytes.Buffer
	for i := range 200 {
		fmt.Fprintf(&in, "line %d: %s\n", i, strings.Repeat("x", i))
	}
	args = []string{"produce", "shell"}
	r = sh(in.Bytes(), args...)
	expect(r, 0, args...)
	if r.stderr != fmt.Sprintf("produced 200 records (%d bytes) to shell: partition 0 offsets 0-199\n", in.Len()-200) {
		t.Errorf("produce summary %q", r.stderr)
	}
	args = []string{"consume", "shell", "--count", "200"}
	r = sh(nil, args...)
	expect(r, 0, args...)
	if r.stdout != in.String() || r.stderr != "" {
		t.Errorf("consumed %d bytes differ from the %d produced; stderr %q", len(r.stdout), in.Len(), r.stderr)
	}

	// Usage errors exit 2 with the usage; failures exit 1 with one line.
	for _, args := range [][]string{{"frobnicate"}, {"consume", "shell", "--bogus"}, {"topic", "create"}, {}} {
		r := sh(nil, args...)
		expect(r, 2, args...)
		if !strings.Contains(r.stderr, "Usage: sluice") || r.stdout != "" {
			t.Errorf("sluice %s: stdout %q, stderr %q", strings.Join(args, " "), r.stdout, r.stderr)
		}
	}
	oneErrorLine(t, sh(nil, "topic", "describe", "nope"), "unknown topic: nope")
	dead := deadAddr(t)
	oneErrorLine(t, sh(nil, "--addr", dead, "ping"), "cannot reach the broker at "+dead)
	oneErrorLine(t, sh(nil, "topic", "list", "--addr", dead), "cannot reach the broker at "+dead)

	// SIGINT ends a consume that would run forever: exit 0, its progress committed.
	cmd := exec.CommandContext(ctx, bin, "consume", "shell", "--group", "shell-readers")
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for n := 0; n < 200 && sc.Scan(); n++ {
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
	}
	if err := cmd.Wait(); err != nil || errb.Len() != 0 {
		t.Errorf("interrupted consume: %v, stderr %q", err, errb.String())
	}
	r = sh(nil, "group", "describe", "shell-readers")
	if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "shell 0 200 200 0") {
		t.Errorf("the interrupted consume did not commit its 200 records:\n%s", r.stdout)
	}
}
