package weights

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// e is shorthand for a Delta entry in tests.
func e(t Type, text string) Entry { return Entry{Type: t, Kind: Delta, Change: 1, Text: text} }

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		name          string
		entries       []Entry
		subject, body string
		want          []int // indexes into entries
	}{
		// Case folding.
		{"ascii case", []Entry{e(Body, "Special Offer")}, "", "SPECIAL OFFER now", []int{0}},
		{"non-ascii case", []Entry{e(Body, "Verlängertes Angebot")}, "", "VERLÄNGERTES ANGEBOT!", []int{0}},
		{"turkish dotted capital I, rule in capitals", []Entry{e(Body, "İNDİRİM")}, "", "Büyük indirim bugün", []int{0}},
		{"typographic apostrophe in the text", []Entry{e(Body, "don't miss")}, "", "Don’t miss this", []int{0}},
		{"typographic apostrophe in the rule", []Entry{e(Body, "don’t miss")}, "", "DON'T MISS", []int{0}},
		{"turkish dotted capital I in the text", []Entry{e(Body, "viagra")}, "", "VİAGRA ucuz", []int{0}},
		{"sharp s full folding", []Entry{e(Body, "straße"), e(Body, "STRASSE")}, "", "Hauptstrasse? no: STRASSE 5", []int{0, 1}},
		{"sharp s in text", []Entry{e(Body, "STRASSE")}, "", "die straße", []int{0}},
		{"capital sharp s", []Entry{e(Body, "strasse")}, "", "STRAẞE", []int{0}},
		{"greek final sigma", []Entry{e(Body, "ΟΔΟΣ")}, "", "η οδος και η οδός", []int{0}},
		{"composed vs decomposed", []Entry{e(Body, "Offre spe\u0301ciale")}, "", "OFFRE SPÉCIALE", []int{0}},
		{"decomposed text", []Entry{e(Body, "Offre spéciale")}, "", "offre spe\u0301ciale", []int{0}},
		{"decomposed uppercase text", []Entry{e(Body, "é")}, "", "x E\u0301 y", []int{0}},
		{"compatibility forms", []Entry{e(Body, "free")}, "", "ＦＲＥＥ money", []int{0}},
		{"ligature", []Entry{e(Body, "office")}, "", "the oﬃce", []int{0}},
		{"kelvin sign", []Entry{e(Body, "k")}, "", "5 \u212A", []int{0}},
		{"cyrillic", []Entry{e(Body, "Лучшая цена")}, "", "ЛУЧШАЯ ЦЕНА здесь", []int{0}},

		// Invisible characters do not split a phrase, in the text or in
		// the phrase.
		{"soft hyphen", []Entry{e(Body, "Verlängertes Angebot")}, "", "Verlän\u00adgertes Angebot", []int{0}},
		{"zero-width space", []Entry{e(Body, "viagra")}, "", "vi\u200bag\u200cra\u200d!", []int{0}},
		{"word joiner and BOM", []Entry{e(Subject, "free")}, "fr\u2060e\ufeffe", "", []int{0}},
		{"tag characters", []Entry{e(Body, "viagra")}, "", "vi\U000E0020agra", []int{0}},
		{"bidi controls", []Entry{e(Body, "casino")}, "", "\u202ecasino\u202c", []int{0}},
		{"soft hyphen in the phrase", []Entry{e(Body, "Ver\u00adlängert")}, "", "verlängert", []int{0}},
		{"arabic tatweel", []Entry{e(Body, "مجاني")}, "", "عرض مجـــاني اليوم", []int{0}},
		{"arabic tatweel in the phrase", []Entry{e(Body, "مجـاني")}, "", "عرض مجاني", []int{0}},
		{"ignorable is no boundary", []Entry{e(Body, "free")}, "", "free\u200bdom", nil},

		// Word boundaries.
		{"free alone", []Entry{e(Body, "free")}, "", "free", []int{0}},
		{"FREE money", []Entry{e(Body, "free")}, "", "FREE money", []int{0}},
		{"free!", []Entry{e(Body, "free")}, "", "it's free!", []int{0}},
		{"freedom", []Entry{e(Body, "free")}, "", "freedom", nil},
		{"unfree", []Entry{e(Body, "free")}, "", "unfree", nil},
		{"free_", []Entry{e(Body, "free")}, "", "free_stuff", nil},
		{"free1", []Entry{e(Body, "free")}, "", "free1 1free", nil},
		{"free after freedom", []Entry{e(Body, "free")}, "", "freedom is free", []int{0}},
		{"accented neighbour", []Entry{e(Body, "free")}, "", "éfree freeé", nil},
		{"combining mark after", []Entry{e(Body, "cafe")}, "", "cafe\u0301", nil},
		// Ideographs and hiragana are words of their own (UAX #29); katakana
		// and Hangul words stay whole.
		{"ideograph neighbour", []Entry{e(Body, "free")}, "", "免费free送", []int{0}},
		{"chinese inside a run", []Entry{e(Body, "台灣工商")}, "", "最新台灣工商名錄", []int{0}},
		{"hiragana inside a run", []Entry{e(Body, "ください")}, "", "お電話くださいませ", []int{0}},
		{"katakana word whole", []Entry{e(Body, "メール")}, "", "メールアドレス", nil},
		{"katakana word", []Entry{e(Body, "メール")}, "", "無料メールを", []int{0}},
		{"hangul word whole", []Entry{e(Body, "한국")}, "", "한국어", nil},
		{"hangul word", []Entry{e(Body, "한국어")}, "", "한국어 텍스트", []int{0}},
		// So are the letters of Thai, Lao, Khmer and Myanmar, written
		// without spaces; a phrase does not end before a vowel sign.
		{"thai inside a run", []Entry{e(Body, "ฟรี")}, "", "รับฟรีวันนี้", []int{0}},
		{"thai before a vowel sign", []Entry{e(Body, "ฟร")}, "", "รับฟรีวันนี้", nil},
		{"lao inside a run", []Entry{e(Body, "ຟຣີ")}, "", "ຮັບຟຣີມື້ນີ້", []int{0}},
		{"khmer inside a run", []Entry{e(Body, "ឥតគិតថ្លៃ")}, "", "ទទួលឥតគិតថ្លៃថ្ងៃនេះ", []int{0}},
		{"myanmar inside a run", []Entry{e(Body, "အခမဲ့")}, "", "ယနေ့အခမဲ့ရယူ", []int{0}},
		{"latin next to thai", []Entry{e(Body, "free")}, "", "รับfreeวันนี้", []int{0}},
		// A phrase ending in a vowel sign ends a Thai cluster: digits or
		// Latin may follow; a Latin word may begin after one.
		{"thai vowel sign before digits", []Entry{e(Body, "ฟรี")}, "", "เครดิตฟรี100", []int{0}},
		{"lao tone mark before digits", []Entry{e(Body, "ໄດ້")}, "", "ໄດ້100", []int{0}},
		{"latin after a thai cluster", []Entry{e(Body, "free"), e(Body, "ฟรี")}, "", "ฟรีfree", []int{0, 1}},
		{"latin after e and an accent", []Entry{e(Body, "free")}, "", "e\u0301free", nil},
		{"phrase in longer phrase", []Entry{e(Body, "special offer")}, "", "a very special offer today", []int{0}},
		{"phrase not at word start", []Entry{e(Body, "special offer")}, "", "especial offer", nil},
		{"phrase not at word end", []Entry{e(Body, "special offer")}, "", "special offers", nil},
		{"punctuation edged", []Entry{e(Subject, "EDIT:")}, "EDIT: foo", "", []int{0}},
		{"punctuation edged inside", []Entry{e(Subject, "EDIT:")}, "re:EDIT:", "", []int{0}},
		{"punctuation edged glued", []Entry{e(Subject, "EDIT:")}, "XEDIT:", "", nil},
		{"punctuation edged followed", []Entry{e(Subject, "EDIT:")}, "EDIT:x", "", []int{0}},
		{"only punctuation", []Entry{e(Body, "$$$")}, "", "win$$$$now", []int{0}},
		{"leading punctuation", []Entry{e(Body, "-free")}, "", "un-free", []int{0}},
		{"digits", []Entry{e(Body, "100%")}, "", "a 100% sure", []int{0}},
		{"digits glued", []Entry{e(Body, "100%")}, "", "a 1100% sure", nil},

		// White space.
		{"crlf and spaces", []Entry{e(Body, "special offer")}, "", "special\r\n   offer", []int{0}},
		{"tabs in phrase", []Entry{e(Body, "special \t\n offer")}, "", "special offer", []int{0}},
		{"trimmed phrase", []Entry{e(Body, "  free  ")}, "", "x free y", []int{0}},
		{"nbsp", []Entry{e(Body, "special offer")}, "", "special\u00a0offer", []int{0}},
		{"unicode spaces", []Entry{e(Body, "special offer")}, "", "special\u2028\u3000offer", []int{0}},
		{"space must be there", []Entry{e(Body, "special offer")}, "", "specialoffer", nil},
		{"phrase at text edges", []Entry{e(Body, "a b")}, "", "\n a \t b \n", []int{0}},

		// Subject, body, both.
		{"body not in subject", []Entry{e(Body, "free")}, "free", "", nil},
		{"subject not in body", []Entry{e(Subject, "free")}, "", "free", nil},
		{"subject", []Entry{e(Subject, "free")}, "free", "", []int{0}},
		{"both in subject", []Entry{e(Both, "free")}, "free", "", []int{0}},
		{"both in body", []Entry{e(Both, "free")}, "", "free", []int{0}},
		{"both once", []Entry{e(Both, "free")}, "free", "free free", []int{0}},
		{"no join across subject and body", []Entry{e(Both, "a b")}, "a", "b", nil},

		// Several entries.
		{"duplicate phrases", []Entry{e(Body, "free"), e(Subject, "FREE"), e(Both, "free "), e(Body, "Free")}, "free", "", []int{1, 2}},
		{"duplicate phrases all", []Entry{e(Body, "free"), e(Subject, "FREE"), e(Both, "free "), e(Body, "Free")}, "free", "free", []int{0, 1, 2, 3}},
		{"many times once", []Entry{e(Body, "free")}, "", strings.Repeat("free ", 1000), []int{0}},
		{"file order", []Entry{e(Body, "c"), e(Body, "b"), e(Body, "a")}, "", "a b c", []int{0, 1, 2}},
		{"overlapping", []Entry{e(Body, "special offer"), e(Body, "offer today"), e(Body, "offer")}, "", "special offer today", []int{0, 1, 2}},
		{"suffix phrases", []Entry{e(Body, "x abc"), e(Body, "abc"), e(Body, "bc")}, "", "x abc", []int{0, 1}},

		// Nothing to match.
		{"empty text", []Entry{e(Both, "free")}, "", "", nil},
		{"only spaces", []Entry{e(Both, "free")}, "  ", "\r\n", nil},
		{"invalid utf-8", []Entry{e(Body, "free")}, "", "\xff free \xfe", []int{0}},
		{"invalid utf-8 glued", []Entry{e(Body, "free")}, "", "\xfffree", []int{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newTestList(t, c.entries)
			got := l.Match(c.subject, c.body)
			want := pick(c.entries, c.want...)
			if !slices.Equal(got, want) {
				t.Errorf("Match(%q, %q)\n got %v\nwant %v", c.subject, c.body, texts(got), texts(want))
			}
			if ref := refMatch(c.entries, c.subject, c.body); !slices.Equal(ref, want) {
				t.Errorf("reference matcher disagrees with the test: %v", texts(ref))
			}
		})
	}
}

func texts(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Type.String()+":"+e.Text)
	}
	return out
}

// TestMatchReturnsFields checks that Match gives whole entries, with
// their Kind, Change and Line.
func TestMatchReturnsFields(t *testing.T) {
	doc := `<CustomWeightEntries>
<CustomWeightEntry Type="BODY" Change="MIN" Text="a"/>
<CustomWeightEntry Type="BOTH" Change="-7" Text="b"/>
</CustomWeightEntries>`
	l, err := Parse("x.xml", strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	got := l.Match("b", "a")
	want := []Entry{{Type: Body, Kind: Min, Text: "a", Line: 2}, {Type: Both, Kind: Delta, Change: -7, Text: "b", Line: 3}}
	if !slices.Equal(got, want) {
		t.Errorf("Match = %+v, want %+v", got, want)
	}
}

// TestMatchDeep uses enough phrases with shared prefixes that the automaton
// has sparse states, failure chains through them and output links.
func TestMatchDeep(t *testing.T) {
	var entries []Entry
	words := []string{"ab", "abc", "abcd", "bcd", "bc", "c", "cd", "abcde", "bcdef", "d e", "abcdabcd", "dab", "ab cd"}
	for i, w := range words {
		entries = append(entries, e(Type(1+i%3), w))
	}
	for i := range 1500 {
		entries = append(entries, e(Body, fmt.Sprintf("w%dx%d", i%97, i)))
	}
	l := newTestList(t, entries)
	if len(l.m.ac.sparse) == 0 {
		t.Fatalf("no sparse states: %d dense", l.m.ac.nDense)
	}
	texts := []string{
		"abcd abc ab bcd", "xabcdabcd abcdabcd", "ab cd e", "w5x5 w5x502 w96x2999", "w13x13w13x110",
		"a b c d e", "abcdef bcdef", "dab ab cd", "c cd d e",
	}
	for _, s := range texts {
		for _, b := range texts {
			got, want := l.Match(s, b), refMatch(entries, s, b)
			if !slices.Equal(got, want) {
				t.Errorf("Match(%q, %q)\n got %v\nwant %v", s, b, got, want)
			}
		}
	}
}

func TestMatchConcurrent(t *testing.T) {
	entries := []Entry{e(Body, "free"), e(Subject, "EDIT:"), e(Both, "Offre spéciale")}
	l := newTestList(t, entries)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				body := fmt.Sprintf("message %d from %d: free OFFRE SPÉCIALE", i, g)
				if got := l.Match("EDIT: x", body); len(got) != 3 {
					t.Errorf("Match = %v", got)
					return
				}
				if got := l.Match("", "nothing"); got != nil {
					t.Errorf("Match = %v", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestMatchAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts are off under -cover and -race")
	}
	l := newTestList(t, []Entry{e(Body, "free"), e(Both, "Straße")})
	body := strings.Repeat("Free stuff on the STRASSE, freedom, Größe ", 100)
	l.Match("", body) // warm the pool
	if n := testing.AllocsPerRun(100, func() { l.Match("", "nothing here") }); n != 0 {
		t.Errorf("Match with no hits allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { l.Match("", body) }); n > 1 {
		t.Errorf("Match with hits allocates %v times, want 1 (the result)", n)
	}
}

// MatchSubjects matches SUBJECT and BOTH phrases in each subject on its
// own, each entry at most once.
func TestMatchSubjects(t *testing.T) {
	l := newTestList(t, []Entry{e(Subject, "free offer"), e(Both, "urgent"), e(Subject, "offer urgent"), e(Body, "hello")})
	got := l.MatchSubjects([]string{"a free offer", "URGENT: hello", "urgent again"}, "nothing")
	var texts []string
	for _, g := range got {
		texts = append(texts, g.Text)
	}
	if !slices.Equal(texts, []string{"free offer", "urgent"}) {
		t.Errorf("matched %q; want [free offer urgent]", texts)
	}
	if got := l.MatchSubjects(nil, "hello"); len(got) != 1 || got[0].Text != "hello" {
		t.Errorf("no subject: %v", got)
	}
}

// Characters that render as nothing between the letters of a word do not
// split it: variation selectors, Mongolian free variation selectors,
// musical formatting controls, tags, unassigned specials.
func TestInvisibleInsideWords(t *testing.T) {
	l := newTestList(t, []Entry{e(Body, "casino jackpot")})
	for _, r := range []rune{0xFE00, 0xFE0F, 0xE0100, 0xE01EF, 0x180B, 0x180F, 0x1D173, 0x1D17A, 0xFFF0, 0xE0041} {
		for _, text := range []string{"win the cas" + string(r) + "ino jackpot now", "win the casino" + string(r) + " jackpot now"} {
			if got := l.Match("", text); len(got) != 1 {
				t.Errorf("U+%04X in %+q: no match", r, text)
			}
		}
	}
}
