package proxy

import (
	"bufio"
	"bytes"
)

// dotStuffer writes message data in DATA's transparency encoding (RFC 5321
// section 4.5.2: a line that begins with "." gets another "."), straight to
// the downstream connection.
//
// Why not go-smtp's DataCommand writer: it is textproto's DotWriter, which
// looks at and writes one byte at a time, and was a fifth of sclgate's CPU
// relaying 100 KB messages. The data here has only CRLF line ends (the
// data filter refused or rewrote everything else), so finding the lines
// that start with a dot is a bytes.Index away.
//
// The message's final CRLF is held back and dropped: after the data,
// DataCommand.Close (its DotWriter, still in its initial state) writes
// "\r\n.\r\n", which ends the last line and the data. On the wire that is
// byte for byte what DotWriter alone would have sent (TestDotStufferWire).
type dotStuffer struct {
	w    *bufio.Writer
	bol  bool   // the next byte begins a line
	held []byte // a trailing "\r\n" or "\r" not yet written
	buf  [2]byte
}

func newDotStuffer(w *bufio.Writer) *dotStuffer { return &dotStuffer{w: w, bol: true} }

var (
	nlDot = []byte("\n.")
	crlf  = []byte("\r\n")
)

func (d *dotStuffer) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	switch {
	case len(d.held) == 1 && p[0] == '\n': // a CRLF split between writes
		if n == 1 {
			d.buf[1] = '\n'
			d.held = d.buf[:2]
			return n, nil
		}
		if err := d.stuff(crlf); err != nil {
			return 0, err
		}
		d.held, p = nil, p[1:]
	case len(d.held) > 0:
		if err := d.stuff(d.held); err != nil {
			return 0, err
		}
		d.held = nil
	}
	k := 0
	if bytes.HasSuffix(p, crlf) {
		k = 2
	} else if p[len(p)-1] == '\r' {
		k = 1
	}
	if err := d.stuff(p[:len(p)-k]); err != nil {
		return 0, err
	}
	d.held = d.buf[:copy(d.buf[:], p[len(p)-k:])]
	return n, nil
}

// stuff writes b, doubling every dot that begins a line.
func (d *dotStuffer) stuff(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if d.bol && b[0] == '.' {
		d.w.WriteByte('.')
	}
	for {
		i := bytes.Index(b, nlDot)
		if i < 0 {
			break
		}
		d.w.Write(b[:i+1])
		d.w.WriteByte('.')
		b = b[i+1:]
	}
	_, err := d.w.Write(b) // b is not empty: it ends the input, or begins with the dot
	d.bol = b[len(b)-1] == '\n'
	return err
}

// Finish writes out what is still held, except a final CRLF, and flushes.
func (d *dotStuffer) Finish() error {
	if string(d.held) == "\r" {
		if err := d.stuff(d.held); err != nil {
			return err
		}
	}
	d.held = nil
	return d.w.Flush()
}
