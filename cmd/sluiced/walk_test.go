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
	"regexp"
	"strings"
	"testing"
	"time"
)

// docAddr is the broker address the docs' examples use; the walk replaces it with its broker's.
const docAddr = "127.0.0.1:7450"

// walkSkip are the documented commands the walk does not run, with why.
var walkSkip = map[string]string{
	"make test": "the walk is part of it",
	"make run":  "the walk starts bin/sluiced itself, on free ports, as make run does on 7450",
}

// docBlock is one runnable code block of a document.
type docBlock struct {
	lang string // sh or console
	line int    // where it starts in the file
	text string
}

// docBlocks returns the ```sh and ```console blocks of a markdown file; ```text and other languages
// are illustrations, not run.
func docBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []docBlock
	var cur *docBlock
	for i, line := range strings.Split(string(raw), "\n") {
		switch {
		case cur == nil && (line == "```sh" || line == "```console"):
			cur = &docBlock{lang: strings.TrimPrefix(line, "```"), line: i + 1}
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	return out
}

// TestNewcomerWalk is what a newcomer does on a fresh clone: make build, start sluiced, then run every
// command of the README's and docs/cli.md's shell blocks as written, each document against a fresh
// broker. A ```sh command must exit 0; a ```console command ("$ " lines) must exit as the session
// implies (echo $? shows it) and print the lines shown, where times, durations and timestamps may
// differ and column padding is not compared.
func TestNewcomerWalk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs the docs (about a minute)")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // a first make build compiles everything
	defer cancel()
	for _, doc := range []string{"README.md", "docs/cli.md"} {
		t.Run(strings.ReplaceAll(doc, "/", "_"), func(t *testing.T) {
			blocks := docBlocks(t, filepath.Join(root, doc))
			if len(blocks) == 0 {
				t.Fatalf("%s has no shell blocks", doc)
			}
			work := t.TempDir()
			if err := os.Symlink(filepath.Join(root, "bin"), filepath.Join(work, "bin")); err != nil {
				t.Fatal(err)
			}
			w := &walker{t: t, ctx: ctx, root: root, work: work, doc: doc}
			for _, b := range blocks {
				w.block(b)
			}
			if w.broker != nil {
				w.broker.stop()
			}
		})
	}
}

// walker runs one document's commands.
type walker struct {
	t          *testing.T
	ctx        context.Context
	root, work string
	doc        string
	broker     *broker
	env        []string // exported variables
	lastCode   int
}

// ensureBroker starts bin/sluiced (built by the document's make build, or built here) on free ports
// with its data in the walk's directory.
func (w *walker) ensureBroker() {
	if w.broker != nil {
		return
	}
	if _, err := os.Stat(filepath.Join(w.root, "bin", "sluiced")); err != nil {
		w.run("make build", w.root) // the README builds first; docs/cli.md assumes it was done
	}
	b := &broker{t: w.t, addr: freePort(w.t), metrics: freePort(w.t), data: filepath.Join(w.work, "data")}
	b.bin = filepath.Join(w.root, "bin", "sluiced")
	b.start()
	w.t.Cleanup(b.kill)
	w.broker = b
}

// run runs one command line under bash in dir and returns its combined output and exit status.
func (w *walker) run(line, dir string) (string, int) {
	w.t.Helper()
	cmd := exec.CommandContext(w.ctx, "bash", "-c", line)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Join(w.root, "bin")+":"+os.Getenv("PATH"), "SLUICE_TOKEN=", "SLUICE_TLS_CA=")
	if w.broker != nil {
		cmd.Env = append(cmd.Env, "SLUICE_ADDR="+w.broker.addr)
	}
	cmd.Env = append(cmd.Env, w.env...)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("%s: %s: %v", w.doc, line, err)
	}
	return string(out), code
}

func (w *walker) block(b docBlock) {
	w.t.Helper()
	if b.lang == "sh" {
		for i, line := range strings.Split(b.text, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			cmdOnly := strings.TrimSpace(strings.SplitN(line, "#", 2)[0])
			if why, skip := walkSkip[cmdOnly]; skip {
				w.t.Logf("%s:%d: not run: %s (%s)", w.doc, b.line+i+1, cmdOnly, why)
				continue
			}
			dir := w.work
			if cmdOnly == "make build" {
				dir = w.root
			} else {
				w.ensureBroker()
			}
			out, code := w.run(w.addr(line), dir)
			if code != 0 {
				w.t.Errorf("%s:%d: %s: exit %d\n%s", w.doc, b.line+i+1, line, code, out)
			}
			if cmdOnly == "make build" {
				// make build stamps VERSION into both binaries (without it they say "(devel)" here,
				// where GOFLAGS may turn VCS stamping off).
				for _, bin := range []string{"bin/sluice", "bin/sluiced"} {
					v, code := w.run(bin+" --version", w.root)
					if code != 0 || strings.Contains(v, "(devel)") {
						w.t.Errorf("%s --version after make build: exit %d, %q", bin, code, v)
					}
				}
			}
		}
		return
	}
	// A console session: "$ command" lines, each followed by the output it shows.
	type step struct {
		cmd  string
		line int
		want []string
	}
	var steps []step
	for i, line := range strings.Split(strings.TrimSuffix(b.text, "\n"), "\n") {
		if c, ok := strings.CutPrefix(line, "$ "); ok {
			steps = append(steps, step{cmd: c, line: b.line + i + 1})
		} else if len(steps) > 0 {
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, line)
		}
	}
	w.ensureBroker()
	for _, s := range steps {
		var out string
		code := 0
		switch {
		case strings.HasPrefix(s.cmd, "export "):
			kv := w.addr(strings.TrimPrefix(s.cmd, "export "))
			w.env = append(w.env, kv)
		case s.cmd == "echo $?":
			out = fmt.Sprintf("%d\n", w.lastCode)
		default:
			out, code = w.run(w.addr(s.cmd), w.work)
			w.lastCode = code
			next := ""
			for i, x := range steps {
				if x.line == s.line && i+1 < len(steps) {
					next = steps[i+1].cmd
				}
			}
			if code != 0 && next != "echo $?" {
				w.t.Errorf("%s:%d: %s: exit %d\n%s", w.doc, s.line, s.cmd, code, out)
				continue
			}
		}
		got := lines(out)
		if len(got) != len(s.want) {
			w.t.Errorf("%s:%d: %s: %d lines, the doc shows %d\ngot:\n%s\ndoc:\n%s", w.doc, s.line, s.cmd, len(got), len(s.want), out, strings.Join(s.want, "\n"))
			continue
		}
		for i, want := range s.want {
			if !docLineMatches(w.addr(want), got[i]) {
				w.t.Errorf("%s:%d: %s: line %d is %q, the doc shows %q", w.doc, s.line, s.cmd, i+1, got[i], want)
			}
		}
	}
}

// addr replaces the docs' broker address with the walk's broker's.
func (w *walker) addr(s string) string {
	if w.broker == nil {
		return s
	}
	return strings.ReplaceAll(s, docAddr, w.broker.addr)
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

var (
	// Volatile values in the docs' output: RFC 3339 timestamps and measured durations.
	docTimestamp = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	docDuration  = regexp.MustCompile(`\d+(\.\d+)?(ns|µs|ms|s)\b`)
	spaces       = regexp.MustCompile(`\s+`)
)

// docLineMatches compares an output line with the doc's: whitespace runs are one space, and the doc's
// timestamps and durations match any.
func docLineMatches(doc, got string) bool {
	norm := func(s string) string { return strings.TrimSpace(spaces.ReplaceAllString(s, " ")) }
	doc, got = norm(doc), norm(got)
	if doc == got {
		return true
	}
	var re bytes.Buffer
	re.WriteString("^")
	rest := doc
	for rest != "" {
		ts := docTimestamp.FindStringIndex(rest)
		du := docDuration.FindStringIndex(rest)
		m := ts
		pattern := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`
		if m == nil || (du != nil && du[0] < m[0]) {
			m, pattern = du, `\d+(\.\d+)?(ns|µs|ms|s)`
		}
		if m == nil {
			re.WriteString(regexp.QuoteMeta(rest))
			break
		}
		re.WriteString(regexp.QuoteMeta(rest[:m[0]]))
		re.WriteString(pattern)
		rest = rest[m[1]:]
	}
	re.WriteString("$")
	return regexp.MustCompile(re.String()).MatchString(got)
}
