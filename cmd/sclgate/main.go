// Command sclgate is an inbound SMTP content-filter gateway: it receives mail
// for accepted domains, gives each message a Spam Confidence Level (SCL 0-9)
// and archives, deletes, rejects or relays it downstream stamped with it.
//
// Usage:
//
//	sclgate serve   [-config FILE] [-check]
//	sclgate scan    [-config FILE] [-classifier NAME] [-defs BUNDLE] [-weights FILE] [-json] [-explain N] [FILE|DIR...]
//	sclgate weights check FILE
//	sclgate update  status|detect|install|rollback [-config FILE] ...
//	sclgate defs    keygen|sign|verify|info|publish|train|eval ...
//	sclgate archive list|show|raw|release|delete|purge ...
//	sclgate version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "0.2.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// env is what a subcommand may touch of the outside world, so tests can run
// subcommands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

const usage = `sclgate: an inbound SMTP content-filter gateway (SCL 0-9)

Usage:
  sclgate serve   [-config FILE] [-check]      run the gateway
  sclgate scan    [-config FILE] [-classifier NAME] [-defs BUNDLE] [-weights FILE] [-json] [-explain N] [FILE|DIR...]
                                               score messages (stdin when none)
  sclgate weights check FILE                   validate a custom weight list
  sclgate update  status|detect|install|rollback [-config FILE]
                                               filter-definition updates
  sclgate defs    keygen|sign|verify|info|publish|train|eval
                                               definitions bundles ("sclgate defs" for details)
  sclgate archive list|show|raw|release|delete|purge [-config FILE|-dir DIR] ...
                                               the archive manager ("sclgate archive" for details)
  sclgate version                              print the version

Run "sclgate COMMAND -h" for a command's flags.
`

// run runs a subcommand and returns the process exit code. A command
// that succeeds but could not write its output (a full disk under
// "defs info -json B > info.json") fails: a script must not take an empty
// or cut file for the answer.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := &outputCheck{w: stdout}
	code := dispatch(args, env{stdin: stdin, stdout: out, stderr: stderr})
	if code == 0 && out.err != nil {
		fmt.Fprintf(stderr, "sclgate: writing the output: %v\n", out.err)
		return 1
	}
	return code
}

// outputCheck is a Writer that remembers the first error of the one it
// wraps.
type outputCheck struct {
	w   io.Writer
	err error
}

func (c *outputCheck) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// flagExit is the exit code for a failed flag parse: 0 when help was
// asked for (-h, -help; the usage went to stdout, see dispatch), as the flag package's
// own ExitOnError has it, else usage, the command's code for a usage
// error.
func flagExit(err error, usage int) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return usage
}

// warnLog is the log of a command's library code (the updater, a
// release's downstream): its warnings, written to w without a time
// stamp, since they are the command's output, not a log file's.
func warnLog(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}}))
}

// asksHelp reports whether args hold -h, -help or --help among their
// flags (before a "--").
func asksHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// isHelp reports whether arg asks for help rather than naming a
// subcommand.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// dispatch runs the subcommand args[0] and returns its exit code.
func dispatch(args []string, e env) int {
	if asksHelp(args) {
		// Help asked for is the command's output, as the command
		// list's is: on standard output ("sclgate serve -h | less"),
		// whichever command or subcommand prints it. (A usage error
		// still goes to standard error.)
		e.stderr = e.stdout
	}
	stdout, stderr := e.stdout, e.stderr
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(e, args[1:])
	case "scan":
		return cmdScan(e, args[1:])
	case "weights":
		return cmdWeights(e, args[1:])
	case "update":
		return cmdUpdate(e, args[1:])
	case "defs":
		return cmdDefs(e, args[1:])
	case "archive":
		return cmdArchive(e, args[1:])
	case "version", "-version", "--version":
		if len(args) > 1 && isHelp(args[1]) {
			fmt.Fprintln(stdout, "usage: sclgate version (prints the version, the Go release and the platform)")
			return 0
		}
		if len(args) > 1 {
			fmt.Fprintf(stderr, "sclgate version: takes no arguments, got %q\nusage: sclgate version\n", args[1])
			return 2
		}
		fmt.Fprintf(stdout, "sclgate %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sclgate: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// reorderFlags moves the flags in args (and the values of those that take
// one) before the other arguments, so that "release ID -to ADDR" works as
// well as "release -to ADDR ID". "--" ends the flags as usual.
func reorderFlags(fs *flag.FlagSet, args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // fs.Parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 == len(args) {
			// A flag that takes a value, last: fs.Parse must say "flag
			// needs an argument", not take the "--" below for its value.
			return flags
		}
		i++
		flags = append(flags, args[i])
	}
	return append(append(flags, "--"), rest...)
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
