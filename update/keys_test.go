package update

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sclgate/sclgate/defs"
)

// A trusted key may be given as its base64 line, as the whole .pub text, or
// as the path of a .pub file. Base64 holds '/' more often than not: such
// a key line is a key, not a path.
func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	var pub []byte
	var line string
	for range 64 {
		p, _, err := defs.GenerateKey("")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(p)), "\n")
		if l := strings.TrimSpace(lines[len(lines)-1]); strings.Contains(l, "/") {
			pub, line = p, l
			break
		}
	}
	if line == "" {
		t.Fatal("no key line with a '/' in 64 keys")
	}
	path := filepath.Join(dir, "k.pub")
	if err := os.WriteFile(path, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeys([]string{line, " " + line + " ", string(pub), path})
	if err != nil {
		t.Fatalf("LoadKeys: %v", err)
	}
	want, _ := defs.PublicKeyID(pub)
	for i, k := range keys {
		if id, err := defs.PublicKeyID(k); err != nil || id != want {
			t.Errorf("key %d: %q, %v; want %s", i, id, err, want)
		}
	}

	os.WriteFile(filepath.Join(dir, "bad.pub"), []byte("untrusted comment: x\nnot a key\n"), 0o644)
	for _, tc := range []struct{ entry, want string }{
		{filepath.Join(dir, "nosuch.pub"), "trusted key 2: neither a minisign public key nor a readable .pub file"},
		{"RWQnotakey/atall", "trusted key 2: neither a minisign public key nor a readable .pub file"},
		{filepath.Join(dir, "bad.pub"), "bad.pub: not a minisign public key file"},
	} {
		if _, err := LoadKeys([]string{line, tc.entry}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadKeys(%q) = %v, want %q", tc.entry, err, tc.want)
		}
	}
}
