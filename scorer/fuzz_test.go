package scorer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sclgate/sclgate/weights"
)

// FuzzParseScore feeds arbitrary bytes through Parse and Score: whatever
// arrives, the scorer answers with an SCL in range and valid UTF-8 text.
// Seeds: every sample message in testdata/messages.
func FuzzParseScore(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "messages", "*.eml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Subject: =?x?q?a?=\r\nContent-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n"))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nSubject: hi\r\n\r\nfree"))
	f.Add([]byte("Content-Type: multipart/mixed;; boundary=\"=B 1\";\r\n\r\n--= B 1\r\nContent-Type: text/plain;;;\r\n\r\n最新台灣abc한국어\r\n"))
	f.Add([]byte("Subject: =?ISO-8859-1?Q?=80_=93x=94?= =?us-ascii*en?b?6Q==?=\r\nContent-Type: text/plain; charset=latin1\r\n\r\n\x80\x92\x9d\xe9\r\n"))
	f.Add([]byte("Subject: =?utf-16?b?YwBoAA==?=\r\nContent-Type: text/html\r\n\r\n<svg><noembed></svg><p>a<template></style>b</template><select><option selected>c</select><details><summary>d</summary>e</details><math><mi>f</mi></math><div hidden>g</div>"))
	f.Add([]byte("Content-Type: text/plain; charset=utf-16\r\n\r\n\x00a\x00b\x00\x30"))
	f.Add([]byte("Content-Type: text/html\r\n\r\n<div><b id=1><b id=2></div><p>x<p>y<table><td><svg><foreignObject><b>z</svg>"))

	xml := `<CustomWeightEntries>
<CustomWeightEntry Type="BODY" Change="5" Text="special offer"/>
<CustomWeightEntry Type="BOTH" Change="MAX" Text="free"/>
<CustomWeightEntry Type="SUBJECT" Change="MIN" Text="EDIT:"/>
<CustomWeightEntry Type="BODY" Change="-2" Text="ü"/>
</CustomWeightEntries>`
	l, err := weights.Parse("fuzz.xml", strings.NewReader(xml))
	if err != nil {
		f.Fatal(err)
	}
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List { return l }}

	f.Fuzz(func(t *testing.T, raw []byte) {
		m := Parse(raw)
		if !utf8.ValidString(m.Text) || !utf8.ValidString(m.Subject) {
			t.Fatalf("invalid UTF-8 out of Parse")
		}
		if len(m.Text) > MaxTextBytes {
			t.Fatalf("text %d bytes over limit", len(m.Text))
		}
		r, err := s.Score(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		if r.SCL < MinSCL || r.SCL > MaxSCL {
			t.Fatalf("SCL %d out of range", r.SCL)
		}
		_ = r.Report(200)
		// The built-in model's features, CJK pairs included.
		for _, ids := range featureBuckets(m, 12) {
			for _, id := range ids {
				if id >= 1<<12 {
					t.Fatalf("bucket %d out of range", id)
				}
			}
		}
	})
}

// containsFoldRef is containsFold's byte-at-a-time definition.
func containsFoldRef(s, sub string) bool {
	if sub == "" {
		return true
	}
	first := sub[0] | 0x20
	isLetter := 'a' <= first && first <= 'z'
	for i := 0; i+len(sub) <= len(s); i++ {
		c := s[i]
		if isLetter {
			c |= 0x20
		}
		if c != first && !(!isLetter && c == sub[0]) {
			continue
		}
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

func FuzzContainsFold(f *testing.F) {
	f.Add("Dear Bob, hello bob@example.org", "bob@example.org")
	f.Add("aAaAab", "AAB")
	f.Add("x@y", "@y")
	f.Fuzz(func(t *testing.T, s, sub string) {
		if !utf8.ValidString(s) || !utf8.ValidString(sub) {
			// The old loop also tried bytes equal to sub[0]|0x20 when
			// sub[0] is not a letter, where EqualFold then matched two
			// unrelated invalid bytes (both U+FFFD); not kept.
			return
		}
		if got, want := containsFold(s, sub), containsFoldRef(s, sub); got != want {
			t.Fatalf("containsFold(%q, %q) = %v, want %v", s, sub, got, want)
		}
	})
}

// decodeSubjectValue always gives valid UTF-8, and leaves a value with no
// encoded word as it is (read as UTF-8 or Windows-1252).
func FuzzDecodeSubject(f *testing.F) {
	for _, s := range []string{"=?iso-8859-1?q?a?=", "=?=?US-ASCII*x?b?", "a =? b", "=?utf-8?q?x?= =?ISO-8859-1?", "", "=?x-foo?b?////?= =?utf-8*de?Q?=FF_?="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := decodeSubjectValue(s)
		if !utf8.ValidString(out) {
			t.Fatalf("decodeSubjectValue(%q) = %q: not UTF-8", s, out)
		}
		if !strings.Contains(s, "=?") && out != toUTF8([]byte(s)) {
			t.Fatalf("decodeSubjectValue(%q) = %q, changed without an encoded word", s, out)
		}
	})
}
