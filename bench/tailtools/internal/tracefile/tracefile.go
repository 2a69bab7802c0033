// Package tracefile opens the Go execution trace named on a tool's command line.
package tracefile

import (
	"flag"
	"fmt"
	"os"

	"golang.org/x/exp/trace"
)

// Open parses the command line's flags, opens the one argument as an execution trace and returns its
// reader. It exits with status 2 and usage on stderr when there is not exactly one argument, with
// status 1 when the file cannot be read as a trace. The file stays open until the tool exits.
func Open(usage string) *trace.Reader {
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage:", usage)
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	r, err := trace.NewReader(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return r
}
