package scorer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// maxHeaderBytes bounds one header block, as go-message's own Read does.
const maxHeaderBytes = 1 << 20

// readEntity is message.Read with base64 read as newEntity reads it.
// spill takes the header's stray lines (see cleanReader).
func (w *walker) readEntity(r io.Reader, spill func([]byte)) (*message.Entity, error) {
	lr := &headerLimit{r: r, n: maxHeaderBytes}
	br := bufio.NewReader(newCleanReader(lr, "", w.headerDefect("header"), spill))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, err
	}
	lr.n = math.MaxInt64
	return w.newEntity(message.Header{Header: h}, br)
}

// headerLimit fails reads past n bytes, so that a header that never ends
// is an error, not a header the size of the message.
type headerLimit struct {
	r io.Reader
	n int64
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("header larger than %d bytes", maxHeaderBytes)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// headerDefect returns what records a header line cleanReader settled.
func (w *walker) headerDefect(where string) func(string, []byte) {
	return func(what string, line []byte) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 60 {
			line = line[:60]
		}
		w.m.defect(fmt.Sprintf("%s: %s: %q", where, what, line))
	}
}

// spillText scores a part header's stray lines as text of their own (see
// cleanReader): the multipart reader may read the next part's header
// before the part before it is walked, so they cannot be joined to the
// part's text.
func (w *walker) spillText(b []byte) { w.addOwnText(toUTF8(b)) }

// spillPrefix keeps a message header's stray lines as the start of its
// body text (walker.prefix).
func (w *walker) spillPrefix(b []byte) {
	w.flushPrefix() // one left by an enclosing message, if any
	w.prefix = toUTF8(b)
}

// partReader returns e's parts as go-message's MultipartReader would, each made
// by newEntity.
func (w *walker) partReader(e *message.Entity, boundary string) func() (*message.Entity, error) {
	mr := textproto.NewMultipartReader(newCleanReader(e.Body, boundary, w.headerDefect("part header"), w.spillText), boundary)
	return func() (*message.Entity, error) {
		p, err := mr.NextPart()
		if err != nil {
			return nil, err
		}
		return w.newEntity(message.Header{Header: p.Header}, p)
	}
}

// newEntity is message.New, except that a base64 body is decoded as RFC
// 2045 (section 6.8) says and mail clients do: a character outside the
// base64 alphabet is skipped, where Go's decoder, and so go-message, stops
// the whole part at it. One "!" before the text would otherwise hide
// every word of the body from the model and from the admin's BODY rules,
// while the recipient's mail client shows it all. The entity keeps its
// original header.
func (w *walker) newEntity(h message.Header, body io.Reader) (*message.Entity, error) {
	mediaType, _, _ := h.ContentType()
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	if strings.HasPrefix(mediaType, "multipart/") || cte != "base64" && cte != "quoted-printable" {
		return message.New(h, body)
	}
	bare := h.Copy()
	bare.Del("Content-Transfer-Encoding")
	var dec io.Reader
	if cte == "base64" {
		dec = &base64Reader{r: body, bad: func() {
			w.m.defect("part " + mediaType + ": base64: characters outside the alphabet skipped")
		}}
	} else {
		// Go's decoder, like go-message, stops the part at a raw control
		// byte (one 0x01 hid the rest of the body); mail clients show
		// the rest. Such bytes are escaped first, so they decode to
		// themselves.
		dec = quotedprintable.NewReader(&qpEscaper{r: body})
	}
	e, err := message.New(bare, dec)
	if e != nil {
		e.Header = h
	}
	return e, err
}

// base64Reader decodes base64 leniently: bytes outside the alphabet are
// skipped (bad is called once, for the first that is not white space),
// and padding ends a group of four early, so that base64 texts written one
// after another (each with its own "=") decode one after another.
type base64Reader struct {
	r      io.Reader
	bad    func()
	warned bool
	acc    uint32 // the 6-bit values of the group so far
	n      int    // how many
	pend   []byte // decoded bytes not yet returned
	err    error
	in     [4096]byte
	out    [4096/4*3 + 3]byte
}

var base64Values = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" {
		t[c] = int8(i)
	}
	return t
}()

func (d *base64Reader) Read(p []byte) (int, error) {
	for len(d.pend) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.pend)
	d.pend = d.pend[n:]
	return n, nil
}

// fill decodes the next chunk of input into pend.
func (d *base64Reader) fill() {
	m, err := d.r.Read(d.in[:])
	out := d.out[:0]
	acc, n := d.acc, d.n
	for _, c := range d.in[:m] {
		if v := base64Values[c]; v >= 0 {
			acc = acc<<6 | uint32(v)
			if n++; n == 4 {
				out = append(out, byte(acc>>16), byte(acc>>8), byte(acc))
				acc, n = 0, 0
			}
			continue
		}
		switch c {
		case '=':
			out = appendGroup(out, acc, n)
			acc, n = 0, 0
		case ' ', '\t', '\r', '\n':
		default:
			if !d.warned {
				d.warned = true
				d.bad()
			}
		}
	}
	if err != nil {
		out = appendGroup(out, acc, n) // a last group cut short: what it holds
		acc, n = 0, 0
		d.err = err
	}
	d.acc, d.n = acc, n
	d.pend = out
}

// appendGroup appends the bytes of a group of n < 4 values: 3 make 2
// bytes, 2 make 1, and a lone value none.
func appendGroup(out []byte, acc uint32, n int) []byte {
	acc <<= 6 * (4 - n)
	switch n {
	case 3:
		return append(out, byte(acc>>16), byte(acc>>8))
	case 2:
		return append(out, byte(acc>>16))
	}
	return out
}

// qpEscaper passes quoted-printable text through with each raw control
// byte (other than tab and line ends) written as its =XX escape, which
// Go's decoder refuses raw.
type qpEscaper struct {
	r   io.Reader
	buf [2048]byte
	out []byte
}

func (q *qpEscaper) Read(p []byte) (int, error) {
	for len(q.out) == 0 {
		n, err := q.r.Read(q.buf[:])
		q.out = q.out[:0]
		for _, c := range q.buf[:n] {
			if (c < ' ' && c != '\t' && c != '\r' && c != '\n') || c == 0x7f {
				q.out = append(q.out, '=', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
				continue
			}
			q.out = append(q.out, c)
		}
		if len(q.out) == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, q.out)
	q.out = q.out[n:]
	return n, nil
}
