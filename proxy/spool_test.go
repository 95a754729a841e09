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
		sp := &spool{headCap: 1000}
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
