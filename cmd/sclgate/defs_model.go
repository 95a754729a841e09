package main

import "fmt"

// defsTrain implements "sclgate defs train". Being written (issue 5).
func defsTrain(e env, args []string) int {
	fmt.Fprintln(e.stderr, "sclgate defs train: not available in this build")
	return 1
}

// defsEval implements "sclgate defs eval". Being written (issue 5).
func defsEval(e env, args []string) int {
	fmt.Fprintln(e.stderr, "sclgate defs eval: not available in this build")
	return 1
}
