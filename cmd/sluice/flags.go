package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicemq/sluice/internal/units"
	"github.com/sluicemq/sluice/wire"
)

// defaultAddr is the broker address when neither --addr nor SLUICE_ADDR gives one.
const defaultAddr = "127.0.0.1:7450"

// globals are the flags every broker command accepts, before or after the command name.
type globals struct {
	addr    string
	token   string
	timeout time.Duration
	verbose bool

	// TLS: tls asks for it; tlsCA, tlsCert and tlsKey are PEM files (any of them implies tls).
	tls                    bool
	tlsCA, tlsCert, tlsKey string

	// user, passwordFile and mechanism authenticate as a user of the broker's users file (SCRAM or
	// PLAIN) instead of with a token; the password comes from passwordFile or SLUICE_PASSWORD.
	user         string
	passwordFile string
	mechanism    string
}

// globalNames are the names register defines, so usage lists them apart.
var globalNames = map[string]bool{"addr": true, "token": true, "timeout": true, "verbose": true,
	"tls": true, "tls-ca": true, "tls-cert": true, "tls-key": true,
	"user": true, "password-file": true, "mechanism": true}

func (g *globals) register(fs *flag.FlagSet) {
	addr := os.Getenv("SLUICE_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&g.addr, "addr", addr, "the broker's `address`, host:port (env SLUICE_ADDR)")
	fs.StringVar(&g.token, "token", os.Getenv("SLUICE_TOKEN"), "authentication `token` (env SLUICE_TOKEN)")
	fs.StringVar(&g.user, "user", os.Getenv("SLUICE_USER"), "authenticate as `name`, a user of the broker's users file (env SLUICE_USER; the password from --password-file or env SLUICE_PASSWORD)")
	fs.StringVar(&g.passwordFile, "password-file", os.Getenv("SLUICE_PASSWORD_FILE"), "`file` whose first line is the password of --user (env SLUICE_PASSWORD_FILE); for user add, the new password")
	fs.StringVar(&g.mechanism, "mechanism", "SCRAM-SHA-256", "how --user authenticates: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN")
	fs.DurationVar(&g.timeout, "timeout", 10*time.Second, "bound on connecting and on each request")
	fs.BoolVar(&g.verbose, "verbose", false, "log the client's activity to stderr")
	fs.BoolVar(&g.tls, "tls", false, "connect with TLS (to the broker's --tls-listen port), verifying it with the system's CAs")
	fs.StringVar(&g.tlsCA, "tls-ca", os.Getenv("SLUICE_TLS_CA"), "verify the broker with the CA certificates in PEM `file` (implies --tls; env SLUICE_TLS_CA)")
	fs.StringVar(&g.tlsCert, "tls-cert", "", "present the client certificate in PEM `file` (implies --tls; with --tls-key)")
	fs.StringVar(&g.tlsKey, "tls-key", "", "the private key in PEM `file` for --tls-cert")
}

// cmdFlags is one command's flag set, its own flags and the global ones, with the text --help prints.
type cmdFlags struct {
	*flag.FlagSet
	name     string // "topic create"
	operands string // "NAME"
	about    string // a paragraph for --help
	g        globals
	stdout   io.Writer
	stderr   io.Writer
}

// newFlags returns the flag set of the command name, which takes operands (for the synopsis) and
// does what about says.
func newFlags(name, operands, about string, stdout, stderr io.Writer) *cmdFlags {
	f := &cmdFlags{
		FlagSet: flag.NewFlagSet("sluice "+name, flag.ContinueOnError),
		name:    name, operands: operands, about: about, stdout: stdout, stderr: stderr,
	}
	f.SetOutput(io.Discard) // parse reports errors itself
	f.Usage = func() {}
	f.g.register(f.FlagSet)
	return f
}

// parse parses args, flags and operands interleaved ("--" ends the flags), and checks that there are
// between lo and hi operands (hi < 0: no limit). --help prints the usage on stdout and returns errHelp;
// a bad flag or operand count prints the error and the usage on stderr and returns errUsage.
func (f *cmdFlags) parse(args []string, lo, hi int) ([]string, error) {
	var operands []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.printUsage(f.stdout)
				return nil, errHelp
			}
			return nil, f.usageError("%s", flagError(err, f.FlagSet))
		}
		rest := f.Args()
		if len(rest) == 0 {
			break
		}
		if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			operands = append(operands, rest...)
			break
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
	switch {
	case len(operands) < lo:
		return nil, f.usageError("missing %s", strings.Fields(f.operands)[len(operands)])
	case hi >= 0 && len(operands) > hi:
		return nil, f.usageError("unexpected argument %q", operands[hi])
	}
	if f.g.timeout <= 0 {
		return nil, f.usageError("--timeout must be positive")
	}
	return operands, nil
}

// usageError prints a usage error and the usage on stderr and returns errUsage.
func (f *cmdFlags) usageError(format string, args ...any) error {
	fmt.Fprintf(f.stderr, "sluice %s: %s\n\n", f.name, fmt.Sprintf(format, args...))
	f.printUsage(f.stderr)
	return errUsage
}

func (f *cmdFlags) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: sluice %s", f.name)
	if f.operands != "" {
		fmt.Fprintf(w, " %s", f.operands)
	}
	fmt.Fprintf(w, " [FLAGS]\n\n%s\n", f.about)
	own := false
	f.VisitAll(func(fl *flag.Flag) { own = own || !globalNames[fl.Name] })
	if own {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, f.FlagSet, func(name string) bool { return !globalNames[name] })
	}
	fmt.Fprint(w, "\nGlobal flags:\n")
	printFlags(w, f.FlagSet, func(name string) bool { return globalNames[name] })
}

// printFlags lists the flags of fs that keep accepts (nil: all), one a line, with their defaults.
func printFlags(w io.Writer, fs *flag.FlagSet, keep func(string) bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fs.VisitAll(func(fl *flag.Flag) {
		if keep != nil && !keep(fl.Name) {
			return
		}
		arg, usage := flag.UnquoteUsage(fl)
		if arg != "" {
			arg = " " + arg
		}
		if d := fl.DefValue; d != "" && d != "false" && d != "0" && d != "0s" && !strings.Contains(usage, "(default") {
			usage += fmt.Sprintf(" (default %s)", d)
		}
		dash := "--"
		if len(fl.Name) == 1 {
			dash = "-" // -e, as kcat spells it
		}
		fmt.Fprintf(tw, "  %s%s%s\t%s\n", dash, fl.Name, arg, usage)
	})
	tw.Flush()
}

// flagGiven reports whether the flag name was given on the command line.
func flagGiven(f *cmdFlags, name string) bool {
	given := false
	f.Visit(func(fl *flag.Flag) { given = given || fl.Name == name })
	return given
}

// optString is a string flag that knows whether it was given, so "" can be a value.
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string     { return o.v }
func (o *optString) Set(s string) error { o.v, o.set = s, true; return nil }

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// byteSize is a flag holding a size in bytes: a number with an optional unit, "512", "64KiB",
// "1.5GB", "10M" (k, M, G, T are powers of 1024; KB, MB, GB, TB powers of 1000).
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// parseBytes reads a size with the units sluiced also takes (internal/units).
func parseBytes(s string) (int64, error) { return units.ParseBytes(s) }

// ageFlag is a retention age flag that also takes days: "7d", "36h", "90m". It is range-checked as
// it is parsed: 0 (the broker's default) or 1ms..about 292 years (wire.MaxRetentionMs), so the
// milliseconds sent can neither wrap nor round to 0.
type ageFlag time.Duration

func (a *ageFlag) String() string { return time.Duration(*a).String() }

func (a *ageFlag) Set(s string) error {
	const maxAge = time.Duration(wire.MaxRetentionMs) * time.Millisecond
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n < 0 || math.IsNaN(n) {
			return fmt.Errorf("not a duration: %q", s)
		}
		if n*float64(24*time.Hour) > float64(maxAge) {
			return fmt.Errorf("%s is more than %d ms, about 292 years (0 keeps records for ever)", s, int64(wire.MaxRetentionMs))
		}
		d = time.Duration(n * float64(24*time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return fmt.Errorf("not a duration: %q", s)
		}
	}
	switch {
	case d > maxAge:
		return fmt.Errorf("%s is more than %d ms, about 292 years (0 keeps records for ever)", s, int64(wire.MaxRetentionMs))
	case d > 0 && d < time.Millisecond:
		return fmt.Errorf("%s is less than 1ms", s)
	}
	*a = ageFlag(d)
	return nil
}

// delimFlag is a record delimiter: one or more bytes, with the escapes \n \r \t \0 \\ and \xHH.
type delimFlag []byte

func (d *delimFlag) String() string {
	r := strings.NewReplacer("\\", `\\`, "\n", `\n`, "\r", `\r`, "\t", `\t`, "\x00", `\0`)
	return r.Replace(string(*d))
}

func (d *delimFlag) Set(s string) error {
	b, err := unescape(s)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("empty delimiter")
	}
	*d = b
	return nil
}

func unescape(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 == len(s) {
			return nil, errors.New(`trailing \`)
		}
		i++
		switch s[i] {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+3 > len(s) { // two hex digits must follow the x at i
				return nil, fmt.Errorf(`bad escape \x in %q`, s)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf(`bad escape \x%s in %q`, s[i+1:i+3], s)
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf(`unknown escape \%c (use \n \r \t \0 \\ \xHH)`, s[i])
		}
	}
	return out, nil
}

// flagError is the message for a flag.Parse error on fs: the flag package's, but for a flag fs does
// not define, which it names the way it was typed (--name) with the closest flag fs has.
func flagError(err error, fs *flag.FlagSet) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return err.Error()
	}
	msg := "unknown flag --" + name
	// The closest: within two edits, or a flag whose name starts with the three or more letters typed.
	best, bestD := "", 3
	fs.VisitAll(func(fl *flag.Flag) {
		d := editDistance(name, fl.Name)
		if len(name) >= 3 && strings.HasPrefix(fl.Name, name) {
			d = min(d, 2)
		}
		if d < bestD {
			best, bestD = fl.Name, d
		}
	})
	if best != "" {
		msg += " (did you mean --" + best + "?)"
	}
	return msg
}
