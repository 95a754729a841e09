package proxy

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

// wireDotWriter is what go-smtp's DataCommand sends for msg: textproto's
// DotWriter, then Close.
func wireDotWriter(msg []byte, chunks []int) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	w := textproto.NewWriter(bw).DotWriter()
	for _, c := range split(msg, chunks) {
		w.Write(c)
	}
	w.Close()
	return out.Bytes()
}

// wireDotStuffer is what sclgate sends: dotStuffer, then a DotWriter that
// is closed without data (DataCommand.CloseWithResponse).
func wireDotStuffer(msg []byte, chunks []int) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	d := newDotStuffer(bw)
	for _, c := range split(msg, chunks) {
		d.Write(c)
	}
	d.Finish()
	w := textproto.NewWriter(bw).DotWriter()
	w.Close()
	return out.Bytes()
}

func split(b []byte, at []int) [][]byte {
	var out [][]byte
	for _, n := range at {
		if n < 0 || n > len(b) {
			break
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

func TestDotStufferWire(t *testing.T) {
	msgs := []string{
		"", "\r\n", "a", "a\r\n", ".\r\n", "..\r\n", "a\r\n.\r\n", "a\r\n.b\r\n.\r\n..\r\n",
		"Subject: x\r\n\r\n.hidden\r\nlast line without CRLF", ".\r\n.\r\n.", "\r\n\r\n",
	}
	for _, m := range msgs {
		for _, chunks := range [][]int{nil, {1}, {1, 1, 1}, {2, 3}, {len(m) - 1}, {len(m) - 2, 1}} {
			if want, got := wireDotWriter([]byte(m), chunks), wireDotStuffer([]byte(m), chunks); !bytes.Equal(got, want) {
				t.Errorf("%q in %v: sent %q, DotWriter sends %q", m, chunks, got, want)
			}
		}
	}
}

// FuzzDotStuffer: for any data with CRLF line ends, in any chunks, the
// bytes on the wire are DotWriter's.
func FuzzDotStuffer(f *testing.F) {
	f.Add([]byte("a\r\n.b\r\n"), uint8(3), uint8(1))
	f.Add([]byte(".\r\n"), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, msg []byte, c1, c2 uint8) {
		if _, err := checkLineEnds(msg, false); err != nil {
			return // never relayed
		}
		chunks := []int{int(c1), int(c2), int(c1)}
		if want, got := wireDotWriter(msg, chunks), wireDotStuffer(msg, chunks); !bytes.Equal(got, want) {
			t.Fatalf("%q in %v: sent %q, DotWriter sends %q", msg, chunks, got, want)
		}
	})
}
