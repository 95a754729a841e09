package proxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
)

func TestSpool(t *testing.T) {
	for _, size := range []int{0, 10, 1000, 1001, 5000} {
		data := make([]byte, size)
		rand.Read(data)
		sp := &spool{headCap: 1000, memCap: 1000}
		// Odd-sized writes, as a network gives them.
		for p := data; len(p) > 0; {
			n := min(len(p), 333)
			if _, err := sp.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if sp.Size() != int64(size) || sp.Spooled() != (size > 1000) {
			t.Errorf("size %d: Size %d Spooled %v", size, sp.Size(), sp.Spooled())
		}
		for i := 0; i < 2; i++ { // Reader starts over every time
			got, _ := io.ReadAll(sp.Reader())
			if !bytes.Equal(got, data) {
				t.Errorf("size %d, read %d: content differs", size, i)
			}
		}
		rest, _ := io.ReadAll(sp.Rest())
		if !bytes.Equal(append(append([]byte{}, sp.head...), rest...), data) {
			t.Errorf("size %d: head+rest differ", size)
		}
		sp.Close()
	}
}

// The header always stays in memory, however long (up to headCap); past
// it, memory holds memCap bytes of the message in all.
func TestSpoolKeepsHeaderInMemory(t *testing.T) {
	cases := []struct {
		hdr, body int
		inMemory  int
	}{
		{100, 50, 150 + 4},     // all fits
		{100, 5000, 500},       // header, then body to memCap
		{3000, 5000, 3000 + 2}, // a header longer than memCap: just the header and its empty line
		{20000, 10, 10000},     // a header past headCap: cut at headCap (552 later)
		{0, 5000, 500},         // no header at all (starts with the empty line)
	}
	for _, c := range cases {
		var msg []byte
		for len(msg) < c.hdr {
			msg = append(msg, "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"...)
		}
		msg = msg[:c.hdr]
		if c.hdr > 0 {
			msg = append(msg[:c.hdr-2], "\r\n"...)
		}
		msg = append(msg, "\r\n"...)
		msg = append(msg, bytes.Repeat([]byte("b"), c.body)...)
		msg = append(msg, "\r\n"...)
		sp := &spool{headCap: 10000, memCap: 500}
		for p := msg; len(p) > 0; {
			n := min(len(p), 333)
			sp.Write(p[:n])
			p = p[n:]
		}
		want := min(len(msg), c.inMemory)
		if len(sp.head) != want {
			t.Errorf("header %d, body %d: %d bytes in memory, want %d", c.hdr, c.body, len(sp.head), want)
		}
		if got, _ := io.ReadAll(sp.Reader()); !bytes.Equal(got, msg) {
			t.Errorf("header %d, body %d: content differs", c.hdr, c.body)
		}
		sp.Close()
	}
}
