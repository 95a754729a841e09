package archive

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestListOrderAndForeignFiles(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)
	now := t0
	s := newStore(t, Options{Now: func() time.Time { return now }})
	var ids []string
	for i := range 3 {
		now = t0.Add(time.Duration(i) * time.Second)
		id, err := s.Write(testEnv, 0, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}

	// A file IMF wrote, older than the newest of ours: its time is its
	// mtime.
	imf := filepath.Join(s.Dir(), "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}.eml")
	writeFile(t, imf, "x-sender: a@b\nx-receiver: c@d\nX-SCL: 8\n\nbody\n")
	imfTime := t0.Add(1500 * time.Millisecond)
	if err := os.Chtimes(imf, imfTime, imfTime); err != nil {
		t.Fatal(err)
	}

	// Things that are not messages in the archive.
	writeFile(t, filepath.Join(s.Dir(), tempPrefix+"x-123"+tempSuffix), "X-Sender: <a@b>\r\nX-Receiver: <c@d>\r\n")
	writeFile(t, filepath.Join(s.Dir(), ".hidden.eml"), "X-Sender: <a@b>\r\nX-Receiver: <c@d>\r\n")
	writeFile(t, filepath.Join(s.Dir(), "notes.txt"), "x")
	if err := os.Mkdir(filepath.Join(s.Dir(), "dir.eml"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := s.Move(ids[0], "released"); err != nil {
		t.Fatal(err)
	}

	items := mustList(t, s)
	var got []string
	for _, it := range items {
		got = append(got, it.ID)
	}
	want := []string{ids[2], "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}", ids[1]}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("List = %q, want %q", got, want)
	}
	if it := items[1]; !it.Received.Equal(imfTime) || !it.HasSCL || it.SCL != 8 || it.Envelope.From != "a@b" || it.Size != 6 {
		t.Errorf("IMF file read as %+v", it)
	}

	// A broken file is skipped and reported, and does not hide the rest.
	writeFile(t, filepath.Join(s.Dir(), "broken.eml"), "Subject: no head\r\n\r\nx\r\n")
	items, err := s.List()
	var skipped *SkippedError
	if !errors.As(err, &skipped) || len(skipped.Errs) != 1 || !errors.Is(err, ErrMalformed) {
		t.Errorf("List with a broken file: err = %v", err)
	}
	if len(items) != 3 {
		t.Errorf("List with a broken file gave %d items, want 3", len(items))
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestValidateID(t *testing.T) {
	for _, id := range []string{
		"20261123T051012.123456Z-k3j4h5g6f7d2m2qa",
		"{3F2504E0-4F89-11D3-9A0C-0305E82C3301}",
		"xxx", "a..b", "spam 1", "é", strings.Repeat("a", 255),
	} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{
		"", ".", "..", "../x", "a/b", `a\b`, "/etc/passwd", ".hidden", "a\x00b", "a\nb",
		strings.Repeat("a", 256),
	} {
		if err := ValidateID(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}

func TestBadIDs(t *testing.T) {
	s := newStore(t, Options{})
	// Something a bad ID could reach if it were not checked.
	writeFile(t, filepath.Join(filepath.Dir(s.Dir()), "outside.eml"), "X-Sender: <a@b>\r\nX-Receiver: <c@d>\r\n")
	id := "../outside"
	if _, err := s.Get(id); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Get(%q) = %v", id, err)
	}
	if _, _, err := s.Open(id); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Open(%q) = %v", id, err)
	}
	if err := s.Delete(id); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Delete(%q) = %v", id, err)
	}
	if err := s.Move(id, "released"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Move(%q) = %v", id, err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Dir()), "outside.eml")); err != nil {
		t.Error(err)
	}
}

func TestGetMissing(t *testing.T) {
	s := newStore(t, Options{})
	id := "20261123T051012.123456Z-aaaaaaaaaaaaaaaa"
	if _, err := s.Get(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get = %v, want ErrNotExist", err)
	}
	if _, _, err := s.Open(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open = %v, want ErrNotExist", err)
	}
	if err := s.Delete(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Delete = %v, want ErrNotExist", err)
	}
	if err := s.Move(id, "released"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Move = %v, want ErrNotExist", err)
	}
}

func TestMoveAndDelete(t *testing.T) {
	s := newStore(t, Options{StoreSCL: true})
	msg := "Subject: x\r\n\r\nx\r\n"
	a, err := s.Write(testEnv, 3, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Write(testEnv, 4, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}

	if err := s.Move(a, "released"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(a); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get after Move = %v", err)
	}
	moved := filepath.Join(s.Dir(), "released", a+".eml")
	if data, err := os.ReadFile(moved); err != nil || !strings.HasSuffix(string(data), msg) {
		t.Errorf("moved file: %q, %v", data, err)
	}
	for _, sub := range []string{"", "..", ".x", "a/b", "/tmp"} {
		if err := s.Move(b, sub); err == nil {
			t.Errorf("Move to %q: no error", sub)
		}
	}

	// Moving a second file of the same name (IMF's names need not be
	// unique) must not replace the first.
	writeFile(t, s.path(a), "X-Sender: <>\r\nX-Receiver: <c@d>\r\n")
	if err := s.Move(a, "released"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Move onto an existing file = %v, want ErrExist", err)
	}

	if err := s.Delete(b); err != nil {
		t.Fatal(err)
	}
	if items := mustList(t, s); len(items) != 1 || items[0].ID != a {
		t.Errorf("List after Delete = %+v", items)
	}
}

func TestOpenStreams(t *testing.T) {
	s := newStore(t, Options{})
	msg := "Subject: x\r\n\r\n" + strings.Repeat("0123456789", 10000)
	id, err := s.Write(testEnv, 0, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, rc, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 9)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "Subject: " {
		t.Errorf("first bytes %q, %v", buf, err)
	}
}

func TestCleanTemp(t *testing.T) {
	now := time.Now()
	s := newStore(t, Options{Now: func() time.Time { return now }})
	id, err := s.Write(testEnv, 0, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(s.Dir(), tempPrefix+"crashed-1"+tempSuffix)
	fresh := filepath.Join(s.Dir(), tempPrefix+"writing-2"+tempSuffix)
	other := filepath.Join(s.Dir(), ".other.tmp")
	for _, p := range []string{stale, fresh, other} {
		writeFile(t, p, "X-Sender: <a@b>\r\n")
	}
	old := now.Add(-2 * time.Hour)
	for _, p := range []string{stale, other, s.path(id)} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}

	n, err := s.CleanTemp(time.Hour)
	if err != nil || n != 1 {
		t.Errorf("CleanTemp = %d, %v; want 1", n, err)
	}
	want := []string{tempPrefix + "writing-2" + tempSuffix, ".other.tmp", id + ".eml"}
	got := dirNames(t, s.Dir())
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("left %q, want %q", got, want)
	}
}
