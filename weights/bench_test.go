package weights

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// Benchmarks run on text and lists built deterministically (fixed seeds)
// from the word lists below, so numbers compare across runs and machines.

var commonWords = strings.Fields(`the of and to a in is you that it he was for on are as with his they
at be this have from or one had by word but not what all were we when your can said there use an each
which she do how their if will up other about out many then them these so some her would make like him
into time has look two more write go see number no way could people my than first water been call who
oil its now find long down day did get come made may part offer special free money price order today
click here account bank please payment invoice meeting report attached thanks regards best customer
service support team update new information email message subscribe unsubscribe discount sale deal
limited only now cheap online pharmacy winner prize claim urgent verify password security access login
shipping delivery package tracking contact phone address office week month year project budget review`)

var accentedWords = strings.Fields(`Verlängertes Angebot Größe Straße für Grüße schön
spéciale offre été déjà très café élève garçon Noël
año señor mañana está también
Лучшая цена скидка бесплатно предложение
προσφορά δωρεάν τιμή
免费 优惠 限时 “quoted” it’s – 🎉`)

// synthWords makes n pronounceable made-up words.
func synthWords(r *rand.Rand, n int) []string {
	cons := []string{"b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "pl", "ch"}
	vow := []string{"a", "e", "i", "o", "u", "ea", "io"}
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		for range 2 + r.IntN(3) {
			b.WriteString(cons[r.IntN(len(cons))])
			b.WriteString(vow[r.IntN(len(vow))])
		}
		out[i] = b.String()
	}
	return out
}

// spamWords are common words that a list might well have on their own.
var spamWords = strings.Fields(`free offer cheap winner prize urgent discount sale deal pharmacy
unsubscribe click verify password invoice payment bank limited`)

// benchEntries builds n entries of 1 to 3 words, like a real list of spam
// phrases, product names and the like: single words are made-up, accented
// or spammy ones; longer phrases mix in common words ("click here to ...").
func benchEntries(n int) []Entry {
	r := rand.New(rand.NewPCG(1, 2))
	synth := synthWords(r, 5000)
	out := make([]Entry, n)
	seen := make(map[string]bool, n)
	for i := 0; i < n; {
		words := make([]string, 1+r.IntN(3))
		for j := range words {
			switch x := r.IntN(20); {
			case len(words) == 1 && x < 2:
				words[j] = spamWords[r.IntN(len(spamWords))]
			case len(words) > 1 && x < 8:
				words[j] = commonWords[r.IntN(len(commonWords))]
			case x < 10:
				words[j] = accentedWords[r.IntN(len(accentedWords))]
			default:
				words[j] = synth[r.IntN(len(synth))]
			}
		}
		if len(words) > 1 && r.IntN(10) != 0 {
			// Phrases of common words only ("and the") are rare.
			words[len(words)-1] = synth[r.IntN(len(synth))]
		}
		text := strings.Join(words, " ")
		if seen[text] { // a real list has each phrase once
			continue
		}
		seen[text] = true
		out[i] = Entry{Type: Type(1 + i%3), Kind: Delta, Change: 1 + i%5, Text: text, Line: i + 3}
		i++
	}
	return out
}

// benchBody builds about size bytes of mail text: sentences of common words,
// accentedPct percent accented or non-Latin words, a few made-up words,
// punctuation and line breaks.
func benchBody(size, accentedPct int) string {
	r := rand.New(rand.NewPCG(3, 4))
	synth := synthWords(rand.New(rand.NewPCG(1, 2)), 5000) // the entries' words
	var b strings.Builder
	for b.Len() < size {
		n := 5 + r.IntN(12)
		for i := range n {
			var w string
			switch x := r.IntN(100); {
			case x < accentedPct:
				w = accentedWords[r.IntN(len(accentedWords))]
			case x < accentedPct+3:
				w = synth[r.IntN(len(synth))]
			default:
				w = commonWords[r.IntN(len(commonWords))]
			}
			if i == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			b.WriteString(w)
			if i < n-1 {
				b.WriteString([]string{" ", " ", " ", " ", " ", ", ", "  "}[r.IntN(7)])
			}
		}
		b.WriteString([]string{". ", ".\r\n", "! ", "? ", ".\r\n\r\n"}[r.IntN(5)])
	}
	return b.String()
}

func benchMatch(b *testing.B, entries, accentedPct int) {
	l := newTestList(b, benchEntries(entries))
	body := benchBody(100<<10, accentedPct)
	subject := "Re: special offer for your account"
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	n := len(l.Match(subject, body))
	b.ResetTimer()
	for b.Loop() {
		l.Match(subject, body)
	}
	b.ReportMetric(float64(n), "matches")
}

// The realistic case: 3% of words non-ASCII.
func BenchmarkMatch100KB10k(b *testing.B)         { benchMatch(b, 10000, 3) }
func BenchmarkMatch100KB100(b *testing.B)         { benchMatch(b, 100, 3) }
func BenchmarkMatch100KB50k(b *testing.B)         { benchMatch(b, 50000, 3) }
func BenchmarkMatch100KB10kASCII(b *testing.B)    { benchMatch(b, 10000, 0) }
func BenchmarkMatch100KB10kNonASCII(b *testing.B) { benchMatch(b, 10000, 90) }

// BenchmarkCompile measures building a list from parsed entries, and the
// size of what it keeps.
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{10000, 50000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			entries := benchEntries(n)
			b.ReportAllocs()
			var l *List
			for b.Loop() {
				l = newTestList(b, entries)
			}
			a := l.m.ac
			b.ReportMetric(float64(len(a.outs)), "states")
			b.ReportMetric(float64(a.stride), "stride")
			b.ReportMetric(float64(a.nDense), "dense-states")
			b.ReportMetric(float64(a.memSize()+l.m.memSize())/(1<<20), "MiB")
		})
	}
}

// BenchmarkParse measures reading a 10k-entry file as UTF-16, as Exchange
// writes it: decoding, XML, checks and compiling.
func BenchmarkParse10k(b *testing.B) {
	var s strings.Builder
	s.WriteString("<?xml version=\"1.0\" encoding=\"UTF-16\"?>\r\n<CustomWeightEntries xmlns=\"http://schemas.microsoft.com/2005/CustomWeight\">\r\n")
	for _, e := range benchEntries(10000) {
		fmt.Fprintf(&s, "  <CustomWeightEntry Type=%q Change=%q Text=%q/>\r\n", e.Type, e.ChangeString(), e.Text)
	}
	s.WriteString("</CustomWeightEntries>\r\n")
	data := utf16LE(s.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bench.xml", strings.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCompileMemory reports the heap a compiled 10k and 50k list holds.
func TestCompileMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a measurement; slow, and meaningless with -race")
	}
	for _, n := range []int{10000, 50000} {
		entries := benchEntries(n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := newTestList(t, entries)
		runtime.GC()
		runtime.ReadMemStats(&after)
		t.Logf("%d entries: %d states, %.1f MiB in tables, %.1f MiB live heap growth",
			n, len(l.m.ac.outs), float64(l.m.ac.memSize()+l.m.memSize())/(1<<20),
			float64(after.HeapAlloc-before.HeapAlloc)/(1<<20))
		runtime.KeepAlive(l)
	}
}

func utf16LE(s string) string {
	var b strings.Builder
	b.WriteString("\xff\xfe")
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			hi, lo := 0xD800+(r>>10), 0xDC00+(r&0x3FF)
			b.WriteByte(byte(hi))
			b.WriteByte(byte(hi >> 8))
			r = lo
		}
		b.WriteByte(byte(r))
		b.WriteByte(byte(r >> 8))
	}
	return b.String()
}

func (a *automaton) memSize() int {
	return 4*len(a.dense) + 12*len(a.sparse) + 8*len(a.edges) + 8*len(a.outs) + 8*len(a.pats) + len(a.class)
}

func (m *matcher) memSize() int {
	return 4*(len(m.peStart)+len(m.peIdx)) + len(m.patWhere)
}
