package scorer

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset" // every charset go-message knows, not just UTF-8
	"golang.org/x/net/html"
	htmlcharset "golang.org/x/net/html/charset"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/unicode"
)

// Parse limits. Mail from the internet is hostile: go-message itself puts no
// bound on nesting depth or part count, so Parse does.
const (
	MaxDepth     = 100     // multipart nesting levels walked (Postfix's mime_nesting_limit)
	MaxParts     = 5000    // MIME parts walked per message
	MaxPartBytes = 2 << 20 // decoded bytes of one text part read for scoring
	MaxTextBytes = 4 << 20 // body text kept for scoring, all parts together
)

// windows1252Labels are the ISO-8859-1 labels the WHATWG Encoding
// Standard reads as Windows-1252, which is what mail clients and browsers
// do: the mail Windows programs label ISO-8859-1 is Windows-1252 (its
// euro sign and curly quotes sit in bytes that ISO-8859-1 leaves to C1
// control characters). Parse reads them so too, in bodies and in RFC 2047
// words, so that such text reads here as it does in the recipient's mail
// client, for the model and for phrase rules. (US-ASCII text with 8-bit
// bytes is read as UTF-8 when it is, else as Windows-1252: see toUTF8.)
var windows1252Labels = []string{"cp1252", "cp819", "csisolatin1", "ibm819",
	"iso-8859-1", "iso-ir-100", "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1", "latin1",
	"windows-1252", "x-cp1252"}

// windows1254Labels are the ISO-8859-9 (Turkish) labels the WHATWG table
// reads as Windows-1254, for the same reason: with ISO-8859-9 the euro
// sign and curly quotes of "\x80100 bonus, don\x92t miss" were control
// characters, and a phrase with them never matched.
var windows1254Labels = []string{"csisolatin5", "iso-8859-9", "iso-ir-148", "iso8859-9", "iso88599",
	"iso_8859-9", "iso_8859-9:1989", "l5", "latin5"}

func init() {
	// go-message keeps its charset table per process; this only adds
	// names to it, the same for every caller.
	for _, l := range windows1252Labels {
		charset.RegisterEncoding(l, charmap.Windows1252)
	}
	for _, l := range windows1254Labels {
		charset.RegisterEncoding(l, charmap.Windows1254)
	}
	charset.RegisterEncoding(utf16Label, encoding.Nop) // read by utf16Readings
}

// utf16Label is the charset label whose parts go-message passes through
// undecoded (encoding.Nop), to be read by utf16Readings.
const utf16Label = "utf-16"

// utf16Readings reads UTF-16 in the byte order its byte order mark says
// or, without one, in both orders, the likelier first (utf16Order). RFC
// 2781 says big-endian, which Go's table and decoders that follow the
// RFC read, while the WHATWG table that browsers and Thunderbird follow
// says little-endian; and a guess from the bytes is the sender's to steer
// (200 ideographic spaces, bytes 00 30, make little-endian text look
// big-endian, and Chinese without ASCII gives no hint at all). Read both
// ways, its words are read whichever way its reader reads them; the other
// reading is noise to the model. Each reading is a text of its own (an
// HTML page of its own): read into one page, the wrong one opened a
// "<!--" that hid the right one.
func utf16Readings(b []byte) []string {
	if bytes.HasPrefix(b, []byte("\xfe\xff")) || bytes.HasPrefix(b, []byte("\xff\xfe")) {
		d, _ := unicode.UTF16(unicode.BigEndian, unicode.UseBOM).NewDecoder().Bytes(b)
		return []string{strings.ToValidUTF8(string(d), "\uFFFD")}
	}
	first := utf16Order(b)
	second := unicode.LittleEndian
	if first == unicode.LittleEndian {
		second = unicode.BigEndian
	}
	d1, _ := unicode.UTF16(first, unicode.IgnoreBOM).NewDecoder().Bytes(b)
	d2, _ := unicode.UTF16(second, unicode.IgnoreBOM).NewDecoder().Bytes(b)
	return []string{strings.ToValidUTF8(string(d1), "\uFFFD"), strings.ToValidUTF8(string(d2), "\uFFFD")}
}

// hasUTF16Word says whether a header field value may hold an RFC 2047
// word in UTF-16.
func hasUTF16Word(v string) bool {
	return containsFold(v, "=?utf-16") || containsFold(v, "=?utf16")
}

// paramText is a header field's parameter as decoded, or, when the field
// has an RFC 2047 word in UTF-16 (which go-message passes through
// undecoded, see utf16Label), decoded here as a Subject is.
func paramText(field, key, decoded string) string {
	if !hasUTF16Word(field) {
		return decoded
	}
	if _, ps, err := mime.ParseMediaType(field); err == nil {
		if v, ok := ps[key]; ok {
			return decodeSubjectValue(v)
		}
	}
	return decoded
}

// utf16Order is the likelier byte order of UTF-16 text without a byte
// order mark: little-endian when more of its first 512 bytes have a zero
// byte second in a pair (the high byte of Latin text), else big-endian.
func utf16Order(b []byte) unicode.Endianness {
	b = b[:min(len(b), 512)]
	first, second := 0, 0
	for i := 0; i+1 < len(b); i += 2 {
		if b[i] == 0 {
			first++
		}
		if b[i+1] == 0 {
			second++
		}
	}
	if second > first {
		return unicode.LittleEndian
	}
	return unicode.BigEndian
}

// Message is a message parsed once for scoring: the classifier and the
// weight list both read this same value. It is never modified after Parse.
type Message struct {
	Raw     []byte         // the message as received, or its start (ParseReader)
	Size    int64          // the whole message's size in bytes
	Header  message.Header // top-level header
	Subject string         // decoded (RFC 2047) subject
	// MoreSubjects holds the decoded Subject fields after the first, which
	// the weight list's SUBJECT phrases are matched against too (RFC 5322
	// allows one; a second is how a sender would hide one from the filter).
	MoreSubjects []string
	// Text is the decoded body text: every text/plain part and every
	// text/html part rendered to text, converted to UTF-8, joined by
	// newlines. Capped at MaxTextBytes.
	Text string
	// TextStarts holds where in Text each text part after the first
	// begins, so that phrase rules can be matched part by part: a phrase
	// is never made of the end of one part and the start of the next.
	TextStarts []int
	URLs       []string // link targets found in HTML parts, in order
	Parts      []Part   // every leaf part walked, in order
	// Defects lists what could not be read. A message with defects is still
	// scored on what could be read; it is never rejected for them.
	Defects []string
	// Overflow, when not empty, says which structural limit the message
	// went past (MaxParts, MaxDepth), so that parts of it were not read:
	// the gateway refuses such a message rather than pass a verdict on
	// part of it (a phrase after the last part walked was never matched), as
	// Postfix refuses mail nested past its mime_nesting_limit.
	Overflow string
}

// Part describes one leaf MIME part, for classifiers that look at structure.
type Part struct {
	ContentType string // lower-case media type, e.g. "text/html"
	Filename    string // attachment file name, if any
	Size        int    // decoded size in bytes (capped at MaxPartBytes)
}

// Parse parses raw into a Message. It never fails: what cannot be read is
// recorded in Defects and the rest is kept.
func Parse(raw []byte) *Message {
	return ParseReader(bytes.NewReader(raw), raw, int64(len(raw)))
}

// ParseReader parses a message of size bytes read from r, for messages
// too large to hold in memory: head is the start of the same message (at
// least its header, and best EngineMaxSize bytes, all an external engine
// is sent), kept as Message.Raw. Memory use is bounded by the part and
// text limits whatever the message's size.
func ParseReader(r io.Reader, head []byte, size int64) *Message {
	m := &Message{Raw: head, Size: size}
	// Mailbox files and many archives start each message with an mbox
	// "From " line, which is not a header field: without this, the whole
	// header would be unreadable.
	if bytes.HasPrefix(head, []byte("From ")) {
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			io.CopyN(io.Discard, r, int64(i+1))
		}
	}
	w := walker{m: m, html: newHTMLBudget()}
	ent, err := w.readEntity(r, w.spillPrefix)
	if ent == nil {
		// The header itself is unreadable. Score the bytes after the first
		// blank line (or all of them) as plain text rather than nothing.
		m.defect("header: " + errString(err))
		body := head
		if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
			body = head[i+4:]
		} else if i := bytes.Index(head, []byte("\n\n")); i >= 0 {
			body = head[i+2:]
		}
		m.Text = toUTF8(body)
		return m
	}
	if err != nil {
		m.defect(errString(err))
	}
	m.Header = ent.Header
	if mt, _, _ := ent.Header.ContentType(); isContainer(mt) {
		// Stray lines join a single-part body only: which part of a
		// multipart would follow them is not for sure (see spillText).
		w.flushPrefix()
	}
	m.Subject = decodeSubject(ent.Header)
	for i, v := range ent.Header.Values("Subject") {
		if i > 0 {
			m.MoreSubjects = append(m.MoreSubjects, decodeSubjectValue(v))
		}
		// UTF-16 words without a byte order mark, read all one way and
		// all the other too (see utf16Readings), for the SUBJECT
		// phrases.
		if !hasUTF16Word(v) {
			continue
		}
		first := decodeSubjectValue(v)
		for _, order := range []utf16Pick{utf16LE, utf16BE} {
			if alt := decodeSubjectOrder(v, order); alt != first {
				m.MoreSubjects = append(m.MoreSubjects, alt)
			}
		}
	}

	w.walk(ent, 0)
	w.flushPrefix()
	m.Text = w.text.String()
	return m
}

func (m *Message) defect(s string) { m.Defects = append(m.Defects, s) }

func errString(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

func decodeSubject(h message.Header) string { return decodeSubjectValue(h.Get("Subject")) }

// decodeSubjectValue decodes one Subject field's value, each RFC 2047
// word on its own, as mail clients do: a word that cannot be decoded (bad
// base64) stays as written, a word in a charset Go does not know (UTF-7,
// x-foo) is read as a US-ASCII word is (UTF-8 when it is, else
// Windows-1252), a language tag (=?utf-8*en?...) is allowed, and invalid
// UTF-8 becomes U+FFFD. Go's DecodeHeader gives up the whole value at the
// first such word, and the value was then kept raw: one bad word hid every
// other word of the Subject from the SUBJECT rules. White space between
// two encoded words is dropped (RFC 2047 section 6.2).
func decodeSubjectValue(v string) string { return decodeSubjectOrder(v, utf16Likelier) }

// utf16Pick is the byte order of UTF-16 words without a byte order mark.
type utf16Pick int

const (
	utf16Likelier utf16Pick = iota // each word's likelier (utf16Order)
	utf16LE
	utf16BE
)

// decodeSubjectOrder is decodeSubjectValue with UTF-16 words without a
// byte order mark read in the byte order pick says.
func decodeSubjectOrder(v string, pick utf16Pick) string {
	if !strings.Contains(v, "=?") {
		return toUTF8([]byte(v))
	}
	var b strings.Builder
	// UTF-8 words one after another are joined before they are checked:
	// a character may be split between two (RFC 2047 forbids it, mail
	// clients join them all the same).
	var utf8Run strings.Builder
	flush := func() {
		if utf8Run.Len() > 0 {
			b.WriteString(strings.ToValidUTF8(utf8Run.String(), "\uFFFD"))
			utf8Run.Reset()
		}
	}
	words := wordFinder{v: v}
	pos, afterWord := 0, false
	for {
		i, n := words.next(pos)
		if i < 0 {
			if pos < len(v) {
				flush()
				b.WriteString(toUTF8([]byte(v[pos:])))
			}
			break
		}
		if between := v[pos:i]; !afterWord || strings.Trim(between, " \t\r\n") != "" {
			flush()
			b.WriteString(toUTF8([]byte(between)))
		}
		d, isUTF8, ok := decodeWord(v[i:i+n], pick)
		if isUTF8 {
			utf8Run.WriteString(d)
		} else {
			flush()
			b.WriteString(d)
		}
		pos, afterWord = i+n, ok
	}
	flush()
	return b.String()
}

// wordFinder finds the RFC 2047 encoded words of a value
// (=?charset[*lang]?B|Q?text?=, no white space) in one pass: where the next
// white space and the next "?=" are is remembered, so that each byte is
// looked at a bounded number of times however many "=?" there are (a
// search from every "=?" to the end of the value was quadratic).
type wordFinder struct {
	v       string
	ws      int // the first white space at or after the last candidate (or len(v))
	end     int // the first "?=" at or after endFrom (or len(v))
	endFrom int
	haveWS  bool
	haveEnd bool
}

// next returns the start and length of the first encoded word at or after
// pos, or -1. The positions it is given must not go down (the cached ones
// are valid from there on).
func (f *wordFinder) next(pos int) (int, int) {
	v := f.v
	for {
		j := strings.Index(v[pos:], "=?")
		if j < 0 {
			return -1, 0
		}
		i := pos + j
		pos = i + 2
		if !f.haveWS || f.ws < i {
			f.ws, f.haveWS = i+indexOrLen(v[i:], func(s string) int { return strings.IndexAny(s, " \t\r\n") }), true
		}
		tok := v[:f.ws] // the word cannot go past white space
		q := strings.IndexByte(tok[i+2:], '?')
		if q <= 0 {
			continue
		}
		q += i + 2 // the '?' before the encoding letter
		if q+3 > len(tok) || strings.IndexByte("bBqQ", tok[q+1]) < 0 || tok[q+2] != '?' {
			continue
		}
		if !f.haveEnd || f.endFrom > q+3 || f.end < q+3 {
			f.end, f.endFrom, f.haveEnd = q+3+indexOrLen(v[q+3:], func(s string) int { return strings.Index(s, "?=") }), q+3, true
		}
		if f.end >= f.ws {
			continue // no "?=" before the white space
		}
		return i, f.end + 2 - i
	}
}

// indexOrLen is find(s), or len(s) when it finds nothing.
func indexOrLen(s string, find func(string) int) int {
	if k := find(s); k >= 0 {
		return k
	}
	return len(s)
}

// decodeWord decodes one encoded word (ok), or returns it as written;
// see decodeSubjectValue. A UTF-8 word comes back as its raw bytes
// (isUTF8), for the caller to join with its neighbours and check; any
// other is valid UTF-8.
func decodeWord(w string, pick utf16Pick) (s string, isUTF8, ok bool) {
	q := strings.IndexByte(w[2:], '?') + 2
	label, _, _ := strings.Cut(w[2:q], "*") // without the language tag
	raw, err := wordBytes(w[q+1], w[q+3:len(w)-2])
	if err != nil {
		return toUTF8([]byte(w)), false, false // stays as written
	}
	label = strings.ToLower(label)
	switch label {
	case "utf-8", "utf8":
		return string(raw), true, true
	case "us-ascii", "ascii", "us", "csascii", "iso-ir-6", "cp367", "ibm367", "iso646-us", "ansi_x3.4-1968", "ansi_x3.4-1986", "iso_646.irv:1991":
		return toUTF8(raw), false, true // as a US-ASCII body part is read
	case "iso-8859-1", "latin1":
		label = "windows-1252" // as mail clients read it (windows1252Labels)
	case "utf-16", "utf16":
		// Without a byte order mark, in the byte order pick says (see
		// utf16Readings).
		order := utf16Order(raw)
		switch pick {
		case utf16LE:
			order = unicode.LittleEndian
		case utf16BE:
			order = unicode.BigEndian
		}
		if b, err := unicode.UTF16(order, unicode.UseBOM).NewDecoder().Bytes(raw); err == nil {
			return strings.ToValidUTF8(string(b), "\uFFFD"), false, true
		}
	}
	// The decoder of each charset is looked up, not made through
	// mime.WordDecoder and charset.Reader: those cost a reader and a
	// 32 KiB copy buffer per word, and a Subject of a million words took
	// seconds.
	if e, err := htmlindex.Get(label); err == nil && e != encoding.Replacement {
		// (The WHATWG table maps HZ and ISO-2022-KR/CN to a decoder that
		// gives one U+FFFD; go-message decodes HZ.)
		if b, err := e.NewDecoder().Bytes(raw); err == nil {
			return strings.ToValidUTF8(string(b), "\uFFFD"), false, true
		}
	} else if r, err := charset.Reader(label, bytes.NewReader(raw)); err == nil {
		// A label only go-message knows (rare).
		if b, err := io.ReadAll(io.LimitReader(r, int64(4*len(raw)+16))); err == nil {
			return strings.ToValidUTF8(string(b), "\uFFFD"), false, true
		}
	}
	// An unknown charset (x-foo, UTF-7): read as a US-ASCII word is.
	return toUTF8(raw), false, true
}

// wordBytes decodes the text of an encoded word: B is base64, Q is
// quoted-printable with "_" for a space (RFC 2047 section 4).
func wordBytes(enc byte, text string) ([]byte, error) {
	switch enc {
	case 'b', 'B':
		// Padding left out is taken as mail clients take it.
		return base64.RawStdEncoding.DecodeString(strings.TrimRight(text, "="))
	}
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		switch c := text[i]; c {
		case '_':
			out = append(out, ' ')
		case '=':
			if i+2 >= len(text) || !isHex(text[i+1]) || !isHex(text[i+2]) {
				return nil, errors.New("bad escape")
			}
			out = append(out, unhex(text[i+1])<<4|unhex(text[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

type walker struct {
	m     *Message
	parts int
	text  strings.Builder
	// prefix is the message header's stray lines (see cleanReader), read
	// as the start of its single-part body, as Postfix and Python show
	// them: "win the casino" there and "jackpot now" in the body are one
	// phrase.
	prefix string
	html   *htmlBudget // what building its HTML parts into trees may cost
}

func (w *walker) walk(e *message.Entity, depth int) {
	e, ct := w.lenient(e)
	if depth > MaxDepth {
		w.m.defect("mime: nesting deeper than limit, rest skipped")
		w.m.Overflow = fmt.Sprintf("MIME nesting deeper than %d levels", MaxDepth)
		return
	}
	w.parts++
	if w.parts > MaxParts {
		if w.parts == MaxParts+1 {
			w.m.defect("mime: too many parts, rest skipped")
			w.m.Overflow = fmt.Sprintf("more than %d MIME parts", MaxParts)
		}
		return
	}
	if ct.err == nil && strings.HasPrefix(ct.mediaType, "multipart/") {
		// Keep the body until a first part is found: a multipart whose
		// boundary never appears (spam declares "=Multipart Boundary" and
		// writes "= Multipart Boundary") would otherwise be read as empty.
		// A boundary cannot end in white space (RFC 2046 section 5.1.1):
		// a declared one that does is written without it, as Python reads
		// it.
		boundary := strings.TrimRight(ct.params["boundary"], " \t")
		first := &firstBytes{src: e.Body, boundary: boundary}
		e.Body = io.TeeReader(e.Body, first)
		w.multipart(w.partReader(e, boundary), first, depth, ct.mediaType == "multipart/digest")
		return
	}
	w.leaf(e, ct, depth)
}

// contentType is an entity's Content-Type as parsed once for the walk.
type contentType struct {
	mediaType string // lower case; the raw field value if it did not parse
	params    map[string]string
	err       error
}

// multipart walks the parts of a multipart entity; first holds its body as
// read so far, for when no part can be found in it.
//
// In a multipart/digest, a part without a Content-Type is a message
// (RFC 2046 section 5.1.5), as clients read it.
func (w *walker) multipart(next func() (*message.Entity, error), first *firstBytes, depth int, digest bool) {
	for found := false; ; found = true {
		p, err := next()
		if !found && (p == nil || err == io.EOF) {
			io.Copy(first, io.LimitReader(first.src, MaxPartBytes))
			if !first.hasBoundary() {
				// No boundary line at all: read the body as clients that
				// show the source do, as text.
				w.m.defect("mime: no part found, body read as text")
				w.unsplit(first.buf)
				return
			}
			// The boundary is there but its first part is broken (or there
			// is none): the source is not text to read.
		}
		first.buf, first.off = nil, true
		if err == io.EOF {
			return
		}
		if p == nil {
			// A broken part header or boundary: what came before is kept.
			w.m.defect("mime: " + errString(err))
			return
		}
		if err != nil { // unknown charset or encoding: p is still usable
			w.m.defect("mime: " + err.Error())
		}
		if digest && p.Header.Get("Content-Type") == "" {
			p.Header.Set("Content-Type", "message/rfc822")
		}
		w.walk(p, depth+1)
		if w.parts > MaxParts {
			return
		}
	}
}

// firstBytes keeps what is written to it, up to MaxPartBytes, until off.
type firstBytes struct {
	src      io.Reader // the body it copies, for reading the rest
	boundary string
	buf      []byte
	off      bool
}

// hasBoundary reports whether buf holds a line starting with the
// multipart's boundary delimiter.
func (f *firstBytes) hasBoundary() bool {
	if f.boundary == "" {
		return false
	}
	delim := []byte("--" + f.boundary)
	for rest := f.buf; ; {
		i := bytes.Index(rest, delim)
		if i < 0 {
			return false
		}
		if i == 0 && len(rest) == len(f.buf) || i > 0 && rest[i-1] == '\n' {
			return true
		}
		rest = rest[i+1:]
	}
}

func (f *firstBytes) Write(b []byte) (int, error) {
	if !f.off {
		f.buf = append(f.buf, b[:min(len(b), MaxPartBytes-len(f.buf))]...)
	}
	return len(b), nil
}

// unsplit adds the body of a multipart with no parts as one text part, an
// HTML one if it holds HTML.
func (w *walker) unsplit(body []byte) {
	mediaType := "text/plain"
	if i := bytes.Index(bytes.ToLower(body[:min(len(body), 8192)]), []byte("<html")); i >= 0 {
		mediaType = "text/html"
	}
	w.m.Parts = append(w.m.Parts, Part{ContentType: mediaType, Size: len(body)})
	if mediaType == "text/html" {
		w.addHTML(toUTF8(body))
		return
	}
	w.addText(toUTF8(body))
}

// lenient returns e read as mail clients read it when its Content-Type
// does not parse. Spam pads the field with empty parameters
// ("text/html;;;;", "text/plain ; ; ;") that mime.ParseMediaType refuses;
// go-message then takes the whole field for the media type, so the part
// would be neither text nor multipart and its words would go unread, by
// the model and by the admin's BODY phrase rules alike. Clients render such
// a part by its type and whatever parameters make sense, and so do we,
// recording the defect (which is itself a feature). It returns the entity
// to walk and its Content-Type.
func (w *walker) lenient(e *message.Entity) (*message.Entity, contentType) {
	var ct contentType
	ct.mediaType, ct.params, ct.err = e.Header.ContentType()
	v := e.Header.Get("Content-Type")
	if v == "" || ct.err == nil {
		return e, ct
	}
	fixed := repairContentType(v)
	if fixed == "" {
		return e, ct
	}
	w.m.defect("content-type: malformed, read as " + strings.SplitN(fixed, ";", 2)[0])
	h := e.Header.Copy()
	h.Set("Content-Type", fixed)
	// go-message has already undone the transfer encoding of a part it
	// took for a leaf (any media type not starting "multipart/"); doing it
	// again would garble the text. Charset conversion, which needs the
	// parameters, has not been done yet: New does it now.
	if !strings.HasPrefix(v, "multipart/") {
		h.Del("Content-Transfer-Encoding")
	}
	ne, err := message.New(h, e.Body)
	if ne == nil {
		return e, ct
	}
	if err != nil { // unknown charset: ne is still usable
		w.m.defect("mime: " + err.Error())
	}
	ct.mediaType, ct.params, ct.err = ne.Header.ContentType()
	return ne, ct
}

// repairContentType rebuilds a Content-Type field that does not parse from
// its media type (the text before the first ';', if it is type/subtype)
// and its parameters: all of them if they parse together once the empty
// ones are dropped (so RFC 2231 continuations still join), otherwise each
// one that parses on its own; "" if there is no media type.
func repairContentType(v string) string {
	segs := splitParams(v)
	mt := strings.ToLower(strings.TrimSpace(segs[0]))
	if t, sub, ok := strings.Cut(mt, "/"); !ok || t == "" || sub == "" || strings.ContainsAny(mt, " \t\"") {
		return ""
	}
	var kept []string
	for _, seg := range segs[1:] {
		if strings.TrimSpace(seg) != "" {
			kept = append(kept, seg)
		}
	}
	if _, params, err := mime.ParseMediaType(mt + ";" + strings.Join(kept, ";")); err == nil && len(kept) > 0 {
		if fixed := mime.FormatMediaType(mt, params); fixed != "" {
			return fixed
		}
	}
	params := map[string]string{}
	for _, seg := range kept {
		if _, p, err := mime.ParseMediaType("x/y;" + seg); err == nil {
			for k, val := range p {
				if _, dup := params[k]; !dup {
					params[k] = val
				}
			}
		}
	}
	if fixed := mime.FormatMediaType(mt, params); fixed != "" {
		return fixed
	}
	return mime.FormatMediaType(mt, nil)
}

// splitParams splits a header field value at each ';' outside a quoted
// string.
func splitParams(v string) []string {
	var segs []string
	start, quoted := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			segs = append(segs, v[start:i])
			start = i + 1
		}
	}
	return append(segs, v[start:])
}

func (w *walker) leaf(e *message.Entity, ct contentType, depth int) {
	mediaType, params := ct.mediaType, ct.params
	if mediaType == "" {
		mediaType = "text/plain" // RFC 2045 default
	}
	mediaType = strings.ToLower(mediaType)
	_, dispParams, _ := e.Header.ContentDisposition()
	name := paramText(e.Header.Get("Content-Disposition"), "filename", dispParams["filename"])
	if name == "" {
		name = paramText(e.Header.Get("Content-Type"), "name", params["name"])
	}
	p := Part{ContentType: mediaType, Filename: name}
	// An HTML page sent as a generic attachment is what the recipient sees
	// on opening it, and spam sends its whole text that way with an empty
	// body beside it: read it as the HTML it is.
	if mediaType == "application/octet-stream" && hasHTMLExt(name) {
		mediaType = "text/html"
	}
	if mediaType == "message/global" {
		// RFC 6532's message/rfc822 with UTF-8 headers: clients show it
		// as one.
		mediaType = "message/rfc822"
	}

	var body []byte
	if mediaType == "text/plain" || mediaType == "text/html" || mediaType == "message/rfc822" {
		// Quoted-printable with a raw control byte (and truncated base64)
		// fails part-way: keep what was read.
		var err error
		body, err = io.ReadAll(io.LimitReader(e.Body, MaxPartBytes))
		if err != nil {
			w.m.defect("part " + mediaType + ": " + err.Error())
		}
		if len(body) == MaxPartBytes {
			// Said, as a cut of the whole text is: rules and the model
			// saw only the start of this part.
			if n, _ := e.Body.Read(make([]byte, 1)); n > 0 {
				w.m.defect("part " + mediaType + ": longer than limit, truncated")
				// A character the cut split in two would make the
				// part's text invalid UTF-8, and all of it be read as
				// Windows-1252.
				body = trimCutRune(body)
			}
		}
		p.Size = len(body)
	} else {
		n, _ := io.Copy(io.Discard, io.LimitReader(e.Body, MaxPartBytes))
		p.Size = int(n)
	}
	w.m.Parts = append(w.m.Parts, p)

	switch {
	case name != "" && mediaType != "text/plain" && mediaType != "text/html":
		// Named non-text attachment: not body text.
	case strings.ToLower(params["charset"]) == utf16Label && (mediaType == "text/plain" || mediaType == "text/html"):
		// (The label exactly as go-message looks it up: " utf-16" is not
		// passed through, but decoded by it, once.)
		for _, text := range utf16Readings(body) {
			if mediaType == "text/html" {
				w.addHTML(text)
			} else {
				w.addText(text)
			}
		}
	case mediaType == "text/plain":
		if strings.EqualFold(params["format"], "flowed") {
			body = unflow(body, strings.EqualFold(params["delsp"], "yes"))
		}
		w.addText(partText(body, params["charset"]))
	case mediaType == "text/html":
		w.addHTML(htmlPartText(body, params["charset"]))
	case mediaType == "message/rfc822":
		// go-message's mail reader does not descend into attached messages;
		// spam forwarded as an attachment is still spam, so we do.
		// Its header's stray lines join its own single-part body, as at
		// the top (see walker.prefix), and nothing else: its Subject is
		// text of its own, and what is left after its walk is flushed.
		inner, err := w.readEntity(bytes.NewReader(body), w.spillPrefix)
		if inner == nil {
			w.flushPrefix()
			w.m.defect("message/rfc822: " + errString(err))
			return
		}
		if mt, _, _ := inner.Header.ContentType(); isContainer(mt) {
			w.flushPrefix()
		}
		if s := decodeSubject(inner.Header); s != "" {
			w.addOwnText(s)
		}
		w.walk(inner, depth+1)
		w.flushPrefix()
	}
}

// isContainer says whether a Content-Type (as go-message gives it, the raw
// value when it does not parse) is a multipart or a message: stray header
// lines do not join its body (walker.prefix).
func isContainer(mt string) bool {
	mt = strings.ToLower(strings.TrimSpace(mt))
	return strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "message/")
}

func hasHTMLExt(name string) bool {
	n := strings.ToLower(name)
	return strings.HasSuffix(n, ".htm") || strings.HasSuffix(n, ".html")
}

// flushPrefix adds the message header's stray lines as text of their own.
func (w *walker) flushPrefix() {
	if p := w.prefix; p != "" {
		w.prefix = ""
		w.addOwnText(p)
	}
}

// addText adds a part's text, after the message header's stray lines if
// they are waiting for it (walker.prefix).
// addHTML adds an HTML part's text and links.
func (w *walker) addHTML(page string) {
	text, urls, deep, outlook := htmlToTextWithin(page, w.html)
	if deep {
		// Its own feature (the text before the colon): the model can
		// tell such a page from a cut or broken one.
		w.m.defect("html read tag by tag: nested deeper than the HTML parser goes, or too costly to build as a tree")
	}
	w.m.URLs = append(w.m.URLs, urls...)
	w.addText(text)
	if outlook != "" {
		// What only Outlook shows is a text of its own, as a second
		// reading is: a phrase does not span it and the page.
		text, urls, deep := htmlOutlookText(outlook, w.html)
		if deep {
			w.m.defect("html read tag by tag: nested deeper than the HTML parser goes, or too costly to build as a tree")
		}
		w.m.URLs = append(w.m.URLs, urls...)
		// Templates keep Outlook's table scaffolding there: no text,
		// and no part of its own.
		if strings.TrimSpace(text) != "" {
			w.addOwnText(text)
		}
	}
}

func (w *walker) addText(s string) {
	if w.prefix != "" {
		s, w.prefix = w.prefix+"\n"+s, ""
	}
	w.addOwnText(s)
}

// addOwnText adds s as text of its own, within MaxTextBytes.
func (w *walker) addOwnText(s string) {
	room := MaxTextBytes - w.text.Len()
	if room <= 0 || s == "" {
		return
	}
	if len(s) > room {
		cut := room // back off to a rune start so the text stays valid UTF-8
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
		w.m.defect("text: longer than limit, truncated")
	}
	if w.text.Len() > 0 {
		w.text.WriteByte('\n')
		w.m.TextStarts = append(w.m.TextStarts, w.text.Len())
	}
	w.text.WriteString(s)
}

// TextParts returns Text cut into its parts (see TextStarts), without the
// newlines that join them.
func (m *Message) TextParts() []string {
	if len(m.TextStarts) == 0 {
		return []string{m.Text}
	}
	parts := make([]string, 0, len(m.TextStarts)+1)
	start := 0
	for _, next := range m.TextStarts {
		parts = append(parts, m.Text[start:next-1])
		start = next
	}
	return append(parts, m.Text[start:])
}

// partText is the text of a body part whose Content-Type declared charset
// (go-message has converted the charsets it knows). A part declared UTF-8
// is read as UTF-8 whatever it holds, each invalid byte shown as U+FFFD,
// as mail clients show it: taken for Windows-1252 (toUTF8), one stray
// byte turned all its non-ASCII words to mojibake, and the admin's phrases
// in them never matched.
func partText(b []byte, charset string) string {
	switch strings.ToLower(strings.TrimSpace(charset)) {
	case "utf-8", "utf8":
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return toUTF8(b)
}

// unflow joins the lines of format=flowed text (RFC 3676): a line ending
// in a space is a soft break. With delsp=yes the space is not part of the
// text, so "spe \r\ncial" is "special" to the reader, and to the admin's
// phrases; with delsp=no it stays. Each line's quote marks ('>'s) are its
// depth and one space after them is stuffing (section 4.4), both taken
// off before the join (a quoted paragraph read "a special > deal" with
// the marks left in); only lines of one depth are joined, and each
// paragraph is written back with its depth's marks. "-- " is no soft
// break.
func unflow(b []byte, delsp bool) []byte {
	out := make([]byte, 0, len(b))
	open := -1 // depth of the paragraph being joined, or -1
	for len(b) > 0 {
		line, rest, found := bytes.Cut(b, []byte("\n"))
		b = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		depth := 0
		for depth < len(line) && line[depth] == '>' {
			depth++
		}
		text := bytes.TrimPrefix(line[depth:], []byte(" "))
		if open >= 0 && (depth != open || string(text) == "-- ") {
			// A soft break into another depth, or before a signature
			// separator, ends the paragraph.
			out = append(out, '\r', '\n')
			open = -1
		}
		if open < 0 && depth > 0 {
			out = append(out, bytes.Repeat([]byte(">"), depth)...)
			out = append(out, ' ')
		}
		if found && len(text) > 0 && text[len(text)-1] == ' ' && string(text) != "-- " {
			if delsp {
				text = text[:len(text)-1]
			}
			out = append(out, text...)
			open = depth
			continue
		}
		out = append(out, text...)
		open = -1
		if found {
			out = append(out, '\r', '\n')
		}
	}
	return out
}

// htmlPartText is partText for an HTML part. With no charset in its
// Content-Type, or one no decoder knows (a browser ignores a label it does
// not know), the page's own byte order mark or <meta> says, as browsers
// and mail clients read it (the HTML standard's prescan of the first
// 1,024 bytes), even when the bytes happen to be valid UTF-8: Cyrillic in
// windows-1251 with soft hyphens between the letters is both, and the
// reader sees Cyrillic. A <meta> saying UTF-8 (or UTF-16, which the
// prescan makes UTF-8) is read as a part labelled UTF-8 is; one saying
// Windows-1252 (or ISO-8859-1, or x-user-defined) is read so; the
// replacement encoding (ISO-2022-KR, HZ) would show the reader one
// U+FFFD, and is read as a part with no charset, so its text is not lost
// to the rules. With neither, as any part without a charset (toUTF8).
func htmlPartText(b []byte, label string) string {
	if l := strings.TrimSpace(label); l != "" {
		if _, err := charset.Reader(l, bytes.NewReader(nil)); err == nil {
			return partText(b, label) // go-message has decoded it
		}
	}
	e, name := metaCharset(b)
	switch name {
	case "":
		return toUTF8(b)
	case "utf-8":
		return partText(b, "utf-8")
	case "windows-1252", "x-user-defined":
		e = charmap.Windows1252
	case "replacement":
		return toUTF8(b)
	}
	d, err := e.NewDecoder().Bytes(b)
	if err != nil {
		return toUTF8(b)
	}
	return strings.ToValidUTF8(string(d), "\uFFFD")
}

// metaCharset returns the encoding an HTML page's byte order mark or
// <meta> (in its first 1,024 bytes) declares, and its WHATWG name, or ""
// when neither says anything.
func metaCharset(b []byte) (encoding.Encoding, string) {
	switch {
	case bytes.HasPrefix(b, []byte("\xef\xbb\xbf")):
		return nil, "utf-8"
	case bytes.HasPrefix(b, []byte("\xfe\xff")):
		return unicode.UTF16(unicode.BigEndian, unicode.UseBOM), "utf-16be"
	case bytes.HasPrefix(b, []byte("\xff\xfe")):
		return unicode.UTF16(unicode.LittleEndian, unicode.UseBOM), "utf-16le"
	}
	return prescanMeta(b[:min(len(b), 1024)])
}

// prescanMeta is the HTML standard's prescan for a <meta> declaring the
// page's encoding (section 13.2.3.2), on x/net's tokenizer as x/net's
// own DetermineEncoding runs it, with two differences: it says when no
// <meta> declares anything (DetermineEncoding then guesses from the
// bytes, which must not count as a <meta> saying UTF-8, and says
// Windows-1252 both for a <meta> saying so and for none), and <noscript>
// content is markup, as to the standard's byte scanner and to a mail
// client with scripts off (the tokenizer reads it as raw text).
func prescanMeta(head []byte) (encoding.Encoding, string) {
	z := html.NewTokenizer(bytes.NewReader(head))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return nil, ""
		case html.StartTagToken, html.SelfClosingTagToken:
			tag, hasAttr := z.TagName()
			if string(tag) == "noscript" {
				z.NextIsNotRawText()
				continue
			}
			if string(tag) != "meta" {
				continue
			}
			var (
				seen        = map[string]bool{}
				pragma      bool // http-equiv="content-type"
				needPragma  bool // the charset came from content=
				set         bool // a charset= or content= has said (maybe a label nobody knows)
				e           encoding.Encoding
				name, label string
			)
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				key := string(k)
				if seen[key] { // the first of an attribute counts
					continue
				}
				seen[key] = true
				switch key {
				case "http-equiv":
					pragma = strings.EqualFold(string(v), "content-type")
				case "content":
					if !set {
						if label = charsetFromContent(string(v)); label != "" {
							if e, name = htmlcharset.Lookup(label); e != nil {
								set, needPragma = true, true
							}
						}
					}
				case "charset":
					// Even a label nobody knows is the element's answer
					// (the standard's "failure"): a content= after it
					// does not count.
					e, name = htmlcharset.Lookup(string(v))
					set, needPragma = true, false
				}
			}
			if e == nil || needPragma && !pragma {
				continue
			}
			if strings.HasPrefix(name, "utf-16") {
				return nil, "utf-8"
			}
			return e, name
		}
	}
}

// charsetFromContent is the HTML standard's "algorithm for extracting a
// character encoding from a meta element": the value after "charset="
// in a content attribute, quoted or not, or "".
func charsetFromContent(s string) string {
	lower := []byte(s) // ASCII case folded only: the same offsets as s
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	for i := 0; ; {
		j := bytes.Index(lower[i:], []byte("charset"))
		if j < 0 {
			return ""
		}
		i += j + len("charset")
		rest := strings.TrimLeft(s[i:], "\t\n\f\r ")
		if !strings.HasPrefix(rest, "=") {
			continue // "charset" not followed by '=': look for the next
		}
		rest = strings.TrimLeft(rest[1:], "\t\n\f\r ")
		if rest == "" {
			return ""
		}
		if q := rest[0]; q == '"' || q == '\'' {
			end := strings.IndexByte(rest[1:], q)
			if end < 0 {
				return "" // unmatched quote
			}
			return rest[1 : 1+end]
		}
		if end := strings.IndexAny(rest, "\t\n\f\r ;"); end >= 0 {
			return rest[:end]
		}
		return rest
	}
}

// trimCutRune drops an incomplete UTF-8 sequence from the end of b (a
// part cut at MaxPartBytes), leaving any other bytes as they are.
func trimCutRune(b []byte) []byte {
	for k := 1; k <= utf8.UTFMax-1 && k <= len(b); k++ {
		if utf8.RuneStart(b[len(b)-k]) {
			if !utf8.FullRune(b[len(b)-k:]) {
				return b[:len(b)-k]
			}
			return b
		}
	}
	return b
}

// toUTF8 returns b as valid UTF-8. go-message has already converted parts
// with a known charset; bytes that are still not UTF-8 come from parts with
// no or an unknown charset, which in practice are Windows-1252 far more
// often than anything else.
func toUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	s, err := charmap.Windows1252.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return string(s)
}
