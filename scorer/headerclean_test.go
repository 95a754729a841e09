package scorer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-message/textproto"

	"github.com/sclgate/sclgate/weights"
)

// A header line go-message cannot read (a continuation line on top, a line
// with no colon, a field name with a space or a control byte) hid the whole
// header, or a part and every part after it, from the model and from the
// weight list: the message was scored as its raw body (base64 undecoded,
// no Subject). Readers disagree on such a line: a lenient client skips it
// and decodes the body, Postfix and Python end the header there and show
// the rest of it as text. Both readings are scored: the header goes on
// without the line, and the line with the header lines after it is text
// of its own.
func TestBadHeaderLinesDropped(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte("casino jackpot now")) + "\r\n"
	top := "From: a@b.test\r\nSubject: plussix\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64
	part := func(bad string) string {
		return "From: a@b.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n" +
			"--b\r\n" + bad + "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 +
			"--b\r\nContent-Type: text/html\r\n\r\n<p>second part</p>\r\n--b--\r\nepilogue\r\n"
	}
	const rest = "MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64"
	const partRest = "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64"
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List {
		return list(t, entry("BODY", "MAX", "casino jackpot"), entry("SUBJECT", "6", "plussix"))
	}}
	for name, c := range map[string]struct {
		raw     string
		subject string
		text    []string
		scl     int
		defect  bool
	}{
		"clean":             {top, "plussix", []string{"casino jackpot now"}, 9, false},
		"space line on top": {" x\r\n" + top, "plussix", []string{"casino jackpot now"}, 9, true},
		"tab lines on top":  {"\tx\r\n\ty\r\n" + top, "plussix", []string{"casino jackpot now"}, 9, true},
		"LF line ends":      {strings.ReplaceAll(" x\r\n"+top, "\r\n", "\n"), "plussix", []string{"casino jackpot now"}, 9, true},
		// A stray line among fields.
		"no colon":             {strings.Replace(top, "MIME-Version", "Xgarbage\r\nMIME-Version", 1), "plussix", []string{"Xgarbage\r\n" + rest + "\r\n\ncasino jackpot now"}, 9, true},
		"no colon, continued":  {strings.Replace(top, "MIME-Version", "Xgarbage\r\n Subject: hidden\r\nMIME-Version", 1), "plussix", []string{"Xgarbage\r\n Subject: hidden\r\n" + rest + "\r\n\ncasino jackpot now"}, 9, true},
		"space in name":        {strings.Replace(top, "MIME-Version", "Bad Name: v\r\nMIME-Version", 1), "plussix", []string{"Bad Name: v\r\n" + rest + "\r\n\ncasino jackpot now"}, 9, true},
		"control byte in name": {strings.Replace(top, "MIME-Version", "Bad\x01: v\r\nMIME-Version", 1), "plussix", []string{"Bad\x01: v\r\n" + rest + "\r\n\ncasino jackpot now"}, 9, true},
		"two stray lines":      {strings.Replace(top, "MIME-Version", "junk one\r\njunk two\r\nMIME-Version", 1), "plussix", []string{"junk one\r\njunk two\r\n" + rest + "\r\n\ncasino jackpot now"}, 9, true},
		"no field on top": {"garbage\r\n" + top, "plussix",
			[]string{"garbage\r\nFrom: a@b.test\r\nSubject: plussix\r\n" + rest + "\r\n\ncasino jackpot now"}, 9, true},
		// The stray text itself is scored (Postfix shows it as body),
		// whatever follows it.
		"stray phrase, fields after": {strings.Replace(top, "MIME-Version", "Buy casino jackpot now\r\n and more\r\nX-Pad: 1\r\nMIME-Version", 1), "plussix",
			[]string{"Buy casino jackpot now\r\n and more\r\nX-Pad: 1\r\n" + rest + "\r\n\ncasino jackpot now"}, 9, true},
		// The stray text is read with the body after it, as Postfix
		// shows them: one phrase across the two.
		"stray line joins body": {"From: a@b.test\r\nSubject: s\r\nwin the casino\r\n\r\njackpot now\r\n", "s",
			[]string{"win the casino\r\n\njackpot now"}, 9, true},
		// No blank line between header and body: the body is text.
		"body without blank line": {"From: a@example.com\r\nSubject: plussix\r\nBuy casino jackpot at example.net today\r\nLowest prices\r\n",
			"plussix", []string{"Buy casino jackpot at example.net today\r\nLowest prices"}, 9, true},
		"body without blank line, one line": {"Subject: s\r\ncasino jackpot", "s", []string{"casino jackpot"}, 9, true},
		"part clean":                        {part(""), "s", []string{"casino jackpot now", "second part"}, 9, false},
		"part no colon":                     {part("garbage line\r\n"), "s", []string{"garbage line\r\n" + partRest, "casino jackpot now", "second part"}, 9, true},
		"part space on top":                 {part(" folded\r\n"), "s", []string{"folded\r\n" + partRest, "casino jackpot now", "second part"}, 9, true},
		"part body without blank line": {"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\ncasino jackpot\r\n--b--\r\n",
			"s", []string{"casino jackpot"}, 9, true},
		// A boundary with a colon in it is still a boundary.
		"part body without blank line, colon boundary": {"Subject: s\r\nContent-Type: multipart/mixed; boundary=\"a:b\"\r\n\r\n--a:b\r\nContent-Type: text/plain\r\ncasino jackpot\r\n--a:b\r\nContent-Type: text/plain\r\n\r\nmore\r\n--a:b--\r\n",
			"s", []string{"casino jackpot", "more"}, 9, true},
		"part header unended": {"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n--b\r\nContent-Type: text/plain\r\n\r\ncasino jackpot\r\n--b--\r\n",
			"s", []string{"casino jackpot"}, 9, false},
	} {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(c.raw)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			m := ParseReader(r, []byte(c.raw), int64(len(c.raw)))
			var parts []string
			for _, p := range m.TextParts() {
				if p = strings.TrimSpace(p); p != "" {
					parts = append(parts, p)
				}
			}
			res, err := s.Score(context.Background(), m)
			if err != nil {
				t.Fatal(err)
			}
			hasDefect := slices.ContainsFunc(m.Defects, func(d string) bool {
				return strings.Contains(d, "dropped") || strings.Contains(d, "read as text")
			})
			if m.Subject != c.subject || !slices.Equal(parts, c.text) || res.SCL != c.scl || hasDefect != c.defect {
				t.Errorf("%s (one byte %v): subject %q, text %q, SCL %d, defects %q; want %q, %q, %d, defect %v",
					name, oneByte, m.Subject, parts, res.SCL, m.Defects, c.subject, c.text, c.scl, c.defect)
			}
		}
	}
}

// cleanReader passes what it keeps byte for byte, whatever the read sizes,
// long lines (past its buffer) included.
func TestCleanReaderPassesBytes(t *testing.T) {
	long := "X-Long: " + strings.Repeat("a", 20000) + "\r\n"
	body := strings.Repeat("body line\r\n", 2000)
	for name, c := range map[string]struct{ raw, want, dropped string }{
		// A stray line (and its continuation) among fields: dropped.
		"stray": {long + " cont\r\nbad line\r\n more of it\r\nSubject: s\r\n\r\n" + body, long + " cont\r\nSubject: s\r\n\r\n" + body, "bad line"},
		// A stray line longer than the buffer: out all the same.
		"long stray": {"Subject: s\r\nbad line " + strings.Repeat("b", 20000) + "\r\nSubject: t\r\n\r\n" + body,
			"Subject: s\r\nSubject: t\r\n\r\n" + body, "bad line"},
	} {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(c.raw)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			var dropped []string
			got, err := io.ReadAll(newCleanReader(r, "", func(_ string, l []byte) { dropped = append(dropped, string(l[:8])) }, nil))
			if err != nil || string(got) != c.want || !slices.Equal(dropped, []string{c.dropped}) {
				t.Errorf("%s, one byte %v: %d bytes (want %d), err %v, reported %q", name, oneByte, len(got), len(c.want), err, dropped)
			}
		}
	}
	// In a multipart: only part headers are cleaned; lines in bodies, the
	// preamble and the epilogue are kept whatever they look like.
	mp := "pre amble\r\n--b\r\nbad\r\nContent-Type: text/plain\r\n\r\nbody without colon\r\n--bx\r\nnot a boundary\r\n--b \r\n\r\nempty header\r\n--b--\r\nepi logue\r\n"
	wantMP := "pre amble\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody without colon\r\n--bx\r\nnot a boundary\r\n--b \r\n\r\nempty header\r\n--b--\r\nepi logue\r\n"
	got, err := io.ReadAll(newCleanReader(strings.NewReader(mp), "b", func(string, []byte) {}, nil))
	if err != nil || string(got) != wantMP {
		t.Errorf("multipart: %q, %v", got, err)
	}
}

// cleanReader's output does not depend on how its input is cut into
// reads, and what follows a message's header passes untouched.
func FuzzCleanReader(f *testing.F) {
	f.Add([]byte(" x\r\nSubject: s\r\nbad\r\n cont\r\n\r\nbody\r\n no: colon\r\n"), "")
	f.Add([]byte("pre\r\n--b\r\nbad\r\nA: b\r\n--b\r\n\tx\r\n\r\nbody\r\n--b--\r\n"), "b")
	f.Fuzz(func(t *testing.T, raw []byte, boundary string) {
		whole, err := io.ReadAll(newCleanReader(bytes.NewReader(raw), boundary, func(string, []byte) {}, nil))
		if err != nil {
			t.Fatal(err)
		}
		for _, wrap := range []func(io.Reader) io.Reader{iotest.OneByteReader, iotest.HalfReader, iotest.DataErrReader} {
			got, err := io.ReadAll(newCleanReader(wrap(bytes.NewReader(raw)), boundary, func(string, []byte) {}, nil))
			if err != nil || !bytes.Equal(got, whole) {
				t.Fatalf("cut reads: %q, %v; whole reads %q", got, err, whole)
			}
		}
		if boundary == "" {
			// go-message reads every header it gets.
			if _, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(whole))); err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("header of %q still unreadable: %v", whole, err)
			}
			if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 && !bytes.HasSuffix(whole, raw[i+4:]) {
				t.Fatalf("body changed: %q from %q", whole, raw)
			}
		}
		if len(whole) > len(raw)+2*bytes.Count(raw, []byte("\n"))+2 {
			t.Fatalf("output %d bytes from %d", len(whole), len(raw))
		}
	})
}

// MIME edge cases that hid text clients show: parts nested deeper than
// the old limit of 20 (now Postfix's 100), message/global, a digest's
// parts without Content-Type (messages, RFC 2046), a boundary declared
// with trailing white space, quoted-printable with a raw control byte.
// Past the limits, Overflow says so (the gateway refuses the message).
func TestMIMEEdgesRead(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte("win the casino jackpot now"))
	nest := func(n int, inner string) string {
		for i := range n {
			inner = fmt.Sprintf("Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n%s\r\n--b%d--\r\n", i, i, inner, i)
		}
		return "Subject: s\r\nMIME-Version: 1.0\r\n" + inner
	}
	for name, raw := range map[string]string{
		"22 deep":         nest(22, "Content-Type: text/plain\r\n\r\nwin the casino jackpot now"),
		"message/global":  "Subject: s\r\nContent-Type: message/global\r\n\r\nSubject: t\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + "\r\n",
		"digest":          "Subject: s\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: t\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + "\r\n--d--\r\n",
		"boundary space":  "Subject: s\r\nContent-Type: multipart/mixed; boundary=\"abc \"\r\n\r\n--abc\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + "\r\n--abc--\r\n",
		"qp control byte": "Subject: s\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nhello\x01\r\nwin the casino jackpot now\r\n",
	} {
		m := Parse([]byte(raw))
		if !strings.Contains(m.Text, "casino jackpot") || m.Overflow != "" {
			t.Errorf("%s: text %q, defects %q, overflow %q", name, m.Text, m.Defects, m.Overflow)
		}
	}
	if m := Parse([]byte(nest(MaxDepth+2, "Content-Type: text/plain\r\n\r\nx"))); !strings.Contains(m.Overflow, "nesting") {
		t.Errorf("too deep: overflow %q", m.Overflow)
	}
	many := "Subject: s\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n" + strings.Repeat("--z\r\nContent-Type: text/plain\r\n\r\nhi\r\n", MaxParts) + "--z\r\n\r\nlast\r\n--z--\r\n"
	if m := Parse([]byte(many)); !strings.Contains(m.Overflow, "parts") {
		t.Errorf("too many parts: overflow %q", m.Overflow)
	}
}

// HTML as a mail client shows it (scripts off): <noscript> content is
// text, <template> content is not, NUL bytes are dropped, and HTML5 block
// elements end a line.
func TestHTMLAsShown(t *testing.T) {
	for in, want := range map[string]string{
		// CSS inside an SVG style is not text (it glued onto the next word
		// when read as markup).
		"<p>win the <svg width=0 height=0><style>z</style></svg>casino jackpot now</p>": "win the casino jackpot now",
		"<noscript>win the casino jackpot now</noscript>":                               "win the casino jackpot now",
		"win the cas<template>zq</template>ino jackpot now":                             "win the casino jackpot now",
		"win the cas\x00ino jackpot now":                                                "win the casino jackpot now",
		"casino<aside>jackpot</aside>":                                                  "casino\njackpot\n",
		"<style>p{color:red}</style>win":                                                "win",
		"<script>x='casino jackpot'</script>win":                                        "win",
	} {
		if got, _, _ := htmlToText(in); strings.Join(strings.Fields(got), " ") != strings.Join(strings.Fields(want), " ") {
			t.Errorf("htmlToText(%q) = %q, want %q", in, got, want)
		}
	}
}

// Stray header lines join only the message's own single-part body: an
// attached message's stray lines, or the message's own when its body is a
// multipart, are text of their own, so they make no phrase with text no
// reader shows next to them (an attached message's Subject, a sibling
// part), whatever the read sizes.
func TestStrayLinesJoinNothingElse(t *testing.T) {
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List { return list(t, entry("BODY", "MAX", "casino jackpot")) }}
	for name, raw := range map[string]string{
		"outer stray, attached subject": "Subject: s\r\nvisit our casino\r\nContent-Type: message/rfc822\r\n\r\nSubject: jackpot now\r\n\r\nhello\r\n",
		"inner stray, sibling part": "Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" +
			"Subject: t\r\nContent-Type: image/png\r\nour casino\r\n\r\nxx\r\n--b\r\nContent-Type: text/plain\r\n\r\njackpot now\r\n--b--\r\n",
		"outer stray, later part's stray": "Subject: s\r\nwin the casino\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n" +
			"--b\r\nContent-Type: text/plain\r\njackpot now\r\n\r\nsecond\r\n--b--\r\n",
	} {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(raw)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			m := ParseReader(r, []byte(raw), int64(len(raw)))
			if res, _ := s.Score(context.Background(), m); res.SCL != 0 {
				t.Errorf("%s (one byte %v): SCL %d, parts %q", name, oneByte, res.SCL, m.TextParts())
			}
		}
	}
}

// An attached message's stray header lines join its own single-part body,
// as Python shows it, at the top of a message or inside a multipart; a
// self-closed <style/> in HTML (a start tag there) hides nothing after
// its end tag.
func TestStrayLinesJoinAttachedBody(t *testing.T) {
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List { return list(t, entry("BODY", "MAX", "casino jackpot")) }}
	inner := "From: a@b.test\r\nwin the casino\r\n\r\njackpot now\r\n"
	for name, raw := range map[string]string{
		"attached":              "Subject: s\r\nContent-Type: message/rfc822\r\n\r\n" + inner,
		"attached in multipart": "Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "--b--\r\n",
		"self-closed style":     "Subject: s\r\nContent-Type: text/html\r\n\r\n<style/><script></style><p>win the casino jackpot now</p>\r\n",
		"self-closed svg style": "Subject: s\r\nContent-Type: text/html\r\n\r\n<svg width=0 height=0><style/></svg><p>win the <b>casino</b> jackpot now</p>\r\n",
		"stray math end tag":    "Subject: s\r\nContent-Type: text/html\r\n\r\n<svg></math><style/></svg><p>win the casino jackpot now</p>\r\n",
		"stray svg end tag":     "Subject: s\r\nContent-Type: text/html\r\n\r\n<svg><foreignObject><b></svg></b></foreignObject><style/><p>win the casino jackpot</p>\r\n",
	} {
		m := Parse([]byte(raw))
		if res, _ := s.Score(context.Background(), m); res.SCL != 9 {
			t.Errorf("%s: SCL %d, parts %q", name, res.SCL, m.TextParts())
		}
	}
}

// A Content-Type that does not parse comes back raw from go-message, case
// and all: "MULTIPART/mixed" with a repeated parameter is still a
// multipart, whose first part the header's stray lines do not join.
func TestStrayLinesUpperCaseMultipart(t *testing.T) {
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List { return list(t, entry("BODY", "MAX", "casino jackpot")) }}
	raw := "Subject: s\r\nContent-Type: MULTIPART/mixed; boundary=b; boundary=c\r\nwin the casino\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\njackpot now\r\n--b--\r\n"
	m := Parse([]byte(raw))
	if res, _ := s.Score(context.Background(), m); res.SCL != 0 {
		t.Errorf("SCL %d, parts %q", res.SCL, m.TextParts())
	}
}
