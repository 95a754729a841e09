//go:build !race

package defs

import (
	"flag"
	"testing"
)

var slow = flag.Bool("slow", false, "also run tests that use scrypt at minisign's cost")

// TestGenerateKeyEncrypted uses scrypt at minisign's real cost: 1 GiB and
// several seconds per key operation (half a minute and 6 GiB under the race
// detector, hence the build tag). Run it with
//
//	go test -run GenerateKeyEncrypted ./defs -slow
//
// TestEncryptedKey covers decryption with cheap parameters in every run.
func TestGenerateKeyEncrypted(t *testing.T) {
	if !*slow {
		t.Skip("scrypt at minisign's cost: run with -slow")
	}
	pub, priv, err := GenerateKey("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("data")
	_, err = Sign(priv, "", data, "c")
	wantErr(t, err, ErrNoPassword, "encrypted")
	sig, err := Sign(priv, "correct horse", data, "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Verify([][]byte{pub}, data, sig); err != nil {
		t.Fatal(err)
	}
}
