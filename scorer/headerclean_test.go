package scorer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
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
// no Subject), while mail clients skip the line. Each is now dropped, with
// a defect, and the rest read as clients read it.
func TestBadHeaderLinesDropped(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte("casino jackpot now")) + "\r\n"
	top := "From: a@b.test\r\nSubject: plussix\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64
	part := func(bad string) string {
		return "From: a@b.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n" +
			"--b\r\n" + bad + "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 +
			"--b\r\nContent-Type: text/html\r\n\r\n<p>second part</p>\r\n--b--\r\nepilogue\r\n"
	}
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
		// A stray line among fields, fields after it up to the blank
		// line: skipped, as lenient clients do.
		"no colon":             {strings.Replace(top, "MIME-Version", "Xgarbage\r\nMIME-Version", 1), "plussix", []string{"casino jackpot now"}, 9, true},
		"no colon, continued":  {strings.Replace(top, "MIME-Version", "Xgarbage\r\n Subject: hidden\r\nMIME-Version", 1), "plussix", []string{"casino jackpot now"}, 9, true},
		"space in name":        {strings.Replace(top, "MIME-Version", "Bad Name: v\r\nMIME-Version", 1), "plussix", []string{"casino jackpot now"}, 9, true},
		"control byte in name": {strings.Replace(top, "MIME-Version", "Bad\x01: v\r\nMIME-Version", 1), "plussix", []string{"casino jackpot now"}, 9, true},
		"no field on top":      {"garbage\r\n" + top, "plussix", []string{"casino jackpot now"}, 9, true},
		"LF line ends":         {strings.ReplaceAll(" x\r\n"+top, "\r\n", "\n"), "plussix", []string{"casino jackpot now"}, 9, true},
		// No blank line between header and body: the body starts at the
		// first line that is no field, as Postfix and Python read it;
		// it was dropped line by line, and the body hidden.
		"body without blank line": {"From: a@example.com\r\nSubject: plussix\r\nBuy casino jackpot at example.net today\r\nLowest prices\r\n",
			"plussix", []string{"Buy casino jackpot at example.net today\r\nLowest prices"}, 9, true},
		"body without blank line, one line": {"Subject: s\r\ncasino jackpot", "s", []string{"casino jackpot"}, 9, true},
		// A stray line followed by a line that is no field either: the
		// header ends at the first (nothing is hidden; the base64 stays
		// text, as Postfix passes it on).
		"two stray lines": {strings.Replace(top, "MIME-Version", "junk one\r\njunk two\r\nMIME-Version", 1), "plussix",
			[]string{"junk one\r\njunk two\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nY2FzaW5vIGphY2twb3Qgbm93"}, 6, true},
		"part clean":        {part(""), "s", []string{"casino jackpot now", "second part"}, 9, false},
		"part no colon":     {part("garbage line\r\n"), "s", []string{"casino jackpot now", "second part"}, 9, true},
		"part space on top": {part(" folded\r\n"), "s", []string{"casino jackpot now", "second part"}, 9, true},
		"part body without blank line": {"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\ncasino jackpot\r\n--b--\r\n",
			"s", []string{"casino jackpot"}, 9, true},
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
				return strings.Contains(d, "dropped") || strings.Contains(d, "header ended")
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
		// A line too long to look past: the header ends there.
		"long stray": {"Subject: s\r\nbad line " + strings.Repeat("b", 20000) + "\r\nSubject: t\r\n\r\n" + body,
			"Subject: s\r\n\r\nbad line " + strings.Repeat("b", 20000) + "\r\nSubject: t\r\n\r\n" + body, "bad line"},
	} {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(c.raw)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			var dropped []string
			got, err := io.ReadAll(newCleanReader(r, "", func(_ string, l []byte) { dropped = append(dropped, string(l[:8])) }))
			if err != nil || string(got) != c.want || !slices.Equal(dropped, []string{c.dropped}) {
				t.Errorf("%s, one byte %v: %d bytes (want %d), err %v, reported %q", name, oneByte, len(got), len(c.want), err, dropped)
			}
		}
	}
	// In a multipart: only part headers are cleaned; lines in bodies, the
	// preamble and the epilogue are kept whatever they look like.
	mp := "pre amble\r\n--b\r\nbad\r\nContent-Type: text/plain\r\n\r\nbody without colon\r\n--bx\r\nnot a boundary\r\n--b \r\n\r\nempty header\r\n--b--\r\nepi logue\r\n"
	wantMP := "pre amble\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody without colon\r\n--bx\r\nnot a boundary\r\n--b \r\n\r\nempty header\r\n--b--\r\nepi logue\r\n"
	got, err := io.ReadAll(newCleanReader(strings.NewReader(mp), "b", func(string, []byte) {}))
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
		whole, err := io.ReadAll(newCleanReader(bytes.NewReader(raw), boundary, func(string, []byte) {}))
		if err != nil {
			t.Fatal(err)
		}
		for _, wrap := range []func(io.Reader) io.Reader{iotest.OneByteReader, iotest.HalfReader, iotest.DataErrReader} {
			got, err := io.ReadAll(newCleanReader(wrap(bytes.NewReader(raw)), boundary, func(string, []byte) {}))
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
