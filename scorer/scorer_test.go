package scorer

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding/unicode"

	"github.com/sclgate/sclgate/weights"
)

// fixed is a test classifier with a set SCL, to show how weights move it.
type fixed int

func (fixed) Name() string { return "fixed" }
func (f fixed) Classify(context.Context, *Message) (Verdict, error) {
	return Verdict{SCL: int(f), Score: float64(f) / 9}, nil
}

type failing struct{}

func (failing) Name() string { return "failing" }
func (failing) Classify(context.Context, *Message) (Verdict, error) {
	return Verdict{}, errors.New("engine down")
}

func list(t *testing.T, entries ...string) *weights.List {
	t.Helper()
	xml := `<?xml version="1.0" encoding="UTF-8"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
` + strings.Join(entries, "\n") + "\n</CustomWeightEntries>\n"
	l, err := weights.Parse("test.xml", strings.NewReader(xml))
	if err != nil {
		t.Fatalf("weights.Parse: %v", err)
	}
	return l
}

func entry(typ, change, text string) string {
	return `<CustomWeightEntry Type="` + typ + `" Change="` + change + `" Text="` + text + `"/>`
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "messages", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func msg(subject, body string) []byte {
	return []byte("From: a@example.org\r\nTo: b@example.com\r\nSubject: " + subject + "\r\n\r\n" + body)
}

func TestScore(t *testing.T) {
	cases := []struct {
		name    string
		base    Classifier
		entries []string
		raw     []byte
		want    int
		rules   []string // matched entry texts, in file order
	}{
		{"no rules, none classifier", None{}, nil, msg("hi", "hello"), 0, nil},
		{"sum added", fixed(3), []string{entry("BODY", "2", "special offer"), entry("SUBJECT", "1", "deal")},
			msg("a deal", "a special offer"), 6, []string{"special offer", "deal"}},
		{"clamped at 9", fixed(8), []string{entry("BODY", "5", "special offer")}, msg("x", "special offer"), 9, []string{"special offer"}},
		{"clamped at 0", fixed(2), []string{entry("BODY", "-9", "invoice")}, msg("x", "your invoice"), 0, []string{"invoice"}},
		{"negative and positive", fixed(5), []string{entry("BODY", "-3", "invoice"), entry("BODY", "+2", "viagra")},
			msg("x", "invoice viagra"), 4, []string{"invoice", "viagra"}},
		{"MAX", fixed(0), []string{entry("BOTH", "MAX", "Offre spéciale")}, msg("x", "offre SPÉCIALE"), 9, []string{"Offre spéciale"}},
		{"MIN", fixed(9), []string{entry("SUBJECT", "MIN", "EDIT:")}, msg("EDIT: draft", "x"), 0, []string{"EDIT:"}},
		{"MIN beats MAX", fixed(5), []string{entry("BODY", "MAX", "casino"), entry("SUBJECT", "min", "EDIT:")},
			msg("EDIT: casino", "casino night"), 0, []string{"casino", "EDIT:"}},
		{"MAX ignores sum", fixed(0), []string{entry("BODY", "-9", "hello"), entry("BODY", "max", "casino")},
			msg("x", "hello casino"), 9, []string{"hello", "casino"}},
		{"each entry once", fixed(0), []string{entry("BODY", "2", "free")}, msg("x", "free free free FREE"), 2, []string{"free"}},
		{"BOTH counted once", fixed(0), []string{entry("BOTH", "3", "free")}, msg("free stuff", "free money"), 3, []string{"free"}},
		{"BODY not in subject", fixed(0), []string{entry("BODY", "3", "free")}, msg("free stuff", "nothing"), 0, nil},
		{"SUBJECT not in body", fixed(0), []string{entry("SUBJECT", "3", "free")}, msg("nothing", "free stuff"), 0, nil},
		{"word boundary", fixed(0), []string{entry("BODY", "4", "free")}, msg("x", "freedom and unfree"), 0, nil},
		{"word boundary punctuation", fixed(0), []string{entry("BODY", "4", "free")}, msg("x", "it's free!"), 4, []string{"free"}},
		{"case folding non-ASCII", fixed(0), []string{entry("BODY", "-9", "Verlängertes Angebot"), entry("BODY", "2", "x")},
			msg("x", "VERLÄNGERTES ANGEBOT"), 0, []string{"Verlängertes Angebot"}},
		{"line break inside phrase", fixed(1), []string{entry("BODY", "5", "special offer")},
			msg("x", "a special\r\n   offer today"), 6, []string{"special offer"}},
		{"phrase inside longer phrase", fixed(0), []string{entry("BODY", "1", "special offer"), entry("BODY", "2", "special offer ends")},
			msg("x", "the special offer ends"), 3, []string{"special offer", "special offer ends"}},
		{"encoded subject", fixed(0), []string{entry("SUBJECT", "MAX", "Verlängertes Angebot")},
			msg("=?UTF-8?B?VmVybMOkbmdlcnRlcyBBbmdlYm90?=", "x"), 9, []string{"Verlängertes Angebot"}},
		{"classifier SCL out of range clamped", fixed(12), nil, msg("x", "y"), 9, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := list(t, c.entries...)
			s := &Scorer{Classifier: c.base, Weights: func() *weights.List { return l }}
			r, err := s.Score(context.Background(), Parse(c.raw))
			if err != nil {
				t.Fatal(err)
			}
			if r.SCL != c.want {
				t.Errorf("SCL = %d, want %d (report: %s)", r.SCL, c.want, r.Report(0))
			}
			got := ruleTexts(r)
			if !slices.Equal(got, c.rules) {
				t.Errorf("rules = %q, want %q", got, c.rules)
			}
		})
	}
}

// TestScoreTestdata scores the sample messages: decoded subjects, base64 and
// quoted-printable HTML, charsets, and broken MIME still scored.
func TestScoreTestdata(t *testing.T) {
	l := list(t,
		entry("BODY", "5", "special offer"),
		entry("BODY", "-9", "Verlängertes Angebot"),
		entry("SUBJECT", "MIN", "EDIT:"),
		entry("BOTH", "MAX", "Offre spéciale"),
		entry("SUBJECT", "2", "verlängertes angebot"),
		entry("BODY", "1", "free money"),
		entry("BODY", "1", "freedom is"),
		entry("BODY", "1", "ignored title"),
	)
	cases := []struct {
		file  string
		want  int
		rules []string
	}{
		{"plain.eml", 5, []string{"special offer"}},
		// Subject "EDIT: Verlängertes Angebot": MIN wins over the body's MAX.
		{"html-base64.eml", 0, []string{"Verlängertes Angebot", "EDIT:", "Offre spéciale", "verlängertes angebot"}},
		{"html-qp-latin1.eml", 9, []string{"Verlängertes Angebot", "Offre spéciale", "verlängertes angebot"}},
		{"multipart-alt.eml", 7, []string{"special offer", "free money", "freedom is"}},
		{"broken-mime.eml", 5, []string{"special offer"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			s := &Scorer{Classifier: fixed(0), Weights: func() *weights.List { return l }}
			m := Parse(testdata(t, c.file))
			r, err := s.Score(context.Background(), m)
			if err != nil {
				t.Fatal(err)
			}
			got := ruleTexts(r)
			if r.SCL != c.want || !slices.Equal(got, c.rules) {
				t.Errorf("SCL %d rules %q, want %d %q\nsubject %q\ntext %q\ndefects %q", r.SCL, got, c.want, c.rules, m.Subject, m.Text, m.Defects)
			}
		})
	}
}

func TestParseHTML(t *testing.T) {
	m := Parse(testdata(t, "html-base64.eml"))
	if m.Subject != "EDIT: Verlängertes Angebot" {
		t.Errorf("subject %q", m.Subject)
	}
	if strings.Contains(m.Text, "special offer") || strings.Contains(m.Text, "ignored title") || strings.Contains(m.Text, "color") {
		t.Errorf("script, style or title rendered as text: %q", m.Text)
	}
	if !strings.Contains(m.Text, "Verlängertes Angebot") {
		t.Errorf("entity or inline tag not rendered: %q", m.Text)
	}
	if !slices.Equal(m.URLs, []string{"http://spam.example/buy"}) {
		t.Errorf("URLs %q", m.URLs)
	}
}

func TestParseBroken(t *testing.T) {
	m := Parse(testdata(t, "broken-mime.eml"))
	if len(m.Defects) == 0 {
		t.Error("no defects recorded for broken MIME")
	}
	if !strings.Contains(m.Text, "special offer inside an unknown charset") {
		t.Errorf("unknown-charset part not kept: %q", m.Text)
	}
	// Garbage that is not even a header still gets scored as text.
	m = Parse([]byte("\x00\x01 not a header at all\r\n\r\nspecial offer"))
	if !strings.Contains(m.Text, "special offer") {
		t.Errorf("unparsable header: text %q defects %q", m.Text, m.Defects)
	}
}

// TestParseEvasive reads the MIME tricks spam uses to hide its text from
// filters the way mail clients read them.
func TestParseEvasive(t *testing.T) {
	// Content-Type fields padded with empty parameters, which
	// mime.ParseMediaType refuses, on the multipart and on a base64 Big5
	// HTML part; and a page sent as application/octet-stream "offer.htm".
	m := Parse(testdata(t, "evasive-mime.eml"))
	for _, want := range []string{"最新台灣工商名錄 only today", "Brand new premium promotion"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("text %q: %q not read", m.Text, want)
		}
	}
	if !slices.Contains(m.Defects, "content-type: malformed, read as text/html") ||
		!slices.Contains(m.Defects, "content-type: malformed, read as multipart/mixed") {
		t.Errorf("defects %q", m.Defects)
	}
	if len(m.Parts) != 2 || m.Parts[0].ContentType != "text/html" || m.Parts[1].ContentType != "application/octet-stream" {
		t.Errorf("parts %+v", m.Parts)
	}
	// The admin's BODY phrases see that text too.
	s := &Scorer{Classifier: fixed(1), Weights: func() *weights.List {
		return list(t, entry("BODY", "MAX", "台灣工商"), entry("BODY", "3", "premium promotion"))
	}}
	if r, err := s.Score(context.Background(), m); err != nil || r.SCL != 9 || len(r.Rules) != 2 {
		t.Errorf("BODY rules on hidden text: SCL %d, rules %+v, %v", r.SCL, r.Rules, err)
	}

	// A multipart whose declared boundary never appears: its body is read
	// as text, not dropped.
	m = Parse([]byte("Subject: x\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"=Multipart Boundary 0925\"\r\n\r\n" +
		"--= Multipart Boundary 0925\r\nContent-Type: text/html\r\n\r\n" +
		"<html><body>cheap <b>meds</b> here</body></html>\r\n--= Multipart Boundary 0925--\r\n"))
	if !strings.Contains(m.Text, "cheap meds here") || strings.Contains(m.Text, "<b>") {
		t.Errorf("boundary-less multipart: text %q defects %q", m.Text, m.Defects)
	}
	if !slices.Contains(m.Defects, "mime: no part found, body read as text") {
		t.Errorf("defects %q", m.Defects)
	}

	// The boundary is there but the first part's header is broken: the
	// source is not read as text, and the real error is recorded.
	m = Parse([]byte("Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nthis is not a header\r\n\r\nhello\r\n--b--\r\n"))
	if strings.Contains(m.Text, "--b") || slices.Contains(m.Defects, "mime: no part found, body read as text") || len(m.Defects) == 0 {
		t.Errorf("broken first part: text %q defects %q", m.Text, m.Defects)
	}
	// An empty multipart is empty, not its preamble.
	m = Parse([]byte("Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n--b--\r\n"))
	if m.Text != "" {
		t.Errorf("empty multipart: text %q", m.Text)
	}
	// Padding around a quoted boundary holding ';', and a file name in RFC
	// 2231 pieces.
	m = Parse([]byte("Subject: x\r\nContent-Type: multipart/mixed;; boundary=\"a;b\";;\r\n\r\n" +
		"--a;b\r\nContent-Type: application/octet-stream;; name*0=\"offer\"; name*1=\".htm\"\r\n\r\n" +
		"<p>cheap meds</p>\r\n--a;b--\r\n"))
	if !strings.Contains(m.Text, "cheap meds") || strings.Contains(m.Text, "<p>") {
		t.Errorf("quoted boundary, RFC 2231 name: text %q defects %q parts %+v", m.Text, m.Defects, m.Parts)
	}

	// Fields that do not parse for want of a media type stay as they are.
	for _, v := range []string{"text", "/html;;", "text html;;", ";;;"} {
		if got := repairContentType(v); got != "" {
			t.Errorf("repairContentType(%q) = %q, want none", v, got)
		}
	}
	if got := repairContentType(`Text/Plain;; charset="iso-8859-1"; ;name=a;b`); got != "text/plain; charset=iso-8859-1; name=a" {
		t.Errorf("repairContentType = %q", got)
	}
}

func TestCJKTokens(t *testing.T) {
	for in, want := range map[string]string{
		"最新台灣":           "最新 新台 台灣",
		"中":              "中",
		"abc中文def":       "abc 中文 def",
		"a中b":            "a 中 b",
		"这是测试ABC123":     "这是 是测 测试 ABC123",
		"しじみともも":         "しじ じみ みと とも もも",
		"한국어":            "한국 국어",
		"メール":            "メー ール",
		"請致電13812345678": "請致 致電 <num11>",
		"中.abc":          "中 abc",
		"中abc-":          "中 abc",
	} {
		var got []string
		n := cjkTokens(in, 100, func(tok string) { got = append(got, tok) })
		if strings.Join(got, " ") != want || n != len(got) {
			t.Errorf("cjkTokens(%q) = %d %q, want %q", in, n, got, want)
		}
	}
	var got []string
	if n := cjkTokens("一二三四五", 2, func(tok string) { got = append(got, tok) }); n != 2 || len(got) != 2 {
		t.Errorf("limit 2: %d %q", n, got)
	}
}

func TestParseLimits(t *testing.T) {
	// Nesting far deeper than MaxDepth must stop, not recurse away.
	var b strings.Builder
	b.WriteString("Subject: deep\r\nMIME-Version: 1.0\r\n")
	for i := 0; i < 200; i++ {
		b.WriteString("Content-Type: multipart/mixed; boundary=\"b" + string(rune('a'+i%26)) + strings.Repeat("x", i) + "\"\r\n\r\n--b" + string(rune('a'+i%26)) + strings.Repeat("x", i) + "\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
	m := Parse([]byte(b.String()))
	if !slices.ContainsFunc(m.Defects, func(s string) bool { return strings.Contains(s, "nesting") }) {
		t.Errorf("deep nesting not flagged: %q", m.Defects)
	}

	// More parts than MaxParts.
	b.Reset()
	b.WriteString("Subject: many\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"z\"\r\n\r\n")
	for i := 0; i < MaxParts+50; i++ {
		b.WriteString("--z\r\nContent-Type: text/plain\r\n\r\npart\r\n")
	}
	b.WriteString("--z--\r\n")
	m = Parse([]byte(b.String()))
	if len(m.Parts) > MaxParts {
		t.Errorf("walked %d parts, limit %d", len(m.Parts), MaxParts)
	}
}

func TestClassifierError(t *testing.T) {
	s := &Scorer{Classifier: failing{}}
	if _, err := s.Score(context.Background(), Parse(msg("x", "y"))); err == nil || !strings.Contains(err.Error(), "engine down") {
		t.Errorf("err = %v", err)
	}
}

func TestReport(t *testing.T) {
	l := list(t, entry("BODY", "5", "special offer"), entry("SUBJECT", "MIN", "EDIT:"))
	s := &Scorer{Classifier: fixed(3), Weights: func() *weights.List { return l }}
	r, _ := s.Score(context.Background(), Parse(msg("EDIT: x", "special offer")))
	want := `scl=0 classifier=fixed score=0.3333333333333333 classifier_scl=3; rules: SUBJECT MIN "EDIT:", BODY 5 "special offer"`
	if got := r.Report(0); got != want {
		t.Errorf("Report =\n%s\nwant\n%s", got, want)
	}
	if got := r.Report(40); len(got) > 40 || !strings.HasSuffix(got, "...") {
		t.Errorf("Report(40) = %q", got)
	}
	for n := 1; n < 3; n++ { // no room but for the marker: no panic
		if got := r.Report(n); got != "..." {
			t.Errorf("Report(%d) = %q", n, got)
		}
	}

	// Many zero-weight matches before the one that decided: a cut report
	// keeps the deciding one (weightiest first; equal ones in file order).
	var es []string
	var body strings.Builder
	for i := range 150 {
		es = append(es, entry("BODY", "0", fmt.Sprintf("wordnumber%d", i)))
		fmt.Fprintf(&body, "wordnumber%d ", i)
	}
	es = append(es, entry("BODY", "1", "decisive phrase"), entry("BODY", "-1", "minor phrase"))
	body.WriteString("decisive phrase minor phrase")
	l = list(t, es...)
	r, _ = s.Score(context.Background(), Parse(msg("x", body.String())))
	got := r.Report(900)
	if !strings.Contains(got, `rules: BODY 1 "decisive phrase", BODY -1 "minor phrase", BODY 0 "wordnumber0", BODY 0 "wordnumber1",`) || len(got) > 900 {
		t.Errorf("Report(900) = %q", got)
	}
}

// A phrase is matched within one text part: the end of one part and the
// start of the next (the two halves of multipart/alternative, a text
// attachment) never make a phrase together. The model's Text is unchanged.
func TestPhrasesDoNotSpanParts(t *testing.T) {
	raw := []byte("From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nbuy our\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>special offer</p>\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nlast words\r\n--b--\r\n")
	m := Parse(raw)
	parts := m.TextParts()
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	if !slices.Equal(parts, []string{"buy our", "special offer", "last words"}) || strings.Join(m.TextParts(), "\n") != m.Text {
		t.Fatalf("Text %q, parts %q", m.Text, m.TextParts())
	}
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List {
		return list(t, entry("BODY", "3", "our special"), entry("BODY", "2", "offer last"), entry("BODY", "1", "special offer"), entry("BOTH", "4", "last words"))
	}}
	r, err := s.Score(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	got := ruleTexts(r)
	if !slices.Equal(got, []string{"special offer", "last words"}) || r.SCL != 5 {
		t.Errorf("matched %q, SCL %d; want [special offer, last words], SCL 5", got, r.SCL)
	}
	// One part: TextParts is Text.
	if p := Parse(msg("s", "one part")).TextParts(); !slices.Equal(p, []string{"one part"}) {
		t.Errorf("single part: %q", p)
	}
}

// Text labelled ISO-8859-1 or US-ASCII is read as Windows-1252, as mail
// clients read it: its euro sign and curly quotes are text, in the body and
// in RFC 2047 words, and phrase rules with them match.
func TestLatin1IsWindows1252(t *testing.T) {
	raw := []byte("From: a@example.org\r\nSubject: =?iso-8859-1?q?Only_=8020_=93today=94?=\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nPay \x80100 now, don\x92t wait\r\n" +
		"--b\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=E8me\r\n" +
		"--b\r\nContent-Type: text/plain; charset=iso-8859-15\r\n\r\nPrix \xa4 5\r\n--b--\r\n")
	m := Parse(raw)
	if m.Subject != "Only €20 “today”" {
		t.Errorf("subject %q", m.Subject)
	}
	parts := m.TextParts()
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	if want := []string{"Pay €100 now, don’t wait", "Café crème", "Prix € 5"}; !slices.Equal(parts, want) {
		t.Errorf("parts %q, want %q", parts, want)
	}
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List {
		return list(t, entry("BODY", "2", "€100"), entry("SUBJECT", "3", "“today”"), entry("BODY", "1", "café"))
	}}
	r, err := s.Score(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleTexts(r); !slices.Equal(got, []string{"€100", "“today”", "café"}) {
		t.Errorf("matched %q", got)
	}
}

// A part declared UTF-8 with one stray byte is read as UTF-8 (the byte
// shown as U+FFFD), as clients show it: it was read as Windows-1252, and
// a phrase with a non-ASCII letter never matched. A part cut at
// MaxPartBytes inside a character likewise stays UTF-8.
func TestUTF8PartWithStrayByte(t *testing.T) {
	raw := []byte("From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nVerl\xc3\xa4ngertes Angebot \xff\r\n" +
		"--b\r\nContent-Type: text/html; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte("<p>\xd1\x86\xd0\xb5\xd0\xbd\xd0\xb0 \xc0</p>")) + "\r\n--b--\r\n")
	parts := Parse(raw).TextParts()
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	if want := []string{"Verlängertes Angebot \uFFFD", "цена \uFFFD"}; !slices.Equal(parts, want) {
		t.Errorf("parts %q, want %q", parts, want)
	}
	// The cut: 'ä' is two bytes, the second past MaxPartBytes.
	body := "Verlängertes Angebot\r\n" + strings.Repeat("x", MaxPartBytes-len("Verlängertes Angebot\r\n")-1) + "ää\r\n"
	m := Parse([]byte("From: a@example.org\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body))
	if !strings.HasPrefix(m.Text, "Verlängertes Angebot") || !utf8.ValidString(m.Text) {
		t.Errorf("a part cut inside a character: text starts %q", m.Text[:30])
	}
	if m := Parse([]byte("From: a@example.org\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\ncaf\xe9\r\n")); strings.TrimSpace(m.Text) != "café" {
		t.Errorf("no charset, not UTF-8: %q (Windows-1252 as before)", m.Text)
	}
}

// An HTML part with no charset in its Content-Type is read in the charset
// its <meta> declares, as browsers and mail clients read it; a
// format=flowed delsp=yes part is unflowed, its soft-break spaces dropped.
func TestMetaCharsetAndFlowed(t *testing.T) {
	raw := []byte("From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1251\"></head><body>\xf6\xe5\xed\xe0</body></html>\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<meta charset=\"koi8-r\"><p>\xc3\xc5\xce\xc1</p>\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>caf\xe9</p>\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\na spe \r\ncial offer \r\n-- \r\nsig\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\na spe \r\ncial offer\r\n--b--\r\n")
	parts := wordsOfParts(raw)
	if want := []string{"цена", "цена", "café", "a special offer -- sig", "a spe cial offer"}; !slices.Equal(parts, want) {
		t.Errorf("parts %q, want %q", parts, want)
	}
	// A <meta> saying UTF-8 over a stray byte, x-user-defined (Windows-
	// 1252 to a browser), one after the first 1,024 bytes; quoted and
	// space-stuffed flowed lines.
	raw = []byte("From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<meta charset=\"utf-8\"><p>Verl\xc3\xa4ngertes \xff</p>\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<meta charset=\"x-user-defined\"><p>Verl\xe4ngertes</p>\r\n" +
		// A <meta> inside <noscript> counts, as for a mail client.
		"--b\r\nContent-Type: text/html\r\n\r\n<head><NoScript><meta charset=iso-8859-5></noscript></head><p>\xdf\xe0\xd8\xd2\xd5\xe2</p>\r\n" +
		// A <meta> after the first 1,024 bytes is not looked for (a
		// search for one took a <meta> in a comment or a script for one).
		"--b\r\nContent-Type: text/html\r\n\r\n<html><head><style>/*" + strings.Repeat("t", 1100) + "*/</style><!-- <meta charset=\"koi8-r\"> --></head><body>caf\xe9</body></html>\r\n" +
		// A page whose first bytes are UTF-8 but that says no charset is
		// not taken for one that says UTF-8.
		"--b\r\nContent-Type: text/html\r\n\r\n<p>\xc3\xa9t\xc3\xa9</p>" + strings.Repeat(" ", 1100) + "<p>caf\xe9</p>\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\n> get a spe \r\n> cial deal\r\nget it Fr \r\n ee now\r\n>> deep \r\n> shallow\r\n--b--\r\n")
	parts = wordsOfParts(raw)
	if want := []string{"Verlängertes \uFFFD", "Verlängertes", "привет", "café", "Ã©tÃ© café", "> get a special deal get it Free now >> deep > shallow"}; !slices.Equal(parts, want) {
		t.Errorf("parts %q, want %q", parts, want)
	}
}

// A page's <meta> is read as a browser reads it (found by a review
// against Chromium): before any guess from the bytes (windows-1251
// Cyrillic with soft hyphens between the letters is valid UTF-8 too),
// past a '<' before a non-ASCII byte (text, not a tag), and under a
// Content-Type charset no decoder knows. Text in <iframe>, <noembed> and
// <noframes> is never shown, a <textarea> is a box of its own, and
// quoted flowed lines are joined with delsp=no too.
func TestHTMLReadAsBrowsersDo(t *testing.T) {
	raw := []byte("From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<meta charset=windows-1251><p>\xe1\xad\xad\xe5\xad\xad\xf1\xad\xad\xad</p>\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<\xe0<meta charset=koi8-r><p>\xc3\xc5\xce\xc1</p>\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n</\xe0 a=\">\" <meta charset=koi8-r><p>\xc3\xc5\xce\xc1</p>\r\n" +
		"--b\r\nContent-Type: text/html; charset=x-foo\r\n\r\n<meta content=\"text/html; charset='koi8-r'\" http-equiv=Content-Type><p>\xc3\xc5\xce\xc1</p>\r\n" +
		// The first charset attribute counts; content= needs http-equiv.
		"--b\r\nContent-Type: text/html\r\n\r\n<meta content=\"charset=koi8-r\"><meta charset=iso-8859-5 charset=koi8-r><p>\xdf\xe0\xd8</p>\r\n" +
		// A charset= nobody knows is that <meta>'s answer: its content= does
		// not count, and with no other <meta> the part is Windows-1252.
		"--b\r\nContent-Type: text/html\r\n\r\n<meta charset=bogus http-equiv=content-type content=\"charset=koi8-r\"><p>\xc3\xc5\xce\xc1</p>\r\n" +
		// A <meta> saying Windows-1252 over UTF-8 bytes shows mojibake.
		"--b\r\nContent-Type: text/html\r\n\r\n<meta charset=iso-8859-1><p>caf\xc3\xa9</p>\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>a <iframe src=x>free</iframe><noembed>cash</noembed><noframes>now</noframes> b <textarea>x</textarea>y</p>\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n> get a \r\n> special deal\r\n>  stuffed \r\n> line\r\n--b--\r\n")
	parts := wordsOfParts(raw)
	want := []string{"б\u00ad\u00adе\u00ad\u00adс\u00ad\u00ad\u00ad", "<Ю цена", "\" цена", "цена", "при", "ÃÅÎÁ", "cafÃ©", "a b x y", "> get a special deal > stuffed line"}
	if !slices.Equal(parts, want) {
		t.Errorf("parts %q,\nwant %q", parts, want)
	}
}

// wordsOfParts is the text of each text part of raw, its words joined by
// one space.
func wordsOfParts(raw []byte) []string {
	parts := Parse(raw).TextParts()
	for i := range parts {
		parts[i] = strings.Join(strings.Fields(parts[i]), " ")
	}
	return parts
}

// A text part longer than MaxPartBytes is read in part, and says so.
func TestLongPartIsADefect(t *testing.T) {
	body := strings.Repeat("lorem ipsum dolor sit amet\r\n", MaxPartBytes/28+10) + "tail phrase\r\n"
	m := Parse(msg("long", body))
	if !slices.Contains(m.Defects, "part text/plain: longer than limit, truncated") || strings.Contains(m.Text, "tail phrase") {
		t.Errorf("defects %q; text ends %q", m.Defects, m.Text[len(m.Text)-40:])
	}
	if m := Parse(msg("short", "just this\r\n")); len(m.Defects) != 0 {
		t.Errorf("short part: defects %q", m.Defects)
	}
}

// ruleTexts is the Text of each rule r matched, in order.
func ruleTexts(r Result) []string {
	var out []string
	for _, e := range r.Rules {
		out = append(out, e.Text)
	}
	return out
}

func TestDecodeSubject(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                                 "plain",
		"=?ISO-8859-1?Q?=80?= =?utf-8?b?YQ==?=": "€a",
		"=?us-ascii*en?q?x?=":                   "x",
		"=?iso-8859-15?q?x?= =?":                "x =?",
		"a =? b =?iso-8859-1":                   "a =? b =?iso-8859-1",
		"=?=?us-ascii?q?x?=":                    "=?x",
		"a =?utf-8?q?b?=  c":                    "a b  c",
		// Not encoded words: left as they are.
		"plain =?US-ASCII? tail and =?iso-8859-1* oops": "plain =?US-ASCII? tail and =?iso-8859-1* oops",
		"=?iso-8859-1?x?a?=":                            "=?iso-8859-1?x?a?=",
		"=?iso-8859-1?q?a b?=":                          "=?iso-8859-1?q?a b?=",
		// Each word on its own: one that cannot be decoded does not keep
		// the others encoded (it hid "cheap pills" from SUBJECT rules).
		"=?utf-8?q?cheap_pills?= =?x-foo?q?=21?=": "cheap pills!",
		"=?utf-8?q?cheap_pills?= =?utf-8?q?=FF?=": "cheap pills\uFFFD",
		"=?utf-8*en?q?cheap_pills?=":              "cheap pills",
		"=?utf-7?q?cheap_pills?=":                 "cheap pills",
		"=?x-foo?q?cheap_pills?=":                 "cheap pills",
		"=?utf-8?b?!!!?= =?utf-8?q?cheap_pills?=": "=?utf-8?b?!!!?= cheap pills",
		// Charsets as mail clients read them: HZ decoded (the WHATWG table
		// gives one U+FFFD), UTF-16 by its byte order mark and else
		// big-endian, every US-ASCII name like US-ASCII, base64 without
		// its padding.
		"=?hz-gb-2312?Q?win_the_casino_jackpot?=":    "win the casino jackpot",
		"=?utf-16?B?/v8AdwBpAG4=?=":                  "win",
		"=?utf-16?B?//53AGkAbgA=?=":                  "win",
		"=?utf-16?B?AHcAaQBu?=":                      "win",
		"=?csascii?q?caf=C3=A9?=":                    "café",
		"=?utf-8?B?d2luIHRoZSBjYXNpbm8gamFja3BvdA?=": "win the casino jackpot",
		// A character split between two UTF-8 words is joined.
		"=?utf-8?q?caf=C3?= =?utf-8?q?=A9_cheap_pills?=": "café cheap pills",
		"=?UTF8?q?caf=C3?= =?utf-8?q?=A9?= x":            "café x",
	} {
		if got := decodeSubjectValue(in); got != want {
			t.Errorf("decodeSubjectValue(%q) = %q, want %q", in, got, want)
		}
	}
	// US-ASCII words read as US-ASCII bodies are: UTF-8 when it is.
	for raw, want := range map[string]string{
		"=?us-ascii?q?caf=C3=A9?=": "café",
		"=?us-ascii?q?caf=E9?=":    "café",
		"=?US-ASCII?Q?plain?=":     "plain",
	} {
		if got := Parse([]byte("Subject: " + raw + "\r\n\r\nbody\r\n")).Subject; got != want {
			t.Errorf("subject %s = %q, want %q", raw, got, want)
		}
	}
}

// A large message parsed from a stream with only its start in memory (as
// serve spools it) scores as the whole message does (as scan reads it):
// the model sees its whole size, not the size of the start.
func TestParseReaderWholeSize(t *testing.T) {
	raw := msg("big", strings.Repeat("lorem ipsum dolor sit amet, consectetur adipiscing\r\n", 20000)) // ~1 MB
	whole := Parse(raw)
	head, _ := engineTruncate(raw, EngineMaxSize)
	part := ParseReader(bytes.NewReader(raw), head, int64(len(raw)))
	var x1, x2 extractor
	x1.extract(whole)
	x2.extract(part)
	if !reflect.DeepEqual(x1.hs, x2.hs) || part.Size != int64(len(raw)) || len(part.Raw) >= len(raw) {
		t.Errorf("features differ (size %d, head %d bytes)", part.Size, len(part.Raw))
	}
}

func TestNewClassifierAddresses(t *testing.T) {
	for spec, want := range map[string]string{
		"spamd://127.0.0.1:783":    "",
		"spamd://127.0.0.1":        "",
		"spamd://[::1]:783":        "",
		"rspamd://localhost:11333": "",
		"spamd://127.0.0.1:abc":    `port "abc": want a number from 1 to 65535`,
		"rspamd://127.0.0.1:99999": `port "99999": want a number from 1 to 65535`,
		"spamd://127.0.0.1:0":      `port "0"`,
		"spamd://::1":              "an IPv6 address goes in brackets",
		"spamd://:783":             "no host",
		"spamd://127.0.0.1:783/x":  "unknown classifier",
		"clamd://127.0.0.1:3310":   "unknown classifier scheme",
	} {
		_, err := NewClassifier(spec, ClassifierOptions{})
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", spec, err, want)
		}
	}
	// No port: rspamd's normal worker's.
	c, _ := NewClassifier("rspamd://localhost", ClassifierOptions{})
	if r := c.(*Fallback).Primary.(*Rspamd); r.URL != "http://localhost:11333" {
		t.Errorf("rspamd URL %q", r.URL)
	}
}

// A verdict names the definitions only when the built-in model made it.
func TestResultDefinitions(t *testing.T) {
	m := Parse(msg("hi", "hello"))
	for _, tc := range []struct {
		c    Classifier
		want string
	}{
		{testModel(t), "v1"},
		{&Fallback{Primary: failing{}, Secondary: testModel(t)}, "v1"},
		{fixed(3), ""},
		{None{}, ""},
	} {
		r, err := (&Scorer{Classifier: tc.c, Definitions: "v1"}).Score(context.Background(), m)
		if err != nil || r.Definitions != tc.want {
			t.Errorf("%s: definitions %q (%v), want %q", r.Classifier, r.Definitions, err, tc.want)
		}
	}
}

// SUBJECT phrases are matched against every Subject field, each on its
// own: a second Subject (RFC 5322 allows one) does not hide a phrase from
// the weight list, and no phrase is made of the end of one and the start
// of the next. The model and the report keep reading the first.
func TestEverySubjectMatched(t *testing.T) {
	raw := []byte("From: a@example.org\r\nSubject: weekly minutes\r\nSubject: =?UTF-8?Q?cheap_p=C3=AFlls?= now\r\n" +
		"Subject: last\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nbody\r\n")
	m := Parse(raw)
	if m.Subject != "weekly minutes" || !slices.Equal(m.MoreSubjects, []string{"cheap pïlls now", "last"}) {
		t.Fatalf("Subject %q, MoreSubjects %q", m.Subject, m.MoreSubjects)
	}
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List {
		return list(t, entry("SUBJECT", "MAX", "cheap pïlls"), entry("SUBJECT", "3", "minutes cheap"), entry("BOTH", "2", "last"), entry("BODY", "4", "weekly"))
	}}
	r, err := s.Score(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleTexts(r); !slices.Equal(got, []string{"cheap pïlls", "last"}) || r.SCL != 9 {
		t.Errorf("matched %q, SCL %d; want [cheap pïlls, last], SCL 9", got, r.SCL)
	}
	// One Subject: nothing more.
	if m := Parse(msg("s", "b")); m.MoreSubjects != nil {
		t.Errorf("one Subject: MoreSubjects %q", m.MoreSubjects)
	}
}

// The page is read as a browser builds it (found by a review against
// Chromium): one "<svg><noembed>" read as raw text hid every word and link
// after it, stray end tags let <template> text count, and what the default
// style sheet hides (the hidden attribute, a closed <dialog> or
// <details>, SVG text outside <text>) poisoned the model and the phrases.
func TestHTMLTreeAsBrowsersBuildIt(t *testing.T) {
	for _, c := range []struct{ in, want, url string }{
		{`<svg><noembed></svg><p>cheap pills <a href="http://spam.example/">buy</a></p>`, "cheap pills buy", "http://spam.example/"},
		{`<svg><title></svg><p>cheap pills</p>`, "cheap pills", ""},
		{`<svg><iframe></svg><p>cheap pills</p>`, "cheap pills", ""},
		{`<math><noframes></math><p>cheap pills</p>`, "cheap pills", ""},
		{`<svg><xmp></svg><p>cheap <b>pills</b></p>`, "cheap pills", ""},
		{`<svg><style>css<p>cheap pills`, "cheap pills", ""},
		{`<p>v</p><style/>AFTER</style>x`, "v x", ""},
		{`<math><mi><style>css</style>vis</mi></math>`, "vis", ""},
		{`<p>vis</p><template></style>TPLPOISON</template>`, "vis", ""},
		{`<template><iframe/>x</iframe>POISON</template>vis`, "vis", ""},
		{`<template><img alt=POISON src="http://t.example/"></template>vis`, "vis", ""},
		{`<div hidden>POISON</div><dialog>POISON</dialog><dialog open>a</dialog><datalist><option>POISON</datalist>b`, "a b", ""},
		{`<details><summary>s</summary>POISON</details><details open><summary>t</summary>u</details>`, "s t u", ""},
		{`<ruby>k<rp>(POISON)</rp><rt>r</rt></ruby> <video>POISON</video><canvas>shown</canvas>`, "kr shown", ""},
		{`<svg>POISON<desc>POISON</desc><text>cheap <tspan>pills</tspan></text></svg> now`, "cheap pills now", ""},
		{`<svg><foreignObject><p>shown</p></foreignObject><a href="http://svg.example/"><text>x</text></a></svg>`, "shown x", "http://svg.example/"},
		{`<html><frameset><frame src="http://f.example/"><noframes>POISON</noframes></frameset></html>POISON`, "", ""},
		{`<table>cheap<tr><td>pills</td></tr></table>`, "cheap pills", ""},
		// A second review: each SVG <text> and block element is a word of
		// its own; text right in a <foreignObject> is shown; SVG <defs>,
		// MathML outside its token elements and <mphantom> are not.
		{`<svg><text x=0>cheap</text><text x=50>pills</text></svg><svg><text>now</text></svg>`, "cheap pills now", ""},
		{`<p>Buy<dir>viagra</dir>cheap<listing>pills</listing><select size=3><option>a</option><option>b</option></select></p>`, "Buy viagra cheap pills a b", ""},
		{`<svg><foreignObject>cheap pills<svg></svg> now</foreignObject><defs><text>POISON</text></defs></svg>`, "cheap pills now", ""},
		{`<math>POISON<mi>x</mi><mphantom><mi>POISON</mi></mphantom></math>`, "x", ""},
		{`<select><option>a</option><optgroup><option selected>b</option><option>POISON</option></optgroup>POISON</select>`, "b", ""},
		// A third review: which option a drop-down shows (not a disabled
		// one; its label; a list box at size "5x"), only options in a
		// <select>, an empty SVG inside a word, declarative shadow roots,
		// MathML's first-child-only elements and spaces, <progress>.
		{`<select><option disabled>POISON</option><option>cheap pills</option></select>`, "cheap pills", ""},
		{`<select><option label="cheap pills">POISON</option></select><select size="5x"><option>a</option><option>b</option></select>`, "cheap pills a b", ""},
		{`<select><option hidden>shown</option><option>POISON</option><div>POISON</div><button>POISON</button></select>`, "shown", ""},
		{`Buy ch<svg width=0 height=0></svg>eap pills`, "Buy cheap pills", ""},
		{`<div><template shadowrootmode=open>cheap <b><slot></slot></b> <slot name=n>POISON</slot></template>pills<span slot=n>now</span></div><div><template shadowrootmode=open>x</template>POISON</div>`, "cheap pills now x", ""},
		// A fourth review: each host child goes to the first slot of its
		// name (later ones show their fallback; one in another's fallback
		// is filled); what is in an option is shown, and options however
		// deep; a drop-down of disabled options, or multiple at size 1,
		// shows none; a list box shows its optgroups' labels.
		{`<div><template shadowrootmode=open>[<slot>FB1</slot>|<slot>FB2</slot>]</template>light</div>`, "[light|FB2]", ""},
		{`<div><template shadowrootmode=open>[<slot name=a><slot name=b>fb</slot></slot>]</template><span slot=b>cheap pills</span></div>`, "[cheap pills]", ""},
		{`<select><option><b>cheap</b> <span>pills</span></option></select><select><div><option>now</option></div></select>`, "cheap pills now", ""},
		{`<select size=3><div><option>a</option><option>b</option></div><optgroup label=G><option>c</option></optgroup></select>`, "a b G c", ""},
		{`<select><option disabled>POISON</option><option disabled>POISON</option></select><select multiple size=1><option>POISON</option></select>x`, "x", ""},
		// Renamed formatting elements (untangle) host no shadow root.
		{`<b><template shadowrootmode=open>POISON</template>cheap</b> <a href="http://l.example/"><template shadowrootmode=open>POISON</template>pills</a>`, "cheap pills", "http://l.example/"},
		// The formatting elements keep the builder's rules (an eleventh
		// review: renamed, "<b hidden><div></b>" hid the whole body).
		{`<b hidden><div></b>cheap pills`, "cheap pills", ""},
		{`<b><span hidden><div>cheap</b> <a><span hidden><div>pills<a>x</a> <nobr><video><div>now<nobr>y`, "cheap pillsx nowy", ""},
		{`<p><b hidden>x</p>POISON<svg><font>POISON</font></svg>`, "", ""},
		{`<math><semantics><mtext>cheap</mtext><annotation>POISON</annotation><mtext>POISON</mtext></semantics><mspace/><mtext>pills</mtext></math> a<progress>POISON</progress><meter>POISON</meter><svg><text display="none">POISON</text></svg>`, "cheap pills a", ""},
	} {
		got, urls, deep := htmlToText(c.in)
		if w := strings.Join(strings.Fields(got), " "); w != c.want || deep {
			t.Errorf("%s: read %q (deep %v), want %q", c.in, w, deep, c.want)
		}
		if c.url != "" && !slices.Contains(urls, c.url) || c.url == "" && len(urls) > 0 && !strings.Contains(c.in, "frame") {
			t.Errorf("%s: links %q, want %q", c.in, urls, c.url)
		}
	}
	// Deeper than x/net's parser goes (512), or costlier to build than
	// maxTreeCost (400 formatting elements copied into each of 2,500
	// paragraphs: a 14 KB page the tree builder made 185 MB of): read tag
	// by tag, and said.
	var bs strings.Builder
	for i := range 400 {
		fmt.Fprintf(&bs, "<b id=%d>", i)
	}
	var attrs strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&attrs, " a%d", i)
	}
	var roots strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&roots, "<html a%d><body b%d>", i, i)
	}
	attack := bs.String() + strings.Repeat("<p>x", 2500)
	const tagByTag = "html read tag by tag: nested deeper than the HTML parser goes, or too costly to build as a tree"
	// Too deep, or too costly to build: read tag by tag, and said.
	for _, page := range []string{
		strings.Repeat("<div>", 600) + "<svg><noembed></svg><p>cheap pills</p>",
		// <html> and <body> attributes merged again and again.
		roots.String() + "<p>cheap pills",
		// A deep stack walked for each of many tags, also where the
		// builder ignores the end tags that would close it (</span>s
		// past a <div>).
		strings.Repeat("<span>", 500) + strings.Repeat("</x>", 50000) + "<p>cheap pills",
		strings.Repeat("<span>", 505) + "<div>" + strings.Repeat("</span>", 505) + strings.Repeat("</p>", 50000) + "<p>cheap pills",
		"<div><select>" + strings.Repeat("<span>", 500) + "</div>" + strings.Repeat("</h1>", 50000) + "<p>cheap pills",
		// One element's attributes gone through for each token after it
		// (a MathML <annotation-xml>'s, looking for an encoding).
		"<math><annotation-xml" + attrs.String() + ">" + strings.Repeat("<!---->", 10000) + "</annotation-xml></math><p>cheap pills",
		// Long element names compared rune by rune in SVG, per end tag.
		"<svg>" + strings.Repeat("<x"+strings.Repeat("\u00c9", 49)+">", 505) + strings.Repeat("</x"+strings.Repeat("\u00e9", 49)+"z>", 2000) + "</svg><p>cheap pills",
	} {
		m := Parse([]byte("Subject: s\r\nContent-Type: text/html\r\n\r\n" + page))
		if !strings.Contains(m.Text, "cheap pills") || !slices.Contains(m.Defects, tagByTag) {
			t.Errorf("%.40s...: text %.80q, defects %q", page, strings.TrimSpace(m.Text), m.Defects)
		}
	}
	// Formatting elements left open and copied into every paragraph
	// after them (400 <b>s: 4 GB from 244 KB; hidden in <noscript> or
	// <svg><style>; one with 2,000 attributes; kept open past <object>,
	// <td>, the adoption agency's 8 passes, or an <a> before a marker):
	// counted as open whatever the markup, too costly to build.
	for _, page := range []string{
		"<div>" + bs.String() + "</div><svg><p><![CDATA[x]]></p></svg>" + strings.Repeat("<p>x", 2500) + "<p>cheap pills",
		"<noscript><p>" + attack + "<p>cheap pills",
		"<svg><style></svg><p>" + attack + "<p>cheap pills",
		"<p><b" + attrs.String() + ">x</p>" + strings.Repeat("<p>x", 2000) + "<p>cheap pills",
		"<p><b" + attrs.String() + "><object></b></object></p>" + strings.Repeat("<p>x", 2000) + "<p>cheap pills",
		strings.Repeat("<div><td><b id=1><object></td></b></object></div>", 400) + strings.Repeat("<p>x</p>", 3000) + "<p>cheap pills",
		strings.Repeat("<div><b id=1>"+strings.Repeat("<div>", 9)+"</b>"+strings.Repeat("</div>", 10), 400) + strings.Repeat("<p>x", 3000) + "<p>cheap pills",
		"<div><a" + attrs.String() + "><object><a></object></div>" + strings.Repeat("<p>x", 2000) + "<p>cheap pills",
	} {
		m := Parse([]byte("Subject: s\r\nContent-Type: text/html\r\n\r\n" + page))
		if !strings.Contains(m.Text, "cheap pills") || strings.Contains(m.Text, "[x]") || !slices.Contains(m.Defects, tagByTag) {
			t.Errorf("%.40s...: text %.80q, defects %q", page, strings.TrimSpace(m.Text), m.Defects)
		}
	}
}

// Charset labels are read as the recipient's client reads them: ISO-8859-9
// as Windows-1254 (WHATWG); UTF-16 without a byte order mark both ways
// (little-endian to browsers and Thunderbird, big-endian to RFC 2781
// and decoders that follow it), since a guess from the bytes is the
// sender's to steer (ideographic spaces, bytes 00 30, made little-endian
// text look big-endian), in bodies and in RFC 2047 words.
func TestCharsetLabelsAsClientsRead(t *testing.T) {
	le := func(s string) string {
		b, _ := unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM).NewEncoder().String(s)
		return b
	}
	be := func(s string) string {
		b, _ := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder().String(s)
		return b
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct{ ct, body, subject, want string }{
		{"text/html; charset=utf-16", le("<p>cheap pills"), le("cheap ") + "|" + le("pills"), "cheap pills"},
		{"text/html; charset=UTF-16", be("<p>cheap pills"), be("cheap ") + "|" + be("pills"), "cheap pills"},
		{"text/plain; charset=utf-16", le(strings.Repeat("\u3000", 200) + "cheap pills"), be("cheap ") + "|" + be("pills"), "cheap pills"},
		{"text/plain; charset=utf-16", le("免费发票"), le("免费") + "|" + le("发票"), "免费发票"},
		{"text/plain; charset=utf-16", "\xff\xfe" + le("<p>cheap pills"), le(strings.Repeat("\u3000", 20)+"cheap ") + "|" + le("pills"), "<p>cheap pills"},
		{"text/plain; charset=utf-16", "\xfe\xff" + be("<p>cheap pills"), be("cheap ") + "|" + be("pills"), "<p>cheap pills"},
		// The reading a sender steers first opens a comment in HTML that
		// would hide the other one: each is a page of its own.
		{"text/html; charset=utf-16", le("<title>" + strings.Repeat("\u3000", 200) + "\u3c00\u2100\u2d00\u2d00</title><p>Buy cheap pills now</p>"), "", "cheap pills"},
		{"text/plain; charset=iso-8859-9", "\x80100 bonus, don\x92t miss", "", "€100 bonus, don’t miss"},
		{"text/plain; charset=latin5", "\x80100", "", "€100"},
	} {
		subject := "plain"
		if w1, w2, ok := strings.Cut(c.subject, "|"); ok {
			subject = "=?utf-16?b?" + b64(w1) + "?= =?utf-16?b?" + b64(w2) + "?="
		}
		raw := "From: a@example.org\r\nSubject: " + subject + "\r\nContent-Type: " + c.ct + "\r\n\r\n" + c.body
		m := Parse([]byte(raw))
		if got := strings.Join(strings.Fields(m.Text), " "); !strings.Contains(got, c.want) {
			t.Errorf("%s %q: read %q, want %q in it", c.ct, c.body, got, c.want)
		}
		if w1, w2, ok := strings.Cut(c.subject, "|"); ok {
			subjects := append([]string{m.Subject}, m.MoreSubjects...)
			phrase := "cheap pills"
			if strings.Contains(c.want, "免") {
				phrase = "免费发票"
			}
			if !slices.ContainsFunc(subjects, func(s string) bool { return strings.Contains(s, phrase) }) {
				t.Errorf("subject %q %q read %q, want %q in one reading", w1, w2, subjects, phrase)
			}
		}
	}
}

// Slots cannot multiply the host's children: each is read once, however
// many slots of its name a tree has, nested to any depth (a 3 KB page of
// 40 nested hosts with two slots each took all memory).
func TestShadowSlotsReadOnce(t *testing.T) {
	page := strings.Repeat("<div><template shadowrootmode=open><slot></slot><slot></slot></template>", 40) + "cheap pills" + strings.Repeat("</div>", 40)
	got, _, _ := htmlToText(page)
	if n := strings.Count(got, "cheap pills"); n != 1 {
		t.Errorf("read %d times, want once", n)
	}
}

// UTF-16 in RFC 2047 parameters (go-message passes the label through)
// and a charset label with white space (decoded once, by go-message).
func TestUTF16ParamsAndPaddedLabel(t *testing.T) {
	le := func(s string) string {
		b, _ := unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewEncoder().String(s)
		return b
	}
	name := "=?utf-16?B?" + base64.StdEncoding.EncodeToString([]byte(le("offer.html"))) + "?="
	raw := "From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\n\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"" + name + "\"\r\n\r\n<p>cheap pills</p>\r\n" +
		"--b\r\nContent-Type: text/plain; charset=\"utf-16 \"\r\n\r\n" + le("buy now") + "\r\n--b--\r\n"
	m := Parse([]byte(raw))
	if !strings.Contains(m.Text, "cheap pills") || !strings.Contains(m.Text, "buy now") || m.Parts[1].Filename != "offer.html" {
		t.Errorf("text %q, parts %+v", m.Text, m.Parts)
	}
}

// What building HTML into trees may cost is a message's, not each part's:
// parts each just under the bound, repeated, took seconds.
func TestHTMLBudgetPerMessage(t *testing.T) {
	part := "<html><body>" + strings.Repeat("<span>", 505) + strings.Repeat("</p>", 12000) + "cheap pills"
	one := func(n int) *Message {
		raw := "From: a@example.org\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n" +
			strings.Repeat("--zz\r\nContent-Type: text/html\r\n\r\n"+part+"\r\n", n) + "--zz--\r\n"
		return Parse([]byte(raw))
	}
	const defect = "html read tag by tag: nested deeper than the HTML parser goes, or too costly to build as a tree"
	if m := one(1); slices.Contains(m.Defects, defect) {
		t.Errorf("one part: defects %q", m.Defects)
	}
	if m := one(4); !slices.Contains(m.Defects, defect) || strings.Count(m.Text, "cheap pills") != 4 {
		t.Errorf("four parts: defects %q, text has %d phrases", m.Defects, strings.Count(m.Text, "cheap pills"))
	}
}

// A message cut for an external engine is cut at a line end near the
// limit, and within a line when there is none near it: a body of one long
// line must not reach the engine empty.
func TestEngineTruncate(t *testing.T) {
	head := "Subject: x\r\n\r\n"
	lines := []byte(head + strings.Repeat("word word word\r\n", 100))
	if cut, ok := engineTruncate(lines, 1000); !ok || len(cut) > 1000 || cut[len(cut)-1] != '\n' || len(cut) < 1000-16 {
		t.Errorf("lines: cut to %d bytes ending %q", len(cut), cut[len(cut)-1:])
	}
	long := []byte(head + strings.Repeat("x", 20000) + "\r\n")
	if cut, ok := engineTruncate(long, 10000); !ok || len(cut) != 10000 {
		t.Errorf("one long line: cut to %d bytes, want 10000", len(cut))
	}
	if cut, ok := engineTruncate(lines, len(lines)); ok || len(cut) != len(lines) {
		t.Errorf("within the limit: cut to %d bytes", len(cut))
	}
}

// Text in Outlook-only conditional comments in the body is read, as a text
// of its own: Outlook for Windows (Word) shows it and browsers do not, so
// a sender could show Exchange users words that no phrase rule saw. What
// browsers show and Outlook hides is read as before; comments in the head
// (Word's document properties), negated or non-mso conditions, ordinary
// comments and <xml> data islands are not read.
func TestOutlookConditionalComments(t *testing.T) {
	page := "<html><head><!--[if gte mso 9]><xml><o:Author>Head Author</o:Author></xml><![endif]--></head><body>" +
		"<!--[if mso]><p>Special offer: wire the deposit</p><a href=\"http://outlook-only.example/\">x</a><![endif]-->" +
		"<!--[if !mso]><!--><p>Hello</p><!--<![endif]-->" +
		"<!--[if IE]><p>internet explorer</p><![endif]--><!-- a note -->" +
		"<!--[IF (GTE MSO 9)|(IE)]><table><tr><td><xml>island</xml>second<![endif]-->" +
		"<p>shown</p><!--[if mso]></td></tr></table><![endif]--></body></html>"
	raw := []byte("From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + page + "\r\n")
	m := Parse(raw)
	parts := wordsOfParts(raw)
	want := []string{"Hello shown", "Special offer: wire the deposit x second"}
	if !slices.Equal(parts, want) {
		t.Errorf("parts %q,\nwant %q", parts, want)
	}
	if !slices.Contains(m.URLs, "http://outlook-only.example/") {
		t.Errorf("links %q: the Outlook-only link is missing", m.URLs)
	}
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List {
		return list(t, entry("BODY", "MAX", "special offer"), entry("BODY", "1", "hello"), entry("BODY", "1", "hello special"))
	}}
	r, err := s.Score(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleTexts(r); !slices.Equal(got, []string{"special offer", "hello"}) || r.SCL != 9 {
		t.Errorf("matched %q, SCL %d; want [special offer, hello], SCL 9", got, r.SCL)
	}
	// A page without such comments reads as one text, as before; one
	// whose Outlook-only comments hold only scaffolding has no second
	// part.
	for _, page := range []string{"<p>a<!--[if !mso]>b<![endif]--></p>", "<!--[if mso]><table><tr><td><![endif]--><p>a</p><!--[if mso]></td></tr></table><![endif]-->"} {
		if p := wordsOfParts([]byte("Content-Type: text/html\r\n\r\n" + page)); !slices.Equal(p, []string{"a"}) {
			t.Errorf("%q: %q", page, p)
		}
	}
	// Wherever the tree builder puts the comment (before any content, on
	// the document; after </body>; in the head), and in a page read tag
	// by tag (nested past the parser's 512 levels).
	deep := strings.Repeat("<div>", 600) + "hello"
	for _, page := range []string{
		"<!--[if mso]><p>wire the deposit</p><![endif]--><p>hello</p>",
		"<html><body><p>hello</p></body></html><!--[if mso]><p>wire the deposit</p><![endif]-->",
		"<html><head><!--[if gte mso 9]><xml><o:Author>x</o:Author></xml><p>wire the deposit</p><![endif]--></head><body><p>hello</p></body></html>",
		deep + "<!--[if mso]><p>wire the deposit</p><![endif]-->",
	} {
		p := wordsOfParts([]byte("Content-Type: text/html\r\n\r\n" + page))
		if len(p) != 2 || !strings.HasSuffix(p[0], "hello") || p[1] != "wire the deposit" {
			t.Errorf("%.80q: %.200q", page, p)
		}
	}
}
