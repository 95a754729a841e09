package archive

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func newStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "archive"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dirNames lists every name in dir, to check that nothing was left.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func mustList(t *testing.T, s *Store) []Item {
	t.Helper()
	items, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return items
}

// binaryMessage has every byte value, long lines and no final line end.
func binaryMessage(size int) []byte {
	rnd := rand.New(rand.NewPCG(1, 2))
	msg := []byte("Subject: binary\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	for len(msg) < size {
		n := rnd.IntN(200000)
		for i := 0; i < n && len(msg) < size; i++ {
			msg = append(msg, byte(rnd.Uint32()))
		}
		msg = append(msg, "\n\r\r\n"[rnd.IntN(4)])
	}
	return msg[:size]
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name     string
		storeSCL bool
		env      Envelope
		scl      int
		msg      []byte
	}{
		{"small", true, Envelope{From: "a@example.com", To: []string{"b@example.org"}}, 7,
			[]byte("Subject: hi\r\n\r\nhello\r\n")},
		{"no scl", false, Envelope{From: "a@example.com", To: []string{"b@example.org", "c@example.org"}}, 7,
			[]byte("Subject: hi\r\n\r\nhello\r\n")},
		{"bounce", true, Envelope{From: "", To: []string{"postmaster@example.org"}}, -1,
			[]byte("Subject: failure\n\nLF only\n")},
		{"empty message", true, Envelope{From: "a@b", To: []string{"c@d"}}, 0, nil},
		{"message starts with X-Sender", false, Envelope{From: "a@b", To: []string{"c@d"}}, 0,
			[]byte("X-Sender: eudora@example.com\r\nSubject: x\r\n\r\nx\r\n")},
		{"message starts with X-SCL", true, Envelope{From: "a@b", To: []string{"c@d"}}, 9,
			[]byte("x-scl: 1\r\nSubject: x\r\n\r\nx\r\n")},
		{"binary", true, Envelope{From: `"odd one"@example.com`, To: []string{"b@example.org"}}, 8,
			binaryMessage(1 << 20)},
		{"5 MB", true, Envelope{From: "a@example.com", To: []string{"b@example.org"}}, 9,
			binaryMessage(5 << 20)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, Options{StoreSCL: c.storeSCL})
			id, err := s.Write(c.env, c.scl, bytes.NewReader(c.msg))
			if err != nil {
				t.Fatal(err)
			}
			it, rc, err := s.Open(id)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.msg) {
				t.Errorf("message differs: got %d bytes, want %d", len(got), len(c.msg))
			}
			if !reflect.DeepEqual(it.Envelope, c.env) {
				t.Errorf("envelope = %+v, want %+v", it.Envelope, c.env)
			}
			wantSCL := c.scl
			if !c.storeSCL {
				wantSCL = 0
			}
			if it.HasSCL != c.storeSCL || it.SCL != wantSCL {
				t.Errorf("SCL = %d, %v; want %d, %v", it.SCL, it.HasSCL, wantSCL, c.storeSCL)
			}
			if it.Size != int64(len(c.msg)) {
				t.Errorf("Size = %d, want %d", it.Size, len(c.msg))
			}
			got2, err := s.Get(id)
			if err != nil || !reflect.DeepEqual(got2, it) {
				t.Errorf("Get = %+v, %v; Open gave %+v", got2, err, it)
			}
		})
	}
}

// TestFileFormat pins down the bytes Write puts on disk, and the name.
func TestFileFormat(t *testing.T) {
	now := time.Date(2026, 11, 23, 6, 10, 12, 123456789, time.FixedZone("CET", 3600))
	s := newStore(t, Options{StoreSCL: true, Now: func() time.Time { return now }})
	msg := "Subject: x\r\n\r\nbody\r\n"
	id, err := s.Write(Envelope{From: "a@b", To: []string{"c@d", "e@f"}}, 7, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^20261123T051012\.123456Z-[a-z2-7]{16}$`).MatchString(id) {
		t.Errorf("ID %q does not look like <UTC time>-<random>", id)
	}
	path := filepath.Join(s.Dir(), id+".eml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "X-Sender: <a@b>\r\nX-Receiver: <c@d>\r\nX-Receiver: <e@f>\r\nX-SCL: 7\r\n" + msg
	if string(data) != want {
		t.Errorf("file =\n%q\nwant\n%q", data, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	it, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !it.Received.Equal(now.Truncate(time.Microsecond)) || it.Path != path {
		t.Errorf("Received = %v, Path = %q", it.Received, it.Path)
	}
	if names := dirNames(t, s.Dir()); len(names) != 1 {
		t.Errorf("directory holds %q, want only the message", names)
	}
}

// WriteReport keeps the report with the SCL, one line whatever it holds,
// and only when the SCL is stored.
func TestWriteReport(t *testing.T) {
	msg := "Received: from x\r\n\r\nbody\r\n"
	s := newStore(t, Options{StoreSCL: true})
	id, err := s.WriteReport(testEnv, 9, "scl=9 classifier=none; rules: BODY MAX \"cheap\r\npills\"\x00 ", strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(s.Dir(), id+".eml"))
	if want := "X-SCL: 9\r\nX-SCL-Report: scl=9 classifier=none; rules: BODY MAX \"cheap  pills\"\r\n" + msg; !strings.HasSuffix(string(data), want) {
		t.Errorf("file %q, want it to end %q", data, want)
	}
	it, err := s.Get(id)
	if err != nil || it.Report != `scl=9 classifier=none; rules: BODY MAX "cheap  pills"` || it.Size != int64(len(msg)) {
		t.Errorf("Get = %+v, %v", it, err)
	}
	// Without StoreSCL (IMF's ArchiveSCL off), neither is stored.
	s = newStore(t, Options{})
	if id, err = s.WriteReport(testEnv, 9, "scl=9", strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if it, err := s.Get(id); err != nil || it.Report != "" || it.HasSCL {
		t.Errorf("without StoreSCL: %+v, %v", it, err)
	}
	// There, a message whose first field is X-SCL-Report is no trouble:
	// a report line is the head's only right after an X-SCL line.
	forged := "X-SCL-Report: scl=0 forged\r\n\r\nx\r\n"
	if id, err = s.Write(testEnv, 9, strings.NewReader(forged)); err != nil {
		t.Fatalf("without StoreSCL, a message starting with X-SCL-Report: %v", err)
	}
	if it, r, err := s.Open(id); err != nil || it.Report != "" {
		t.Errorf("read back %+v, %v", it, err)
	} else {
		b, _ := io.ReadAll(r)
		r.Close()
		if string(b) != forged {
			t.Errorf("message %q, want %q", b, forged)
		}
	}
}

func TestWriteRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		storeSCL bool
		env      Envelope
		scl      int
		msg      string
		is       error
	}{
		"no recipients":         {true, Envelope{From: "a@b"}, 1, "x", nil},
		"injected line":         {true, Envelope{From: "a@b", To: []string{"c@d>\r\nX-Receiver: <e@f"}}, 1, "x", nil},
		"SCL out of range":      {true, Envelope{From: "a@b", To: []string{"c@d"}}, 10, "x", nil},
		"message X-Receiver":    {true, Envelope{From: "a@b", To: []string{"c@d"}}, 1, "X-Receiver: <evil@example.com>\r\n\r\nx", ErrAmbiguous},
		"message x-receiver":    {false, Envelope{From: "a@b", To: []string{"c@d"}}, 1, "x-receiver:evil@example.com\n\nx", ErrAmbiguous},
		"message X-SCL, no SCL": {false, Envelope{From: "a@b", To: []string{"c@d"}}, 1, "X-SCL: -1\r\n\r\nx", ErrAmbiguous},
		"message X-SCL-Report":  {true, Envelope{From: "a@b", To: []string{"c@d"}}, 1, "X-SCL-Report: rules: BODY MIN \"x\"\r\n\r\nx", ErrAmbiguous},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, Options{StoreSCL: c.storeSCL})
			id, err := s.Write(c.env, c.scl, strings.NewReader(c.msg))
			if err == nil || id != "" {
				t.Fatalf("Write = %q, %v; want an error", id, err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			if names := dirNames(t, s.Dir()); len(names) != 0 {
				t.Errorf("left %q behind", names)
			}
		})
	}
}

var testEnv = Envelope{From: "a@example.com", To: []string{"b@example.org"}}

// gateReader returns first, then blocks until it gets the error to fail
// with: a client that stalls in the middle of DATA and then goes away.
type gateReader struct {
	first []byte
	fail  chan error
}

func (g *gateReader) Read(p []byte) (int, error) {
	if len(g.first) > 0 {
		n := copy(p, g.first)
		g.first = g.first[n:]
		return n, nil
	}
	return 0, <-g.fail
}

func TestWriteIsAtomic(t *testing.T) {
	s := newStore(t, Options{StoreSCL: true})
	// An earlier message, which must stay the only one listed.
	oldID, err := s.Write(testEnv, 5, strings.NewReader("Subject: old\r\n\r\nold\r\n"))
	if err != nil {
		t.Fatal(err)
	}

	g := &gateReader{
		first: []byte("Subject: stalled\r\n\r\n" + strings.Repeat("x", 200<<10)),
		fail:  make(chan error),
	}
	done := make(chan error)
	go func() {
		_, err := s.Write(testEnv, 5, g)
		done <- err
	}()

	// Wait until the temporary file is there and being written.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var temps int
		for _, n := range dirNames(t, s.Dir()) {
			if strings.HasPrefix(n, tempPrefix) {
				temps++
			}
		}
		if temps == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no temporary file appeared")
		}
		time.Sleep(time.Millisecond)
	}
	items := mustList(t, s)
	if len(items) != 1 || items[0].ID != oldID {
		t.Errorf("List during the write = %v, want only %s", items, oldID)
	}

	clientGone := errors.New("connection reset")
	g.fail <- clientGone
	err = <-done
	if !errors.Is(err, clientGone) {
		t.Errorf("Write = %v, want the reader's error", err)
	}
	if names := dirNames(t, s.Dir()); len(names) != 1 || names[0] != oldID+".eml" {
		t.Errorf("after the failed write the directory holds %q", names)
	}
}

func TestWriteFailures(t *testing.T) {
	full := &fs.PathError{Op: "open", Path: "x", Err: syscall.ENOSPC}
	s := newStore(t, Options{CreateTemp: func(dir, pattern string) (*os.File, error) {
		return nil, full
	}})
	_, err := s.Write(testEnv, 5, strings.NewReader("x"))
	if !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "archive: write "+s.Dir()) {
		t.Errorf("CreateTemp failing: %v", err)
	}

	// A file that cannot be written to: the disk failing in the middle of
	// the message. The temporary file must go.
	s = newStore(t, Options{CreateTemp: func(dir, pattern string) (*os.File, error) {
		f, err := os.CreateTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		f.Close()
		return os.Open(f.Name())
	}})
	_, err = s.Write(testEnv, 5, bytes.NewReader(binaryMessage(1<<20)))
	if err == nil || !strings.HasPrefix(err.Error(), "archive: write "+s.Dir()) {
		t.Errorf("writes failing: %v", err)
	}
	if names := dirNames(t, s.Dir()); len(names) != 0 {
		t.Errorf("left %q behind", names)
	}

	// The reader failing right away.
	s = newStore(t, Options{})
	_, err = s.Write(testEnv, 5, io.MultiReader(strings.NewReader("Subject: x\r\n"), iotestErrReader{}))
	if !errors.Is(err, errTestRead) {
		t.Errorf("reader failing: %v", err)
	}
	if items := mustList(t, s); len(items) != 0 {
		t.Errorf("List after a failed write = %v", items)
	}
	if names := dirNames(t, s.Dir()); len(names) != 0 {
		t.Errorf("left %q behind", names)
	}
}

var errTestRead = errors.New("test read error")

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errTestRead }

// TestUnwritableDir uses a directory that has become a regular file:
// permission bits would not stop the tests when they run as root.
func TestUnwritableDir(t *testing.T) {
	s := newStore(t, Options{})
	if err := os.Remove(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Dir(), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Write(testEnv, 5, strings.NewReader("x"))
	if err == nil || !strings.HasPrefix(err.Error(), "archive: write "+s.Dir()) {
		t.Errorf("Write into a file = %v, want an error", err)
	}
	if _, err := s.List(); err == nil {
		t.Error("List of a file: no error")
	}

	// Open cannot create a directory under a regular file.
	if _, err := Open(filepath.Join(s.Dir(), "sub"), Options{}); err == nil {
		t.Error("Open under a file: no error")
	}
	if _, err := Open(s.Dir(), Options{}); err == nil {
		t.Error("Open of a file: no error")
	}
}

func TestConcurrentWrites(t *testing.T) {
	// One fixed time, so that only the random part tells the names apart.
	now := time.Now()
	s := newStore(t, Options{StoreSCL: true, Now: func() time.Time { return now }})
	const n = 50
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ids[i], errs[i] = s.Write(testEnv, i%10, strings.NewReader(strings.Repeat("x", i*1000)))
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("write %d: %v", i, errs[i])
		}
		if seen[ids[i]] {
			t.Errorf("ID %s given twice", ids[i])
		}
		seen[ids[i]] = true
	}
	items := mustList(t, s)
	if len(items) != n {
		t.Fatalf("List has %d items, want %d", len(items), n)
	}
	for _, it := range items {
		if !seen[it.ID] {
			t.Errorf("List has unknown %s", it.ID)
		}
	}
}
