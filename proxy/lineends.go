package proxy

import (
	"bytes"
	"errors"
)

// SMTP smuggling (SEC Consult 2023; CVE-2023-51764/5/6): go-smtp ends DATA
// only on CRLF.CRLF but passes bare CR, bare LF and NUL through, and its
// client forwards a bare CR unchanged. A downstream that takes "\n.\n" or
// "\r.\r" as the end of data would then read a second, spoofed message out
// of one that sclgate accepted. So sclgate refuses any message that has
// them, as Postfix's smtpd_forbid_bare_newline=reject does.
var (
	errBareCR  = errors.New("bare CR")
	errBareLF  = errors.New("bare LF")
	errNUL     = errors.New("NUL")
	errHdrSize = errors.New("header too large")
)

// checkLineEnds returns raw if every line ends in CRLF and there is no NUL.
// With normalizeLF, bare LFs are turned into CRLF (a copy); bare CR and
// NUL are refused whatever the setting, since no legitimate mail has them
// and they are what smuggling needs.
func checkLineEnds(raw []byte, normalizeLF bool) ([]byte, error) {
	if bytes.IndexByte(raw, 0) >= 0 {
		return nil, errNUL
	}
	bareLF := false
	for i := bytes.IndexByte(raw, '\r'); i >= 0; {
		if i+1 >= len(raw) || raw[i+1] != '\n' {
			return nil, errBareCR
		}
		j := bytes.IndexByte(raw[i+2:], '\r')
		if j < 0 {
			break
		}
		i += 2 + j
	}
	for i := bytes.IndexByte(raw, '\n'); i >= 0; {
		if i == 0 || raw[i-1] != '\r' {
			bareLF = true
			break
		}
		j := bytes.IndexByte(raw[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if !bareLF {
		return raw, nil
	}
	if !normalizeLF {
		return nil, errBareLF
	}
	out := make([]byte, 0, len(raw)+len(raw)/32)
	for i, b := range raw {
		if b == '\n' && (i == 0 || raw[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, b)
	}
	return out, nil
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
