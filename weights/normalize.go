package weights

// normalize.go puts phrases and message text into the one form they are
// compared in: invisible characters removed (see isIgnorable), NFKC, then
// Unicode full case folding, a dot above right after an i or j dropped
// (see dotAbove), typographic apostrophes as ' (see isApostrophe), then
// every run of white space as a single ' '.
//
// Doing that with x/text costs far more than scanning the result, so most
// text takes a fast path. Call a rune "simple" if NFKC leaves it alone and
// it is a starter that never composes with the rune before it: all of
// ASCII, most Latin, Greek and Cyrillic letters, CJK, common punctuation.
// Text made of simple runes is in NFKC already, and case folding is
// context-free, so such text only needs each rune folded, which tables
// built once from x/text do (ASCII by a byte table, the other two- and
// three-byte runes by lookup).
//
// Anything else (combining marks, compatibility characters, emoji, invalid
// UTF-8) goes through x/text, one piece at a time. A piece starts at the
// simple rune before the odd one, which it might compose with, and ends
// before a simple rune followed by another simple rune: neither composes
// with its neighbours, so the text can be normalised on both sides of that
// cut independently. The result is byte for byte what normalising the whole
// string at once gives; FuzzNormalize checks that against x/text.

import (
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// asciiFold maps an ASCII byte to its folded form: upper case to lower case,
// white space (as unicode.IsSpace has it) to ' '. Bytes >= 0x80 map to
// themselves; they are never looked up.
var asciiFold = func() (t [256]byte) {
	for i := range t {
		c := byte(i)
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '\t', c == '\n', c == '\v', c == '\f', c == '\r':
			c = ' '
		}
		t[i] = c
	}
	return t
}()

// isWord reports whether r is a word rune for boundary checks: a letter, a
// digit, a mark or '_', but not a Han ideograph or hiragana. Marks count so
// that a phrase ending in "e" does not match "é" spelt as e + combining
// acute. Ideographs and hiragana do not because, as in Unicode's word
// boundaries (UAX #29), each is a word of its own: Chinese and Japanese are
// written without spaces, so a phrase in them matches inside a longer run
// ("台灣工商" in "最新台灣工商名錄") and a word next to them has its
// boundary there ("free" in "免费free"). Katakana and Hangul words stay
// whole, as there. The letters of Thai, Lao, Khmer, Myanmar and the Tai
// scripts, also written without spaces between words, are likewise no
// word runes ("ฟรี" in "รับฟรีวันนี้"), but their marks are: a phrase does
// not end between a letter and its vowel sign.
func isWord(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_'
	}
	if r >= 0x2e80 && (0x3005 <= r && r <= 0x3007 || unicode.In(r, unicode.Han, unicode.Hiragana)) {
		return false
	}
	if unicode.IsMark(r) {
		return true
	}
	if (0x0e00 <= r && r < 0x1ab0 || 0xa9e0 <= r && r < 0xaae0) && unicode.In(r, spaceless...) {
		return false
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// spaceless are the scripts written without spaces between words that
// UAX #29 leaves to a dictionary (line break class SA), besides Han.
var spaceless = []*unicode.RangeTable{unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar,
	unicode.Tai_Le, unicode.New_Tai_Lue, unicode.Tai_Tham, unicode.Tai_Viet}

// foldTables says which non-ASCII runes below U+10000 are simple, and how
// they fold.
type foldTables struct {
	// two is for the runes of two bytes in UTF-8, U+0080 to U+07FF.
	two [0x800]struct {
		n uint8   // length of the folded form; 0: not simple; spaceFold: white space
		b [7]byte // the folded form
	}
	// three has a bit for each rune of three bytes that is simple and
	// folds to itself, which is nearly all of the simple ones.
	three [0x10000 / 64]uint64
}

// spaceFold marks a simple two-byte rune that is white space (U+0085,
// U+00A0), which collapses like an ASCII space.
const spaceFold = 0xFF

// loadFoldTables builds the tables once, on first use, from x/text itself
// so that the two paths cannot disagree.
var loadFoldTables = sync.OnceValue(func() *foldTables {
	t := new(foldTables)
	fold := cases.Fold()
	for r := rune(0x80); r < 0x800; r++ {
		s := string(r)
		p := norm.NFKC.PropertiesString(s)
		e := &t.two[r]
		switch {
		case p.CCC() != 0 || !p.BoundaryBefore() || isIgnorable(r): // ignorable: the slow path drops it
		case unicode.IsSpace(r):
			e.n = spaceFold
		case norm.NFKC.IsNormalString(s):
			f := strings.ReplaceAll(fold.String(s), "i"+string(dotAbove), "i")
			if isApostrophe(r) {
				f = "'"
			}
			if len(f) <= len(e.b) {
				e.n = uint8(copy(e.b[:], f))
			}
		}
	}
	var buf [utf8.UTFMax]byte
	for r := rune(0x800); r < 0x10000; r++ {
		b := utf8.AppendRune(buf[:0], r)
		p := norm.NFKC.Properties(b)
		if !utf8.ValidRune(r) || unicode.IsSpace(r) || p.CCC() != 0 || !p.BoundaryBefore() || !norm.NFKC.IsNormal(b) || isIgnorable(r) {
			continue
		}
		if n, _ := fold.Span(b, true); n == len(b) { // folds to itself
			t.three[r/64] |= 1 << (r % 64)
		}
	}
	return t
})

// normalizer holds the buffers of the slow path, so that a pooled
// normalizer does not allocate once warmed up. It is not safe for
// concurrent use.
type normalizer struct {
	t      *foldTables
	fold   cases.Caser
	valid  []byte // a piece with invalid UTF-8 replaced
	nfkc   []byte // a piece in NFKC
	folded []byte // a piece in NFKC, case folded
}

func newNormalizer() *normalizer {
	return &normalizer{t: loadFoldTables(), fold: cases.Fold()}
}

// simpleAt returns the length of the rune at s[i] if it is simple, else 0.
func (t *foldTables) simpleAt(s string, i int) int {
	c := s[i]
	switch {
	case c < utf8.RuneSelf:
		return 1
	case c < 0xC2:
	case c < 0xE0:
		if i+1 < len(s) && s[i+1]&0xC0 == 0x80 && t.two[rune(c&0x1F)<<6|rune(s[i+1]&0x3F)].n != 0 {
			return 2
		}
	case c < 0xF0:
		if i+2 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80 {
			// Overlong forms decode below U+0800, surrogates to
			// U+D800-DFFF: neither has its bit set.
			r := rune(c&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F)
			if t.three[r/64]&(1<<(r%64)) != 0 {
				return 3
			}
		}
	}
	return 0
}

// appendText appends the normalised form of s to dst. Invalid UTF-8 bytes
// count as U+FFFD, one per byte, as ranging over a string does.
func (z *normalizer) appendText(dst []byte, s string) []byte {
	t := z.t
	n0 := len(dst)
	space := false // whether dst ends in a collapsed space
	// The last rune the fast path emitted, if it could compose with a
	// rune after it: its offset in s (or -1), and in dst.
	last, lastDst := -1, 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			j := i + asciiPrefix(s[i:])
			dst, space = appendASCII(dst, s[i:j], space)
			last, lastDst = -1, 0
			if !space { // ends in a character, not white space
				last, lastDst = j-1, len(dst)-1
			}
			i = j
			continue
		}
		switch n := t.simpleAt(s, i); n {
		case 2:
			e := &t.two[rune(c&0x1F)<<6|rune(s[i+1]&0x3F)]
			if e.n == spaceFold {
				if !space {
					dst = append(dst, ' ')
				}
				space, last = true, -1
			} else {
				last, lastDst = i, len(dst)
				dst = append(dst, e.b[:e.n]...)
				space = false
			}
			i += 2
			continue
		case 3:
			if c == 0xE2 && s[i+1] == 0x80 && s[i+2] == 0x99 { // U+2019: isApostrophe
				dst = append(dst, '\'')
				last = -1 // composes with nothing, nor does '
			} else {
				last, lastDst = i, len(dst)
				dst = append(dst, s[i:i+3]...)
			}
			space = false
			i += 3
			continue
		}
		// A rune that needs x/text. The piece starts at the rune before
		// if that might compose with it.
		start := i
		if last >= 0 {
			start, dst = last, dst[:lastDst]
			space = len(dst) > n0 && dst[len(dst)-1] == ' '
		}
		end := t.pieceEnd(s, i)
		dst, space = z.appendSlow(dst, s[start:end], space)
		last = -1
		i = end
	}
	return dst
}

// pieceEnd returns where the piece of text that needs x/text, and begins
// with the rune at s[i], ends: before the next simple rune that is followed
// by another simple rune, or the end of s.
func (t *foldTables) pieceEnd(s string, i int) int {
	_, size := utf8.DecodeRuneInString(s[i:])
	for k := i + size; k < len(s); {
		if n := t.simpleAt(s, k); n > 0 {
			if k+n == len(s) || t.simpleAt(s, k+n) > 0 {
				return k
			}
			k += n
			continue
		}
		_, size := utf8.DecodeRuneInString(s[k:])
		k += size
	}
	return len(s)
}

// asciiPrefix returns the length of the longest ASCII prefix of s.
func asciiPrefix(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if w&0x8080808080808080 != 0 {
			break
		}
	}
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	return i
}

// appendASCII appends the normalised form of the ASCII string s; space says
// whether dst already ends in a collapsed space, and the new value of that
// is returned.
func appendASCII(dst []byte, s string, space bool) ([]byte, bool) {
	n := len(dst)
	dst = slices.Grow(dst, len(s))
	out := dst[n : n+len(s)]
	// Branch-free: white space comes at no predictable interval, and a
	// mispredicted branch per word costs more than the arithmetic.
	prev := byte(0)
	if space {
		prev = ' '
	}
	j := 0
	for i := 0; i < len(s); i++ {
		c := asciiFold[s[i]]
		out[j] = c
		// Advance unless both c and prev are spaces: x is 0 exactly
		// then, and (x+0xff)>>8 is 0 for x == 0, else 1.
		x := uint(c^' ') | uint(prev^' ')
		j += int((x + 0xff) >> 8)
		prev = c
	}
	return dst[:n+j], prev == ' '
}

// appendSlow appends the normalised form of piece, a piece of text cut at
// normalisation boundaries, going through NFKC and full case folding.
func (z *normalizer) appendSlow(dst []byte, piece string, space bool) ([]byte, bool) {
	if utf8.ValidString(piece) && !hasIgnorable(piece) {
		z.nfkc = norm.NFKC.AppendString(z.nfkc[:0], piece)
	} else {
		// Invalid bytes become U+FFFD; invisible characters go, before
		// NFKC, so that what they separated composes as if they had
		// never been there.
		z.valid = z.valid[:0]
		for _, r := range piece {
			if !isIgnorable(r) {
				z.valid = utf8.AppendRune(z.valid, r)
			}
		}
		z.nfkc = norm.NFKC.Append(z.nfkc[:0], z.valid...)
	}
	z.folded = z.foldAppend(z.folded[:0], z.nfkc)
	b := z.folded
	for i := 0; i < len(b); {
		if c := b[i]; c < utf8.RuneSelf {
			c = asciiFold[c]
			i++
			if c == ' ' {
				if space {
					continue
				}
				space = true
			} else {
				space = false
			}
			dst = append(dst, c)
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case unicode.IsSpace(r):
			if !space {
				dst = append(dst, ' ')
				space = true
			}
		case r == dotAbove && len(dst) > 0 && (dst[len(dst)-1] == 'i' || dst[len(dst)-1] == 'j'):
			// Dropped: see dotAbove. (No byte of a multi-byte rune
			// is an ASCII letter, so dst ends in the letter itself.)
		case isApostrophe(r):
			dst = append(dst, '\'')
			space = false
		default:
			dst = append(dst, b[i:i+size]...)
			space = false
		}
		i += size
	}
	return dst, space
}

// dotAbove is U+0307 COMBINING DOT ABOVE. Full case folding turns the
// Turkish capital İ (U+0130) into i + U+0307, which then matched neither
// "i" nor the dotted capital's other spellings: a rule "İNDİRİM", as a
// Turkish admin types it in capitals, missed "indirim", and a rule
// "indirim" missed "İNDİRİM" and "VİAGRA" (a known evasion). On an i or a
// j, which are dotted already (Unicode's Soft_Dotted), the mark shows
// nothing more, so it is dropped after them, in text and phrases alike:
// İ then folds to i, as the Turkic mapping of CaseFolding.txt has it.
const dotAbove = '\u0307'

// isApostrophe reports whether r is a typographic apostrophe: U+2019, which
// Outlook, Word and phones type for ' ("Don’t miss"), and U+02BC, its
// letter twin. A rule "don't miss", typed on a keyboard, must match the
// text as mail programs write it, and NFKC leaves both alone; so both
// become ' in text and phrases alike. (U+2018, the opening quote, stays.)
func isApostrophe(r rune) bool { return r == 0x2019 || r == 0x02BC }

// foldAppend appends the full case folding of src to dst, using the
// transformer directly so that nothing is allocated once dst is big enough.
func (z *normalizer) foldAppend(dst, src []byte) []byte {
	z.fold.Reset()
	for {
		dst = slices.Grow(dst, len(src)+16)
		nDst, nSrc, err := z.fold.Transform(dst[len(dst):cap(dst)], src, true)
		dst = dst[:len(dst)+nDst]
		src = src[nSrc:]
		if err != transform.ErrShortDst || (nDst == 0 && nSrc == 0 && cap(dst)-len(dst) > 64) {
			// Done; or no progress with room to spare, which cannot
			// happen with atEOF set but must not loop forever.
			return dst
		}
	}
}

// normalizePhrase returns the normalised form of a Text attribute, without
// leading or trailing space. It is empty if text is only white space.
func normalizePhrase(z *normalizer, text string) string {
	b := z.appendText(nil, text)
	if len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	if len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return string(b)
}
