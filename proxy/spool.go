package proxy

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// spool holds one message as it arrives: its start in memory, the rest in
// an unlinked temporary file. The memory part always holds the whole
// header (up to headCap bytes, which is max_header_bytes+1, so that a
// longer header shows as too long) and, past the header, up to memCap
// bytes of the message in all. So a 10 MB message with an ordinary header
// costs memCap of memory however many arrive at once, and nothing is left
// on disk when the process dies.
type spool struct {
	headCap int
	memCap  int
	head    []byte
	hdrEnd  int      // length of the header with its empty line; 0 until seen
	file    *os.File // nil while everything fits in head
	rest    int64    // bytes in file
}

// room is how many more bytes go to memory.
func (sp *spool) room() int {
	if sp.file != nil {
		return 0 // spilling: the rest goes after what is on disk
	}
	if sp.hdrEnd == 0 {
		return sp.headCap - len(sp.head)
	}
	return max(sp.memCap, sp.hdrEnd) - len(sp.head)
}

// Write implements io.Writer.
func (sp *spool) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := sp.room()
		if room <= 0 {
			break
		}
		k := min(room, len(p))
		old := len(sp.head)
		sp.head = append(sp.head, p[:k]...)
		if sp.hdrEnd == 0 {
			if old == 0 && bytes.HasPrefix(sp.head, crlf) {
				sp.hdrEnd = 2 // no header at all
			} else if i := bytes.Index(sp.head[max(0, old-3):], crlfcrlf); i >= 0 {
				sp.hdrEnd = max(0, old-3) + i + 4
			}
			// The header ended in this piece: take back what went past
			// the memory allowance, for the file.
			if over := len(sp.head) - max(sp.memCap, sp.hdrEnd); sp.hdrEnd > 0 && over > 0 {
				sp.head = sp.head[:len(sp.head)-over]
				k -= over
			}
		}
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

var crlfcrlf = []byte("\r\n\r\n")

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

// Prefix returns the message's first n bytes (all of it when shorter):
// for a spooled message, the head and what follows it on disk.
func (sp *spool) Prefix(n int) ([]byte, error) {
	if sp.file == nil || len(sp.head) >= n {
		return sp.head[:min(n, len(sp.head))], nil
	}
	b := make([]byte, len(sp.head)+int(min(int64(n-len(sp.head)), sp.rest)))
	copy(b, sp.head)
	if _, err := sp.file.ReadAt(b[len(sp.head):], 0); err != nil {
		return nil, err
	}
	return b, nil
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
