package proxy

import (
	"slices"
	"testing"
)

// naiveDots is the byte-at-a-time definition dotScanner must agree with:
// for each message end ("\r\n.\r\n"), whether a dot line with a bare CR
// ("\n.\r" and anything but "\n") came since the previous one, and the
// same for what follows the last end.
func naiveDots(b []byte) (done []bool, open bool) {
	for i := 0; i+3 < len(b); i++ {
		if b[i] != '\n' || b[i+1] != '.' || b[i+2] != '\r' {
			continue
		}
		switch {
		case b[i+3] != '\n':
			open = true
		case i > 0 && b[i-1] == '\r':
			done = append(done, open)
			open = false
		}
	}
	return done, open
}

func scanned(parts ...[]byte) *dotScanner {
	d := &dotScanner{}
	for _, p := range parts {
		d.scan(p)
	}
	return d
}

// FuzzDotScanner feeds a stream split at two points and compares the
// findings with naiveDots on the whole stream.
func FuzzDotScanner(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\r\nb", "\r\n.\r\n", "x\n.\rX", "\n.\r", "\n", ".\r\n.\rq", "",
		"a\r\n.\r\nMAIL\r\n\r\n.\rX\r\n.\r\n", "\n.\r\n\r\n.\r\n"} {
		f.Add([]byte(s), uint8(1), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, i, j uint8) {
		if len(b) > 2000 {
			return
		}
		x, y := int(i)%(len(b)+1), int(j)%(len(b)+1)
		if x > y {
			x, y = y, x
		}
		d := scanned(b[:x], b[x:y], b[y:])
		done, open := naiveDots(b)
		if len(done) > maxDone {
			done = done[len(done)-maxDone:]
		}
		if !slices.Equal(d.done, done) && !(len(d.done) == 0 && len(done) == 0) || d.open != open {
			t.Fatalf("%q split at %d, %d: %v %v, want %v %v", b, x, y, d.done, d.open, done, open)
		}
	})
}

func TestDotScannerSplits(t *testing.T) {
	for _, s := range []string{"ab\r\n.\r\r\n.\r\n", "\r\n.\rX", "hello\r\n.\r\n", "\r\n..\r\n", "\n.\r\n",
		"a\r\n.\r\nMAIL FROM:<a@b>\r\nDATA\r\nx\r\n.\rMAIL\r\n.\r\n", "\r\n.\rX\r\n.\r\nclean\r\n.\r\n"} {
		b := []byte(s)
		done, open := naiveDots(b)
		for x := 0; x <= len(b); x++ {
			for y := x; y <= len(b); y++ {
				d := scanned(b[:x], b[x:y], b[y:])
				if !slices.Equal(d.done, done) || d.open != open {
					t.Errorf("%q split %d,%d: %v %v, want %v %v", s, x, y, d.done, d.open, done, open)
				}
			}
		}
	}
}

// Each DATA message gets its own finding, whatever the reads held; a
// BDAT transfer or a failed message in between makes the next
// transaction start afresh.
func TestDotScannerPerMessage(t *testing.T) {
	// A clean message whose end came in one read with a pipelined second
	// message that has a bare-CR dot line.
	d := scanned([]byte("DATA\r\nclean\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\rMAIL\r\n.\r\n"))
	d.startTxn()
	if d.take() {
		t.Error("the clean first message was taken for the bad one")
	}
	d.startTxn()
	if !d.take() {
		t.Error("the second message's bare CR was lost")
	}
	// A BDAT transfer holding "\r\n.\r\n" and a bare-CR dot line: the
	// next DATA transaction is not judged by it.
	d = scanned([]byte("BDAT 20 LAST\r\nq\r\n.\rX\r\n.\r\nzzzzzz"))
	d.markStale()
	d.startTxn()
	d.scan([]byte("DATA\r\nclean\r\n.\r\n"))
	if d.take() {
		t.Error("BDAT content judged as the next DATA message")
	}
}
