package proxy

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sclgate/sclgate/metrics"
)

func TestValidAddress(t *testing.T) {
	local64 := strings.Repeat("a", 64)
	cases := []struct {
		addr string
		want bool
	}{
		// Accepted.
		{"bob@example.com", true},
		{"bob+tag@example.com", true},
		{"first.last@sub.example.com", true},
		{"o'brien@example.com", true},
		{local64 + "@example.com", true},
		{"a@" + strings.Repeat("d", 252), true}, // 254 in all

		// Refused.
		{"", false},
		{"@", false},
		{"bob", false},
		{"@example.com", false},
		{"bob@", false},
		{"bob%other.org@example.com", false},     // percent hack
		{"other.org!bob@example.com", false},     // bang path
		{"bob@example.com!other", false},         // bang in domain
		{`"bob@other.org"@example.com`, false},   // quoted local part with @
		{`"bob smith"@example.com`, false},       // quoted with space
		{`bob\@x@example.com`, false},            // escaped @
		{"bob@other.org@example.com", false},     // double @ (go-smtp unquotes "bob@other.org")
		{"@relay.org:bob@example.com", false},    // source route
		{"@a.org,@b.org:bob@example.com", false}, // source route, two hops
		{"bob@[192.0.2.1]", false},               // address literal
		{"bob@[IPv6:2001:db8::1]", false},        // address literal
		{"bob@exa mple.com", false},
		{"bob\r\n@example.com", false},
		{"bob@example.com\r\nRCPT TO:<x@y>", false},
		{"bob\x00@example.com", false},
		{"bob\x7f@example.com", false},
		{"bob@example.com\x7f", false},
		{"a>b@example.com", false}, // "a>b"@example.com as go-smtp hands it over
		{"a..b@example.com", false},
		{".a@example.com", false},
		{"a.@example.com", false},
		{"a<b@example.com", false},
		{"a,b@example.com", false},
		{"a;b@example.com", false},
		{"a(b)@example.com", false},
		{"bob@exa,mple.com", false},
		{"bob@example.com>", false},

		{"x#$&'*+-/=?^_`{|}~.y@example.com", true}, // every atext character
		{local64 + "a@example.com", false},         // local part over 64
		{"a@" + strings.Repeat("d", 253), false},   // 255 in all
		{strings.Repeat("a", 300) + "@example.com", false},
	}
	// Whether MAIL said SMTPUTF8 or not, ASCII addresses are judged the
	// same.
	for _, utf8 := range []bool{false, true} {
		for _, c := range cases {
			if got := validAddress(c.addr, utf8); got != c.want {
				t.Errorf("validAddress(%q, %v) = %v, want %v", c.addr, utf8, got, c.want)
			}
			if got := validRecipient(c.addr, utf8); got != c.want {
				t.Errorf("validRecipient(%q, %v) = %v, want %v", c.addr, utf8, got, c.want)
			}
		}
		// A recipient's domain has no empty label; a sender's may.
		for _, a := range []string{"bob@example.com.", "bob@example..com", "bob@.example.com", "jörg@bücher..example"} {
			if validRecipient(a, true) || !validAddress(a, true) {
				t.Errorf("%q: recipient %v, sender %v", a, validRecipient(a, true), validAddress(a, true))
			}
		}
	}

	// UTF-8 (RFC 6531): only when MAIL said SMTPUTF8, and then only
	// what a reader sees as it is.
	utf8Cases := []struct {
		addr string
		want bool
	}{
		{"jörg@example.com", true},
		{"用户@例子.测试", true},
		{"bob@bücher.example", true},
		{"bob@BÜCHER.example", true},
		{"δοκιμή@παράδειγμα.δοκιμή", true},
		{"a\u200db@example.com", true},  // ZWJ: some scripts need it
		{"jörg\xff@example.com", false}, // not UTF-8
		{"jörg\xc3@example.com", false}, // cut short
		{"\xc0\xaf@example.com", false}, // overlong
		{"a\u0085b@example.com", false}, // C1 control (NEL)
		{"a\u00a0b@example.com", false}, // no-break space
		{"a\u3000b@example.com", false}, // ideographic space
		{"a\u2028b@example.com", false}, // line separator
		{"a\u202eb@example.com", false}, // right-to-left override
		{"a\u2067b@example.com", false}, // right-to-left isolate
		{"a\ufffdb@example.com", false},
		{"a\u00adb@example.com", false}, // soft hyphen
		{"a\ufeffb@example.com", false}, // byte order mark
		{"a\u2060b@example.com", false}, // word joiner
		{"ab\u200b@example.com", false}, // zero-width space
		{"a\u200cb@example.com", true},  // ZWNJ: some scripts need it
		{"bob@bücher.xn--p1ai", true},   // U- and A-labels mixed
		// Other spellings IDNA maps to a name: ours would pass, yet
		// reach a downstream with SMTPUTF8 as a foreign one.
		{"bob@bu\u0308cher.example", false},          // decomposed ü (NFD)
		{"bob@\uff4f\uff55\uff52\uff53.test", false}, // full-width ours
		{"bob@\u24de\u24e4\u24e1\u24e2.test", false}, // circled ours
		{"bob@ours.test\u200b", false},               // zero-width space, dropped by IDNA
		{"bob@bü\u00adcher.example", false},          // soft hyphen, dropped by IDNA
		{"bob@ours\u3002example", false},             // ideographic full stop: a dot to IDNA
		{"bob@ours\uff0eexample", false},             // fullwidth full stop
		{"bob@bü cher.example", false},
		{"bob@bücher_x.example", false}, // IDNA refuses what STD3 does
		{"bob@xn--bcher-kva\u00e9.example", false},
		{"bob@bücher.example\r\nRCPT TO:<x@y>", false},
		{"jörg>x@example.com", false},
		{"jörg\"@example.com", false},
		{"jörg@[192.0.2.1]", false},
		{strings.Repeat("ö", 32) + "@example.com", true},  // 64 octets
		{strings.Repeat("ö", 33) + "@example.com", false}, // 66
	}
	for _, c := range utf8Cases {
		if got := validAddress(c.addr, true); got != c.want {
			t.Errorf("validAddress(%+q, true) = %v, want %v", c.addr, got, c.want)
		}
		if got := validRecipient(c.addr, true); got != c.want {
			t.Errorf("validRecipient(%+q, true) = %v, want %v", c.addr, got, c.want)
		}
		if validAddress(c.addr, false) || validRecipient(c.addr, false) {
			t.Errorf("%+q taken without SMTPUTF8", c.addr)
		}
	}
	// The refusal says why: RFC 6531's 553 5.6.7 for UTF-8 without
	// SMTPUTF8, else 5.1.3.
	s := &session{srv: &Server{metrics: metrics.New(prometheus.NewRegistry(), "test")}, log: slog.New(slog.DiscardHandler)}
	if err := s.addressError("jörg@example.com"); err != errNonASCII || s.reason != "bad_address" {
		t.Errorf("UTF-8 address: %v, counted as %q", err, s.reason)
	}
	s.reason, s.utf8 = "", true
	if err := s.addressError("a\u202eb@example.com"); err != errBadAddress || s.reason != "bad_address" {
		t.Errorf("bad UTF-8 address under SMTPUTF8: %v, counted as %q", err, s.reason)
	}
	s.utf8 = false
	s.reason = ""
	if err := s.addressError("bob%x@example.com"); err != errBadAddress || s.reason != "bad_address" {
		t.Errorf("percent hack: %v, counted as %q", err, s.reason)
	}
}
