package proxy

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// chunkConn is a net.Conn whose reads return the given chunks in turn.
type chunkConn struct {
	net.Conn
	chunks [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

// dotCREnds is the byte-at-a-time definition: the positions just past
// the fourth byte of each "\n.\r" followed by anything but "\n".
func dotCREnds(b []byte) map[int]bool {
	ends := map[int]bool{}
	for i := 0; i+3 < len(b); i++ {
		if b[i] == '\n' && b[i+1] == '.' && b[i+2] == '\r' && b[i+3] != '\n' {
			ends[i+4] = true
		}
	}
	return ends
}

// checkLines reads b, arriving in the given chunks, through a limitConn
// as go-smtp does, and checks that the bytes come out whole, a line at
// a time, and that dotCRAt marks exactly the lines in which a bare-CR
// dot line completes.
func checkLines(t *testing.T, b []byte, chunks ...[]byte) {
	t.Helper()
	c := &limitConn{Conn: &chunkConn{chunks: chunks}, l: &limitListener{}, firstOK: true}
	want := dotCREnds(b)
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			piece := buf[:n]
			if i := bytes.IndexByte(piece, '\n'); i >= 0 && i != n-1 {
				t.Fatalf("%q: piece %q holds more than a line", b, piece)
			}
			start, end := len(got), len(got)+n
			got = append(got, piece...)
			marked := c.dotCRAt.Load() == int64(end)
			completes := false
			for p := start + 1; p <= end; p++ {
				completes = completes || want[p]
			}
			if marked != completes {
				t.Fatalf("%q in %q: piece %q at %d: marked %v, want %v", b, chunks, piece, start, marked, completes)
			}
		}
		if err != nil {
			break
		}
	}
	if !bytes.Equal(got, b) || c.pos.Load() != int64(len(b)) {
		t.Fatalf("read %q (pos %d), want %q", got, c.pos.Load(), b)
	}
}

// FuzzLineReads splits a stream at two points into what the connection
// returns, and checks the lines handed out and the bare-CR dot-line marks.
func FuzzLineReads(f *testing.F) {
	for _, s := range []string{"DATA\r\na\r\n.\r\r\nb", "DATA\r\n.\r\n", "x\n.\rX", "\n.\r", "\n", ".\r\n.\rq", "",
		"a\r\n.\r\nMAIL\r\nDATA\r\n\r\n.\rX\r\n.\r\n", "NOOP\r\n.\rX\r\n.\r\n"} {
		f.Add([]byte(s), uint8(1), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, i, j uint8) {
		x, y := int(i)%(len(b)+1), int(j)%(len(b)+1)
		if x > y {
			x, y = y, x
		}
		checkLines(t, b, bytes.Clone(b[:x]), bytes.Clone(b[x:y]), bytes.Clone(b[y:]))
	})
}

func TestLineReadsSplits(t *testing.T) {
	for _, s := range []string{"ab\r\n.\r\r\n.\r\n", "\r\n.\rX", "hello\r\n.\r\n", "\r\n..\r\n", "\n.\r\n",
		"a\r\n.\r\nMAIL FROM:<a@b>\r\nDATA\r\nx\r\n.\rMAIL\r\n.\r\n"} {
		b := []byte(s)
		for x := 0; x <= len(b); x++ {
			for y := x; y <= len(b); y++ {
				checkLines(t, b, bytes.Clone(b[:x]), bytes.Clone(b[x:y]), bytes.Clone(b[y:]))
			}
		}
	}
	// Longer than the read buffer, with no line end: handed out in pieces.
	long := bytes.Repeat([]byte("x"), 10000)
	checkLines(t, long, long)
}

// A stale BDAT transfer's Data (go-smtp starts each in a goroutine, which
// may run after the transfer was reset and a newer one began) puts back
// the mark it found, unless it changed since: in every order, the mark
// says whether a transfer is open. (Found by a review: a newer transfer's
// cut got go-smtp's permanent 554.)
func TestChunkMarkStaleTransfers(t *testing.T) {
	c := &limitConn{}
	// The newer transfer's Data runs first, then the stale one's.
	c.beginChunks()
	c.staleChunks(c.beginChunks())
	if !c.inChunks.Load() {
		t.Error("a stale transfer cleared the open one's mark")
	}
	c.endChunks() // its Reset
	if c.inChunks.Load() {
		t.Error("mark left after Reset")
	}
	// The stale transfer's Data starts, the newer transfer ends (Reset)
	// before the stale one finds out: nothing is put back.
	c.beginChunks()
	e := c.beginChunks()
	c.endChunks()
	c.staleChunks(e)
	if c.inChunks.Load() {
		t.Error("a stale transfer put back the mark of a transfer that has ended")
	}
	// Alone, reset before it ran: no transfer open.
	c.staleChunks(c.beginChunks())
	if c.inChunks.Load() {
		t.Error("mark left by a transfer reset before it ran")
	}
	// Two stale transfers, both reset before either Data ran, finding
	// out in either order.
	for _, abFirst := range []bool{true, false} {
		c.endChunks()
		c.endChunks()
		a, b := c.beginChunks(), c.beginChunks()
		if abFirst {
			c.staleChunks(a)
			c.staleChunks(b)
		} else {
			c.staleChunks(b)
			c.staleChunks(a)
		}
		if c.inChunks.Load() {
			t.Errorf("two stale transfers (A first: %v) left the mark", abFirst)
		}
	}
}
