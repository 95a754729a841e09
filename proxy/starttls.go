package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/metrics"
)

// STARTTLS towards the downstream (downstream_tls).
//
// go-smtp's client starts TLS only in NewClientStartTLS, before the
// caller can give its EHLO name, and only for SMTP, not LMTP. So sclgate
// does it itself: EHLO (LHLO) with go-smtp's client, STARTTLS and its
// answer by hand on the bare connection, the handshake with crypto/tls,
// and then a new go-smtp client over the TLS connection, which says EHLO
// again as RFC 3207 requires (what the downstream said before TLS is
// forgotten). Nothing read before the handshake is used after it: the
// answer to STARTTLS is read a byte at a time, so no plaintext the
// downstream sent after it can be taken for a reply inside TLS
// (CVE-2011-0411's command injection, the other way round).

// tlsPolicy is downstream_tls for one downstream.
type tlsPolicy struct {
	mode       string
	roots      *x509.CertPool // verify: nil is the system's
	serverName string         // the name the certificate must hold (verify) and SNI
}

func newTLSPolicy(d config.Downstream, o DownstreamOptions) tlsPolicy {
	p := tlsPolicy{mode: o.TLSMode, roots: o.RootCAs, serverName: o.ServerName}
	if p.mode == "" {
		p.mode = config.TLSNone
	}
	if p.serverName == "" {
		p.serverName, _, _ = net.SplitHostPort(d.Address)
	}
	return p
}

// config is the TLS client configuration for mode.
func (p tlsPolicy) config(mode string) *tls.Config {
	c := &tls.Config{ServerName: p.serverName}
	if mode == config.TLSVerify {
		c.RootCAs = p.roots
		return c
	}
	// may and encrypt check no certificate (RFC 7435: unauthenticated
	// encryption beats plaintext), and take TLS 1.0 and 1.1 too, as
	// Postfix's opportunistic TLS does: an old mailbox server that
	// speaks nothing newer is still better encrypted than not.
	c.InsecureSkipVerify = true
	c.MinVersion = tls.VersionTLS10
	return c
}

// errStartTLS marks a STARTTLS that failed after the downstream agreed to
// it (the handshake, or the connection lost during the exchange): the
// connection is gone with it.
var errStartTLS = errors.New("STARTTLS failed")

// startTLS starts TLS on dc, which has said EHLO, as mode (may, encrypt or
// verify) says, within ctx. It returns the connection to use from now on, or nil when
// mode is may and the downstream did not offer STARTTLS or refused it:
// dc then goes on in plaintext (RFC 3207 section 4). On error dc is
// closed.
func (d *smtpDownstream) startTLS(ctx context.Context, dc *dsConn, mode string) (*dsConn, error) {
	if ok, _ := dc.c.Extension("STARTTLS"); !ok {
		if mode == config.TLSMay {
			return nil, nil
		}
		d.count(metrics.TLSFailed)
		dc.close()
		return nil, &downstreamError{op: "tls", err: fmt.Errorf("the downstream does not offer STARTTLS (downstream_tls.mode: %s)", mode)}
	}
	failed := func(err error) (*dsConn, error) {
		d.count(metrics.TLSFailed)
		dc.conn.Close()
		return nil, &downstreamError{op: "tls", err: fmt.Errorf("%w: %w", errStartTLS, err)}
	}
	deadline := time.Now().Add(d.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	dc.conn.SetDeadline(deadline)
	if _, err := io.WriteString(dc.conn, "STARTTLS\r\n"); err != nil {
		return failed(err)
	}
	code, text, err := readReply(dc.conn)
	if err != nil {
		return failed(err)
	}
	if code != 220 {
		d.count(metrics.TLSFailed)
		dc.conn.SetDeadline(time.Time{})
		if mode == config.TLSMay {
			d.log.Warn("the downstream refused STARTTLS; going on in plaintext (downstream_tls.mode: may)",
				slog.String("downstream", d.addr), slog.String("reply", strconv.Itoa(code)+" "+text))
			return nil, nil
		}
		dc.close()
		return nil, &downstreamError{op: "tls", err: fmt.Errorf("the downstream answered STARTTLS with %d %s", code, text)}
	}
	tc := tls.Client(dc.conn, d.tls.config(mode))
	if err := tc.HandshakeContext(ctx); err != nil {
		return failed(err)
	}
	dc.conn.SetDeadline(time.Time{})
	d.count(metrics.TLSYes)
	st := tc.ConnectionState()
	d.log.Debug("TLS started with the downstream", slog.String("downstream", d.addr),
		slog.String("version", tls.VersionName(st.Version)), slog.String("cipher", tls.CipherSuiteName(st.CipherSuite)))
	// go-smtp's client begins by reading a greeting, which a server
	// does not send again after STARTTLS: give it one.
	c := d.newClient(&greetedConn{Conn: tc, r: io.MultiReader(strings.NewReader("220 TLS started by sclgate\r\n"), tc)})
	secure := &dsConn{c: c, conn: dc.conn, out: tc, born: dc.born}
	if err := c.Hello(d.hostname); err != nil {
		secure.closeAfter(err)
		return nil, &downstreamError{op: "connect", err: err}
	}
	return secure, nil
}

// greetedConn is a TLS connection whose reads start with a greeting
// sclgate wrote itself.
type greetedConn struct {
	net.Conn
	r io.Reader
}

func (c *greetedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// maxReplyBytes bounds the answer to STARTTLS, which has no reason to be
// more than a line.
const maxReplyBytes = 4096

// readReply reads one SMTP reply, possibly of several lines, from conn a
// byte at a time, so that nothing after it is read: what follows is the
// TLS handshake.
func readReply(conn net.Conn) (int, string, error) {
	var lines []string
	var line []byte
	b := make([]byte, 1)
	for n := 0; n < maxReplyBytes; n++ {
		if _, err := conn.Read(b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, "", err
		}
		if b[0] != '\n' {
			line = append(line, b[0])
			continue
		}
		l := strings.TrimSuffix(string(line), "\r")
		line = line[:0]
		if len(l) < 3 {
			return 0, "", fmt.Errorf("malformed reply line %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil || code < 100 || code > 599 {
			return 0, "", fmt.Errorf("malformed reply line %q", l)
		}
		lines = append(lines, strings.TrimLeft(l[3:], " -"))
		if len(l) == 3 || l[3] == ' ' {
			return code, strings.Join(lines, " "), nil
		}
		if l[3] != '-' {
			return 0, "", fmt.Errorf("malformed reply line %q", l)
		}
	}
	return 0, "", fmt.Errorf("reply longer than %d bytes", maxReplyBytes)
}
