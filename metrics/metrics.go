// Package metrics defines sclgate's Prometheus metrics, after IMF's
// performance counters: what was scanned, the SCL it got, what was done with
// it, and whether relaying and the weight list are healthy.
//
// Everything is registered on a registry the caller passes in (no global
// registration), so tests and several gateways in one process never collide.
// Packages that produce numbers (proxy, weights) take these values as plain
// dependencies; scorer and weights stay free of Prometheus.
package metrics

import (
	"runtime"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every sclgate metric.
type Metrics struct {
	Scanned        prometheus.Counter
	SCL            *prometheus.CounterVec // label scl="0".."9" (and "-1" for trusted mail relayed unfiltered)
	ActedUpon      *prometheus.CounterVec // label action
	Relayed        prometheus.Counter
	RelayFailures  *prometheus.CounterVec // label reason
	ScanDuration   prometheus.Histogram
	SessionsActive prometheus.Gauge
	WeightsEntries prometheus.Gauge
	WeightsReloads *prometheus.CounterVec // label result="ok|error"
	Archived       prometheus.Counter
	Rejected       *prometheus.CounterVec // label reason: SMTP-level refusals

	DownstreamConnections *prometheus.CounterVec // label tls

	ClassifierErrors *prometheus.CounterVec // label classifier
	Definitions      *prometheus.GaugeVec   // label version: 1 for the version in use
	UpdateChecks     *prometheus.CounterVec // label result
}

// Relay failure reasons (label values of sclgate_relay_failures_total).
const (
	FailConnect    = "connect"    // could not reach or greet the downstream
	FailMail       = "mail"       // downstream refused the sender
	FailRcpt       = "rcpt"       // downstream refused a recipient
	FailData       = "data"       // downstream refused the message
	FailTimeout    = "timeout"    // downstream slower than limits.downstream_timeout
	FailNetwork    = "network"    // connection lost mid-transaction
	FailArchive    = "archive"    // archive write failed
	FailMaildir    = "maildir"    // writing into the maildir: downstream failed
	FailClassifier = "classifier" // classifier error, message deferred
	FailTLS        = "tls"        // downstream_tls encrypt or verify could not start TLS
	FailSMTPUTF8   = "smtputf8"   // an address in UTF-8, and a downstream without SMTPUTF8
)

// TLS outcomes of new downstream connections (label tls of
// sclgate_downstream_connections_total).
const (
	TLSYes    = "yes"    // a connection over TLS
	TLSNo     = "no"     // a plaintext connection: downstream_tls none, or may and STARTTLS not offered, refused or failed
	TLSFailed = "failed" // a STARTTLS attempt refused or failed (not a connection: under may plaintext follows, counted as no)
)

// SMTP refusal reasons (label values of sclgate_smtp_refusals_total).
const (
	RefuseRelayDenied        = "relay_denied"         // RCPT to a domain not accepted, from a client that may not relay (550 5.7.1)
	RefuseBadAddress         = "bad_address"          // an address refused (553): relay tricks, quoting, UTF-8 without SMTPUTF8
	RefuseBadHelo            = "bad_helo"             // control characters in the HELO/EHLO name (501)
	RefuseAuthFailed         = "auth_failed"          // a failed AUTH
	RefuseTooManyConnections = "too_many_connections" // over max_connections or max_connections_per_ip (421 4.7.0)
	RefuseSize               = "size"                 // a message past max_message_bytes (552 5.3.4)
	RefuseHeaderSize         = "header_size"          // a header past max_header_bytes (552 5.3.4)
	RefuseBareLineEnd        = "bare_line_end"        // a bare CR or LF, or a NUL, in data (SMTP smuggling protection)
	RefuseCrossProtocol      = "cross_protocol"       // an HTTP command (221 2.7.0 and close)
	RefuseTooManyErrors      = "too_many_errors"      // the refusal that reached max_errors (421 and close)
	RefuseDataTimeout        = "data_timeout"         // DATA or BDAT past data_timeout or below min_data_rate
	RefuseLineLength         = "line_length"          // a line over 4,000 octets in data (500 5.5.6)
	RefuseCommandTimeout     = "command_timeout"      // a command line left unfinished past command_timeout
	RefuseMIMELimits         = "mime_limits"          // past the MIME part or nesting limits (554 5.6.0)
)

// RefusalReasons are the label values of sclgate_smtp_refusals_total.
var RefusalReasons = []string{RefuseRelayDenied, RefuseBadAddress, RefuseBadHelo, RefuseAuthFailed,
	RefuseTooManyConnections, RefuseSize, RefuseHeaderSize, RefuseBareLineEnd, RefuseCrossProtocol,
	RefuseTooManyErrors, RefuseDataTimeout, RefuseLineLength, RefuseCommandTimeout, RefuseMIMELimits}

// UpdateResults are the label values of
// sclgate_definitions_update_checks_total.
var UpdateResults = []string{"current", "installed", "error"}

// New creates the metrics and registers them, plus the Go and process
// collectors, on reg. version goes into sclgate_build_info.
func New(reg prometheus.Registerer, version string) *Metrics {
	m := &Metrics{
		Scanned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sclgate_messages_scanned_total",
			Help: "Messages given an SCL by the content filter.",
		}),
		SCL: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sclgate_messages_scl_total",
			Help: "Messages by the SCL they got, counted when it is given: scl=\"0\"..\"9\", or \"-1\" for authenticated/trusted mail, which is not filtered.",
		}, []string{"scl"}),
		ActedUpon: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sclgate_messages_acted_upon_total",
			Help: "Messages at or above the gateway threshold, by the gateway action taken: archive, delete, reject or none.",
		}, []string{"action"}),
		Relayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sclgate_messages_relayed_total",
			Help: "Messages the downstream accepted (250) from sclgate.",
		}),
		RelayFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sclgate_relay_failures_total",
			Help: "Downstream and delivery steps that failed, by reason: connect (downstream unreachable, or it refused sclgate), mail, rcpt (per recipient), data (the downstream refused), timeout, network, maildir, archive, classifier, tls (downstream_tls encrypt or verify could not start TLS).",
		}, []string{"reason"}),
		ScanDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sclgate_scan_duration_seconds",
			Help: "Time to parse and score one message, an external engine's answer included.",
			// Up to 30 s: the built-in model takes well under a
			// millisecond, but spamd and rspamd take up to their
			// classifier_timeout (10 s by default), and a quantile is
			// only as good as the buckets around it.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		SessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sclgate_sessions_active",
			Help: "SMTP sessions open now.",
		}),
		WeightsEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sclgate_weights_entries",
			Help: "Entries in the custom weight list in force.",
		}),
		WeightsReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sclgate_weights_reloads_total",
			Help: "Reloads of the custom weight list, by result: ok or error (the previous list stays in force).",
		}, []string{"result"}),
		Archived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sclgate_messages_archived_total",
			Help: "Messages written to the ArchiveDir.",
		}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sclgate_smtp_refusals_total",
			Help: "Commands and connections refused at the SMTP level, by reason: " + strings.Join(RefusalReasons, ", ") + ".",
		}, []string{"reason"}),
	}
	m.DownstreamConnections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sclgate_downstream_connections_total",
		Help: "SMTP and LMTP connections sclgate set up to the downstream, by TLS: yes or no (plaintext); and failed: STARTTLS attempts refused or failed (under downstream_tls.mode may, plaintext follows, counted as no).",
	}, []string{"tls"})
	m.ClassifierErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sclgate_classifier_errors_total",
		Help: "Messages the classifier could not score (engine down, timeout, bad answer), by classifier; each was scored by the fallback or deferred with 451.",
	}, []string{"classifier"})
	m.Definitions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sclgate_definitions_info",
		Help: "1 for the filter-definitions version in use (label version).",
	}, []string{"version"})
	m.UpdateChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sclgate_definitions_update_checks_total",
		Help: "Automatic definition update checks, by result: current, installed, error.",
	}, []string{"result"})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "sclgate_build_info",
		Help:        "Always 1; the labels tell which sclgate is running.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)

	reg.MustRegister(m.Scanned, m.SCL, m.ActedUpon, m.Relayed, m.RelayFailures, m.ScanDuration,
		m.SessionsActive, m.WeightsEntries, m.WeightsReloads, m.Archived, m.Rejected, build,
		m.ClassifierErrors, m.Definitions, m.UpdateChecks, m.DownstreamConnections,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Start every labelled series at 0 so that rate() and alerts work from
	// the first scrape, not from the first event.
	for i := -1; i <= 9; i++ {
		m.SCL.WithLabelValues(strconv.Itoa(i))
	}
	for _, a := range []string{"archive", "delete", "reject", "none"} {
		m.ActedUpon.WithLabelValues(a)
	}
	for _, r := range []string{FailConnect, FailMail, FailRcpt, FailData, FailTimeout, FailNetwork, FailArchive, FailMaildir, FailClassifier, FailTLS, FailSMTPUTF8} {
		m.RelayFailures.WithLabelValues(r)
	}
	for _, t := range []string{TLSYes, TLSNo, TLSFailed} {
		m.DownstreamConnections.WithLabelValues(t)
	}
	m.WeightsReloads.WithLabelValues("ok")
	m.WeightsReloads.WithLabelValues("error")
	for _, r := range RefusalReasons {
		m.Rejected.WithLabelValues(r)
	}
	for _, r := range UpdateResults {
		m.UpdateChecks.WithLabelValues(r)
	}
	return m
}
