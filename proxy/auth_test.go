package proxy

import (
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// An unknown user name is compared against a configured user's hash (for
// the time it takes), and never let in, not even with that user's
// password; a known user gets in with their own password only.
func TestCheckPassword(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{"alice": string(h)}
	for _, c := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "secret", true},
		{"alice", "wrong", false},
		{"mallory", "secret", false},
		{"mallory", "", false},
	} {
		err := checkPassword(users, c.user, c.pass)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, errAuthFailed) {
			t.Errorf("%s/%s: %v", c.user, c.pass, err)
		}
	}
	if err := checkPassword(nil, "x", "y"); !errors.Is(err, errAuthFailed) {
		t.Errorf("no users: %v", err)
	}
}
