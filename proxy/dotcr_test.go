package proxy

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// naiveDots is the byte-at-a-time definition dotScanner must agree with:
// following command lines (the first 24 bytes of each), DATA messages and
// BDAT chunks, for each message end ("\r\n.\r\n" inside a message),
// whether a dot line with a bare CR ("\n.\r" and anything but "\n") came
// in that message, and the same for a message not ended yet.
func naiveDots(b []byte) (done []bool, open bool) {
	const (
		cmd = iota
		data
		chunk
	)
	mode := cmd
	var line, msg []byte
	var skip int64
	for _, c := range b {
		switch mode {
		case cmd:
			line = append(line, c)
			if c != '\n' {
				continue
			}
			l := line[:min(len(line), 24)]
			line = nil
			l = bytes.TrimRight(l, " \t\r\n")
			u := strings.ToUpper(string(l))
			switch {
			case u == "DATA":
				mode, msg = data, []byte("\r\n")
			case strings.HasPrefix(u, "BDAT "):
				size, _, _ := strings.Cut(strings.TrimLeft(u[5:], " "), " ")
				if n, err := strconv.ParseInt(size, 10, 64); err == nil && n > 0 {
					mode, skip = chunk, n
				}
			}
		case chunk:
			if skip--; skip == 0 {
				mode = cmd
			}
		case data:
			msg = append(msg, c)
			k := len(msg)
			if k < 4 || msg[k-4] != '\n' || msg[k-3] != '.' || msg[k-2] != '\r' {
				continue
			}
			switch {
			case c != '\n':
				open = true
			case k >= 5 && msg[k-5] == '\r':
				done = append(done, open)
				open, mode = false, cmd
			}
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
	for _, s := range []string{"DATA\r\na\r\n.\r\r\nb", "DATA\r\n.\r\n", "data\nx\n.\rX", "DATA\r\n\n.\r", "\n", ".\r\n.\rq", "",
		"DATA\r\na\r\n.\r\nMAIL\r\nDATA\r\n\r\n.\rX\r\n.\r\n", "NOOP\r\n.\rX\r\n.\r\nDATA\r\nok\r\n.\r\n",
		"BDAT 12 LAST\r\n.\rX\r\n.\r\nabDATA\r\n.\r\n"} {
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
	for _, s := range []string{"DATA\r\nab\r\n.\r\r\n.\r\n", "DATA\r\n.\rX", "DATA\r\nhello\r\n.\r\n", "DATA\r\n\r\n..\r\n", "DATA\n\n.\r\n",
		"DATA\r\na\r\n.\r\nMAIL FROM:<a@b>\r\nDATA\r\nx\r\n.\rMAIL\r\n.\r\n", "DATA\r\n.\rX\r\n.\r\nclean\r\n.\r\n",
		"BDAT 9\r\n\r\n.\rX\r\n.BDAT 3 LAST\r\n\r\n.DATA\r\nz\r\n.\r\n"} {
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
	// A BDAT chunk holding "\r\n.\r\n" and a bare-CR dot line (even one
	// go-smtp read and threw away, which the session never saw), and a
	// command line ".": the next DATA message is not judged by them.
	for _, before := range []string{"BDAT 20 LAST\r\nq\r\n.\rX\r\n.\r\nzzzzzz", "NOOP\r\n.\rX\r\n.\r\n"} {
		d = scanned([]byte(before))
		d.startTxn()
		d.scan([]byte("DATA\r\nclean\r\n.\r\n"))
		if d.take() {
			t.Errorf("%q judged as the next DATA message", before)
		}
	}
	// And a bad message after a command line "." is still found.
	d = scanned([]byte(".\r\nDATA\r\nx\r\n.\rMAIL FROM:<ceo@bank>\r\n.\r\n"))
	if !d.take() {
		t.Error("bare CR after a command line \".\" missed")
	}
}
