package scorer

import (
	"context"
	"testing"
)

func TestFallback(t *testing.T) {
	var failures []string
	f := &Fallback{Primary: failing{}, Secondary: fixed(4), OnError: func(c string, err error) { failures = append(failures, c) }}
	s := &Scorer{Classifier: f}
	r, err := s.Score(context.Background(), Parse(msg("x", "y")))
	if err != nil || r.SCL != 4 || r.Classifier != "fixed (failing failed)" {
		t.Errorf("fallback: %+v %v", r, err)
	}
	if len(failures) != 1 || failures[0] != "failing" {
		t.Errorf("OnError calls %q", failures)
	}

	// No secondary: the error reaches the caller (the gateway answers 451).
	f = &Fallback{Primary: failing{}}
	if _, err := (&Scorer{Classifier: f}).Score(context.Background(), Parse(msg("x", "y"))); err == nil {
		t.Error("tempfail mode returned no error")
	}

	// A working primary answers itself.
	f = &Fallback{Primary: fixed(2), Secondary: fixed(8)}
	r, _ = (&Scorer{Classifier: f}).Score(context.Background(), Parse(msg("x", "y")))
	if r.SCL != 2 || r.Classifier != "fixed" {
		t.Errorf("primary: %+v", r)
	}
}
