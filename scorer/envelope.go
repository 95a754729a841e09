package scorer

import (
	"context"
	"net/netip"
	"strings"
)

// Envelope is what the gateway knows of a message beyond its bytes: the
// connecting client and the SMTP envelope. External engines need it for
// their checks on the client (DNS blocklists, SPF, IP reputation,
// greylisting), which otherwise see no client at all, since the gateway
// adds its own Received field only after scoring. The built-in model does
// not use it.
type Envelope struct {
	ClientIP netip.Addr // the connecting client (after the PROXY protocol)
	Helo     string     // its HELO/EHLO name
	MailFrom string     // the reverse path, "" for the null sender
	Rcpts    []string
	QueueID  string // the gateway's id for the transaction
	// Received is the trace field the gateway will add on top of the
	// message ("Received: from ... by ... ; date", folded with CRLF, no
	// final CRLF): spamd reads the client from it, as from any relay.
	Received string
}

type envelopeKey struct{}

// WithEnvelope returns ctx carrying env, for Classifier.Classify.
func WithEnvelope(ctx context.Context, env *Envelope) context.Context {
	return context.WithValue(ctx, envelopeKey{}, env)
}

// EnvelopeFrom returns the envelope ctx carries, or nil (scan, tests).
func EnvelopeFrom(ctx context.Context) *Envelope {
	env, _ := ctx.Value(envelopeKey{}).(*Envelope)
	return env
}

// headerSafe reports whether s can go into a request header field as it
// is: no control characters (a CR or LF would end the field) and not
// empty.
func headerSafe(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}
