package scorer

import (
	"bufio"
	"bytes"
	"io"
)

// cleanReader passes a message (or a multipart body) through, with the
// header lines go-message cannot read taken out, so that it reads the
// rest of the header instead of giving the whole header up (of a message:
// its Subject, Content-Type and transfer encoding, so a base64 body was
// scored as base64; of a part: that part and every part after it). One
// "\tx" line on top, or one line without a colon among a part's fields,
// hid a message's whole text from the model and from the admin's weight
// list.
//
// Readers disagree on such a header, and the filter must see what any of
// them shows. A lenient mail client skips a stray line (one that is no
// field: no colon, or a name with bytes no name may hold) and reads the
// fields after it, decoding the body they describe; Postfix (which puts a
// blank line there before it delivers) and Python's email package end the
// header at it and show it and every line after it as body text. So both
// readings are scored: the header goes on without the stray line, as the
// lenient client reads it, and the stray line with every header line after
// it is handed to spill (once the header ends) as text of its own. No text
// is hidden either way, and a body sent without a blank line before it is
// scored too.
//
// A continuation line on top of a message belongs to no field and is
// dropped (the gateway does not relay it either, see proxy.Restamp); one on
// top of a part's header is a stray line. The first line taken out is
// reported to defect.
//
// With a boundary (a multipart body), each part's header is cleaned: a
// header starts after each boundary line. A boundary line met inside a
// part's header ends that header (a blank line is put in front of it).
// Without one, only the header at the start is cleaned and the rest is
// read straight through.
type cleanReader struct {
	br       *bufio.Reader
	boundary []byte // "--" + the boundary; nil for a message
	defect   func(what string, line []byte)
	spill    func(text []byte)
	warned   bool

	inHeader bool   // at the start of a header, or inside one
	sawField bool   // a field was kept in this header
	dropping bool   // a stray line was taken out: its continuation lines go too
	spilled  []byte // this header's lines from its first stray line on
	midLine  bool   // the last bytes returned did not end a line
	dropLine bool   // ...and the rest of that line is taken out
	pending  []byte
}

// maxSpill bounds the header text a cleanReader keeps for spill.
const maxSpill = 1 << 20

func newCleanReader(r io.Reader, boundary string, defect func(what string, line []byte), spill func([]byte)) *cleanReader {
	c := &cleanReader{br: bufio.NewReaderSize(r, 4096), defect: defect, spill: spill, inHeader: boundary == ""}
	if boundary != "" {
		c.boundary = []byte("--" + boundary)
	}
	return c
}

var crlf = []byte("\r\n")

func (c *cleanReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(c.pending) > 0 {
			k := copy(p[n:], c.pending)
			c.pending = c.pending[k:]
			n += k
			continue
		}
		if !c.inHeader && c.boundary == nil && !c.midLine {
			// A message's body: nothing more to clean.
			if n > 0 {
				return n, nil
			}
			return c.br.Read(p)
		}
		if n > 0 && c.br.Buffered() == 0 {
			return n, nil // what is here, before waiting for more
		}
		line, err := c.br.ReadSlice('\n')
		if len(line) > 0 {
			c.pending = c.line(line, err == bufio.ErrBufferFull)
		}
		if err != nil && err != bufio.ErrBufferFull {
			c.endHeader() // the input ended inside a header
			if len(c.pending) > 0 {
				continue // return it first; the error comes back next time
			}
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
	}
	return n, nil
}

// line decides what to pass on of line (or of a part of a long line, when
// more follows), which is valid until the next read.
func (c *cleanReader) line(line []byte, more bool) []byte {
	if c.midLine {
		c.midLine = more
		if c.inHeader && len(c.spilled) > 0 {
			c.keep(line)
		}
		if c.dropLine {
			return nil
		}
		return line
	}
	c.midLine, c.dropLine = more, false
	if c.boundary != nil && bytes.HasPrefix(line, c.boundary) {
		rest := bytes.TrimRight(line[len(c.boundary):], " \t\r\n")
		final := bytes.Equal(rest, []byte("--"))
		if final || len(rest) == 0 {
			var out []byte
			if c.inHeader {
				// The part's header never ended: end it here, so that the
				// boundary is not read as a field.
				out = append(out, crlf...)
				c.endHeader()
			}
			c.inHeader, c.sawField, c.dropping = !final, false, false
			return append(out, line...)
		}
	}
	if !c.inHeader {
		return line
	}
	blank := (string(line) == "\r\n" || string(line) == "\n") && !more
	cont := line[0] == ' ' || line[0] == '\t'
	switch {
	case blank:
		c.endHeader()
		c.inHeader = false
		return line
	case cont && c.boundary == nil && !c.sawField && !c.dropping:
		// On top of a message: part of no field, and not relayed.
		c.dropLine = more
		c.report("line on top of the header dropped", line)
		return nil
	case cont && c.dropping, !cont && !validField(line), cont && !c.sawField:
		// A stray line (or its continuation): out of the header, into the
		// text of the other reading.
		c.dropping, c.dropLine = true, more
		c.report("stray header line read as text", line)
		c.keep(line)
		return nil
	case !cont:
		c.sawField, c.dropping = true, false
	}
	if len(c.spilled) > 0 {
		c.keep(line) // after a stray line, Postfix shows fields as text too
	}
	return line
}

// keep adds line to the spilled text, within maxSpill.
func (c *cleanReader) keep(line []byte) {
	if room := maxSpill - len(c.spilled); room > 0 {
		c.spilled = append(c.spilled, line[:min(len(line), room)]...)
	}
}

// endHeader hands the spilled text of the header that ends on.
func (c *cleanReader) endHeader() {
	if len(c.spilled) > 0 && c.spill != nil {
		c.spill(c.spilled)
	}
	c.spilled = nil
}

func (c *cleanReader) report(what string, line []byte) {
	if !c.warned {
		c.warned = true
		c.defect(what, line)
	}
}

// validField says whether line starts a header field go-message reads: a
// name of printable ASCII other than ":" (white space around it allowed),
// then a colon.
func validField(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return false
	}
	for _, b := range bytes.Trim(line[:i], " \t") {
		if b < 33 || b > 126 {
			return false
		}
	}
	return true
}
