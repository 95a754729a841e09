package weights

// match.go ties entries to the automaton: which entries share a phrase,
// which part of a message each phrase is looked for in, and the per-call
// scratch space that keeps Match from allocating more than its result.

import (
	"slices"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Where a phrase is looked for, and where it was found.
const (
	inSubject = 1 << iota
	inBody
)

// matcher is the compiled form of a list's phrases.
type matcher struct {
	ac *automaton
	// Entries with pattern p: peIdx[peStart[p]:peStart[p+1]], in file
	// order. Several entries can share a phrase.
	peStart  []int32
	peIdx    []int32
	patWhere []uint8 // inSubject|inBody: where pattern p is wanted
	where    uint8   // union of patWhere: skip a text no entry wants

	pool sync.Pool // of *scratch
}

// scratch is the per-call state of Match, pooled.
type scratch struct {
	z    *normalizer
	buf  []byte  // normalised text
	seen []uint8 // per pattern: where it has been found in this call
	hits []int32 // patterns with seen != 0
	idx  []int32 // matched entry indexes
}

// maxPooledBuf is the largest normalised-text buffer kept for reuse: a
// huge message should not pin its size in memory for good.
const maxPooledBuf = 4 << 20

// compile builds the matcher for entries, whose normalised phrases are
// phrases[i]. It returns nil for no entries.
func compile(entries []Entry, phrases []string) *matcher {
	if len(entries) == 0 {
		return nil
	}
	ids := make(map[string]int32, len(phrases))
	var patterns []string
	pat := make([]int32, len(entries))
	for i, ph := range phrases {
		id, ok := ids[ph]
		if !ok {
			id = int32(len(patterns))
			ids[ph] = id
			patterns = append(patterns, ph)
		}
		pat[i] = id
	}
	m := &matcher{
		peStart:  make([]int32, len(patterns)+1),
		peIdx:    make([]int32, len(entries)),
		patWhere: make([]uint8, len(patterns)),
	}
	for i, p := range pat {
		m.peStart[p+1]++
		switch entries[i].Type {
		case Body:
			m.patWhere[p] |= inBody
		case Subject:
			m.patWhere[p] |= inSubject
		case Both:
			m.patWhere[p] |= inSubject | inBody
		}
	}
	for p := range patterns {
		m.peStart[p+1] += m.peStart[p]
		m.where |= m.patWhere[p]
	}
	fill := slices.Clone(m.peStart[:len(patterns)])
	for i, p := range pat { // in file order, so each group is too
		m.peIdx[fill[p]] = int32(i)
		fill[p]++
	}
	m.ac = newAutomaton(patterns)
	n := len(patterns)
	m.pool.New = func() any {
		return &scratch{z: newNormalizer(), seen: make([]uint8, n)}
	}
	return m
}

func (m *matcher) match(entries []Entry, subjects, body []string) []Entry {
	sc := m.pool.Get().(*scratch)
	defer func() {
		if cap(sc.buf) > maxPooledBuf {
			sc.buf = nil
		}
		m.pool.Put(sc)
	}()
	if m.where&inSubject != 0 {
		for _, subject := range subjects {
			if subject != "" {
				sc.buf = sc.z.appendText(sc.buf[:0], subject)
				m.scan(sc, sc.buf, inSubject)
			}
		}
	}
	if m.where&inBody != 0 {
		for _, b := range body {
			if b != "" {
				sc.buf = sc.z.appendText(sc.buf[:0], b)
				m.scan(sc, sc.buf, inBody)
			}
		}
	}
	if len(sc.hits) == 0 {
		return nil
	}

	sc.idx = sc.idx[:0]
	for _, p := range sc.hits {
		found := sc.seen[p]
		sc.seen[p] = 0
		for _, e := range m.peIdx[m.peStart[p]:m.peStart[p+1]] {
			t := entries[e].Type
			if found&inSubject != 0 && t != Body || found&inBody != 0 && t != Subject {
				sc.idx = append(sc.idx, e)
			}
		}
	}
	sc.hits = sc.hits[:0]
	if len(sc.idx) == 0 {
		return nil
	}
	slices.Sort(sc.idx)
	out := make([]Entry, len(sc.idx))
	for i, e := range sc.idx {
		out[i] = entries[e]
	}
	return out
}

// asciiWord marks the ASCII word bytes (letters, digits, '_').
var asciiWord = func() (t [256]bool) {
	for c := range utf8.RuneSelf {
		t[c] = isWord(rune(c))
	}
	return t
}()

// scan runs normalised text through the automaton and records in sc the
// patterns wanted in where that occur on word boundaries.
func (m *matcher) scan(sc *scratch, text []byte, where uint8) {
	a := m.ac
	class, dense, denseEnd := &a.class, a.dense, a.denseEnd
	s := int32(0)
	for i := 0; i < len(text); i++ {
		c := class[text[i]]
		var next int32
		if s < denseEnd {
			next = dense[s+int32(c)]
		} else {
			next = a.stepSparse(s, c)
		}
		if next >= 0 {
			s = next
			continue
		}
		s = next & idMask
		if next&endWordBit != 0 && i+1 < len(text) && asciiWord[text[i+1]] {
			continue // the phrases ending here end inside a word
		}
		m.report(sc, text, i+1, a.number(s), where)
	}
}

// report records the patterns that end at text[end] in state k, and all
// down its output links, if they are wanted in where and have their word
// boundaries.
func (m *matcher) report(sc *scratch, text []byte, end int, k int32, where uint8) {
	a := m.ac
	for {
		o := a.outs[k]
		if p := o.term; p >= 0 && m.patWhere[p]&where != 0 && sc.seen[p]&where == 0 && a.onBoundaries(text, end, p) {
			if sc.seen[p] == 0 {
				sc.hits = append(sc.hits, p)
			}
			sc.seen[p] |= where
		}
		if o.link == 0 {
			return
		}
		k = o.link
	}
}

// baseBefore returns the character that ends text, a mark counting as
// part of the letter it follows (UAX #29: "free" begins a word after a
// Thai consonant and its vowel sign, and not after "e" + U+0301).
func baseBefore(text []byte) rune {
	r, n := utf8.DecodeLastRune(text)
	for unicode.IsMark(r) && n < len(text) {
		text = text[:len(text)-n]
		r, n = utf8.DecodeLastRune(text)
	}
	return r
}

// onBoundaries reports whether pattern p, found ending at text[end], has
// the word boundaries it needs.
func (a *automaton) onBoundaries(text []byte, end int, p int32) bool {
	pi := a.pats[p]
	if start := end - int(pi.len); pi.flags&patWordStart != 0 && start > 0 {
		r := rune(text[start-1])
		if r >= utf8.RuneSelf {
			r = baseBefore(text[:start])
		}
		if isWord(r) {
			return false
		}
	}
	if pi.flags&patWordEnd != 0 && end < len(text) {
		r := rune(text[end])
		if r >= utf8.RuneSelf {
			r, _ = utf8.DecodeRune(text[end:])
		}
		if isWord(r) {
			return false
		}
	}
	if pi.flags&patMarkEnd != 0 && end < len(text) && text[end] >= utf8.RuneSelf {
		// A Thai letter and its vowel sign are one character to the
		// reader: the phrase does not end between them.
		if r, _ := utf8.DecodeRune(text[end:]); unicode.IsMark(r) {
			return false
		}
	}
	return true
}
