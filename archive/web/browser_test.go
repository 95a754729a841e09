package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The browser test drives Debian's headless Chromium through chromedriver's
// W3C WebDriver HTTP API: log in, filter, open a message, release it and
// see it arrive at a real SMTP server; then open the hostile message and
// check that none of its script ran. It saves a screenshot of the list to
// docs/archive-web.png.

const (
	chromiumBin     = "/usr/bin/chromium"
	chromedriverBin = "/usr/bin/chromedriver"
)

// ---- a downstream SMTP server that records what it gets ----

type received struct {
	from string
	to   []string
	data []byte
}

type downstream struct {
	mu   sync.Mutex
	msgs []received
	got  chan struct{}
}

type dsSession struct {
	d   *downstream
	cur received
}

func (s *dsSession) Reset()                                      { s.cur = received{} }
func (s *dsSession) Logout() error                               { return nil }
func (s *dsSession) Mail(from string, _ *smtp.MailOptions) error { s.cur.from = from; return nil }
func (s *dsSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *dsSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.d.mu.Lock()
	s.d.msgs = append(s.d.msgs, s.cur)
	s.d.mu.Unlock()
	select {
	case s.d.got <- struct{}{}:
	default:
	}
	return nil
}

func startDownstream(t *testing.T) (*downstream, string) {
	d := &downstream{got: make(chan struct{}, 16)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &dsSession{d: d}, nil }))
	srv.Domain = "downstream.test"
	srv.MaxMessageBytes = 32 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return d, ln.Addr().String()
}

// smtpRelease is the release a test gateway does: the archived bytes to
// the downstream, then out of the archive into released/.
func smtpRelease(f *fixture, addr string) ReleaseFunc {
	return func(ctx context.Context, id, to, user string) error {
		it, rc, err := f.store.Open(id)
		if err != nil {
			return err
		}
		defer rc.Close()
		rcpts := it.Envelope.To
		if to != "" {
			rcpts = []string{to}
		}
		c, err := smtp.Dial(addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Hello("sclgate.test"); err != nil {
			return err
		}
		if err := c.SendMail(it.Envelope.From, rcpts, rc); err != nil {
			return err
		}
		c.Quit()
		return f.store.Move(id, "released")
	}
}

// ---- a minimal WebDriver client ----

type webdriver struct {
	t    *testing.T
	base string // http://127.0.0.1:port/session/ID
}

const w3cElement = "element-6066-11e4-a52e-4f735466cecf"

func wdCall(t *testing.T, method, url string, body any) json.RawMessage {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("webdriver %s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("webdriver %s %s: %d %.500s", method, url, resp.StatusCode, raw)
	}
	return out.Value
}

func (w *webdriver) call(method, path string, body any) json.RawMessage {
	w.t.Helper()
	return wdCall(w.t, method, w.base+path, body)
}

func (w *webdriver) navigate(url string) {
	w.t.Helper()
	w.call("POST", "/url", map[string]string{"url": url})
}

func (w *webdriver) find(css string) string {
	w.t.Helper()
	v := w.call("POST", "/element", map[string]string{"using": "css selector", "value": css})
	var m map[string]string
	json.Unmarshal(v, &m)
	return m[w3cElement]
}

func (w *webdriver) typeInto(css, text string) {
	w.t.Helper()
	el := w.find(css)
	w.call("POST", "/element/"+el+"/clear", map[string]any{})
	w.call("POST", "/element/"+el+"/value", map[string]string{"text": text})
}

func (w *webdriver) click(css string) {
	w.t.Helper()
	w.call("POST", "/element/"+w.find(css)+"/click", map[string]any{})
}

func (w *webdriver) exec(script string) json.RawMessage {
	w.t.Helper()
	return w.call("POST", "/execute/sync", map[string]any{"script": script, "args": []any{}})
}

func (w *webdriver) str(script string) string {
	w.t.Helper()
	var s string
	if err := json.Unmarshal(w.exec(script), &s); err != nil {
		w.t.Fatalf("%s: not a string: %v", script, err)
	}
	return s
}

// waitText polls the text of the element css names until ok accepts it, and
// returns the last text seen. A WebDriver click that submits a form does not
// wait for the next page, so a check made at once may read the old page (or
// none); this gives the browser up to 15 s, in 50 ms steps.
func (w *webdriver) waitText(css string, ok func(string) bool) string {
	w.t.Helper()
	script := `var e = document.querySelector(` + strconv.Quote(css) + `); return e === null ? "\x00" : e.textContent`
	var last string
	for i := 0; i < 300; i++ {
		var s string
		if err := json.Unmarshal(w.exec(script), &s); err != nil {
			w.t.Fatalf("%s: not a string: %v", css, err)
		}
		if s != "\x00" {
			last = s
			if ok(s) {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

func (w *webdriver) url() string {
	w.t.Helper()
	var s string
	json.Unmarshal(w.call("GET", "/url", nil), &s)
	return s
}

func (w *webdriver) screenshot(path string) {
	w.t.Helper()
	var b64 string
	json.Unmarshal(w.call("GET", "/screenshot", nil), &b64)
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(png) < 1000 {
		w.t.Fatalf("screenshot: %v (%d bytes)", err, len(png))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// noScriptRan checks that the page has no script element and that none of
// the hostile message's script set window.pwned.
func (w *webdriver) noScriptRan(where string) {
	w.t.Helper()
	var r struct {
		Scripts int  `json:"scripts"`
		Clean   bool `json:"clean"`
		Frames  int  `json:"frames"`
	}
	v := w.exec(`return {scripts: document.querySelectorAll('script').length, clean: window.pwned===undefined && (window.parent.pwned===undefined), frames: document.querySelectorAll('iframe,img,object,embed').length}`)
	if err := json.Unmarshal(v, &r); err != nil {
		w.t.Fatal(err)
	}
	if r.Scripts != 0 || !r.Clean || r.Frames != 0 {
		w.t.Errorf("%s: %d script elements, %d frames/images, window.pwned unset: %v", where, r.Scripts, r.Frames, r.Clean)
	}
}

func containsFn(sub string) func(string) bool {
	return func(s string) bool { return strings.Contains(s, sub) }
}

func prefixFn(p string) func(string) bool {
	return func(s string) bool { return strings.HasPrefix(s, p) }
}

func equalFn(want string) func(string) bool { return func(s string) bool { return s == want } }

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startBrowser(t *testing.T) *webdriver {
	for _, bin := range []string{chromiumBin, chromedriverBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is missing: install the Debian packages chromium and chromium-driver "+
				"(apt-get install -y chromium chromium-driver; scripts/test.sh does it)", bin)
		}
	}
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, chromedriverBin, fmt.Sprintf("--port=%d", port), "--allowed-ips=127.0.0.1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start chromedriver: %v", err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	root := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(root + "/status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromiumBin,
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--disable-dev-shm-usage", "--window-size=1280,1000", "--user-data-dir=" + t.TempDir()},
		},
	}}}
	v := wdCall(t, "POST", root+"/session", caps)
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	if err := json.Unmarshal(v, &sess); err != nil || sess.SessionID == "" {
		t.Fatalf("new session: %s", v)
	}
	w := &webdriver{t: t, base: root + "/session/" + sess.SessionID}
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", w.base, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	w.call("POST", "/timeouts", map[string]int{"pageLoad": 60000, "script": 10000, "implicit": 2000})
	return w
}

func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test in -short mode")
	}
	f := newFixture(t)
	ds, dsAddr := startDownstream(t)
	logs := &logBuffer{}
	srv := New(f.store, testUsers(t), smtpRelease(f, dsAddr), slog.New(slog.NewJSONHandler(logs, nil)))
	ts := httptest.NewServer(srv) // 127.0.0.1
	t.Cleanup(ts.Close)

	w := startBrowser(t)

	// Not logged in: the page sends us to the login form.
	w.navigate(ts.URL + "/")
	if !strings.Contains(w.url(), "/login") {
		t.Fatalf("not redirected to login: %s", w.url())
	}
	w.typeInto("input[name=user]", testUser)
	w.typeInto("input[name=password]", "wrong password")
	w.click("#login")
	if got := w.waitText(".err", containsFn("Wrong user name or password")); !strings.Contains(got, "Wrong user name or password") {
		t.Errorf("bad password: %q", got)
	}
	w.typeInto("input[name=user]", testUser)
	w.typeInto("input[name=password]", testPass)
	w.click("#login")
	if got := w.waitText("#count", containsFn("45 of 45")); !strings.Contains(got, "45 of 45") {
		t.Fatalf("list after login: %q (url %s)", got, w.url())
	}
	w.noScriptRan("list")

	// Filter: SCL ≥ 8 and "invoice" in the subject.
	w.typeInto("input[name=scl]", "8")
	w.typeInto("input[name=subject]", "invoice")
	w.click("#apply")
	if got := w.waitText("#count", prefixFn("1 of 45")); !strings.HasPrefix(got, "1 of 45") {
		t.Fatalf("filtered count: %q", got)
	}
	if !strings.Contains(w.url(), "scl=8") {
		t.Errorf("filter not in URL: %s", w.url())
	}

	// Open the message.
	w.click("#messages td.subj a")
	if got := w.waitText("#msgid", equalFn(f.invoice)); got != f.invoice {
		t.Fatalf("opened %q, want %q", got, f.invoice)
	}
	if body := w.str(`return document.querySelector('#body').textContent`); !strings.Contains(body, "please find your invoice attached") {
		t.Errorf("message text: %q", body)
	}
	if got := w.str(`return document.querySelector('#explain').textContent`); !strings.Contains(got, "SCL 8") {
		t.Errorf("explanation: %q", got)
	}

	// Release it and see it arrive downstream.
	w.click("#release")
	select {
	case <-ds.got:
	case <-time.After(20 * time.Second):
		t.Fatal("released message did not arrive downstream")
	}
	ds.mu.Lock()
	got := ds.msgs[0]
	ds.mu.Unlock()
	if got.from != "billing@supplier.example" || strings.Join(got.to, ",") != "accounts@example.org,boss@example.org" ||
		!bytes.Contains(got.data, []byte("Subject: Invoice 2026-117 for November")) {
		t.Errorf("downstream got from %q to %v:\n%.300s", got.from, got.to, got.data)
	}
	if done := w.waitText("#done", containsFn("released")); !strings.Contains(done, f.invoice) || !strings.Contains(done, "released") {
		t.Errorf("after release the page says %q", done)
	}
	// Back on the list it was opened from, filters and all.
	if u := w.url(); !strings.Contains(u, "scl=8") || !strings.Contains(u, "subject=invoice") {
		t.Errorf("after release: %s, want the filtered list", u)
	}
	if recs := logs.records("archive web: released"); len(recs) != 1 || recs[0]["user"] != testUser {
		t.Errorf("release log: %v", recs)
	}
	if _, err := os.Stat(filepath.Join(f.store.Dir(), "released", f.invoice+".eml")); err != nil {
		t.Errorf("released message not in released/: %v", err)
	}

	// The hostile message: its scripts, handlers and javascript: links
	// show as text and run nowhere.
	w.navigate(ts.URL + "/message/" + f.hostile)
	w.noScriptRan("hostile message")
	if body := w.str(`return document.querySelector('#body').textContent`); !strings.Contains(body, "<script>window.pwned=1</script>") ||
		!strings.Contains(body, `href="javascript:window.pwned=3"`) {
		t.Errorf("hostile text not shown as text: %q", body)
	}
	if n := w.str(`return String(document.querySelectorAll('a[href^="javascript:" i]').length)`); n != "0" {
		t.Errorf("%s javascript: links in the page", n)
	}
	w.call("POST", "/window/rect", map[string]int{"width": 1280, "height": 1000})
	w.screenshot(filepath.Join(t.TempDir(), "hostile.png"))

	// The big and the broken message open too.
	for _, id := range []string{f.big, f.broken} {
		w.navigate(ts.URL + "/message/" + id)
		if got := w.waitText("#msgid", equalFn(id)); got != id {
			t.Errorf("view %s: got %q", id, got)
		}
		w.noScriptRan("message " + id)
	}

	// The full list, for the README's screenshot.
	w.navigate(ts.URL + "/")
	if got := w.waitText("#count", prefixFn("44 of 44")); !strings.HasPrefix(got, "44 of 44") {
		t.Errorf("list after release: %q", got)
	}
	w.noScriptRan("list")
	shot := os.Getenv("ARCHIVE_WEB_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join("..", "..", "docs", "archive-web.png")
	}
	w.screenshot(shot)
	t.Logf("screenshot: %s", shot)

	// Pages of 20, browsed with their links. (A server of its own: the
	// page size is set before it serves.)
	paged := New(f.store, testUsers(t), smtpRelease(f, dsAddr), nil)
	paged.PageSize = 20
	ts2 := httptest.NewServer(paged)
	t.Cleanup(ts2.Close)
	w.navigate(ts2.URL + "/")
	w.typeInto("input[name=user]", testUser)
	w.typeInto("input[name=password]", testPass)
	w.click("#login")
	for _, step := range []struct{ click, want string }{
		{"", "44 of 44 archived message(s); showing 1–20, newest first (page 1 of 3)."},
		{"a[rel=next]", "showing 21–40, newest first (page 2 of 3)."},
		{"a[rel=next]", "showing 41–44, newest first (page 3 of 3)."},
		{"a[rel=prev]", "showing 21–40, newest first (page 2 of 3)."},
	} {
		if step.click != "" {
			w.click(step.click)
		}
		if got := w.waitText("#count", containsFn(step.want)); !strings.Contains(got, step.want) {
			t.Fatalf("after %q: %q, want %q (url %s)", step.click, got, step.want, w.url())
		}
	}
	if n := w.str(`return String(document.querySelectorAll('#messages tbody tr').length)`); n != "20" {
		t.Errorf("page 2: %s rows, want 20", n)
	}
	w.noScriptRan("paged list")

	// Delete asks first: unticked, the browser does not send the form
	// (the box is required); ticked, the message goes.
	w.navigate(ts2.URL + "/message/" + f.big)
	w.waitText("#msgid", equalFn(f.big))
	w.click("#delete")
	if got := w.waitText("#msgid", equalFn(f.big)); got != f.big || !strings.Contains(w.url(), "/message/") {
		t.Errorf("unticked delete left the page: %s", w.url())
	}
	if _, err := f.store.Get(f.big); err != nil {
		t.Fatalf("deleted without the box ticked: %v", err)
	}
	w.click("#confirm-delete")
	w.click("#delete")
	if got := w.waitText("#done", containsFn("deleted")); !strings.Contains(got, "deleted") {
		t.Errorf("after a ticked delete: %q", got)
	}
	if _, err := f.store.Get(f.big); err == nil {
		t.Errorf("the message is still there after a ticked delete")
	}
}
