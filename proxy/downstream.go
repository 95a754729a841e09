package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/metrics"
	"github.com/sclgate/sclgate/safeio"
)

// Downstream is where accepted mail goes on to: the mailbox server.
type Downstream interface {
	// Begin opens a transaction for one message from the given sender.
	Begin(ctx context.Context, from string, opts *smtp.MailOptions) (Txn, error)
	// OneRecipient reports whether a transaction can carry only one
	// recipient (LMTP; see the package doc).
	OneRecipient() bool
}

// Txn is one downstream transaction. Errors that are *smtp.SMTPError are
// the downstream's own answers, to be passed to the client as they are.
type Txn interface {
	Rcpt(ctx context.Context, to string, opts *smtp.RcptOptions) error
	// Data sends the message and returns the downstream's final answer
	// text for a 250 (e.g. its queue id).
	Data(ctx context.Context, msg io.Reader) (string, error)
	// Abort ends the transaction without delivering anything.
	Abort()
	// KeepAlive keeps the transaction open while the client takes its
	// time (between commands, or sending its data), which may be longer
	// than the downstream waits for a command. It runs until stop, or
	// until the Txn is used again (Rcpt, Data, Abort), which ends it
	// first; a second KeepAlive replaces the first.
	KeepAlive() (stop func())
}

// keepAliveEvery is how often a waiting downstream transaction hears a
// NOOP: well within Postfix's smtpd_timeout and Exchange's connection
// inactivity timeout (5 minutes each), and rare enough not to reach
// Postfix's smtpd_junk_command_limit (100) in a 10-minute DATA.
const keepAliveEvery = time.Minute

// DownstreamOptions says how NewDownstream talks to an SMTP or LMTP
// downstream. Only Hostname matters for a maildir.
type DownstreamOptions struct {
	Hostname string        // the EHLO (LHLO) name, and the maildir's
	Timeout  time.Duration // per step
	// Idle is how long a connection is kept open after a transaction,
	// for the next one (0: a new connection for every message).
	Idle time.Duration
	// TLSMode is downstream_tls.mode (config.TLSNone, TLSMay,
	// TLSEncrypt or TLSVerify; "" is none). RootCAs (nil: the system's)
	// and ServerName (empty: the downstream's host) are what
	// TLSVerify checks the certificate against.
	TLSMode    string
	RootCAs    *x509.CertPool
	ServerName string
	// Log hears what the caller's errors do not carry: a may-mode
	// STARTTLS that failed and was given up for plaintext. nil: quiet.
	Log *slog.Logger
	// Metrics counts the connections opened (nil: not counted).
	Metrics *metrics.Metrics
}

// NewDownstream returns the downstream configured as d.
func NewDownstream(d config.Downstream, o DownstreamOptions) Downstream {
	if d.Scheme == "maildir" {
		return &maildir{dir: d.Address, hostname: o.Hostname}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &smtpDownstream{network: d.Network, addr: d.Address, lmtp: d.Scheme == "lmtp", hostname: o.Hostname, timeout: o.Timeout, idle: o.Idle,
		keepAlive: keepAliveEvery, tls: newTLSPolicy(d, o), log: o.Log, metrics: o.Metrics}
}

// Connection reuse. Dialling, EHLO and QUIT cost the downstream and us more
// than a small message does, so a connection whose transaction ended
// cleanly (250 after DATA, or RSET answered) waits for the next one, from
// any client session, as Postfix's smtp client does with its connection
// cache. Reuse never risks a message: a cached connection the downstream
// has dropped in the meantime fails at MAIL, before anything is committed,
// and the transaction goes on over a fresh one.
const (
	// maxIdle bounds the connections kept open doing nothing.
	maxIdle = 64
	// maxConnAge retires a connection however busy (Postfix's
	// smtp_connection_reuse_time_limit), so that a downstream restart or
	// DNS change is followed.
	maxConnAge = 5 * time.Minute
	// staleRetries is how many cached connections Begin tries before it
	// dials a new one.
	staleRetries = 3
)

// smtpDownstream relays to an SMTP or LMTP server with go-smtp's client.
type smtpDownstream struct {
	network, addr string
	lmtp          bool
	hostname      string
	timeout       time.Duration
	idle          time.Duration
	keepAlive     time.Duration // between NOOPs (KeepAlive); tests shorten it
	tls           tlsPolicy
	log           *slog.Logger
	metrics       *metrics.Metrics // nil: not counted

	mu    sync.Mutex
	cache []*dsConn // idle connections, the most recently used last
}

// dsConn is one downstream connection after EHLO.
type dsConn struct {
	c     *smtp.Client
	conn  net.Conn // the TCP (or unix) connection, under any TLS: closing it cuts everything
	out   net.Conn // what the message is written to: conn, or the TLS connection over it
	born  time.Time
	timer *time.Timer // closes the connection when idle too long
}

func (d *smtpDownstream) OneRecipient() bool { return d.lmtp }

func (d *smtpDownstream) Begin(ctx context.Context, from string, opts *smtp.MailOptions) (Txn, error) {
	for range staleRetries {
		dc := d.take()
		if dc == nil {
			break
		}
		err := dc.mail(ctx, from, opts)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			return &smtpTxn{d: d, dc: dc}, nil
		case errors.As(err, &se) && se.Code >= 500 && se.Code <= 599:
			// The downstream refuses this sender, on a live
			// connection: the client's answer too.
			d.put(dc)
			return nil, &downstreamError{op: "mail", err: err}
		}
		// Gone while idle (EOF, reset, or the downstream's 421 on its
		// idle timeout), or a 4xx that may be about this connection
		// (Exchange limits messages per connection): nothing is
		// committed yet, so retire it and ask over a new one, whose
		// answer stands.
		dc.close()
	}
	dc, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	t := &smtpTxn{d: d, dc: dc}
	if err := dc.mail(ctx, from, opts); err != nil {
		t.Abort()
		return nil, &downstreamError{op: "mail", err: err}
	}
	return t, nil
}

// dial opens a new connection, says EHLO (LHLO) and starts TLS as
// downstream_tls says.
func (d *smtpDownstream) dial(ctx context.Context) (*dsConn, error) {
	dc, err := d.dialTLS(ctx, d.tls.mode)
	if err != nil && d.tls.mode == config.TLSMay && errors.Is(err, errStartTLS) {
		// The handshake failed and took the connection with it. May
		// means TLS when it works: say so, and go on in plaintext over
		// a new connection, as the admin chose.
		d.log.Warn("STARTTLS with the downstream failed; going on in plaintext over a new connection (downstream_tls.mode: may)",
			slog.String("downstream", d.addr), slog.Any("err", err))
		return d.dialTLS(ctx, config.TLSNone)
	}
	return dc, err
}

// dialTLS is dial with the given TLS mode.
func (d *smtpDownstream) dialTLS(ctx context.Context, mode string) (*dsConn, error) {
	dialer := net.Dialer{Timeout: d.timeout}
	conn, err := dialer.DialContext(ctx, d.network, d.addr)
	if err != nil {
		return nil, &downstreamError{op: "connect", err: err}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	dc := &dsConn{c: d.newClient(conn), conn: conn, out: conn, born: time.Now()}
	if err := dc.c.Hello(d.hostname); err != nil {
		err = cutErr(ctx, stop, err)
		dc.close()
		return nil, &downstreamError{op: "connect", err: err}
	}
	if mode == config.TLSNone {
		d.count(metrics.TLSNo)
		return dc, nil
	}
	tctx := ctx
	if mode == config.TLSMay {
		// A handshake that hangs (a path-MTU black hole eats the
		// certificate's large packets while SMTP's small lines get
		// through) must leave time for the plaintext that may falls
		// back to: it gets half the time left.
		budget := d.timeout / 2
		if dl, ok := ctx.Deadline(); ok {
			budget = min(budget, time.Until(dl)/2)
		}
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	secure, err := d.startTLS(tctx, dc, mode) // counts TLS done or failed
	if err != nil {
		return nil, err
	}
	if secure == nil {
		// May, and the downstream did not offer STARTTLS or refused
		// it: plaintext on this connection (RFC 3207 section 4).
		d.count(metrics.TLSNo)
		return dc, nil
	}
	return secure, nil
}

func (d *smtpDownstream) newClient(conn net.Conn) *smtp.Client {
	var c *smtp.Client
	if d.lmtp {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = d.timeout
	c.SubmissionTimeout = d.timeout
	return c
}

// count adds a connection to sclgate_downstream_connections_total.
func (d *smtpDownstream) count(tls string) {
	if d.metrics != nil {
		d.metrics.DownstreamConnections.WithLabelValues(tls).Inc()
	}
}

// take returns a cached connection, or nil.
func (d *smtpDownstream) take() *dsConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.cache)
	if n == 0 {
		return nil
	}
	dc := d.cache[n-1]
	d.cache[n-1] = nil
	d.cache = d.cache[:n-1]
	dc.timer.Stop() // if it already fired, expire finds nothing to close
	return dc
}

// put caches a connection whose transaction ended cleanly, or closes it.
func (d *smtpDownstream) put(dc *dsConn) {
	if d.idle <= 0 || time.Since(dc.born) > maxConnAge {
		dc.close()
		return
	}
	d.mu.Lock()
	if len(d.cache) >= maxIdle {
		d.mu.Unlock()
		dc.close()
		return
	}
	dc.timer = time.AfterFunc(d.idle, func() { d.expire(dc) })
	d.cache = append(d.cache, dc)
	d.mu.Unlock()
}

// expire closes dc if it is still waiting in the cache.
func (d *smtpDownstream) expire(dc *dsConn) {
	d.mu.Lock()
	found := false
	for i, c := range d.cache {
		if c == dc {
			d.cache = append(d.cache[:i], d.cache[i+1:]...)
			found = true
			break
		}
	}
	d.mu.Unlock()
	if found {
		dc.close()
	}
}

// Close ends every cached connection (at shutdown).
func (d *smtpDownstream) Close() error {
	d.mu.Lock()
	cache := d.cache
	d.cache = nil
	d.mu.Unlock()
	for _, dc := range cache {
		dc.timer.Stop()
		dc.close()
	}
	return nil
}

// mail sends MAIL FROM, bounded by ctx.
func (dc *dsConn) mail(ctx context.Context, from string, opts *smtp.MailOptions) error {
	from, err := downstreamAddr(dc.c, from)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { dc.conn.Close() })
	defer stop()
	return cutErr(ctx, stop, dc.c.Mail(from, mailOptions(dc.c, opts)))
}

// cutErr is err, a step's error, said to be ctx's end when stop (of the
// context.AfterFunc that closes the connection at ctx's end) finds that
// the connection was closed so: the step then failed on the closed
// connection ("use of closed network connection"), not because the
// downstream refused or went away, and the timeout must count as one.
func cutErr(ctx context.Context, stop func() bool, err error) error {
	if err == nil || stop() {
		return err
	}
	return fmt.Errorf("%w (%w)", ctx.Err(), err)
}

// close QUITs politely, but never waits long for a downstream that is
// going away.
func (dc *dsConn) close() {
	dc.c.CommandTimeout = 5 * time.Second
	if err := dc.c.Quit(); err != nil {
		dc.c.Close()
	}
}

// closeAfter ends dc after a step failed with err: politely (close) when
// the downstream answered, at once when it did not answer in time. A QUIT
// to a downstream that is not answering waited 5 s more, and the client's
// 451 with it.
func (dc *dsConn) closeAfter(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		dc.c.Close()
		return
	}
	dc.close()
}

// mailOptions passes on the MAIL parameters the downstream understands:
// BODY=8BITMIME, and SMTPUTF8 (an address that needs it but cannot have
// it is downstreamAddr's to refuse). The client's SIZE goes on as
// it is, so that a downstream with a smaller limit than sclgate's refuses
// at MAIL, before the client has sent the message, rather than after it.
// Not plus what sclgate adds (a few hundred bytes, up to about 1.5 KB):
// a message just under the downstream's limit, which it takes whole,
// would then be refused at MAIL for good. One that the added fields take
// over the limit is refused by the downstream after DATA instead, and the
// client gets that reply.
func mailOptions(c *smtp.Client, in *smtp.MailOptions) *smtp.MailOptions {
	if in == nil {
		return nil
	}
	out := &smtp.MailOptions{}
	if ok, _ := c.Extension("SIZE"); ok && in.Size > 0 {
		out.Size = in.Size
	}
	if ok, _ := c.Extension("8BITMIME"); ok && in.Body == smtp.Body8BitMIME {
		out.Body = in.Body
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		out.UTF8 = in.UTF8
	}
	return out
}

// smtpTxn is one transaction on a downstream connection. Its end (Data or
// Abort) gives the connection back for reuse, or closes it.
type smtpTxn struct {
	d    *smtpDownstream
	dc   *dsConn // nil once the transaction has ended
	rcpt []string
	// stopKeepAlive ends a KeepAlive still running; Data and Abort call
	// it before they use the connection.
	stopKeepAlive func()
}

func (t *smtpTxn) Rcpt(ctx context.Context, to string, opts *smtp.RcptOptions) error {
	t.stop()
	dc := t.dc // not t.dc when the timer fires: Abort may have cleared it
	to, err := downstreamAddr(dc.c, to)
	if err != nil {
		return &downstreamError{op: "rcpt", err: err}
	}
	stop := context.AfterFunc(ctx, func() { dc.conn.Close() })
	defer stop()
	if err := dc.c.Rcpt(to, nil); err != nil {
		return &downstreamError{op: "rcpt", err: cutErr(ctx, stop, err)}
	}
	t.rcpt = append(t.rcpt, to)
	return nil
}

func (t *smtpTxn) Data(ctx context.Context, msg io.Reader) (reply string, err error) {
	t.stop()
	dc := t.dc
	t.dc = nil
	// go-smtp's client has no deadline while it writes the body: a
	// downstream that stops reading would hold this session for ever.
	// ctx bounds the whole step; past it, cut the connection (any write
	// or read in progress fails, and close does not wait for a reply).
	stop := context.AfterFunc(ctx, func() { dc.conn.Close() })
	defer func() {
		cut := !stop()
		if cut && err != nil {
			inner := err
			if de := (*downstreamError)(nil); errors.As(err, &de) {
				inner = de.err // "downstream data: " once is enough
			}
			err = &downstreamError{op: "data", err: fmt.Errorf("%w (%w)", ctx.Err(), inner)}
		}
		if err == nil && !cut {
			t.d.put(dc)
		} else {
			dc.closeAfter(err)
		}
	}()
	w, err := dc.c.Data()
	if err != nil {
		return "", &downstreamError{op: "data", err: err}
	}
	// The data goes straight to the connection through dotStuffer (see
	// there why); w then writes only the final "\r\n.\r\n".
	bw := connWriters.Get().(*bufio.Writer)
	bw.Reset(dc.out)
	ds := newDotStuffer(bw)
	bp := copyBufs.Get().(*[]byte)
	// Not io.Copy: msg is an io.MultiReader, whose WriteTo would
	// allocate a buffer of its own for every message.
	_, err = io.CopyBuffer(ds, struct{ io.Reader }{msg}, *bp)
	if err == nil {
		err = ds.Finish()
	}
	copyBufs.Put(bp)
	bw.Reset(nil)
	connWriters.Put(bw)
	if err != nil {
		return "", &downstreamError{op: "data", err: err}
	}
	if t.d.lmtp {
		// One recipient per LMTP transaction (see the package doc): its
		// one answer is the answer.
		resp, err := w.CloseWithLMTPResponse()
		if err != nil {
			return "", &downstreamError{op: "data", err: noReply(lmtpFirst(err))}
		}
		for _, r := range resp {
			return r.StatusText, nil
		}
		return "", nil
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", &downstreamError{op: "data", err: noReply(err)}
	}
	return resp.StatusText, nil
}

// ErrNoReply marks a failure after the whole message was sent, before the
// downstream answered it (a timeout, a closed connection): the downstream
// may have delivered it. The gateway answers 451 all the same (the client
// keeps the message and sends it again, as RFC 5321 section 6.1 prefers a
// duplicate to a loss); "archive release" must not send it again unasked.
var ErrNoReply = errors.New("the whole message was sent, but the downstream did not answer it")

// noReply marks err with ErrNoReply unless it is the downstream's answer.
func noReply(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNoReply, err)
}

var (
	copyBufs    = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	connWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}
)

func lmtpFirst(err error) error {
	var le smtp.LMTPDataError
	if errors.As(err, &le) {
		for _, e := range le {
			return e
		}
	}
	return err
}

// KeepAlive sends NOOP (which RFC 5321 allows at any point of a
// transaction) every keepAlive while the client sends its message: the
// downstream transaction opened at MAIL is otherwise silent until the
// whole message is in and scored, and a slow client's DATA (20 MB on a
// slow uplink) outlasts Postfix's or Exchange's idle timeout, which would
// fail every attempt. A NOOP that fails ends the keepalive; Data then
// fails as it would have.
//
// A NOOP not answered in time, or answered wrongly, closes the
// connection: its answer may still come, and would then be read as the
// answer to the next command (a late 250 taken for DATA's).
func (t *smtpTxn) KeepAlive() (stop func()) {
	dc := t.dc
	if dc == nil || t.d.keepAlive <= 0 {
		return func() {}
	}
	t.stop()
	// A timer, not a goroutine: this runs after MAIL and every RCPT, and
	// most transactions end long before the first NOOP is due. mu is
	// held while a NOOP is under way, so that stop waits for it.
	var (
		mu      sync.Mutex
		stopped bool
		timer   *time.Timer
	)
	mu.Lock()
	timer = time.AfterFunc(t.d.keepAlive, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if err := dc.c.Noop(); err != nil {
			dc.conn.Close()
			return
		}
		timer.Reset(t.d.keepAlive)
	})
	mu.Unlock()
	t.stopKeepAlive = func() {
		mu.Lock()
		stopped = true
		timer.Stop()
		mu.Unlock()
	}
	return t.stopKeepAlive
}

func (t *smtpTxn) stop() {
	if t.stopKeepAlive != nil {
		t.stopKeepAlive()
	}
}

// Abort ends the transaction with RSET; a connection that answers it is
// reused.
func (t *smtpTxn) Abort() {
	t.stop()
	dc := t.dc
	if dc == nil {
		return
	}
	t.dc = nil
	dc.c.CommandTimeout = 5 * time.Second
	err := dc.c.Reset()
	dc.c.CommandTimeout = t.d.timeout
	if err != nil {
		dc.closeAfter(err)
		return
	}
	t.d.put(dc)
}

// downstreamError records which step failed; Unwrap gives the downstream's
// *smtp.SMTPError when it answered, or the network error.
type downstreamError struct {
	op  string
	err error
}

// Error gives the downstream's reply as it was written, enhanced code and
// all ("downstream rcpt: 550 5.1.1 no such user"): go-smtp's own wording
// ("SMTP error 550: no such user") leaves the enhanced code out, and it is
// what tells a postmaster a mailbox that is gone (5.1.1) from one that is
// full (5.2.2).
func (e *downstreamError) Error() string {
	if se, ok := e.err.(*smtp.SMTPError); ok && se.Code >= 200 {
		reply := fmt.Sprint(se.Code)
		if c := se.EnhancedCode; c[0] > 0 {
			reply += fmt.Sprintf(" %d.%d.%d", c[0], c[1], c[2])
		}
		if se.Message != "" {
			reply += " " + se.Message
		}
		return "downstream " + e.op + ": " + reply
	}
	return "downstream " + e.op + ": " + e.err.Error()
}
func (e *downstreamError) Unwrap() error { return e.err }

// maildirError is a failure to write into the maildir: a local problem
// (disk full, permissions), not a downstream server's.
type maildirError struct{ err error }

func (e *maildirError) Error() string { return "maildir delivery: " + e.err.Error() }
func (e *maildirError) Unwrap() error { return e.err }

// maildir delivers into a local Maildir: the default downstream, so that a
// fresh install works with nothing else running. Delivery is tmp/ → fsync →
// rename into new/, so a message is either fully there or not at all.
type maildir struct {
	dir      string
	hostname string
}

func (m *maildir) OneRecipient() bool { return false }

func (m *maildir) Begin(ctx context.Context, from string, opts *smtp.MailOptions) (Txn, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(m.dir, sub), 0o750); err != nil {
			return nil, &maildirError{err}
		}
	}
	return &maildirTxn{m: m, from: from}, nil
}

type maildirTxn struct {
	m    *maildir
	from string
	rcpt []string
}

func (t *maildirTxn) Rcpt(ctx context.Context, to string, opts *smtp.RcptOptions) error {
	t.rcpt = append(t.rcpt, to)
	return nil
}

func (t *maildirTxn) Abort() {}

func (t *maildirTxn) KeepAlive() func() { return func() {} }

func (t *maildirTxn) Data(ctx context.Context, msg io.Reader) (string, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%d.%s.%s", time.Now().Unix(), hex.EncodeToString(rnd[:]), strings.ReplaceAll(t.m.hostname, "/", "_"))
	tmp := filepath.Join(t.m.dir, "tmp", name)
	if err := t.write(tmp, msg); err != nil {
		os.Remove(tmp)
		return "", &maildirError{err}
	}
	if err := os.Rename(tmp, filepath.Join(t.m.dir, "new", name)); err != nil {
		os.Remove(tmp)
		return "", &maildirError{err}
	}
	if err := safeio.SyncDir(filepath.Join(t.m.dir, "new")); err != nil {
		// The message is in new/, if not yet on disk for sure.
		return "", &maildirError{fmt.Errorf("%w: %w", ErrNoReply, err)}
	}
	return "delivered to maildir as " + name, nil
}

func (t *maildirTxn) write(path string, msg io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	// The envelope, as a local delivery agent records it.
	hdr := "Return-Path: <" + t.from + ">\r\n"
	for _, r := range t.rcpt {
		hdr += "Delivered-To: " + r + "\r\n"
	}
	_, err = io.WriteString(f, hdr)
	if err == nil {
		_, err = io.Copy(f, msg)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
