package weights

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unicode/utf16"
)

// testdata is the project's shared test data for this package.
var testdata = filepath.Join("..", "testdata", "weights")

// sampleEntries are the entries of the sample files (utf8-nobom.xml etc.).
var sampleEntries = []Entry{
	{Type: Body, Kind: Delta, Change: 5, Text: "special offer", Line: 3},
	{Type: Body, Kind: Delta, Change: -9, Text: "Verlängertes Angebot", Line: 4},
	{Type: Subject, Kind: Min, Text: "EDIT:", Line: 5},
	{Type: Both, Kind: Max, Text: "Offre spéciale", Line: 6},
	{Type: Body, Kind: Delta, Change: 3, Text: "free", Line: 7},
	{Type: Subject, Kind: Max, Text: "Straße", Line: 8},
	{Type: Both, Kind: Delta, Change: -2, Text: "special offer", Line: 9},
	{Type: Body, Kind: Delta, Change: 1, Text: "Лучшая цена", Line: 11},
}

func TestLoadSamples(t *testing.T) {
	for _, name := range []string{
		"utf16le-bom.xml", "utf16be-bom.xml", "utf8-bom.xml", "utf8-nobom.xml",
		"decl-mismatch.xml", "decl-mismatch-utf16.xml",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(testdata, name)
			l, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if l.Source() != path {
				t.Errorf("Source() = %q, want %q", l.Source(), path)
			}
			if l.Len() != len(sampleEntries) {
				t.Fatalf("Len() = %d, want %d", l.Len(), len(sampleEntries))
			}
			for i, e := range l.Entries() {
				if e != sampleEntries[i] {
					t.Errorf("entry %d = %+v, want %+v", i+1, e, sampleEntries[i])
				}
			}
			got := l.Match("EDIT: offre SPÉCIALE", "a Special Offer!")
			want := []int{0, 2, 3, 6}
			if !slices.Equal(got, pick(sampleEntries, want...)) {
				t.Errorf("Match = %v, want entries %v", got, want)
			}
		})
	}
}

func TestLoadNoNamespace(t *testing.T) {
	l, err := Load(filepath.Join(testdata, "no-namespace.xml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Type: Body, Kind: Delta, Change: 2, Text: "cheap meds", Line: 4},
		{Type: Subject, Kind: Delta, Change: -1, Text: "invoice", Line: 5},
		{Type: Both, Kind: Delta, Change: 0, Text: "hello", Line: 6},
	}
	if got := l.Entries(); !slices.Equal(got, want) {
		t.Errorf("Entries() = %+v, want %+v", got, want)
	}
}

// wantErr is one expected *ParseError.
type wantErr struct {
	line, entry int
	msg         string // a substring of Err
}

func TestLoadBroken(t *testing.T) {
	for _, c := range []struct {
		file string
		want []wantErr
	}{
		{"bad-type.xml", []wantErr{
			{7, 5, `unknown Type "BODDY" (want BODY, SUBJECT or BOTH)`},
			{9, 7, `unknown Type "HEADER"`},
		}},
		{"bad-change.xml", []wantErr{
			{4, 2, `Change "five" is not an integer, MIN or MAX`},
			{5, 3, `Change "" is not an integer, MIN or MAX`},
			{6, 4, `Change "99999999999" is out of range`},
			{7, 5, `Change "MAXIMUM" is not an integer, MIN or MAX`},
			{8, 6, `missing Change attribute`},
		}},
		{"empty-text.xml", []wantErr{
			{3, 1, "empty Text"},
			{4, 2, "empty Text"},
			{5, 3, "missing Text attribute"},
			{6, 4, "empty Text"},
		}},
		{"long-text.xml", []wantErr{
			{4, 2, "Text is 1001 characters long, more than 1000"},
		}},
		{"malformed.xml", []wantErr{
			{5, 3, "XML syntax error: element <CustomWeightEntry> closed by </CustomWeightEntries> (noticed at line 7) (is this entry closed? write it <CustomWeightEntry .../>)"},
		}},
		{"latin1.xml", []wantErr{
			{4, 2, "not UTF-8 or UTF-16 with BOM (invalid byte 0xE4 after `Change=\"-9\" Text=\"Verl`)"},
		}},
		{"bad-utf16-line.xml", []wantErr{
			{9, 4, `unknown Type "BODDY"`},
		}},
	} {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(testdata, c.file)
			l, err := Load(path)
			if l != nil {
				t.Errorf("Load returned a list with %d entries", l.Len())
			}
			checkErrs(t, err, path, c.want)
		})
	}
}

// checkErrs checks that err joins exactly the ParseErrors in want.
func checkErrs(t *testing.T, err error, file string, want []wantErr) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	got := parseErrors(err)
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i, pe := range got {
		w := want[i]
		if pe.File != file || pe.Line != w.line || pe.Entry != w.entry || !strings.Contains(pe.Err.Error(), w.msg) {
			t.Errorf("error %d: File %q Line %d Entry %d Err %q\nwant File %q Line %d Entry %d Err containing %q",
				i+1, pe.File, pe.Line, pe.Entry, pe.Err, file, w.line, w.entry, w.msg)
		}
		if !strings.HasPrefix(pe.Error(), "weights: "+file) {
			t.Errorf("error %d: %q does not start with the file name", i+1, pe.Error())
		}
	}
}

// parseErrors returns the *ParseErrors joined in err.
func parseErrors(err error) []*ParseError {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*ParseError
	for _, e := range errs {
		var pe *ParseError
		if errors.As(e, &pe) {
			out = append(out, pe)
		} else {
			out = append(out, &ParseError{Err: e})
		}
	}
	return out
}

func TestErrorMessage(t *testing.T) {
	const doc = `<?xml version="1.0" encoding="UTF-16"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="5" Text="a"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="b"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="c"/>
  <CustomWeightEntry Type="BODY" Change="5" Text="d"/>
  <CustomWeightEntry Type="BODDY" Change="5" Text="special offer"/>
</CustomWeightEntries>`
	_, err := Parse("/etc/sclgate/weights.xml", strings.NewReader(doc))
	const want = `weights: /etc/sclgate/weights.xml line 7: entry 5 (Type="BODDY" Text="special offer"): unknown Type "BODDY" (want BODY, SUBJECT or BOTH)`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}

	// An over-long Text is cut in the message.
	_, err = Load(filepath.Join(testdata, "long-text.xml"))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("long Text error is %d bytes: %v", len(err.Error()), err)
	}
}

func TestParseInline(t *testing.T) {
	const head = `<?xml version="1.0"?>` + "\n"
	for _, c := range []struct {
		name, doc string
		entries   int
		want      []wantErr
	}{
		{"empty list", head + `<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight"></CustomWeightEntries>`, 0, nil},
		{"self-closing root", `<CustomWeightEntries/>`, 0, nil},
		{"other namespace", `<x:CustomWeightEntries xmlns:x="urn:x"><x:CustomWeightEntry Type="BODY" Change="1" Text="a"/></x:CustomWeightEntries>`, 1, nil},
		{"keywords any case, spaces", `<CustomWeightEntries><CustomWeightEntry Type=" both " Change=" Min " Text="a"/><CustomWeightEntry type="Body" change="-0" text="b"/></CustomWeightEntries>`, 2, nil},
		{"entry element in any case", `<CustomWeightEntries><customweightentry Type="BODY" Change="1" Text="a"/></CustomWeightEntries>`, 1, nil},
		{"root element in any case", `<customweightentries><CUSTOMWEIGHTENTRY Type="BODY" Change="1" Text="a"/></customweightentries>`, 1, nil},
		{"unclosed entry in another case", head + "<CustomWeightEntries>\n<customweightentry Type=\"BODY\" Change=\"1\" Text=\"a\">\n</CustomWeightEntries>", 0,
			[]wantErr{{3, 1, "(is this entry closed? write it <CustomWeightEntry .../>)"}}},
		{"entities", `<CustomWeightEntries><CustomWeightEntry Type="BODY" Change="1" Text="AT&amp;T &#x263A; &lt;b&gt;"/></CustomWeightEntries>`, 1, nil},
		{"comments and PIs", head + `<!-- c --><?pi x?><CustomWeightEntries><!-- c --><CustomWeightEntry Type="BODY" Change="1" Text="a"/></CustomWeightEntries><!-- after -->`, 1, nil},
		{"1000 characters", `<CustomWeightEntries><CustomWeightEntry Type="BODY" Change="1" Text="` + strings.Repeat("😀", 1000) + `"/></CustomWeightEntries>`, 1, nil},
		{"1000 characters and spaces around", `<CustomWeightEntries><CustomWeightEntry Type="BODY" Change="1" Text="   ` + strings.Repeat("a", 1000) + ` "/></CustomWeightEntries>`, 1, nil},

		{"empty file", ``, 0, []wantErr{{1, 0, "no <CustomWeightEntries> element"}}},
		{"only declaration", head, 0, []wantErr{{2, 0, "no <CustomWeightEntries> element"}}},
		{"wrong root", head + `<CustomWeights><CustomWeightEntry Type="BODY" Change="1" Text="a"/></CustomWeights>`, 0,
			[]wantErr{{2, 0, "root element is <CustomWeights>, want <CustomWeightEntries>"}}},
		{"unclosed root", head + "<CustomWeightEntries>\n", 0, []wantErr{{3, 0, "XML syntax error: unexpected EOF"}}},
		{"second root", head + "<CustomWeightEntries/>\n<CustomWeightEntries/>", 0,
			[]wantErr{{3, 0, "element <CustomWeightEntries> after the end of <CustomWeightEntries>"}}},
		{"text outside", head + "junk\n<CustomWeightEntries/>", 0, []wantErr{{2, 0, "text outside the root element"}}},
		{"missing everything", head + "<CustomWeightEntries>\n<CustomWeightEntry/>\n</CustomWeightEntries>", 0, []wantErr{
			{3, 1, "missing Type attribute"}, {3, 1, "missing Change attribute"}, {3, 1, "missing Text attribute"},
		}},
		{"duplicate attribute", `<CustomWeightEntries><CustomWeightEntry Type="BODY" type="SUBJECT" Change="1" Text="a"/></CustomWeightEntries>`, 0,
			[]wantErr{{1, 1, "more than one Type attribute"}}},
		{"bad and good entries", head + `<CustomWeightEntries>
<CustomWeightEntry Type="BODY" Change="1" Text="a"/>
<CustomWeightEntry Type="BODY" Change="1.5" Text="b"/>
<CustomWeightEntry Type="BODY" Change="++1" Text="c"/>
<CustomWeightEntry Type="" Change="1" Text="d"/>
</CustomWeightEntries>`, 0, []wantErr{
			{4, 2, `Change "1.5" is not an integer`}, {5, 3, `Change "++1" is not an integer`}, {6, 4, `unknown Type ""`},
		}},
		{"bad entity", head + "<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"a & b\"/>\n</CustomWeightEntries>", 0,
			[]wantErr{{3, 1, "XML syntax error"}}},
		{"unterminated quote", head + "<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"a\"/>\n<CustomWeightEntry Type=\"BODY\" Change=\"2\" Text=\"open/>\n<CustomWeightEntry Type=\"BODY\" Change=\"3\" Text=\"c\"/>\n</CustomWeightEntries>", 0,
			[]wantErr{{4, 2, "XML syntax error: unescaped < inside quoted string (noticed at line 5)"}}},
		{"UTF-16 without BOM", "<\x00C\x00/\x00>\x00", 0, []wantErr{{1, 0, "looks like UTF-16 without a byte order mark"}}},
		{"UTF-16 without BOM, blank line first", "\n\x00<\x00C\x00/\x00>\x00", 0, []wantErr{{1, 0, "looks like UTF-16 without a byte order mark"}}},
		{"UTF-32 LE", "\xff\xfe\x00\x00<\x00\x00\x00", 0, []wantErr{{1, 0, "UTF-32 is not read"}}},
		{"UTF-32 BE", "\x00\x00\xfe\xff\x00\x00\x00<", 0, []wantErr{{1, 0, "UTF-32 is not read"}}},
		{"UTF-16 odd length", "\xff\xfe<\x00C\x00/", 0, []wantErr{{1, 0, "odd number of bytes"}}},
		{"UTF-16 unpaired surrogate", "\xff\xfe<\x00\n\x00a\x00\x00\xd8b\x00", 0, []wantErr{{2, 0, "invalid UTF-16: unpaired surrogate 0xD800"}}},
		{"UTF-16 lone low surrogate", "\xfe\xff\x00<\xdc\x00", 0, []wantErr{{1, 0, "invalid UTF-16: unpaired surrogate 0xDC00"}}},
		{"bad UTF-8 after BOM", "\xef\xbb\xbf<CustomWeightEntries>\n\xff</CustomWeightEntries>", 0,
			[]wantErr{{2, 0, "invalid UTF-8 after a UTF-8 byte order mark (invalid byte 0xFF after the start of the line)"}}},
		{"bad byte in an entry", "<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"a\"/>\n<!-- <CustomWeightEntry -->\n<customweightentry Type=\"BODY\" Change=\"1\" Text=\"caf\xe9\"/>\n</CustomWeightEntries>", 0,
			[]wantErr{{4, 3, "invalid byte 0xE9 after `Change=\"1\" Text=\"caf`"}}},
		{"bad byte between entries", "<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"a\"/>\n<!-- \xe9 -->\n</CustomWeightEntries>", 0,
			[]wantErr{{3, 0, "invalid byte 0xE9 after `<!-- `"}}},
		{"UTF-16 unpaired surrogate in an entry", "\xff\xfe" + utf16le("<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"ab") + "\x00\xd8" + utf16le("\"/>\n</CustomWeightEntries>"), 0,
			[]wantErr{{2, 1, "invalid UTF-16: unpaired surrogate 0xD800 after `Change=\"1\" Text=\"ab`"}}},
		{"entry inside an entry", head + "<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"x\">\n  <CustomWeightEntry Type=\"BODY\" Change=\"MAX\" Text=\"y\"/>\n  <CustomWeightEntry Type=\"BODDY\" Change=\"zz\" Text=\"\"/>\n</CustomWeightEntry>\n</CustomWeightEntries>", 0,
			[]wantErr{{4, 1, "another <CustomWeightEntry> inside this entry would be lost"}, {5, 1, "another <CustomWeightEntry> inside this entry would be lost"}}},
		{"keywords are ASCII", "<CustomWeightEntries><CustomWeightEntry Type=\"\u017fubject\" Change=\"m\u0131n\" Text=\"a\"/></CustomWeightEntries>", 0,
			[]wantErr{{1, 1, "unknown Type \"\u017fubject\""}, {1, 1, "Change \"m\u0131n\" is not an integer"}}},
		{"XML 1.1", `<?xml version="1.1"?><CustomWeightEntries/>`, 0, []wantErr{{1, 0, `unsupported version "1.1"`}}},
		// Old Mac line ends: a syntax error is told at its line (the
		// decoder counts only LFs, and said line 1).
		{"CR line ends, syntax error", "<?xml version=\"1.0\"?>\r<CustomWeightEntries>\r  <CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"a\"/>\r  <CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"Tom & Jerry\"/>\r</CustomWeightEntries>\r", 0,
			[]wantErr{{4, 2, "XML syntax error: invalid character entity & (no semicolon)"}}},
		{"CR line ends", "<CustomWeightEntries>\r<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"a\r b\"/>\r</CustomWeightEntries>", 1, nil},
		// A character reference to half of a surrogate pair became U+FFFD
		// silently, and the phrase never matched.
		{"surrogate reference", "<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"&#xD83D;&#xDE00; deal\"/>\n</CustomWeightEntries>", 0,
			[]wantErr{{2, 1, "character reference &#xD83D; is half of a UTF-16 surrogate pair"}}},
		{"surrogate reference, decimal", "<CustomWeightEntries><CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"&#57343;\"/></CustomWeightEntries>", 0,
			[]wantErr{{1, 1, "character reference &#57343; is half"}}},
		{"entity a DOCTYPE declares", "<!DOCTYPE r [<!ENTITY co \"Contoso\">]>\n<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"&co; deal\"/>\n</CustomWeightEntries>", 0,
			[]wantErr{{3, 1, "XML syntax error: invalid character entity &co; (XML knows only &amp; &lt; &gt; &quot; &apos; and character references such as &#233;; entities a DOCTYPE declares are not expanded)"}}},
		{"replacement character written", "<CustomWeightEntries><CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"&#xFFFD; \uFFFD\"/></CustomWeightEntries>", 1, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := Parse("in.xml", strings.NewReader(c.doc))
			if c.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if l.Len() != c.entries {
					t.Errorf("Len() = %d, want %d", l.Len(), c.entries)
				}
				return
			}
			if l != nil {
				t.Errorf("Parse returned a list with %d entries", l.Len())
			}
			checkErrs(t, err, "in.xml", c.want)
		})
	}
}

func TestParseTooBig(t *testing.T) {
	r := io.MultiReader(strings.NewReader("<CustomWeightEntries>"), zeros{})
	_, err := Parse("big.xml", r)
	checkErrs(t, err, "big.xml", []wantErr{{0, 0, "file is larger than 64 MiB"}})
}

// zeros is an endless reader of spaces.
type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	copy(b, bytes.Repeat([]byte{' '}, len(b)))
	return len(b), nil
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.xml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestAccessors(t *testing.T) {
	var nilList *List
	if nilList.Len() != 0 || nilList.Entries() != nil || nilList.Source() != "" || nilList.Match("free", "free") != nil {
		t.Error("nil *List is not empty")
	}
	l, err := Load(filepath.Join(testdata, "utf8-nobom.xml"))
	if err != nil {
		t.Fatal(err)
	}
	e := l.Entries()
	e[0].Text = "changed"
	if l.Entries()[0].Text != "special offer" {
		t.Error("Entries() shares its slice with the List")
	}
	for _, c := range []struct {
		e    Entry
		want string
	}{
		{Entry{Kind: Delta, Change: 5}, "5"},
		{Entry{Kind: Delta, Change: -9}, "-9"},
		{Entry{Kind: Delta}, "0"},
		{Entry{Kind: Min}, "MIN"},
		{Entry{Kind: Max}, "MAX"},
	} {
		if got := c.e.ChangeString(); got != c.want {
			t.Errorf("%+v.ChangeString() = %q, want %q", c.e, got, c.want)
		}
	}
	for typ, want := range map[Type]string{Body: "BODY", Subject: "SUBJECT", Both: "BOTH", 0: "Type(0)"} {
		if typ.String() != want {
			t.Errorf("Type %d String() = %q, want %q", int(typ), typ.String(), want)
		}
	}
}

func pick(es []Entry, idx ...int) []Entry {
	var out []Entry
	for _, i := range idx {
		out = append(out, es[i])
	}
	return out
}

func TestParseTooManyPhraseBytes(t *testing.T) {
	if testing.Short() || raceEnabled {
		// scripts/test.sh runs it, in its pass without -race.
		t.Skip("slow: 1.5 s, ten times that with -race; runs without -short and -race")
	}
	// U+FDFA is one character that NFKC makes 18, 33 bytes in UTF-8.
	text := strings.Repeat("\ufdfa", MaxTextLen-10)
	var b strings.Builder
	b.WriteString("<CustomWeightEntries>\n")
	for i := 0; i*len(normalizePhrase(newNormalizer(), text)) <= maxPhraseBytes; i++ {
		fmt.Fprintf(&b, "<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"%06d %s\"/>\n", i, text)
	}
	b.WriteString("</CustomWeightEntries>\n")
	_, err := Parse("huge.xml", strings.NewReader(b.String()))
	checkErrs(t, err, "huge.xml", []wantErr{{0, 0, "more than the 4 MiB a list may have"}})
}

// Elements that are not entries are passed over (a later format may add
// some) but named, so that a misspelt entry does not vanish unseen.
func TestIgnoredElements(t *testing.T) {
	l, err := Parse("in.xml", strings.NewReader("<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"a\"/>\n<CustomWeigthEntry Type=\"BODY\" Change=\"MAX\" Text=\"casino\"/>\n</CustomWeightEntries>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Ignored(); l.Len() != 1 || len(got) != 1 || got[0] != "line 3: element <CustomWeigthEntry> is not <CustomWeightEntry>; it is ignored" {
		t.Errorf("%d entries, ignored %q", l.Len(), got)
	}
	// An entry of only invisible characters can never match (matching
	// leaves them out): the list still loads, without it, and says so.
	l, err = Parse("in.xml", strings.NewReader("<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"&#x200B;\"/>\n<CustomWeightEntry Type=\"BODY\" Change=\"2\" Text=\"b\"/>\n</CustomWeightEntries>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Ignored(); l.Len() != 1 || len(got) != 1 || !strings.Contains(got[0], `line 2: entry 1: Text "\u200b" is only characters that show as nothing`) {
		t.Errorf("%d entries, ignored %q", l.Len(), got)
	}
	// The note names the entry by its number, not by the Text's length.
	l, err = Parse("in.xml", strings.NewReader("<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"2\" Text=\"b\"/>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"&#xAD;&#xAD;&#xAD;&#xAD;&#xAD;&#xAD;&#xAD;\"/>\n</CustomWeightEntries>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Ignored(); len(got) != 1 || !strings.HasPrefix(got[0], "line 3: entry 2: Text ") {
		t.Errorf("ignored %q, want line 3: entry 2", got)
	}
}

// Surrogate pairs (characters beyond U+FFFF) in UTF-16 are valid.
func TestUTF16SurrogatePair(t *testing.T) {
	doc := "<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"win 😀 now\"/>\n</CustomWeightEntries>"
	b := []byte{0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(doc)) {
		b = append(b, byte(u), byte(u>>8))
	}
	l, err := Parse("u16.xml", bytes.NewReader(b))
	if err != nil || l.Len() != 1 || len(l.Match("", "WIN 😀 NOW")) != 1 {
		t.Fatalf("%v", err)
	}
}

// A file of many stray elements gives a bounded number of notes (each is
// logged at every load), the last one counting the rest, and a huge
// element name is shortened.
func TestIgnoredBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"a\"/>\n")
	b.WriteString("<" + strings.Repeat("x", 10000) + "/>\n")
	for range 1000 {
		b.WriteString("<Stray/>\n")
	}
	b.WriteString("</CustomWeightEntries>\n")
	l, err := Parse("in.xml", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	got := l.Ignored()
	if l.Len() != 1 || len(got) != maxIgnored+1 || got[maxIgnored] != "and 981 more ignored elements or entries" {
		t.Fatalf("%d entries, %d notes, last %q", l.Len(), len(got), got[len(got)-1])
	}
	if len(got[0]) > 200 || !strings.Contains(got[0], "xxx...>") {
		t.Errorf("long name: %q", got[0][:min(len(got[0]), 120)])
	}
}

// Errors name the right line whatever the file's line ends: LF, CRLF or
// CR alone.
func TestErrorLineWithCROnly(t *testing.T) {
	for _, eol := range []string{"\n", "\r\n", "\r"} {
		xml := strings.Join([]string{"<CustomWeightEntries>", `<CustomWeightEntry Type="BODY" Change="1" Text="a"/>`,
			`<CustomWeightEntry Type="BODY" Change="x" Text="b"/>`, "</CustomWeightEntries>"}, eol)
		_, err := Parse("in.xml", strings.NewReader(xml))
		if err == nil || !strings.Contains(err.Error(), "in.xml line 3:") {
			t.Errorf("line ends %q: %v", eol, err)
		}
	}
}

// utf16le encodes s (ASCII) as UTF-16 LE, for inline test files.
func utf16le(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		b.WriteByte(0)
	}
	return b.String()
}

// Elements other than entries inside an entry are noted as ignored.
func TestElementInsideEntryIgnored(t *testing.T) {
	l, err := Parse("in.xml", strings.NewReader("<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"x\">\n<Child><CustomWeightEntry/></Child>\n</CustomWeightEntry>\n</CustomWeightEntries>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Ignored(); l.Len() != 1 || len(got) != 1 || got[0] != "line 3: element <Child> inside entry 1 is ignored" {
		t.Errorf("%d entries, ignored %q", l.Len(), got)
	}
}

// A FIFO in the list's place is refused at once, not waited on.
func TestLoadNotRegular(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo.xml")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("FIFO: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
}

// Encoding errors and nesting too deep name the right line whatever the
// line ends (CR alone: old Mac editors), and nesting is refused early,
// not after the decoder kept every open element.
func TestParseErrorLinesAndDepth(t *testing.T) {
	entries := func(eol string) string {
		return strings.Join([]string{`<?xml version="1.0"?>`, `<CustomWeightEntries>`,
			`  <CustomWeightEntry Type="BODY" Change="1" Text="a"/>`,
			"  <CustomWeightEntry Type=\"BODY\" Change=\"-9\" Text=\"Verl\xe4ngert\"/>", `</CustomWeightEntries>`, ``}, eol)
	}
	utf16le := func(s string) []byte {
		b := []byte{0xff, 0xfe}
		for _, u := range utf16.Encode([]rune(s)) {
			b = append(b, byte(u), byte(u>>8))
		}
		return b
	}
	latin1CR := []byte(entries("\r"))
	// UTF-16 with a lone low surrogate where the ä is, CR line ends.
	lone := utf16le(strings.Replace(entries("\r"), "\xe4", "", 1))
	at := bytes.Index(lone, []byte{'V', 0, 'e', 0, 'r', 0, 'l', 0}) + 8
	lone = slices.Insert(lone, at, 0x00, 0xdc)
	deep := []byte("<CustomWeightEntries>\r\n<x>\r\n" + strings.Repeat("<a>", 1<<20))
	deepEntry := []byte("<CustomWeightEntries>\r\r<CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=\"x\">" + strings.Repeat("<a>", 200))
	for _, c := range []struct {
		name string
		data []byte
		want wantErr
	}{
		{"latin1-cr.xml", latin1CR, wantErr{4, 2, "invalid byte 0xE4"}},
		{"latin1-crlf.xml", []byte(entries("\r\n")), wantErr{4, 2, "invalid byte 0xE4"}},
		{"lone-cr.xml", lone, wantErr{4, 2, "unpaired surrogate 0xDC00"}},
		{"deep.xml", deep, wantErr{3, 0, "nested more than 100 deep"}},
		{"deep-entry.xml", deepEntry, wantErr{3, 1, "nested more than 100 deep"}},
		// A list copied from a web page: the hint says what is wrong.
		{"curly.xml", []byte("<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODY\" Change=\u201d6\" Text=\"x\"/>\n</CustomWeightEntries>\n"), wantErr{2, 1, "unquoted or missing attribute value in element (a typographic quote \u201d where \" belongs?"}},
		// 1,001 characters typed with decomposed accents (2,002 code
		// points) are 1,001, not 2,002.
		{"nfd.xml", []byte(`<CustomWeightEntries><CustomWeightEntry Type="BODY" Change="1" Text="` + strings.Repeat("e\u0301", 1001) + `"/></CustomWeightEntries>`), wantErr{1, 1, "Text is 1001 characters long"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.name, bytes.NewReader(c.data))
			if err == nil {
				t.Fatal("no error")
			}
			got := parseErrors(err)
			if len(got) == 0 || got[0].Line != c.want.line || got[0].Entry != c.want.entry || !strings.Contains(got[0].Err.Error(), c.want.msg) {
				t.Errorf("got %v\nwant line %d entry %d %q", err, c.want.line, c.want.entry, c.want.msg)
			}
		})
	}
}

// 1,000 characters typed with decomposed accents (as macOS input methods
// type them) are within the limit.
func TestParseTextLengthComposed(t *testing.T) {
	doc := `<CustomWeightEntries><CustomWeightEntry Type="BODY" Change="1" Text="` + strings.Repeat("e\u0301", 1000) + `"/></CustomWeightEntries>`
	if l, err := Parse("nfd.xml", strings.NewReader(doc)); err != nil || l.Len() != 1 {
		t.Fatalf("1,000 decomposed characters: %v", err)
	}
}
