package web

import (
	"crypto/sha256"
	"net/netip"
	"sync"
	"time"
)

// Failed logins are counted per client address and per user name from
// that address over loginWindow: past loginsPerUser failures for one user
// name, or loginsPerIP for all names together, that address gets 429
// until the oldest failure leaves the window, without a password check
// (which would cost the gateway's CPU: bcrypt). bcrypt alone let a client
// try some 40 passwords a second. An attempt counts as a failure from
// the moment it starts, so that parallel requests cannot all pass the
// check before the first one fails; a success takes it back. The address
// is the TCP peer's, an IPv6 one by its /64 (one host's usual share); behind
// a reverse proxy every client shares the proxy's, and a guesser then locks
// the user it guesses at out for everyone, for loginWindow at most.
const (
	loginWindow   = 15 * time.Minute
	loginsPerUser = 5
	loginsPerIP   = 20
	// maxThrottled bounds the table (its keys are fixed-size hashes);
	// past it, entries with no failure in the window go, then any.
	maxThrottled = 10000
)

type throttleKey [sha256.Size]byte

type throttle struct {
	mu     sync.Mutex
	fails  map[throttleKey][]time.Time // failures (and attempts under way) within the window, oldest first
	logged map[throttleKey]time.Time   // when a refusal of this address was last logged
}

func addrPart(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

func userKey(ip, user string) throttleKey {
	return sha256.Sum256([]byte("u\x00" + addrPart(ip) + "\x00" + user))
}
func ipKey(ip string) throttleKey { return sha256.Sum256([]byte("i\x00" + addrPart(ip))) }

// begin is called before a password check. If ip may not try user's
// password now it returns how long to wait, and whether to log that
// (once a minute per address). Else it counts the attempt as a failure
// and returns done, which the caller calls with the outcome.
func (t *throttle) begin(now time.Time, ip, user string) (wait time.Duration, log bool, done func(ok bool)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fails == nil {
		t.fails, t.logged = map[throttleKey][]time.Time{}, map[throttleKey]time.Time{}
	}
	uk, ik := userKey(ip, user), ipKey(ip)
	for _, k := range []struct {
		key   throttleKey
		limit int
	}{{uk, loginsPerUser}, {ik, loginsPerIP}} {
		f := t.recent(k.key, now)
		if len(f) >= k.limit {
			wait = max(wait, f[len(f)-k.limit].Add(loginWindow).Sub(now))
		}
	}
	if wait > 0 {
		if now.Sub(t.logged[ik]) >= time.Minute {
			t.logged[ik], log = now, true
		}
		return wait, log, nil
	}
	if len(t.fails) >= maxThrottled {
		t.pruneLocked(now)
	}
	for _, k := range []throttleKey{uk, ik} {
		t.fails[k] = append(t.recent(k, now), now)
	}
	return 0, false, func(ok bool) {
		if !ok {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		// A success: this attempt was no failure, and the user's count
		// from here starts over (not the address's: a guesser with one
		// account of its own must not clear its count).
		delete(t.fails, uk)
		f := t.fails[ik]
		for i := len(f) - 1; i >= 0; i-- {
			if f[i].Equal(now) {
				t.fails[ik] = append(f[:i:i], f[i+1:]...)
				break
			}
		}
	}
}

// recent is key's failures still within the window.
func (t *throttle) recent(key throttleKey, now time.Time) []time.Time {
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
	for k, at := range t.logged {
		if now.Sub(at) >= loginWindow {
			delete(t.logged, k)
		}
	}
	for k := range t.fails { // still full: an attack from many addresses
		if len(t.fails) < maxThrottled {
			break
		}
		delete(t.fails, k)
	}
}
