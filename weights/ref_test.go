package weights

// ref_test.go is the slow, obviously right matcher the fast one is checked
// against: normalise each string whole with x/text, then strings.Index.

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// refNormalize is normalisation done the plain way: invalid bytes to
// U+FFFD, invisible characters dropped, NFKC, full case folding, a dot
// above after i or j dropped, typographic apostrophes to ', white space
// runs to one space.
func refNormalize(s string) string {
	s = refDrop(s)
	s = norm.NFKC.String(s)
	s = cases.Fold().String(s)
	for strings.Contains(s, "i\u0307") || strings.Contains(s, "j\u0307") {
		s = strings.ReplaceAll(strings.ReplaceAll(s, "i\u0307", "i"), "j\u0307", "j")
	}
	s = strings.NewReplacer("\u2019", "'", "\u02bc", "'").Replace(s)
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// refIgnorable is isIgnorable's set, written out as a table.
var refIgnorable = &unicode.RangeTable{R16: []unicode.Range16{
	{0x00AD, 0x00AD, 1}, {0x034F, 0x034F, 1}, {0x061C, 0x061C, 1}, {0x0640, 0x0640, 1}, {0x115F, 0x1160, 1}, {0x17B4, 0x17B5, 1},
	{0x180B, 0x180F, 1}, {0x200B, 0x200F, 1}, {0x202A, 0x202E, 1}, {0x2060, 0x206F, 1},
	{0x3164, 0x3164, 1}, {0xFE00, 0xFE0F, 1}, {0xFEFF, 0xFEFF, 1}, {0xFFA0, 0xFFA0, 1}, {0xFFF0, 0xFFF8, 1},
}, R32: []unicode.Range32{
	{0x1BCA0, 0x1BCA3, 1}, {0x1D173, 0x1D17A, 1}, {0xE0000, 0xE0FFF, 1},
}}

// refDrop removes the characters in refIgnorable (after invalid bytes
// became U+FFFD, as they do for Match).
func refDrop(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.Is(refIgnorable, r) {
			return -1
		}
		return r
	}, string([]rune(s)))
}

func refPhrase(s string) string {
	s = refNormalize(s)
	s = strings.TrimPrefix(s, " ")
	return strings.TrimSuffix(s, " ")
}

func refIsWord(r rune) bool {
	if unicode.In(r, unicode.Han, unicode.Hiragana) || r == '々' || r == '〆' || r == '〇' {
		return false // each a word of its own (UAX #29)
	}
	if unicode.IsMark(r) {
		return true // no boundary before a combining mark
	}
	if unicode.In(r, unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar, unicode.Tai_Le, unicode.New_Tai_Lue, unicode.Tai_Tham, unicode.Tai_Viet) {
		return false // written without spaces: UAX #29 leaves them to a dictionary
	}
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// refContains reports whether phrase p (normalised) occurs in text
// (normalised) on word boundaries.
func refContains(text, p string) bool {
	if p == "" {
		return false
	}
	first, _ := utf8.DecodeRuneInString(p)
	// A mark belongs to the letter before it (UAX #29 WB4).
	base := func(s string) rune {
		r, n := utf8.DecodeLastRuneInString(s)
		for unicode.IsMark(r) && n < len(s) {
			s = s[:len(s)-n]
			r, n = utf8.DecodeLastRuneInString(s)
		}
		return r
	}
	last := base(p)
	for i := 0; i <= len(text); {
		j := strings.Index(text[i:], p)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(p)
		ok := true
		if refIsWord(first) && start > 0 {
			if r := base(text[:start]); refIsWord(r) {
				ok = false
			}
		}
		if refIsWord(last) && end < len(text) {
			if r, _ := utf8.DecodeRuneInString(text[end:]); refIsWord(r) {
				ok = false
			}
		}
		if !refIsWord(last) && unicode.IsLetter(last) && end < len(text) {
			if r, _ := utf8.DecodeRuneInString(text[end:]); unicode.IsMark(r) {
				ok = false // a letter and its mark are one character
			}
		}
		if ok {
			return true
		}
		i = start + 1
	}
	return false
}

// refMatch is List.Match done slowly.
func refMatch(entries []Entry, subject, body string) []Entry {
	ns, nb := refNormalize(subject), refNormalize(body)
	var out []Entry
	for _, e := range entries {
		p := refPhrase(e.Text)
		if e.Type != Body && refContains(ns, p) || e.Type != Subject && refContains(nb, p) {
			out = append(out, e)
		}
	}
	return out
}

// newTestList compiles entries without going through XML.
func newTestList(t testing.TB, entries []Entry) *List {
	t.Helper()
	z := newNormalizer()
	phrases := make([]string, len(entries))
	for i, e := range entries {
		phrases[i] = normalizePhrase(z, e.Text)
		if phrases[i] == "" {
			t.Fatalf("entry %d: phrase %q is empty", i, e.Text)
		}
	}
	return &List{source: "test", entries: entries, m: compile(entries, phrases)}
}
