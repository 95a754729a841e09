package weights

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"Hello World", "hello world"},
		{"  lots \t of\r\n\r\n space  ", " lots of space "},
		{"VERLÄNGERTES Angebot", "verlängertes angebot"},
		{"Stra\u00dfe STRASSE", "strasse strasse"},
		{"e\u0301 E\u0301 \u00e9 \u00c9", "é é é é"},
		{"ＦＲＥＥ", "free"},
		{"ﬁle", "file"},
		{"a\u00a0b\u2003c\u3000d\u2028e", "a b c d e"},
		{"\u00a0\u00a0x", " x"},
		{"ΟΔΟΣ οδος", "οδοσ οδοσ"},
		{"ЛУЧШАЯ", "лучшая"},
		{"“quoted” — it’s", "“quoted” — it's"},
		{"DON’T miss donʼt ‘quote’", "don't miss don't ‘quote'"},
		{"½ ²", "1⁄2 2"},
		{"x\xffy", "x\ufffdy"},
		{"\xe2\x82", "\ufffd\ufffd"},
		{"한국어", "한국어"},
		{"😀 OK", "😀 ok"},
		{"\u212a", "k"},
		{"İNDİRİM İndirim VİAGRA", "indirim indirim viagra"},
		{"I\u0307 i\u0307\u0307 J\u0307 a\u0307", "i i j \u0227"},
	} {
		z := newNormalizer()
		if got := string(z.appendText(nil, c.in)); got != c.want {
			t.Errorf("normalize(%q) = %q, want %q", c.in, got, c.want)
		}
		if ref := refNormalize(c.in); ref != c.want {
			t.Errorf("refNormalize(%q) = %q, want %q (bad test?)", c.in, ref, c.want)
		}
	}
}

// TestNormalizeTables checks the fast path against x/text for every rune the
// tables call simple, next to runes that compose, combine or are simple
// too, and for every two-byte rune next to a combining mark.
func TestNormalizeTables(t *testing.T) {
	z := newNormalizer()
	neighbours := []string{"", "a", "E", " ", "\u0301", "\u0308\u0323", "\u3099", "é", "ß", "\u1161", "\u11a8", "\u00a0", "\xff", "ﬁ"}
	check := func(s string) {
		t.Helper()
		if got, want := string(z.appendText(nil, s)), refNormalize(s); got != want {
			t.Fatalf("normalize(%q) = %q, want %q", s, got, want)
		}
	}
	step := 1
	if testing.Short() || raceEnabled {
		step = 17 // a sample
	}
	for r := rune(0x80); r < 0x10000; r += rune(step) {
		if !utf8.ValidRune(r) {
			continue
		}
		rs := string(r)
		if r >= 0x800 && z.t.simpleAt(rs, 0) == 0 && r%97 != 0 {
			continue // not simple: goes to x/text anyway; check a sample
		}
		for _, n := range neighbours {
			check(n + rs)
			check(rs + n)
			check(n + rs + n + rs)
		}
	}
	// Pieces of all sizes.
	check(strings.Repeat("e\u0301", 100) + strings.Repeat("\u0301", 40) + "x")
}
