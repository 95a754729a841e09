package scorer

import (
	"fmt"
	"strings"
	"time"
)

// ClassifierOptions are what NewClassifier may need besides the name.
type ClassifierOptions struct {
	// Builtin is the built-in model from the definitions in use; nil if
	// there are none.
	Builtin Classifier
	// Timeout bounds one external engine call.
	Timeout time.Duration
	// Fallback: when an external engine fails, score with Builtin instead
	// (filter.classifier_failure: fallback); else the error stands and
	// the gateway answers 451 (tempfail).
	Fallback bool
	// OnError is told every external engine failure (logs, metrics).
	OnError func(classifier string, err error)
}

// NewClassifier returns the classifier filter.classifier names: "none",
// "builtin", "spamd://host:port" or "rspamd://host:port".
func NewClassifier(spec string, o ClassifierOptions) (Classifier, error) {
	switch spec {
	case "none":
		return None{}, nil
	case "", "builtin":
		if o.Builtin == nil {
			return nil, fmt.Errorf("builtin: no definitions loaded")
		}
		return o.Builtin, nil
	}
	scheme, addr, ok := strings.Cut(spec, "://")
	if !ok || addr == "" || strings.ContainsAny(addr, "/?#") {
		return nil, fmt.Errorf("unknown classifier %q (want none, builtin, spamd://host:port or rspamd://host:port)", spec)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	var engine Classifier
	switch scheme {
	case "spamd":
		engine = NewSpamd(addr, o.Timeout)
	case "rspamd":
		engine = NewRspamd("http://"+addr, o.Timeout)
	default:
		return nil, fmt.Errorf("unknown classifier scheme %q in %q (want spamd:// or rspamd://)", scheme, spec)
	}
	f := &Fallback{Primary: engine, OnError: o.OnError}
	if o.Fallback {
		f.Secondary = o.Builtin
	}
	return f, nil
}
