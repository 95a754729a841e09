package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sclgate/sclgate/internal/syncbuf"
	"github.com/sclgate/sclgate/internal/testcert"
	"github.com/sclgate/sclgate/metrics"
)

// tlsDownstream starts a recording downstream that offers STARTTLS with
// cert.
func tlsDownstream(t *testing.T, lmtp bool, cert *testcert.Server) *fakeDownstream {
	t.Helper()
	return startDownstreamOn(t, lmtp, nil, func(s *smtp.Server) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
	})
}

// relayOne sends one message through g and wants it relayed.
func relayOne(t *testing.T, g *testGateway, ds *fakeDownstream) {
	t.Helper()
	rc := ehloed(t, g.addr)
	if reply := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("tls", hamPhrase)); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("reply %q, want 250", reply)
	}
	rc.c.Close()
	ds.waitIdle()
}

// tlsCounts returns the downstream's MAIL commands, those over TLS, and
// the EHLO names they came with.
func (ds *fakeDownstream) tlsCounts() (mails, tlsMails int, helos []string) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return len(ds.mails), ds.tlsMails, append([]string(nil), ds.helos...)
}

// wantConnections checks sclgate_downstream_connections_total.
func wantConnections(t *testing.T, g *testGateway, yes, no, failed float64) {
	t.Helper()
	wantMetric(t, "downstream_connections{yes}", g.m.DownstreamConnections.WithLabelValues(metrics.TLSYes), yes)
	wantMetric(t, "downstream_connections{no}", g.m.DownstreamConnections.WithLabelValues(metrics.TLSNo), no)
	wantMetric(t, "downstream_connections{failed}", g.m.DownstreamConnections.WithLabelValues(metrics.TLSFailed), failed)
}

func TestDownstreamTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	self := testcert.SelfSigned(t, "ds.test", "127.0.0.1")

	// The default, may: TLS when offered, whatever the certificate, over
	// SMTP and LMTP, with the gateway's EHLO name said again inside TLS.
	for _, lmtp := range []bool{false, true} {
		name := map[bool]string{false: "may_smtp", true: "may_lmtp"}[lmtp]
		t.Run(name, func(t *testing.T) {
			ds := tlsDownstream(t, lmtp, self)
			g := startGateway(t, gwSetup{Downstream: ds.URL()})
			relayOne(t, g, ds)
			mails, tlsMails, helos := ds.tlsCounts()
			if mails != 1 || tlsMails != 1 {
				t.Errorf("downstream got %d MAIL commands, %d over TLS; want 1 and 1", mails, tlsMails)
			}
			if len(helos) != 1 || helos[0] != "gw.test" {
				t.Errorf("EHLO names at MAIL %q, want gw.test", helos)
			}
			ds.only()
			wantConnections(t, g, 1, 0, 0)
		})
	}

	t.Run("may_not_offered", func(t *testing.T) {
		ds := startDownstream(t, false)
		g := startGateway(t, gwSetup{Downstream: ds.URL()})
		relayOne(t, g, ds)
		if _, tlsMails, _ := ds.tlsCounts(); tlsMails != 0 {
			t.Errorf("%d MAIL commands over TLS, want 0", tlsMails)
		}
		wantConnections(t, g, 0, 1, 0)
	})

	t.Run("none", func(t *testing.T) {
		ds := tlsDownstream(t, false, self)
		g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "downstream_tls: {mode: none}"})
		relayOne(t, g, ds)
		if _, tlsMails, _ := ds.tlsCounts(); tlsMails != 0 {
			t.Errorf("%d MAIL commands over TLS, want 0", tlsMails)
		}
		wantConnections(t, g, 0, 1, 0)
	})

	// A downstream that offers STARTTLS and then refuses it (here go-smtp
	// without a certificate, whose EHLO is made to offer it: 502): may
	// goes on in plaintext on the same connection.
	t.Run("may_refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ds := startDownstreamOn(t, false, offerSTARTTLS{ln})
		var logs syncbuf.Buffer
		g := startGateway(t, gwSetup{Downstream: ds.URL(), Log: slog.New(slog.NewTextHandler(&logs, nil))})
		relayOne(t, g, ds)
		if mails, tlsMails, _ := ds.tlsCounts(); mails != 1 || tlsMails != 0 {
			t.Errorf("downstream got %d MAIL commands, %d over TLS; want 1 and 0", mails, tlsMails)
		}
		if _, _, sessions := ds.counts(); sessions != 1 {
			t.Errorf("%d downstream sessions, want 1 (plaintext on the refused connection)", sessions)
		}
		wantConnections(t, g, 0, 1, 1)
		if !strings.Contains(logs.String(), "the downstream refused STARTTLS; going on in plaintext") || !strings.Contains(logs.String(), "502") {
			t.Errorf("log %q: want the refusal and its reply", logs.String())
		}
	})

	// A handshake that fails takes the connection with it: may goes on
	// in plaintext over a new one, and says so.
	t.Run("may_handshake_fails", func(t *testing.T) {
		ds := failingTLSDownstream(t)
		var logs syncbuf.Buffer
		g := startGateway(t, gwSetup{Downstream: ds.URL(), Log: slog.New(slog.NewTextHandler(&logs, nil))})
		relayOne(t, g, ds)
		if mails, tlsMails, _ := ds.tlsCounts(); mails != 1 || tlsMails != 0 {
			t.Errorf("downstream got %d MAIL commands, %d over TLS; want 1 and 0", mails, tlsMails)
		}
		ds.only()
		wantConnections(t, g, 0, 1, 1)
		if !strings.Contains(logs.String(), "STARTTLS with the downstream failed; going on in plaintext over a new connection") {
			t.Errorf("log %q: want the failed handshake", logs.String())
		}
	})

	// A handshake that hangs (the downstream agrees, then says nothing)
	// leaves may half the time for plaintext: the message goes.
	t.Run("may_handshake_hangs", func(t *testing.T) {
		ds := stallingTLSDownstream(t)
		var logs syncbuf.Buffer
		g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {downstream_timeout: 2s}", Log: slog.New(slog.NewTextHandler(&logs, nil))})
		relayOne(t, g, ds)
		if mails, tlsMails, _ := ds.tlsCounts(); mails != 1 || tlsMails != 0 {
			t.Errorf("downstream got %d MAIL commands, %d over TLS; want 1 and 0", mails, tlsMails)
		}
		wantConnections(t, g, 0, 1, 1)
		if !strings.Contains(logs.String(), "STARTTLS with the downstream failed; going on in plaintext over a new connection") {
			t.Errorf("log %q: want the failed handshake", logs.String())
		}
	})

	// Required TLS that does not happen defers the message, at MAIL,
	// before the client has sent it; it is about sclgate's hop, never
	// a 5xx.
	for _, c := range []struct {
		name, yaml string
		ds         func(t *testing.T) *fakeDownstream
		roots      bool // trust the test CA
		logWants   string
	}{
		{"encrypt_not_offered", "downstream_tls: {mode: encrypt}", func(t *testing.T) *fakeDownstream { return startDownstream(t, false) }, false,
			"the downstream does not offer STARTTLS (downstream_tls.mode: encrypt)"},
		{"encrypt_handshake_fails", "downstream_tls: {mode: encrypt}", failingTLSDownstream, false, "STARTTLS failed"},
		{"encrypt_handshake_hangs", "downstream_tls: {mode: encrypt}", stallingTLSDownstream, false, "STARTTLS failed"},
		{"verify_unknown_authority", "downstream_tls: {mode: verify}", func(t *testing.T) *fakeDownstream { return tlsDownstream(t, false, self) }, true,
			"certificate signed by unknown authority"},
		{"verify_other_name", "downstream_tls: {mode: verify}", func(t *testing.T) *fakeDownstream {
			return tlsDownstream(t, false, ca.Issue(t, "mailbox.test"))
		}, true, "cannot validate certificate for 127.0.0.1"},
		{"verify_server_name_other", "downstream_tls: {mode: verify, server_name: other.test}", func(t *testing.T) *fakeDownstream {
			return tlsDownstream(t, false, ca.Issue(t, "mailbox.test"))
		}, true, "not other.test"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ds := c.ds(t)
			var logs syncbuf.Buffer
			s := gwSetup{Downstream: ds.URL(), YAML: c.yaml, Log: slog.New(slog.NewTextHandler(&logs, nil))}
			if c.roots {
				s.RootCAs = ca.Pool
			}
			g := startGateway(t, s)
			rc := ehloed(t, g.addr)
			rc.expect("MAIL FROM:<alice@example.org>", "451 4.4.1 Downstream server unavailable, try again later")
			rc.c.Close()
			ds.nothing()
			if mails, _, _ := ds.tlsCounts(); mails != 0 {
				t.Errorf("downstream got %d MAIL commands, want 0", mails)
			}
			wantMetric(t, "relay_failures{tls}", g.m.RelayFailures.WithLabelValues(metrics.FailTLS), 1)
			wantMetric(t, "relay_failures{connect}", g.m.RelayFailures.WithLabelValues(metrics.FailConnect), 0)
			wantConnections(t, g, 0, 0, 1)
			if l := logs.String(); !strings.Contains(l, "TLS with the downstream failed; message deferred") || !strings.Contains(l, c.logWants) {
				t.Errorf("log %q: want the deferral and %q", l, c.logWants)
			}
		})
	}

	// Required TLS that works: a certificate not checked (encrypt), one
	// that verifies against the CA for the downstream's address, and one
	// for the name server_name gives.
	for _, c := range []struct {
		name, yaml string
		cert       *testcert.Server
	}{
		{"encrypt", "downstream_tls: {mode: encrypt}", self},
		{"verify", "downstream_tls: {mode: verify}", ca.Issue(t, "127.0.0.1")},
		{"verify_server_name", "downstream_tls: {mode: verify, server_name: mailbox.test}", ca.Issue(t, "mailbox.test")},
	} {
		t.Run(c.name, func(t *testing.T) {
			ds := tlsDownstream(t, false, c.cert)
			g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: c.yaml, RootCAs: ca.Pool})
			relayOne(t, g, ds)
			if mails, tlsMails, _ := ds.tlsCounts(); mails != 1 || tlsMails != 1 {
				t.Errorf("downstream got %d MAIL commands, %d over TLS; want 1 and 1", mails, tlsMails)
			}
			wantConnections(t, g, 1, 0, 0)
		})
	}

	// A TLS connection is kept for the next message like any other.
	t.Run("reuse", func(t *testing.T) {
		ds := tlsDownstream(t, false, self)
		g := startGateway(t, gwSetup{Downstream: ds.URL()})
		relayOne(t, g, ds)
		relayOne(t, g, ds)
		if mails, tlsMails, _ := ds.tlsCounts(); mails != 2 || tlsMails != 2 {
			t.Errorf("downstream got %d MAIL commands, %d over TLS; want 2 and 2", mails, tlsMails)
		}
		wantConnections(t, g, 1, 0, 0)
	})
}

// failingTLSDownstream offers STARTTLS, agrees to it and then fails the
// handshake.
func failingTLSDownstream(t *testing.T) *fakeDownstream {
	return startDownstreamOn(t, false, nil, func(s *smtp.Server) {
		s.TLSConfig = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return nil, errors.New("no certificate today")
		}}
	})
}

// stallingTLSDownstream offers STARTTLS, agrees to it and then never
// answers the handshake (until the test ends).
func stallingTLSDownstream(t *testing.T) *fakeDownstream {
	stop := make(chan struct{})
	ds := startDownstreamOn(t, false, nil, func(s *smtp.Server) {
		s.TLSConfig = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			<-stop
			return nil, errors.New("stopped")
		}}
	})
	t.Cleanup(func() { close(stop) }) // before the downstream's own cleanup
	return ds
}

// offerSTARTTLS makes a go-smtp server without a certificate offer
// STARTTLS in its EHLO reply (it refuses the command itself with 502).
type offerSTARTTLS struct{ net.Listener }

func (l offerSTARTTLS) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return offerConn{c}, nil
}

type offerConn struct{ net.Conn }

func (c offerConn) Write(p []byte) (int, error) {
	q := bytes.Replace(p, []byte("250-PIPELINING\r\n"), []byte("250-STARTTLS\r\n250-PIPELINING\r\n"), 1)
	if _, err := c.Conn.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}
