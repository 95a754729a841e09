package defs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testCreated = time.Date(2026, 11, 23, 5, 19, 43, 0, time.UTC)

// sampleBundle is a valid bundle with a full calibration table.
func sampleBundle() *Bundle {
	b := &Bundle{
		Manifest: Manifest{
			Version:      "2026.11.1",
			Created:      testCreated,
			TrainingData: "SpamAssassin public corpus 2002-2003, TRAIN split\n2,895 ham + 1,319 spam",
			MinSclgate:   "0.2.0",
		},
		Model: bytes.Repeat([]byte("token\x00weight\x01"), 2000),
	}
	for scl := 1; scl <= 9; scl++ {
		b.Manifest.Calibration = append(b.Manifest.Calibration, CalRow{
			SCL: scl, Cut: float64(scl) / 10, HamRate: 0.1 / float64(scl), SpamRate: 1 - float64(scl)/20,
			Ham: 1255 / scl, Spam: 577 - 20*scl,
		})
	}
	return b
}

func writeBundle(t testing.TB, b *Bundle) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// entry is one member of a hand-made archive.
type entry struct {
	hdr  tar.Header
	data []byte
}

func reg(name string, data []byte) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644, ModTime: testCreated}, data}
}

// manifestFor is a valid manifest.json listing model as model.bin.
func manifestFor(t testing.TB, model []byte, edit func(*Manifest)) []byte {
	t.Helper()
	m := sampleBundle().Manifest
	m.FormatVersion = FormatVersion
	sum := sha256.Sum256(model)
	m.Members = map[string]string{ModelName: hex.EncodeToString(sum[:])}
	if edit != nil {
		edit(&m)
	}
	data, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// makeArchive gzips a tar of the entries as given, however wrong.
func makeArchive(t testing.TB, entries ...entry) []byte {
	t.Helper()
	return gzipBytes(t, tarBytes(t, entries...))
}

func tarBytes(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("%s: %v", hdr.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("%s: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gunzip(t testing.TB, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantErr checks that err wraps sentinel and mentions every one of texts.
func wantErr(t *testing.T, err, sentinel error, texts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not wrap %q", err, sentinel)
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	in := sampleBundle()
	data := writeBundle(t, in)
	b, err := Read(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	sum := sha256.Sum256(in.Model)
	if m.FormatVersion != FormatVersion || m.Version != in.Manifest.Version || !m.Created.Equal(in.Manifest.Created) ||
		m.TrainingData != in.Manifest.TrainingData || m.MinSclgate != "0.2.0" ||
		len(m.Members) != 1 || m.Members[ModelName] != hex.EncodeToString(sum[:]) {
		t.Errorf("manifest: %+v", m)
	}
	if len(m.Calibration) != 9 || m.Calibration[8] != in.Manifest.Calibration[8] {
		t.Errorf("calibration: %+v", m.Calibration)
	}
	if !bytes.Equal(b.Model, in.Model) {
		t.Error("model differs")
	}
	if in.Manifest.Members != nil || in.Manifest.FormatVersion != 0 {
		t.Error("Write changed its input")
	}

	// An empty model and an empty calibration table are bundles too.
	empty := &Bundle{Manifest: Manifest{Version: "0", Created: testCreated}}
	if b, err := Read(bytes.NewReader(writeBundle(t, empty)), 0); err != nil || len(b.Model) != 0 {
		t.Errorf("empty bundle: %v", err)
	}
}

func TestWriteDeterministic(t *testing.T) {
	a := writeBundle(t, sampleBundle())
	if b := writeBundle(t, sampleBundle()); !bytes.Equal(a, b) {
		t.Fatal("two writes of the same bundle differ")
	}
	// The same instant in another zone, and Members filled in by the
	// caller, change nothing.
	other := sampleBundle()
	other.Manifest.Created = testCreated.In(time.FixedZone("CET", 3600))
	other.Manifest.Members = map[string]string{"junk": "x"}
	if b := writeBundle(t, other); !bytes.Equal(a, b) {
		t.Fatal("zone or caller's Members changed the bytes")
	}

	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() || zr.Comment != "" || len(zr.Extra) != 0 {
		t.Errorf("gzip header: name %q mtime %v", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o644 || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" ||
			hdr.Gname != "" || !hdr.ModTime.Equal(testCreated) || hdr.Format != tar.FormatUSTAR {
			t.Errorf("%s: header %+v", hdr.Name, hdr)
		}
	}
	if strings.Join(names, " ") != "manifest.json model.bin" {
		t.Errorf("members %q", names)
	}
}

func TestWriteRejectsBadManifest(t *testing.T) {
	for name, edit := range map[string]func(*Manifest){
		"version traversal": func(m *Manifest) { m.Version = "../1" },
		"version empty":     func(m *Manifest) { m.Version = "" },
		"version dot":       func(m *Manifest) { m.Version = ".1" },
		"min_sclgate":       func(m *Manifest) { m.MinSclgate = "1 2" },
		"created zero":      func(m *Manifest) { m.Created = time.Time{} },
		"format 2":          func(m *Manifest) { m.FormatVersion = 2 },
		"SCL 10":            func(m *Manifest) { m.Calibration[8].SCL = 10 },
		"SCL order":         func(m *Manifest) { m.Calibration[1].SCL = 1 },
		"rate":              func(m *Manifest) { m.Calibration[0].HamRate = 1.5 },
		"count":             func(m *Manifest) { m.Calibration[0].Spam = -1 },
		"control char":      func(m *Manifest) { m.TrainingData = "corpus\x1b[2J" },
	} {
		b := sampleBundle()
		edit(&b.Manifest)
		var buf bytes.Buffer
		if err := Write(&buf, b); err == nil || buf.Len() != 0 {
			t.Errorf("%s: err %v, %d bytes written", name, err, buf.Len())
		}
	}
}

// rewriteMember returns data with one tar member's content changed by edit,
// recompressed; sizes are kept.
func rewriteMember(t *testing.T, data []byte, name string, edit func([]byte)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(gunzip(t, data)))
	var entries []entry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		content, _ := io.ReadAll(tr)
		if hdr.Name == name {
			edit(content)
		}
		entries = append(entries, entry{*hdr, content})
	}
	return makeArchive(t, entries...)
}

func TestTamperDetected(t *testing.T) {
	good := writeBundle(t, sampleBundle())

	// A byte of the model: its sha256 no longer matches the manifest.
	bad := rewriteMember(t, good, ModelName, func(b []byte) { b[len(b)/2] ^= 1 })
	_, err := Read(bytes.NewReader(bad), 0)
	wantErr(t, err, ErrChecksum, `member "model.bin" has sha256`)

	// A byte of the model's sha256 in the manifest.
	bad = rewriteMember(t, good, ManifestName, func(b []byte) {
		i := bytes.Index(b, []byte(`"model.bin": "`)) + len(`"model.bin": "`)
		b[i] ^= 1 // a hex digit becomes another hex digit
	})
	_, err = Read(bytes.NewReader(bad), 0)
	wantErr(t, err, ErrChecksum)

	// Any byte of the compressed file.
	for _, i := range []int{0, 3, 10, len(good) / 2, len(good) - 8, len(good) - 1} {
		bad := bytes.Clone(good)
		bad[i] ^= 0x40
		if _, err := Read(bytes.NewReader(bad), 0); !errors.Is(err, ErrFormat) && !errors.Is(err, ErrChecksum) {
			t.Errorf("byte %d flipped: err %v", i, err)
		}
	}
}

func TestTruncated(t *testing.T) {
	good := writeBundle(t, sampleBundle())
	for _, n := range []int{0, 1, 9, 10, len(good) / 3, len(good) / 2, len(good) - 9, len(good) - 4, len(good) - 1} {
		_, err := Read(bytes.NewReader(good[:n]), 0)
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%d of %d bytes: %v", n, len(good), err)
		}
	}
	_, err := Read(bytes.NewReader(good[:len(good)-1]), 0)
	wantErr(t, err, ErrFormat, "truncated")
}

func TestMembers(t *testing.T) {
	model := []byte("the model")
	manifest := manifestFor(t, model, nil)
	link := func(name, target string, typ byte) entry {
		return entry{tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777, ModTime: testCreated}, nil}
	}
	for _, tc := range []struct {
		name    string
		entries []entry
		want    []string
	}{
		{"extra member", []entry{reg(ManifestName, manifest), reg(ModelName, model), reg("extra.txt", []byte("x"))}, []string{`unexpected member "extra.txt"`}},
		{"missing model", []entry{reg(ManifestName, manifest)}, []string{`"model.bin"`, "missing"}},
		{"manifest not first", []entry{reg(ModelName, model), reg(ManifestName, manifest)}, []string{`first member is "model.bin"`}},
		{"duplicate model", []entry{reg(ManifestName, manifest), reg(ModelName, model), reg(ModelName, model)}, []string{`"model.bin" appears twice`}},
		{"duplicate manifest", []entry{reg(ManifestName, manifest), reg(ManifestName, manifest), reg(ModelName, model)}, []string{"appears twice"}},
		{"empty archive", nil, []string{"empty archive"}},
		{"symlink", []entry{reg(ManifestName, manifest), link(ModelName, "/etc/shadow", tar.TypeSymlink)}, []string{"is a link", "/etc/shadow"}},
		{"hard link", []entry{reg(ManifestName, manifest), link(ModelName, ManifestName, tar.TypeLink)}, []string{"is a link"}},
		{"symlinked manifest", []entry{link(ManifestName, "/etc/passwd", tar.TypeSymlink)}, []string{"is a link"}},
		{"directory", []entry{{tar.Header{Typeflag: tar.TypeDir, Name: "model.bin/", Mode: 0o755, ModTime: testCreated}, nil}}, []string{"unexpected member"}},
		{"fifo", []entry{reg(ManifestName, manifest), {tar.Header{Typeflag: tar.TypeFifo, Name: ModelName, ModTime: testCreated}, nil}}, []string{"not a regular file"}},
		{"dot-slash name", []entry{reg(ManifestName, manifest), reg("./model.bin", model)}, []string{`unexpected member "./model.bin"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(makeArchive(t, tc.entries...)), 0)
			wantErr(t, err, ErrFormat, tc.want...)
		})
	}
}

func TestPathTraversal(t *testing.T) {
	model := []byte("m")
	manifest := manifestFor(t, model, nil)
	for name, want := range map[string]string{
		"../model.bin":          "path traversal",
		"a/../../model.bin":     "path traversal",
		"model.bin/../../etc/x": "path traversal",
		"..":                    "path traversal",
		"/etc/cron.d/evil":      "absolute path",
		"/model.bin":            "absolute path",
		`C:\Windows\evil.dll`:   "absolute path",
		`..\..\evil`:            "unsafe name",
		"model\x1b[2J.bin":      "unsafe name",
		"sub/dir/model.bin":     "no directories",
	} {
		for _, first := range []bool{true, false} {
			entries := []entry{reg(name, model)}
			if !first {
				entries = []entry{reg(ManifestName, manifest), reg(name, model)}
			}
			raw := makeArchiveLoose(t, entries...)
			_, err := Read(bytes.NewReader(raw), 0)
			if err == nil || !errors.Is(err, ErrFormat) {
				t.Errorf("%q: %v", name, err)
				continue
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: error %q does not say %q", name, err, want)
			}
		}
	}
}

// makeArchiveLoose is makeArchive for names the tar writer would refuse in
// a ustar header (long or odd ones go through PAX).
func makeArchiveLoose(t *testing.T, entries ...entry) []byte {
	t.Helper()
	for i := range entries {
		entries[i].hdr.Format = tar.FormatPAX
	}
	return makeArchive(t, entries...)
}

func TestSizeCaps(t *testing.T) {
	// A gzip bomb: 16 MiB of zeros as the model, about 16 KiB compressed.
	big := make([]byte, 16<<20)
	bomb := makeArchive(t, reg(ManifestName, manifestFor(t, big, nil)), reg(ModelName, big))
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	_, err := Read(bytes.NewReader(bomb), 1<<20)
	wantErr(t, err, ErrFormat, `member "model.bin" is 16777216 bytes, over the size limit of 1048576`)

	// A header that claims more than is there is caught by the same check
	// before anything is allocated for it.
	hdr := tar.Header{Typeflag: tar.TypeReg, Name: ModelName, Size: 1 << 32, Mode: 0o644, ModTime: testCreated}
	raw := tarBytes(t, reg(ManifestName, manifestFor(t, nil, nil)))
	raw = raw[:len(raw)-1024] // drop the end marker
	var hb bytes.Buffer
	tw := tar.NewWriter(&hb)
	tw.WriteHeader(&hdr) // header only; the content never comes
	raw = append(raw, hb.Bytes()[:512]...)
	_, err = Read(bytes.NewReader(gzipBytes(t, raw)), 0)
	wantErr(t, err, ErrFormat, "4294967296 bytes, over the size limit")

	// The file itself: stored, not compressed, so it is larger than the
	// archive in it.
	model := bytes.Repeat([]byte("m"), 100<<10)
	var stored bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&stored, gzip.NoCompression)
	zw.Write(tarBytes(t, reg(ManifestName, manifestFor(t, model, nil)), reg(ModelName, model)))
	zw.Close()
	_, err = Read(bytes.NewReader(stored.Bytes()), int64(stored.Len()-1))
	wantErr(t, err, ErrFormat, "file larger than")
	if _, err := Read(bytes.NewReader(stored.Bytes()), int64(stored.Len())); err != nil {
		t.Errorf("exactly at the limit: %v", err)
	}

	// The uncompressed archive, counting tar headers too.
	good := writeBundle(t, sampleBundle())
	tarSize := int64(len(gunzip(t, good)))
	_, err = Read(bytes.NewReader(good), tarSize-1)
	wantErr(t, err, ErrFormat, "uncompressed archive larger than")
	if _, err := Read(bytes.NewReader(good), tarSize); err != nil {
		t.Errorf("archive exactly at the limit: %v", err)
	}

	// The manifest has a cap of its own.
	huge := bytes.Repeat([]byte(" "), MaxManifestSize+1)
	_, err = Read(bytes.NewReader(makeArchive(t, reg(ManifestName, huge))), 0)
	wantErr(t, err, ErrFormat, "manifest.json is 1048577 bytes")
}

func TestTrailingData(t *testing.T) {
	good := writeBundle(t, sampleBundle())
	_, err := Read(bytes.NewReader(append(bytes.Clone(good), "junk"...)), 0)
	wantErr(t, err, ErrFormat, "after the end of the gzip stream")

	// A second gzip stream (which gzip tools would silently append).
	_, err = Read(bytes.NewReader(append(bytes.Clone(good), gzipBytes(t, []byte("more"))...)), 0)
	wantErr(t, err, ErrFormat, "after the end of the gzip stream")

	// Zero padding after the tar end marker is fine (GNU tar writes it),
	// anything else is not.
	raw := gunzip(t, good)
	if _, err := Read(bytes.NewReader(gzipBytes(t, append(bytes.Clone(raw), make([]byte, 8192)...))), 0); err != nil {
		t.Errorf("zero padding: %v", err)
	}
	_, err = Read(bytes.NewReader(gzipBytes(t, append(bytes.Clone(raw), "hidden"...))), 0)
	wantErr(t, err, ErrFormat, "after the end of the archive")
}

func TestManifestErrors(t *testing.T) {
	model := []byte("m")
	for _, tc := range []struct {
		name     string
		manifest []byte
		want     string
	}{
		{"newer format", manifestFor(t, model, func(m *Manifest) { m.FormatVersion = 2 }), "format version 2, this sclgate reads 1"},
		{"no format", []byte(`{"version":"1"}`), "no format_version"},
		{"not JSON", []byte("version=1"), "manifest.json"},
		{"unknown field", []byte(`{"expires":"never",` + string(manifestFor(t, model, nil)[1:])), `unknown field "expires"`},
		{"two objects", append(manifestFor(t, model, nil), "{}"...), "after top-level value"},
		{"bad version", manifestFor(t, model, func(m *Manifest) { m.Version = "../../etc" }), `version "../../etc"`},
		{"bad sha", manifestFor(t, model, func(m *Manifest) { m.Members[ModelName] = "ABC" }), "hex digits"},
		{"extra listed member", manifestFor(t, model, func(m *Manifest) { m.Members["x"] = m.Members[ModelName] }), `want exactly "model.bin"`},
		{"negative rate", manifestFor(t, model, func(m *Manifest) { m.Calibration[0].SpamRate = -0.5 }), "between 0 and 1"},
		// Read by other JSON readers otherwise than by Go: refused.
		{"key twice", []byte(`{"version":"2099.1.1",` + string(manifestFor(t, model, nil)[1:])), `key "version" given twice`},
		{"key twice in another case", []byte(`{"VERSION":"2099.1.1",` + string(manifestFor(t, model, nil)[1:])), `key "VERSION"`},
		{"field in another case", bytes.Replace(manifestFor(t, model, nil), []byte(`"version"`), []byte(`"Version"`), 1), `key "Version": field names are lower case`},
		{"field name folded", bytes.Replace(manifestFor(t, model, nil), []byte(`"version"`), []byte(`"ver\u017fion"`), 1), `field names are ASCII`},
		{"row key twice", bytes.Replace(manifestFor(t, model, nil), []byte(`"cut":`), []byte(`"cut":0.5,"cut":`), 1), `key "cut" given twice`},
		{"member twice", bytes.Replace(manifestFor(t, model, nil), []byte(`"members":{`), []byte(`"members":{"model.bin":"00","Model.bin":"00",`), 1), `key "Model.bin" given twice, in another case`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(makeArchive(t, reg(ManifestName, tc.manifest), reg(ModelName, model))), 0)
			wantErr(t, err, ErrFormat, tc.want)
		})
	}
}

func TestNotGzip(t *testing.T) {
	_, err := Read(strings.NewReader("PK\x03\x04 a zip file"), 0)
	wantErr(t, err, ErrFormat, "not a gzip file")
	_, err = Read(bytes.NewReader(gzipBytes(t, []byte("plain text, not tar"))), 0)
	wantErr(t, err, ErrFormat)
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName("2026.11.1"))
	if filepath.Base(path) != "sclgate-defs-2026.11.1.tar.gz" {
		t.Errorf("FileName: %s", path)
	}
	good := writeBundle(t, sampleBundle())
	os.WriteFile(path, good, 0o644)
	if b, err := ReadFile(path); err != nil || b.Manifest.Version != "2026.11.1" {
		t.Fatalf("%v", err)
	}
	os.WriteFile(path, good[:len(good)/2], 0o644)
	_, err := ReadFile(path)
	wantErr(t, err, ErrFormat, path)
	if _, err := ReadFile(filepath.Join(dir, "missing.tar.gz")); err == nil || !strings.Contains(err.Error(), "missing.tar.gz") {
		t.Errorf("missing file: %v", err)
	}
}
