package proxy

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/metrics"
)

// utf8Message is a message as an SMTPUTF8 sender writes it: UTF-8 in the
// header fields as they are (RFC 6532), no encoded words.
func utf8Message(phrase string) []byte {
	return []byte("From: Jörg <jörg@sender.test>\r\nTo: δοκιμή@example.com\r\nSubject: Grüße\r\nMessage-ID: <utf8@sender.test>\r\n\r\n" + phrase + "\r\n")
}

// SMTPUTF8 (RFC 6531) is offered, and mail with UTF-8 addresses goes
// through to a downstream that offers it too, as it came: addresses,
// header and the SMTPUTF8 parameter.
func TestSMTPUTF8Relayed(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		ds := startDownstreamOn(t, lmtp, nil, func(s *smtp.Server) { s.EnableSMTPUTF8 = true })
		g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "accepted_domains: [example.com, bücher.test]"})
		rc := greeted(t, g.addr)
		if ehlo := strings.Join(rc.cmd("EHLO client.test"), "\n"); !strings.Contains(ehlo, "SMTPUTF8") {
			t.Fatalf("EHLO does not offer SMTPUTF8:\n%s", ehlo)
		}
		rcpts := []string{"δοκιμή@example.com", "Jörg@BÜCHER.test", "ascii@xn--bcher-kva.test"}
		if lmtp {
			rcpts = rcpts[:1] // one recipient per transaction
		}
		rc.expectCode("MAIL FROM:<jörg@sender.test> SMTPUTF8", "250 ")
		for _, r := range rcpts {
			rc.expectCode("RCPT TO:<"+r+">", "250 ")
		}
		if got := rc.data(utf8Message(hamPhrase)); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("lmtp %v: DATA: %s", lmtp, got)
		}
		m := ds.only()
		if m.From != "jörg@sender.test" || !slices.Equal(m.To, rcpts) || !m.UTF8 {
			t.Errorf("lmtp %v: downstream got MAIL <%s> SMTPUTF8=%v, RCPT %q; want the addresses as they came, with SMTPUTF8", lmtp, m.From, m.UTF8, m.To)
		}
		if !strings.Contains(string(m.Data), "with UTF8SMTP id ") || !strings.Contains(string(m.Data), "Subject: Grüße\r\n") {
			t.Errorf("lmtp %v: relayed message lacks the UTF8SMTP Received field or its UTF-8 header:\n%s", lmtp, m.Data)
		}
		rc.cmd("QUIT")
	}
}

// A downstream without SMTPUTF8 (Exchange 2003, for one) still gets what
// it can take: ASCII addresses, and addresses whose only UTF-8 is in the
// domain, which go in A-labels (the same name). An address with a UTF-8
// local part cannot reach it: 553 5.6.7, at RCPT for a recipient (the
// others still go), at MAIL for the sender.
func TestSMTPUTF8DownstreamWithout(t *testing.T) {
	ds := startDownstream(t, false) // go-smtp offers no SMTPUTF8 unless told
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "accepted_domains: [example.com, bücher.test]"})
	rc := ehloed(t, g.addr)
	rc.expectCode("MAIL FROM:<bob@bücher.test> SMTPUTF8", "250 ")
	if got := rc.last("RCPT TO:<δοκιμή@example.com>"); !strings.HasPrefix(got, "553 5.6.7 ") {
		t.Errorf("UTF-8 local part to a downstream without SMTPUTF8: %q, want 553 5.6.7", got)
	}
	rc.expectCode("RCPT TO:<Jörg@xn--bcher-kva.test>", "553 5.6.7 ")
	rc.expectCode("RCPT TO:<carol@BÜCHER.test>", "250 ")
	rc.expectCode("RCPT TO:<dave@example.com>", "250 ")
	if got := rc.data(utf8Message(hamPhrase)); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA: %s", got)
	}
	m := ds.only()
	if m.From != "bob@xn--bcher-kva.test" || !slices.Equal(m.To, []string{"carol@xn--bcher-kva.test", "dave@example.com"}) || m.UTF8 {
		t.Errorf("downstream got MAIL <%s> SMTPUTF8=%v, RCPT %q; want A-labels and no SMTPUTF8", m.From, m.UTF8, m.To)
	}
	wantMetric(t, "relay_failures{smtputf8}", g.m.RelayFailures.WithLabelValues(metrics.FailSMTPUTF8), 2)

	rc.expectCode("MAIL FROM:<jörg@sender.test> SMTPUTF8", "553 5.6.7 ")
	wantMetric(t, "relay_failures{smtputf8}", g.m.RelayFailures.WithLabelValues(metrics.FailSMTPUTF8), 3)
	wantMetric(t, "relay_failures{mail}", g.m.RelayFailures.WithLabelValues(metrics.FailMail), 0)
	wantMetric(t, "relay_failures{rcpt}", g.m.RelayFailures.WithLabelValues(metrics.FailRcpt), 0)
	// The refusal left the connection fit for the next transaction.
	rc.expectCode("MAIL FROM:<alice@sender.test> SMTPUTF8", "250 ")
	rc.expectCode("RCPT TO:<dave@example.com>", "250 ")
	if got := rc.data(utf8Message(hamPhrase)); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA after the refused MAIL: %s", got)
	}
	if _, _, sessions := ds.counts(); sessions != 1 {
		t.Errorf("%d downstream connections, want 1 (reused after the refusal)", sessions)
	}
}

// Without SMTPUTF8 on MAIL, a UTF-8 address gets RFC 6531's 553 5.6.7;
// an internationalised domain in A-labels is plain ASCII. Whether a
// domain is ours is judged in A-labels, whichever way the address or
// accepted_domains spells it.
func TestSMTPUTF8Addresses(t *testing.T) {
	ds := startDownstreamOn(t, false, nil, func(s *smtp.Server) { s.EnableSMTPUTF8 = true })
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "accepted_domains: [xn--bcher-kva.test, παράδειγμα.test]"})
	rc := ehloed(t, g.addr)
	rc.expectCode("MAIL FROM:<alice@sender.test>", "250 ")
	rc.expectCode("RCPT TO:<jörg@xn--bcher-kva.test>", "553 5.6.7 ")
	rc.expectCode("RCPT TO:<bob@bücher.test>", "553 5.6.7 ")
	rc.expectCode("RCPT TO:<bob@XN--BCHER-KVA.test>", "250 ")
	rc.expectCode("RCPT TO:<bob@xn--hxajbheg2az3al.test>", "250 ")
	rc.cmd("RSET")
	wantMetric(t, "refusals{bad_address}", g.m.Rejected.WithLabelValues("bad_address"), 2)

	rc.expectCode("MAIL FROM:<jörg@sender.test>", "553 5.6.7 ")
	rc.expectCode("MAIL FROM:<jörg@sender.test> SMTPUTF8", "250 ")
	rc.expectCode("RCPT TO:<bob@bücher.test>", "250 ")
	rc.expectCode("RCPT TO:<bob@Παράδειγμα.test>", "250 ")
	rc.expectCode("RCPT TO:<bob@bücher.other>", "550 5.7.1 ")     // not ours: relaying
	rc.expectCode("RCPT TO:<bob@bücher。test>", "553 5.1.3 ")      // a dot only to IDNA
	rc.expectCode("RCPT TO:<a\u202eb@bücher.test>", "553 5.1.3 ") // right-to-left override
	rc.expectCode("RCPT TO:<a\xffb@bücher.test>", "553 5.1.3 ")   // not UTF-8
	rc.cmd("RSET")
	// A transaction's SMTPUTF8 ends with it.
	rc.expectCode("MAIL FROM:<alice@sender.test>", "250 ")
	rc.expectCode("RCPT TO:<bob@bücher.test>", "553 5.6.7 ")
}

// Archived by the gateway action, a message keeps its UTF-8 envelope in
// the file's head, which reads back the same.
func TestSMTPUTF8Archived(t *testing.T) {
	ds := startDownstreamOn(t, false, nil, func(s *smtp.Server) { s.EnableSMTPUTF8 = true })
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "filter: {gateway_action: archive}"})
	rc := ehloed(t, g.addr)
	rc.expectCode("MAIL FROM:<jörg@sender.test> SMTPUTF8", "250 ")
	rc.expectCode("RCPT TO:<δοκιμή@example.com>", "250 ")
	if got := rc.data(utf8Message(spamPhrase)); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA: %s", got)
	}
	ds.nothing()
	names := g.archived()
	if len(names) != 1 {
		t.Fatalf("archive holds %q, want one message", names)
	}
	f, err := os.Open(filepath.Join(g.archiveDir, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env, scl, _, err := archive.ReadHead(bufio.NewReader(f))
	if err != nil || env.From != "jörg@sender.test" || !slices.Equal(env.To, []string{"δοκιμή@example.com"}) || scl != 9 {
		t.Errorf("archived head: %+v SCL %d, %v", env, scl, err)
	}
}
