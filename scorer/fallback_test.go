package scorer

import (
	"context"
	"errors"
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

// textSCL is a classifier that needs the parsed message: SCL 5 when it
// has body text, else an error.
type textSCL struct{}

func (textSCL) Name() string { return "builtin" }
func (textSCL) Classify(_ context.Context, m *Message) (Verdict, error) {
	if len(m.TextParts()) == 0 || m.TextParts()[0] == "" {
		return Verdict{}, errors.New("no text")
	}
	return Verdict{SCL: 5}, nil
}

// Early asks only an external engine, on raw bytes; ScoreEarly settles
// its answer on the parsed message: the fallback runs there (on the
// parsed text, not on raw bytes alone), OnError is told once, and the
// weight list's rules apply as in Score.
func TestScoreEarly(t *testing.T) {
	raw := msg("x", "y")
	if e := (&Scorer{Classifier: textSCL{}}).Early(context.Background(), raw); e != nil {
		t.Errorf("Early of a classifier that is no engine: %+v", e)
	}
	var failures int
	f := &Fallback{Primary: failing{}, Secondary: textSCL{}, OnError: func(string, error) { failures++ }}
	s := &Scorer{Classifier: f}
	e := s.Early(context.Background(), raw)
	if e == nil || failures != 0 {
		t.Fatalf("Early: %+v, %d failures told before ScoreEarly", e, failures)
	}
	r, err := s.ScoreEarly(context.Background(), Parse(raw), e)
	if err != nil || r.SCL != 5 || r.Classifier != "builtin (failing failed)" || failures != 1 {
		t.Errorf("fallback after an early failure: %+v %v, %d failures", r, err, failures)
	}
	f = &Fallback{Primary: fixed(2), Secondary: textSCL{}}
	s = &Scorer{Classifier: f}
	r, err = s.ScoreEarly(context.Background(), Parse(raw), s.Early(context.Background(), raw))
	if err != nil || r.SCL != 2 || r.Classifier != "fixed" {
		t.Errorf("early answer: %+v %v", r, err)
	}
}
