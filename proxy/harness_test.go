package proxy

// Test harness for the in-process proxy tests, in the style of go-smtp's
// server_test.go (layered helpers: a server on 127.0.0.1:0, a greeted
// connection, an EHLO'd one, raw reply lines asserted) and maddy's
// internal/testutils/smtp_server.go (a recording downstream that can be
// told to fail at MAIL, RCPT or DATA).
//
// Every wait is bounded: connections carry deadlines, and the few places
// that wait for something to happen elsewhere poll against a deadline.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.yaml.in/yaml/v3"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/metrics"
	"github.com/sclgate/sclgate/scorer"
	"github.com/sclgate/sclgate/weights"
)

// ioTimeout bounds every single read or write a test does on a connection.
const ioTimeout = 5 * time.Second

// testWeightsXML is the custom weight list every test gateway uses. The
// phrases are chosen so that a test message gets exactly the SCL it wants.
const testWeightsXML = `<?xml version="1.0" encoding="UTF-8"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="MAX" Text="cheap pills"/>
  <CustomWeightEntry Type="BODY" Change="MIN" Text="quarterly report"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="five points"/>
  <CustomWeightEntry Type="BODY" Change="6" Text="six points"/>
  <CustomWeightEntry Type="BODY" Change="7" Text="seven points"/>
  <CustomWeightEntry Type="BODY" Change="MAX" Text="Offre spéciale"/>
</CustomWeightEntries>
`

// Body phrases for the SCL a test wants (see testWeightsXML).
const (
	spamPhrase = "Buy cheap pills today."        // SCL 9 (MAX)
	hamPhrase  = "Here is the quarterly report." // SCL 0 (MIN)
)

// testMessage returns a small CRLF message whose body contains phrase.
func testMessage(subject, phrase string) []byte {
	return []byte("From: Alice <alice@example.org>\r\n" +
		"To: bob@example.com\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@example.org>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Hello Bob,\r\n" +
		"\r\n" +
		phrase + "\r\n" +
		"\r\n" +
		"Alice\r\n")
}

// ---------------------------------------------------------------------------
// The gateway under test

// gwSetup says how to start a test gateway.
type gwSetup struct {
	// Downstream is the downstream URL (fakeDownstream.URL()); the YAML
	// may override it.
	Downstream string
	// YAML holds only the keys the test cares about; it is merged over
	// the harness's base settings, which are merged over the defaults.
	YAML string
	// CreateTemp, if set, is the archive store's CreateTemp (to inject
	// write failures).
	CreateTemp func(dir, pattern string) (*os.File, error)
	// RootCAs is what downstream_tls.mode verify trusts (the YAML's
	// ca_file is not read here).
	RootCAs *x509.CertPool
	// Log is the gateway's log, its downstream's included (nil: quiet,
	// or stderr with PROXY_TEST_LOG set).
	Log *slog.Logger
	// Classifier replaces the harness's scorer.None (rules only).
	Classifier scorer.Classifier
}

type testGateway struct {
	t          *testing.T
	srv        *Server
	addr       string
	m          *metrics.Metrics
	setup      gwSetup
	archiveDir string
	list       *weights.List
	served     chan error
}

// startGateway builds a policy from s and serves it on 127.0.0.1:0 until
// the test ends.
func startGateway(t *testing.T, s gwSetup) *testGateway {
	t.Helper()
	list, err := weights.Parse("test-weights.xml", strings.NewReader(testWeightsXML))
	if err != nil {
		t.Fatalf("weights.Parse: %v", err)
	}
	g := &testGateway{
		t:          t,
		m:          metrics.New(prometheus.NewRegistry(), "test"),
		setup:      s,
		archiveDir: t.TempDir() + "/archive",
		list:       list,
		served:     make(chan error, 1),
	}
	p := g.policy(s.YAML)
	logger := s.Log
	if logger == nil && os.Getenv("PROXY_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	g.srv = New(p, Options{Metrics: g.m, Logger: logger})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	g.addr = ln.Addr().String()
	go func() { g.served <- g.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		g.srv.Shutdown(ctx) // may already be shut down by the test
		select {
		case <-g.served:
		case <-time.After(2 * time.Second):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return g
}

// policy builds a Policy from the harness base settings plus yamlText.
func (g *testGateway) policy(yamlText string) *Policy {
	t := g.t
	t.Helper()
	cfg := parseTestConfig(t, g.setup.Downstream, g.archiveDir, yamlText)
	ds, err := config.ParseDownstream(cfg.Downstream)
	if err != nil {
		t.Fatalf("ParseDownstream: %v", err)
	}
	var store *archive.Store
	if cfg.Archive.Dir != "" {
		store, err = archive.Open(cfg.Archive.Dir, archive.Options{StoreSCL: cfg.Archive.StoreSCL, CreateTemp: g.setup.CreateTemp})
		if err != nil {
			t.Fatalf("archive.Open: %v", err)
		}
	}
	list := g.list
	var c scorer.Classifier = scorer.None{}
	if g.setup.Classifier != nil {
		c = g.setup.Classifier
	}
	return &Policy{
		Config:  cfg,
		Scorer:  &scorer.Scorer{Classifier: c, Weights: func() *weights.List { return list }},
		Archive: store,
		Downstream: NewDownstream(ds, DownstreamOptions{Hostname: Hostname(cfg), Timeout: cfg.Limits.DownstreamTimeout, Idle: cfg.Limits.DownstreamIdle,
			TLSMode: cfg.DownstreamTLS.Mode, ServerName: cfg.DownstreamTLS.ServerName, RootCAs: g.setup.RootCAs, Log: g.setup.Log, Metrics: g.m}),
	}
}

// parseTestConfig merges yamlText over the harness base (host name, short
// timeouts, downstream, archive dir) and parses it with config.Parse, so
// tests name only the keys they care about.
func parseTestConfig(t *testing.T, downstream, archiveDir, yamlText string) *config.Config {
	t.Helper()
	if downstream == "" {
		downstream = "smtp://127.0.0.1:1" // tests without one set their own
	}
	base := map[string]any{
		"hostname":   "gw.test",
		"downstream": downstream,
		"limits": map[string]any{
			"command_timeout":    "10s",
			"data_timeout":       "10s",
			"downstream_timeout": "1s",
			"shutdown_timeout":   "5s",
		},
		"archive": map[string]any{"dir": archiveDir},
		"metrics": map[string]any{"listen": ""},
	}
	var over map[string]any
	if err := yaml.Unmarshal([]byte(yamlText), &over); err != nil {
		t.Fatalf("test YAML: %v\n%s", err, yamlText)
	}
	merged, err := yaml.Marshal(mergeMaps(base, over))
	if err != nil {
		t.Fatalf("yaml.Marshal: %v", err)
	}
	cfg, err := config.Parse("test.yaml", merged)
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, merged)
	}
	return cfg
}

func mergeMaps(base, over map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeMaps(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// archived returns the names of the finished files in the archive dir.
func (g *testGateway) archived() []string {
	g.t.Helper()
	ents, err := os.ReadDir(g.archiveDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		g.t.Fatalf("read archive dir: %v", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// counter reads a metric: testutil.ToFloat64 of a Counter or of one
// labelled series of a CounterVec.
func counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// wantMetric checks one metric's value.
func wantMetric(t *testing.T, name string, c prometheus.Collector, want float64) {
	t.Helper()
	if got := counter(c); got != want {
		t.Errorf("metric %s = %v, want %v", name, got, want)
	}
}

// ---------------------------------------------------------------------------
// The raw SMTP client

// rawConn is a client connection driven line by line, so that tests see
// the exact reply lines.
type rawConn struct {
	t    *testing.T
	c    net.Conn
	r    *bufio.Reader
	seen string // what expectClosed read before the connection closed
}

// dialRaw connects to addr; the connection is closed when the test ends.
func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// greeted connects and reads the 220 greeting.
func greeted(t *testing.T, addr string) *rawConn {
	t.Helper()
	rc := dialRaw(t, addr)
	if l := rc.reply(); len(l) != 1 || !strings.HasPrefix(l[0], "220 ") {
		t.Fatalf("greeting = %q, want one 220 line", l)
	}
	return rc
}

// ehloed connects, reads the greeting and says EHLO client.test.
func ehloed(t *testing.T, addr string) *rawConn {
	t.Helper()
	rc := greeted(t, addr)
	if l := rc.cmd("EHLO client.test"); !strings.HasPrefix(l[len(l)-1], "250 ") {
		t.Fatalf("EHLO = %q", l)
	}
	return rc
}

// addressed is ehloed with MAIL from alice@example.org and RCPT to
// bob@example.com accepted: a transaction ready for its data.
func addressed(t *testing.T, addr string) *rawConn {
	t.Helper()
	rc := ehloed(t, addr)
	rc.expectCode("MAIL FROM:<alice@example.org>", "250 ")
	rc.expectCode("RCPT TO:<bob@example.com>", "250 ")
	return rc
}

func (rc *rawConn) write(s string) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write %q: %v", truncate(s, 60), err)
	}
}

// reply reads one (possibly multi-line) reply and returns its lines
// without line ends.
func (rc *rawConn) reply() []string {
	rc.t.Helper()
	lines, err := rc.tryReply(ioTimeout)
	if err != nil {
		rc.t.Fatalf("reading reply: %v (got so far %q)", err, lines)
	}
	return lines
}

// tryReply is reply with an error instead of a test failure.
func (rc *rawConn) tryReply(d time.Duration) ([]string, error) {
	rc.c.SetReadDeadline(time.Now().Add(d))
	var lines []string
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		if !strings.HasSuffix(line, "\r\n") {
			return lines, fmt.Errorf("reply line without CRLF: %q", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines, nil
		}
	}
}

// cmd sends one command line and returns the reply lines.
func (rc *rawConn) cmd(line string) []string {
	rc.t.Helper()
	rc.write(line + "\r\n")
	return rc.reply()
}

// last sends a command and returns the last line of its reply.
func (rc *rawConn) last(line string) string {
	rc.t.Helper()
	l := rc.cmd(line)
	return l[len(l)-1]
}

// expect sends a command and checks the last reply line exactly.
func (rc *rawConn) expect(line, want string) {
	rc.t.Helper()
	if got := rc.last(line); got != want {
		rc.t.Fatalf("%s: reply %q, want %q", line, got, want)
	}
}

// expectCode sends a command and checks the reply starts with prefix
// (e.g. "250 ").
func (rc *rawConn) expectCode(line, prefix string) string {
	rc.t.Helper()
	got := rc.last(line)
	if !strings.HasPrefix(got, prefix) {
		rc.t.Fatalf("%s: reply %q, want %q...", line, got, prefix)
	}
	return got
}

// dotStuff returns msg (which must end in CRLF) as DATA sends it,
// dot-stuffed and ended with ".\r\n".
func dotStuff(msg []byte) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(msg), "\n") {
		if strings.HasPrefix(line, ".") {
			b.WriteByte('.')
		}
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return b.String()
}

// data sends DATA, the message and the final dot, and returns the last
// line of the final reply.
func (rc *rawConn) data(msg []byte) string {
	rc.t.Helper()
	rc.expectCode("DATA", "354 ")
	rc.write(dotStuff(msg))
	l := rc.reply()
	return l[len(l)-1]
}

// send runs a whole transaction, expecting 250 for MAIL and each RCPT,
// and returns the last line of the reply to the final dot.
func (rc *rawConn) send(from string, to []string, msg []byte) string {
	rc.t.Helper()
	rc.expectCode("MAIL FROM:<"+from+">", "250 ")
	for _, r := range to {
		rc.expectCode("RCPT TO:<"+r+">", "250 ")
	}
	return rc.data(msg)
}

// expectClosed checks that the server closes the connection within d
// (EOF or reset). Bytes read before that are kept in rc.seen.
func (rc *rawConn) expectClosed(d time.Duration) error {
	rc.c.SetReadDeadline(time.Now().Add(d))
	var got []byte
	buf := make([]byte, 512)
	for {
		n, err := rc.r.Read(buf)
		got = append(got, buf[:n]...)
		rc.seen = string(got)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("connection still open after %v (read %q)", d, got)
			}
			return nil // EOF, reset: closed
		}
	}
}

// ---------------------------------------------------------------------------
// The recording downstream

// dsMessage is one message the downstream accepted.
type dsMessage struct {
	From string
	To   []string
	Data []byte
	UTF8 bool // MAIL said SMTPUTF8
}

// fakeDownstream is a real go-smtp server on 127.0.0.1:0 that records what
// it gets and can be told to fail.
type fakeDownstream struct {
	t    *testing.T
	srv  *smtp.Server
	addr string
	lmtp bool
	stop chan struct{} // closed at the end of the test: wakes slow hooks

	mu sync.Mutex
	// Behaviour, set by the test before use.
	rcptErr   map[string]*smtp.SMTPError // per recipient
	mailErr   *smtp.SMTPError
	perConn   int                                   // > 0: MAIL after this many per connection gets 452 (Exchange's MaxMessagesPerConnection)
	dataErr   *smtp.SMTPError                       // reject every DATA
	dataHook  func(c *smtp.Conn, r io.Reader) error // replaces reading and recording
	replyText string                                // 250 text for DATA
	// What happened.
	mails    []string // MAIL FROM addresses
	rcpts    []string // accepted RCPT TO addresses
	dataSeen int      // Session.Data calls (i.e. DATA commands that got 354)
	msgs     []dsMessage
	active   int      // transactions open now (MAIL given, not yet ended)
	sessions int      // sessions (connections) ever
	ended    int      // sessions that have ended
	tlsMails int      // MAIL commands over TLS
	helos    []string // the client's EHLO name at each MAIL
}

// startDownstream starts a recording SMTP (or LMTP) server.
func startDownstream(t *testing.T, lmtp bool) *fakeDownstream {
	t.Helper()
	return startDownstreamOn(t, lmtp, nil)
}

// startDownstreamOn starts it on ln (nil: a new 127.0.0.1 port); configure
// functions may change the server's settings before it serves.
func startDownstreamOn(t *testing.T, lmtp bool, ln net.Listener, configure ...func(*smtp.Server)) *fakeDownstream {
	t.Helper()
	ds := &fakeDownstream{t: t, lmtp: lmtp, stop: make(chan struct{}), replyText: "Ok: queued as DSQ0001"}
	srv := smtp.NewServer(ds)
	srv.Domain = "ds.test"
	srv.LMTP = lmtp
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxLineLength = 8000
	srv.ErrorLog = log.New(io.Discard, "", 0)
	for _, f := range configure {
		f(srv)
	}
	ds.srv = srv
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatalf("listen: %v", err)
		}
	}
	ds.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		close(ds.stop)
		srv.Close()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Errorf("downstream Serve did not return")
		}
	})
	return ds
}

// URL is the downstream's address for the configuration.
func (ds *fakeDownstream) URL() string {
	if ds.lmtp {
		return "lmtp://" + ds.addr
	}
	return "smtp://" + ds.addr
}

func (ds *fakeDownstream) rejectRcpt(addr string, e *smtp.SMTPError) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.rcptErr == nil {
		ds.rcptErr = map[string]*smtp.SMTPError{}
	}
	ds.rcptErr[addr] = e
}

func (ds *fakeDownstream) setDataErr(e *smtp.SMTPError) {
	ds.mu.Lock()
	ds.dataErr = e
	ds.mu.Unlock()
}

func (ds *fakeDownstream) setDataHook(h func(c *smtp.Conn, r io.Reader) error) {
	ds.mu.Lock()
	ds.dataHook = h
	ds.mu.Unlock()
}

// messages returns the messages accepted so far.
func (ds *fakeDownstream) messages() []dsMessage {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return append([]dsMessage(nil), ds.msgs...)
}

// counts returns MAIL commands, DATA commands and sessions seen.
func (ds *fakeDownstream) counts() (mails, datas, sessions int) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return len(ds.mails), ds.dataSeen, ds.sessions
}

// waitIdle waits (bounded) until no downstream transaction is open, so
// that whatever the proxy was going to send has been sent. (The proxy may
// keep the connection itself open for its next message.)
func (ds *fakeDownstream) waitIdle() {
	ds.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		ds.mu.Lock()
		n := ds.active
		ds.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			ds.t.Fatalf("downstream still has %d transaction(s) open after 3s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// only returns the one message the downstream got, failing otherwise.
func (ds *fakeDownstream) only() dsMessage {
	ds.t.Helper()
	ds.waitIdle()
	msgs := ds.messages()
	if len(msgs) != 1 {
		ds.t.Fatalf("downstream got %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

// nothing checks that the downstream got no message and no DATA command.
func (ds *fakeDownstream) nothing() {
	ds.t.Helper()
	ds.waitIdle()
	_, datas, _ := ds.counts()
	if n := len(ds.messages()); n != 0 || datas != 0 {
		ds.t.Errorf("downstream got %d messages and %d DATA commands, want none", n, datas)
	}
}

// NewSession implements smtp.Backend.
func (ds *fakeDownstream) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ds.mu.Lock()
	ds.sessions++
	ds.mu.Unlock()
	return &fakeSession{ds: ds, c: c}, nil
}

type fakeSession struct {
	ds    *fakeDownstream
	c     *smtp.Conn
	from  string
	utf8  bool
	to    []string
	inTxn bool
	mails int // MAIL commands on this connection
}

func (s *fakeSession) Mail(from string, opts *smtp.MailOptions) error {
	ds := s.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.mails = append(ds.mails, from)
	if _, ok := s.c.TLSConnectionState(); ok {
		ds.tlsMails++
	}
	ds.helos = append(ds.helos, s.c.Hostname())
	if ds.mailErr != nil {
		return ds.mailErr
	}
	s.mails++
	if ds.perConn > 0 && s.mails > ds.perConn {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Too many messages on this connection"}
	}
	if !s.inTxn {
		s.inTxn = true
		ds.active++
	}
	s.from, s.utf8 = from, opts != nil && opts.UTF8
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ds := s.ds
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if e := ds.rcptErr[to]; e != nil {
		return e
	}
	ds.rcpts = append(ds.rcpts, to)
	s.to = append(s.to, to)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	ds := s.ds
	ds.mu.Lock()
	ds.dataSeen++
	hook, derr, text := ds.dataHook, ds.dataErr, ds.replyText
	ds.mu.Unlock()
	if hook != nil {
		return hook(s.c, r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	ds.mu.Lock()
	ds.msgs = append(ds.msgs, dsMessage{From: s.from, To: append([]string(nil), s.to...), Data: b, UTF8: s.utf8})
	ds.mu.Unlock()
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: text}
}

// endTxn marks the end of the transaction: after DATA's answer, at RSET,
// and when the connection goes.
func (s *fakeSession) endTxn() {
	s.from, s.to = "", nil
	ds := s.ds
	ds.mu.Lock()
	if s.inTxn {
		s.inTxn = false
		ds.active--
	}
	ds.mu.Unlock()
}

func (s *fakeSession) Reset() { s.endTxn() }

func (s *fakeSession) Logout() error {
	s.endTxn()
	s.ds.mu.Lock()
	s.ds.ended++
	s.ds.mu.Unlock()
	return nil
}

// ends returns how many downstream sessions have ended.
func (ds *fakeDownstream) ends() int {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.ended
}

// ---------------------------------------------------------------------------
// Small helpers

// headerLines returns the header of msg (up to the first empty line) as
// lines without line ends.
func headerLines(msg []byte) []string {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	return strings.Split(string(msg[:end]), "\r\n")
}

// fieldValues returns the (unfolded) values of every header field named
// name, case-insensitively, in the header of msg.
func fieldValues(msg []byte, name string) []string {
	var out []string
	lines := headerLines(msg)
	for i := 0; i < len(lines); i++ {
		n, v, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(n), name) {
			continue
		}
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			v += lines[i]
		}
		out = append(out, strings.TrimSpace(v))
	}
	return out
}

// busy reports whether some session is in a transaction (for tests).
func (s *Server) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		if sess.inTxn.Load() {
			return true
		}
	}
	return false
}

// scriptedDownstream is an SMTP server on 127.0.0.1 whose every
// connection handle talks over (it is closed when handle returns, or at
// the test's end); it returns the downstream URL.
func scriptedDownstream(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range conns {
			c.Close() // a handle still waiting ends
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return "smtp://" + ln.Addr().String()
}
