package web

import (
	"sync"
	"time"
)

// Failed logins are counted per client address and per user name from
// that address over loginWindow: past loginsPerUser failures for one user
// name, or loginsPerIP for all names together, that address gets 429
// until the oldest failure leaves the window, without a password check
// (which would cost the gateway's CPU: bcrypt). bcrypt alone let a client
// try some 40 passwords a second. The address is the TCP peer's: behind a
// reverse proxy every client shares the proxy's, and a guesser then locks
// the user it guesses at out for everyone, for loginWindow at most.
const (
	loginWindow   = 15 * time.Minute
	loginsPerUser = 5
	loginsPerIP   = 20
	// maxThrottled bounds the table; past it, the oldest entries go.
	maxThrottled = 10000
)

type throttle struct {
	mu    sync.Mutex
	fails map[string][]time.Time // key → failure times within the window, oldest first
}

func userKey(ip, user string) string { return "u\x00" + ip + "\x00" + user }
func ipKey(ip string) string         { return "i\x00" + ip }

// wait is how long ip must wait before it may try user's password again
// (0: now).
func (t *throttle) wait(now time.Time, ip, user string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var w time.Duration
	for _, k := range []struct {
		key   string
		limit int
	}{{userKey(ip, user), loginsPerUser}, {ipKey(ip), loginsPerIP}} {
		f := t.recent(k.key, now)
		if len(f) >= k.limit {
			w = max(w, f[len(f)-k.limit].Add(loginWindow).Sub(now))
		}
	}
	return w
}

// failed records a failed login.
func (t *throttle) failed(now time.Time, ip, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fails == nil {
		t.fails = map[string][]time.Time{}
	}
	if len(t.fails) >= maxThrottled {
		t.pruneLocked(now)
	}
	for _, k := range []string{userKey(ip, user), ipKey(ip)} {
		t.fails[k] = append(t.recent(k, now), now)
	}
}

// succeeded forgets the failures of user from ip (not those of ip: a
// guesser with one account of its own must not clear its count).
func (t *throttle) succeeded(ip, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fails, userKey(ip, user))
}

// recent is key's failures still within the window.
func (t *throttle) recent(key string, now time.Time) []time.Time {
	f := t.fails[key]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= loginWindow {
		i++
	}
	return f[i:]
}

func (t *throttle) pruneLocked(now time.Time) {
	for k := range t.fails {
		if len(t.recent(k, now)) == 0 {
			delete(t.fails, k)
		}
	}
	for k := range t.fails { // still full: an attack from many addresses
		if len(t.fails) < maxThrottled {
			break
		}
		delete(t.fails, k)
	}
}
