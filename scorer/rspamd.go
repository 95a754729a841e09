package scorer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// rspamdMaxReply bounds the JSON reply read from rspamd. A reply lists each
// symbol that hit with its options (URLs, addresses): tens of KiB for a
// busy message; anything near this bound is not a reply to trust.
const rspamdMaxReply = 2 << 20

// rspamdDefaultReject is rspamd's stock reject threshold (actions.conf), the
// scale the "no action" mapping is normalised to.
const rspamdDefaultReject = 15.0

// Rspamd is the classifier backed by rspamd's normal worker: the message is
// POSTed to /checkv2 and the JSON answer's action, score and required_score
// (the reject threshold) are mapped to an SCL. Each request is bounded by
// Timeout and by the caller's context, whichever ends first.
//
// # SCL mapping
//
// rspamd's action is its decision and comes first; the score places the
// message within the action's band. With s the score, r the required_score
// (the reject threshold; 15 by default), and n = s·15/r the score on
// rspamd's stock scale (n = s with stock thresholds):
//
//	"reject", "discard",        7 + floor(2·(s−r)/r), clamped to 7..9:
//	"quarantine"                7 at r (and below: GTUBE and forced
//	                            actions can reject at any score), 8 at
//	                            1.5·r, 9 from 2·r
//	"add header",
//	"rewrite subject"           6
//	"greylist"                  5
//	"no action"                 floor(n) clamped to 0..4 (stock greylist
//	                            threshold is 4, so 0..3 with stock
//	                            thresholds; <= 0 is 0)
//	"soft reject" and any       by score alone: s >= r as "reject",
//	other action                else floor(n) clamped to 0..6
//
// "soft reject" is mapped by score because rspamd emits it for reasons that
// say nothing about content (rate limits, greylisting, timeouts). The reply
// does not carry the other thresholds, hence the normalisation by r. SCL 7,
// sclgate's default gateway threshold, is thus where rspamd would reject;
// "add header" (6) stays below it and above the default store threshold
// (5), so such mail is relayed marked as junk. A reply with r <= 0 (no
// reject threshold) is read with n = s, and with r = 15 in the reject band.
// Verdict.Score is rspamd's score s.
//
// The request carries the message and, when the context holds the
// gateway's Envelope (WithEnvelope), the IP, Helo, From, Rcpt and Queue-Id
// request headers rspamd's milter sends; no Hostname (rspamd looks the IP
// up itself). scan has no envelope: rspamd then works from the message's
// own headers.
//
// A Rspamd is safe for concurrent use; do not change its fields once it is
// in use.
type Rspamd struct {
	// URL is the normal worker's base URL, e.g. http://127.0.0.1:11333.
	URL string
	// Timeout bounds one request, connecting to reading the whole reply.
	Timeout time.Duration
	// MaxSize is the most bytes of a message sent for scoring (0:
	// EngineMaxSize); a larger message is cut at a line end, as for spamd.
	MaxSize int

	client *http.Client
}

// NewRspamd returns a classifier that asks the rspamd normal worker at
// baseURL: "http://host:port" (also accepted: "rspamd://host:port" and a
// bare "host:port", both meaning http). A timeout <= 0 means 10 s.
func NewRspamd(baseURL string, timeout time.Duration) *Rspamd {
	switch {
	case strings.HasPrefix(baseURL, "rspamd://"):
		baseURL = "http://" + strings.TrimPrefix(baseURL, "rspamd://")
	case !strings.Contains(baseURL, "://"):
		baseURL = "http://" + baseURL
	}
	if timeout <= 0 {
		timeout = defaultEngineTimeout
	}
	return &Rspamd{
		URL:     strings.TrimRight(baseURL, "/"),
		Timeout: timeout,
		client: &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				Proxy:                 nil, // the engine is ours to reach directly
				DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:          64,
				MaxIdleConnsPerHost:   64,
				IdleConnTimeout:       60 * time.Second,
				ResponseHeaderTimeout: timeout,
				DisableCompression:    true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Name implements Classifier.
func (*Rspamd) Name() string { return "rspamd" }

// RspamdResult is rspamd's answer to /checkv2.
type RspamdResult struct {
	Action   string   // "no action", "greylist", "add header", "rewrite subject", "soft reject", "reject", ...
	Score    float64  // the message's score
	Required float64  // required_score: the reject threshold
	Skipped  bool     // is_skipped: rspamd stopped early (GTUBE, a pre-filter, settings)
	Symbols  []string // names of the symbols that hit, sorted
}

// Classify implements Classifier: it asks rspamd and maps the answer to an
// SCL (see the type's documentation). Every failure — engine down, timeout,
// HTTP error, unreadable reply — is returned as an error naming rspamd and
// the failing step.
func (r *Rspamd) Classify(ctx context.Context, m *Message) (Verdict, error) {
	res, err := r.check(ctx, m.Raw, EnvelopeFrom(ctx))
	if err != nil {
		return Verdict{}, err
	}
	return Verdict{SCL: rspamdSCL(res.Action, res.Score, res.Required), Score: res.Score}, nil
}

// Check POSTs raw to /checkv2 and returns rspamd's answer.
func (r *Rspamd) Check(ctx context.Context, raw []byte) (RspamdResult, error) {
	return r.check(ctx, raw, nil)
}

// check is Check, telling rspamd what env knows of the client and the
// envelope in its request headers (IP, Helo, From, Rcpt, Queue-Id), as
// rspamd's milter and proxy do: without them its checks on the client (IP
// reputation, blocklists, SPF, greylisting) have nothing to check.
func (r *Rspamd) check(ctx context.Context, raw []byte, env *Envelope) (RspamdResult, error) {
	var res RspamdResult
	max := r.MaxSize
	if max <= 0 {
		max = EngineMaxSize
	}
	raw, _ = engineTruncate(raw, max)
	var hdr http.Header
	if env != nil {
		hdr = make(http.Header)
		if env.ClientIP.IsValid() {
			hdr.Set("IP", env.ClientIP.Unmap().String())
		}
		if headerSafe(env.Helo) {
			hdr.Set("Helo", env.Helo)
		}
		// The null sender (a bounce) gets no From at all, as Haraka's
		// rspamd plugin sends it.
		if headerSafe(env.MailFrom) {
			hdr.Set("From", env.MailFrom)
		}
		for _, rc := range env.Rcpts {
			if headerSafe(rc) {
				hdr.Add("Rcpt", rc)
			}
		}
		if headerSafe(env.QueueID) {
			hdr.Set("Queue-Id", env.QueueID)
		}
	}
	body, err := r.do(ctx, http.MethodPost, "/checkv2", raw, hdr)
	if err != nil {
		return res, err
	}
	var reply struct {
		IsSkipped     bool                       `json:"is_skipped"`
		Score         *float64                   `json:"score"`
		RequiredScore float64                    `json:"required_score"`
		Action        string                     `json:"action"`
		Symbols       map[string]json.RawMessage `json:"symbols"`
		Error         string                     `json:"error"`
	}
	if err := json.Unmarshal(body, &reply); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// Its text names Go types, which mean nothing to an admin.
			if te.Field != "" {
				err = fmt.Errorf("%s is a JSON %s", te.Field, te.Value)
			} else {
				err = fmt.Errorf("a JSON %s where rspamd sends an object with score and action", te.Value)
			}
		}
		return res, r.errorf("bad reply", "not rspamd's JSON (%v): %s", err, rspamdSnippet(body))
	}
	switch {
	case reply.Error != "":
		return res, r.errorf("bad reply", "rspamd error: %s", rspamdSnippet([]byte(reply.Error)))
	case reply.Action == "":
		return res, r.errorf("bad reply", "no action in %s", rspamdSnippet(body))
	case reply.Score == nil || math.IsNaN(*reply.Score) || math.IsInf(*reply.Score, 0):
		return res, r.errorf("bad reply", "no score in %s", rspamdSnippet(body))
	}
	res = RspamdResult{
		Action:   reply.Action,
		Score:    *reply.Score,
		Required: reply.RequiredScore,
		Skipped:  reply.IsSkipped,
	}
	for name := range reply.Symbols {
		res.Symbols = append(res.Symbols, name)
	}
	sort.Strings(res.Symbols)
	return res, nil
}

// Ping checks that the worker answers (GET /ping), for health checks.
func (r *Rspamd) Ping(ctx context.Context) error {
	body, err := r.do(ctx, http.MethodGet, "/ping", nil, nil)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(string(body)); got != "pong" {
		return r.errorf("bad reply", "/ping answered %s", rspamdSnippet(body))
	}
	return nil
}

// do sends one request and returns the body of a 200 reply.
func (r *Rspamd) do(ctx context.Context, method, path string, body []byte, hdr http.Header) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	var rd io.Reader
	if body != nil {
		// net/http may still read a request body after Do has returned
		// (on a timeout, or an answer that came before the whole body
		// was sent), and body is the gateway's buffer of the message,
		// which holds another session's message once this one is
		// answered: it is read only until do returns.
		f := &fencedReader{b: body}
		defer f.close()
		rd = f
	}
	req, err := http.NewRequestWithContext(ctx, method, r.URL+path, rd)
	if err != nil {
		return nil, r.errorf("request", "%w", err)
	}
	if body != nil {
		req.ContentLength = int64(len(body)) // not chunked; and no GetBody: no retry reads body again
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "sclgate")
	resp, err := r.httpClient().Do(req)
	if err != nil {
		// *url.Error repeats the method and URL; keep its cause.
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap()
		}
		step := "send request or await reply"
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			step = "connect"
		}
		return nil, r.errorf(step, "%w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, rspamdMaxReply+1))
	if err != nil {
		return nil, r.errorf("read reply", "%w", err)
	}
	if len(data) > rspamdMaxReply {
		return nil, r.errorf("read reply", "reply exceeds %d bytes", rspamdMaxReply)
	}
	if resp.StatusCode != http.StatusOK {
		msg := rspamdSnippet(data)
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = rspamdSnippet([]byte(e.Error))
		}
		return nil, r.errorf("bad reply", "HTTP %s: %s", resp.Status, msg)
	}
	return data, nil
}

func (r *Rspamd) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return defaultEngineTimeout
}

var rspamdZeroClient = &http.Client{Timeout: defaultEngineTimeout, Transport: &http.Transport{Proxy: nil}}

func (r *Rspamd) httpClient() *http.Client {
	if r.client != nil {
		return r.client
	}
	return rspamdZeroClient // a Rspamd literal, not from NewRspamd
}

func (r *Rspamd) errorf(step, format string, args ...any) error {
	return fmt.Errorf("rspamd %s: %s: %w", r.URL, step, fmt.Errorf(format, args...))
}

// rspamdSnippet shortens what the peer sent for an error message.
func rspamdSnippet(b []byte) string {
	if len(b) > 120 {
		b = b[:120]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
		return fmt.Sprintf("%q...", b)
	}
	return fmt.Sprintf("%q", b)
}

// rspamdSCL maps rspamd's action, score and required (reject) score to an
// SCL; the rule is documented on Rspamd.
func rspamdSCL(action string, score, required float64) int {
	n := score
	if required > 0 {
		n = score * rspamdDefaultReject / required
	}
	floor := func(f float64) int { return int(math.Floor(math.Max(-100, math.Min(f, 100)) + 1e-9)) }
	reject := func() int {
		r := required
		if r <= 0 {
			r = rspamdDefaultReject
		}
		return max(7, min(9, 7+floor(2*(score-r)/r)))
	}
	switch strings.ToLower(strings.TrimSpace(action)) {
	case "reject", "discard", "quarantine":
		return reject()
	case "add header", "add_header", "rewrite subject", "rewrite_subject":
		return 6
	case "greylist":
		return 5
	case "no action", "no_action":
		return max(0, min(4, floor(n)))
	}
	// "soft reject" and custom actions: by score alone.
	if required > 0 && score >= required {
		return reject()
	}
	return max(0, min(6, floor(n)))
}

// fencedReader reads b until close; then it reads nothing more, also in
// a goroutine net/http's transport still runs.
type fencedReader struct {
	mu     sync.Mutex
	b      []byte
	closed bool
}

var errFenced = errors.New("request body read after the request ended")

func (f *fencedReader) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, errFenced
	}
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

func (f *fencedReader) close() {
	f.mu.Lock()
	f.closed = true
	f.b = nil
	f.mu.Unlock()
}
