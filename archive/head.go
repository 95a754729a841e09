package archive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
)

// Envelope is the SMTP envelope of an archived message.
type Envelope struct {
	From string   // reverse path without brackets; "" for the null sender <>
	To   []string // recipients without brackets
}

// SenderMatches reports whether e's sender matches a list filter: a
// case-insensitive part of the address, or "<>" for the null sender of
// bounces (which any part would match otherwise, or none).
func (e Envelope) SenderMatches(filter string) bool {
	if filter == "<>" {
		return e.From == ""
	}
	return ContainsFold(e.From, filter)
}

// ContainsFold reports whether s contains sub in any case, with Unicode's
// full case folding ("GRÜSSE" finds "Grüße", as the weight list matches),
// for the list filters of the command line and the web page. An empty sub
// is in everything.
func ContainsFold(s, sub string) bool {
	if sub == "" {
		return true
	}
	fold := cases.Fold()
	return strings.Contains(fold.String(s), fold.String(sub))
}

// ErrMalformed is wrapped by the errors for heads ReadHead cannot use.
var ErrMalformed = errors.New("malformed archive head")

// Limits that keep a hostile or broken file from making ReadHead use
// unbounded memory. Real heads are far below them: SMTP paths are at most
// 256 octets, and Exchange's parameters after them a few hundred more.
const (
	maxHeadLine  = 8 << 10
	maxHeadLines = 10000
)

// The kinds of head line. Their names are matched case-insensitively,
// including the colon; longestName is the most ReadHead needs to peek at
// to tell a head line from the first line of the message.
type lineKind int

const (
	notHead lineKind = iota
	senderLine
	receiverLine
	sclLine
	reportLine
)

var headNames = []struct {
	name string
	kind lineKind
}{
	{"x-sender:", senderLine},
	{"x-receiver:", receiverLine},
	{"x-scl-report:", reportLine},
	{"x-scl:", sclLine},
}

const longestName = len("x-scl-report:")

// head is an archive head as read: the envelope, the SCL when there was
// an X-SCL line, and the X-SCL-Report line sclgate writes with it (the
// explanation of the SCL when the message was archived; IMF wrote none).
type head struct {
	env    Envelope
	scl    int
	hasSCL bool
	report string
}

// classify tells what kind of head line p starts with.
func classify(p []byte) (lineKind, int) {
	for _, h := range headNames {
		if len(p) >= len(h.name) && strings.EqualFold(string(p[:len(h.name)]), h.name) {
			return h.kind, len(h.name)
		}
	}
	return notHead, 0
}

// ReadHead reads the head of an archived message from r and leaves r at
// the first byte of the message. It accepts the files we write and the
// ones Exchange and IMF wrote (see the package documentation). hasSCL
// tells whether there was an X-SCL line; scl is 0 when there was not.
//
// A head must have an X-Sender line and at least one X-Receiver line. On
// error, r is left somewhere inside the head.
func ReadHead(r *bufio.Reader) (env Envelope, scl int, hasSCL bool, err error) {
	h, _, err := readHead(r)
	return h.env, h.scl, h.hasSCL, err
}

// readHead is ReadHead, also returning the report line and how many
// bytes the head took, so that callers can tell the size of the message
// and seek to it.
func readHead(r *bufio.Reader) (h head, n int64, err error) {
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("%w: line %d: %s", ErrMalformed, line, fmt.Sprintf(format, args...))
	}
	hasSender, hasReport := false, false
	prev := notHead // the kind of the head line before
	// A UTF-8 byte order mark: an IMF file opened and saved in Notepad,
	// as admins reviewing IMF's archive were told to.
	if p, _ := r.Peek(3); bytes.Equal(p, []byte("\xef\xbb\xbf")) {
		r.Discard(3)
		n += 3
	}
	for lineNo := 1; ; lineNo++ {
		// At EOF, Peek returns what there is: too short for a head line,
		// or a last line without a line end.
		p, err := r.Peek(longestName)
		if err != nil && err != io.EOF {
			return head{}, n, fmt.Errorf("reading head line %d: %w", lineNo, err)
		}
		kind, nameLen := classify(p)
		// The report line is the head's only right after the X-SCL line,
		// where writeHead puts it: one anywhere else (a file IMF wrote,
		// or sclgate before it kept reports, whose message begins with
		// that field) is the message's.
		if kind == notHead ||
			(kind == senderLine && hasSender) ||
			(kind == sclLine && h.hasSCL) ||
			(kind == reportLine && (hasReport || prev != sclLine)) {
			break
		}
		if lineNo > maxHeadLines {
			return head{}, n, bad(lineNo, "more than %d head lines", maxHeadLines)
		}
		line, err := readLine(r)
		n += int64(len(line))
		switch {
		case err == errLineTooLong:
			return head{}, n, bad(lineNo, "%v", err)
		case err != nil:
			return head{}, n, fmt.Errorf("reading head line %d: %w", lineNo, err)
		}
		value := trimEOL(line)[nameLen:]
		switch kind {
		case senderLine:
			addr, err := parseAddr(value)
			if err != nil {
				return head{}, n, bad(lineNo, "X-Sender: %v", err)
			}
			h.env.From, hasSender = addr, true
		case receiverLine:
			addr, err := parseAddr(value)
			if err == nil && addr == "" {
				err = errors.New("empty address")
			}
			if err != nil {
				return head{}, n, bad(lineNo, "X-Receiver: %v", err)
			}
			h.env.To = append(h.env.To, addr)
		case sclLine:
			h.scl, err = parseSCL(value)
			if err != nil {
				return head{}, n, bad(lineNo, "X-SCL: %v", err)
			}
			h.hasSCL = true
		case reportLine:
			h.report, hasReport = string(bytes.TrimSpace(value)), true
		}
		prev = kind
	}
	switch {
	case !hasSender:
		return head{}, n, fmt.Errorf("%w: no X-Sender line", ErrMalformed)
	case len(h.env.To) == 0:
		return head{}, n, fmt.Errorf("%w: no X-Receiver line", ErrMalformed)
	}
	return h, n, nil
}

// errLineTooLong is returned by readLine for lines over maxHeadLine.
var errLineTooLong = fmt.Errorf("longer than %d bytes", maxHeadLine)

// readLine reads one line, with its line end. The last line of a file may
// have none.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxHeadLine {
			return line, errLineTooLong
		}
		switch {
		case err == nil, err == io.EOF:
			// At EOF, line is not empty: the caller peeked at its start.
			return line, nil
		case err != bufio.ErrBufferFull:
			return line, err
		}
	}
}

// trimEOL removes a trailing LF and the CRs before it: "\r\r\n" is one
// line end in a file converted to CRLF twice (migrated IMF archives), as
// crlf in the release path reads it too.
func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimRight(line, "\r")
}

// isWSP tells whether c separates an address from what follows it.
func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// parseAddr returns the address at the start of an X-Sender or X-Receiver
// value: either inside angle brackets ("<a@b>", "<>") or, as Exchange
// wrote it, bare ("a@b"). Whatever follows the address (Exchange wrote
// parameters such as "SMTP" or "NOTIFY=NEVER" there) is ignored. A quoted
// local part may hold spaces and brackets: `<"a> b"@example.com>`.
func parseAddr(v []byte) (string, error) {
	v = bytes.TrimLeft(v, " \t")
	if len(v) > 0 && v[0] == '<' {
		end := scanAddr(v[1:], func(c byte) bool { return c == '>' })
		if end < 0 {
			return "", fmt.Errorf("no '>' after %q", truncate(v))
		}
		return string(v[1 : 1+end]), nil
	}
	end := scanAddr(v, isWSP)
	if end < 0 {
		end = len(v)
	}
	return string(v[:end]), nil
}

// scanAddr returns the index of the first byte in v for which stop is true
// outside a quoted string, or -1 if there is none.
func scanAddr(v []byte, stop func(byte) bool) int {
	quoted := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quoted && c == '\\':
			i++ // a quoted pair: the next byte is literal
		case c == '"':
			quoted = !quoted
		case !quoted && stop(c):
			return i
		}
	}
	return -1
}

// parseSCL parses an X-SCL value: a spam confidence level, -1 to 9, which
// may be followed by anything after white space.
func parseSCL(v []byte) (int, error) {
	f := strings.Fields(string(v))
	if len(f) == 0 {
		return 0, errors.New("empty")
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < -1 || n > 9 {
		return 0, fmt.Errorf("%q is not an SCL from -1 to 9", truncate([]byte(f[0])))
	}
	return n, nil
}

// truncate shortens what goes into an error message: these come from
// files and messages anyone can send.
func truncate(b []byte) string {
	const max = 64
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// writeHead writes h: the report only with the SCL. The caller has
// checked it with checkHead.
func writeHead(w io.Writer, h head) error {
	var b bytes.Buffer
	b.WriteString("X-Sender: <" + h.env.From + ">\r\n")
	for _, to := range h.env.To {
		b.WriteString("X-Receiver: <" + to + ">\r\n")
	}
	if h.hasSCL {
		b.WriteString("X-SCL: " + strconv.Itoa(h.scl) + "\r\n")
		if h.report != "" {
			b.WriteString("X-SCL-Report: " + h.report + "\r\n")
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// checkHead checks that writeHead can write env and scl so that ReadHead
// reads back the same: an address with a line end in it would let the
// sender of a message add lines to its head, and one ReadHead would read
// differently (`a>b`, an unbalanced quote) would come back changed.
func checkHead(h head) error {
	env, scl, hasSCL := h.env, h.scl, h.hasSCL
	check := func(what, addr string) error {
		for i := 0; i < len(addr); i++ {
			if c := addr[i]; c < 0x20 || c == 0x7f {
				return fmt.Errorf("archive: %s %q has a control character", what, addr)
			}
		}
		if got, err := parseAddr([]byte("<" + addr + ">")); err != nil || got != addr {
			return fmt.Errorf("archive: %s %q cannot be stored in a head", what, addr)
		}
		return nil
	}
	if err := check("sender", env.From); err != nil {
		return err
	}
	if len(env.To) == 0 {
		return errors.New("archive: no recipients")
	}
	for _, to := range env.To {
		if to == "" {
			return errors.New("archive: empty recipient")
		}
		if err := check("recipient", to); err != nil {
			return err
		}
	}
	if hasSCL && (scl < -1 || scl > 9) {
		return fmt.Errorf("archive: SCL %d is not from -1 to 9", scl)
	}
	if h.report != cleanReport(h.report) {
		return errors.New("archive: the report has a control character, white space around it, or is too long")
	}
	return nil
}

// maxReport bounds the X-SCL-Report line: well inside maxHeadLine.
const maxReport = 4 << 10

// cleanReport makes report fit one head line that reads back the same: no
// control characters (a line end would let a rule's text add lines to
// the head), no white space around it, at most maxReport bytes (cut at a
// rune).
func cleanReport(report string) string {
	report = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, report)
	if len(report) > maxReport {
		cut := maxReport - len("…")
		for cut > 0 && !utf8.RuneStart(report[cut]) {
			cut--
		}
		report = strings.TrimSpace(report[:cut]) + "…"
	}
	return strings.TrimSpace(report)
}
