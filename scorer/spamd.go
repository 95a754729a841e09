package scorer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Spamd defaults.
const (
	// SpamdDefaultPort is spamd's registered port, used when the address
	// has none.
	SpamdDefaultPort = "783"
	// SpamdDefaultMaxSize is how much of a message is sent to spamd.
	SpamdDefaultMaxSize = EngineMaxSize
	// spamdMaxReply bounds what is read back: the status line, the headers
	// and the SYMBOLS list (rule names, a few KiB at most in practice).
	spamdMaxReply = 64 << 10
	// defaultEngineTimeout applies when a constructor is given no timeout;
	// it matches filter.classifier_timeout's default.
	defaultEngineTimeout = 10 * time.Second
)

// Spamd is the classifier backed by SpamAssassin's spamd, spoken to over the
// SPAMC/1.5 protocol (the SYMBOLS command: score, required score and the
// names of the rules that hit). It keeps no connection open: each message is
// one TCP (or Unix-socket) exchange, bounded as a whole — dial, send, reply —
// by Timeout and by the caller's context, whichever ends first.
//
// # SCL mapping
//
// SpamAssassin answers a score s and its required_score r, the site's own
// "this is spam" line, and a verdict (spam when s >= r). The SCL is the
// floor of the piecewise linear
//
//	f(s) = 7·s/r          for s < r   (0 at s <= 0, 3.5 at s = r/2)
//	f(s) = 7 + 2·(s−r)/r  for s >= r  (7 at s = r, 8 at 1.5·r, 9 at 2·r)
//
// clamped to 0..9, and then made to agree with SpamAssassin's own verdict:
// a message spamd calls spam is at least SCL 7, one it calls ham at most 6.
// SCL 7 is sclgate's default gateway threshold, so by default a site acts
// exactly where SpamAssassin says "spam". The last step makes its verdict
// authoritative whatever the rounding of the one-decimal figures spamd sends
// (a required_score of 4.96 is sent as "5.0") and whatever a shortcircuit
// rule decided. When r <= 0 there is no scale: SCL 7 for spam, 0 for ham.
// Verdict.Score is SpamAssassin's score s as spamd sent it.
//
// # Large messages
//
// At most MaxSize bytes (default 500 KiB, as spamc) are sent. A larger
// message is truncated — cut after the last line end within MaxSize — and
// the truncated copy is scored, rather than skipped as spamc does: skipping
// would let any spam padded past the limit through unscored, while
// SpamAssassin scores mostly the header and the first text parts anyway
// (it reads at most 50,000 bytes of each body part by default).
//
// A Spamd is safe for concurrent use; do not change its fields once it is in
// use.
type Spamd struct {
	// Addr is host:port, or the path of spamd's Unix socket (--socketpath)
	// when it begins with "/".
	Addr string
	// Timeout bounds one whole exchange.
	Timeout time.Duration
	// MaxSize is the most bytes of a message sent for scoring.
	MaxSize int
}

// NewSpamd returns a classifier that asks the spamd at addr ("host:port", or
// "host" for port 783, or "/path/to/socket"). A timeout <= 0 means 10 s.
func NewSpamd(addr string, timeout time.Duration) *Spamd {
	if !strings.HasPrefix(addr, "/") {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(strings.Trim(addr, "[]"), SpamdDefaultPort)
		}
	}
	if timeout <= 0 {
		timeout = defaultEngineTimeout
	}
	return &Spamd{Addr: addr, Timeout: timeout, MaxSize: SpamdDefaultMaxSize}
}

// Name implements Classifier.
func (*Spamd) Name() string { return "spamd" }

// SpamdResult is spamd's answer to the SYMBOLS command.
type SpamdResult struct {
	Spam      bool     // SpamAssassin's verdict: Score >= Required
	Score     float64  // the message's score
	Required  float64  // the required_score in force for it
	Symbols   []string // names of the rules that hit, as spamd listed them
	Truncated bool     // the message was longer than MaxSize; its head was scored
}

// Classify implements Classifier: it asks spamd and maps the answer to an SCL
// (see the type's documentation). Every failure — engine down, timeout,
// protocol error — is returned as an error naming spamd and the failing step.
func (s *Spamd) Classify(ctx context.Context, m *Message) (Verdict, error) {
	raw := m.Raw
	if env := EnvelopeFrom(ctx); env != nil && env.Received != "" && !strings.ContainsAny(env.Received, "\x00") {
		// The gateway's own Received field, which it adds after
		// scoring, on top: SpamAssassin finds the connecting client
		// (for its blocklist and SPF checks) in the Received chain.
		raw = make([]byte, 0, len(env.Received)+2+len(m.Raw))
		raw = append(append(append(raw, env.Received...), "\r\n"...), m.Raw...)
	}
	r, err := s.Check(ctx, raw)
	if err != nil {
		return Verdict{}, err
	}
	return Verdict{SCL: spamdSCL(r.Score, r.Required, r.Spam), Score: r.Score}, nil
}

// Check sends raw (truncated to MaxSize) to spamd with the SYMBOLS command
// and returns its answer.
func (s *Spamd) Check(ctx context.Context, raw []byte) (SpamdResult, error) {
	body, truncated := engineTruncate(raw, s.maxSize())
	var res SpamdResult
	err := s.exchange(ctx, "SYMBOLS", body, func(br *bufio.Reader) error {
		var err error
		res, err = spamdReadReply(br)
		return err
	})
	res.Truncated = truncated
	return res, err
}

// Ping checks that spamd answers (the PING command), for health checks.
func (s *Spamd) Ping(ctx context.Context) error {
	return s.exchange(ctx, "PING", nil, func(br *bufio.Reader) error {
		code, msg, err := spamdStatus(br)
		if err != nil {
			return err
		}
		if code != 0 || msg != "PONG" {
			return &spamdStepError{step: "read reply", err: fmt.Errorf("PING answered %d %q", code, msg)}
		}
		return nil
	})
}

func (s *Spamd) maxSize() int {
	if s.MaxSize > 0 {
		return s.MaxSize
	}
	return SpamdDefaultMaxSize
}

// spamdStepError carries the failing step out of a reply parser.
type spamdStepError struct {
	step string
	err  error
}

func (e *spamdStepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *spamdStepError) Unwrap() error { return e.err }

// exchange runs one request: connect, send cmd (with body, unless cmd is
// PING), then hand the reply to read. The whole of it is bounded by the
// earlier of s.Timeout and ctx's deadline, and cancelling ctx aborts it.
func (s *Spamd) exchange(ctx context.Context, cmd string, body []byte, read func(*bufio.Reader) error) (err error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = defaultEngineTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	step := "connect"
	defer func() {
		if err == nil {
			return
		}
		var se *spamdStepError
		if errors.As(err, &se) {
			step, err = se.step, se.err
		}
		// A deadline or cancellation surfaces from the socket as a bare
		// "i/o timeout" or "use of closed connection": say which it was.
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
		err = fmt.Errorf("spamd %s: %s: %w", s.Addr, step, err)
	}()

	network := "tcp"
	if strings.HasPrefix(s.Addr, "/") {
		network = "unix"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, s.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline() // always set: WithTimeout above
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	// Cancellation without a deadline: unblock the reads and writes.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	step = "send request"
	var req bytes.Buffer
	req.WriteString(cmd + " SPAMC/1.5\r\n")
	if cmd != "PING" {
		fmt.Fprintf(&req, "Content-length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	if _, err := (&net.Buffers{req.Bytes(), body}).WriteTo(conn); err != nil {
		return err
	}
	// As spamc does: nothing more will come, spamd may answer.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}

	step = "read reply"
	br := bufio.NewReaderSize(&spamdLimitReader{r: conn, n: spamdMaxReply}, 4096)
	return read(br)
}

// errSpamdReplyTooLarge: the reply went on past spamdMaxReply bytes.
var errSpamdReplyTooLarge = fmt.Errorf("reply exceeds %d bytes", spamdMaxReply)

// spamdLimitReader is io.LimitReader that says so when the limit is hit.
type spamdLimitReader struct {
	r io.Reader
	n int
}

func (l *spamdLimitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errSpamdReplyTooLarge
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= n
	return n, err
}

// EngineMaxSize is how much of a message is sent to an external engine
// (spamd, rspamd): 500 KiB, spamc's own default (-s 512000). A larger
// message is cut (see engineTruncate) and the cut copy is scored.
const EngineMaxSize = 500 << 10

// engineTruncate cuts raw to at most max bytes, after the last line end
// when there is one in the last engineLineSlack bytes, so an engine never
// sees half a line of ordinary text; else (one long line, a body of
// base64 without line ends) at max itself: cut at the last line end, a
// body that is one line of 600 KB reached the engine empty.
func engineTruncate(raw []byte, max int) ([]byte, bool) {
	if len(raw) <= max {
		return raw, false
	}
	cut := raw[:max]
	if i := bytes.LastIndexByte(cut, '\n'); i >= 0 && len(cut)-(i+1) <= engineLineSlack {
		cut = cut[:i+1]
	}
	return cut, true
}

// engineLineSlack is how far back engineTruncate looks for a line end:
// RFC 5322's line limit (998 + CRLF) with room to spare.
const engineLineSlack = 4000

// spamdStatus reads the status line "SPAMD/1.x CODE MESSAGE".
func spamdStatus(br *bufio.Reader) (code int, msg string, err error) {
	line, err := spamdLine(br)
	if err != nil {
		return 0, "", err
	}
	proto, rest, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(proto, "SPAMD/") {
		return 0, "", &spamdStepError{step: "bad reply", err: fmt.Errorf("status line %q is not SPAMD/x.y", spamdQuote(line))}
	}
	codeStr, msg, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
	code, err = strconv.Atoi(codeStr)
	if err != nil {
		return 0, "", &spamdStepError{step: "bad reply", err: fmt.Errorf("status line %q has no numeric code", spamdQuote(line))}
	}
	return code, strings.TrimSpace(msg), nil
}

// spamdReadReply parses the reply to SYMBOLS (or CHECK):
//
//	SPAMD/1.1 0 EX_OK
//	Content-length: 38
//	Spam: True ; 1000.0 / 5.0
//
//	GTUBE,MSGID_SHORT,NO_RECEIVED,NO_RELAYS
func spamdReadReply(br *bufio.Reader) (SpamdResult, error) {
	var res SpamdResult
	code, msg, err := spamdStatus(br)
	if err != nil {
		return res, err
	}
	if code != 0 {
		// spamd's codes are sysexits(3): 64 EX_USAGE, 76 EX_PROTOCOL, ...
		return res, &spamdStepError{step: "bad reply", err: fmt.Errorf("spamd refused the request: %d %s", code, spamdQuote(msg))}
	}
	haveSpam := false
	length := -1
	for {
		line, err := spamdLine(br)
		if err != nil {
			return res, err
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return res, &spamdStepError{step: "bad reply", err: fmt.Errorf("header line %q has no colon", spamdQuote(line))}
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "spam":
			res.Spam, res.Score, res.Required, err = spamdParseSpam(value)
			if err != nil {
				return res, &spamdStepError{step: "bad reply", err: err}
			}
			haveSpam = true
		case "content-length":
			length, err = strconv.Atoi(value)
			if err != nil || length < 0 {
				return res, &spamdStepError{step: "bad reply", err: fmt.Errorf("bad Content-length %q", spamdQuote(value))}
			}
		}
	}
	if !haveSpam {
		return res, &spamdStepError{step: "bad reply", err: errors.New("no Spam header")}
	}
	var body []byte
	if length >= 0 {
		if length > spamdMaxReply {
			return res, &spamdStepError{step: "bad reply", err: fmt.Errorf("Content-length %d exceeds %d bytes", length, spamdMaxReply)}
		}
		body = make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return res, fmt.Errorf("symbols cut short: %w", io.ErrUnexpectedEOF)
			}
			return res, err
		}
	} else {
		// CHECK (or an old spamd) sends no body and no length: read to EOF.
		body, err = io.ReadAll(br)
		if err != nil {
			return res, err
		}
	}
	for _, sym := range strings.Split(string(body), ",") {
		if sym = strings.TrimSpace(sym); sym != "" {
			res.Symbols = append(res.Symbols, sym)
		}
	}
	return res, nil
}

// spamdParseSpam parses the Spam header's value: "True ; 1000.0 / 5.0".
func spamdParseSpam(v string) (spam bool, score, required float64, err error) {
	verdict, figures, ok := strings.Cut(v, ";")
	scoreStr, reqStr, ok2 := strings.Cut(figures, "/")
	if !ok || !ok2 {
		return false, 0, 0, fmt.Errorf("Spam header %q is not \"True|False ; score / required\"", spamdQuote(v))
	}
	switch strings.ToLower(strings.TrimSpace(verdict)) {
	case "true", "yes":
		spam = true
	case "false", "no":
	default:
		return false, 0, 0, fmt.Errorf("Spam header %q: verdict is not True or False", spamdQuote(v))
	}
	score, err1 := strconv.ParseFloat(strings.TrimSpace(scoreStr), 64)
	required, err2 := strconv.ParseFloat(strings.TrimSpace(reqStr), 64)
	if err1 != nil || err2 != nil || math.IsNaN(score) || math.IsInf(score, 0) || math.IsNaN(required) || math.IsInf(required, 0) {
		return false, 0, 0, fmt.Errorf("Spam header %q: bad score or required score", spamdQuote(v))
	}
	return spam, score, required, nil
}

// spamdLine reads one CRLF- (or LF-) terminated line. A line longer than the
// reader's buffer is a protocol error, and the end of the stream before the
// line ends is an unexpected EOF.
func spamdLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case err == nil:
	case errors.Is(err, bufio.ErrBufferFull):
		return "", &spamdStepError{step: "bad reply", err: fmt.Errorf("line longer than %d bytes", br.Size())}
	case errors.Is(err, io.EOF):
		if len(line) == 0 {
			return "", fmt.Errorf("connection closed before the reply ended: %w", io.ErrUnexpectedEOF)
		}
		return "", fmt.Errorf("connection closed inside a line: %w", io.ErrUnexpectedEOF)
	default:
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// spamdQuote shortens what the peer sent for an error message.
func spamdQuote(s string) string {
	if len(s) > 80 {
		n := 80
		for n > 0 && !utf8.RuneStart(s[n]) { // not inside a UTF-8 sequence
			n--
		}
		s = s[:n] + "..."
	}
	return s
}

// spamdSCL maps SpamAssassin's score, required score and verdict to an SCL;
// the rule is documented on Spamd.
func spamdSCL(score, required float64, spam bool) int {
	if required <= 0 {
		if spam {
			return 7
		}
		return 0
	}
	var f float64
	if score < required {
		f = 7 * score / required
	} else {
		f = 7 + 2*(score-required)/required
	}
	// The epsilon keeps figures that land on a step (7·0.7/4.9 = 0.999...)
	// on it.
	scl := clamp(int(math.Floor(math.Max(-100, math.Min(f, 100)) + 1e-9)))
	if spam {
		return max(scl, 7)
	}
	return min(scl, 6)
}
