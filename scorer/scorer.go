package scorer

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sclgate/sclgate/weights"
)

// SCL bounds. Trusted mail that is not filtered is marked -1 by the gateway,
// as Exchange does; a scored message is always within MinSCL..MaxSCL.
const (
	MinSCL = 0
	MaxSCL = 9
)

// Classifier is the plug-in point for spam engines. Classify must be safe for
// concurrent use and must not modify m.
type Classifier interface {
	// Name identifies the classifier in reports and metrics, e.g. "none".
	Name() string
	// Classify returns the classifier's verdict on m. An error means the
	// engine could not give one (down, timed out); the caller decides
	// whether to fall back or defer the message.
	Classify(ctx context.Context, m *Message) (Verdict, error)
}

// Verdict is a classifier's opinion of one message.
type Verdict struct {
	SCL   int     // 0..9
	Score float64 // the classifier's own figure, e.g. a spam probability 0..1
	// By names the classifier that actually answered when it is not the
	// one asked (a Fallback stood in); empty otherwise.
	By string
}

// None is the classifier that has no opinion: every message starts at SCL 0,
// so the weight list alone decides. A real configuration for sites that
// filter on their own phrases only.
type None struct{}

func (None) Name() string { return "none" }

func (None) Classify(context.Context, *Message) (Verdict, error) { return Verdict{}, nil }

// Scorer combines a classifier with a custom weight list. It holds no
// per-message state and is safe for concurrent use.
type Scorer struct {
	Classifier Classifier
	// Weights returns the weight list in force; it is called once per
	// message so that a reloaded list applies to the next message. Nil, or a
	// nil list, means no rules.
	Weights func() *weights.List
	// Definitions names the filter-definitions version the classifier
	// comes from, for reports; empty when it has none (none, external
	// engines without fallback).
	Definitions string
}

// Pinned returns a Scorer that uses the weight list in force now for
// every message, whatever is reloaded later. The gateway pins one per
// transaction, when it takes the configuration the transaction keeps: a
// message scored with a new list but acted on with the old threshold and
// action would get a verdict neither configuration gives.
func (s *Scorer) Pinned() *Scorer {
	p := *s
	if s.Weights != nil {
		w := s.Weights()
		p.Weights = func() *weights.List { return w }
	}
	return &p
}

// Result is a message's SCL with its explanation.
type Result struct {
	SCL           int
	Classifier    string
	Score         float64 // the classifier's own figure
	ClassifierSCL int
	Rules         []weights.Entry // matched entries, in file order
	Definitions   string          // filter-definitions version, if any
}

// Score gives m its SCL.
func (s *Scorer) Score(ctx context.Context, m *Message) (Result, error) {
	return s.ScoreEarly(ctx, m, nil)
}

// Early is an external engine's answer on a message's raw bytes, asked
// for before the message is parsed (Scorer.Early).
type Early struct {
	v   Verdict
	err error
}

// Early asks the external engine (spamd, rspamd) for its verdict on raw,
// the start of the message as engines get it (Message.Raw, at most
// EngineMaxSize), before the message is parsed: the engine reads nothing
// else, and its answer is a network wait of up to its timeout, which the
// gateway makes without holding one of its few slots for parsing large
// messages (a slow or dead engine would otherwise queue them behind each
// other). It returns nil when the classifier is no external engine (the
// built-in model needs the parsed message). Pass the result to
// ScoreEarly; the fallback to the built-in model, if any, runs there, on
// the parsed message.
func (s *Scorer) Early(ctx context.Context, raw []byte) *Early {
	f, ok := s.Classifier.(*Fallback)
	if !ok {
		return nil
	}
	return f.early(ctx, raw)
}

// HasEngine reports whether the classifier is an external engine, which
// Early asks.
func (s *Scorer) HasEngine() bool {
	_, ok := s.Classifier.(*Fallback)
	return ok
}

func (f *Fallback) early(ctx context.Context, raw []byte) *Early {
	v, err := f.Primary.Classify(ctx, &Message{Raw: raw})
	return &Early{v, err}
}

// ScoreEarly is Score with the engine's answer e from Early on m's raw
// bytes (nil: the classifier is asked now).
func (s *Scorer) ScoreEarly(ctx context.Context, m *Message, e *Early) (Result, error) {
	c := s.Classifier
	if c == nil {
		c = None{}
	}
	var (
		v   Verdict
		err error
	)
	if f, ok := c.(*Fallback); ok && e != nil {
		v, err = f.settle(ctx, m, e.v, e.err)
	} else {
		v, err = c.Classify(ctx, m)
	}
	if err != nil {
		return Result{}, fmt.Errorf("scorer: classifier %s: %w", c.Name(), err)
	}
	name := c.Name()
	if v.By != "" {
		name = v.By
	}
	r := Result{
		Classifier:    name,
		Score:         v.Score,
		ClassifierSCL: clamp(v.SCL),
	}
	if r.Score == 0 {
		r.Score = 0 // not -0 (spamd may say -0.0), which prints as "-0"
	}
	if strings.HasPrefix(name, "builtin") {
		// The definitions made this verdict (also when the built-in
		// model stood in for a failed engine); an engine's own is not
		// theirs.
		r.Definitions = s.Definitions
	}
	if s.Weights != nil {
		r.Rules = s.Weights().MatchSubjects(append([]string{m.Subject}, m.MoreSubjects...), m.TextParts()...)
	}
	r.SCL = Combine(r.ClassifierSCL, r.Rules)
	return r, nil
}

// Explainer is a classifier that can say which features of a message
// moved its verdict most: the built-in model does, external engines do not.
type Explainer interface {
	// Explain returns at most n of m's features, weightiest first.
	Explain(m *Message, n int) []Contribution
}

// Explain returns the n features of m that weighed most in r, the result
// Score gave it, when the classifier that answered can tell (the built-in
// model, or the built-in model standing in for a failed engine); nil
// otherwise. It repeats the feature extraction with names, so it is for
// admins' questions (scan -explain, archive show), not for every message.
func (s *Scorer) Explain(m *Message, r Result, n int) []Contribution {
	c := s.Classifier
	if f, ok := c.(*Fallback); ok {
		c = f.Primary
		if r.Classifier != f.Name() {
			c = f.Secondary
		}
	}
	if e, ok := c.(Explainer); ok && n > 0 {
		return e.Explain(m, n)
	}
	return nil
}

// Combine applies matched weight entries to a classifier SCL: MIN wins over
// everything (including MAX, so an admin's allow-list phrase is never
// overridden by a block-list one), then MAX, then the clamped sum.
func Combine(base int, matched []weights.Entry) int {
	var hasMin, hasMax bool
	sum := 0
	for _, e := range matched {
		switch e.Kind {
		case weights.Min:
			hasMin = true
		case weights.Max:
			hasMax = true
		default:
			sum += e.Change
		}
	}
	switch {
	case hasMin:
		return MinSCL
	case hasMax:
		return MaxSCL
	}
	return clamp(base + sum)
}

func clamp(n int) int {
	return max(MinSCL, min(MaxSCL, n))
}

// ruleWeight orders rules in a report: MIN, then MAX, then by |Change|
// (at most 2^31: Change is an int32 in the file).
func ruleWeight(e weights.Entry) int64 {
	switch e.Kind {
	case weights.Min:
		return 1 << 33
	case weights.Max:
		return 1 << 32
	}
	if c := int64(e.Change); c < 0 {
		return -c
	}
	return int64(e.Change)
}

// Report is a one-line explanation of r, for the X-SCL-Report header and
// logs: the classifier and its figure, then each matched entry,
// weightiest first. The line is cut to at most maxLen bytes (0: no
// limit; under 3, the "..." alone), ending in "..." when cut, so a
// message matching thousands of entries cannot grow a huge header.
func (r Result) Report(maxLen int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "scl=%d classifier=%s score=%s classifier_scl=%d",
		r.SCL, r.Classifier, strconv.FormatFloat(r.Score, 'f', -1, 64), r.ClassifierSCL)
	if r.Definitions != "" {
		b.WriteString(" defs=" + r.Definitions)
	}
	// Weightiest first (MIN, MAX, then by size of change), so that a cut
	// at maxLen drops the entries that changed least, never the one that
	// decided the SCL.
	rules := slices.Clone(r.Rules)
	slices.SortStableFunc(rules, func(a, b weights.Entry) int { return cmp.Compare(ruleWeight(b), ruleWeight(a)) })
	for i, e := range rules {
		if i == 0 {
			b.WriteString("; rules:")
		} else {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %s %q", e.Type, e.ChangeString(), e.Text)
	}
	s := b.String()
	if maxLen > 0 && len(s) > maxLen {
		// Room for "..." (a maxLen under 3: the marker alone).
		cut := max(maxLen-3, 0)
		for cut > 0 && (s[cut]&0xC0) == 0x80 { // not inside a UTF-8 sequence
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
