// Command serl is the command line over the serl engine: one binary, one subcommand per job.
// No algorithm lives here; each subcommand parses flags, calls the engine and writes its output.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func addCommand(c command) { commands[c.name] = c }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: serl <command> [flags]   (serl <command> -h for a command's flags)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "serl: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err := c.run(args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "serl %s: %v\n", c.name, err)
			return 2
		}
		fmt.Fprintf(stderr, "serl %s: %v\n", c.name, err)
		return 1
	}
	return 0
}

// usageError is a bad flag or argument: exit status 2, as flag.ExitOnError would give.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// newFlags makes a subcommand's flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("serl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags and rejects stray positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	// A flag given no value takes the next flag as its value (--resume --run DIR makes the run "--run"
	// and DIR a stray argument): say so rather than report the stray.
	var swallowed error
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		if name, _, _ := strings.Cut(strings.TrimLeft(v, "-"), "="); swallowed == nil && strings.HasPrefix(v, "-") && fs.Lookup(name) != nil {
			swallowed = usagef("--%s %s: --%s needs a value of its own (--%s VALUE); it took the flag %s as its value", f.Name, v, f.Name, f.Name, v)
		}
	})
	if swallowed != nil {
		return swallowed
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", strings.Join(fs.Args(), " "))
	}
	// Go's flag package parses "Inf" and "NaN" as numbers; no setting of serl means either, and they
	// would otherwise surface much later (e.g. as a JSON error writing config.json).
	var bad error
	fs.Visit(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok && bad == nil {
			if v, ok := g.Get().(float64); ok && (math.IsNaN(v) || math.IsInf(v, 0)) {
				bad = usagef("--%s %v: want a finite number", f.Name, v)
			}
		}
	})
	return bad
}
