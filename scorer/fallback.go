package scorer

import (
	"context"
	"fmt"
)

// Fallback asks Primary (an external engine such as spamd) and, when it
// cannot answer (down, timed out, garbage), asks Secondary (the built-in
// model) instead, so a dead engine never stops or slows mail flow beyond
// its timeout. OnError is told each failure, for logs and
// sclgate_classifier_errors_total. With Secondary nil the error is
// returned and the gateway answers 451: filter.classifier_failure:
// tempfail, for sites that would rather defer than score differently.
type Fallback struct {
	Primary   Classifier
	Secondary Classifier
	OnError   func(classifier string, err error)
}

func (f *Fallback) Name() string { return f.Primary.Name() }

func (f *Fallback) Classify(ctx context.Context, m *Message) (Verdict, error) {
	v, err := f.Primary.Classify(ctx, m)
	return f.settle(ctx, m, v, err)
}

// settle turns Primary's answer (v, err) on m into the verdict: v, or
// Secondary's when Primary failed.
func (f *Fallback) settle(ctx context.Context, m *Message, v Verdict, err error) (Verdict, error) {
	if err == nil {
		return v, nil
	}
	if f.OnError != nil {
		f.OnError(f.Primary.Name(), err)
	}
	if f.Secondary == nil {
		return Verdict{}, err
	}
	v, err2 := f.Secondary.Classify(ctx, m)
	if err2 != nil {
		return Verdict{}, fmt.Errorf("%w; fallback %s: %w", err, f.Secondary.Name(), err2)
	}
	v.By = f.Secondary.Name() + " (" + f.Primary.Name() + " failed)"
	return v, nil
}
