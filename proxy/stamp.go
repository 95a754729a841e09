package proxy

import (
	"bytes"
	"io"
	"mime"
	"strings"
	"unicode/utf8"
)

// reportMax bounds X-SCL-Report: a message matching thousands of weight
// entries must not grow a header the downstream refuses.
const reportMax = 900

// reportWireMax bounds the X-SCL-Report field as sent (folded, with its
// non-ASCII encoded), line ends included.
const reportWireMax = 1000

// verdictFields are header fields only sclgate may set. Any copy that
// arrived from outside is removed before ours are added, so nobody can
// pre-set their own verdict (X-MS-Exchange-Organization-SCL: -1 would
// otherwise walk past an Exchange server's own junk filter), nor claim
// that the help desk released the message (X-SCL-Released).
var verdictFields = []string{"x-scl", "x-scl-report", "x-spam-flag", "x-ms-exchange-organization-scl", "x-scl-released"}

// stamp returns raw with fields (each "Name: value", folded, without the
// final CRLF) put on top and every verdict field from outside removed.
func stamp(raw []byte, fields []string) io.Reader {
	return Restamp(raw, fields, "\r\n", IsVerdictField)
}

// Restamp returns raw with fields (each "Name: value", folded, without a
// line end) put on top, each ended by eol, and every header field for
// whose name (lower case) drop is true removed, its folded lines included.
// Continuation lines before the header's first field (RFC 5322 has none
// there) are removed too: under fields put on top they would become part
// of the last of them, letting a sender write into X-SCL-Report; the
// scorer skips them too (as mail clients do). All other bytes go out
// exactly as they came in; the body is not copied.
// The gateway stamps relayed mail with it, and "archive release" stamps
// released mail.
func Restamp(raw []byte, fields []string, eol string, drop func(name string) bool) io.Reader {
	var top bytes.Buffer
	for _, f := range fields {
		top.WriteString(f)
		top.WriteString(eol)
	}
	parts := []io.Reader{&top}

	keepFrom, dropping := 0, false
	pos := 0 // ends at the blank line ending the header, or at len(raw)
	for pos < len(raw) && (raw[pos] == ' ' || raw[pos] == '\t') {
		// Lines belonging to no field (a blank-looking one too: it would
		// otherwise end the header).
		end := bytes.IndexByte(raw[pos:], '\n')
		if end < 0 {
			pos = len(raw)
			break
		}
		pos += end + 1
	}
	keepFrom = pos
	for pos < len(raw) {
		end := bytes.IndexByte(raw[pos:], '\n')
		if end < 0 {
			end = len(raw)
		} else {
			end += pos + 1
		}
		line := raw[pos:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // end of header
		}
		if line[0] != ' ' && line[0] != '\t' {
			// A new field: does it start a run to drop or to keep?
			d := false
			if name, ok := fieldName(raw[pos:]); ok {
				d = drop(strings.ToLower(name))
			}
			if d != dropping {
				if d {
					parts = append(parts, bytes.NewReader(raw[keepFrom:pos]))
				} else {
					keepFrom = pos
				}
				dropping = d
			}
		}
		pos = end
	}
	if !dropping {
		parts = append(parts, bytes.NewReader(raw[keepFrom:]))
	} else {
		// The header ended (or the message did) inside a dropped field.
		parts = append(parts, bytes.NewReader(raw[pos:]))
	}
	return io.MultiReader(parts...)
}

// fieldName returns the name of the header field h starts with: what
// comes before its colon, unfolded, white space around it removed. The
// colon is looked for on the first line and, when it is not there, on the
// field's continuation lines: "X-SCL" CRLF " : 1" unfolds to "X-SCL : 1",
// which a lenient parser that unfolds first (RFC 5322's obsolete syntax
// allows white space before the colon) takes for an X-SCL field.
func fieldName(h []byte) (string, bool) {
	var name []byte
	for first := true; len(h) > 0; first = false {
		if !first && h[0] != ' ' && h[0] != '\t' {
			return "", false // the next field: this line had no colon
		}
		end := bytes.IndexByte(h, '\n')
		line := h
		if end >= 0 {
			line, h = h[:end], h[end+1:]
		} else {
			h = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		// A continuation line of white space only is unfolded away
		// like any other (Restamp counts it as the field's too).
		if colon := bytes.IndexByte(line, ':'); colon >= 0 {
			return string(bytes.TrimSpace(append(name, line[:colon]...))), true
		}
		name = append(name, line...)
	}
	return "", false
}

// IsVerdictField says whether a field of this (lower-case) name is one only
// sclgate may set: the gateway removes any that arrive from outside.
func IsVerdictField(name string) bool {
	for _, f := range verdictFields {
		if name == f {
			return true
		}
	}
	return false
}

// foldHeader formats "Name: value" folded at spaces to lines of at most 78
// characters (RFC 5322 section 2.1.1), encoding non-ASCII as RFC 2047 words:
// sclgate's own fields must not need SMTPUTF8, which the downstream may
// not take, nor the message have asked for.
func foldHeader(name, value string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(":")
	lineLen := b.Len()
	for _, w := range encodeWords(value) {
		// Fold before any word that would pass column 78, the first one
		// too (an RFC 2047 word is up to 75 octets), unless the line
		// holds nothing yet but the fold's tab.
		if lineLen > 1 && lineLen+1+len(w) > 78 {
			b.WriteString("\r\n\t")
			lineLen = 1
		} else {
			b.WriteByte(' ')
			lineLen++
		}
		b.WriteString(w)
		lineLen += len(w)
	}
	return b.String()
}

// encodeWords splits value into words at white space, each run of
// non-ASCII words made into RFC 2047 encoded words (the spaces inside the
// run encoded too, since a decoder drops white space between encoded
// words): the rest of the value stays readable as it is.
func encodeWords(value string) []string {
	var out, run []string
	flush := func() {
		if len(run) > 0 {
			out = append(out, strings.Fields(mime.QEncoding.Encode("utf-8", strings.Join(run, " ")))...)
			run = run[:0]
		}
	}
	for _, w := range strings.Fields(value) {
		if isASCII(w) {
			flush()
			out = append(out, w)
		} else {
			run = append(run, w)
		}
	}
	flush()
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf || s[i] < ' ' && s[i] != '\t' {
			return false
		}
	}
	return true
}

// sanitizeHelo keeps the client's HELO name from breaking our Received
// field: anything but the characters of a host name or address literal
// becomes "_".
func sanitizeHelo(h string) string {
	if h == "" {
		return "unknown"
	}
	if len(h) > 255 {
		h = h[:255]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".-[]:_", r):
			return r
		}
		return '_'
	}, h)
}
