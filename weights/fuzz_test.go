package weights

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// addFileSeeds adds every file of the shared test data as a seed.
func addFileSeeds(f *testing.F, add func(data []byte)) {
	files, err := filepath.Glob(filepath.Join(testdata, "*.xml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files in %s: %v", testdata, err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		add(data)
	}
}

// FuzzParse checks that Parse never panics, and that a list it accepts is
// valid throughout.
func FuzzParse(f *testing.F) {
	addFileSeeds(f, func(data []byte) { f.Add(data) })
	f.Add([]byte(`<CustomWeightEntries><CustomWeightEntry Type="BODY" Change="1" Text="a"/></CustomWeightEntries>`))
	f.Add([]byte("\xff\xfe<\x00"))
	f.Add([]byte("\xfe\xff\x00<"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse("fuzz.xml", bytes.NewReader(data))
		if err != nil {
			if l != nil {
				t.Fatal("Parse returned both a list and an error")
			}
			for _, pe := range parseErrors(err) {
				if pe.File != "fuzz.xml" || pe.Err == nil || pe.Line < 0 || pe.Entry < 0 {
					t.Fatalf("bad ParseError %#v", pe)
				}
			}
			return
		}
		lines := bytes.Count(data, []byte{'\n'}) + 1
		for i, e := range l.Entries() {
			switch {
			case e.Type != Body && e.Type != Subject && e.Type != Both:
				t.Fatalf("entry %d: Type %d", i, e.Type)
			case e.Kind != Delta && e.Kind != Min && e.Kind != Max:
				t.Fatalf("entry %d: Kind %d", i, e.Kind)
			case e.Kind != Delta && e.Change != 0:
				t.Fatalf("entry %d: Change %d with Kind %v", i, e.Change, e.Kind)
			case strings.TrimFunc(e.Text, unicode.IsSpace) == "" || utf8.RuneCountInString(e.Text) > MaxTextLen:
				t.Fatalf("entry %d: Text %q", i, e.Text)
			case !utf8.ValidString(e.Text):
				t.Fatalf("entry %d: Text %q is not UTF-8", i, e.Text)
			case e.Line < 1 || e.Line > lines:
				t.Fatalf("entry %d: Line %d of %d", i, e.Line, lines)
			}
			// Every entry matches its own phrase.
			var m []Entry
			switch e.Type {
			case Subject:
				m = l.Match(e.Text, "")
			default:
				m = l.Match("", e.Text)
			}
			if !slices.Contains(m, e) {
				t.Fatalf("entry %d (%q) does not match its own text", i, e.Text)
			}
		}
	})
}

// FuzzMatch checks List.Match against the slow reference matcher.
// phrases holds the entries' Texts separated by '|'.
func FuzzMatch(f *testing.F) {
	f.Add("free|special offer|EDIT:", "EDIT: hi", "FREE special\r\n offer freedom")
	f.Add("straße|é|e\u0301|x", "STRASSE", "cafe\u0301 É")
	f.Add("a|ab|abc|b|bc|c", "abcabc", "a b c ab bc")
	f.Add("$$$|-free|:-)", "win$$$", "un-free :-):-)")
	f.Add("ΟΔΟΣ|Лучшая цена|한국", "οδος", "ЛУЧШАЯ  ЦЕНА 한국어")
	f.Add("x\xffy| |\t", "x\xffy", "")
	addFileSeeds(f, func(data []byte) {
		if l, err := Parse("seed", bytes.NewReader(data)); err == nil {
			var texts []string
			for _, e := range l.Entries() {
				texts = append(texts, e.Text)
			}
			f.Add(strings.Join(texts, "|"), "EDIT: Offre spéciale", "special offer, VERLÄNGERTES ANGEBOT, free!")
		}
	})
	f.Fuzz(func(t *testing.T, phrases, subject, body string) {
		z := newNormalizer()
		var entries []Entry
		var ps []string
		for i, text := range strings.Split(phrases, "|") {
			if len(entries) == 200 {
				break
			}
			p := normalizePhrase(z, text)
			if p == "" {
				continue
			}
			entries = append(entries, Entry{Type: Type(1 + i%3), Kind: Delta, Change: i, Text: text, Line: i + 1})
			ps = append(ps, p)
		}
		var l *List
		if len(entries) > 0 {
			l = &List{source: "fuzz", entries: entries, m: compile(entries, ps)}
		}
		got := l.Match(subject, body)
		want := refMatch(entries, subject, body)
		if !slices.Equal(got, want) {
			t.Fatalf("Match(%q, %q) with %q\n got %v\nwant %v", subject, body, phrases, texts(got), texts(want))
		}
	})
}

// FuzzNormalize checks the fast normalisation against x/text.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "Hello  World", "e\u0301", "Straße", "ＦＲＥＥ", "\xff\xfe", "한국어\u11a8", "a\u00a0\u0301", "ﬁ\u0301", "\u0f73\u0f71"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		z := newNormalizer()
		if got, want := string(z.appendText(nil, s)), refNormalize(s); got != want {
			t.Fatalf("normalize(%q) = %q, want %q", s, got, want)
		}
	})
}
