package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/metrics"
	"github.com/sclgate/sclgate/scorer"
)

// tooBig starts go-smtp's reply to a message over MaxMessageBytes.
var tooBig = []byte("552 5.3.4 ")

// MaxLineLength is the longest line accepted, inside DATA too. RFC 5321's
// 1000 is routinely exceeded by real mail (HTML one-liners), so sclgate
// takes 4,000 octets plus CRLF, as maddy does.
const MaxLineLength = 4002

// Policy is everything a transaction decides with. It is replaced whole on
// SIGHUP; each transaction takes the Policy in force at its MAIL and keeps
// it to the end, so a reload never changes a message half-way.
type Policy struct {
	Config     *config.Config
	Scorer     *scorer.Scorer
	Archive    *archive.Store // nil when no archive.dir
	Downstream Downstream
}

// Options are the Server's dependencies.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	TLS     *tls.Config // nil: no STARTTLS
}

// Server is the SMTP front end.
type Server struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	policy  atomic.Pointer[Policy]
	smtp    *smtp.Server

	// bigScans bounds how many spooled (large) messages are parsed and
	// scored at once. Each takes megabytes of text while it is scored,
	// and parsing and the built-in model are CPU-bound: beyond one per
	// core, more at once only costs memory (100 concurrent 10 MB
	// messages must not mean 100 such texts). An external engine's
	// network wait is made before a slot is taken (scorer.Early).
	bigScans chan struct{}

	mu        sync.Mutex
	sessions  map[*session]struct{}
	listeners []*limitListener
	closing   bool
}

// New builds a Server; Serve starts it. The listener-level settings (limits,
// timeouts, TLS, PROXY protocol) are taken from p now and need a restart to
// change; everything else follows SetPolicy.
func New(p *Policy, o Options) *Server {
	s := &Server{log: o.Logger, metrics: o.Metrics, sessions: map[*session]struct{}{},
		bigScans: make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.policy.Store(p)
	c := p.Config
	srv := smtp.NewServer(s)
	srv.Domain = Hostname(c)
	// limits.max_recipients is kept by the session, not by go-smtp: a
	// SIGHUP changes it, its 452s follow the session's counting, and an
	// address is checked (550 for a foreign domain) before the count.
	// So EHLO advertises no LIMITS RCPTMAX (RFC 9422): go-smtp does only
	// with its own check, whose 452s the session would not see.
	srv.MaxMessageBytes = c.Limits.MaxMessageBytes
	srv.MaxLineLength = MaxLineLength
	// SMTPUTF8 (RFC 6531) is offered whatever the downstream: one that
	// lacks it still gets every message whose addresses are ASCII, or
	// need only A-labels for their domains (downstreamAddr).
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout = c.Limits.CommandTimeout
	srv.WriteTimeout = c.Limits.CommandTimeout
	if o.TLS != nil {
		// Mark a connection as TLS the moment its handshake starts: from
		// then on its bytes are ciphertext, for the line guard and for
		// the goodbye a shutdown writes, also before any session exists
		// (STARTTLS may come before EHLO).
		t := o.TLS.Clone()
		t.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if lc, ok := h.Conn.(*limitConn); ok {
				lc.noGuard.Store(true)
			}
			return nil, nil
		}
		srv.TLSConfig = t
	}
	srv.ErrorLog = newSlogLogger(s.log, time.Now)
	s.smtp = srv
	return s
}

// SetPolicy puts p in force for transactions that start from now on.
func (s *Server) SetPolicy(p *Policy) { s.policy.Store(p) }

// Policy returns the policy in force.
func (s *Server) Policy() *Policy { return s.policy.Load() }

// Serve accepts connections on l until Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	c := s.policy.Load().Config
	l = proxyListener(l, c.ProxyFrom)
	ll := newLimitListener(l, c.Limits.MaxConnections, c.Limits.MaxConnectionsPerIP, Hostname(c), limitHooks{
		refused: func(client netip.Addr, limit string) {
			// Logged, as Postfix logs its concurrency limit, so that the
			// client can be told (or its limit raised) by name.
			attrs := []any{slog.String("limit", limit)}
			if client.IsValid() {
				attrs = append(attrs, slog.String("client", client.String()))
			}
			s.log.Warn("connection refused: too many connections", attrs...)
			s.metrics.Rejected.WithLabelValues(metrics.RefuseTooManyConnections).Inc()
		},
		opened:      func() { s.metrics.SessionsActive.Inc() },
		closed:      func() { s.metrics.SessionsActive.Dec() },
		acceptError: acceptErrorLog(s.log, time.Now),
		http: func() {
			s.log.Warn("client spoke HTTP to the SMTP port; disconnected")
			s.metrics.Rejected.WithLabelValues(metrics.RefuseCrossProtocol).Inc()
		},
		cutCommand: func() {
			s.log.Warn("command not finished within limits.command_timeout; disconnected")
			s.metrics.Rejected.WithLabelValues(metrics.RefuseCommandTimeout).Inc()
		},
		protocolError: func(lc *limitConn, reply []byte) bool {
			if bytes.HasPrefix(reply, tooBig) {
				// go-smtp's own size refusals: a SIZE= at MAIL over
				// the limit, a BDAT chunk that would pass it (Exchange
				// sends BDAT). DATA's is the session's, counted there.
				s.metrics.Rejected.WithLabelValues(metrics.RefuseSize).Inc()
			}
			if sess := lc.sess.Load(); sess != nil {
				return sess.countProtocolError()
			}
			// Before EHLO: no session to count in yet.
			lc.errs++
			if lc.errs < s.policy.Load().Config.Limits.MaxErrors {
				return false
			}
			s.log.Warn("too many errors; disconnecting", slog.String("client", lc.addr.String()), slog.Int("errors", lc.errs))
			s.metrics.Rejected.WithLabelValues(metrics.RefuseTooManyErrors).Inc()
			return true
		},
	})
	s.mu.Lock()
	s.listeners = append(s.listeners, ll)
	s.mu.Unlock()
	err := s.smtp.Serve(ll)
	if err == smtp.ErrServerClosed {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, closes idle sessions, lets
// transactions in flight finish, and returns when every session has ended
// or ctx is done (then the rest are cut off).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	busy := map[net.Conn]bool{}
	idle := map[net.Conn]net.Conn{} // listener's connection → the session's, TLS or not
	for sess := range s.sessions {
		c := sess.netConn
		if sess.inTxn.Load() {
			busy[baseConn(c)] = true
		} else {
			idle[baseConn(c)] = c
		}
	}
	listeners := s.listeners
	s.mu.Unlock()
	// Close every connection not in a transaction, including those
	// that have no session yet (greeted, no EHLO): go-smtp's Shutdown
	// would wait for them until ctx is done. Each is told why first, as
	// RFC 5321 section 3.8 asks of a server shut down from outside: a
	// 421, which a client takes as "try again later", not as a failure.
	for _, ll := range listeners {
		ll.shutdown(func(c net.Conn) bool { return busy[c] }, func(c *limitConn) {
			w, ok := idle[c]
			if !ok || w == net.Conn(c) {
				if c.noGuard.Load() {
					// TLS under way (a handshake, or STARTTLS done and
					// no EHLO yet): a plaintext line would break it.
					return
				}
				w = c
			}
			w.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(w, ll.shutting)
		})
	}
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		// The bound is reached: cut the sessions still open off. go-smtp's
		// Close does nothing once its Shutdown has begun, so their
		// connections are closed here; each session then ends in its
		// own goroutine (Logout waits at most logoutWait there).
		s.mu.Lock()
		var open []net.Conn
		for sess := range s.sessions {
			open = append(open, sess.netConn)
		}
		s.mu.Unlock()
		// Each is told why first (RFC 5321 section 3.8), as the idle
		// ones were: a client still sending its message, or waiting for
		// the answer to it, had no 250, still has the message, and reads
		// the 421 as "try again later". Outside the lock, and all at
		// once: a client that does not read may hold a write (and a TLS
		// close) up to the deadline.
		bye := "421 4.3.2 " + Hostname(s.policy.Load().Config) + " Service shutting down, try again later\r\n"
		var wg sync.WaitGroup
		for _, c := range open {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
				io.WriteString(c, bye)
				c.Close()
			}()
		}
		wg.Wait()
		s.smtp.Close()
	}
	// Until here, newcomers were told 421 4.3.2 (see limitListener.Close).
	for _, ll := range listeners {
		ll.closeSocket()
	}
	// The downstream connections kept for reuse: QUIT them.
	if c, ok := s.policy.Load().Downstream.(io.Closer); ok {
		c.Close()
	}
	return err
}

// baseConn is the connection the listener handed out, under TLS if any.
func baseConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// Close cuts every session off at once.
func (s *Server) Close() error { return s.smtp.Close() }

// hasControl reports whether a HELO/EHLO name has control characters.
func hasControl(h string) bool {
	return strings.ContainsFunc(h, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// errBadHelo refuses a HELO/EHLO name with control characters in it, which
// go-smtp would otherwise echo in its "250-Hello" line as they came.
var errBadHelo = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid HELO/EHLO name: control characters"}

// NewSession implements smtp.Backend. go-smtp calls it at HELO/EHLO.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if hasControl(c.Hostname()) {
		s.metrics.Rejected.WithLabelValues(metrics.RefuseBadHelo).Inc()
		return nil, errBadHelo
	}
	p := s.policy.Load()
	remote := addrOf(c.Conn().RemoteAddr())
	sess := &session{
		srv:     s,
		conn:    c,
		dataSem: make(chan struct{}, 1),
		netConn: c.Conn(),
		remote:  remote,
		trusted: inPrefixes(remote, p.Config.Trusted),
	}
	if lc, ok := c.Conn().(*limitConn); ok {
		sess.raw = lc                     // plaintext; under TLS the raw bytes are ciphertext
		sess.errors.Store(int32(lc.errs)) // go-smtp's error replies before EHLO
		lc.sess.Store(sess)
	}
	if lc, ok := baseConn(c.Conn()).(*limitConn); ok {
		sess.lc = lc
		if sess.raw == nil {
			lc.noGuard.Store(true) // TLS: the bytes limitConn sees are ciphertext
		}
	}
	sess.log = s.log.With(slog.String("client", remote.String()), slog.String("helo", c.Hostname()))
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	}
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	return sess, nil
}

func (s *Server) endSession(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Hostname is the name sclgate gives itself: hostname from the
// configuration, else the machine's.
func Hostname(c *config.Config) string {
	if c.Hostname != "" {
		return c.Hostname
	}
	return defaultHostname()
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// slogLogger is go-smtp's ErrorLog, its Printf-style lines put into slog. A client that resets its connection
// or goes away mid-reply is the client's business, and common (scanners,
// a sender's timeout): such lines are logged at info level, at most one a
// minute with how many there were since the last (a burst of them, one
// warning each, buried the journal under a descriptor shortage). go-smtp
// hands over only the formatted line, so it is told by its text.
type slogLogger struct {
	l     *slog.Logger
	clock func() time.Time

	mu        sync.Mutex
	lastReset time.Time
	resets    int // since the last line logged
}

func newSlogLogger(l *slog.Logger, clock func() time.Time) *slogLogger {
	return &slogLogger{l: l, clock: clock}
}

func (l *slogLogger) Printf(format string, v ...any) {
	l.log(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (l *slogLogger) Println(v ...any) { l.log(strings.TrimSpace(fmt.Sprintln(v...))) }

func (l *slogLogger) log(msg string) {
	if !strings.HasPrefix(msg, "error handling ") ||
		!strings.HasSuffix(msg, "connection reset by peer") && !strings.HasSuffix(msg, "broken pipe") {
		l.l.Warn("smtp: " + msg)
		return
	}
	l.mu.Lock()
	l.resets++
	now := l.clock()
	if !l.lastReset.IsZero() && now.Sub(l.lastReset) < time.Minute {
		l.mu.Unlock()
		return
	}
	n := l.resets
	l.lastReset, l.resets = now, 0
	l.mu.Unlock()
	l.l.Info("smtp: client went away: "+strings.TrimPrefix(msg, "error handling "), slog.Int("since_last_line", n))
}

// deadline is a context for one downstream step.
func deadline(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// acceptErrorLog logs accept failures (out of file descriptors, mostly)
// at most once a minute per listener, with how many there were: the
// listener retries every 50 ms, and a line each time would flood the
// journal just when the machine is short of resources. When accepting
// works again (err nil) it says so, with the failures since the last
// such line and how long ago the first of them was, which a burst shorter
// than a minute would otherwise never show; also at most once a minute,
// since under a lasting shortage accepting fails and works by turns,
// except right after an "accept failed" line: the journal's last word on
// the listener must not be a failure that is over. It is called from the
// one goroutine that accepts.
func acceptErrorLog(log *slog.Logger, clock func() time.Time) func(error) {
	var lastErr, lastOK, start time.Time
	n, burst := 0, 0
	failedLogged := false // an "accept failed" line since the last "again"
	return func(err error) {
		now := clock()
		if err == nil {
			if burst > 0 && (failedLogged || now.Sub(lastOK) >= time.Minute) {
				log.Warn("accepting connections again", slog.Int("failures", burst), slog.Duration("after", now.Sub(start).Round(time.Millisecond)))
				burst, lastOK, failedLogged = 0, now, false
			}
			return
		}
		if burst == 0 {
			start = now
		}
		n++
		burst++
		if now.Sub(lastErr) >= time.Minute {
			log.Error("accept failed; retrying every 50 ms", slog.Any("err", err), slog.Int("failures", n))
			lastErr, n, failedLogged = now, 0, true
		}
	}
}
