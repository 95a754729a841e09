package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/html"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/internal/syncbuf"
	"github.com/sclgate/sclgate/scorer"
)

const (
	testUser = "admin"
	testPass = "correct horse battery staple"
)

// testUsers returns archive.web.users with one user, hashed cheaply.
func testUsers(t testing.TB) map[string]string {
	h, err := bcrypt.GenerateFromPassword([]byte(testPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{testUser: string(h)}
}

// logBuffer collects JSON log lines safely across goroutines.
type logBuffer struct{ syncbuf.Buffer }

// records returns the log records whose msg is msg.
func (l *logBuffer) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

type testMsg struct {
	from string
	to   []string
	scl  int
	age  time.Duration
	raw  string
	// report is the gateway's X-SCL-Report stored with it (WriteReport).
	report string
}

const (
	hostileSubject = `<script>window.pwned=1</script> Hostile "quotes" & ampersands`
	hostileText    = `Click <a href="javascript:window.pwned=3">here</a> <img src=x onerror="window.pwned=2"> <script>window.pwned=1</script></pre><script>window.pwned=4</script>`
)

func hostileMessage() string {
	return "From: \"<script>window.pwned=5</script>\" <evil@spam.example>\r\n" +
		"To: victim@example.org\r\n" +
		"Subject: " + hostileSubject + "\r\n" +
		"X-SCL-Report: scl=9 <b>bold</b>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=XX\r\n\r\n" +
		"--XX\r\nContent-Type: text/plain\r\n\r\n" + hostileText + "\r\n" +
		"--XX\r\nContent-Type: text/html\r\n\r\n<html><body><script>window.pwned=6</script>" +
		"<iframe src=\"javascript:parent.pwned=7\"></iframe><a href=\"javascript:alert(1)\">js link</a> HTML part text</body></html>\r\n" +
		"--XX--\r\n"
}

func plainMessage(subject, body string) string {
	return "From: Someone <someone@sender.example>\r\nTo: user@example.org\r\nSubject: " + subject +
		"\r\nDate: Mon, 23 Nov 2026 05:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\n" + body + "\r\n"
}

// fixture is an archive with ordinary and hostile messages.
type fixture struct {
	store                                     *archive.Store
	invoice, newsletter, hostile, big, broken string
}

func newFixture(t testing.TB) *fixture {
	dir := t.TempDir()
	now := time.Now()
	var at time.Time
	store, err := archive.Open(dir, archive.Options{StoreSCL: true, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	write := func(m testMsg) string {
		at = now.Add(-m.age)
		id, err := store.WriteReport(archive.Envelope{From: m.from, To: m.to}, m.scl, m.report, strings.NewReader(m.raw))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	f := &fixture{store: store}
	// Some volume over the last days, for the chart.
	for i := range 40 {
		write(testMsg{from: "bulk@news.example", to: []string{"user@example.org"}, scl: 5 + i%5, age: time.Duration(i%20)*24*time.Hour + time.Hour,
			raw: plainMessage("Bulk offer number "+string(rune('A'+i%26)), "Buy now.")})
	}
	f.newsletter = write(testMsg{from: "news@shop.example", to: []string{"user@example.org"}, scl: 3, age: 30 * time.Minute,
		raw: plainMessage("Weekly newsletter", "Our weekly news.")})
	f.invoice = write(testMsg{from: "billing@supplier.example", to: []string{"accounts@example.org", "boss@example.org"}, scl: 8, age: 20 * time.Minute,
		raw: plainMessage("Invoice 2026-117 for November", "Dear customer,\r\nplease find your invoice attached.\r\n")})
	f.hostile = write(testMsg{from: "evil@spam.example", to: []string{"victim@example.org"}, scl: 9, age: 10 * time.Minute, raw: hostileMessage(),
		report: `scl=9 classifier=none; rules: BODY MAX "<script>window.pwned=5</script>"`})
	f.big = write(testMsg{from: "big@spam.example", to: []string{"user@example.org"}, scl: 9, age: 5 * time.Minute,
		raw: plainMessage("Ten megabytes", strings.Repeat("A very long line of spam text that goes on. ", 10<<20/44))})
	f.broken = write(testMsg{from: "broken@spam.example", to: []string{"user@example.org"}, scl: 7, age: 2 * time.Minute,
		raw: "Subject: =?utf-8?B?broken?=\r\nContent-Type: multipart/mixed; boundary=\"B\r\nContent-Transfer-Encoding: base64\r\n" +
			"Bad header line without colon\r\n\r\n--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64\x00\x01\r\n--B\r\n--B"})
	// A file that is not an archived message at all: List skips it.
	if err := os.WriteFile(filepath.Join(dir, "garbage.eml"), []byte("\x00\x01 not a head\r\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	return f
}

// client is a browser-like client: a cookie jar and no redirect following.
type client struct {
	t    testing.TB
	base string
	c    *http.Client
	csrf string
}

func newClient(t testing.TB, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(req *http.Request) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := csrfRE.FindStringSubmatch(string(body)); m != nil {
		c.csrf = m[1]
	}
	return resp, string(body)
}

func (c *client) get(path string) (*http.Response, string) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.base+path, nil)
	return c.do(req)
}

func (c *client) post(path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) login(user, pass string) *http.Response {
	c.t.Helper()
	c.get("/login")
	resp, _ := c.post("/login", url.Values{"csrf": {c.csrf}, "user": {user}, "password": {pass}, "next": {"/"}})
	return resp
}

type releaseCall struct{ id, to, user string }

type testServer struct {
	*fixture
	srv      *Server
	ts       *httptest.Server
	logs     *logBuffer
	mu       sync.Mutex
	released []releaseCall
}

func newTestServer(t *testing.T) *testServer {
	f := newFixture(t)
	s := &testServer{fixture: f, logs: &logBuffer{}}
	release := func(ctx context.Context, id, to, user string) error {
		s.mu.Lock()
		s.released = append(s.released, releaseCall{id, to, user})
		s.mu.Unlock()
		return f.store.Move(id, "released")
	}
	s.srv = New(f.store, testUsers(t), release, slog.New(slog.NewJSONHandler(s.logs, nil)))
	s.ts = httptest.NewServer(s.srv)
	t.Cleanup(s.ts.Close)
	return s
}

func TestLoginRequired(t *testing.T) {
	s := newTestServer(t)
	c := newClient(t, s.ts.URL)
	for _, path := range []string{"/", "/message/" + s.invoice, "/?scl=5"} {
		resp, _ := c.get(path)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Errorf("GET %s without login: %d %q, want 303 to /login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// POSTs without a session are refused outright, and do nothing.
	for _, path := range []string{"/message/" + s.invoice + "/release", "/message/" + s.invoice + "/delete"} {
		resp, _ := c.post(path, url.Values{"csrf": {"x"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without login: %d, want 403", path, resp.StatusCode)
		}
	}
	if _, err := s.store.Get(s.invoice); err != nil {
		t.Errorf("message gone after unauthenticated POSTs: %v", err)
	}
	// A made-up session cookie is no session.
	u, _ := url.Parse(s.ts.URL)
	c.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "forged"}})
	if resp, _ := c.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("forged session: %d, want 303", resp.StatusCode)
	}
}

func TestLogin(t *testing.T) {
	s := newTestServer(t)
	c := newClient(t, s.ts.URL)
	if resp := c.login(testUser, "wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bad password: %d, want 401", resp.StatusCode)
	}
	if resp := c.login("nobody", testPass); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unknown user: %d, want 401", resp.StatusCode)
	}
	if resp, _ := c.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after failed logins: GET / %d, want 303", resp.StatusCode)
	}
	if n := len(s.logs.records("archive web: login failed")); n != 2 {
		t.Errorf("%d failed logins logged, want 2", n)
	}
	// The failed login's page refills the name, but shows nobody logged
	// in: no name in the header, no Log out button.
	c.get("/login")
	fresp, fbody := c.post("/login", url.Values{"csrf": {c.csrf}, "user": {"mallory"}, "password": {"nope"}, "next": {"/"}})
	if fresp.StatusCode != http.StatusUnauthorized || !strings.Contains(fbody, `value="mallory"`) || strings.Contains(fbody, `class="user"`) || strings.Contains(fbody, "Log out") {
		t.Errorf("failed login page: %d, shows the typed name as logged in:\n%s", fresp.StatusCode, fbody)
	}
	// Login without the login form's CSRF token is refused.
	resp, _ := c.post("/login", url.Values{"user": {testUser}, "password": {testPass}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("login without CSRF token: %d, want 403", resp.StatusCode)
	}
	resp = c.login(testUser, testPass)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("good login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || len(sc.Value) < 43 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, 32 random bytes", sc)
	}
	resp, body := c.get("/")
	if resp.StatusCode != 200 || !strings.Contains(body, "Invoice 2026-117") {
		t.Fatalf("list after login: %d", resp.StatusCode)
	}
	h := resp.Header
	if h.Get("Content-Security-Policy") != ContentSecurityPolicy || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("security headers missing: %v", h)
	}
	if strings.Contains(strings.ToLower(body), "<script") {
		t.Errorf("page has a script element")
	}
	// A logged-in visit to the login page goes to next, but only on this
	// site: a tab in next ("/\t/evil" is "//evil" to a browser) goes home.
	if resp, _ := c.get("/login?next=%2F%09%2Fevil.example%2F"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("login?next with a tab: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Logging out ends the session.
	resp, _ = c.post("/logout", url.Values{"csrf": {c.csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	if resp, _ := c.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after logout: %d, want 303", resp.StatusCode)
	}
	// Open redirects after login are not followed.
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example",
		"/\t/evil.example/", "/\n/evil.example", "/\r/evil.example", "/ /evil.example", "/\x00/evil.example", "/\x7f/evil.example"} {
		if got := safeNext(next); got != "/" {
			t.Errorf("safeNext(%q) = %q", next, got)
		}
	}
	for _, next := range []string{"/", "/message/20261123T101500Z-abc", "/?scl=9&q=x%20y"} {
		if got := safeNext(next); got != next {
			t.Errorf("safeNext(%q) = %q, want it kept", next, got)
		}
	}

}

func TestSessionExpiry(t *testing.T) {
	s := newTestServer(t)
	now := time.Now()
	s.srv.Now = func() time.Time { return now }
	c := newClient(t, s.ts.URL)
	c.login(testUser, testPass)
	if resp, _ := c.get("/"); resp.StatusCode != 200 {
		t.Fatalf("GET / %d", resp.StatusCode)
	}
	now = now.Add(SessionTTL + time.Minute)
	if resp, _ := c.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("expired session: %d, want 303", resp.StatusCode)
	}
}

func TestCSRF(t *testing.T) {
	s := newTestServer(t)
	c := newClient(t, s.ts.URL)
	c.login(testUser, testPass)
	c.get("/message/" + s.invoice)
	good := c.csrf
	other := newClient(t, s.ts.URL)
	other.login(testUser, testPass)
	other.get("/")
	for name, form := range map[string]url.Values{
		"missing":           {},
		"empty":             {"csrf": {""}},
		"wrong":             {"csrf": {"AAAA" + good[4:]}},
		"another session's": {"csrf": {other.csrf}},
	} {
		for _, action := range []string{"release", "delete"} {
			resp, _ := c.post("/message/"+s.invoice+"/"+action, form)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s with %s token: %d, want 403", action, name, resp.StatusCode)
			}
		}
	}
	// A cross-site POST with the right token is refused on Origin too.
	req, _ := http.NewRequest("POST", s.ts.URL+"/message/"+s.invoice+"/delete", strings.NewReader(url.Values{"csrf": {good}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp, _ := c.do(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin POST: %d, want 403", resp.StatusCode)
	}
	req, _ = http.NewRequest("POST", s.ts.URL+"/message/"+s.invoice+"/delete", strings.NewReader(url.Values{"csrf": {good}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, _ := c.do(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
	}
	if len(s.released) != 0 {
		t.Errorf("release called: %v", s.released)
	}
	if _, err := s.store.Get(s.invoice); err != nil {
		t.Errorf("message gone: %v", err)
	}
}

func TestReleaseAndDelete(t *testing.T) {
	s := newTestServer(t)
	c := newClient(t, s.ts.URL)
	c.login(testUser, testPass)
	c.get("/message/" + s.invoice)

	resp, _ := c.post("/message/"+s.invoice+"/release", url.Values{"csrf": {c.csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("release: %d", resp.StatusCode)
	}
	if len(s.released) != 1 || s.released[0] != (releaseCall{s.invoice, "", testUser}) {
		t.Errorf("release calls %v", s.released)
	}
	if _, err := s.store.Get(s.invoice); err == nil {
		t.Errorf("released message still in the archive")
	}
	_, body := c.get(resp.Header.Get("Location"))
	if !strings.Contains(body, "released") || strings.Contains(body, "Invoice 2026-117") || !strings.Contains(body, "<code>"+s.invoice+"</code> released") {
		t.Errorf("list after release does not say released or still lists the message")
	}
	// A link made by someone else cannot put a text of theirs there.
	_, body = c.get("/?done=released&id=" + url.QueryEscape("for carol. Call the help desk at +1-555-0100"))
	if strings.Contains(body, "help desk") || !strings.Contains(body, "Message released.") {
		t.Errorf("a made-up status text is shown:\n%s", body)
	}
	recs := s.logs.records("archive web: released")
	if len(recs) != 1 || recs[0]["user"] != testUser || recs[0]["archive_id"] != s.invoice {
		t.Errorf("release log: %v", recs)
	}

	// Release to another address, in UTF-8 here: the release asks the
	// downstream for SMTPUTF8.
	resp, _ = c.post("/message/"+s.newsletter+"/release", url.Values{"csrf": {c.csrf}, "to": {"jörg@bücher.example"}})
	if resp.StatusCode != http.StatusSeeOther || s.released[1].to != "jörg@bücher.example" {
		t.Errorf("release to: %d %v", resp.StatusCode, s.released)
	}
	if resp, _ := c.post("/message/"+s.broken+"/release", url.Values{"csrf": {c.csrf}, "to": {"a@b>\r\nRCPT TO:<x@y"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("release to a bad address: %d, want 400", resp.StatusCode)
	}

	// Not without the box ticked: deleting cannot be undone.
	resp, body = c.post("/message/"+s.hostile+"/delete", url.Values{"csrf": {c.csrf}, "list": {"scl=5&page=2"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Not deleted: tick") {
		t.Errorf("delete unconfirmed: %d", resp.StatusCode)
	}
	// Its page leads back to the message, opened from the same list.
	if want := `<a href="/message/` + s.hostile + `?list=page%3d2%26scl%3d5" id="back">Back to the message</a>`; !strings.Contains(strings.ToLower(body), strings.ToLower(want)) {
		t.Errorf("unconfirmed delete: no way back to the message (%s):\n%s", want, body)
	}
	if _, err := s.store.Get(s.hostile); err != nil {
		t.Fatalf("deleted unconfirmed: %v", err)
	}
	resp, _ = c.post("/message/"+s.hostile+"/delete", url.Values{"csrf": {c.csrf}, "confirm": {"yes"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, err := s.store.Get(s.hostile); err == nil {
		t.Errorf("deleted message still there")
	}
	recs = s.logs.records("archive web: deleted")
	if len(recs) != 1 || recs[0]["user"] != testUser || recs[0]["archive_id"] != s.hostile {
		t.Errorf("delete log: %v", recs)
	}
	// Deleting it again: 404, logged as failed, with no path of the
	// gateway's in the page.
	resp, body = c.post("/message/"+s.hostile+"/delete", url.Values{"csrf": {c.csrf}, "confirm": {"yes"}})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `<a href="/" id="back">Back to the list</a>`) ||
		!strings.Contains(body, "no such message in the archive (released or deleted meanwhile?)") || strings.Contains(body, s.store.Dir()) {
		t.Errorf("second delete: %d, want 404 and a way back to the list:\n%s", resp.StatusCode, body)
	}
	// Deleting the message released above says where it went.
	resp, body = c.post("/message/"+s.invoice+"/delete", url.Values{"csrf": {c.csrf}, "confirm": {"yes"}})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "the message was released: its file is in the archive&#39;s released/ folder") ||
		!strings.Contains(body, "sclgate archive release "+s.invoice+" -force") || strings.Contains(body, s.store.Dir()) {
		t.Errorf("delete of a released message: %d\n%s", resp.StatusCode, body)
	}
	// IDs that reach outside the directory are refused.
	for _, id := range []string{"..%2Fx", ".hidden", "%00"} {
		if resp, _ := c.post("/message/"+id+"/delete", url.Values{"csrf": {c.csrf}, "confirm": {"yes"}}); resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusNotFound {
			t.Errorf("delete %s: %d", id, resp.StatusCode)
		}
	}
	// A failing release is reported, and the message stays.
	s.srv.release = func(context.Context, string, string, string) error { return errors.New("downstream said 451") }
	resp, body = c.post("/message/"+s.broken+"/release", url.Values{"csrf": {c.csrf}})
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "downstream said 451") || !strings.Contains(body, `<a href="/message/`+s.broken+`" id="back">Back to the message</a>`) {
		t.Errorf("failed release: %d\n%s", resp.StatusCode, body)
	}
	if recs := s.logs.records("archive web: release failed"); len(recs) != 1 || recs[0]["user"] != testUser {
		t.Errorf("failed release log: %v", recs)
	}
	// A release failing on a file that is not there (a downstream's
	// unix socket, with Dovecot stopped) is no missing message.
	s.srv.release = func(context.Context, string, string, string) error {
		return fmt.Errorf("downstream connect: %w", &fs.PathError{Op: "dial", Path: "/run/dovecot/lmtp", Err: fs.ErrNotExist})
	}
	resp, body = c.post("/message/"+s.broken+"/release", url.Values{"csrf": {c.csrf}})
	if resp.StatusCode == http.StatusNotFound || strings.Contains(body, "no such message") || !strings.Contains(body, "/run/dovecot/lmtp") {
		t.Errorf("release failing on a missing socket: %d\n%s", resp.StatusCode, body)
	}
	// A message an earlier release may have delivered says so on its
	// page, before anyone presses Release.
	if err := s.store.MarkUnanswered(s.broken, "at then to bob@example.com: the whole message was sent and no answer came"); err != nil {
		t.Fatal(err)
	}
	if _, body := c.get("/message/" + s.broken); !strings.Contains(body, `id="maybe">Maybe: a release at then to bob@example.com: the whole message was sent and no answer came.`) {
		t.Errorf("the message page does not show the earlier release:\n%s", body)
	}
	s.store.ClearUnanswered(s.broken)
	if _, body := c.get("/message/" + s.broken); strings.Contains(body, `id="maybe"`) {
		t.Errorf("the message page shows a mark that is gone")
	}
}

func TestFilters(t *testing.T) {
	s := newTestServer(t)
	c := newClient(t, s.ts.URL)
	c.login(testUser, testPass)
	count := func(body string) int { return strings.Count(body, `<td><a href="/message/`) }
	_, all := c.get("/")
	if n := count(all); n != 45 { // (45 fit on one page, as 500 do)
		t.Errorf("unfiltered: %d rows, want 45", n)
	}
	if !strings.Contains(all, "1 file(s) in the archive directory could not be read") {
		t.Errorf("skipped file not reported")
	}
	for _, tc := range []struct {
		query string
		want  int
		has   string
	}{
		{"scl=8", 2 + 8 + 8 + 1, ""}, // invoice, hostile, big + bulk SCL 8 and 9
		{"scl=8&subject=invoice", 1, "Invoice 2026-117"},
		{"from=SUPPLIER", 1, "billing@supplier.example"},
		{"to=boss@", 1, "Invoice"},
		{"subject=newsletter&scl=4", 0, "No archived message matches"},
		{"since=" + time.Now().UTC().AddDate(0, 0, -1).Format(dateLayout), -1, ""},
		{"until=2000-01-01", 0, ""},
		{"scl=banana", 45, "SCL must be a number"},
		{"scl=-2", 45, "SCL must be a number from -1 to 9"},
		{"scl=-1", -1, ""},
		{"until=garbage", 45, "“Until” must be a date"},
		{"since=2026-13-45", 45, "“Since” must be a date"},
	} {
		_, body := c.get("/?" + tc.query)
		if n := count(body); tc.want >= 0 && n != tc.want {
			t.Errorf("%s: %d rows, want %d", tc.query, n, tc.want)
		}
		if tc.has != "" && !strings.Contains(body, tc.has) {
			t.Errorf("%s: page lacks %q", tc.query, tc.has)
		}
	}
}

func TestHostileMessages(t *testing.T) {
	s := newTestServer(t)
	c := newClient(t, s.ts.URL)
	c.login(testUser, testPass)

	start := time.Now()
	resp, list := c.get("/")
	if resp.StatusCode != 200 {
		t.Fatalf("list: %d", resp.StatusCode)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("list took %v", d)
	}
	if len(list) > 2<<20 {
		t.Errorf("list page is %d bytes", len(list))
	}
	for _, want := range []string{"Ten megabytes", "&lt;script&gt;window.pwned=1&lt;/script&gt; Hostile &#34;quotes&#34; &amp; ampersands", "broken@spam.example", "</table>"} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(list), "<script") {
		t.Errorf("list has a script element")
	}

	resp, view := c.get("/message/" + s.hostile)
	if resp.StatusCode != 200 {
		t.Fatalf("hostile view: %d", resp.StatusCode)
	}
	checkInert(t, "hostile view", view)
	checkInert(t, "list", list)
	for _, want := range []string{
		"&lt;script&gt;window.pwned=1&lt;/script&gt;",
		"&lt;a href=&#34;javascript:window.pwned=3&#34;&gt;",
		"&lt;img src=x onerror=&#34;window.pwned=2&#34;&gt;",
		"&lt;/pre&gt;&lt;script&gt;window.pwned=4",
		"HTML part text",
		"this gateway did not write it (it archives mail unstamped, keeping its own report apart), so its sender or an earlier hop did: <code>scl=9 &lt;b&gt;bold&lt;/b&gt;",
		// The gateway's own report, kept in the archive head: a rule's
		// text is the sender's to match, and shown as text.
		"At archiving: <code>scl=9 classifier=none; rules: BODY MAX &#34;&lt;script&gt;window.pwned=5&lt;/script&gt;&#34;</code>",
	} {
		if !strings.Contains(view, want) {
			t.Errorf("hostile view lacks %q", want)
		}
	}

	resp, view = c.get("/message/" + s.big)
	if resp.StatusCode != 200 || !strings.Contains(view, "Text truncated to 256 KB") || len(view) > 1<<20 || !strings.Contains(view, "text/plain, at least 2.0 MB") {
		t.Errorf("big view: %d, %d bytes", resp.StatusCode, len(view))
	}
	resp, view = c.get("/message/" + s.broken)
	if resp.StatusCode != 200 || !strings.Contains(view, "Defects") {
		t.Errorf("broken view: %d", resp.StatusCode)
	}
	for _, id := range []string{"garbage", "no-such-id", ".hidden"} {
		if resp, _ := c.get("/message/" + id); resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("view %s: %d", id, resp.StatusCode)
		}
	}
}

// checkInert parses page as a browser would and fails if anything in it
// could run script or load something: script, iframe, object, embed or
// img elements, on* attributes, javascript: URLs.
func checkInert(t *testing.T, name, page string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "iframe", "object", "embed", "img", "frame", "base", "meta":
				if n.Data != "meta" || attr(n, "http-equiv") != "" {
					t.Errorf("%s: has a <%s> element", name, n.Data)
				}
			}
			for _, a := range n.Attr {
				v := strings.ToLower(strings.TrimSpace(a.Val))
				if strings.HasPrefix(strings.ToLower(a.Key), "on") || strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "data:text/html") {
					t.Errorf("%s: <%s %s=%q>", name, n.Data, a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func TestClean(t *testing.T) {
	if got := clean("a\u202eb\x00c\td", 10); got != "abc d" {
		t.Errorf("clean = %q", got)
	}
	if got := clean(strings.Repeat("x", 20), 5); got != "xxxxx…" {
		t.Errorf("clean = %q", got)
	}
}

// Files from elsewhere (IMF's names, or copied in) may have '?' or '#' in
// their names: the page's links and forms escape them, so such messages
// can be viewed and deleted like any other.
func TestOddFileNames(t *testing.T) {
	s := newTestServer(t)
	dir := s.store.Dir()
	for _, name := range []string{"a?b", "c#d", "e%20f"} {
		msg := "X-Sender: <x@spam.example>\r\nX-Receiver: <user@example.org>\r\nX-SCL: 8\r\nSubject: odd " + name + "\r\n\r\nbody\r\n"
		if err := os.WriteFile(filepath.Join(dir, name+".eml"), []byte(msg), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, s.ts.URL)
	c.login(testUser, testPass)
	_, list := c.get("/")
	for _, name := range []string{"a?b", "c#d", "e%20f"} {
		href := "/message/" + url.PathEscape(name)
		if !strings.Contains(list, `href="`+href+`"`) {
			t.Errorf("list has no link %q for %q", href, name)
			continue
		}
		resp, view := c.get(href)
		if resp.StatusCode != 200 || !strings.Contains(view, "odd "+name) || !strings.Contains(view, `action="`+href+`/delete"`) {
			t.Errorf("view of %q: %d", name, resp.StatusCode)
			continue
		}
		if resp, _ := c.post(href+"/delete", url.Values{"csrf": {c.csrf}, "confirm": {"yes"}}); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("delete %q: %d", name, resp.StatusCode)
		}
		if _, err := os.Stat(filepath.Join(dir, name+".eml")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%q not deleted: %v", name, err)
		}
	}
}

// SetUsers (SIGHUP) applies at once: a removed user's session ends and
// they can no longer log in, a changed password ends the sessions opened
// with the old one, and a new user can log in.
func TestSetUsers(t *testing.T) {
	s := newTestServer(t)
	users := testUsers(t)
	s.srv.SetUsers(users)
	admin := newClient(t, s.ts.URL)
	admin.login(testUser, testPass)
	other := newClient(t, s.ts.URL)
	h, _ := bcrypt.GenerateFromPassword([]byte("other pass"), bcrypt.MinCost)
	users = maps.Clone(users)
	users["other"] = string(h)
	s.srv.SetUsers(users)
	if resp := other.login("other", "other pass"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("new user's login: %d", resp.StatusCode)
	}
	if resp, _ := admin.get("/"); resp.StatusCode != 200 {
		t.Errorf("unchanged user's session ended: %d", resp.StatusCode)
	}
	// other removed, admin's password changed.
	h2, _ := bcrypt.GenerateFromPassword([]byte("new pass"), bcrypt.MinCost)
	s.srv.SetUsers(map[string]string{testUser: string(h2)})
	for name, c := range map[string]*client{"removed user": other, "changed password": admin} {
		if resp, _ := c.get("/"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%s: session still works: %d", name, resp.StatusCode)
		}
	}
	if resp := newClient(t, s.ts.URL).login("other", "other pass"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("removed user's login: %d", resp.StatusCode)
	}
	if resp := newClient(t, s.ts.URL).login(testUser, "new pass"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("new password's login: %d", resp.StatusCode)
	}
}

// The list shows a subject as the message view and "sclgate archive list"
// do (scorer.Parse's decoding), raw 8-bit text included.
func TestListSubjectDecodedAsParse(t *testing.T) {
	for _, raw := range []string{
		"Subject: Caf\xe9 cr\xe8me\r\nFrom: a@b\r\n\r\nx\r\n",
		"Subject: =?utf-8?q?Casino_n=C3=A4ight?=\r\n\r\nx\r\n",
		"From: a@b\r\nSubject: folded\r\n  line\r\n\r\nx\r\n",
	} {
		want := scorer.Parse([]byte(raw)).Subject
		if got := readHeaderInfo(strings.NewReader(raw)).Subject; got != clean(want, 200) || want == "" {
			t.Errorf("%q: list subject %q, parse %q", raw, got, want)
		}
	}
}

// An unreadable file in the archive is logged when it appears, not at
// every page load; another one is logged again.
func TestUnreadableFilesLoggedOnce(t *testing.T) {
	s := newTestServer(t)
	c := newClient(t, s.ts.URL)
	c.login(testUser, testPass)
	junk := filepath.Join(s.store.Dir(), "20261123T000000.000000Z-junkjunkjunkjunk.eml")
	os.WriteFile(junk, []byte("X-Sender: <not an address\n"), 0o640)
	for range 3 {
		if resp, _ := c.get("/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("list: %d", resp.StatusCode)
		}
	}
	if n := len(s.logs.records("archive web: unreadable files in the archive")); n != 1 {
		t.Errorf("%d warnings for the same unreadable file over 3 loads, want 1", n)
	}
	os.WriteFile(strings.Replace(junk, "junkjunkjunkjunk", "junkjunkjunkjun2", 1), []byte("X-Sender: <\n"), 0o640)
	c.get("/")
	if n := len(s.logs.records("archive web: unreadable files in the archive")); n != 2 {
		t.Errorf("%d warnings after a second unreadable file, want 2", n)
	}
}

// Failed logins are throttled per address and user name: after
// loginsPerUser failures the right password is not even checked until the
// oldest failure is loginWindow old; other user names from the same
// address have their own count, up to loginsPerIP in all.
func TestLoginThrottled(t *testing.T) {
	s := newTestServer(t)
	now := time.Now()
	s.srv.Now = func() time.Time { return now }
	c := newClient(t, s.ts.URL)
	for i := range loginsPerUser {
		if resp := c.login(testUser, "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, resp.StatusCode)
		}
		now = now.Add(time.Minute)
	}
	resp := c.login(testUser, testPass)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("right password after %d failures: %d (Retry-After %q), want 429", loginsPerUser, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := len(s.logs.records("archive web: login refused: too many failed logins")); n != 1 {
		t.Errorf("%d refusals logged, want 1", n)
	}
	// Another user name from here still gets its own tries.
	if resp := c.login("nobody", "x"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("another user: %d, want 401", resp.StatusCode)
	}
	// Once the oldest failure has left the window, the right password works
	// (and clears the count).
	now = now.Add(loginWindow - loginsPerUser*time.Minute + time.Second)
	if resp := c.login(testUser, testPass); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %d, want 303", resp.StatusCode)
	}
	// Spraying user names: loginsPerIP failures in all lock the address.
	c2 := newClient(t, s.ts.URL)
	for i := range loginsPerIP {
		c2.login(fmt.Sprintf("user%d", i), "x")
	}
	if resp := c2.login("yet-another", "x"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after %d failures from one address: %d, want 429", loginsPerIP, resp.StatusCode)
	}
}

// Parallel attempts cannot all pass the check before the first fails:
// each counts from when it starts.
func TestLoginThrottleParallel(t *testing.T) {
	s := newTestServer(t)
	var wg sync.WaitGroup
	var checked, refused atomic.Int32
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient(t, s.ts.URL)
			switch c.login(testUser, "wrong").StatusCode {
			case http.StatusUnauthorized:
				checked.Add(1)
			case http.StatusTooManyRequests:
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if checked.Load() > loginsPerUser || checked.Load()+refused.Load() != 30 {
		t.Errorf("%d passwords checked, %d refused; want at most %d checked", checked.Load(), refused.Load(), loginsPerUser)
	}
}

// A file name used again (IMF's names are not unique; deleted from the
// command line, then a new file copied in) shows its new subject: the
// list's header cache was keyed by the name alone.
func TestListReadsReusedNameAgain(t *testing.T) {
	s := newTestServer(t)
	p := filepath.Join(s.store.Dir(), "reused-name.eml")
	write := func(subject string, at time.Time) {
		msg := "X-Sender: <x@spam.example>\r\nX-Receiver: <user@example.org>\r\nX-SCL: 8\r\nSubject: " + subject + "\r\n\r\nbody\r\n"
		if err := os.WriteFile(p, []byte(msg), 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, at, at)
	}
	c := newClient(t, s.ts.URL)
	c.login(testUser, testPass)
	write("first subject AAA", time.Now().Add(-time.Hour))
	if _, body := c.get("/?subject=AAA"); !strings.Contains(body, "first subject AAA") {
		t.Fatal("first file not listed")
	}
	os.Remove(p) // as "sclgate archive delete" would, behind the page's back
	write("second subject BBBB", time.Now())
	if _, body := c.get("/?subject=BBBB"); !strings.Contains(body, "second subject BBBB") {
		t.Error("the new file under the same name is not found by its subject")
	}
	if _, body := c.get("/?subject=AAA"); strings.Contains(body, "first subject AAA") {
		t.Error("the old subject is still listed")
	}
}

// The list shows PageSize rows a page, newest first, with links either
// way that keep the filters; a page past the end shows the last.
func TestPaging(t *testing.T) {
	s := newTestServer(t)
	s.srv.PageSize = 10
	c := newClient(t, s.ts.URL)
	c.login(testUser, testPass)
	rowsRE := regexp.MustCompile(`<td><a href="(/message/[^"?]+)[^"]*">`)
	ids := func(body string) []string {
		var out []string
		for _, m := range rowsRE.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	linkRE := regexp.MustCompile(`<a href="([^"]+)" rel="(prev|next)">`)
	links := func(body string) map[string]string {
		out := map[string]string{}
		for _, m := range linkRE.FindAllStringSubmatch(body, -1) {
			out[m[2]] = html.UnescapeString(m[1])
		}
		return out
	}
	// 45 messages: pages of 10, 10, 10, 10, 5, each once, newest first.
	_, body := c.get("/")
	if !strings.Contains(body, "45 of 45 archived message(s); showing 1–10, newest first (page 1 of 5).") || strings.Contains(body, "?list=") {
		t.Errorf("first page's count line missing:\n%s", body)
	}
	var all []string
	seen := map[string]bool{}
	path := "/"
	for page := 1; page <= 5; page++ {
		_, body := c.get(path)
		got := ids(body)
		want := 10
		if page == 5 {
			want = 5
		}
		if len(got) != want {
			t.Fatalf("page %d: %d rows, want %d", page, len(got), want)
		}
		for _, id := range got {
			if seen[id] {
				t.Errorf("page %d shows %s again", page, id)
			}
			seen[id] = true
		}
		all = append(all, got...)
		l := links(body)
		if (page > 1) != (l["prev"] != "") || (page < 5) != (l["next"] != "") {
			t.Errorf("page %d: links %v", page, l)
		}
		path = l["next"]
	}
	// Newest first across the pages: page 1 starts with the newest.
	if all[0] != "/message/"+url.PathEscape(s.broken) {
		t.Errorf("first row %s, want the newest (%s)", all[0], s.broken)
	}
	// The first and last pages are a click away.
	_, body = c.get("/?page=3")
	if !strings.Contains(body, `<a href="/" class="newest">`) || !strings.Contains(body, `<a href="/?page=5" class="oldest">`) {
		t.Errorf("page 3: no links to the newest and oldest pages")
	}
	// Filters carry over into the links.
	_, body = c.get("/?scl=8&page=2")
	if got := ids(body); len(got) != 9 { // 19 messages at SCL 8 or more
		t.Errorf("scl=8 page 2: %d rows, want 9", len(got))
	}
	if l := links(body); l["prev"] != "/?scl=8" || l["next"] != "" {
		t.Errorf("scl=8 page 2 links %v", l)
	}
	for _, c2 := range []struct{ query, problem string }{
		{"page=99", "Page 99 is past the end (5 page(s)); showing the last."},
		{"page=0", "Page must be a number from 1; showing the first."},
		{"page=banana", "Page must be a number from 1; showing the first."},
		{"page=99999999999999999999", "Page 99999999999999999999 is past the end (5 page(s)); showing the last."},
		{"page=-99999999999999999999", "Page must be a number from 1; showing the first."},
	} {
		_, body := c.get("/?" + c2.query)
		if !strings.Contains(body, html.EscapeString(c2.problem)) {
			t.Errorf("%s: page lacks %q", c2.query, c2.problem)
		}
		if len(ids(body)) == 0 {
			t.Errorf("%s: no rows", c2.query)
		}
	}
	// Nothing matches: no word about pages.
	if _, body := c.get("/?subject=nothing+has+this&page=3"); strings.Contains(body, "past the end") {
		t.Errorf("no match, page 3: a note about pages")
	}

	// A message opened from page 2 of a filtered list leads back there:
	// its Back link, and its Delete (and Release) after the action.
	_, body = c.get("/?scl=8&page=2")
	m := regexp.MustCompile(`<td><a href="(/message/[^"]+)">`).FindStringSubmatch(body)
	if m == nil || !strings.Contains(m[1], "?list=page%3d2%26scl%3d8") {
		t.Fatalf("row link on page 2 does not carry the list: %v", m)
	}
	_, view := c.get(html.UnescapeString(m[1]))
	if !strings.Contains(view, `<a href="/?page=2&amp;scl=8" id="back">`) || strings.Count(view, `name="list" value="page=2&amp;scl=8"`) != 2 {
		t.Errorf("view from page 2: back link or forms do not lead back:\n%s", view)
	}
	id := strings.TrimPrefix(m[1][:strings.Index(m[1], "?")], "/message/")
	resp, _ := c.post("/message/"+id+"/delete", url.Values{"csrf": {c.csrf}, "confirm": {"yes"}, "list": {"page=2&scl=8"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/?page=2&scl=8&done=deleted&id=") {
		t.Errorf("delete from page 2: %d to %q", resp.StatusCode, loc)
	} else if _, body := c.get(loc); !strings.Contains(body, "deleted.") || !strings.Contains(body, "page 2 of 2") {
		t.Errorf("back on page 2 after the delete: status or page missing")
	}
	// What the view carries back is the list's own query: nothing else
	// gets into the redirect.
	for in, want := range map[string]string{
		"page=2&scl=8":                   "page=2&scl=8",
		"next=//evil.example&page=3":     "page=3",
		"scl=banana&from=a%26b&page=abc": "from=a%26b",
		"%zz":                            "",
		"page=99999999999999999999":      "page=1073741824",
		"":                               "",
	} {
		if got := keepPlace(in); got != want {
			t.Errorf("keepPlace(%q) = %q, want %q", in, got, want)
		}
	}

	// One page: no pager.
	s.srv.PageSize = 0
	if _, body := c.get("/"); strings.Contains(body, `class="pager"`) || len(ids(body)) != 44 { // one deleted above
		t.Errorf("one page of %d rows, pager shown: %v", len(ids(body)), strings.Contains(body, `class="pager"`))
	}
}

// The header cache keeps what is cached when full (emptying it made each
// subject search of a large archive read every message again) and drops
// the entries of files that are gone.
func TestHeaderCacheKeep(t *testing.T) {
	var c headerCache
	c.m = map[string]headerInfo{}
	items := []archive.Item{{ID: "a", Size: 1}, {ID: "b", Size: 2}, {ID: "c", Size: 3}}
	for _, it := range items {
		c.put(cacheKey(it), headerInfo{Subject: it.ID})
	}
	c.keep(items)
	if len(c.m) != 3 {
		t.Fatalf("kept %d of 3 live entries", len(c.m))
	}
	c.keep(items[1:]) // "a" released or deleted
	if _, ok := c.get(cacheKey(items[0])); ok || len(c.m) != 2 {
		t.Errorf("entry of a file gone kept: %d entries", len(c.m))
	}
	for i := range maxCachedHeaders {
		c.put(strconv.Itoa(i), headerInfo{})
	}
	if _, ok := c.get(cacheKey(items[1])); !ok || len(c.m) != maxCachedHeaders {
		t.Errorf("full cache: %d entries, older entry kept: %v", len(c.m), ok)
	}
}

// The release form takes an address in UTF-8 (the release asks for
// SMTPUTF8) but nothing that could not be one command argument.
func TestPlausibleAddress(t *testing.T) {
	for a, want := range map[string]bool{
		"bob@example.com":        true,
		"jörg@bücher.test":       true,
		"δοκιμή@παράδειγμα.test": true,
		"bob":                    false,
		"@example.com":           false,
		"bob@":                   false,
		"bob smith@example.com":  false,
		"bob\u00a0x@example.com": false, // no-break space
		"bob\u0085@example.com":  false, // C1 control
		"bob\u00ad@example.com":  false, // soft hyphen
		"bob\u202e@example.com":  false, // right-to-left override
		"bob\u2028@example.com":  false, // line separator
		"b\u200dob@example.com":  true,  // ZWJ
		"bob\xff@example.com":    false, // not UTF-8
		"bob\r\n@example.com":    false,
		"<bob@example.com>":      false,
		"bob@example.com,x@y":    false,
	} {
		if got := plausibleAddress(a); got != want {
			t.Errorf("plausibleAddress(%+q) = %v, want %v", a, got, want)
		}
	}
}
