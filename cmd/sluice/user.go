package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/engine/auth"
)

// sluice user add|delete|list: the users file sluiced reads with --users (docs/security.md). These
// commands work on the file, not through a broker: a running sluiced reads it at start-up only.

func init() {
	register(command{name: "user add", summary: "add a user to the users file, or set a user's password", run: runUserAdd})
	register(command{name: "user delete", summary: "remove a user from the users file",
		run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
			return runUserDelete(args, stdout, stderr)
		}})
	register(command{name: "user list", summary: "list the users of the users file",
		run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
			return runUserList(args, stdout, stderr)
		}})
}

// userFlags is the flag set of a user command: --users and the command's own. The global flags are
// accepted as by every command (so "sluice --addr A user list" parses), and unused but for
// --password-file, which user add reads when it is given on the command line (never from
// SLUICE_PASSWORD_FILE, which is for connecting).
func userFlags(name, operands, about string, stdout, stderr io.Writer) (*cmdFlags, *string) {
	f := newFlags(name, operands, about, stdout, stderr)
	path := f.String("users", os.Getenv("SLUICE_USERS"), "the users `file` (env SLUICE_USERS); sluiced reads it with --users")
	return f, path
}

// usersPath checks that --users was given.
func usersPath(f *cmdFlags, path string) (string, error) {
	if path == "" {
		return "", f.usageError("no users file: --users FILE or env SLUICE_USERS")
	}
	return path, nil
}

func runUserAdd(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f, path := userFlags("user add", "NAME", "Adds NAME to the users file with a SCRAM-SHA-256 and a SCRAM-SHA-512 verifier\n"+
		"of its password (salted and iterated: the password itself is not stored), or replaces\n"+
		"the password of a user already there. The file is created (mode 0600) if missing and\n"+
		"rewritten atomically. The password comes from --password-file (its first line), from\n"+
		"--password-stdin, or is asked for twice on the terminal. A running sluiced reads the\n"+
		"file at start-up.", stdout, stderr)
	pwStdin := f.Bool("password-stdin", false, "read the password from the first line of standard input")
	iterations := f.Int("iterations", auth.DefaultIterations, fmt.Sprintf("PBKDF2 iterations, %d..%d", auth.MinIterations, auth.MaxIterations))
	ops, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	p, err := usersPath(f, *path)
	if err != nil {
		return err
	}
	pwFile := ""
	if flagGiven(f, "password-file") {
		pwFile = f.g.passwordFile
	}
	name := ops[0]
	if err := auth.CheckUserName(name); err != nil {
		return f.usageError("%v", err)
	}
	if *iterations < auth.MinIterations || *iterations > auth.MaxIterations {
		return f.usageError("--iterations %d outside %d..%d", *iterations, auth.MinIterations, auth.MaxIterations)
	}
	var pass string
	switch {
	case pwFile != "" && *pwStdin:
		return f.usageError("--password-file and --password-stdin: choose one")
	case pwFile != "":
		pass, err = readPasswordFile(pwFile)
	case *pwStdin:
		pass, err = readFirstLine(stdin)
	default:
		pass, err = promptPassword(stdin, stderr, name)
	}
	if err != nil {
		return err
	}
	if pass == "" {
		return errors.New("empty password")
	}
	replaced, err := auth.AddUser(p, name, pass, *iterations)
	if err != nil {
		return err
	}
	if replaced {
		fmt.Fprintf(stdout, "set the password of user %s\n", name)
	} else {
		fmt.Fprintf(stdout, "added user %s\n", name)
	}
	return nil
}

func runUserDelete(args []string, stdout, stderr io.Writer) error {
	f, path := userFlags("user delete", "NAME", "Removes NAME from the users file (rewritten atomically).", stdout, stderr)
	ops, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	p, err := usersPath(f, *path)
	if err != nil {
		return err
	}
	if err := auth.DeleteUser(p, ops[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted user %s\n", ops[0])
	return nil
}

func runUserList(args []string, stdout, stderr io.Writer) error {
	f, path := userFlags("user list", "", "Lists the users of the users file, one a line, with their SCRAM mechanisms.", stdout, stderr)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	p, err := usersPath(f, *path)
	if err != nil {
		return err
	}
	u, err := auth.LoadUsers(p)
	if err != nil {
		return err
	}
	for _, n := range u.Names() {
		fmt.Fprintf(stdout, "%s\t%s\n", n, strings.Join(u.Mechanisms(n), ","))
	}
	return nil
}

// readPasswordFile returns the first line of the file at path, without its line ending.
func readPasswordFile(path string) (string, error) {
	fl, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	defer fl.Close()
	return readFirstLine(fl)
}

// readFirstLine reads r's first line, without its line ending.
func readFirstLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// promptPassword asks for name's password twice on the terminal stdin is, without echo. It fails
// when stdin is not a terminal.
func promptPassword(stdin io.Reader, stderr io.Writer, name string) (string, error) {
	tty, ok := stdin.(*os.File)
	var old *unix.Termios
	if ok {
		var err error
		old, err = unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		ok = err == nil
	}
	if !ok {
		return "", errors.New("no password: give --password-file or --password-stdin, or run on a terminal")
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ECHONL
	if err := unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("terminal: %w", err)
	}
	defer func() { _ = unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, old) }()
	r := bufio.NewReader(tty)
	read := func(prompt string) (string, error) {
		fmt.Fprint(stderr, prompt)
		line, err := r.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	p1, err := read("Password for " + name + ": ")
	if err != nil {
		return "", err
	}
	p2, err := read("Again: ")
	if err != nil {
		return "", err
	}
	if p1 != p2 {
		return "", errors.New("the passwords differ")
	}
	return p1, nil
}
