package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/metrics"
	"github.com/sclgate/sclgate/scorer"
)

// SMTP replies sclgate gives of its own. Internal failures never show their
// detail to the client: that goes to the log.
var (
	errRelayDenied    = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied"}
	errBadAddress     = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Address not accepted"}
	errNestedMail     = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Nested MAIL command: a transaction is in progress (RSET first)"}
	errNonASCII       = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address not accepted without SMTPUTF8 (RFC 6531) on MAIL"}
	errRejectedSpam   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message rejected as spam by content filtering"}
	errOneRecipient   = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "One recipient per transaction here, send the others again"}
	errTooManyRcpts   = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients, send the others again"}
	errDownstream     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "Downstream server unavailable, try again later"}
	errDownstreamMid  = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection to downstream server lost, try again later"}
	errDownstreamSlow = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Downstream server did not answer in time, try again later"}
	errInternal       = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal server error, try again later"}
	errMaildir        = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local delivery failed, try again later"}
	errArchive        = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	errFilter         = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Content filter temporarily unavailable, try again later"}
	errDataTimeout    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout reading message data, try again later"}
	errLineTooLong    = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 6}, Message: "Line too long: the limit is " + strconv.Itoa(MaxLineLength-2) + " octets, line end not counted"}
	errShuttingDown   = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	errTooManyErrors  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many errors, closing connection"}
	errAuthBad        = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed"}
	errLineEnds       = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Message refused: bare CR, bare LF or NUL in data (lines must end in CRLF)"}
	errHeaderTooBig   = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message header too large"}
	errClosing        = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection closing"}
)

// session is one SMTP connection after EHLO.
type session struct {
	srv  *Server
	conn *smtp.Conn
	// netConn is conn's connection as it was at EHLO, TLS or not: it does
	// not change while the session lives (STARTTLS ends a session), and,
	// unlike conn.Conn(), it may be read from other goroutines (Shutdown).
	netConn net.Conn
	log     *slog.Logger
	remote  netip.Addr
	trusted bool   // client address in trusted_networks
	user    string // authenticated user, "" if none
	// errors counts refusals since the last delivered message, and
	// authFails failed AUTH commands in the whole session (a delivery
	// does not buy more guesses), both against limits.max_errors. Atomic:
	// under BDAT, go-smtp runs Data in a goroutine of its own while
	// commands are still answered.
	errors    atomic.Int32
	authFails atomic.Int32
	// reason: the refusals-metric reason of the refusal the command in
	// progress gives, until counted counts it (see refuse). A mutex:
	// Data may run on go-smtp's BDAT goroutine.
	reasonMu sync.Mutex
	reason   string
	deferred int // recipients of this transaction told to come again (452), not counted as refusals
	// gone: the session is ending (see hangUp); badHelo: the client's
	// latest HELO/EHLO name has control characters (a first one is refused
	// by NewSession; go-smtp takes later ones without asking).
	gone, badHelo atomic.Bool
	// dataSem (capacity 1) is held while MAIL, RCPT or DATA uses the
	// downstream transaction: under BDAT, go-smtp calls Reset (RSET, a
	// failed chunk) or Logout (disconnect) from another goroutine while
	// Data still runs, and they must not end the downstream transaction
	// under its feet. A channel, not a mutex: Logout waits for it with a
	// bound, and then leaves the end of the transaction to whoever holds
	// it (loggedOut).
	dataSem   chan struct{}
	loggedOut atomic.Bool
	// raw is the plaintext connection, for checks on the bytes before
	// go-smtp's DATA reader changes them; nil under TLS.
	raw *limitConn
	lc  *limitConn // the client connection under TLS or not (BDAT timeouts)

	// The transaction: set at MAIL, cleared by Reset.
	inTxn  atomic.Bool
	id     string
	p      *Policy
	scorer *scorer.Scorer // p's, with the weight list in force at MAIL
	from   string
	utf8   bool // MAIL said SMTPUTF8
	rcpts  []string
	recv   string // the transaction's Received field, made once (received)
	ds     Txn
}

// unfiltered reports whether this session's mail is relayed without
// scoring: authenticated or trusted clients, unless filter_authenticated.
func (s *session) unfiltered() bool {
	return (s.user != "" || s.trusted) && !s.p.Config.Filter.FilterAuthenticated
}

func (s *session) AuthMechanisms() []string {
	if len(s.srv.policy.Load().Config.Auth.Users) == 0 {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	users := s.srv.policy.Load().Config.Auth.Users
	check := func(user, pass string) error {
		defer s.own()
		if s.over() {
			return errTooManyErrors
		}
		if err := checkPassword(users, user, pass); err != nil {
			s.log.Warn("auth failed", slog.String("user", user))
			s.refuse(metrics.RefuseAuthFailed)
			// A refusal like any other for limits.max_errors: password
			// guessing in one session ends with 421 and a close.
			s.authFails.Add(1)
			return s.counted(errAuthBad, "auth")
		}
		s.user = user
		s.log = s.log.With(slog.String("user", user))
		s.log.Info("authenticated")
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return errAuthBad
			}
			return check(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{auth: check}, nil
	}
	return nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Unsupported authentication mechanism"}
}

// counted passes err (a refusal) through, and past limits.max_errors
// refusals since the session last delivered a message (Postfix's
// smtpd_hard_error_limit counts so too) answers 421 and ends the
// session: a client that keeps getting refusals is probing (recipients,
// relay tricks), not sending mail.
func (s *session) counted(err error, step string) error {
	s.reasonMu.Lock()
	reason := s.reason
	s.reason = ""
	s.reasonMu.Unlock()
	err = s.countError(err, step)
	if reason != "" && err != errTooManyErrors {
		// Counted as the reply it is: replaced by the 421 of
		// limits.max_errors, it is that refusal, counted there.
		s.srv.metrics.Rejected.WithLabelValues(reason).Inc()
	}
	return err
}

// refuse notes the reason (a label of sclgate_smtp_refusals_total) of
// the refusal the command in progress answers with; counted counts it.
func (s *session) refuse(reason string) {
	s.reasonMu.Lock()
	s.reason = reason
	s.reasonMu.Unlock()
}

// countError is counted's work: the error count, and the 421 past the
// limit.
func (s *session) countError(err error, step string) error {
	var se *smtp.SMTPError
	if err == nil || !errors.As(err, &se) || se.Code < 400 || se.Code == 421 {
		return err
	}
	if step == "rcpt" && se.Code == 452 {
		// "Too many recipients" (LMTP's one recipient per transaction,
		// limits.max_recipients, or the downstream's own limit) or "no
		// storage for now": how a message to many recipients goes
		// through (the client sends the rest again, RFC 5321 section
		// 4.5.3.1.10), not a refusal, up to max_recipients of them per
		// transaction (past that, a client is only making noise).
		if s.deferred++; s.deferred <= s.srv.policy.Load().Config.Limits.MaxRecipients {
			return err
		}
	}
	n := s.errors.Add(1)
	if !s.over() {
		return err
	}
	s.log.Warn("too many errors; disconnecting", slog.Int("errors", int(n)), slog.Int("auth_failures", int(s.authFails.Load())))
	s.srv.metrics.Rejected.WithLabelValues(metrics.RefuseTooManyErrors).Inc()
	// go-smtp writes the 421 as soon as we return; the connection goes
	// right after it, as the 421 announces.
	s.hangUp()
	return errTooManyErrors
}

// countProtocolError counts an error reply go-smtp gave on its own (see
// limitConn.Write) as a refusal, and reports whether the session is now
// over limits.max_errors: the reply is then followed by the 421 and the
// close.
func (s *session) countProtocolError() bool {
	n := s.errors.Add(1)
	if s.gone.Load() || !s.over() {
		return false
	}
	s.gone.Store(true)
	s.log.Warn("too many errors; disconnecting", slog.Int("errors", int(n)), slog.Int("auth_failures", int(s.authFails.Load())))
	s.srv.metrics.Rejected.WithLabelValues(metrics.RefuseTooManyErrors).Inc()
	return true
}

// own marks the reply go-smtp writes next as the session's answer, which
// counted itself (see limitConn.Write). Deferred by each command the
// session answers.
func (s *session) own() {
	if s.raw != nil {
		s.raw.ownReply.Store(true)
	}
}

// hangUp ends the session after the reply to the command in progress:
// the connection is closed as soon as that reply is written, and until
// then no command starts a transaction (go-smtp may already hold more of
// what the client sent). After a timeout inside DATA or BDAT, the rest of
// the message is still on its way, and read as commands it would be SMTP
// smuggling: a slow relay's message body, made to carry "MAIL FROM",
// would be run as a second, spoofed transaction.
func (s *session) hangUp() {
	s.gone.Store(true)
	if s.lc != nil {
		s.lc.hangUp.Store(true)
		return
	}
	conn := s.conn.Conn() // not through limitConn (tests): a moment later
	time.AfterFunc(200*time.Millisecond, func() { conn.Close() })
}

// over reports whether this session has had its limits.max_errors: its
// connection is closing, and commands a client pipelined behind the one
// that reached the limit get the same 421, not run, nor counted again.
func (s *session) over() bool {
	max := int32(s.srv.policy.Load().Config.Limits.MaxErrors)
	return s.errors.Load() >= max || s.authFails.Load() >= max
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	defer s.own()
	if s.over() {
		return errTooManyErrors
	}
	if s.gone.Load() {
		return errClosing
	}
	if s.badHelo.Load() {
		s.refuse(metrics.RefuseBadHelo)
		return s.counted(errBadHelo, "mail")
	}
	s.hold()
	defer s.unhold()
	return s.counted(s.mail(from, opts), "mail")
}

// hold takes dataSem; unhold gives it back, first ending the downstream
// transaction if the session was logged out meanwhile.
func (s *session) hold() { s.dataSem <- struct{}{} }
func (s *session) unhold() {
	if s.loggedOut.Load() && s.ds != nil {
		s.ds.Abort()
		s.ds = nil
	}
	<-s.dataSem
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	defer s.own()
	if s.over() {
		return errTooManyErrors
	}
	if s.gone.Load() {
		return errClosing
	}
	s.hold()
	defer s.unhold()
	return s.counted(s.rcpt(to, opts), "rcpt")
}

func (s *session) Data(r io.Reader) (err error) {
	defer func() {
		// Only a result go-smtp writes is the session's reply. A stale
		// BDAT transfer's (errStaleData) is dropped: marked, it would
		// take the next reply go-smtp gives on its own for the
		// session's, uncounted (a size refusal, an error toward
		// max_errors), and a client could replay that at will.
		if err != errStaleData {
			s.own()
		}
	}()
	pipe, _ := r.(*io.PipeReader) // BDAT: go-smtp feeds the chunks through a pipe
	var epoch uint64
	if pipe != nil && s.lc != nil {
		// From the first chunk on (go-smtp may be waiting for its first
		// byte under command_timeout): a deadline that cuts it is a
		// data timeout, a 451 (limitConn.Read).
		epoch = s.lc.beginChunks()
	}
	if pipe != nil {
		// go-smtp runs a BDAT transfer in a goroutine of its own, started
		// at the first chunk, which may come to run only after the
		// transaction was reset (BDAT 0, RSET) and a new one begun. Its
		// pipe then says so at once: such a transfer must not wait for,
		// nor touch, the transaction in progress, and ends here at once
		// (go-smtp would otherwise take its late answer for the next
		// transfer's, whose own then never gets read).
		var b [1]byte
		n, err := pipe.Read(b[:])
		if errors.Is(err, smtp.ErrDataReset) {
			if s.lc != nil && s.lc.hangUp.Load() {
				// Reset because a deadline cut the chunk before its first
				// byte (limitConn.Read): a data timeout. (The mark stays:
				// the session is ending, and its Reset clears it.)
				s.log.Warn("reading message", slog.String("err", "timeout before the first byte of a BDAT chunk"))
				s.srv.metrics.Rejected.WithLabelValues(metrics.RefuseDataTimeout).Inc()
			} else if s.lc != nil {
				// A transfer reset before it ran (BDAT 0, RSET): its
				// count taken back, unless a Reset took it already.
				s.lc.staleChunks(epoch)
			}
			return errStaleData
		}
		if n > 0 {
			r = io.MultiReader(bytes.NewReader(b[:n]), pipe)
		}
	}
	if s.over() {
		io.Copy(io.Discard, r) // go-smtp wants the data read
		return errTooManyErrors
	}
	if s.gone.Load() {
		return errClosing
	}
	err = s.data(r, pipe)
	if se := (*smtp.SMTPError)(nil); err == nil || errors.As(err, &se) && se.Code == 250 {
		s.errors.Store(0) // delivered (relayed, archived or deleted by the gateway action)
	}
	if err == errStaleData {
		return err // not a refusal
	}
	return s.counted(err, "data")
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	if s.srv.isClosing() {
		return errShuttingDown
	}
	if s.inTxn.Load() {
		// go-smtp passes a second MAIL on; taken, it would start a new
		// downstream transaction while this one's recipients stay listed
		// (RFC 5321 section 4.1.4: MAIL only when none is in progress).
		return errNestedMail
	}
	s.p = s.srv.policy.Load()
	// So is trusted_networks: a network taken out of it (a host found
	// compromised) must not go on relaying, unfiltered, over a session it
	// opened before the reload.
	s.trusted = inPrefixes(s.remote, s.p.Config.Trusted)
	// The weight list too is the one in force now: a reload or an edit
	// of the list during the transaction applies from the next one.
	s.scorer = s.p.Scorer.Pinned()
	s.id, s.recv = newID(), ""
	s.utf8 = opts != nil && opts.UTF8
	if from != "" && !validAddress(from, s.utf8) {
		return s.addressError(from)
	}
	s.from = from
	s.deferred = 0
	if s.lc != nil {
		s.lc.forced.Store(false)
	}
	s.inTxn.Store(true)

	ctx, cancel := deadline(s.p.Config.Limits.DownstreamTimeout)
	defer cancel()
	ds, err := s.p.Downstream.Begin(ctx, from, opts)
	if err != nil {
		s.inTxn.Store(false)
		if s.srv.isClosing() {
			// Shutdown took this session for busy while Begin waited:
			// nothing will end it now but this.
			conn := s.conn.Conn()
			time.AfterFunc(200*time.Millisecond, func() { conn.Close() })
		}
		if errors.Is(err, errNoSMTPUTF8) {
			return s.needsSMTPUTF8("mail", from)
		}
		return s.downstreamFailed("mail", err)
	}
	s.ds = ds
	ds.KeepAlive() // until the next RCPT, DATA or RSET
	return nil
}

func (s *session) rcpt(to string, opts *smtp.RcptOptions) error {
	if !validRecipient(to, s.utf8) {
		return s.addressError(to)
	}
	if !s.trusted && s.user == "" && !s.acceptedDomain(to) {
		s.log.Info("relaying denied", slog.String("from", s.from), slog.String("rcpt", to))
		s.refuse(metrics.RefuseRelayDenied)
		return errRelayDenied
	}
	if s.p.Downstream.OneRecipient() && len(s.rcpts) > 0 {
		return errOneRecipient
	}
	if len(s.rcpts) >= s.p.Config.Limits.MaxRecipients {
		return errTooManyRcpts
	}
	ctx, cancel := deadline(s.p.Config.Limits.DownstreamTimeout)
	defer cancel()
	err := s.ds.Rcpt(ctx, to, opts)
	s.ds.KeepAlive() // until the next RCPT, DATA or RSET
	if err != nil {
		if errors.Is(err, errNoSMTPUTF8) {
			return s.needsSMTPUTF8("rcpt", to)
		}
		return s.downstreamFailed("rcpt", err)
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) acceptedDomain(addr string) bool {
	domain := domainKey(addr)
	for _, d := range s.p.Config.AcceptedDomains {
		if domain == d {
			return true
		}
	}
	return false
}

func (s *session) data(r io.Reader, pipe *io.PipeReader) error {
	// Where the message starts in the raw stream: go-smtp has read the
	// DATA line and no more (limitConn.Read hands out a line at a time).
	var start int64
	if s.raw != nil {
		start = s.raw.pos.Load()
	}
	s.hold()
	defer s.unhold()
	if !s.inTxn.Load() || s.p == nil {
		// A BDAT chunk's transfer that go-smtp started just before a
		// pipelined RSET (or a failed chunk) reset the transaction: it
		// belongs to no transaction now. Not a refusal, nothing to count.
		io.Copy(io.Discard, r)
		return errStaleData
	}
	cfg := s.p.Config
	if s.lc != nil {
		// Until Reset: go-smtp may still read (and discard) the rest of
		// the data after this returns, with the deadline set here.
		s.lc.inData.Store(true)
		// A DATA message: no BDAT transfer is open (one's mark, set at
		// Data, stays until Reset).
		if pipe == nil {
			s.lc.endChunks()
		}
	}
	// go-smtp sets its read deadline per command line and not again during
	// DATA: readData keeps it, from the whole-DATA deadline and the
	// minimum data rate.
	clock := newDataClock(cfg.Limits, time.Now())
	conn := s.conn.Conn()
	// The downstream hears NOOPs while the message comes in and is
	// scored, until it is relayed or its transaction ends otherwise.
	stopKeepAlive := func() {}
	if s.ds != nil {
		stopKeepAlive = s.ds.KeepAlive()
	}
	defer stopKeepAlive()

	// The message goes through the line-end filter into the spool as it
	// arrives: nothing with bare line ends or NUL reaches the classifier,
	// the archive or the downstream, and a large message sits on disk,
	// not in memory.
	sp := &spool{headCap: cfg.Limits.MaxHeaderBytes + 1, memCap: spoolMem}
	sp.head = getHead()
	defer sp.Close()
	filter := dataFilter{normalizeLF: cfg.SMTP.BareLF == config.BareLFNormalize}
	setDeadline := func(n int) { conn.SetReadDeadline(clock.next(n, time.Now())) }
	var timedOut atomic.Bool
	stop := func() {}
	if pr := pipe; pr != nil {
		// BDAT: go-smtp copies each chunk from the connection into this
		// pipe in its own goroutine, and turns a read error there into
		// its permanent 554 with the error's text, and resets the read
		// deadline between chunks. So the same clock runs a timer here
		// instead: when it fires, the pipe is closed, and go-smtp answers
		// the chunk in progress, or the next, with the error given.
		var t *time.Timer
		setDeadline = func(n int) {
			dl := clock.next(n, time.Now())
			// The socket's deadline too, which go-smtp set from
			// command_timeout when it read the BDAT line: a chunk's reads
			// are bound by this clock, as DATA's are, not cut at
			// command_timeout (go-smtp sets its own again at the next
			// command line; the wait between chunks is bounded by the
			// timer below either way). A second past the clock, so that
			// the timer, which says why, cuts first.
			conn.SetReadDeadline(dl.Add(time.Second))
			d := time.Until(dl)
			if t == nil {
				t = time.AfterFunc(d, func() {
					timedOut.Store(true)
					// The chunk's unread bytes must not be read as
					// commands: the read cut below ends the session after
					// go-smtp's answer to it (limitConn.Read), and no
					// transaction starts meanwhile.
					s.gone.Store(true)
					// Waiting for the next chunk: the next BDAT is answered
					// with this. Inside a chunk: the read is cut now.
					pr.CloseWithError(errDataTimeout)
					if s.lc != nil {
						s.lc.forced.Store(true)
						conn.SetReadDeadline(time.Now())
					}
				})
			} else {
				t.Reset(d)
			}
		}
		stop = func() {
			if t != nil {
				t.Stop()
			}
		}
	}
	// Taken before reading: under BDAT, go-smtp resets the transaction
	// (Reset) as soon as it has answered a failed chunk, while this
	// goroutine may still be on its way out.
	log := s.log.With(slog.String("id", s.id), slog.String("from", s.from), slog.Any("rcpt", s.rcpts))
	err := readData(r, &filter, sp, setDeadline)
	stop() // read: what follows (scoring, relay) has its own deadlines
	if err != nil && (timedOut.Load() ||
		errors.Is(err, smtp.ErrDataReset) && s.lc != nil && s.lc.hangUp.Load()) {
		// The clock ran out, or a deadline cut the chunk's read
		// (limitConn.Read), after which go-smtp resets the transfer.
		err = os.ErrDeadlineExceeded
	}
	// DATA only: go-smtp hands BDAT chunks over as they came, where the
	// line-end filter sees a bare CR itself.
	if err == nil && pipe == nil && s.raw != nil && s.raw.dotCRAt.Load() > start {
		err = errBareCR // a ".\r" line whose CR go-smtp swallowed
	}
	log = log.With(slog.Int64("size", sp.Size()))
	var se *smtp.SMTPError
	switch {
	case err == nil:
	case errors.Is(err, errBareCR), errors.Is(err, errBareLF), errors.Is(err, errNUL):
		log.Warn("refused: " + err.Error() + " in data (SMTP smuggling protection)")
		s.refuse(metrics.RefuseBareLineEnd)
		return errLineEnds
	case errors.As(err, &se): // 552 message too big, from go-smtp
		s.refuse(metrics.RefuseSize)
		return se
	case errors.Is(err, smtp.ErrTooLongLine):
		// Permanent: the same message would fail again. The stream can
		// no longer be followed (the rest of that line, and of the
		// message, would be read as commands), so the connection is
		// closed right after this reply; go-smtp would otherwise add an
		// unasked "500 5.4.0 Too long line", which a pipelining client
		// takes for the answer to its next command.
		log.Warn("refused: line too long in data", slog.Int("limit", MaxLineLength-2))
		s.refuse(metrics.RefuseLineLength)
		if pipe == nil {
			s.hangUp()
		}
		return errLineTooLong
	case errors.Is(err, errSpool):
		log.Error("spooling the message failed; deferred", slog.Any("err", err))
		return errInternal
	case errors.Is(err, smtp.ErrDataReset):
		// RSET (or a failed chunk) under a BDAT transfer: go-smtp has
		// answered already; not a refusal.
		return errStaleData
	default:
		// A timeout or a dropped connection: the client gets no 250, so
		// it still has the message.
		log.Warn("reading message", slog.Any("err", err))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.refuse(metrics.RefuseDataTimeout)
		}
		// Where the message would have ended is not known: what the
		// client sends next is not commands. 451, then the connection
		// is closed (under BDAT, limitConn.Read arranged it, on the
		// goroutine that writes go-smtp's answer).
		if pipe == nil {
			s.hangUp()
		}
		return errDataTimeout
	}
	raw := sp.head
	if headerSize(raw) > cfg.Limits.MaxHeaderBytes {
		log.Warn("refused: header too large", slog.Int("limit", cfg.Limits.MaxHeaderBytes))
		s.refuse(metrics.RefuseHeaderSize)
		return errHeaderTooBig
	}

	v, err := s.verdict(sp)
	stopKeepAlive()
	if le := (*mimeLimitsError)(nil); errors.As(err, &le) {
		log.Warn("message refused: MIME structure past the limits", slog.String("why", le.why))
		s.refuse(metrics.RefuseMIMELimits)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: " + le.why}
	}
	if err != nil {
		log.Error("content filter failed; message deferred", slog.Any("err", err))
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailClassifier).Inc()
		return errFilter
	}
	log = log.With(slog.Int("scl", v.scl))
	f := cfg.Filter

	if v.scored && v.scl >= f.GatewayThreshold {
		acted := s.srv.metrics.ActedUpon.WithLabelValues(f.GatewayAction)
		switch f.GatewayAction {
		case config.ActionArchive:
			return s.archive(log, sp, v, acted)
		case config.ActionDelete:
			acted.Inc()
			log.Info("deleted by gateway action", slog.String("report", v.report))
			// The archive action's words, with the id the log has, so
			// that the sender's log can be matched to ours (go-smtp's
			// bare "OK: queued" said queued for a dropped message).
			return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: accepted as " + s.id}
		case config.ActionReject:
			acted.Inc()
			log.Info("rejected by gateway action", slog.String("report", v.report))
			return errRejectedSpam
		}
		// ActionNone: relay as usual, and count it once the downstream
		// took it, as archive counts once the file is written.
		err := s.relay(log, sp, v)
		if se, ok := err.(*smtp.SMTPError); ok && se.Code == 250 {
			acted.Inc()
		}
		return err
	}
	return s.relay(log, sp, v)
}

// spoolMem is how much of a message (header included) is kept in memory;
// the rest goes to a temporary file. Most mail fits, and is never written
// to disk.
const spoolMem = 256 << 10

var errSpool = errors.New("spool")

// errStaleData answers a BDAT transfer whose transaction was reset under
// it; go-smtp has answered the client already and drops this. A 4xx, in
// case go-smtp ever gives it to the client for another transfer: then
// the client sends again rather than bounce the message.
var errStaleData = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Transaction was reset, send the message again"}

// readBufPool holds readData's buffers: one per message in flight, not one
// per message received.
var readBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readData copies the DATA stream through the filter into the spool.
// Before each read it calls deadline with the bytes the last one brought.
func readData(r io.Reader, f *dataFilter, sp *spool, deadline func(n int)) error {
	bp := readBufPool.Get().(*[]byte)
	defer readBufPool.Put(bp)
	// go-smtp's reader fills the whole buffer before it returns: in small
	// pieces, so the data-rate deadline is kept up to date.
	buf := (*bp)[:4096]
	n := 0
	for {
		deadline(n)
		var err error
		n, err = r.Read(buf)
		if n > 0 {
			if ferr := f.write(sp, buf[:n]); ferr != nil {
				if errors.Is(ferr, errBareCR) || errors.Is(ferr, errBareLF) || errors.Is(ferr, errNUL) || errors.Is(ferr, smtp.ErrTooLongLine) {
					return ferr // go-smtp discards the rest of the data
				}
				return fmt.Errorf("%w: %v", errSpool, ferr)
			}
		}
		if err == io.EOF {
			return f.close()
		}
		if err != nil {
			return err
		}
	}
}

// dataClock is the read deadline inside DATA, after Postfix's
// smtpd_min_data_rate: the client starts with data_block_timeout of
// credit; every read spends the time it took and earns
// bytes/min_data_rate seconds, never more than data_block_timeout in hand;
// and data_timeout bounds the whole. A slow but steady sender (at or above
// the rate) is never cut off before data_timeout; a slowloris that trickles
// a byte now and then is cut off once its credit is gone, at most about
// data_block_timeout after it fell behind.
type dataClock struct {
	rate   float64 // bytes per second; 0: no rate, only the two timeouts
	block  time.Duration
	end    time.Time // start + data_timeout
	credit time.Duration
	last   time.Time
}

func newDataClock(l config.Limits, now time.Time) *dataClock {
	return &dataClock{rate: float64(l.MinDataRate), block: l.DataBlockTimeout, end: now.Add(l.DataTimeout), credit: l.DataBlockTimeout, last: now}
}

// next accounts for a read of n bytes that ended now and returns the
// deadline for the next one.
func (c *dataClock) next(n int, now time.Time) time.Time {
	if c.rate > 0 {
		c.credit -= now.Sub(c.last)
		c.credit += time.Duration(float64(n) / c.rate * float64(time.Second))
		c.credit = min(c.credit, c.block)
	} else {
		c.credit = c.block // no rate: a block timeout per read
	}
	c.last = now
	d := now.Add(c.credit)
	if d.After(c.end) {
		d = c.end
	}
	return d
}

// mimeLimitsError: the message's MIME structure went past the parser's
// limits (scorer.Message.Overflow), so part of it would go unscored.
type mimeLimitsError struct{ why string }

func (e *mimeLimitsError) Error() string { return e.why }

// verdict is a message's SCL and how it got it.
type verdict struct {
	scl    int
	scored bool // false: relayed unfiltered (trusted), scl is -1
	report string
}

func (s *session) verdict(sp *spool) (verdict, error) {
	if s.unfiltered() {
		s.srv.metrics.SCL.WithLabelValues("-1").Inc()
		why := "unfiltered: client in trusted_networks"
		if s.user != "" {
			why = "unfiltered: authenticated client"
		}
		return verdict{scl: -1, report: why}, nil
	}
	// External engines are told who connected and the envelope: their
	// checks on the client need it. The built-in model does not look, so
	// its per-message path does not build it.
	ctx := context.Background()
	if c := s.scorer.Classifier; c != nil && c.Name() != "builtin" && c.Name() != "none" {
		ctx = scorer.WithEnvelope(ctx, &scorer.Envelope{
			ClientIP: s.remote,
			Helo:     sanitizeHelo(s.conn.Hostname()),
			MailFrom: s.from,
			Rcpts:    s.rcpts,
			QueueID:  s.id,
			Received: s.received(),
		})
	}
	start := time.Now()
	var (
		m      *scorer.Message
		early  *scorer.Early
		queued time.Duration // waiting for a slot: not scanning time
	)
	if sp.Spooled() {
		// External engines get the start of a large message as scan
		// sends it (EngineMaxSize, cut at a line end), not just what
		// the spool keeps in memory.
		var head []byte
		if s.scorer.HasEngine() {
			// An external engine reads only that start: it is asked
			// before a slot is taken, since its answer is a network
			// wait (up to classifier_timeout), and a slow or dead
			// engine must not queue large messages behind each other
			// two at a time. (For the built-in model the start is read
			// in the slot: messages waiting for one hold no more.)
			var err error
			if head, err = sp.Prefix(scorer.EngineMaxSize); err != nil {
				return verdict{}, fmt.Errorf("reading the spool: %w", err)
			}
			early = s.scorer.Early(ctx, head)
		}
		t := time.Now()
		s.srv.bigScans <- struct{}{}
		defer func() { <-s.srv.bigScans }()
		queued = time.Since(t)
		if head == nil {
			var err error
			if head, err = sp.Prefix(scorer.EngineMaxSize); err != nil {
				return verdict{}, fmt.Errorf("reading the spool: %w", err)
			}
		}
		m = scorer.ParseReader(sp.Reader(), head, sp.Size())
	} else {
		m = scorer.Parse(sp.head)
	}
	if m.Overflow != "" {
		return verdict{}, &mimeLimitsError{m.Overflow}
	}
	r, err := s.scorer.ScoreEarly(ctx, m, early)
	if err != nil {
		return verdict{}, err
	}
	s.srv.metrics.ScanDuration.Observe((time.Since(start) - queued).Seconds())
	s.srv.metrics.Scanned.Inc()
	s.srv.metrics.SCL.WithLabelValues(strconv.Itoa(r.SCL)).Inc()
	return verdict{scl: r.SCL, scored: true, report: boundedReport(r)}, nil
}

// boundedReport is r's report cut so that its X-SCL-Report field, folded
// and encoded as sent, holds at most reportWireMax bytes: non-ASCII rule
// texts grow up to four times in RFC 2047 words, so a cut by text length
// alone let a report of non-ASCII phrases reach 3 KB.
func boundedReport(r scorer.Result) string {
	n := reportMax
	rep := r.Report(n)
	for len(foldHeader("X-SCL-Report", rep)) > reportWireMax && n > 100 {
		n -= n / 8
		rep = r.Report(n)
	}
	return rep
}

func (s *session) archive(log *slog.Logger, sp *spool, v verdict, acted prometheus.Counter) error {
	a := s.p.Archive
	if a == nil {
		log.Error("archive action without an archive store")
		return errArchive
	}
	// Our Received field on top, as on relayed mail: archiving is taking
	// the message in (RFC 5321 section 4.4), and it keeps the client's
	// address and HELO name with the message for whoever reviews or
	// releases it. It also means the message's own first line can never
	// pass for an archive head line (archive.ErrAmbiguous).
	// The report goes into the archive head with the SCL (when
	// archive.store_scl keeps it): what decided the SCL then, for show
	// and the web page, whatever the weight list and the definitions
	// say by the time someone looks.
	env := archive.Envelope{From: s.from, To: s.rcpts}
	id, err := a.WriteReport(env, v.scl, v.report, io.MultiReader(strings.NewReader(s.received()+"\r\n"), sp.Reader()))
	if err != nil {
		log.Error("archive write failed; message deferred", slog.Any("err", err))
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailArchive).Inc()
		return errArchive
	}
	s.srv.metrics.Archived.Inc()
	acted.Inc()
	log.Info("archived by gateway action", slog.String("archive_id", id))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: accepted as " + s.id}
}

func (s *session) relay(log *slog.Logger, sp *spool, v verdict) error {
	cfg := s.p.Config
	fields := []string{s.received()}
	// Unfiltered mail gets a report too, saying why it was not scored:
	// the mailbox side then never has to guess why X-SCL is -1.
	fields = append(fields, "X-SCL: "+strconv.Itoa(v.scl), foldHeader("X-SCL-Report", v.report))
	if v.scored && v.scl > cfg.Filter.StoreThreshold {
		fields = append(fields, "X-Spam-Flag: YES")
	}
	if cfg.Filter.ExchangeSCLHeader {
		fields = append(fields, "X-MS-Exchange-Organization-SCL: "+strconv.Itoa(v.scl))
	}
	ctx, cancel := deadline(cfg.Limits.DownstreamTimeout)
	defer cancel()
	reply, err := s.ds.Data(ctx, io.MultiReader(stamp(sp.head, fields), sp.Rest()))
	s.ds = nil // Data ends the downstream transaction, success or not
	if err != nil {
		log.Warn("relay failed", slog.Any("err", err))
		return s.downstreamFailed("data", err)
	}
	s.srv.metrics.Relayed.Inc()
	log.Info("relayed", slog.String("downstream", reply), slog.String("report", v.report))
	msg := "OK: queued as " + s.id
	if reply != "" {
		msg += " (downstream: " + truncate(reply, 200) + ")"
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: msg}
}

// downstreamFailed maps a downstream failure to the client's answer: the
// downstream's own SMTP answer as it is, or a 451 for anything else.
func (s *session) downstreamFailed(step string, err error) error {
	var se *smtp.SMTPError
	if de := (*downstreamError)(nil); errors.As(err, &de) && de.op == "tls" {
		// downstream_tls says encrypt or verify, and TLS did not start
		// (not offered, refused, a certificate that does not verify):
		// about sclgate's hop, not the sender, so deferred and logged
		// as a refused greeting is. A may-mode failure never gets here:
		// it goes on in plaintext.
		s.log.Warn("TLS with the downstream failed; message deferred", slog.String("step", step), slog.String("id", s.id), slog.Any("err", err))
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailTLS).Inc()
		return errDownstream
	}
	if de := (*downstreamError)(nil); errors.As(err, &de) && de.op == "connect" && errors.As(err, &se) {
		// The downstream refused sclgate itself, by its greeting or its
		// answer to EHLO (a 554 "no service", a HELO or client
		// restriction), before anything of the client's reached it.
		// That answer is about sclgate, not the sender: passed on, a 5xx
		// would bounce every message. So it is what it is, the
		// downstream unavailable, as Postfix's before-queue proxy makes
		// its own 451 of a refused greeting (smtpd_proxy.c).
		s.log.Warn("downstream refused sclgate's connection; message deferred", slog.String("step", step), slog.String("id", s.id), slog.Any("err", err))
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailConnect).Inc()
		return errDownstream
	}
	if errors.As(err, &se) && (se.Code < 400 || se.Code > 599) {
		// A success where a failure was expected: the connection is out
		// of step (a reply to an earlier command read late). Never pass
		// it on: the client would take it for its 250. A code past 599
		// is no SMTP reply at all (RFC 5321 section 4.2).
		s.log.Error("downstream out of step; message deferred", slog.String("step", step), slog.String("id", s.id), slog.Any("err", err))
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailNetwork).Inc()
		if step == "mail" {
			return errDownstream
		}
		return errDownstreamMid
	}
	if errors.As(err, &se) && se.Code == 530 {
		// 530: the downstream wants STARTTLS or AUTH first (RFC 3207,
		// 4954): sclgate does not authenticate to it, and uses TLS only
		// as downstream_tls says (a Postfix with
		// smtpd_tls_security_level = encrypt answers MAIL so when
		// sclgate has mode none). About sclgate again, not the sender:
		// deferred and logged, as a refused greeting is, rather than
		// bounce every message.
		s.log.Warn("downstream refused sclgate's session with 530: it wants STARTTLS (see downstream_tls.mode) or AUTH (which sclgate does not do) first; message deferred",
			slog.String("step", step), slog.String("id", s.id), slog.Any("err", err))
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailConnect).Inc()
		return errDownstream
	}
	if errors.As(err, &se) {
		reason := map[string]string{"mail": metrics.FailMail, "rcpt": metrics.FailRcpt}[step]
		if reason == "" {
			reason = metrics.FailData
		}
		s.srv.metrics.RelayFailures.WithLabelValues(reason).Inc()
		if se.Code == 421 {
			// The downstream closing its connection is not this session
			// ending: passed on as it is, the client would read a 421 as
			// sclgate closing, yet be answered afterwards.
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
				Message: "Downstream closed the connection, try again later (downstream: 421 " + truncate(se.Message, 200) + ")"}
		}
		return se
	}
	s.log.Warn("downstream failed", slog.String("step", step), slog.String("id", s.id), slog.Any("err", err))
	if me := (*maildirError)(nil); errors.As(err, &me) {
		// Disk full, permissions: a local problem, not a lost connection
		// (the detail is in the log).
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailMaildir).Inc()
		return errMaildir
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailTimeout).Inc()
		if step != "mail" {
			return errDownstreamSlow
		}
	case errors.Is(err, syscall.ECONNREFUSED) || step == "mail":
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailConnect).Inc()
		return errDownstream
	default:
		s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailNetwork).Inc()
	}
	if step == "mail" {
		return errDownstream
	}
	return errDownstreamMid
}

// needsSMTPUTF8 logs, counts and returns the refusal of addr, which is
// in UTF-8 and cannot reach a downstream without SMTPUTF8. The downstream
// never saw the address, so its log does not show the refusal: it is
// logged here.
func (s *session) needsSMTPUTF8(step, addr string) error {
	s.log.Info("address refused: it needs SMTPUTF8, which the downstream does not offer", slog.String("step", step), slog.String("id", s.id), slog.String("addr", addr))
	s.srv.metrics.RelayFailures.WithLabelValues(metrics.FailSMTPUTF8).Inc()
	return errNoSMTPUTF8
}

// Reset ends the transaction. go-smtp calls it after DATA's answer is
// written, on RSET, and at the end of the session.
func (s *session) Reset() {
	// A BDAT transfer still running (go-smtp has closed its pipe, so it
	// ends soon) finishes first.
	s.dataSem <- struct{}{}
	defer func() { <-s.dataSem }()
	if s.lc != nil {
		s.lc.inData.Store(false)
		s.lc.endChunks()
	}
	// go-smtp resets the session for a new HELO/EHLO too, after taking
	// its name: refused, as NewSession refuses a first one, at MAIL.
	s.badHelo.Store(hasControl(s.conn.Hostname()))
	if s.ds != nil {
		s.ds.Abort()
		s.ds = nil
	}
	s.from, s.utf8, s.rcpts, s.p, s.recv = "", false, nil, nil, ""
	wasTxn := s.inTxn.Swap(false)
	if s.srv.isClosing() {
		// Shutting down: the answer to the last transaction is out, so
		// this session is done, and says so (RFC 5321 section 3.8) when
		// a transaction just ended (not after QUIT's 221).
		c := s.conn.Conn()
		if wasTxn {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, "421 4.3.2 "+Hostname(s.srv.policy.Load().Config)+" Service shutting down, try again later\r\n")
		}
		c.Close()
	}
}

func (s *session) Logout() error {
	select {
	case s.dataSem <- struct{}{}:
	default:
		// A message still in hand (go-smtp's Server.Close after the
		// shutdown grace calls this from another goroutine, before it
		// closes the connection): close the connection, so that a read
		// in progress fails now, not at data_timeout, and give data a
		// moment to finish. One still relaying past that ends its
		// downstream transaction itself; the shutdown does not wait for
		// it (the client, cut off, sends the message again).
		s.netConn.Close()
		select {
		case s.dataSem <- struct{}{}:
		case <-time.After(logoutWait):
			s.loggedOut.Store(true) // the holder ends the transaction
			s.srv.endSession(s)
			return nil
		}
	}
	defer func() { <-s.dataSem }()
	if s.ds != nil {
		s.ds.Abort()
		s.ds = nil
	}
	s.srv.endSession(s)
	return nil
}

// received is our Received trace field (RFC 5321 section 4.4), made
// once per transaction: an external classifier is given it, and then the
// relayed or archived message carries the same field, timestamp and all.
func (s *session) received() string {
	if s.recv == "" {
		s.recv = s.makeReceived()
	}
	return s.recv
}

func (s *session) makeReceived() string {
	_, tls := s.conn.TLSConnectionState()
	with := "ESMTP"
	switch {
	case s.utf8:
		// RFC 6531 section 4.3: UTF8SMTP, UTF8SMTPS, UTF8SMTPA,
		// UTF8SMTPSA (also after HELO, where go-smtp, as Postfix,
		// takes SMTPUTF8 on MAIL).
		with = "UTF8SMTP"
	case !tls && s.raw != nil && s.raw.helo.Load():
		with = "SMTP" // greeted with HELO (RFC 5321 section 4.4)
	}
	if tls {
		with += "S"
	}
	if s.user != "" {
		with += "A"
	}
	// The address as RFC 5321's address-literal (section 4.1.3): an IPv6
	// one tagged so, as Postfix writes it and parsers of the field expect.
	lit := s.remote.Unmap().String()
	if s.remote.Unmap().Is6() {
		lit = "IPv6:" + lit
	}
	f := "Received: from " + sanitizeHelo(s.conn.Hostname()) + " ([" + lit + "])\r\n\tby " +
		Hostname(s.p.Config) + " (sclgate) with " + with + " id " + s.id
	if len(s.rcpts) == 1 {
		f += "\r\n\tfor <" + s.rcpts[0] + ">"
	}
	return f + "; " + time.Now().Format(time.RFC1123Z)
}

// addressError counts and returns the refusal of an address validAddress
// refused: RFC 6531's 553 5.6.7 for one in UTF-8 in a transaction whose
// MAIL did not say SMTPUTF8, else 553 5.1.3.
func (s *session) addressError(a string) error {
	s.refuse(metrics.RefuseBadAddress)
	err := errBadAddress
	if !s.utf8 && !allASCII(a) {
		err = errNonASCII
	}
	s.log.Info("address refused", slog.String("id", s.id), slog.String("addr", a), slog.String("reply", err.Error()))
	return err
}

func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) { // not inside a UTF-8 sequence
		n--
	}
	return s[:n]
}

// logoutWait is how long Logout waits for a message in hand to finish.
const logoutWait = time.Second
