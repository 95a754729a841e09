package scorer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sclgate/sclgate/weights"
)

// benchWords is the vocabulary for generated phrases and text: mostly
// ASCII, some accented and Cyrillic words, as real European mail is.
var benchWords = strings.Fields(`offer special free money click here now limited time order today
viagra casino lottery winner account verify password bank transfer invoice payment meeting
lunch project report schedule attached document review please thanks regards best team
update security urgent important notice delivery package shipping tracking number customer
Verlängertes Angebot spéciale größte Straße café naïve résumé скидка цена лучшая`)

// benchList builds n weight entries of 1-3 words, deterministically.
func benchList(b *testing.B, n int) *weights.List {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	var x strings.Builder
	x.WriteString("<CustomWeightEntries>\n")
	for i := 0; i < n; i++ {
		k := 1 + r.IntN(3)
		var p []string
		for j := 0; j < k; j++ {
			p = append(p, benchWords[r.IntN(len(benchWords))])
		}
		fmt.Fprintf(&x, "<CustomWeightEntry Type=%q Change=\"%d\" Text=\"%s %d\"/>\n",
			[]string{"BODY", "SUBJECT", "BOTH"}[i%3], r.IntN(7)-3, strings.Join(p, " "), i)
	}
	x.WriteString("</CustomWeightEntries>\n")
	l, err := weights.Parse("bench.xml", strings.NewReader(x.String()))
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// benchMessage is a multipart/alternative message with about size bytes
// of quoted-printable text and HTML.
func benchMessage(size int) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	var text strings.Builder
	for text.Len() < size/2 {
		for i := 0; i < 10; i++ {
			text.WriteString(benchWords[r.IntN(len(benchWords))])
			text.WriteByte(' ')
		}
		text.WriteString("\r\n")
	}
	html := "<html><body><p>" + strings.ReplaceAll(text.String(), "\r\n", "</p>\r\n<p>") + "</p></body></html>"
	return []byte("From: a@example.org\r\nTo: b@example.com\r\nSubject: =?UTF-8?Q?Verl=C3=A4ngertes_Angebot?= special offer\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text.String() +
		"\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + html + "\r\n--b--\r\n")
}

// BenchmarkScore100KB10k is the whole per-message scoring path: parse a
// 100 KB message (text and HTML parts), then match its subject and body
// text against a 10,000-entry weight list. MB/s is of raw message bytes.
func BenchmarkScore100KB10k(b *testing.B) { benchScore(b, 100<<10, 10000) }

// BenchmarkScore100KB100 is the same with 100 entries: the cost of the
// list's size is the difference between the two.
func BenchmarkScore100KB100(b *testing.B) { benchScore(b, 100<<10, 100) }

func benchScore(b *testing.B, size, entries int) {
	l := benchList(b, entries)
	raw := benchMessage(size)
	s := &Scorer{Classifier: None{}, Weights: func() *weights.List { return l }}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Score(context.Background(), Parse(raw)); err != nil {
			b.Fatal(err)
		}
	}
}
