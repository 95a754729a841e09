package weights

// parse.go reads the XML file: encoding detection, the element structure
// and the checks on each entry.

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	textunicode "golang.org/x/text/encoding/unicode"
	"golang.org/x/text/unicode/norm"
)

// MaxTextLen is the longest Text an entry may have, in characters: runes
// of its NFC form (an "é" typed as e + U+0301 is one).
const MaxTextLen = 1000

// maxPhraseBytes bounds the total size of a list's normalised phrases,
// which is what the automaton's size follows (about 100 bytes of memory per
// phrase byte): a real list of 50,000 entries has about 1 MiB, and a list
// at the bound (4,150 phrases of 1,000 random characters) peaks at about
// 420 MB in "weights check". At 16 MiB that was 1.4 GB. Without a bound a
// 64 MiB file of characters that NFKC expands eighteenfold could exhaust
// memory.
const maxPhraseBytes = 4 << 20

// ParseError is one problem in a weight list file. Parse returns all the
// problems it finds, joined with errors.Join; use errors.As to get the first,
// or the Unwrap() []error method of the joined error to get each.
type ParseError struct {
	File  string // the file name given to Parse or Load
	Line  int    // 1-based line of the problem (of the entry's start tag); 0 if not known
	Entry int    // 1-based index of the CustomWeightEntry among all of them; 0 if not about one
	Type  string // the entry's Type attribute as written, if it has one
	Text  string // the entry's Text attribute as written, if it has one
	Err   error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("weights: ")
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	if e.Entry > 0 {
		fmt.Fprintf(&b, ": entry %d", e.Entry)
		var attrs []string
		if e.Type != "" {
			attrs = append(attrs, fmt.Sprintf("Type=%q", e.Type))
		}
		if e.Text != "" {
			attrs = append(attrs, fmt.Sprintf("Text=%q", shorten(e.Text, 60)))
		}
		if len(attrs) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(attrs, " "))
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// shorten cuts s to at most n runes, marking the cut, so that an over-long
// Text does not make a 1,000-character log line.
func shorten(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "…"
		}
		i++
	}
	return s
}

// Parse reads and compiles a weight list. name is the file name used in
// error messages and returned by Source.
//
// The file may be UTF-16 (either byte order) or UTF-8 with a byte order
// mark, or UTF-8 without one; the mark decides, whatever the XML
// declaration says. Files over 64 MiB are refused.
//
// A malformed list is an error as a whole: on error the list is nil, and
// the error reports every bad entry found, as *ParseError values joined
// with errors.Join.
func Parse(name string, r io.Reader) (*List, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, &ParseError{File: name, Err: err}
	}
	if len(raw) > maxFileSize {
		return nil, &ParseError{File: name, Err: fmt.Errorf("file is larger than %d MiB", maxFileSize>>20)}
	}
	data, perr := toUTF8(raw)
	if perr != nil {
		perr.File = name
		return nil, perr
	}
	p := &parser{name: name, data: data}
	p.parse()
	if len(p.errs) > 0 {
		// What was ignored comes along: a misspelt element is often why
		// an entry the admin expects is missing, and with errors there is
		// no List to ask.
		for _, note := range p.ignored {
			if note != "" {
				p.errs = append(p.errs, &ParseError{File: name, Err: fmt.Errorf("also: %s", note)})
			}
		}
		return nil, errors.Join(p.errs...)
	}
	if p.phraseBytes > maxPhraseBytes {
		return nil, &ParseError{File: name, Err: fmt.Errorf("the phrases come to %d MiB once normalised, more than the %d MiB a list may have",
			p.phraseBytes>>20, maxPhraseBytes>>20)}
	}
	return &List{source: name, entries: p.entries, m: compile(p.entries, p.phrases), ignored: p.ignored}, nil
}

var (
	bomUTF8    = []byte{0xEF, 0xBB, 0xBF}
	bomUTF16LE = []byte{0xFF, 0xFE}
	bomUTF16BE = []byte{0xFE, 0xFF}
)

// toUTF8 returns the file's text as UTF-8, going by its byte order mark and
// not by its XML declaration, which tools often leave saying UTF-16 after
// saving as UTF-8, or the reverse. Without a mark the file must be UTF-8.
func toUTF8(raw []byte) ([]byte, *ParseError) {
	var e textunicode.Endianness
	switch {
	case bytes.HasPrefix(raw, []byte{0xFF, 0xFE, 0, 0}) || bytes.HasPrefix(raw, []byte{0, 0, 0xFE, 0xFF}):
		// Before UTF-16 LE, whose mark it starts with.
		return nil, &ParseError{Line: 1, Err: errors.New("UTF-32 is not read: save it as \"Unicode\" (UTF-16 with BOM) or UTF-8")}
	case bytes.HasPrefix(raw, bomUTF8):
		raw = raw[len(bomUTF8):]
		if err := checkUTF8(raw); err != nil {
			err.Err = fmt.Errorf("invalid UTF-8 after a UTF-8 byte order mark (%w)", err.Err)
			return nil, err
		}
		return raw, nil
	case bytes.HasPrefix(raw, bomUTF16LE):
		e = textunicode.LittleEndian
	case bytes.HasPrefix(raw, bomUTF16BE):
		e = textunicode.BigEndian
	default:
		if looksUTF16(raw) {
			return nil, &ParseError{Line: 1, Err: errors.New("not UTF-8 or UTF-16 with BOM: looks like UTF-16 without a byte order mark; save it as \"Unicode\" (UTF-16 with BOM) or UTF-8")}
		}
		if err := checkUTF8(raw); err != nil {
			err.Err = fmt.Errorf("not UTF-8 or UTF-16 with BOM (%w)", err.Err)
			return nil, err
		}
		return raw, nil
	}
	raw = raw[2:]
	// Checked as UTF-8 is: the line of the first code unit that is not
	// valid UTF-16 (an unpaired surrogate would otherwise become U+FFFD
	// in a phrase, silently).
	unit := func(i int) uint16 {
		if e == textunicode.LittleEndian {
			return uint16(raw[i]) | uint16(raw[i+1])<<8
		}
		return uint16(raw[i])<<8 | uint16(raw[i+1])
	}
	line := 1
	for i := 0; i+1 < len(raw); i += 2 {
		switch u := unit(i); {
		case u == '\n':
			line++
		case u == '\r' && (i+3 >= len(raw) || unit(i+2) != '\n'):
			line++ // a CR alone (old Mac editors) ends a line too
		case 0xD800 <= u && u <= 0xDBFF:
			if i+3 < len(raw) {
				if next := unit(i + 2); 0xDC00 <= next && next <= 0xDFFF {
					i += 2
					continue
				}
			}
			return nil, utf16Error(e, raw[:i], line, u)
		case 0xDC00 <= u && u <= 0xDFFF:
			return nil, utf16Error(e, raw[:i], line, u)
		}
	}
	if len(raw)%2 != 0 {
		return nil, &ParseError{Line: line, Err: errors.New("UTF-16 file has an odd number of bytes: truncated?")}
	}
	out, err := textunicode.UTF16(e, textunicode.IgnoreBOM).NewDecoder().Bytes(raw)
	if err != nil {
		return nil, &ParseError{Err: fmt.Errorf("decoding UTF-16: %w", err)}
	}
	return out, nil
}

// utf16Error reports the unpaired surrogate u at the end of before (the
// valid UTF-16 text before it) on line, naming the entry it is in.
func utf16Error(e textunicode.Endianness, before []byte, line int, u uint16) *ParseError {
	text, _ := textunicode.UTF16(e, textunicode.IgnoreBOM).NewDecoder().Bytes(before)
	return &ParseError{Line: line, Entry: entryBefore(text),
		Err: fmt.Errorf("invalid UTF-16: unpaired surrogate 0x%04X after %s", u, context(text))}
}

// checkUTF8 returns an error giving the line of the first byte of b that is
// not valid UTF-8, if there is one.
func checkUTF8(b []byte) *ParseError {
	if utf8.Valid(b) {
		return nil
	}
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return &ParseError{
				Line:  lineOf(b[:i]),
				Entry: entryBefore(b[:i]),
				Err:   fmt.Errorf("invalid byte 0x%02X after %s", b[i], context(b[:i])),
			}
		}
		i += size
	}
	return nil
}

// lineOf returns the line that follows text: 1 + its line ends, which are
// LF, CRLF or CR alone (old Mac editors), as for the parser's own errors.
// A CR at its end is alone: the byte after it is the bad one, not an LF.
func lineOf(text []byte) int {
	return 1 + bytes.Count(text, []byte{'\n'}) + bytes.Count(text, []byte{'\r'}) - bytes.Count(text, []byte("\r\n"))
}

// entryBefore returns the number of the entry whose start tag the end of
// text (the valid text before a bad byte) is inside, or 0: the last
// "<CustomWeightEntry" in text, counting them, if no ">" follows it. The
// file is not XML yet, so this is a count of tags, good enough to name
// the entry an admin has to fix.
func entryBefore(text []byte) int {
	tag := []byte("<" + strings.ToLower(entryName))
	lower := bytes.ToLower(text)
	n, last := 0, -1
	for i := 0; ; {
		j := bytes.Index(lower[i:], tag)
		if j < 0 {
			break
		}
		at := i + j + len(tag)
		if at == len(lower) || !isNameByte(lower[at]) {
			n, last = n+1, at
		}
		i = at
	}
	if last < 0 || bytes.IndexByte(text[last:], '>') >= 0 {
		return 0
	}
	return n
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
}

// context quotes the last few characters of text, the valid text before
// a bad byte, so that the admin finds the spot in the line.
func context(text []byte) string {
	if i := bytes.LastIndexAny(text, "\r\n"); i >= 0 {
		text = text[i+1:]
	}
	start := len(text)
	for k := 0; k < 30 && start > 0; k++ {
		_, size := utf8.DecodeLastRune(text[:start])
		start -= size
	}
	ctx := string(text[start:])
	if i := strings.IndexAny(ctx, " \t"); start > 0 && i >= 0 {
		ctx = ctx[i:] // from a word's start
	}
	ctx = strings.TrimLeftFunc(ctx, unicode.IsSpace)
	switch {
	case ctx == "":
		return "the start of the line"
	case strings.ContainsFunc(ctx, func(r rune) bool { return !unicode.IsGraphic(r) || r == '`' }):
		return strconv.Quote(ctx)
	}
	return "`" + ctx + "`"
}

// looksUTF16 reports whether b starts like UTF-16 text without a byte order
// mark: "<" with a zero byte on either side, after any white space (a
// blank line first) written so too.
func looksUTF16(b []byte) bool {
	for len(b) >= 2 {
		switch {
		case b[0] == '<' && b[1] == 0 || b[0] == 0 && b[1] == '<':
			return true
		case (b[1] == 0 && isSpaceByte(b[0])) || (b[0] == 0 && isSpaceByte(b[1])):
			b = b[2:]
		default:
			return false
		}
	}
	return false
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// parser holds the state of one Parse.
type parser struct {
	name    string
	data    []byte // the file as UTF-8
	lines   []int  // offsets of the '\n's in data, built on first use
	entries []Entry
	phrases []string // normalised Text of each entry
	// phraseBytes is the total length of phrases.
	phraseBytes int
	errs        []error
	ignored     []string // elements passed over, for Ignored (see ignore)
	moreIgnored int      // past maxIgnored: how many more
	z           *normalizer
}

const (
	rootName  = "CustomWeightEntries"
	entryName = "CustomWeightEntry"
)

func (p *parser) parse() {
	// Lone CRs (old Mac line ends) are given to the decoder as LFs, which
	// XML makes of them anyway, so that the line of its syntax errors is
	// the line (it counts only LFs). Same length: offsets hold.
	in := p.data
	for i, c := range p.data {
		if c == '\r' && (i+1 == len(p.data) || p.data[i+1] != '\n') {
			if &in[0] == &p.data[0] {
				in = slices.Clone(p.data)
			}
			in[i] = '\n'
		}
	}
	d := xml.NewDecoder(bytes.NewReader(in))
	// The bytes are UTF-8 by now, whatever the declaration says.
	d.CharsetReader = func(_ string, in io.Reader) (io.Reader, error) { return in, nil }
	p.z = newNormalizer()

	var rootSeen, rootDone bool
	n := 0 // entries seen, good or bad
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			// The token that failed starts after the white space that
			// ended the last one: if it is an entry, name it.
			start := off + int64(len(p.data[off:])-len(bytes.TrimLeftFunc(p.data[off:], unicode.IsSpace)))
			entry := 0
			if rest := p.data[start:]; rootSeen && len(rest) > len(entryName) && bytes.EqualFold(rest[:1+len(entryName)], []byte("<"+entryName)) {
				entry = n + 1
			}
			p.syntaxError(err, start, entry, "")
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch {
			case rootDone:
				p.fail(off, 0, fmt.Errorf("element <%s> after the end of <%s>", t.Name.Local, rootName))
				return
			case !rootSeen:
				if !asciiEqualFold(t.Name.Local, rootName) {
					p.fail(off, 0, fmt.Errorf("root element is <%s>, want <%s>", t.Name.Local, rootName))
					return
				}
				rootSeen = true
				continue
			case asciiEqualFold(t.Name.Local, entryName):
				// Any case, as for the attribute names.
				n++
				p.entry(t, p.data[off:min(d.InputOffset(), int64(len(p.data)))], p.line(off), n)
				if err := p.entryBody(d, n); err == errStop {
					return
				} else if err != nil {
					// Almost always an entry ended with ">" instead of
					// "/>": the parser notices only where the root ends.
					p.syntaxError(err, off, n, " (is this entry closed? write it <"+entryName+" .../>)")
					return
				}
				continue
			default:
				p.ignore(fmt.Sprintf("line %d: element <%s> is not <%s>; it is ignored",
					p.line(off), cutName(t.Name.Local), entryName))
			}
			// Whatever is inside another child of the root is of no
			// interest; a later version of the format may add to it.
			if deep, err := p.skip(d); err != nil {
				p.syntaxError(err, off, 0, "")
				return
			} else if deep >= 0 {
				p.fail(deep, 0, errTooDeep)
				return
			}
		case xml.EndElement:
			rootDone = true // the only end tag Token can return here
		case xml.CharData:
			if i := bytes.IndexFunc(t, func(r rune) bool { return !unicode.IsSpace(r) }); i >= 0 && (!rootSeen || rootDone) {
				p.fail(off+int64(i), 0, errors.New("text outside the root element"))
				return
			}
		}
	}
	if !rootSeen {
		p.fail(int64(len(p.data)), 0, fmt.Errorf("no <%s> element", rootName))
	}
}

// entryBody reads what is inside entry n up to its end tag. An entry has
// nothing inside (Exchange writes <CustomWeightEntry .../>): an entry
// inside it is an error, since it would be lost without a word (it is
// almost always an outer entry written ">" instead of "/>"), and any other
// element is noted as ignored.
//
// An entry never closed is a syntax error at the root's end tag: it is
// returned alone, since the entries read as inside it are the same
// mistake.
func (p *parser) entryBody(d *xml.Decoder, n int) error {
	var nested []int64
	for depth := 0; ; {
		off := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth >= maxDepth {
				p.fail(off, n, errTooDeep)
				return errStop
			}
			switch {
			case depth == 0 && asciiEqualFold(t.Name.Local, entryName):
				nested = append(nested, off)
			case depth == 0:
				p.ignore(fmt.Sprintf("line %d: element <%s> inside entry %d is ignored", p.line(off), cutName(t.Name.Local), n))
			}
			depth++
		case xml.EndElement:
			if depth > 0 {
				depth--
				continue
			}
			for _, off := range nested {
				p.fail(off, n, fmt.Errorf("another <%s> inside this entry would be lost: end this entry with \"/>\"", entryName))
			}
			return nil
		}
	}
}

// maxDepth bounds how deep elements may nest inside the root's children.
// The format needs none (an entry is empty); the XML decoder keeps every
// open element, so 64 MiB of "<a>" took 2.4 GB to be refused.
const maxDepth = 100

var (
	errTooDeep = fmt.Errorf("elements nested more than %d deep: this is not a custom weight list", maxDepth)
	// errStop ends the parse after entryBody reported the problem itself.
	errStop = errors.New("stop")
)

// skip reads past the element whose start tag was the last token, as
// xml.Decoder.Skip does, but stops at an element nested more than
// maxDepth deep and returns its offset (else -1).
func (p *parser) skip(d *xml.Decoder) (deep int64, err error) {
	for depth := 1; depth > 0; {
		off := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			return -1, err
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth >= maxDepth {
				return off, nil
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return -1, nil
}

// asciiEqualFold is strings.EqualFold for ASCII letters only: the format's
// names and keywords are ASCII, and Unicode folding would take "ſ" (long
// s) for "s" and "K" (Kelvin) for "k".
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// line returns the 1-based line of byte offset off in p.data.
func (p *parser) line(off int64) int {
	if p.lines == nil {
		p.lines = make([]int, 0, 64)
		for i, c := range p.data {
			// LF, CRLF, and CR alone (files from old Mac editors).
			if c == '\n' || c == '\r' && (i+1 == len(p.data) || p.data[i+1] != '\n') {
				p.lines = append(p.lines, i)
			}
		}
	}
	i, _ := slices.BinarySearch(p.lines, int(off))
	return 1 + i
}

func (p *parser) fail(off int64, entry int, err error) {
	p.errs = append(p.errs, &ParseError{File: p.name, Line: p.line(off), Entry: entry, Err: err})
}

// syntaxError records an XML syntax error. off is where the element in
// which it happened starts, and entry its number if it is an entry: the
// error is reported there, since the parser often notices only lines
// later (an unclosed entry at the root's end tag), and the line where it
// noticed is added when it differs.
func (p *parser) syntaxError(err error, off int64, entry int, hint string) {
	line := p.line(off)
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		msg := "XML syntax error: " + se.Msg
		switch {
		case se.Line < line:
			line = se.Line
		case se.Line > line:
			msg += fmt.Sprintf(" (noticed at line %d)", se.Line)
		}
		if q := typographicQuote(p.data[off:]); q != "" && strings.Contains(se.Msg, "attribute value") {
			// A list copied from a web page or typed in Word.
			hint = fmt.Sprintf(" (a typographic quote %s where \" belongs? attribute values are quoted with \" or ')", q) + hint
		}
		if strings.HasPrefix(se.Msg, "invalid character entity") {
			// &nbsp; from HTML, or an entity a DOCTYPE declares, which
			// is never expanded (billion laughs, XXE).
			hint = " (XML knows only &amp; &lt; &gt; &quot; &apos; and character references such as &#233;; entities a DOCTYPE declares are not expanded)" + hint
		}
		err = errors.New(msg + hint)
	}
	p.errs = append(p.errs, &ParseError{File: p.name, Line: line, Entry: entry, Err: err})
}

// typographicQuote returns the first typographic quote that opens an
// attribute value ("=”") in the tag at the start of b, or "".
func typographicQuote(b []byte) string {
	if end := bytes.IndexByte(b, '>'); end >= 0 {
		b = b[:end]
	}
	b = b[:min(len(b), 4096)]
	for i := bytes.IndexByte(b, '='); i >= 0; {
		rest := bytes.TrimLeft(b[i+1:], " \t\r\n")
		r, _ := utf8.DecodeRune(rest)
		switch r {
		case '“', '”', '„', '‟', '″', '‘', '’', '‚', '′', '«', '»':
			return string(r)
		}
		j := bytes.IndexByte(b[i+1:], '=')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return ""
}

// surrogateRefRE is a numeric character reference (XML allows no others
// to be characters, and encoding/xml makes U+FFFD of one to a surrogate).
var surrogateRefRE = regexp.MustCompile(`&#([xX][0-9a-fA-F]+|[0-9]+);`)

// surrogateRef returns the first character reference in raw that names a
// UTF-16 surrogate (half of a pair, no character), or "".
func surrogateRef(raw []byte) string {
	for _, m := range surrogateRefRE.FindAllSubmatch(raw, -1) {
		num, base := string(m[1]), 10
		if num[0] == 'x' || num[0] == 'X' {
			num, base = num[1:], 16
		}
		if v, err := strconv.ParseUint(num, base, 32); err == nil && v >= 0xd800 && v <= 0xdfff {
			return string(m[0])
		}
	}
	return ""
}

// entry checks one CustomWeightEntry (raw: its start tag as written) and
// adds it, or its problems.
func (p *parser) entry(t xml.StartElement, raw []byte, line, n int) {
	var attr [3]*string // Type, Change, Text
	names := [3]string{"Type", "Change", "Text"}
	bad := func(err error) {
		pe := &ParseError{File: p.name, Line: line, Entry: n, Err: err}
		if attr[0] != nil {
			pe.Type = *attr[0]
		}
		if attr[2] != nil {
			pe.Text = *attr[2]
		}
		p.errs = append(p.errs, pe)
	}
	var dups []string
	for i := range t.Attr {
		a := &t.Attr[i]
		for j, name := range names {
			// Exchange writes these exactly so; a hand-edited file
			// may not.
			if asciiEqualFold(a.Name.Local, name) {
				if attr[j] != nil {
					dups = append(dups, name)
				}
				attr[j] = &a.Value
			}
		}
	}
	errsBefore := len(p.errs)
	if attr[2] != nil && strings.ContainsRune(*attr[2], '\uFFFD') {
		// The decoder would make U+FFFD of it, and the phrase never
		// match: a 😀 written as two UTF-16 halves.
		if ref := surrogateRef(raw); ref != "" {
			bad(fmt.Errorf("character reference %s is half of a UTF-16 surrogate pair, not a character: write the character itself, or one reference to its code point (&#x1F600; for 😀)", ref))
		}
	}
	for _, name := range dups {
		bad(fmt.Errorf("more than one %s attribute", name))
	}
	for j, name := range names {
		if attr[j] == nil {
			bad(fmt.Errorf("missing %s attribute", name))
		}
	}

	e := Entry{Line: line}
	if attr[0] != nil {
		switch kw := strings.TrimSpace(*attr[0]); {
		case asciiEqualFold(kw, "BODY"):
			e.Type = Body
		case asciiEqualFold(kw, "SUBJECT"):
			e.Type = Subject
		case asciiEqualFold(kw, "BOTH"):
			e.Type = Both
		default:
			bad(fmt.Errorf("unknown Type %q (want BODY, SUBJECT or BOTH)", *attr[0]))
		}
	}
	if attr[1] != nil {
		c := strings.TrimSpace(*attr[1])
		switch {
		case asciiEqualFold(c, "MIN"):
			e.Kind = Min
		case asciiEqualFold(c, "MAX"):
			e.Kind = Max
		default:
			// 32 bits is far more than an SCL of 0..9 needs, and
			// keeps the sum of a whole list from overflowing.
			v, err := strconv.ParseInt(c, 10, 32)
			switch {
			case errors.Is(err, strconv.ErrRange):
				bad(fmt.Errorf("Change %q is out of range", *attr[1]))
			case err != nil:
				bad(fmt.Errorf("Change %q is not an integer, MIN or MAX", *attr[1]))
			}
			e.Change = int(v)
		}
	}
	var phrase string
	if attr[2] != nil {
		e.Text = *attr[2]
		// Counted without the white space around it, which matching
		// leaves out too, and composed (NFC): an "é" typed on a Mac is
		// e + a combining accent, one character to the admin.
		switch runes := utf8.RuneCountInString(norm.NFC.String(strings.TrimFunc(e.Text, unicode.IsSpace))); {
		case runes == 0:
			bad(errors.New("empty Text"))
		case runes > MaxTextLen:
			bad(fmt.Errorf("Text is %d characters long, more than %d", runes, MaxTextLen))
		default:
			phrase = normalizePhrase(p.z, e.Text)
			if phrase == "" && len(p.errs) == errsBefore {
				// Only characters that show as nothing, which matching
				// leaves out: it can never match. Lists that had such a
				// rule load as before, without it, and say so.
				p.ignore(fmt.Sprintf("line %d: entry %d: Text %+q is only characters that show as nothing, which matching leaves out; it can never match and is ignored", line, n, e.Text))
				return
			}
		}
	}
	if len(p.errs) == errsBefore {
		p.entries = append(p.entries, e)
		p.phrases = append(p.phrases, phrase)
		p.phraseBytes += len(phrase)
	}
}

// maxIgnored bounds the notes a list keeps of what it ignored: each is
// logged at every load, and a file of a million stray elements must not
// write a million log lines.
const maxIgnored = 20

// ignore keeps a note of something the list ignored, the first maxIgnored
// of them and then a count of the rest.
func (p *parser) ignore(note string) {
	switch {
	case len(p.ignored) < maxIgnored:
		p.ignored = append(p.ignored, note)
	case len(p.ignored) == maxIgnored:
		p.ignored = append(p.ignored, "")
		fallthrough
	default:
		p.moreIgnored++
		p.ignored[maxIgnored] = fmt.Sprintf("and %d more ignored elements or entries", p.moreIgnored)
	}
}

// cutName shortens an element name for a message.
func cutName(s string) string {
	if len(s) <= 64 {
		return s
	}
	cut := 64
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
