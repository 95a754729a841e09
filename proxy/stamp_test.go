package proxy

import (
	"io"
	"mime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sclgate/sclgate/scorer"
	"github.com/sclgate/sclgate/weights"
)

// Case 12: stamp puts our fields on top, removes verdict fields from
// outside (with their continuation lines) and leaves every other byte,
// the body above all, as it was.
func TestStamp(t *testing.T) {
	fields := []string{"X-SCL: 3", "X-SCL-Report: scl=3\r\n\tmore"}
	const top = "X-SCL: 3\r\nX-SCL-Report: scl=3\r\n\tmore\r\n"
	cases := []struct {
		name, in, want string
	}{
		{"empty message", "", ""},
		{"nothing to drop",
			"From: a@example.org\r\nTo: b@example.com\r\n\r\nbody\r\n",
			"From: a@example.org\r\nTo: b@example.com\r\n\r\nbody\r\n"},
		{"no header/body separator",
			"Subject: hi\r\nX-SCL: 5\r\nFrom: a@example.org\r\n",
			"Subject: hi\r\nFrom: a@example.org\r\n"},
		{"no separator, no final line end",
			"Subject: hi\r\nX-SCL: 5\r\nFrom: a@example.org",
			"Subject: hi\r\nFrom: a@example.org"},
		{"no separator, dropped field last without line end",
			"Subject: hi\r\nX-SCL: 5",
			"Subject: hi\r\n"},
		{"only dropped fields, no separator",
			"X-SCL: 1\r\nX-Spam-Flag: YES\r\n",
			""},
		{"LF-only line ends",
			"From: a\nX-Spam-Flag: YES\nTo: b\n\nbody\nX-SCL: 1\n",
			"From: a\nTo: b\n\nbody\nX-SCL: 1\n"},
		{"LF-only, dropped field last",
			"From: a\nX-SCL: 9\n\nbody\n",
			"From: a\n\nbody\n"},
		{"dropped field is the last header",
			"From: a\r\nX-SCL: 9\r\n\r\nbody\r\n",
			"From: a\r\n\r\nbody\r\n"},
		{"dropped field is the first header",
			"X-SCL: 9\r\nFrom: a\r\n\r\nbody\r\n",
			"From: a\r\n\r\nbody\r\n"},
		{"continuation lines of a dropped field",
			"From: a\r\nX-SCL-Report: scl=0\r\n classifier=none\r\n\tscore=0\r\nTo: b\r\n\r\nbody\r\n",
			"From: a\r\nTo: b\r\n\r\nbody\r\n"},
		{"folded dropped field is the last header",
			"From: a\r\nX-SCL-Report: scl=0\r\n\tforged\r\n\r\nbody\r\n",
			"From: a\r\n\r\nbody\r\n"},
		{"continuation lines before the first field go (they would join ours)",
			" scl=0 classifier=forged\r\n\tmore\r\n \r\nFrom: a\r\n\r\n body\r\n",
			"From: a\r\n\r\n body\r\n"},
		{"a verdict field whose colon is on a continuation line (unfolded: X-SCL : 1)",
			"From: a\r\nX-SCL\r\n : 1\r\nTo: b\r\n\r\nbody\r\n",
			"From: a\r\nTo: b\r\n\r\nbody\r\n"},
		{"the colon after a continuation line of white space only",
			"From: a\r\nX-SCL\r\n \r\n : 1\r\nX-MS-Exchange-Organization-SCL\r\n\t\r\n\t: -1\r\nTo: b\r\n\r\nbody\r\n",
			"From: a\r\nTo: b\r\n\r\nbody\r\n"},
		{"a line without a colon, not a verdict field, stays",
			"From: a\r\nX-Other\r\n : 1\r\nbogus line\r\nTo: b\r\n\r\nbody\r\n",
			"From: a\r\nX-Other\r\n : 1\r\nbogus line\r\nTo: b\r\n\r\nbody\r\n"},
		{"only continuation lines",
			" x\r\n\ty", ""},
		{"continuation lines on top, then a dropped field",
			" x\nX-SCL: 0\nFrom: a\n\nb\n",
			"From: a\n\nb\n"},
		{"continuation lines of a kept field stay",
			"Subject: a\r\n long\r\n\tsubject\r\nX-SCL: 1\r\n\r\nb\r\n",
			"Subject: a\r\n long\r\n\tsubject\r\n\r\nb\r\n"},
		{"a run of dropped fields",
			"X-SCL: 1\r\nX-Spam-Flag: YES\r\nX-MS-Exchange-Organization-SCL: -1\r\nFrom: a\r\n\r\nb\r\n",
			"From: a\r\n\r\nb\r\n"},
		{"dropped and kept alternate",
			"A: 1\r\nX-SCL: 1\r\nB: 2\r\nx-spam-flag: YES\r\nC: 3\r\nX-Ms-Exchange-Organization-Scl: -1\r\n\r\nb\r\n",
			"A: 1\r\nB: 2\r\nC: 3\r\n\r\nb\r\n"},
		{"names are case-insensitive, space before the colon",
			"x-scl: 1\r\nX-SCL : 2\r\nX-SCL-REPORT:x\r\nFrom: a\r\n\r\nb\r\n",
			"From: a\r\n\r\nb\r\n"},
		{"similar names are kept",
			"X-SCL-Reportx: keep\r\nX-SCLx: keep\r\nX-Spam-Flagged: keep\r\nX-SCL-Report-Extra: keep\r\nXX-SCL: keep\r\n\r\nb\r\n",
			"X-SCL-Reportx: keep\r\nX-SCLx: keep\r\nX-Spam-Flagged: keep\r\nX-SCL-Report-Extra: keep\r\nXX-SCL: keep\r\n\r\nb\r\n"},
		{"verdict lines in the body stay",
			"From: a\r\n\r\nX-SCL: 1\r\nX-SCL-Report: forged\r\n\tcontinued\r\nX-Spam-Flag: YES\r\n",
			"From: a\r\n\r\nX-SCL: 1\r\nX-SCL-Report: forged\r\n\tcontinued\r\nX-Spam-Flag: YES\r\n"},
		{"body only (empty header)",
			"\r\nX-SCL: 1\r\n",
			"\r\nX-SCL: 1\r\n"},
		{"a header line without a colon stops a dropped run",
			"X-SCL: 1\r\ngarbage line\r\n\r\nb\r\n",
			"garbage line\r\n\r\nb\r\n"},
		{"continuation line first goes",
			" leading\r\nX-SCL: 1\r\nFrom: a\r\n\r\nb\r\n",
			"From: a\r\n\r\nb\r\n"},
		{"mixed line ends",
			"From: a\r\nX-SCL: 1\nTo: b\n\r\nbody\n",
			"From: a\r\nTo: b\n\r\nbody\n"},
		{"bytes after the header are untouched",
			"X-SCL: 1\r\n\r\n\x00\xff\r\r\n.\r\n",
			"\r\n\x00\xff\r\r\n.\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := io.ReadAll(stamp([]byte(c.in), fields))
			if err != nil {
				t.Fatal(err)
			}
			if want := top + c.want; string(got) != want {
				t.Errorf("stamp(%q)\n got %q\nwant %q", c.in, got, want)
			}
		})
	}
}

// stamp does not modify its input.
func TestStampLeavesInputAlone(t *testing.T) {
	in := []byte("X-SCL: 1\r\nFrom: a\r\n\r\nbody\r\n")
	orig := string(in)
	io.ReadAll(stamp(in, []string{"X-SCL: 0"}))
	if string(in) != orig {
		t.Errorf("input changed to %q", in)
	}
}

func TestFoldHeader(t *testing.T) {
	long := "scl=9 classifier=none score=0 classifier_scl=0; rules: BODY MAX \"cheap pills\", BODY 5 \"five points\", " +
		"BODY 6 \"six points\", SUBJECT MIN \"EDIT:\", BOTH 3 \"special offer\", BODY -2 \"newsletter\""
	cases := []struct {
		name, value string
	}{
		{"short", "scl=0 classifier=none score=0 classifier_scl=0"},
		{"long ASCII", long},
		{"exactly 78", strings.Repeat("a", 78-len("X-SCL-Report: "))},
		{"79 in two words", strings.Repeat("a", 40) + " " + strings.Repeat("b", 24)},
		{"non-ASCII short", `scl=9 classifier=none score=0 classifier_scl=0; rules: BOTH MAX "Offre spéciale"`},
		{"non-ASCII long", long + `, BODY MAX "Offre spéciale", BODY 4 "größte Auswahl", SUBJECT 2 "скидка"`},
		{"non-ASCII only", "ü"},
		{"control character", "scl=1\x01 hidden"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := foldHeader("X-SCL-Report", c.value)
			lines := strings.Split(got, "\r\n")
			for i, l := range lines {
				if len(l) > 78 {
					t.Errorf("line %d has %d octets: %q", i, len(l), l)
				}
				if i > 0 && (l == "" || (l[0] != '\t' && l[0] != ' ')) {
					t.Errorf("line %d is not a continuation line: %q", i, l)
				}
				if strings.TrimSpace(l) == "" {
					t.Errorf("line %d is blank: %q", i, l)
				}
				for j := 0; j < len(l); j++ {
					if b := l[j]; b >= 0x80 || (b < 0x20 && b != '\t') || b == 0x7f {
						t.Errorf("line %d has byte %#x: %q", i, b, l)
						break
					}
				}
			}
			if !strings.HasPrefix(got, "X-SCL-Report:") {
				t.Fatalf("got %q", got)
			}
			// Unfolded and decoded, the value is what was given (with
			// runs of white space as one space).
			unfolded := strings.ReplaceAll(got, "\r\n", "")
			v := strings.TrimSpace(strings.TrimPrefix(unfolded, "X-SCL-Report:"))
			dec, err := new(mime.WordDecoder).DecodeHeader(v)
			if err != nil {
				t.Fatalf("decoding %q: %v", v, err)
			}
			if want := strings.Join(strings.Fields(c.value), " "); strings.Join(strings.Fields(dec), " ") != want && !isASCII(c.value) {
				t.Errorf("decoded value %q, want %q", dec, want)
			} else if isASCII(c.value) && strings.Join(strings.Fields(v), " ") != want {
				t.Errorf("unfolded value %q, want %q", v, want)
			}
		})
	}
	// Only the non-ASCII words are encoded: the rest stays readable.
	got := foldHeader("X-SCL-Report", `scl=9 classifier=none; rules: BODY MAX "Verlängertes Angebot für Sie", BODY 1 "plain"`)
	if got := strings.Join(strings.Fields(got), " "); !strings.Contains(got, `scl=9 classifier=none; rules: BODY MAX =?utf-8?q?"Verl=C3=A4ngertes?= Angebot =?utf-8?q?f=C3=BCr?= Sie", BODY 1 "plain"`) {
		t.Errorf("partly encoded: %q", got)
	}
	// The plain case, exactly.
	if got, want := foldHeader("X-SCL-Report", "scl=0 classifier=none score=0 classifier_scl=0"),
		"X-SCL-Report: scl=0 classifier=none score=0 classifier_scl=0"; got != want {
		t.Errorf("foldHeader = %q, want %q", got, want)
	}
}

func TestSanitizeHelo(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "unknown",
		"mail.example.org":        "mail.example.org",
		"[192.0.2.1]":             "[192.0.2.1]",
		"[IPv6:2001:db8::1]":      "[IPv6:2001:db8::1]",
		"evil)\r\n\tby forged (x": "evil____by_forged__x",
		"héllo":                   "h_llo",
		strings.Repeat("a", 300):  strings.Repeat("a", 255),
	} {
		if got := sanitizeHelo(in); got != want {
			t.Errorf("sanitizeHelo(%q) = %q, want %q", in, got, want)
		}
	}
}

// X-SCL-Report is bounded as sent: non-ASCII rule texts grow in RFC 2047
// words, and a report cut by text length alone reached 3 KB.
func TestReportBoundedOnTheWire(t *testing.T) {
	for name, text := range map[string]string{"non-ASCII": strings.Repeat("ü", 900), "ASCII": strings.Repeat("a ", 450), "CJK": strings.Repeat("最新", 300)} {
		r := scorer.Result{SCL: 5, Classifier: "none", Rules: []weights.Entry{
			{Type: weights.Body, Kind: weights.Delta, Change: 5, Text: text},
			{Type: weights.Subject, Kind: weights.Delta, Change: 1, Text: "second " + text},
		}}
		f := foldHeader("X-SCL-Report", boundedReport(r))
		if len(f) > reportWireMax || len(f) < reportWireMax*2/3 {
			t.Errorf("%s: field of %d bytes, want %d at most (and not much less)", name, len(f), reportWireMax)
		}
		if !strings.HasPrefix(f, "X-SCL-Report: scl=5 classifier=none score=0 classifier_scl=0; rules: BODY 5") {
			t.Errorf("%s: %.100q", name, f)
		}
	}
}

// A reply text cut to length is cut between characters: a downstream's
// UTF-8 reply passed on to the client stays valid UTF-8.
func TestTruncateUTF8(t *testing.T) {
	s := strings.Repeat("é", 10) // 20 bytes
	for n := 0; n <= 21; n++ {
		got := truncate(s, n)
		if !utf8.ValidString(got) || len(got) > n {
			t.Errorf("truncate(%d) = %q", n, got)
		}
	}
}
