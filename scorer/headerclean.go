package scorer

import (
	"bufio"
	"bytes"
	"io"
)

// cleanReader passes a message (or a multipart body) through, with the
// header lines go-message cannot read settled the way real readers settle
// them, instead of go-message giving up the whole header (of a message: its
// Subject, Content-Type and transfer encoding, so a base64 body was scored
// as base64; of a part: that part and every part after it). One "\tx" line
// on top, or one line without a colon among a part's fields, hid a
// message's whole text from the model and from the admin's weight list.
//
//   - A continuation line on top of a message belongs to no field: it is
//     dropped (the gateway does not relay it either, see proxy.Restamp).
//   - A line that is no field (no colon, or a name with bytes no name may
//     hold), or a continuation line on top of a part's header: when only
//     fields follow it up to the blank line that ends the header (within
//     the next 4 KiB), it is a stray line in a header and is dropped, as
//     lenient mail clients skip it; otherwise the header ends there and
//     that line starts the body, as Postfix (which puts a blank line in
//     front of it) and Python's email package read it. Either way no text
//     is hidden: a header never swallows the lines of a body that has no
//     blank line before it.
//
// The first line settled so is reported to defect, with what was done.
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
	warned   bool

	inHeader bool // at the start of a header, or inside one
	sawField bool // a field was kept in this header
	dropping bool // a stray line was dropped: its continuation lines go too
	midLine  bool // the last bytes returned did not end a line
	dropLine bool // ...and the rest of that line is dropped
	pending  []byte
	scratch  []byte
}

func newCleanReader(r io.Reader, boundary string, defect func(what string, line []byte)) *cleanReader {
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
	case (line[0] == ' ' || line[0] == '\t') && c.dropping:
		c.drop("stray header line dropped", line, more)
		return nil
	case (line[0] == ' ' || line[0] == '\t') && c.sawField:
		// A field's continuation.
	case (line[0] == ' ' || line[0] == '\t') && c.boundary == nil:
		c.drop("line on top of the header dropped", line, more)
		return nil
	case line[0] != ' ' && line[0] != '\t' && validField(line):
		c.sawField, c.dropping = true, false
	default:
		// No field: a stray line in a header, or the start of a body
		// with no blank line before it.
		c.scratch = append(c.scratch[:0], line...) // Peek may move the buffer
		line = c.scratch
		if !more && c.fieldsFollow() {
			c.dropping = true
			c.drop("stray header line dropped", line, more)
			return nil
		}
		c.report("header ended at a line that is no field", line)
		c.inHeader = false
		return append(append(c.pending[:0:0], crlf...), line...)
	}
	return line
}

// fieldsFollow reports whether the next lines, up to a blank line within
// the reader's buffer, are all fields or their continuations.
func (c *cleanReader) fieldsFollow() bool {
	ahead, _ := c.br.Peek(c.br.Size())
	for len(ahead) > 0 {
		i := bytes.IndexByte(ahead, '\n')
		if i < 0 {
			return false // no blank line in sight: cannot tell
		}
		l := ahead[:i+1]
		ahead = ahead[i+1:]
		switch {
		case string(l) == "\r\n" || string(l) == "\n":
			return true
		case l[0] == ' ' || l[0] == '\t':
		case validField(l):
		default:
			return false
		}
	}
	return false
}

func (c *cleanReader) drop(what string, line []byte, more bool) {
	c.dropLine = more
	c.report(what, line)
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
