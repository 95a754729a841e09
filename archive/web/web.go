// Package web serves the archive manager's web page (archive.web.listen):
// a filterable list of the archived messages with a chart of their SCL
// distribution over time, a view of one message with its SCL explanation,
// and release and delete buttons.
//
// The page is plain server-rendered HTML (html/template, embedded) and
// works without any script: the Content-Security-Policy forbids script
// altogether, so even a mistake in escaping could not run a hostile
// message's script in an administrator's browser. Messages are only ever
// shown as decoded text, never as their own HTML.
//
// Access needs a login (user names and bcrypt hashes from
// archive.web.users); sessions live in memory, so a restart logs everybody
// out. Every form that changes something carries a per-session CSRF token,
// and every release and delete is logged with the user who did it.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/scorer"
)

// Limits and lifetimes.
const (
	// SessionTTL is how long a session lasts without use.
	SessionTTL = 8 * time.Hour
	// sessionMaxAge bounds a session however much it is used.
	sessionMaxAge = 24 * time.Hour
	// MaxRows is the most rows a page of the list shows (Server.PageSize
	// unless set); the others are on further pages.
	MaxRows = 500
	// MaxViewText is how much of a message's decoded text the view shows.
	MaxViewText = 256 << 10
	// maxViewRead is how much of a message the view reads and parses.
	maxViewRead = 16 << 20
	// maxForm bounds the body of a POST.
	maxForm = 64 << 10
	// maxSessions bounds the session table (logins are throttled, see
	// throttle; this keeps memory bounded regardless).
	maxSessions = 10000
)

const (
	sessionCookie = "sclgate_session"
	loginCookie   = "sclgate_login" // CSRF token of the login form (double submit)
)

// ContentSecurityPolicy is sent with every response: no script at all.
const ContentSecurityPolicy = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"fmtTime": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	// msgPath is the page of message id: escaped as a path segment, since
	// a file name from elsewhere (IMF's, or copied in) may hold '?' or '#'.
	"msgPath": func(id string) string { return "/message/" + url.PathEscape(id) },
	"fmtSize": fmtSize,
	// partSize is a part's size as the scorer read it: capped, so a part
	// at the cap may be larger.
	"partSize": func(n int) string {
		if n >= scorer.MaxPartBytes {
			return "at least " + fmtSize(int64(n))
		}
		return fmtSize(int64(n))
	},
	"join": strings.Join,
}).ParseFS(templateFS, "templates/*.html"))

// ReleaseFunc sends the archived message id downstream (to the given
// address, or to its original recipients when to is "") and takes it out
// of the archive. user is who asked, for the log.
type ReleaseFunc func(ctx context.Context, id, to, user string) error

// Server is the archive web page. It is an http.Handler.
type Server struct {
	store   *archive.Store
	users   map[string]string // user → bcrypt hash; guarded by mu (SetUsers)
	release ReleaseFunc
	log     *slog.Logger
	mux     *http.ServeMux

	// Explain, when set, gives the SCL explanation shown in the message
	// view. The gateway does not stamp the messages it archives, so an
	// X-SCL-Report in one came from its sender and is shown only as such:
	// serve sets Explain to score the message again with the scorer in use. It gets the parsed
	// message and returns a one-line report, as scorer.Result.Report.
	Explain func(ctx context.Context, m *scorer.Message) (string, error)

	// Now is the clock, for tests. nil means time.Now.
	Now func() time.Time

	// PageSize is how many rows a page of the list shows; 0 means
	// MaxRows.
	PageSize int

	logins throttle // failed logins, by address and user

	mu          sync.Mutex
	sessions    map[string]*session
	lastSkipped string // the unreadable files last logged (see list)

	headers headerCache
}

type session struct {
	user    string
	hash    string // the user's password hash at login: a changed one ends the session
	csrf    string
	created time.Time
	expires time.Time
}

// SetUsers replaces the users (archive.web.users, on SIGHUP). Sessions of
// users no longer listed, or whose password hash changed, end at once:
// removing a user, or changing a password, locks them out without a
// restart.
func (s *Server) SetUsers(users map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users = users
	for tok, sess := range s.sessions {
		if h, ok := users[sess.user]; !ok || h != sess.hash {
			delete(s.sessions, tok)
		}
	}
}

// New returns the web page for store. users maps user names to bcrypt
// hashes; release is called for the release button; log gets one line for
// every login, release and delete.
func New(store *archive.Store, users map[string]string, release ReleaseFunc, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		store:    store,
		users:    users,
		release:  release,
		log:      log,
		sessions: map[string]*session{},
		mux:      http.NewServeMux(),
	}
	s.headers.m = map[string]headerInfo{}
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.auth(s.logout))
	s.mux.HandleFunc("GET /{$}", s.auth(s.list))
	s.mux.HandleFunc("GET /message/{id}", s.auth(s.view))
	s.mux.HandleFunc("POST /message/{id}/release", s.auth(s.releaseMsg))
	s.mux.HandleFunc("POST /message/{id}/delete", s.auth(s.deleteMsg))
	return s
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	s.mux.ServeHTTP(w, r)
}

// ---- sessions and login ----

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     path,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}

// current returns the session r belongs to, or nil.
func (s *Server) current(r *http.Request) (string, *session) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[c.Value]
	if sess == nil {
		return "", nil
	}
	if now.After(sess.expires) || now.Sub(sess.created) > sessionMaxAge {
		delete(s.sessions, c.Value)
		return "", nil
	}
	sess.expires = now.Add(SessionTTL)
	return c.Value, sess
}

// auth lets only logged-in users through, and on POST only with the
// session's CSRF token.
func (s *Server) auth(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, sess := s.current(r)
		if sess == nil {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				http.Error(w, "Forbidden: not logged in", http.StatusForbidden)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				http.Error(w, "Bad request", http.StatusBadRequest)
				return
			}
			if !sameOrigin(r) || !tokenEqual(r.PostForm.Get("csrf"), sess.csrf) {
				s.log.Warn("archive web: CSRF check failed", slog.String("user", sess.user), slog.String("path", r.URL.Path), slog.String("remote", remoteIP(r)))
				http.Error(w, "Forbidden: bad or missing CSRF token; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		h(w, r, sess)
	}
}

func tokenEqual(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin rejects POSTs that a browser says come from another site:
// Sec-Fetch-Site (sent by every current browser) must be same-origin, and
// an Origin header, if it names a site, must name this one. With our
// Referrer-Policy no-referrer, browsers send "Origin: null" on form posts,
// so that proves nothing either way. Requests with neither header (curl)
// are left to the token check, which every POST must pass anyway.
func sameOrigin(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// safeNext keeps the redirect after login on this site: a path of ours,
// which never holds a raw space, control character or backslash, since
// browsers drop tabs and newlines and read '\\' as '/' ("/\t/evil.test"
// would become "//evil.test", another site).
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c <= ' ' || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}

type loginData struct {
	Title string
	CSRF  string
	Next  string
	// Name refills the form after a failed login. Not User, which the
	// layout shows as the one logged in, with a Log out button: on the
	// login page, nobody is.
	Name  string
	User  string
	Error string
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, sess := s.current(r); sess != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, "", "")
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, code int, user, msg string) {
	tok := randomToken()
	s.setCookie(w, r, loginCookie, tok, "/login", 3600)
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostForm.Get("next")
	}
	s.render(w, code, "login.html", loginData{Title: "Log in", CSRF: tok, Next: safeNext(next), Name: user, Error: msg})
}

// dummyHash is compared against for unknown users, so that a login takes
// as long whether or not the user exists.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("no such user"), bcrypt.DefaultCost)

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Bad request", http.StatusBadRequest)
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || !tokenEqual(r.PostForm.Get("csrf"), c.Value) {
		http.Error(w, "Forbidden: bad or missing CSRF token; reload the login page and try again", http.StatusForbidden)
		return
	}
	user, pass := r.PostForm.Get("user"), r.PostForm.Get("password")
	ip := remoteIP(r)
	wait, logIt, done := s.logins.begin(s.now(), ip, user)
	if wait > 0 {
		mins := int((wait + time.Minute - 1) / time.Minute)
		if logIt { // at most once a minute per address: refusals cost nothing to send
			s.log.Warn("archive web: login refused: too many failed logins", slog.String("user", clean(user, 200)), slog.String("remote", ip), slog.Duration("wait", wait))
		}
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		s.renderLogin(w, r, http.StatusTooManyRequests, user, fmt.Sprintf("Too many failed logins; try again in %d minute(s).", mins))
		return
	}
	ok := false
	defer func() { done(ok) }()
	s.mu.Lock()
	hash, known := s.users[user]
	s.mu.Unlock()
	if !known {
		hash = string(dummyHash)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) != nil || !known {
		s.log.Warn("archive web: login failed", slog.String("user", clean(user, 200)), slog.String("remote", ip))
		s.renderLogin(w, r, http.StatusUnauthorized, user, "Wrong user name or password.")
		return
	}
	tok := randomToken()
	now := s.now()
	s.mu.Lock()
	if s.users[user] != hash {
		// SetUsers ran while bcrypt did: the user was removed, or the
		// password changed. No session from what is no longer true.
		s.mu.Unlock()
		s.renderLogin(w, r, http.StatusUnauthorized, user, "Wrong user name or password.")
		return
	}
	ok = true
	if len(s.sessions) >= maxSessions {
		s.pruneLocked(now)
	}
	s.sessions[tok] = &session{user: user, hash: hash, csrf: randomToken(), created: now, expires: now.Add(SessionTTL)}
	s.mu.Unlock()
	s.setCookie(w, r, sessionCookie, tok, "/", 0)
	s.setCookie(w, r, loginCookie, "", "/login", -1)
	s.log.Info("archive web: login", slog.String("user", user), slog.String("remote", remoteIP(r)))
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

// pruneLocked drops expired sessions and, if still full, the oldest.
func (s *Server) pruneLocked(now time.Time) {
	var oldestTok string
	var oldest time.Time
	for tok, sess := range s.sessions {
		if now.After(sess.expires) || now.Sub(sess.created) > sessionMaxAge {
			delete(s.sessions, tok)
			continue
		}
		if oldestTok == "" || sess.created.Before(oldest) {
			oldestTok, oldest = tok, sess.created
		}
	}
	if len(s.sessions) >= maxSessions {
		delete(s.sessions, oldestTok)
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	if tok, _ := s.current(r); tok != "" {
		s.mu.Lock()
		delete(s.sessions, tok)
		s.mu.Unlock()
	}
	s.setCookie(w, r, sessionCookie, "", "/", -1)
	s.log.Info("archive web: logout", slog.String("user", sess.user))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// ---- release and delete ----

func (s *Server) releaseMsg(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	if err := archive.ValidateID(id); err != nil {
		http.Error(w, "Bad request: invalid message ID", http.StatusBadRequest)
		return
	}
	back := messageBack(id, r.PostForm.Get("list"))
	to := strings.TrimSpace(r.PostForm.Get("to"))
	if to != "" && !plausibleAddress(to) {
		s.renderError(w, sess, http.StatusBadRequest, "Not an email address: "+to, back)
		return
	}
	log := s.log.With(slog.String("user", sess.user), slog.String("archive_id", id), slog.String("remote", remoteIP(r)))
	if to != "" {
		log = log.With(slog.String("to", to))
	}
	if s.release == nil {
		log.Error("archive web: release failed", slog.String("err", "release is not configured"))
		s.renderError(w, sess, http.StatusInternalServerError, "Release is not configured on this gateway.", back)
		return
	}
	if err := s.release(r.Context(), id, to, sess.user); err != nil {
		// Most release failures are the downstream's refusal or absence.
		s.actionFailed(w, sess, log, "Release", id, http.StatusBadGateway, err, back)
		return
	}
	log.Info("archive web: released")
	http.Redirect(w, r, doneURL("released", id, sess, keepPlace(r.PostForm.Get("list"))), http.StatusSeeOther)
}

func (s *Server) deleteMsg(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	if err := archive.ValidateID(id); err != nil {
		http.Error(w, "Bad request: invalid message ID", http.StatusBadRequest)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		// Deleting cannot be undone, and the page runs no script to
		// ask "are you sure": the form's box must be ticked (the
		// browser insists too, as the box is required).
		s.renderError(w, sess, http.StatusBadRequest, "Not deleted: tick “for good” next to the Delete button to confirm.", messageBack(id, r.PostFormValue("list")))
		return
	}
	log := s.log.With(slog.String("user", sess.user), slog.String("archive_id", id), slog.String("remote", remoteIP(r)))
	if err := s.store.Delete(id); err != nil {
		s.actionFailed(w, sess, log, "Delete", id, http.StatusInternalServerError, err, messageBack(id, r.PostFormValue("list")))
		return
	}
	log.Info("archive web: deleted")
	http.Redirect(w, r, doneURL("deleted", id, sess, keepPlace(r.PostFormValue("list"))), http.StatusSeeOther)
}

// doneURL is the list page (list, a query from keepPlace) saying that done (released, deleted) happened
// to message id, signed with the session's secret: the page shows the id
// only when the signature holds, so that a link someone else made cannot
// put a text of theirs ("Message … released. Call the help desk at …")
// in the page's status line.
func doneURL(done, id string, sess *session, list string) string {
	u := "/?"
	if list != "" {
		u += list + "&" // the list page the view was opened from
	}
	return u + "done=" + done + "&id=" + url.QueryEscape(id) + "&sig=" + doneSig(done, id, sess)
}

func doneSig(done, id string, sess *session) string {
	m := hmac.New(sha256.New, []byte(sess.csrf))
	m.Write([]byte(done + "\x00" + id))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// actionFailed logs a failed action on a message and shows the error page:
// 404 when the message is gone (another admin, or expiry, got there first),
// and its way back leads to the list, 409 when another release or delete
// of it is under way, else code.
func (s *Server) actionFailed(w http.ResponseWriter, sess *session, log *slog.Logger, action, id string, code int, err error, back backLink) {
	log.Error("archive web: "+strings.ToLower(action)+" failed", slog.Any("err", err))
	var st interface{ HTTPStatus() int }
	msg := err.Error()
	switch {
	case errors.Is(err, fs.ErrNotExist) && s.gone(id):
		// Only the message's own file: a downstream's missing socket
		// or maildir is "not found" too, with the message still here.
		code = http.StatusNotFound
		back = backLink{URL: back.list, Text: "Back to the list"}
		// The error names a path on the gateway, which tells the admin
		// nothing they can act on here.
		msg = "no such message in the archive (released or deleted meanwhile?)"
		if st, serr := os.Stat(s.store.ReleasedFile(id)); serr == nil && st.Mode().IsRegular() {
			msg = "the message was released: its file is in the archive's " + archive.ReleasedDir + "/ folder, which this page does not show (sclgate archive release " + id + " -force sends it again)"
		}
	case errors.Is(err, archive.ErrBusy):
		code = http.StatusConflict
	case errors.As(err, &st):
		code = st.HTTPStatus() // a local refusal, not the downstream's
	}
	s.renderError(w, sess, code, action+" failed: "+msg, back)
}

// gone reports whether the message id is no longer in the archive.
func (s *Server) gone(id string) bool {
	_, err := s.store.Get(id)
	return errors.Is(err, fs.ErrNotExist)
}

// backLink is where an error page leads back to.
type backLink struct {
	URL, Text string
	list      string // the list the message was opened from, should it be gone
}

// messageBack leads back to message id as it was opened from the list
// page list (its view's "list" parameter, made safe by keepPlace).
func messageBack(id, list string) backLink {
	l := keepPlace(list)
	u := "/message/" + url.PathEscape(id)
	if l != "" {
		u += "?list=" + url.QueryEscape(l)
	}
	return backLink{URL: u, Text: "Back to the message", list: listURL(l)}
}

// plausibleAddress accepts local@domain without spaces, brackets or
// control characters; UTF-8 is taken (the release asks the downstream
// for SMTPUTF8), and the downstream has the final say.
func plausibleAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 || !utf8.ValidString(a) {
		return false
	}
	for _, c := range a {
		if c <= ' ' || c == 0x7f || c == utf8.RuneError || unicode.IsSpace(c) || invisible(c) || strings.ContainsRune("<>(),;:\\\"[]", c) {
			return false
		}
	}
	return true
}

// invisible says whether c is a control or format character (a
// bidirectional override, a soft hyphen, a zero-width space), which the
// gateway refuses in addresses, save the zero-width joiner and non-joiner
// (see proxy.AddressRune).
func invisible(c rune) bool {
	return unicode.In(c, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) && c != 0x200c && c != 0x200d
}

// ---- rendering ----

type page struct {
	Title string
	User  string
	CSRF  string
}

type errorData struct {
	page
	Message string
	Back    backLink
}

// renderError shows msg on the error page, whose link leads back to
// back, or to the archive's first page.
func (s *Server) renderError(w http.ResponseWriter, sess *session, code int, msg string, back ...backLink) {
	d := errorData{page: page{Title: "Error", User: sess.user, CSRF: sess.csrf}, Message: msg, Back: backLink{URL: "/", Text: "Back to the archive"}}
	if len(back) > 0 {
		d.Back = back[0]
	}
	s.render(w, code, "error.html", d)
}

func (s *Server) render(w http.ResponseWriter, code int, name string, data any) {
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		s.log.Error("archive web: template", slog.String("template", name), slog.Any("err", err))
		http.Error(w, "Internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}
