package proxy

import (
	"bytes"
	"io"
	"os"
)

// spool holds one message as it arrives: its first headCap bytes in memory
// (the header is always among them: max_header_bytes is checked there), the
// rest in an unlinked temporary file. So a 10 MB message costs about a
// megabyte of memory however many arrive at once, and nothing is left on
// disk when the process dies.
type spool struct {
	headCap int
	head    []byte
	file    *os.File // nil while everything fits in head
	rest    int64    // bytes in file
}

// Write implements io.Writer.
func (sp *spool) Write(p []byte) (int, error) {
	n := len(p)
	if room := sp.headCap - len(sp.head); room > 0 {
		k := min(room, len(p))
		sp.head = append(sp.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if sp.file == nil {
		f, err := os.CreateTemp("", "sclgate-spool-*")
		if err != nil {
			return 0, err
		}
		os.Remove(f.Name()) // unlinked: gone with the process, whatever happens
		sp.file = f
	}
	k, err := sp.file.Write(p)
	sp.rest += int64(k)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Spooled reports whether part of the message is on disk.
func (sp *spool) Spooled() bool { return sp.file != nil }

// Size is the message's size.
func (sp *spool) Size() int64 { return int64(len(sp.head)) + sp.rest }

// Rest reads what follows head; each call starts over.
func (sp *spool) Rest() io.Reader {
	if sp.file == nil {
		return bytes.NewReader(nil)
	}
	return io.NewSectionReader(sp.file, 0, sp.rest)
}

// Reader reads the whole message; each call starts over.
func (sp *spool) Reader() io.Reader {
	return io.MultiReader(bytes.NewReader(sp.head), sp.Rest())
}

// Close releases the temporary file.
func (sp *spool) Close() {
	if sp.file != nil {
		sp.file.Close()
	}
}
