package proxy

import (
	"errors"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"
)

// errAuthFailed is what a client with a wrong password learns: nothing more.
var errAuthFailed = errors.New("invalid credentials")

// checkPassword compares against the bcrypt hash configured for user.
func checkPassword(users map[string]string, user, pass string) error {
	hash, ok := users[user]
	if !ok {
		// Spend the same time as a real comparison, so that response
		// times do not tell which user names exist: against the
		// costliest configured hash (a fixed cost-10 one would answer
		// faster than users' cost-12 hashes). Its result is ignored.
		dummy := "$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z3vI/qBcHwUzMclPfVtgOqeG"
		most := 0
		for _, h := range users {
			if c, err := bcrypt.Cost([]byte(h)); err == nil && c > most {
				dummy, most = h, c
			}
		}
		bcrypt.CompareHashAndPassword([]byte(dummy), []byte(pass))
		return errAuthFailed
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) != nil {
		return errAuthFailed
	}
	return nil
}

// loginServer is the server side of AUTH LOGIN, which go-sasl no longer
// ships but Outlook and many appliances still use: two base64 prompts,
// "Username:" and "Password:".
type loginServer struct {
	user, pass string
	step       int
	auth       func(user, pass string) error
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		s.step++
		if len(response) > 0 { // initial response: AUTH LOGIN <user>
			s.user = string(response)
			s.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		s.user = string(response)
		s.step++
		return []byte("Password:"), false, nil
	case 2:
		s.pass = string(response)
		s.step++
		return nil, true, s.auth(s.user, s.pass)
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
