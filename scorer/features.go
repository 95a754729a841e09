package scorer

import (
	"bytes"
	"math"
	"math/bits"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// FeatureVersion names the feature set below. A model records the version it
// was trained with and LoadModel refuses a model of another version: the same
// bucket would mean something else. Bump it whenever what is extracted, or
// how it is hashed, changes, including what Parse reads as body text.
//
// Version 4 cuts CJK text into character pairs, and reads the body of
// parts whose Content-Type does not parse, of multiparts whose boundary
// never appears, and of HTML pages attached as application/octet-stream.
// Version 5 reads text labelled ISO-8859-1 as Windows-1252 (and US-ASCII
// words in subjects as US-ASCII body parts: UTF-8 when it is, else
// Windows-1252). Version 6 reads base64 as RFC 2045 says, skipping
// characters outside the alphabet instead of ending the part at the first.
// Version 7 reads hostile mail as mail clients do: header lines go-message
// refuses (both readings), RFC 2047 subject words one by one, lenient
// quoted-printable, <noscript> and SVG text, message/global and digest
// parts, boundaries declared with trailing space. Version 8 reads an
// HTML part with no charset in its Content-Type in the charset its <meta>
// declares, a part labelled UTF-8 as UTF-8 whatever stray bytes it holds,
// and format=flowed text with delsp=yes unflowed. Version 9 unflows quoted
// and space-stuffed flowed lines too, and reads an HTML part's <meta>
// charset as browsers do (UTF-8 with stray bytes, x-user-defined).
// Version 10 leaves out the text of <iframe>, <noembed> and <noframes>
// (never shown), takes a <meta> charset before a guess of UTF-8 from the
// bytes and under a Content-Type charset no decoder knows, and unflows
// quoted flowed lines with delsp=no. Version 11 builds an HTML page into a
// tree by the HTML standard's rules, as browsers do, and reads only what
// the tree shows (not the text of frameset pages, of elements with the
// hidden attribute, of closed dialogs and details, of SVG outside <text>),
// and reads ISO-8859-9 as Windows-1254 and UTF-16 in the byte order its
// bytes show. Version 12 reads as a second review against Chromium found:
// a drop-down <select> shows one option, a list box's options, SVG
// <text>s and blocks such as <dir> are words of their own, <canvas>
// content is shown (scripts are off), SVG <defs> and the like and MathML
// outside its token elements are not, UTF-16 without a byte order mark is
// read both ways, and a page too costly to build as a tree is read tag by
// tag, with a defect of its own. Version 13 reads as a third review found:
// a page costly to build as a tree is found also when its cost hides in
// <noscript> or in attributes, UTF-16 HTML is one page per reading, a
// drop-down <select> shows its first option not disabled (or its label)
// and nothing but options, declarative shadow roots are shown, an empty
// SVG no longer splits a word, and <progress>, <meter>, SVG
// display="none" and MathML's other <semantics> children are not read.
// Version 14 reads as a fourth review found: each shadow host child in the
// first slot of its name only, what an option holds and options however
// deep, UTF-16 RFC 2047 file names; and bounds the tree's cost also for
// end tags the builder ignores past a boundary and for a deep stack.
// Version 15 renames the formatting elements before a page is built into a
// tree (nothing left open is copied: links repeated by misnested markup
// are read once), and bounds what walking the stack may cost per message
// without modelling which elements are open. Version 16 keeps the
// formatting elements (renamed, they changed the tree: a "<b hidden><div>
// </b>" before the body hid it all) and bounds the builder's copies and
// stack walks by counting every formatting element as open: it reads as
// version 14 does.
const FeatureVersion = 16

// FeatureSetSince is the first sclgate release that extracts FeatureVersion.
// Bundles trained by this build need it or later; defs train records it as
// their min_sclgate so that older sclgates pass them over. Bump it with
// FeatureVersion.
const FeatureSetSince = "0.2.0"

// Feature extraction limits, so that scoring cost is bounded whatever arrives.
const (
	maxBodyTokens    = 3000 // words of body text (subject not counted)
	maxSubjectTokens = 64
	maxURLs          = 64
	maxReceived      = 16
	maxHeaderFields  = 200
	maxHeaderTokens  = 300 // words of header values, all fields together
	maxFieldTokens   = 24  // words of one field's value
	maxNameWords     = 8
	maxValueBytes    = 64 // header values are cut to this before hashing
	maxScanCharsets  = 16
)

// Hashing: 64-bit FNV-1a over a namespace byte and the token, with a fixed
// seed mixed into the offset basis, finished with the SplitMix64 finaliser so
// that every output bit is usable. Fixed constants: the same message gives
// the same feature ids in every process and on every platform (unlike
// hash/maphash, whose seed is random per process).
const (
	fnvOffset = 14695981039346656037 ^ 0x5c1a7e5eed0f5ca1
	fnvPrime  = 1099511628211
)

// Feature namespaces.
const (
	nsWord       = 'w' // body word
	nsBigram     = 'b' // body word pair
	nsSubj       = 's' // subject word
	nsSubjBi     = 't' // subject word pair
	nsSubjShape  = 'j' // subject shape
	nsHeader     = 'h' // header-derived token
	nsURL        = 'u' // link-derived token
	nsStructure  = 'x' // MIME structure and shape
	nsHeaderWord = 'v' // a word of a header field's value
)

func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func hashStart(ns byte) uint64 { return (fnvOffset ^ uint64(ns)) * fnvPrime }

func hashByte(h uint64, c byte) uint64 { return (h ^ uint64(c)) * fnvPrime }

// hashLower feeds s lower-cased (simple Unicode case mapping) into h.
func hashLower(h uint64, s string) uint64 {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			h = hashByte(h, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		var buf [utf8.UTFMax]byte
		k := utf8.EncodeRune(buf[:], unicode.ToLower(r))
		for _, b := range buf[:k] {
			h = hashByte(h, b)
		}
	}
	return h
}

// Views: the features fall into families, and the model is one logistic
// regression per family, trained independently, whose log-odds are added
// (see Train). A feature's namespace decides its view: the body text, the
// subject, and the form of the message (header fields, links, MIME
// structure).
const (
	viewBody    = iota // body text words and word pairs
	viewSubject        // subject words, pairs and shape
	viewForm           // header fields, links, structure
	numViews
)

var viewNames = [numViews]string{"body", "subject", "form"}

func viewOf(ns byte) int {
	switch ns {
	case nsWord, nsBigram:
		return viewBody
	case nsSubj, nsSubjBi, nsSubjShape:
		return viewSubject
	}
	return viewForm
}

// extractor collects the 64-bit hashes of one message's features by view, in
// the order they are found (duplicates included). When names is non-nil it
// also records a readable name per hash, for inspecting a model.
type extractor struct {
	hs      [numViews][]uint64
	names   *[numViews][]string
	fromReg string // registered domain of the From address, lower case
}

func (x *extractor) add(ns byte, h uint64, name func() string) {
	g := viewOf(ns)
	x.hs[g] = append(x.hs[g], mix64(h))
	if x.names != nil {
		x.names[g] = append(x.names[g], name())
	}
}

// kv adds the feature key=value (value lower-cased, cut to maxValueBytes).
func (x *extractor) kv(ns byte, key, val string) {
	if len(val) > maxValueBytes {
		val = cutUTF8(val, maxValueBytes)
	}
	h := hashLower(hashByte(hashLower(hashStart(ns), key), '='), val)
	x.add(ns, h, func() string { return string(ns) + ":" + key + "=" + strings.ToLower(val) })
}

// shapeKV adds key=shape as it is: a shape's case is information.
func (x *extractor) shapeKV(ns byte, key, shape string) {
	h := hashLower(hashByte(hashLower(hashStart(ns), key), '='), "")
	for i := 0; i < len(shape); i++ {
		h = hashByte(h, shape[i])
	}
	x.add(ns, h, func() string { return string(ns) + ":" + key + "=" + shape })
}

// flag adds the feature key (no value).
func (x *extractor) flag(ns byte, key string) {
	x.add(ns, hashLower(hashStart(ns), key), func() string { return string(ns) + ":" + key })
}

// bucket adds key=b where b is a small bucket number.
func (x *extractor) bucket(ns byte, key string, b int) {
	b = max(0, min(b, len(smallNums)-1))
	x.kv(ns, key, smallNums[b])
}

var smallNums = func() []string {
	s := make([]string, 40)
	for i := range s {
		if i < 10 {
			s[i] = string(rune('0' + i))
		} else {
			s[i] = string(rune('0'+i/10)) + string(rune('0'+i%10))
		}
	}
	return s
}()

// log2Bucket is 0 for n <= 0, else 1 + floor(log2(n)).
func log2Bucket(n int) int {
	if n <= 0 {
		return 0
	}
	return bits.Len(uint(n))
}

func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// extract finds every feature of m: words and word pairs of the subject
// and the body text; the sender side of the header (From and Reply-To
// domains and names, the Received path outside the receiving host, the
// Message-ID's and Date's shape and anomalies, mailer, list and reply
// fields, the words of other fields); links (hosts, domains, tricks, links
// to the sender's own domain); whether the body names the recipient; and
// the MIME structure (part types, attachments, HTML/text balance, transfer
// encodings, charsets, parse defects, shouting).
func (x *extractor) extract(m *Message) {
	x.text(nsSubj, nsSubjBi, m.Subject, maxSubjectTokens)
	caps, words := x.text(nsWord, nsBigram, m.Text, maxBodyTokens)
	x.subjectShape(m)
	x.headers(m)
	x.recipientInBody(m)
	x.urls(m)
	x.structure(m, caps, words)
}

// Tokens. A word is a run of letters and digits, which may also hold an
// apostrophe, hyphen, dot or underscore between two word characters
// ("don't", "e-mail", "3.50"). The currency signs and '!' are words of their
// own. Words are lower-cased; long digit runs and long words become their
// shape, so that phone numbers, ids and base64 debris do not each make a
// feature of their own.

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return isWordByte(byte(r))
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

func isJoiner(c byte) bool { return c == '\'' || c == '-' || c == '.' || c == '_' }

func isJoinerRune(r rune) bool { return r < utf8.RuneSelf && isJoiner(byte(r)) }

// text adds the unigrams and bigrams of s and returns how many words of 3 or
// more letters were all upper case, and how many words there were.
func (x *extractor) text(uni, bi byte, s string, limit int) (caps, words int) {
	var prev uint64
	var prevName string
	havePrev := false
	emit := func(tok string, h uint64) {
		x.add(uni, h, func() string { return string(uni) + ":" + strings.ToLower(tok) })
		if havePrev {
			p := prevName
			x.add(bi, prev*0x9e3779b97f4a7c15^h^uint64(bi), func() string {
				return string(bi) + ":" + strings.ToLower(p) + " " + strings.ToLower(tok)
			})
		}
		prev, prevName, havePrev = h, tok, true
	}
	for i := 0; i < len(s) && words < limit; {
		c := s[i]
		if c == '$' || c == '!' {
			j := i + 1
			for j < len(s) && s[j] == c {
				j++
			}
			tok := s[i : i+1]
			if c == '!' && j-i > 1 {
				tok = "!!!"
			}
			emit(tok, hashLower(hashStart(uni), tok))
			words++
			i = j
			continue
		}
		r, n := rune(c), 1
		if c >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(s[i:])
			if r == '€' || r == '£' {
				emit(s[i:i+n], hashLower(hashStart(uni), s[i:i+n]))
				words++
				i += n
				continue
			}
		}
		if !isWordRune(r) {
			i += n
			continue
		}
		// A word: letters/digits, with single joiners between them.
		start, end := i, i+n
		letters, upper, digits := 0, 0, 0
		wide := false // holds a character from U+2E80 on, where CJK starts
		count := func(r rune) {
			wide = wide || r >= 0x2e80
			switch {
			case '0' <= r && r <= '9':
				digits++
			case r < utf8.RuneSelf:
				letters++
				if 'A' <= r && r <= 'Z' {
					upper++
				}
			case unicode.IsDigit(r):
				digits++
			default:
				letters++
				if unicode.IsUpper(r) {
					upper++
				}
			}
		}
		count(r)
		for end < len(s) {
			c := s[end]
			if c < utf8.RuneSelf {
				if isWordByte(c) {
					// count, inlined: this loop sees every character
					// of the body.
					if c <= '9' {
						digits++
					} else {
						letters++
						if c <= 'Z' {
							upper++
						}
					}
					end++
					continue
				}
				if isJoiner(c) && end+1 < len(s) && s[end+1] < utf8.RuneSelf && isWordByte(s[end+1]) {
					end++
					continue
				}
				break
			}
			r, n := utf8.DecodeRuneInString(s[end:])
			if !isWordRune(r) {
				break
			}
			count(r)
			end += n
		}
		i = end
		tok := s[start:end]
		if letters >= 3 && upper == letters {
			caps++
		}
		if wide && hasCJK(tok) {
			// Chinese and Japanese are written without spaces (and Korean
			// often with few), so a run of them is a phrase, not a word:
			// one token for it would be "<long>" or unique. It is cut into
			// overlapping pairs of characters instead, the usual
			// tokenisation for these scripts (Lucene's CJK analyzer, SA's
			// Bayes); letters and digits mixed in are words of their own.
			words += cjkTokens(tok, limit-words, func(t string) { emit(t, hashLower(hashStart(uni), t)) })
			continue
		}
		words++
		tok = wordShape(tok, letters, digits)
		h := hashLower(hashStart(uni), tok)
		emit(tok, h)
	}
	return caps, words
}

// wordShape is a word as a feature: itself, or its shape when it is long
// (base64 debris), a long number or an id mixing letters and digits.
func wordShape(tok string, letters, digits int) string {
	switch {
	case len(tok) > 30:
		return "<long>"
	case letters == 0 && digits > 4:
		return "<num" + smallNums[min(digits, 20)] + ">"
	case digits >= 3 && letters > 0 && len(tok) >= 8:
		return "<id>"
	}
	return tok
}

// isCJK reports whether r is written without spaces between words: Han
// ideographs, kana and Hangul, and the marks of the Common script used
// inside their words (the long-vowel mark of メール, 々, 〆, 〇).
func isCJK(r rune) bool {
	if r < 0x2e80 {
		return false
	}
	switch r {
	case 0x30fc, 0xff70, 0x3005, 0x3006, 0x3007:
		return true
	}
	return unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) ||
		unicode.Is(unicode.Katakana, r) || unicode.Is(unicode.Hangul, r)
}

func hasCJK(tok string) bool {
	for _, r := range tok {
		if isCJK(r) {
			return true
		}
	}
	return false
}

// cjkTokens cuts a word run holding CJK characters into tokens, at most
// limit of them, and returns how many: each pair of adjacent CJK characters
// (a lone one by itself), and each stretch of other letters and digits as
// one word, shaped as elsewhere (wordShape).
func cjkTokens(tok string, limit int, put func(string)) int {
	n := 0
	for i := 0; i < len(tok) && n < limit; {
		r, size := utf8.DecodeRuneInString(tok[i:])
		cjk := isCJK(r)
		j := i + size
		for j < len(tok) {
			r, size := utf8.DecodeRuneInString(tok[j:])
			if isCJK(r) != cjk {
				break
			}
			j += size
		}
		if !cjk {
			// Letters and digits between CJK characters, shaped as any
			// word is; a joiner ('.', '-', ...) next to a CJK character
			// joins nothing.
			t := strings.TrimFunc(tok[i:j], isJoinerRune)
			if t != "" {
				letters, digits := 0, 0
				for _, r := range t {
					if unicode.IsDigit(r) {
						digits++
					} else if !isJoinerRune(r) {
						letters++
					}
				}
				put(wordShape(t, letters, digits))
				n++
			}
			i = j
			continue
		}
		// A CJK stretch tok[i:j]: its overlapping pairs.
		_, first := utf8.DecodeRuneInString(tok[i:])
		if i+first == j {
			put(tok[i:j])
			n++
		}
		for a := i; a+first < j && n < limit; {
			_, second := utf8.DecodeRuneInString(tok[a+first:])
			put(tok[a : a+first+second])
			n++
			a, first = a+first, second
		}
		i = j
	}
	return n
}

func (x *extractor) subjectShape(m *Message) {
	s := m.Subject
	if strings.TrimSpace(s) == "" {
		x.flag(nsSubjShape, "subj.empty")
		return
	}
	x.bucket(nsSubjShape, "subj.len", log2Bucket(utf8.RuneCountInString(s)))
	letters, upper, nonASCII := 0, 0, 0
	for _, r := range s {
		if unicode.IsLetter(r) {
			letters++
			if unicode.IsUpper(r) {
				upper++
			}
		}
		if r >= utf8.RuneSelf {
			nonASCII++
		}
	}
	if letters >= 6 && upper*10 >= letters*9 {
		x.flag(nsSubjShape, "subj.allcaps")
	}
	if nonASCII > 0 {
		x.flag(nsSubjShape, "subj.nonascii")
	}
	l := strings.ToLower(strings.TrimSpace(s))
	if strings.HasPrefix(l, "re:") || strings.HasPrefix(l, "re[") {
		x.flag(nsSubjShape, "subj.re")
	}
	if strings.HasPrefix(l, "fw:") || strings.HasPrefix(l, "fwd:") {
		x.flag(nsSubjShape, "subj.fwd")
	}
	// Ratware's "subject      12345" tail: a gap of spaces and an id.
	t := strings.TrimRight(s, " \t")
	if k := strings.LastIndexAny(t, " \t"); k > 0 && k < len(t)-2 {
		tail := t[k+1:]
		if hasDigit(tail) && (strings.HasSuffix(t[:k], "  ") || strings.Contains(s, "   ")) {
			x.flag(nsSubjShape, "subj.gapid")
		}
	}
	if raw := m.Header.Get("Subject"); strings.Contains(raw, "=?") {
		if cs, ok := encodedWordCharset(raw); ok {
			x.kv(nsSubjShape, "subj.enc", cs)
		}
	}
}

func hasDigit(s string) bool {
	for i := 0; i < len(s); i++ {
		if '0' <= s[i] && s[i] <= '9' {
			return true
		}
	}
	return false
}

// encodedWordCharset returns the charset of the first RFC 2047 encoded word.
func encodedWordCharset(s string) (string, bool) {
	i := strings.Index(s, "=?")
	if i < 0 {
		return "", false
	}
	rest := s[i+2:]
	j := strings.IndexByte(rest, '?')
	if j <= 0 || j > 40 {
		return "", false
	}
	return rest[:j], true
}

// Headers. Only what the sender's side wrote is used: the fields that the
// receiving side adds at delivery (Return-Path, Delivered-To, mailbox flags,
// other filters' verdicts) say how a corpus was collected, not whether a
// message is spam, and are not there when the gateway sees the message.

var ignoredHeaders = map[string]bool{
	"Return-Path": true, "Delivered-To": true, "X-Original-To": true, "Delivery-Date": true,
	"Envelope-To": true, "X-Envelope-From": true, "X-Envelope-To": true, "Status": true,
	"X-Status": true, "X-Keywords": true, "X-Uid": true, "X-Uidl": true, "Content-Length": true,
	"Lines": true, "X-Imapbase": true, "X-Imap": true, "Received-Spf": true,
	"Authentication-Results": true, "X-Scl": true, "X-Scl-Report": true,
	"X-Ms-Exchange-Organization-Scl": true, "X-Bogosity": true, "X-Rcpt-To": true,
}

var ignoredHeaderPrefixes = []string{"X-Spam-", "X-Virus-", "X-Mozilla-", "X-Evolution", "X-Gmail-", "X-Dspam-", "X-Razor"}

func ignoredHeader(k string) bool {
	if ignoredHeaders[k] {
		return true
	}
	for _, p := range ignoredHeaderPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// ownParsed are the fields whose features headers() makes itself; the words
// of every other field's value are features as they are. To and Cc are
// left out: their words name the recipient, not the sender.
var ownParsed = map[string]bool{
	"Subject": true, "Received": true, "Date": true, "Message-Id": true, "Content-Type": true,
	"Mime-Version": true, "Content-Transfer-Encoding": true, "To": true, "Cc": true,
}

// headerWords adds the words of a field's value, prefixed by the field
// name ("From:joyful"), at most limit of them, and returns how many.
func (x *extractor) headerWords(key, v string, limit int) int {
	n := 0
	limit = min(limit, maxFieldTokens)
	for i := 0; i < len(v) && n < limit; {
		if !isHeaderWordByte(v[i]) {
			i++
			continue
		}
		j := i
		digits := 0
		for j < len(v) && isHeaderWordByte(v[j]) {
			if '0' <= v[j] && v[j] <= '9' {
				digits++
			}
			j++
		}
		w := strings.Trim(v[i:j], ".-_")
		i = j
		switch {
		case w == "":
			continue
		case len(w) > 40:
			w = "<long>"
		case digits >= 3 && digits*3 >= len(w):
			w = "<" + shape(w, 16) + ">"
		}
		x.kv(nsHeaderWord, key, w)
		n++
	}
	return n
}

func isHeaderWordByte(c byte) bool {
	return isWordByte(c) || c == '.' || c == '-' || c == '_' || c >= utf8.RuneSelf
}

func (x *extractor) headers(m *Message) {
	h := &m.Header
	n, tokens := 0, 0
	fields := h.Fields()
	for fields.Next() {
		k := fields.Key()
		if ignoredHeader(k) {
			continue
		}
		if n++; n > maxHeaderFields {
			break
		}
		x.kv(nsHeader, "hn", k)
		if !ownParsed[k] && tokens < maxHeaderTokens {
			tokens += x.headerWords(k, fields.Value(), maxHeaderTokens-tokens)
		}
	}
	x.bucket(nsHeader, "hn.count", log2Bucket(n))

	fromDom := x.from(h.Get("From"))
	x.fromReg = regDomain(fromDom)
	if rt := h.Get("Reply-To"); rt != "" {
		_, dom := addrParts(rt)
		x.kv(nsHeader, "rt.reg", regDomain(dom))
		if !strings.EqualFold(regDomain(dom), regDomain(fromDom)) {
			x.flag(nsHeader, "rt.differs")
		}
	}
	to := h.Get("To")
	if to == "" {
		x.flag(nsHeader, "to.missing")
	} else if strings.Contains(strings.ToLower(to), "undisclosed") {
		x.flag(nsHeader, "to.undisclosed")
	}
	x.bucket(nsHeader, "to.n", log2Bucket(strings.Count(to, "@")))
	x.bucket(nsHeader, "cc.n", log2Bucket(strings.Count(h.Get("Cc"), "@")))
	if _, dom := addrParts(to); dom != "" && fromDom != "" && strings.EqualFold(regDomain(dom), regDomain(fromDom)) {
		x.flag(nsHeader, "to.fromdom")
	}

	x.received(m)
	x.messageID(h.Get("Message-Id"), fromDom)
	x.date(m)

	mailer := h.Get("X-Mailer")
	if mailer == "" {
		mailer = h.Get("User-Agent")
	}
	if mailer == "" {
		x.flag(nsHeader, "mailer.none")
	} else {
		w := mailer
		if i := strings.IndexAny(w, " /("); i > 0 {
			w = w[:i]
		}
		x.kv(nsHeader, "mailer", w)
		x.shapeKV(nsHeader, "mailer.shape", shape(mailer, 24))
	}
	for _, k := range []string{"Precedence", "X-Priority", "X-Msmail-Priority", "Importance"} {
		if v := h.Get(k); v != "" {
			if i := strings.IndexAny(v, " ("); i > 0 {
				v = v[:i]
			}
			x.kv(nsHeader, k, v)
		}
	}
	if h.Get("In-Reply-To") != "" || h.Get("References") != "" {
		x.flag(nsHeader, "reply")
	}
	if h.Get("List-Id") != "" || h.Get("List-Unsubscribe") != "" || h.Get("Mailing-List") != "" {
		x.flag(nsHeader, "list")
	}

	ct := h.Get("Content-Type")
	if ct == "" {
		x.flag(nsHeader, "ct.none")
	} else {
		mt, params, err := h.ContentType()
		if err != nil {
			x.flag(nsHeader, "ct.bad")
		}
		x.kv(nsHeader, "ct", mt)
		if cs := params["charset"]; cs != "" {
			x.kv(nsHeader, "ct.cs", cs)
		}
		if b := params["boundary"]; b != "" {
			x.shapeKV(nsHeader, "ct.boundary", shape(b, 16))
		}
		if h.Get("Mime-Version") == "" {
			x.flag(nsHeader, "mime.noversion")
		}
	}
	if cte := h.Get("Content-Transfer-Encoding"); cte != "" {
		x.kv(nsHeader, "cte", strings.TrimSpace(cte))
	}
}

// from adds the From features and returns its domain.
func (x *extractor) from(v string) string {
	if v == "" {
		x.flag(nsHeader, "from.missing")
		return ""
	}
	local, dom := addrParts(v)
	if dom == "" {
		x.flag(nsHeader, "from.noaddr")
		return ""
	}
	x.kv(nsHeader, "from.dom", dom)
	reg := regDomain(dom)
	x.kv(nsHeader, "from.reg", reg)
	x.kv(nsHeader, "from.tld", tld(dom))
	x.shapeKV(nsHeader, "from.local", shape(local, 12))
	if strings.Contains(v, "=?") {
		if cs, ok := encodedWordCharset(v); ok {
			x.kv(nsHeader, "from.enc", cs)
		}
	}
	// Display name words.
	name := v
	if i := strings.IndexByte(v, '<'); i >= 0 {
		name = v[:i]
	} else {
		name = ""
	}
	name = strings.Trim(strings.TrimSpace(name), `"'`)
	if name == "" {
		x.flag(nsHeader, "from.noname")
		return dom
	}
	if strings.Contains(name, "@") {
		x.flag(nsHeader, "from.name.addr")
	}
	if strings.Contains(strings.ToLower(name), strings.ToLower(local)) && len(local) > 2 {
		x.flag(nsHeader, "from.name.local")
	}
	for i, w := range strings.Fields(name) {
		if i >= maxNameWords {
			break
		}
		x.kv(nsHeader, "from.name", strings.Trim(w, `"',.()`))
	}
	return dom
}

// addrParts returns the local part and the domain of the (last) address in
// an address header value, without a full RFC 5322 parse.
func addrParts(v string) (local, domain string) {
	at := strings.LastIndexByte(v, '@')
	if at < 0 {
		return "", ""
	}
	end := at + 1
	for end < len(v) && isDomainByte(v[end]) {
		end++
	}
	start := at
	for start > 0 && !strings.ContainsRune(" <\"'(,:;\t", rune(v[start-1])) {
		start--
	}
	return v[start:at], strings.ToLower(strings.TrimRight(v[at+1:end], "."))
}

func isDomainByte(c byte) bool {
	return isWordByte(c) || c == '-' || c == '.' || c == '_' || c >= utf8.RuneSelf
}

// regDomain approximates the registered domain: the last two labels, or
// three under a two-letter country code whose second level is short
// ("example.co.uk", "example.com.au"). Good enough to group hosts; no public
// suffix list is needed for that.
func regDomain(d string) string {
	d = strings.TrimSuffix(d, ".")
	last := strings.LastIndexByte(d, '.')
	if last < 0 {
		return d
	}
	prev := strings.LastIndexByte(d[:last], '.')
	if prev < 0 {
		return d
	}
	if len(d)-last-1 == 2 && last-prev-1 <= 3 {
		if p := strings.LastIndexByte(d[:prev], '.'); p >= 0 {
			return d[p+1:]
		}
		return d
	}
	return d[prev+1:]
}

func tld(d string) string {
	if i := strings.LastIndexByte(d, '.'); i >= 0 {
		return d[i+1:]
	}
	return ""
}

// shape maps a string to its character classes, runs collapsed: letters
// "a" (upper "A"), digits "9", others kept. "Outlook_5.50.4133" → "Aa_9.9.9".
// Cut to n bytes of input.
func shape(s string, n int) string {
	if len(s) > n {
		s = cutUTF8(s, n)
	}
	var b [64]byte
	out := b[:0]
	var last byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		var k byte
		switch {
		case 'a' <= c && c <= 'z':
			k = 'a'
		case 'A' <= c && c <= 'Z':
			k = 'A'
		case '0' <= c && c <= '9':
			k = '9'
		case c >= utf8.RuneSelf:
			k = 'u'
		default:
			k = c
		}
		if k != last || !(k == 'a' || k == 'A' || k == '9' || k == 'u') {
			if len(out) == cap(out) {
				break
			}
			out = append(out, k)
		}
		last = k
	}
	return string(out)
}

// received adds the path features: for each Received field that is not a
// local hop (loopback, "by localhost": fetchmail and content filters on the
// receiving host), the sending side's name and shape. The "by" side is the
// receiving system's own name and is not used.
func (x *extractor) received(m *Message) {
	fields := m.Header.FieldsByKey("Received")
	kept, seen := 0, 0
	fromDomSeen := false
	var lastHost, lastHelo, lastWith string
	lastNoRDNS, private := false, 0
	for fields.Next() {
		if seen++; seen > maxReceived {
			break
		}
		v := fields.Value()
		lv := strings.ToLower(v)
		helo, rdns, ip, by, with := parseReceived(lv)
		if by == "localhost" || strings.HasPrefix(ip, "127.") || helo == "localhost" || rdns == "localhost" {
			continue
		}
		if privateIP(ip) {
			// A hop inside the sender's own network: its names say
			// nothing about reputation.
			x.flag(nsHeader, "rcvd.private")
			private++
			continue
		}
		if strings.Contains(lv, "may be forged") {
			x.flag(nsHeader, "rcvd.forged")
		}
		if helo == "" && ip == "" {
			continue // "from userid 500 by host", "by host via ..."
		}
		if kept++; kept == 1 {
			// The newest hop from outside is counted but not described.
			// In a collected corpus it is the collector's own relay into
			// their mailbox (the SpamAssassin corpus: one of its
			// maintainers' relays), which names whoever collected the
			// mail, not who sent it: a model that learned those names
			// would be scored on them and be no better for it. The
			// gateway scores a message before adding its own Received
			// field, so there the rule skips the newest field the client
			// sent, which describes the hop before the client. Training
			// and serving are thus not aligned hop for hop (corpus mail
			// also carries its recipients' MX hop, gateway mail does not);
			// what the model learns from the Received chain is its shape
			// and the sending side's names, which both have.
			continue
		}
		const prefix = "rcvd"
		host := rdns
		switch {
		case host == "" || host == "unknown":
			if ip != "" {
				x.flag(nsHeader, prefix+".nordns")
			}
			host = helo
		}
		if host != "" {
			if isIPLiteral(host) {
				x.flag(nsHeader, prefix+".ip")
			} else {
				x.kv(nsHeader, prefix+".reg", regDomain(host))
				x.kv(nsHeader, prefix+".tld", tld(host))
				if x.fromReg != "" && regDomain(host) == x.fromReg && !fromDomSeen {
					// Sent from the From domain's own servers.
					x.flag(nsHeader, "rcvd.fromdom")
					fromDomSeen = true
				}
			}
		}
		switch {
		case helo == "":
		case isIPLiteral(helo):
			x.flag(nsHeader, prefix+".helo.ip")
		case !strings.Contains(helo, "."):
			x.flag(nsHeader, prefix+".helo.nodot")
		case rdns != "" && rdns != "unknown" && rdns != helo:
			x.flag(nsHeader, prefix+".helo.mismatch")
		}
		if with != "" {
			x.kv(nsHeader, "rcvd.with", with)
		}
		lastHost, lastHelo, lastWith = host, helo, with
		lastNoRDNS = rdns == "" || rdns == "unknown"
	}
	x.bucket(nsHeader, "rcvd.n", kept)
	// The chain's shape: how many fields in all (local hops included), how
	// many inside the sender's network, and the originating hop (the
	// oldest outside one), where spam's throw-away hosts show.
	x.bucket(nsHeader, "rcvd.all", seen)
	x.bucket(nsHeader, "rcvd.priv", private)
	if kept > 1 {
		if lastHost != "" && !isIPLiteral(lastHost) {
			x.kv(nsHeader, "rcvdz.reg", regDomain(lastHost))
		}
		x.shapeKV(nsHeader, "rcvdz.helo", shape(lastHelo, 24))
		x.kv(nsHeader, "rcvdz.with", lastWith)
		if lastNoRDNS {
			x.flag(nsHeader, "rcvdz.nordns")
		}
	}
}

// parseReceived picks the parts of a lower-cased Received field that it
// uses: "from HELO (RDNS [IP]) by BY with WITH". Missing parts are "".
func parseReceived(v string) (helo, rdns, ip, by, with string) {
	word := func(s string) string {
		s = strings.TrimLeft(s, " \t")
		end := 0
		for end < len(s) && !strings.ContainsRune(" \t();", rune(s[end])) {
			end++
		}
		return s[:end]
	}
	if i := strings.Index(v, "from "); i >= 0 && i < 8 {
		rest := v[i+5:]
		helo = strings.Trim(word(rest), "[]")
		rest = strings.TrimLeft(rest, " \t")
		rest = rest[min(len(rest), len(word(rest))):]
		rest = strings.TrimLeft(rest, " \t")
		if strings.HasPrefix(rest, "(") {
			if j := strings.IndexByte(rest, ')'); j > 0 {
				inner := rest[1:j]
				if k := strings.IndexByte(inner, '['); k >= 0 {
					if e := strings.IndexByte(inner[k:], ']'); e > 0 {
						ip = inner[k+1 : k+e]
					}
					inner = inner[:k]
				}
				inner = strings.TrimSpace(inner)
				if w := word(inner); strings.Contains(w, ".") || w == "unknown" || w == "localhost" {
					if !strings.Contains(w, "=") && !strings.Contains(w, "@") {
						rdns = w
					}
				}
			}
		}
		if ip == "" {
			// "from host [1.2.3.4]" (fetchmail, qmail) or a bare literal.
			if k := strings.IndexByte(rest, '['); k >= 0 && k < 4 {
				if e := strings.IndexByte(rest[k:], ']'); e > 0 {
					ip = rest[k+1 : k+e]
				}
			} else if isIPLiteral(helo) {
				ip = helo
			}
		}
	}
	if i := strings.Index(v, " by "); i >= 0 {
		by = word(v[i+4:])
	} else if strings.HasPrefix(v, "by ") {
		by = word(v[3:])
	}
	if i := strings.Index(v, " with "); i >= 0 {
		with = word(v[i+6:])
	}
	return
}

func privateIP(ip string) bool {
	if strings.HasPrefix(ip, "10.") || strings.HasPrefix(ip, "192.168.") {
		return true
	}
	if strings.HasPrefix(ip, "172.") {
		rest := ip[4:]
		if i := strings.IndexByte(rest, '.'); i > 0 {
			switch rest[:i] {
			case "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31":
				return true
			}
		}
	}
	return false
}

func isIPLiteral(s string) bool {
	s = strings.Trim(s, "[]")
	if s == "" {
		return false
	}
	dots := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			dots++
		case c == ':' || '0' <= c && c <= '9' || 'a' <= c && c <= 'f' && strings.Contains(s, ":"):
		default:
			return false
		}
	}
	return dots == 3 || strings.Contains(s, ":")
}

func (x *extractor) messageID(v, fromDom string) {
	v = strings.TrimSpace(v)
	if v == "" {
		x.flag(nsHeader, "mid.none")
		return
	}
	v = strings.Trim(v, "<>")
	at := strings.LastIndexByte(v, '@')
	if at < 0 {
		x.flag(nsHeader, "mid.noat")
		x.shapeKV(nsHeader, "mid.shape", shape(v, 24))
		return
	}
	local, dom := v[:at], strings.ToLower(v[at+1:])
	x.shapeKV(nsHeader, "mid.shape", shape(local, 24))
	switch {
	case isIPLiteral(dom):
		x.flag(nsHeader, "mid.dom.ip")
	case !strings.Contains(dom, "."):
		x.flag(nsHeader, "mid.dom.nodot")
	default:
		x.kv(nsHeader, "mid.reg", regDomain(dom))
		if fromDom != "" && regDomain(dom) == regDomain(fromDom) {
			x.flag(nsHeader, "mid.fromdom")
		}
	}
}

// date adds the Date field's shape, zone and anomalies: unparseable, an
// impossible zone, and how far it is from the newest Received time stamp.
func (x *extractor) date(m *Message) {
	v := strings.TrimSpace(m.Header.Get("Date"))
	if v == "" {
		x.flag(nsHeader, "date.none")
		return
	}
	x.shapeKV(nsHeader, "date.shape", shape(v, 40))
	t, err := mail.ParseDate(v)
	if err != nil {
		x.flag(nsHeader, "date.bad")
		return
	}
	_, off := t.Zone()
	if off%900 != 0 || off < -12*3600 || off > 14*3600 {
		x.flag(nsHeader, "date.badzone")
	}
	x.kv(nsHeader, "date.zone", t.Format("-0700"))
	rv := m.Header.Get("Received") // the newest (top) Received field
	i := strings.LastIndexByte(rv, ';')
	if i < 0 {
		return
	}
	rt, err := mail.ParseDate(strings.TrimSpace(rv[i+1:]))
	if err != nil {
		return
	}
	d := rt.Sub(t) // positive: Date is before it was received
	var b string
	switch {
	case d < -24*time.Hour:
		b = "future.day"
	case d < -time.Hour:
		b = "future.hour"
	case d < 2*time.Hour:
		b = "ok"
	case d < 24*time.Hour:
		b = "past.hours"
	case d < 7*24*time.Hour:
		b = "past.days"
	case d < 60*24*time.Hour:
		b = "past.weeks"
	default:
		b = "past.months"
	}
	x.kv(nsHeader, "date.skew", b)
}

// recipientInBody adds whether the body names the To address, or its local
// part: mail that the recipient asked for says whom it was sent to.
func (x *extractor) recipientInBody(m *Message) {
	local, dom := addrParts(m.Header.Get("To"))
	if dom == "" || len(local) < 3 {
		return
	}
	text := m.Text
	if len(text) > 256<<10 {
		text = text[:256<<10]
	}
	addr := local + "@" + dom
	switch {
	case containsFold(text, addr):
		x.flag(nsHeader, "to.inbody.addr")
	case containsFold(text, local):
		x.flag(nsHeader, "to.inbody.local")
	default:
		x.flag(nsHeader, "to.inbody.none")
	}
}

// containsFold reports whether s contains sub, case-insensitively. It
// jumps between the occurrences of sub's first byte, in either case, with
// strings.IndexByte, and compares there with strings.EqualFold.
func containsFold(s, sub string) bool {
	if sub == "" {
		return true
	}
	lo, up := sub[0], sub[0]
	if l := sub[0] | 0x20; 'a' <= l && l <= 'z' {
		lo, up = l, l&^0x20
	}
	n := len(sub)
	nextLo, nextUp := -2, -2 // next position of each at or after i; -1: none left
	next := func(c byte, i int) int {
		if j := strings.IndexByte(s[i:], c); j >= 0 {
			return i + j
		}
		return -1
	}
	for i := 0; i+n <= len(s); {
		if nextLo != -1 && nextLo < i {
			nextLo = next(lo, i)
		}
		if nextUp != -1 && nextUp < i {
			nextUp = next(up, i)
		}
		j := nextLo
		if j < 0 || (nextUp >= 0 && nextUp < j) {
			j = nextUp
		}
		if j < 0 || j+n > len(s) {
			return false
		}
		if strings.EqualFold(s[j:j+n], sub) {
			return true
		}
		i = j + 1
	}
	return false
}

// urls adds the link features: of every HTML link target and every URL in
// the text, its host, registered domain, top-level domain, and tricks
// (numeric hosts, user-info, ports, escapes), and a few path words.
func (x *extractor) urls(m *Message) {
	var regs [maxURLs]string
	nregs, n, fromDom := 0, 0, 0
	visit := func(u string) {
		if n >= maxURLs {
			return
		}
		n++
		host, path, scheme, tricks := splitURL(u)
		if scheme != "" {
			x.kv(nsURL, "scheme", scheme)
		}
		if scheme == "mailto" {
			x.kv(nsURL, "mailto.reg", regDomain(host))
			return
		}
		for _, t := range tricks {
			x.flag(nsURL, t)
		}
		if host == "" {
			return
		}
		if isIPLiteral(host) || isNumericHost(host) {
			x.flag(nsURL, "host.ip")
		} else {
			reg := regDomain(host)
			x.kv(nsURL, "host", host)
			x.kv(nsURL, "reg", reg)
			x.kv(nsURL, "tld", tld(host))
			known := false
			for _, r := range regs[:nregs] {
				if r == reg {
					known = true
					break
				}
			}
			if !known && nregs < len(regs) {
				regs[nregs] = reg
				nregs++
			}
			if reg == x.fromReg {
				fromDom++
			}
		}
		depth := strings.Count(path, "/")
		x.bucket(nsURL, "depth", depth)
		if q := strings.IndexByte(path, '?'); q >= 0 {
			x.flag(nsURL, "query")
			path = path[:q]
		}
		if dot := strings.LastIndexByte(path, '.'); dot >= 0 && dot > strings.LastIndexByte(path, '/') && len(path)-dot <= 6 {
			x.kv(nsURL, "ext", path[dot+1:])
		}
		words := 0
		for _, w := range strings.FieldsFunc(path, func(r rune) bool { return !unicode.IsLetter(r) }) {
			if len(w) < 3 || len(w) > 15 {
				continue
			}
			if words++; words > 4 {
				break
			}
			x.kv(nsURL, "pw", w)
		}
	}
	for _, u := range m.URLs {
		visit(u)
	}
	textURLs(m.Text, visit)
	x.bucket(nsURL, "n", log2Bucket(n))
	x.bucket(nsURL, "regs", nregs)
	// Links to the sender's own domain: what newsletters do, and what spam
	// with a forged or throw-away From cannot.
	switch {
	case nregs == 0:
	case fromDom == 0:
		x.flag(nsURL, "fromdom.none")
	case fromDom*2 >= n:
		x.flag(nsURL, "fromdom.most")
	default:
		x.flag(nsURL, "fromdom.some")
	}
}

// textURLs calls visit with every http(s):// or www. link in s.
func textURLs(s string, visit func(string)) {
	for count := 0; count < maxURLs; count++ {
		i := indexURL(s)
		if i < 0 {
			return
		}
		end := i
		for end < len(s) && s[end] > ' ' && s[end] < 0x7f && !strings.ContainsRune(`<>"'`, rune(s[end])) {
			end++
		}
		u := strings.TrimRight(s[i:end], ".,;:!?)]")
		visit(u)
		s = s[max(end, i+4):]
	}
}

func indexURL(s string) int {
	best := -1
	for _, p := range []string{"http://", "https://", "www."} {
		if i := strings.Index(s, p); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best
}

// splitURL returns a link's host (lower case, no port or user-info), its
// path with query, its scheme, and the tricks seen in it.
func splitURL(u string) (host, path, scheme string, tricks []string) {
	u = strings.TrimSpace(u)
	if i := strings.Index(u, ":"); i > 0 && i < 12 && !strings.HasPrefix(strings.ToLower(u), "www.") {
		scheme = strings.ToLower(u[:i])
		u = u[i+1:]
	}
	if scheme == "mailto" {
		_, host = addrParts(u)
		return host, "", scheme, nil
	}
	u = strings.TrimLeft(u, "/\\")
	end := strings.IndexAny(u, "/?#")
	if end < 0 {
		end = len(u)
	}
	host, path = u[:end], u[end:]
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		tricks = append(tricks, "userinfo")
		host = host[at+1:]
	}
	if c := strings.LastIndexByte(host, ':'); c >= 0 && !strings.Contains(host, "]") {
		tricks = append(tricks, "port")
		host = host[:c]
	}
	if strings.Contains(host, "%") || strings.Contains(u, "&#") {
		tricks = append(tricks, "escaped")
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if len(host) > 100 {
		host = host[:100]
	}
	return host, path, scheme, tricks
}

// isNumericHost reports a host given as one decimal, octal or hex number
// ("3232235777", "0xC0A80001"), a classic filter-evasion trick.
func isNumericHost(h string) bool {
	if h == "" {
		return false
	}
	if strings.HasPrefix(h, "0x") {
		return true
	}
	for i := 0; i < len(h); i++ {
		if h[i] < '0' || h[i] > '9' {
			return false
		}
	}
	return true
}

// structure adds MIME structure and shape: parts and their types,
// attachments, HTML/text balance, sizes, defects, transfer encodings and
// charsets of the parts, and the share of all-caps words.
func (x *extractor) structure(m *Message, caps, words int) {
	var plain, htmlParts, htmlBytes, plainBytes, images, attach int
	for i, p := range m.Parts {
		if i >= MaxParts {
			break
		}
		x.kv(nsStructure, "part", p.ContentType)
		switch {
		case p.Filename != "":
			attach++
			ext := ""
			if dot := strings.LastIndexByte(p.Filename, '.'); dot >= 0 && len(p.Filename)-dot <= 6 {
				ext = p.Filename[dot+1:]
			}
			x.kv(nsStructure, "att.ext", ext)
			if strings.HasPrefix(p.ContentType, "image/") {
				images++
			}
		case p.ContentType == "text/plain":
			plain++
			plainBytes += p.Size
		case p.ContentType == "text/html":
			htmlParts++
			htmlBytes += p.Size
		case strings.HasPrefix(p.ContentType, "image/"):
			images++
		}
	}
	x.bucket(nsStructure, "parts", log2Bucket(len(m.Parts)))
	x.bucket(nsStructure, "attach", log2Bucket(attach))
	x.bucket(nsStructure, "images", log2Bucket(images))
	switch {
	case htmlParts > 0 && plain == 0:
		x.flag(nsStructure, "html.only")
	case htmlParts > 0:
		x.flag(nsStructure, "html.alt")
	case plain > 0:
		x.flag(nsStructure, "text.only")
	default:
		x.flag(nsStructure, "no.text")
	}
	if htmlBytes > 0 {
		// Rendered text per byte of HTML, in eighths: near 0 for markup
		// and image spam, near 1 for real prose.
		x.bucket(nsStructure, "html.textratio", min(8, len(m.Text)*8/max(1, htmlBytes+plainBytes)))
	}
	x.bucket(nsStructure, "text.len", log2Bucket(len(m.Text)))
	x.bucket(nsStructure, "raw.len", log2Bucket(int(min(m.Size, math.MaxInt32))))
	if words > 0 {
		x.bucket(nsStructure, "caps", min(10, caps*20/words))
	}
	for _, d := range m.Defects {
		if i := strings.IndexAny(d, ":"); i > 0 {
			d = d[:i]
		}
		x.kv(nsStructure, "defect", d)
	}
	scanRawParams(m.Raw, func(key, val string) { x.kv(nsStructure, key, val) })
}

// scanRawParams finds, in the raw message, each part's transfer encoding
// and charset, which the parsed Message no longer carries, without parsing
// the message again: a case-sensitive search for the usual spellings.
func scanRawParams(raw []byte, add func(key, val string)) {
	n := 0
	for _, pat := range []string{"Content-Transfer-Encoding:", "content-transfer-encoding:", "Content-transfer-encoding:", "CONTENT-TRANSFER-ENCODING:"} {
		p := []byte(pat)
		for rest := raw; n < maxScanCharsets; {
			i := bytes.Index(rest, p)
			if i < 0 {
				break
			}
			rest = rest[i+len(p):]
			add("cte", string(firstToken(rest)))
			n++
		}
	}
	n = 0
	for _, pat := range []string{"charset=", "CHARSET=", "Charset="} {
		p := []byte(pat)
		for rest := raw; n < maxScanCharsets; {
			i := bytes.Index(rest, p)
			if i < 0 {
				break
			}
			rest = rest[i+len(p):]
			add("cs", string(firstToken(rest)))
			n++
		}
	}
}

// firstToken is the value at the start of b: blanks skipped, up to a
// blank, ';', quote or '>' (and without the "3D" that quoted-printable puts
// after '=').
func firstToken(b []byte) []byte {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	if bytes.HasPrefix(b[i:], []byte("3D")) {
		i += 2
	}
	for i < len(b) && (b[i] == '"' || b[i] == '\'') {
		i++
	}
	j := i
	for j < len(b) && j-i < 40 && b[j] > ' ' && b[j] != ';' && b[j] != '"' && b[j] != '\'' && b[j] != '>' {
		j++
	}
	return b[i:j]
}

// TrimMboxFrom returns raw without a leading mbox "From " separator line
// ("From sender@example.com  Thu Aug 22 13:17:22 2002"), which is how many
// corpora store messages but is no part of a message as sent over SMTP (and,
// having no colon, it would stop the header from being parsed at all).
func TrimMboxFrom(raw []byte) []byte {
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			return raw[i+1:]
		}
	}
	return raw
}
