// Command regionkv-ctl is the command-line client of a regionkv cluster:
// data commands (put, get, delete, scan, delete-range) through the Go
// client, and cluster commands (stores, regions, operators, schedulers,
// config, health, members) through the scheduler's gRPC and JSON admin API.
//
//	regionkv-ctl put hello world
//	regionkv-ctl get hello
//	regionkv-ctl scan a z --limit 10
//	regionkv-ctl region list
//	regionkv-ctl operator add transfer-leader 2 3 --wait
//
// Keys and values are taken as text, or as hex with --hex, or with escapes
// (\xHH, \n, \t, \0, \\) with --escaped; output follows the same choice.
// -w json prints JSON instead of tables.
//
// Exit codes: 0 success; 1 the operation failed (including an unreachable
// cluster); 2 bad usage or input (unknown command or flag, wrong arguments,
// bad hex); 3 not found (a key, store, region or operator); 4 a write whose
// outcome is unknown (it may or may not have been applied). Errors go to
// stderr, prefixed with "regionkv-ctl: ".
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/kv/client"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitNotFound = 3
	exitUnknown  = 4
)

// Version is printed by --version.
var Version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries the exit code of an error.
type exitError struct {
	code int
	err  error
	// hint adds a pointer to --help to the message.
	hint bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...), hint: true}
}

// rejectedf is bad input that the cluster refused (exit code 2, no hint).
func rejectedf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func notFoundf(format string, args ...any) error {
	return &exitError{code: exitNotFound, err: fmt.Errorf(format, args...)}
}

// run runs the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	defer a.close()
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	fmt.Fprintf(stderr, "regionkv-ctl: %v\n", err)
	var ee *exitError
	if code == exitUsage && (!errors.As(err, &ee) || ee.hint) {
		fmt.Fprintln(stderr, "Run 'regionkv-ctl --help' for usage.")
	}
	return code
}

// exitCode sorts an error into an exit code.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, client.ErrNotFound):
		return exitNotFound
	case errors.Is(err, client.ErrUnknownOutcome):
		return exitUnknown
	case status.Code(err) == codes.InvalidArgument:
		return exitUsage
	}
	// cobra's own errors: an unknown command or flag, wrong arguments.
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "required flag", "if any flags in the group"} {
		if strings.HasPrefix(err.Error(), p) {
			return exitUsage
		}
	}
	return exitFailed
}
