package scorer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sclgate/sclgate/internal/testnet"
)

// The tests in this file and rspamd_test.go come in two kinds: protocol
// edge cases against a tiny fake server on 127.0.0.1, and the real engines
// (Debian's spamassassin and rspamd packages) started by the test itself on
// loopback ports. A missing engine is a test failure, never a skip.

const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// extMessage builds a plausible message as a gateway receives it.
func extMessage(subject, body string) []byte {
	now := time.Now().UTC().Format(time.RFC1123Z)
	return []byte("Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n" +
		"\tby mx.example.com (sclgate) with ESMTPS id 4F2A1B6C0D;\r\n\t" + now + "\r\n" +
		"From: Alice Martin <alice@example.org>\r\n" +
		"To: Bob Durand <bob@example.com>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: " + now + "\r\n" +
		"Message-ID: <20261123050000.4F2A1B6C0D@mail.example.org>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" + strings.ReplaceAll(body, "\n", "\r\n"))
}

const extHamBody = `Hi Bob,

thanks for sending the minutes of Tuesday's planning meeting. I went
through the action items: the budget review moves to next Thursday, and
Claire will circulate the revised schedule before then. Could you book
the small meeting room for 10:00? I will bring the printed copies.

Best regards,
Alice
`

func extHam() []byte  { return extMessage("Minutes of Tuesday's planning meeting", extHamBody) }
func extSpam() []byte { return extMessage("Test message", "This is the GTUBE test:\n\n"+gtube+"\n") }

// ---- Real engines: process handling shared by the spamd and rspamd tests.

// extLookPath finds an engine's binary, also in the sbin directories a
// non-root PATH often lacks.
func extLookPath(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// extFreePort returns a loopback TCP port nobody listens on right now.
func extFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// extTail keeps the last 32 KiB an engine wrote, for failure messages.
type extTail struct {
	mu  sync.Mutex
	buf []byte
}

func (w *extTail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - 32<<10; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *extTail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// extEngine is an engine process started by a test, in its own process
// group (its workers included) so that stop ends all of it.
type extEngine struct {
	name string
	cmd  *exec.Cmd
	out  *extTail
	done chan struct{} // closed once the process has exited
	once sync.Once
}

func extStart(t *testing.T, name, dir, path string, args ...string) *extEngine {
	t.Helper()
	e := &extEngine{name: name, out: &extTail{}, done: make(chan struct{})}
	e.cmd = exec.Command(path, args...)
	e.cmd.Dir = dir
	e.cmd.Stdout, e.cmd.Stderr = e.out, e.out
	// Pdeathsig: should the test binary die, the engine goes with it.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("%s: start %s: %v", name, path, err)
	}
	go func() { e.cmd.Wait(); close(e.done) }()
	t.Cleanup(e.stop)
	t.Logf("%s: started pid %d: %s %s", name, e.cmd.Process.Pid, path, strings.Join(args, " "))
	return e
}

// stop ends the engine and its workers: SIGTERM to the group, then SIGKILL
// if it has not exited within 10 s. Bounded either way.
func (e *extEngine) stop() {
	e.once.Do(func() {
		pgid := e.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			select {
			case <-e.done:
			case <-time.After(5 * time.Second):
			}
		}
		// Workers that outlived their master (they should not).
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// wait polls ready every 100 ms until it succeeds, failing the test when
// the engine exits or limit passes.
func (e *extEngine) wait(t *testing.T, limit time.Duration, ready func() error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(limit)
	for {
		err := ready()
		if err == nil {
			t.Logf("%s: ready after %v", e.name, time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-e.done:
			t.Fatalf("%s exited during start-up (%v); its output:\n%s", e.name, e.cmd.ProcessState, e.out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v: %v; its output:\n%s", e.name, limit, err, e.out)
		}
	}
}

// ---- Real spamd.

// spamdSiteConfig writes a site configuration directory for a test spamd:
// the stock plugin loaders (.pre files) and a local.cf of our own, so that
// neither /etc/spamassassin/local.cf nor any later edit of it changes the
// test.
func spamdSiteConfig(t *testing.T, dir string) string {
	t.Helper()
	site := filepath.Join(dir, "site")
	if err := os.Mkdir(site, 0o755); err != nil {
		t.Fatal(err)
	}
	pres, _ := filepath.Glob("/etc/spamassassin/*.pre")
	if len(pres) == 0 {
		t.Fatal("spamd: no /etc/spamassassin/*.pre (plugin loaders): reinstall the Debian package spamassassin")
	}
	for _, p := range pres {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(site, filepath.Base(p)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	local := `# sclgate test spamd: local rules only, no learning.
required_score 5.0
use_bayes 0
bayes_auto_learn 0
report_safe 0
`
	if err := os.WriteFile(filepath.Join(site, "local.cf"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	return site
}

func TestSpamdEngine(t *testing.T) {
	t.Parallel()
	spamd, ok1 := extLookPath("spamd")
	spamc, ok2 := extLookPath("spamc")
	if !ok1 || !ok2 {
		t.Fatalf("spamd and spamc are needed (found spamd: %v, spamc: %v): install the Debian packages spamassassin and spamc "+
			"(apt-get install spamassassin spamc; scripts/test.sh does it)", ok1, ok2)
	}
	// Not t.TempDir(): when the test runs as root, spamd's children run as
	// nobody and must read the configuration, and t.TempDir's parents are
	// mode 0700.
	dir, err := os.MkdirTemp("", "sclgate-spamd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	site := spamdSiteConfig(t, dir)
	port := extFreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{
		"-L", // local tests only: no DNS, no network
		"--listen=" + addr,
		"--max-children=1",
		"--max-conn-per-child=1", // a fresh child per message: scores do not depend on order
		"--siteconfigpath=" + site,
		"--nouser-config",
		"--syslog=stderr",
	}
	if os.Geteuid() == 0 {
		args = append(args, "--username=nobody") // spamd will not run children as root
	}
	e := extStart(t, "spamd", dir, spamd, args...)
	c := NewSpamd(addr, 30*time.Second)
	e.wait(t, 90*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Ping(ctx)
	})
	ctx := context.Background()

	var hamScore float64
	t.Run("ham", func(t *testing.T) {
		m := Parse(extHam())
		r, err := c.Check(ctx, m.Raw)
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Classify(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ham: spam=%v score=%v required=%v symbols=%v → SCL %d", r.Spam, r.Score, r.Required, r.Symbols, v.SCL)
		if r.Spam || r.Required != 5 || r.Score < -10 || r.Score >= 5 || r.Truncated {
			t.Errorf("ham: %+v", r)
		}
		if v.SCL >= 7 || v.Score != r.Score {
			t.Errorf("ham: verdict %+v", v)
		}
		hamScore = r.Score
	})

	t.Run("spam", func(t *testing.T) {
		m := Parse(extSpam())
		r, err := c.Check(ctx, m.Raw)
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Classify(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("GTUBE: spam=%v score=%v required=%v symbols=%v → SCL %d", r.Spam, r.Score, r.Required, r.Symbols, v.SCL)
		if !r.Spam || r.Score < 100 || r.Required != 5 || !containsString(r.Symbols, "GTUBE") {
			t.Errorf("GTUBE: %+v", r)
		}
		if v.SCL != 9 { // 1000 >= 2·5
			t.Errorf("GTUBE: verdict %+v", v)
		}
	})

	// The gateway's Received field (what Classify puts on top when the
	// gateway passes its envelope) gives SpamAssassin a relay to check:
	// without it there is none.
	t.Run("envelope", func(t *testing.T) {
		rcvd := "Received: from nodots ([192.0.2.7])\r\n\tby gw.example.com (sclgate) with ESMTP id 8F3A2C; Tue, 24 Nov 2026 06:00:00 +0000\r\n"
		with, err := c.Check(ctx, append([]byte(rcvd), extHam()...))
		if err != nil {
			t.Fatal(err)
		}
		without, err := c.Check(ctx, extHam())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("with the Received field: %v; without: %v", with.Symbols, without.Symbols)
		if !containsString(with.Symbols, "RDNS_NONE") || !containsString(with.Symbols, "HELO_NO_DOMAIN") || containsString(without.Symbols, "RDNS_NONE") {
			t.Errorf("RDNS_NONE and HELO_NO_DOMAIN with the Received field: %v; without: %v", with.Symbols, without.Symbols)
		}
	})

	// spamc, SpamAssassin's own client, must read the same figures from the
	// same spamd: a check on our side of the protocol.
	t.Run("spamc agrees", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			raw  []byte
			want float64
		}{{"ham", extHam(), hamScore}, {"GTUBE", extSpam(), -1}} {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			cmd := exec.CommandContext(sctx, spamc, "-d", "127.0.0.1", "-p", strconv.Itoa(port), "-c")
			cmd.Stdin = bytes.NewReader(tc.raw)
			out, _ := cmd.Output() // exit status 1 means spam
			cancel()
			s, req, ok := strings.Cut(strings.TrimSpace(string(out)), "/")
			score, err1 := strconv.ParseFloat(s, 64)
			required, err2 := strconv.ParseFloat(req, 64)
			if !ok || err1 != nil || err2 != nil {
				t.Fatalf("spamc -c on %s said %q", tc.name, out)
			}
			r, err := c.Check(ctx, tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if diff := score - r.Score; diff > 0.05 || diff < -0.05 || required != r.Required {
				t.Errorf("%s: spamc read %v/%v, Spamd %v/%v", tc.name, score, required, r.Score, r.Required)
			}
		}
	})

	t.Run("truncated", func(t *testing.T) {
		// GTUBE early, then padding past MaxSize: the head is scored.
		var b strings.Builder
		b.WriteString("This is the GTUBE test:\n\n" + gtube + "\n\n")
		line := strings.Repeat("padding text of an oversized message ", 2) + "\n"
		for b.Len() < 600<<10 {
			b.WriteString(line)
		}
		r, err := c.Check(ctx, extMessage("Big", b.String()))
		if err != nil {
			t.Fatal(err)
		}
		if !r.Truncated || !r.Spam {
			t.Errorf("oversized GTUBE: %+v", r)
		}
	})

	t.Run("down", func(t *testing.T) {
		e.stop()
		_, err := c.Classify(ctx, Parse(extHam()))
		if err == nil || !strings.Contains(err.Error(), "spamd "+addr+": connect:") {
			t.Errorf("engine stopped: %v", err)
		}
	})
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ---- Fake spamd: protocol edge cases.

type spamdFakeReq struct {
	line   string            // "SYMBOLS SPAMC/1.5"
	header map[string]string // lower-case names
	body   []byte
}

// spamdFake serves each connection: reads one request, then calls reply.
// reply may block on done, which is closed when the test ends.
func spamdFake(t *testing.T, reply func(c net.Conn, req spamdFakeReq, done <-chan struct{})) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				var req spamdFakeReq
				req.header = map[string]string{}
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				req.line = strings.TrimRight(line, "\r\n")
				for {
					h, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if h = strings.TrimRight(h, "\r\n"); h == "" {
						break
					}
					k, v, _ := strings.Cut(h, ":")
					req.header[strings.ToLower(k)] = strings.TrimSpace(v)
				}
				if n, err := strconv.Atoi(req.header["content-length"]); err == nil {
					req.body = make([]byte, n)
					if _, err := io.ReadFull(br, req.body); err != nil {
						return
					}
				}
				reply(c, req, done)
			}()
		}
	}()
	return l.Addr().String()
}

// spamdReply is a well-formed SYMBOLS reply.
func spamdReply(spam string, score, required string, symbols string) string {
	return fmt.Sprintf("SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: %s ; %s / %s\r\n\r\n%s",
		len(symbols), spam, score, required, symbols)
}

func TestSpamdRequest(t *testing.T) {
	t.Parallel()
	got := make(chan spamdFakeReq, 1)
	addr := spamdFake(t, func(c net.Conn, req spamdFakeReq, _ <-chan struct{}) {
		got <- req
		io.WriteString(c, spamdReply("True", "1000.0", "5.0", "GTUBE,NO_RELAYS"))
	})
	c := NewSpamd(addr, 5*time.Second)
	raw := extSpam()
	v, err := c.Classify(context.Background(), Parse(raw))
	if err != nil || v.SCL != 9 || v.Score != 1000 {
		t.Fatalf("Classify: %+v, %v", v, err)
	}
	req := <-got
	if req.line != "SYMBOLS SPAMC/1.5" || req.header["content-length"] != strconv.Itoa(len(raw)) || !bytes.Equal(req.body, raw) {
		t.Errorf("request: %q %q, body %d bytes (want %d)", req.line, req.header, len(req.body), len(raw))
	}
}

func TestSpamdTruncate(t *testing.T) {
	t.Parallel()
	got := make(chan spamdFakeReq, 1)
	addr := spamdFake(t, func(c net.Conn, req spamdFakeReq, _ <-chan struct{}) {
		got <- req
		io.WriteString(c, spamdReply("False", "0.5", "5.0", ""))
	})
	c := NewSpamd(addr, 5*time.Second)
	raw := extMessage("Big", strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnopqrstuvwxyz\n", 9000)) // ~670 KB
	r, err := c.Check(context.Background(), raw)
	if err != nil || !r.Truncated || r.Spam || len(r.Symbols) != 0 {
		t.Fatalf("Check: %+v, %v", r, err)
	}
	req := <-got
	n := len(req.body)
	if n > SpamdDefaultMaxSize || n < SpamdDefaultMaxSize-200 || !bytes.HasPrefix(raw, req.body) || req.body[n-1] != '\n' {
		t.Errorf("sent %d bytes of %d, ending %q", n, len(raw), req.body[max(0, n-10):])
	}

	// A message within the limit goes whole.
	r, err = c.Check(context.Background(), extHam())
	if err != nil || r.Truncated || len((<-got).body) != len(extHam()) {
		t.Errorf("small message: %+v, %v", r, err)
	}
}

func TestSpamdReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply string
		want  SpamdResult // when err is ""
		scl   int
		err   string // substring of the error
	}{
		{name: "spam", reply: spamdReply("True", "1000.0", "5.0", "GTUBE,MSGID_SHORT"),
			want: SpamdResult{Spam: true, Score: 1000, Required: 5, Symbols: []string{"GTUBE", "MSGID_SHORT"}}, scl: 9},
		{name: "ham negative zero", reply: spamdReply("False", "-0.0", "5.0", "NO_RELAYS"),
			want: SpamdResult{Required: 5, Symbols: []string{"NO_RELAYS"}}, scl: 0},
		{name: "no symbols", reply: spamdReply("False", "2.6", "5.0", ""),
			want: SpamdResult{Score: 2.6, Required: 5}, scl: 3},
		{name: "bare LF, Yes, odd spacing", reply: "SPAMD/1.5 0 EX_OK\nspam:Yes;7.5/5.0\ncontent-length: 4\n\nA,B\n",
			want: SpamdResult{Spam: true, Score: 7.5, Required: 5, Symbols: []string{"A", "B"}}, scl: 8},
		{name: "CHECK-style, no length, no body", reply: "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 4.9 / 5.0\r\n\r\n",
			want: SpamdResult{Score: 4.9, Required: 5}, scl: 6},

		{name: "empty reply", reply: "", err: "read reply: connection closed before the reply ended"},
		{name: "not spamd", reply: "HTTP/1.1 400 Bad Request\r\n\r\n", err: "bad reply: status line"},
		{name: "no code", reply: "SPAMD/1.5 EX_OK\r\n\r\n", err: "no numeric code"},
		{name: "error code", reply: "SPAMD/1.0 76 Bad header line: (Content-length mismatch)\r\n", err: "bad reply: spamd refused the request: 76 Bad header line"},
		{name: "short: status only", reply: "SPAMD/1.1 0 EX_OK\r\n", err: "read reply: connection closed before the reply ended"},
		{name: "short: inside a line", reply: "SPAMD/1.1 0 EX_OK\r\nSpam: Tr", err: "read reply: connection closed inside a line"},
		{name: "short: body", reply: "SPAMD/1.1 0 EX_OK\r\nContent-length: 40\r\nSpam: True ; 9.0 / 5.0\r\n\r\nGTUBE", err: "read reply: symbols cut short"},
		{name: "no Spam header", reply: "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", err: "bad reply: no Spam header"},
		{name: "bad verdict", reply: spamdReply("Maybe", "1.0", "5.0", ""), err: "verdict is not True or False"},
		{name: "bad score", reply: spamdReply("True", "lots", "5.0", ""), err: "bad score or required score"},
		{name: "NaN score", reply: spamdReply("True", "NaN", "5.0", ""), err: "bad score or required score"},
		{name: "no figures", reply: "SPAMD/1.1 0 EX_OK\r\nSpam: True\r\n\r\n", err: `is not "True|False ; score / required"`},
		{name: "header without colon", reply: "SPAMD/1.1 0 EX_OK\r\nSpam True ; 1 / 5\r\n\r\n", err: "has no colon"},
		{name: "bad length", reply: "SPAMD/1.1 0 EX_OK\r\nContent-length: -3\r\nSpam: True ; 1 / 5\r\n\r\n", err: "bad Content-length"},
		{name: "huge length", reply: "SPAMD/1.1 0 EX_OK\r\nContent-length: 99999999\r\nSpam: True ; 1 / 5\r\n\r\n", err: "exceeds 65536 bytes"},
		{name: "endless headers", reply: "SPAMD/1.1 0 EX_OK\r\n" + strings.Repeat("X-Filler: yes\r\n", 10000), err: "read reply: reply exceeds 65536 bytes"},
		{name: "endless body", reply: "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\n\r\n" + strings.Repeat("RULE,", 20000), err: "read reply: reply exceeds 65536 bytes"},
		{name: "long line", reply: "SPAMD/1.1 0 EX_OK\r\nX: " + strings.Repeat("x", 5000) + "\r\n", err: "line longer than"},
		{name: "binary garbage", reply: "\x00\xff\xfe\x01garbage\r\n", err: "is not SPAMD/x.y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := spamdFake(t, func(c net.Conn, _ spamdFakeReq, _ <-chan struct{}) {
				io.WriteString(c, tc.reply)
			})
			c := NewSpamd(addr, 5*time.Second)
			r, err := c.Check(context.Background(), extHam())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "spamd "+addr+": ") {
					t.Fatalf("got %+v, %v; want error %q", r, err, tc.err)
				}
				// And through Classify, as the gateway sees it.
				if _, err := c.Classify(context.Background(), Parse(extHam())); err == nil {
					t.Error("Classify: no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Spam != tc.want.Spam || r.Score != tc.want.Score || r.Required != tc.want.Required || fmt.Sprint(r.Symbols) != fmt.Sprint(tc.want.Symbols) {
				t.Errorf("got %+v, want %+v", r, tc.want)
			}
			v, err := c.Classify(context.Background(), Parse(extHam()))
			if err != nil || v.SCL != tc.scl || v.Score != tc.want.Score {
				t.Errorf("Classify: %+v, %v; want SCL %d", v, err, tc.scl)
			}
		})
	}
}

func TestSpamdTimeouts(t *testing.T) {
	t.Parallel()
	// Accepts and reads the request, then never answers.
	addr := spamdFake(t, func(_ net.Conn, _ spamdFakeReq, done <-chan struct{}) { <-done })

	t.Run("own timeout", func(t *testing.T) {
		t.Parallel()
		c := NewSpamd(addr, 300*time.Millisecond)
		start := time.Now()
		_, err := c.Classify(context.Background(), Parse(extHam()))
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("took %v", el)
		}
		if err == nil || !strings.Contains(err.Error(), "spamd "+addr+": read reply:") || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		t.Parallel()
		c := NewSpamd(addr, time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Classify(ctx, Parse(extHam()))
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("took %v", el)
		}
		if err == nil || !strings.Contains(err.Error(), "read reply:") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		t.Parallel()
		c := NewSpamd(addr, time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Classify(ctx, Parse(extHam()))
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("took %v", el)
		}
		if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "read reply:") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("ping", func(t *testing.T) {
		t.Parallel()
		c := NewSpamd(addr, 300*time.Millisecond)
		if err := c.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "read reply:") {
			t.Errorf("got %v", err)
		}
	})
}

func TestSpamdDown(t *testing.T) {
	t.Parallel()
	addr := testnet.RefusingAddr(t)
	c := NewSpamd(addr, 2*time.Second)
	_, err := c.Classify(context.Background(), Parse(extHam()))
	if err == nil || !strings.HasPrefix(err.Error(), "spamd "+addr+": connect:") || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("got %v", err)
	}
	// A socket path that does not exist.
	c = NewSpamd(filepath.Join(t.TempDir(), "spamd.sock"), 2*time.Second)
	if _, err := c.Classify(context.Background(), Parse(extHam())); err == nil || !strings.Contains(err.Error(), ": connect:") {
		t.Errorf("unix socket: %v", err)
	}
}

func TestSpamdPingFake(t *testing.T) {
	t.Parallel()
	addr := spamdFake(t, func(c net.Conn, req spamdFakeReq, _ <-chan struct{}) {
		if req.line == "PING SPAMC/1.5" {
			io.WriteString(c, "SPAMD/1.5 0 PONG\r\n")
		} else {
			io.WriteString(c, "SPAMD/1.5 76 Bad header line\r\n")
		}
	})
	if err := NewSpamd(addr, 2*time.Second).Ping(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestNewSpamd(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7830":   "127.0.0.1:7830",
		"127.0.0.1":        "127.0.0.1:783",
		"spam.example.com": "spam.example.com:783",
		"::1":              "[::1]:783",
		"[::1]":            "[::1]:783",
		"[::1]:7830":       "[::1]:7830",
		"/run/spamd.sock":  "/run/spamd.sock",
	} {
		if got := NewSpamd(in, 0); got.Addr != want || got.Timeout != 10*time.Second || got.MaxSize != 500<<10 || got.Name() != "spamd" {
			t.Errorf("NewSpamd(%q) = %+v, want Addr %q", in, got, want)
		}
	}
}

func TestSpamdSCL(t *testing.T) {
	for _, tc := range []struct {
		score, required float64
		spam            bool
		want            int
	}{
		{-20, 5, false, 0},
		{0, 5, false, 0},
		{0.7, 5, false, 0},
		{0.72, 5, false, 1},
		{0.7, 4.9, false, 1}, // exactly on a step, despite floating point
		{2.5, 5, false, 3},
		{4.3, 5, false, 6},
		{4.96, 5, false, 6},
		{5, 5, false, 6}, // not spam at "5.0 / 5.0" (rounded figures): SpamAssassin's verdict holds
		{5, 5, true, 7},  // score == required → 7
		{7.4, 5, true, 7},
		{7.5, 5, true, 8}, // 1.5 × required
		{9.9, 5, true, 8},
		{10, 5, true, 9}, // 2 × required
		{1000, 5, true, 9},
		{1e300, 5, true, 9},
		{-1e300, 5, false, 0},
		{-100, 5, true, 7}, // a spam verdict is never below the line
		{50, 5, false, 6},  // nor a ham verdict above it
		{3, 0, true, 7},    // required_score 0: no scale
		{3, 0, false, 0},
		{3, -2, false, 0},
		{12, 8, true, 8},
		{4, 8, false, 3},
	} {
		if got := spamdSCL(tc.score, tc.required, tc.spam); got != tc.want {
			t.Errorf("spamdSCL(%v, %v, %v) = %d, want %d", tc.score, tc.required, tc.spam, got, tc.want)
		}
	}
}

// TestSpamdEnvelope: spamd gets the gateway's Received field on top of the
// message, where SpamAssassin looks for the connecting client; without an
// envelope (scan) the message goes as it is.
func TestSpamdEnvelope(t *testing.T) {
	t.Parallel()
	got := make(chan spamdFakeReq, 2)
	addr := spamdFake(t, func(c net.Conn, req spamdFakeReq, _ <-chan struct{}) {
		got <- req
		io.WriteString(c, spamdReply("False", "1.0", "5.0", "NO_RELAYS"))
	})
	c := NewSpamd(addr, 5*time.Second)
	raw := extHam()
	rcvd := "Received: from mx.example.net ([192.0.2.7])\r\n\tby gw (sclgate) with ESMTP id 8F3A2C; Tue, 24 Nov 2026 06:00:00 +0000"
	ctx := WithEnvelope(context.Background(), &Envelope{ClientIP: netip.MustParseAddr("192.0.2.7"), Helo: "mx.example.net", Received: rcvd})
	if _, err := c.Classify(ctx, Parse(raw)); err != nil {
		t.Fatal(err)
	}
	req := <-got
	want := append([]byte(rcvd+"\r\n"), raw...)
	if !bytes.Equal(req.body, want) || req.header["content-length"] != strconv.Itoa(len(want)) {
		t.Errorf("body with envelope:\n%.200q\nwant\n%.200q", req.body, want)
	}
	if _, err := c.Classify(context.Background(), Parse(raw)); err != nil {
		t.Fatal(err)
	}
	if req := <-got; !bytes.Equal(req.body, raw) {
		t.Errorf("body without envelope: %.200q", req.body)
	}
}
