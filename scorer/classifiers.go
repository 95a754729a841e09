package scorer

import (
	"errors"
	"fmt"
	"net"
	"strconv"
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
	if err := checkEngineAddr(addr); err != nil {
		return nil, fmt.Errorf("classifier %q: %v", spec, err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	var engine Classifier
	switch scheme {
	case "spamd":
		engine = NewSpamd(addr, o.Timeout)
	case "rspamd":
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(strings.Trim(addr, "[]"), RspamdDefaultPort)
		}
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

// RspamdDefaultPort is the port of rspamd's normal worker, used when
// filter.classifier names none.
const RspamdDefaultPort = "11333"

// checkEngineAddr checks an engine's host[:port]: a port, when given,
// must be a number from 1 to 65535 (a typo there would otherwise surface
// only as every message failing over).
func checkEngineAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if ae := (*net.AddrError)(nil); errors.As(err, &ae) && ae.Err == "missing port in address" {
		return nil // the engine's default port
	} else if err != nil {
		return fmt.Errorf("%v (an IPv6 address goes in brackets: [::1]:783)", err)
	}
	if host == "" {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	return nil
}
