package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sclgate/sclgate/archive"
	"golang.org/x/crypto/bcrypt"
)

// The archive page served by the real binary: log in, see the archived
// message, release it with the page's button, and find it at the
// downstream (the browser-driven tests of the page are in archive/web).
func TestServeArchiveWebReleases(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	web := freePort(t)
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  weights_file: %s\n  gateway_action: archive\narchive:\n  dir: %s\n  web:\n    listen: %s\n    users: {admin: %q}\n",
		s.addr, weightsFile(t, dir), filepath.Join(dir, "arch"), web, hash))
	waitListening(t, web, nil)
	if out := swaks(t, g.addr, "--to", "bob@example.com", "--header", "Subject: released via the page", "--body", "casino jackpot"); !reply(out, "250 2.0.0 OK") {
		t.Fatalf("archive: %s", out)
	}

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	base := "http://" + web
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	get := func(path string) string {
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	post := func(path string, form url.Values) (int, string) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", base)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	login := get("/login")
	m := csrf.FindStringSubmatch(login)
	if m == nil {
		t.Fatalf("login page has no CSRF token:\n%s", login)
	}
	if code, _ := post("/login", url.Values{"csrf": {m[1]}, "user": {"admin"}, "password": {"pw"}}); code != 200 {
		t.Fatalf("login: %d", code)
	}
	list := get("/")
	id := regexp.MustCompile(`/message/([^"]+)"`).FindStringSubmatch(list)
	if id == nil || !strings.Contains(list, "released via the page") {
		t.Fatalf("archived message not listed:\n%s", list)
	}
	view := get("/message/" + id[1])
	m = csrf.FindStringSubmatch(view)
	if m == nil || !strings.Contains(view, "computed now") || !regexp.MustCompile(`At archiving: <code>scl=\d [^<]*rules: `).MatchString(view) {
		t.Fatalf("message view (explanation, CSRF):\n%s", view)
	}
	// A message an earlier release may have delivered (its mark): the
	// page, which cannot force, refuses with 409 and the command to run
	// on the gateway, its configuration file named.
	store, err := archive.Open(filepath.Join(dir, "arch"), archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.MarkUnanswered(id[1], "at then to bob@example.com: the whole message was sent and no answer came"); err != nil {
		t.Fatal(err)
	}
	if code, body := post("/message/"+id[1]+"/release", url.Values{"csrf": {m[1]}}); code != http.StatusConflict ||
		!strings.Contains(body, "may have delivered it") || !strings.Contains(body, "cd &#39;"+g.dir+"&#39; &amp;&amp; sclgate archive release -config &#39;"+g.config+"&#39; -dir &#39;"+filepath.Join(dir, "arch")+"&#39; -force -- &#39;"+id[1]+".eml&#39;") {
		t.Fatalf("release of a marked message: %d %s", code, body)
	}
	store.ClearUnanswered(id[1])
	if code, body := post("/message/"+id[1]+"/release", url.Values{"csrf": {m[1]}}); code != 200 {
		t.Fatalf("release: %d %s", code, body)
	}
	msgs := s.messages(t, 1)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "released via the page") || !strings.Contains(msgs[0], "X-SCL: -1") || !strings.Contains(msgs[0], "X-SCL-Released: ") {
		t.Errorf("released message at the downstream: %q", msgs)
	}
	g.waitLog(t, "archive web: released")
	if !strings.Contains(g.log.String(), "user=admin") {
		t.Error("release not logged with the user")
	}
}
