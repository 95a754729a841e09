package defs

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/scrypt"
)

func newKey(t *testing.T) (pub, priv []byte, id string) {
	t.Helper()
	pub, priv, err := GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	id, err = PublicKeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv, id
}

// cheapEncryptedKey re-encrypts an unencrypted minisign secret key with
// password in minisign's encrypted format, but with scrypt at libsodium's
// lowest cost instead of minisign's 1 GiB, so tests stay fast under the race
// detector. The cost is stored in the key file, so the decrypting code is
// the same as for a key from minisign -G.
func cheapEncryptedKey(t *testing.T, priv []byte, password string) []byte {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(priv)), "\n")
	raw, err := base64.StdEncoding.DecodeString(lines[len(lines)-1])
	if err != nil || len(raw) != 158 || string(raw[2:4]) != "\x00\x00" {
		t.Fatalf("not an unencrypted minisign key: %v", err)
	}
	const ops, mem = 1 << 15, 1 << 24 // scrypt N=1024, r=8, p=1
	salt := bytes.Repeat([]byte{7}, 32)
	keynumSK := raw[54:126] // key id (8) + Ed25519 secret key (64)
	chk := blake2b.Sum256(append([]byte("Ed"), keynumSK...))
	plain := append(bytes.Clone(keynumSK), chk[:]...)
	stream, err := scrypt.Key([]byte(password), salt, 1024, 8, 1, len(plain))
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte("Ed"), "Sc"...)
	out = append(out, "B2"...)
	out = append(out, salt...)
	out = binary.LittleEndian.AppendUint64(out, ops)
	out = binary.LittleEndian.AppendUint64(out, mem)
	for i := range plain {
		out = append(out, plain[i]^stream[i])
	}
	return []byte("untrusted comment: minisign encrypted secret key\n" + base64.StdEncoding.EncodeToString(out) + "\n")
}

func TestSignVerify(t *testing.T) {
	pub, priv, id := newKey(t)
	if !bytes.HasPrefix(pub, []byte("untrusted comment: minisign public key "+id+"\n")) || len(id) != 16 {
		t.Errorf("public key file %q, id %s", pub, id)
	}
	if !bytes.HasPrefix(priv, []byte("untrusted comment: minisign encrypted secret key\n")) {
		t.Errorf("secret key file %q", priv)
	}
	data := writeBundle(t, sampleBundle())
	comment := TrustedComment("2026.11.1", "/srv/defs/sclgate-defs-2026.11.1.tar.gz", time.Unix(1795000000, 0))
	if comment != "sclgate-defs version=2026.11.1 file=sclgate-defs-2026.11.1.tar.gz timestamp=1795000000" {
		t.Errorf("TrustedComment: %q", comment)
	}
	sig, err := Sign(priv, "", data, comment)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(sig), "\n")
	raw, _ := base64.StdEncoding.DecodeString(lines[1])
	if len(lines) != 5 || lines[2] != "trusted comment: "+comment || lines[4] != "" ||
		!bytes.HasPrefix(raw, []byte("ED")) { // prehashed, what minisign -S makes
		t.Errorf("signature file:\n%s", sig)
	}

	// The .pub file and its bare key line are both accepted.
	keyLine := bytes.Split(bytes.TrimSpace(pub), []byte("\n"))[1]
	for _, k := range [][]byte{pub, keyLine, append([]byte("  "), append(keyLine, "\r\n"...)...)} {
		gotID, gotComment, err := Verify([][]byte{k}, data, sig)
		if err != nil || gotID != id || gotComment != comment {
			t.Errorf("key %q: %s %q %v", k, gotID, gotComment, err)
		}
	}
	b, gotID, _, err := ReadVerified(data, sig, [][]byte{pub}, 0)
	if err != nil || gotID != id || b.Manifest.Version != "2026.11.1" {
		t.Errorf("ReadVerified: %v", err)
	}
	// Text after the four lines is ignored, as minisign -V ignores it.
	if _, _, err := Verify([][]byte{pub}, data, append(bytes.Clone(sig), "a note added by hand\n"...)); err != nil {
		t.Errorf("signature with a line after its four: %v", err)
	}
}

func TestVerifyTamper(t *testing.T) {
	pub, priv, id := newKey(t)
	data := writeBundle(t, sampleBundle())
	comment := TrustedComment("2026.11.1", "b.tar.gz", time.Unix(1795000000, 0))
	sig, err := Sign(priv, "", data, comment)
	if err != nil {
		t.Fatal(err)
	}
	keys := [][]byte{pub}
	lines := strings.Split(string(sig), "\n")
	flipB64 := func(s string, i int) string { // another valid base64 digit
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	join := func(l ...string) []byte { return []byte(strings.Join(l, "\n")) }

	for _, tc := range []struct {
		name      string
		data, sig []byte
		want      string
	}{
		{"bundle byte", flip(data, len(data)/2), sig, "does not match"},
		{"bundle truncated", data[:len(data)-1], sig, "does not match"},
		{"bundle extended", append(bytes.Clone(data), 0), sig, "does not match"},
		{"signature byte", data, join(lines[0], flipB64(lines[1], 40), lines[2], lines[3], ""), "does not match"},
		{"trusted comment", data, join(lines[0], lines[1], strings.Replace(lines[2], "2026.11.1", "2026.11.9", 1), lines[3], ""), "does not match"},
		{"trusted comment dropped", data, join(lines[0], lines[1], "trusted comment: ", lines[3], ""), "does not match"},
		{"comment signature byte", data, join(lines[0], lines[1], lines[2], flipB64(lines[3], 10), ""), "does not match"},
		{"signature truncated", data, sig[:len(sig)/2], "malformed signature file"},
		{"not a signature", data, []byte("hello\n"), "malformed signature file"},
		{"empty signature", data, nil, "malformed signature file"},
		{"huge signature", data, bytes.Repeat([]byte("A"), maxSigSize+1), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Verify(keys, tc.data, tc.sig)
			wantErr(t, err, ErrBadSignature, tc.want)
			// ReadVerified never gets as far as reading the archive.
			_, _, _, err = ReadVerified(tc.data, tc.sig, keys, 0)
			wantErr(t, err, ErrBadSignature)
		})
	}
	// The untrusted comment is not signed, by design.
	if _, _, err := Verify(keys, data, join("untrusted comment: anything", lines[1], lines[2], lines[3], "")); err != nil {
		t.Errorf("untrusted comment changed: %v", err)
	}

	// Signed garbage is still not a bundle: the signature is checked first,
	// then the content.
	junk := []byte("not a bundle")
	junkSig, _ := Sign(priv, "", junk, "sclgate-defs version=1")
	_, gotID, _, err := ReadVerified(junk, junkSig, keys, 0)
	wantErr(t, err, ErrFormat)
	if gotID != id {
		t.Errorf("key id %q", gotID)
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

func TestUnknownKey(t *testing.T) {
	pubA, privA, idA := newKey(t)
	pubB, _, idB := newKey(t)
	pubC, _, idC := newKey(t)
	data := []byte("data")
	sig, err := Sign(privA, "", data, "c")
	if err != nil {
		t.Fatal(err)
	}
	gotID, _, err := Verify([][]byte{pubB, pubC}, data, sig)
	wantErr(t, err, ErrUnknownKey, idA, idB, idC)
	if gotID != idA {
		t.Errorf("key id %q, want %q", gotID, idA)
	}
	// Any of several trusted keys will do.
	if gotID, _, err := Verify([][]byte{pubB, pubA}, data, sig); err != nil || gotID != idA {
		t.Errorf("A among trusted keys: %s %v", gotID, err)
	}
	// A key with A's id but another key's bytes is no help to a forger.
	var fake []byte
	{
		lines := strings.Split(strings.TrimSpace(string(pubB)), "\n")
		rawB, _ := base64.StdEncoding.DecodeString(lines[1])
		linesA := strings.Split(strings.TrimSpace(string(pubA)), "\n")
		rawA, _ := base64.StdEncoding.DecodeString(linesA[1])
		copy(rawB[2:10], rawA[2:10])
		fake = []byte(base64.StdEncoding.EncodeToString(rawB))
	}
	_, _, err = Verify([][]byte{fake}, data, sig)
	wantErr(t, err, ErrBadSignature, idA)

	// Unusable trusted keys are a configuration error, not a verdict.
	_, _, err = Verify([][]byte{[]byte("RWQ-not-a-key")}, data, sig)
	if err == nil || errors.Is(err, ErrBadSignature) || errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "trusted key 1") {
		t.Errorf("bad trusted key: %v", err)
	}
	if _, _, err := Verify(nil, data, sig); err == nil {
		t.Error("no trusted keys: no error")
	}
	if _, err := PublicKeyID([]byte("untrusted comment: x\nAAAA")); err == nil {
		t.Error("PublicKeyID accepted a short key")
	}
}

func TestEncryptedKey(t *testing.T) {
	pub, plain, id := newKey(t)
	enc := cheapEncryptedKey(t, plain, "correct horse")
	data := []byte("data")

	sig, err := Sign(enc, "correct horse", data, "c")
	if err != nil {
		t.Fatal(err)
	}
	if gotID, _, err := Verify([][]byte{pub}, data, sig); err != nil || gotID != id {
		t.Errorf("verify: %s %v", gotID, err)
	}
	_, err = Sign(enc, "battery staple", data, "c")
	wantErr(t, err, ErrWrongPassword, "wrong password")
	_, err = Sign(enc, "", data, "c")
	wantErr(t, err, ErrNoPassword, "no password was given")

	// An unencrypted key ignores a password.
	if _, err := Sign(plain, "whatever", data, "c"); err != nil {
		t.Error(err)
	}
	if _, err := Sign([]byte("untrusted comment: x\nnot base64!"), "", data, "c"); err == nil {
		t.Error("garbage secret key accepted")
	}
}

func TestSignRejectsBadComment(t *testing.T) {
	_, priv, _ := newKey(t)
	for _, c := range []string{"two\nlines", "cr\r", "esc\x1b[0m", strings.Repeat("x", maxTrustedComment+1), "\xff"} {
		if _, err := Sign(priv, "", []byte("d"), c); err == nil {
			t.Errorf("comment %q accepted", c)
		}
	}
}

func TestTrustedComment(t *testing.T) {
	c := TrustedComment("1.0", `C:\defs\my bundle=1.tar.gz`, time.Unix(5, 0))
	f, ok := ParseTrustedComment(c)
	if !ok || f["version"] != "1.0" || f["file"] != "my_bundle_1.tar.gz" || f["timestamp"] != "5" || len(f) != 3 {
		t.Errorf("%q: %v %v", c, f, ok)
	}
	for _, s := range []string{"timestamp:1795000000\tfile:x", "sclgate-defs version", "sclgate-defs a=1 a=2"} {
		if _, ok := ParseTrustedComment(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestVersionBoundBySignature(t *testing.T) {
	pub, priv, _ := newKey(t)
	data := writeBundle(t, sampleBundle())
	// A valid signature whose trusted comment names another version: the
	// bundle is not what the signer meant to publish.
	sig, err := Sign(priv, "", data, TrustedComment("2027.1.1", "sclgate-defs-2027.1.1.tar.gz", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = ReadVerified(data, sig, [][]byte{pub}, 0)
	wantErr(t, err, ErrBadSignature, `signature is for version "2027.1.1", the bundle is version "2026.11.1"`)

	// A comment that is not ours (plain minisign -S) binds nothing.
	sig, _ = Sign(priv, "", data, "timestamp:1795000000\tfile:x.tar.gz\thashed")
	if _, _, _, err := ReadVerified(data, sig, [][]byte{pub}, 0); err != nil {
		t.Error(err)
	}
}

func TestVerifyFile(t *testing.T) {
	pub, priv, id := newKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, FileName("2026.11.1"))
	data := writeBundle(t, sampleBundle())
	sig, _ := Sign(priv, "", data, TrustedComment("2026.11.1", path, time.Now()))
	os.WriteFile(path, data, 0o644)
	os.WriteFile(path+".minisig", sig, 0o644)

	b, gotID, comment, err := VerifyFile(path, "", [][]byte{pub})
	if err != nil || gotID != id || b.Manifest.Version != "2026.11.1" || !strings.Contains(comment, "file=sclgate-defs-2026.11.1.tar.gz") {
		t.Fatalf("%v %s %q", err, gotID, comment)
	}
	os.WriteFile(path, flip(data, 100), 0o644)
	_, _, _, err = VerifyFile(path, "", [][]byte{pub})
	wantErr(t, err, ErrBadSignature, path)

	other := filepath.Join(dir, "sig")
	os.WriteFile(path, data, 0o644)
	os.WriteFile(other, sig, 0o644)
	if _, _, _, err := VerifyFile(path, other, [][]byte{pub}); err != nil {
		t.Errorf("-sig: %v", err)
	}
	os.Remove(path + ".minisig")
	if _, _, _, err := VerifyFile(path, "", [][]byte{pub}); err == nil || !strings.Contains(err.Error(), ".minisig") {
		t.Errorf("missing signature: %v", err)
	}
}
