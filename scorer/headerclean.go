package scorer

import (
	"bufio"
	"bytes"
	"io"
)

// cleanReader passes a message (or a multipart body) through, minus the
// header lines go-message cannot read: a continuation line before the
// first field, a line with no colon or with bytes no field name may hold,
// and the continuation lines of such a line. go-message stops at the first
// of them and gives up the whole header (of a message: its Subject,
// Content-Type and transfer encoding, so a base64 body was scored as
// base64; of a part: that part and every part after it), while mail
// clients skip the line and show the rest. One "\tx" line on top, or one
// line without a colon among a part's fields, hid a message's whole text
// from the model and from the admin's weight list. The first line dropped
// is reported to defect.
//
// With a boundary (a multipart body), each part's header is cleaned: a
// header starts after each boundary line. A boundary line met inside a
// part's header ends that header (a blank line is put in front of it).
// Without one, only the header at the start is cleaned and the rest is
// read straight through.
type cleanReader struct {
	br       *bufio.Reader
	boundary []byte // "--" + the boundary; nil for a message
	defect   func(line []byte)
	warned   bool

	inHeader bool // at the start of a header, or inside one
	sawField bool // a field was kept in this header
	dropping bool // the last field was dropped: its continuation lines go too
	midLine  bool // the last bytes returned did not end a line
	dropLine bool // ...and the rest of that line is dropped
	pending  []byte
}

func newCleanReader(r io.Reader, boundary string, defect func(line []byte)) *cleanReader {
	c := &cleanReader{br: bufio.NewReaderSize(r, 4096), defect: defect, inHeader: boundary == ""}
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
			}
			c.inHeader, c.sawField, c.dropping = !final, false, false
			return append(out, line...)
		}
	}
	if !c.inHeader {
		return line
	}
	switch {
	case (string(line) == "\r\n" || string(line) == "\n") && !more:
		c.inHeader = false // the blank line ending the header
	case line[0] == ' ' || line[0] == '\t':
		if !c.sawField || c.dropping {
			c.drop(line, more)
			return nil
		}
	case !validField(line):
		c.dropping = true
		c.drop(line, more)
		return nil
	default:
		c.sawField, c.dropping = true, false
	}
	return line
}

func (c *cleanReader) drop(line []byte, more bool) {
	c.dropLine = more
	if !c.warned {
		c.warned = true
		c.defect(line)
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
