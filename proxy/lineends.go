package proxy

import (
	"bytes"
	"errors"
	"io"

	"github.com/emersion/go-smtp"
)

// SMTP smuggling (SEC Consult 2023; CVE-2023-51764/5/6): go-smtp ends DATA
// only on CRLF.CRLF but passes bare CR, bare LF and NUL through, and its
// client forwards a bare CR unchanged. A downstream that takes "\n.\n" or
// "\r.\r" as the end of data would then read a second, spoofed message out
// of one that sclgate accepted. So sclgate refuses any message that has
// them, as Postfix's smtpd_forbid_bare_newline=reject does.
var (
	errBareCR = errors.New("bare CR")
	errBareLF = errors.New("bare LF")
	errNUL    = errors.New("NUL")
)

// dataFilter checks message data as it streams in: every CR must be
// followed by LF, every LF preceded by CR, and no NUL. With normalizeLF a
// bare LF is written out as CRLF; bare CR and NUL are refused whatever the
// setting, since no legitimate mail has them and they are what smuggling
// needs.
type dataFilter struct {
	normalizeLF bool
	lastCR      bool // the previous byte was a CR
	changed     bool // a bare LF was rewritten
	// lineLen counts the octets of the line so far. go-smtp bounds lines
	// inside DATA, but not inside BDAT chunks, where a line may also run
	// across chunks: the bound is kept here for both.
	lineLen int
}

// maxDataLine is the longest line of message data, line end not counted.
const maxDataLine = MaxLineLength - 2

// write checks p and writes it (rewritten if need be) to w. Every byte a
// client sends goes through here, so it works a line at a time with
// bytes.IndexByte (vectorised) rather than a switch per byte.
func (f *dataFilter) write(w io.Writer, p []byte) error {
	if bytes.IndexByte(p, 0) >= 0 {
		return errNUL
	}
	start := 0
	for i := 0; i < len(p); {
		if f.lastCR {
			if p[i] != '\n' {
				return errBareCR
			}
			f.lastCR = false
			f.lineLen = 0
			i++
			continue
		}
		j := bytes.IndexByte(p[i:], '\n')
		seg := p[i:]
		if j >= 0 {
			seg = p[i : i+j]
		}
		k := bytes.IndexByte(seg, '\r')
		if k >= 0 && k != len(seg)-1 {
			return errBareCR
		}
		f.lineLen += len(seg)
		if k >= 0 {
			f.lineLen-- // the CR of the line end
		}
		if f.lineLen > maxDataLine {
			return smtp.ErrTooLongLine
		}
		if j < 0 {
			f.lastCR = k >= 0
			break
		}
		f.lineLen = 0
		if k < 0 { // an LF with no CR before it
			if !f.normalizeLF {
				return errBareLF
			}
			if _, err := w.Write(p[start : i+j]); err != nil {
				return err
			}
			if _, err := w.Write([]byte("\r")); err != nil {
				return err
			}
			start = i + j
			f.changed = true
		}
		i += j + 1
	}
	_, err := w.Write(p[start:])
	return err
}

// close reports a CR left bare at the very end.
func (f *dataFilter) close() error {
	if f.lastCR {
		return errBareCR
	}
	return nil
}

// checkLineEnds runs raw through a dataFilter: raw itself when every line
// ends in CRLF, a rewritten copy when normalizeLF turned bare LFs into
// CRLF, or the error.
func checkLineEnds(raw []byte, normalizeLF bool) ([]byte, error) {
	f := dataFilter{normalizeLF: normalizeLF}
	var out bytes.Buffer
	if err := f.write(&out, raw); err != nil {
		return nil, err
	}
	if err := f.close(); err != nil {
		return nil, err
	}
	if !f.changed {
		return raw, nil
	}
	return out.Bytes(), nil
}

// headerSize returns the length of raw's header, up to and including the
// blank line that ends it (all of raw when there is none).
func headerSize(raw []byte) int {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if bytes.HasPrefix(raw, []byte("\r\n")) {
		return 2
	}
	return len(raw)
}
