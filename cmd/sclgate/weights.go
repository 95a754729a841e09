package main

import (
	"flag"
	"fmt"

	"github.com/sclgate/sclgate/weights"
)

// cmdWeights implements "sclgate weights check FILE".
func cmdWeights(e env, args []string) int {
	const usage = "usage: sclgate weights check FILE\nValidates a custom weight list (Exchange's XML format): exit 0 when it loads, 1 with the file and line of what is wrong."
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintln(e.stdout, usage)
		return 0
	}
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(e.stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("weights check", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprintln(e.stderr, usage) }
	if err := fs.Parse(args[1:]); err != nil {
		return flagExit(err, 2)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, usage)
		return 2
	}
	l, err := weights.Load(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return 1
	}
	// Counts by Type, and within each by kind of Change.
	type key struct {
		t weights.Type
		k weights.Kind
	}
	n := map[key]int{}
	for _, en := range l.Entries() {
		n[key{en.Type, en.Kind}]++
	}
	for _, w := range l.Ignored() {
		fmt.Fprintf(e.stderr, "weights: %s %s\n", fs.Arg(0), w)
	}
	noun := "entries"
	if l.Len() == 1 {
		noun = "entry"
	}
	fmt.Fprintf(e.stdout, "%s: %d %s\n", fs.Arg(0), l.Len(), noun)
	for _, t := range []weights.Type{weights.Body, weights.Subject, weights.Both} {
		d, mn, mx := n[key{t, weights.Delta}], n[key{t, weights.Min}], n[key{t, weights.Max}]
		fmt.Fprintf(e.stdout, "  %-7s %5d  (integer %d, MIN %d, MAX %d)\n", t, d+mn+mx, d, mn, mx)
	}
	return 0
}
