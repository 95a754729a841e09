package archive

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzReadHead checks that no input makes ReadHead panic, that it leaves
// the reader exactly at the end of the head, and that any head it accepts
// and Write could store reads back the same after writeHead.
func FuzzReadHead(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(goldenDir, "*.eml"))
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(""))
	f.Add([]byte("X-Sender:"))
	f.Add([]byte("X-Sender: <\"\\"))

	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		h, n, err := readHead(r)
		if err != nil {
			return
		}
		rest, _ := io.ReadAll(r)
		if n < 0 || int(n) > len(data) || !bytes.Equal(rest, data[n:]) {
			t.Fatalf("head of %d bytes, but %d bytes left of %d", n, len(rest), len(data))
		}
		if h.hasSCL && (h.scl < -1 || h.scl > 9) || !h.hasSCL && h.scl != 0 {
			t.Fatalf("scl %d, hasSCL %v", h.scl, h.hasSCL)
		}
		if checkHead(h) != nil {
			return
		}
		var b bytes.Buffer
		if err := writeHead(&b, h); err != nil {
			t.Fatal(err)
		}
		written := b.Len()
		b.Write(rest)
		h2, n2, err := readHead(bufio.NewReader(&b))
		if err != nil {
			t.Fatalf("rewritten head does not read: %v\n%q", err, b.Bytes()[:written])
		}
		// The message itself may start with a line that the rewritten
		// head no longer ends before (Write refuses those), so compare
		// only when the head ended where it was written.
		if h.report != "" && !h.hasSCL {
			t.Fatalf("a report without an SCL: %+v", h)
		}
		if int(n2) == written && !reflect.DeepEqual(h, h2) {
			t.Fatalf("rewritten head reads %+v, want %+v", h2, h)
		}
	})
}
