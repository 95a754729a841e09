package proxy

import (
	"bytes"
	"io"
	"os"
	"sync"
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

// headPool recycles spool heads (*[]byte, 64 KiB to 2 MiB of capacity):
// most messages fit in one, and allocating it anew for each was the
// gateway's largest source of garbage.
var headPool sync.Pool

// getHead returns an empty head buffer for a new spool.
func getHead() []byte {
	if p, ok := headPool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 64<<10)
}

// Close releases the temporary file and the head buffer; nothing of the
// spool may be used after it.
func (sp *spool) Close() {
	if h := sp.head; cap(h) >= 64<<10 && cap(h) <= 2<<20 {
		h = h[:0]
		headPool.Put(&h)
	}
	sp.head = nil
	if sp.file != nil {
		sp.file.Close()
	}
}
