package proxy

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
	"golang.org/x/net/idna"
)

// Envelope addresses: what MAIL and RCPT may carry, and how an address in
// UTF-8 (RFC 6531, SMTPUTF8) goes on to a downstream that does not offer
// the extension.

// errNoSMTPUTF8 refuses an address in UTF-8 that the downstream cannot take:
// it does not offer SMTPUTF8, and the address is not one whose only
// non-ASCII part is a domain that A-labels can spell.
var errNoSMTPUTF8 = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
	Message: "Non-ASCII address not accepted: the mail server behind this gateway does not offer SMTPUTF8"}

// validAddress checks a path address as go-smtp hands it over (no angle
// brackets): one local part, one domain, and none of the tricks that make a
// downstream relay elsewhere: %-hack, bang paths, quoted local parts with @,
// source routes, address literals. With smtputf8 (the transaction's MAIL said
// SMTPUTF8) the local part may hold UTF-8 as well, and the domain may be in
// U-labels; without it, anything not ASCII is refused (RFC 6531 section
// 3.4: such an address needs the extension).
func validAddress(a string, smtputf8 bool) bool {
	if len(a) == 0 || len(a) > 254 {
		return false
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || at > 64 {
		return false
	}
	local, domain := a[:at], a[at+1:]
	// The local part must be a dot-atom: go-smtp hands over a quoted one
	// unquoted ("a>b"@x as a>b@x), which could be neither stored in an
	// archive head nor passed downstream as it came. The percent hack and
	// bang paths are refused too.
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= utf8.RuneSelf {
			if !smtputf8 {
				return false
			}
			r, n := utf8.DecodeRuneInString(local[i:])
			if !AddressRune(r) {
				return false
			}
			i += n - 1
			continue
		}
		if !isAlnum(c) && !strings.ContainsRune("#$&'*+-/=?^_`{|}~.", rune(c)) {
			return false
		}
	}
	if !allASCII(domain) {
		if !smtputf8 {
			return false
		}
		d, ok := asciiDomain(domain)
		if !ok {
			return false
		}
		domain = d
	}
	for i := 0; i < len(domain); i++ {
		if c := domain[i]; !isAlnum(c) && c != '-' && c != '.' && c != '_' {
			return false
		}
	}
	return true
}

// validRecipient is validAddress, and the domain's labels are not empty
// (RFC 5321 section 4.1.2): "ours.test." would reach the downstream as
// it came, and "ours..test" is no name. (A sender is taken as it comes:
// what is wrong with its domain is the downstream's to judge.)
func validRecipient(a string, smtputf8 bool) bool {
	if !validAddress(a, smtputf8) {
		return false
	}
	domain := a[strings.LastIndexByte(a, '@')+1:]
	return domain[0] != '.' && domain[len(domain)-1] != '.' && !strings.Contains(domain, "..")
}

// AddressRune tells whether r, not ASCII, may stand in an address: valid
// UTF-8 (RFC 6532's UTF8-non-ascii), and nothing that would hide what the
// address says to whoever reads it in a log or a mail program: no control
// characters (C1 included), no spaces, no line or paragraph separators,
// no invisible format characters (bidirectional overrides and isolates,
// soft hyphens, zero-width spaces, byte order marks), save the zero-width
// joiner and non-joiner that some scripts and emoji sequences need.
func AddressRune(r rune) bool {
	switch {
	case r == utf8.RuneError: // invalid UTF-8 (or U+FFFD, which no one owns)
		return false
	case r == 0x200c, r == 0x200d: // ZWNJ, ZWJ
		return true
	case unicode.IsSpace(r), unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zs, unicode.Zl, unicode.Zp):
		return false
	}
	return true
}

// asciiDomain returns domain in A-labels, lower case, by IDNA2008's lookup
// rules, and whether it is a domain at all. Its labels must be as the
// lookup leaves them, but for case: IDNA also maps other spellings to a
// name (the dots 。．｡, full-width and compatibility letters, decomposed
// accents, soft hyphens and other invisible characters, which it drops),
// and one of ours spelled so would pass here, yet reach a downstream with
// SMTPUTF8 as another name, which would take it for a foreign one.
func asciiDomain(domain string) (string, bool) {
	if strings.ContainsAny(domain, "\u3002\uff0e\uff61") {
		return "", false
	}
	a, err := idna.Lookup.ToASCII(domain)
	if err != nil || a == "" {
		return "", false
	}
	for _, label := range strings.Split(strings.ToLower(domain), ".") {
		if allASCII(label) {
			continue
		}
		al, err := idna.Lookup.ToASCII(label)
		if err != nil {
			return "", false
		}
		if u, err := idna.Lookup.ToUnicode(al); err != nil || u != label {
			return "", false
		}
	}
	return strings.ToLower(a), true
}

// domainKey is an address's domain as accepted_domains holds one: lower
// case, in A-labels.
func domainKey(addr string) string {
	domain := strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
	if !allASCII(domain) {
		if d, ok := asciiDomain(domain); ok {
			return d
		}
	}
	return domain
}

// downstreamAddr returns a, which the gateway took, as it can go to the
// downstream behind c: as it is when it is ASCII or c offers SMTPUTF8;
// with its domain in A-labels when that is all of it that is not ASCII
// (the same name, RFC 6531 section 3.2); else errNoSMTPUTF8.
func downstreamAddr(c *smtp.Client, a string) (string, error) {
	if allASCII(a) {
		return a, nil
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		return a, nil
	}
	at := strings.LastIndexByte(a, '@')
	if at > 0 && allASCII(a[:at]) {
		if d, ok := asciiDomain(a[at+1:]); ok {
			return a[:at+1] + d, nil
		}
	}
	return "", errNoSMTPUTF8
}

func allASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
