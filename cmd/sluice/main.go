// Command sluice is the command line of the Sluice broker: topics, produce, consume, consumer groups,
// ping and bench.
//
//	sluice [--addr HOST:PORT] [--token T] [--timeout D] COMMAND [SUBCOMMAND] [ARGS] [FLAGS]
//
// Every command is a function of (ctx, args, stdin, stdout, stderr) that registers itself from an init
// in its own file, so tests run commands in-process and a new file adds a command without touching
// this one. Global flags given before the command name are handed to the command ahead of its own
// arguments; every command that talks to a broker also accepts them after its name.
//
// Exit status: 0 on success and for --help, 1 when the command fails (one "sluice: ..." line on
// stderr), 2 for an unknown command, an unknown flag or a missing operand (with the usage).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/sluicemq/sluice/wire"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// runFunc runs one command. args are the command's own arguments, flags and operands in any order,
// after any global flags given before the command name. A command returns errHelp after printing its
// --help, errUsage after printing a usage error, nil on success, and any other error for the
// dispatcher to print as one line.
type runFunc func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error

// command is one runnable command, such as "produce" or "topic create".
type command struct {
	name    string // the words that select it: "produce", "topic create"
	summary string // one line for the command list
	run     runFunc
}

// commands holds every command by name. Written only by register, from init functions.
var commands = map[string]*command{}

// register adds a command. A command without stdin adapts its function, for example bench.go:
//
//	func init() {
//		register(command{name: "bench", summary: "measure the broker's throughput and latency",
//			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
//				return runBench(ctx, args, stdout, stderr)
//			}})
//	}
func register(c command) {
	if c.name == "" || c.run == nil {
		panic("sluice: command without a name or a function")
	}
	if _, dup := commands[c.name]; dup {
		panic("sluice: command registered twice: " + c.name)
	}
	commands[c.name] = &c
}

// errHelp and errUsage tell the dispatcher that the command has already printed its help (exit 0) or
// its usage error (exit 2).
var (
	errHelp  = errors.New("sluice: help shown")
	errUsage = errors.New("sluice: usage error shown")
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the first signal ends the command cleanly; a second one kills at once
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run parses the global flags, finds the command and runs it, returning the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var g globals
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printMainUsage(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "sluice: %s\n\n", flagError(err, fs))
		printMainUsage(stderr, fs)
		return exitUsage
	}
	rest := fs.Args()
	if *showVersion {
		printVersion(stdout)
		return exitOK
	}
	if len(rest) == 0 {
		printMainUsage(stderr, fs)
		return exitUsage
	}
	if rest[0] == "help" { // "sluice help topic create" is "sluice topic create --help"
		if len(rest) == 1 {
			printMainUsage(stdout, fs)
			return exitOK
		}
		rest = append(slices.Clone(rest[1:]), "--help")
	}
	// Global flags given before the command go to the command ahead of its own arguments.
	var global []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "version" {
			global = append(global, "--"+f.Name+"="+f.Value.String())
		}
	})

	for n := min(len(rest), 2); n >= 1; n-- {
		c := commands[strings.Join(rest[:n], " ")]
		if c == nil {
			continue
		}
		err := c.run(ctx, append(global, rest[n:]...), stdin, stdout, stderr)
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, errHelp), errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errUsage):
			return exitUsage
		}
		fmt.Fprintf(stderr, "sluice: %s%s\n", errorLine(err), unknownTopicHint(c.name, err))
		return exitFail
	}

	// A group of commands ("topic", "group") named alone, with --help, or with an unknown subcommand.
	if subs := subcommands(rest[0]); len(subs) > 0 {
		switch {
		case len(rest) > 1 && isHelpFlag(rest[1]):
			printGroupUsage(stdout, rest[0], subs)
			return exitOK
		case len(rest) > 1:
			fmt.Fprintf(stderr, "sluice: unknown command %q\n%s\n", rest[0]+" "+rest[1], didYouMean(rest[0]+" "+rest[1]))
		default:
			fmt.Fprintf(stderr, "sluice: %s needs a command\n\n", rest[0])
		}
		printGroupUsage(stderr, rest[0], subs)
		return exitUsage
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n%s\n", rest[0], didYouMean(rest[0]))
	printMainUsage(stderr, fs)
	return exitUsage
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--help", "--h":
		return true
	}
	return false
}

// subcommands lists the commands named "group ...", sorted.
func subcommands(group string) []*command {
	var out []*command
	for name, c := range commands {
		if strings.HasPrefix(name, group+" ") {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *command) int { return strings.Compare(a.name, b.name) })
	return out
}

func printMainUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, "Usage: sluice [global flags] COMMAND [ARGS] [FLAGS]\n\n"+
		"The command line of the Sluice message broker.\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, name := range names {
		fmt.Fprintf(tw, "  %s\t%s\n", name, commands[name].summary)
	}
	fmt.Fprintf(tw, "  help COMMAND\tshow a command's flags\n")
	tw.Flush()
	fmt.Fprint(w, "\nGlobal flags (also accepted after the command):\n")
	printFlags(w, fs, nil)
	fmt.Fprint(w, "\nRun 'sluice COMMAND --help' for a command's flags.\n")
}

func printGroupUsage(w io.Writer, group string, subs []*command) {
	fmt.Fprintf(w, "Usage: sluice %s COMMAND [ARGS] [FLAGS]\n\nCommands:\n", group)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range subs {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun 'sluice %s COMMAND --help' for a command's flags.\n", group)
}

// didYouMean suggests the command names closest to name: within two edits (one for names of up to
// four letters), or of which name is a prefix. It returns "" or "Did you mean ...?\n".
func didYouMean(name string) string {
	var names []string
	seen := map[string]bool{}
	for full := range commands {
		for _, n := range []string{full, strings.Fields(full)[0]} {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	names = append(names, "help")
	slices.Sort(names)
	var close []string
	for _, n := range names {
		limit := 2
		if len(name) <= 4 {
			limit = 1
		}
		if strings.Count(n, " ") == strings.Count(name, " ") && (editDistance(name, n) <= limit || strings.HasPrefix(n, name)) {
			close = append(close, strconv.Quote("sluice "+n))
		}
	}
	if len(close) == 0 || len(close) > 4 {
		return ""
	}
	return "Did you mean " + strings.Join(close, " or ") + "?\n"
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// usesTopic lists the commands that read or write their topic operand, which must exist.
var usesTopic = map[string]bool{"produce": true, "consume": true, "queue consume": true, "request": true, "reply": true}

// unknownTopicHint is what to add to the error line of command when err is the broker's "unknown
// topic": how to see the topics and make the missing one. Empty otherwise.
func unknownTopicHint(command string, err error) string {
	var pe *wire.ProtocolError
	if !usesTopic[command] || !errors.Is(err, wire.CodeUnknownTopic) || !errors.As(err, &pe) {
		return ""
	}
	name := pe.Message
	if name == "" || strings.ContainsAny(name, " \t\n") {
		name = "NAME"
	}
	return " (sluice topic list shows the topics; sluice topic create " + name + " makes it)"
}
