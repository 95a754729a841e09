package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sclgate/sclgate/config"
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
}

// NewDownstream returns the downstream configured as d.
func NewDownstream(d config.Downstream, hostname string, timeout time.Duration) Downstream {
	if d.Scheme == "maildir" {
		return &maildir{dir: d.Address, hostname: hostname}
	}
	return &smtpDownstream{network: d.Network, addr: d.Address, lmtp: d.Scheme == "lmtp", hostname: hostname, timeout: timeout}
}

// smtpDownstream relays to an SMTP or LMTP server with go-smtp's client.
type smtpDownstream struct {
	network, addr string
	lmtp          bool
	hostname      string
	timeout       time.Duration
}

func (d *smtpDownstream) OneRecipient() bool { return d.lmtp }

func (d *smtpDownstream) Begin(ctx context.Context, from string, opts *smtp.MailOptions) (Txn, error) {
	dialer := net.Dialer{Timeout: d.timeout}
	conn, err := dialer.DialContext(ctx, d.network, d.addr)
	if err != nil {
		return nil, &downstreamError{op: "connect", err: err}
	}
	var c *smtp.Client
	if d.lmtp {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = d.timeout
	c.SubmissionTimeout = d.timeout
	t := &smtpTxn{c: c, conn: conn, lmtp: d.lmtp}
	if err := c.Hello(d.hostname); err != nil {
		t.Abort()
		return nil, &downstreamError{op: "connect", err: err}
	}
	if err := c.Mail(from, mailOptions(c, opts)); err != nil {
		t.Abort()
		return nil, &downstreamError{op: "mail", err: err}
	}
	return t, nil
}

// mailOptions passes on the MAIL parameters the downstream understands.
// sclgate receives with 8BITMIME and SMTPUTF8 off unless configured, so
// BODY=8BITMIME is the one that matters; SIZE is recomputed by go-smtp.
func mailOptions(c *smtp.Client, in *smtp.MailOptions) *smtp.MailOptions {
	if in == nil {
		return nil
	}
	out := &smtp.MailOptions{}
	if ok, _ := c.Extension("8BITMIME"); ok && in.Body == smtp.Body8BitMIME {
		out.Body = in.Body
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		out.UTF8 = in.UTF8
	}
	return out
}

type smtpTxn struct {
	c    *smtp.Client
	conn net.Conn
	lmtp bool
	rcpt []string
}

func (t *smtpTxn) Rcpt(ctx context.Context, to string, opts *smtp.RcptOptions) error {
	if err := t.c.Rcpt(to, nil); err != nil {
		return &downstreamError{op: "rcpt", err: err}
	}
	t.rcpt = append(t.rcpt, to)
	return nil
}

func (t *smtpTxn) Data(ctx context.Context, msg io.Reader) (reply string, err error) {
	defer t.quit()
	// go-smtp's client has no deadline while it writes the body: a
	// downstream that stops reading would hold this session for ever.
	// ctx bounds the whole step; past it, cut the connection (any write
	// or read in progress fails, and quit does not wait for a reply).
	stop := context.AfterFunc(ctx, func() { t.conn.Close() })
	defer func() {
		if !stop() && err != nil {
			err = &downstreamError{op: "data", err: errors.Join(ctx.Err(), err)}
		}
	}()
	w, err := t.c.Data()
	if err != nil {
		return "", &downstreamError{op: "data", err: err}
	}
	if _, err := io.Copy(w, msg); err != nil {
		return "", &downstreamError{op: "data", err: err}
	}
	if t.lmtp {
		// One recipient per LMTP transaction (see the package doc): its
		// one answer is the answer.
		resp, err := w.CloseWithLMTPResponse()
		if err != nil {
			return "", &downstreamError{op: "data", err: lmtpFirst(err)}
		}
		for _, r := range resp {
			return r.StatusText, nil
		}
		return "", nil
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", &downstreamError{op: "data", err: err}
	}
	return resp.StatusText, nil
}

func lmtpFirst(err error) error {
	var le smtp.LMTPDataError
	if errors.As(err, &le) {
		for _, e := range le {
			return e
		}
	}
	return err
}

func (t *smtpTxn) quit() {
	// QUIT politely, but never wait long for a downstream that is going away.
	t.c.CommandTimeout = 5 * time.Second
	if err := t.c.Quit(); err != nil {
		t.c.Close()
	}
}

func (t *smtpTxn) Abort() {
	t.c.CommandTimeout = 5 * time.Second
	_ = t.c.Reset()
	t.quit()
}

// downstreamError records which step failed; Unwrap gives the downstream's
// *smtp.SMTPError when it answered, or the network error.
type downstreamError struct {
	op  string
	err error
}

func (e *downstreamError) Error() string { return "downstream " + e.op + ": " + e.err.Error() }
func (e *downstreamError) Unwrap() error { return e.err }

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
			return nil, &downstreamError{op: "connect", err: err}
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

func (t *maildirTxn) Data(ctx context.Context, msg io.Reader) (string, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%d.%s.%s", time.Now().Unix(), hex.EncodeToString(rnd[:]), strings.ReplaceAll(t.m.hostname, "/", "_"))
	tmp := filepath.Join(t.m.dir, "tmp", name)
	if err := t.write(tmp, msg); err != nil {
		os.Remove(tmp)
		return "", &downstreamError{op: "data", err: err}
	}
	if err := os.Rename(tmp, filepath.Join(t.m.dir, "new", name)); err != nil {
		os.Remove(tmp)
		return "", &downstreamError{op: "data", err: err}
	}
	if err := safeio.SyncDir(filepath.Join(t.m.dir, "new")); err != nil {
		return "", &downstreamError{op: "data", err: err}
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
