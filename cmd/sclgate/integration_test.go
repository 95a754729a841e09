package main

// Integration tests: the real sclgate binary, driven by swaks, relaying to
// Postfix's smtp-sink, all on 127.0.0.1. scripts/test.sh installs both
// tools; when one is missing these tests fail rather than skip, so a green
// run always means they ran.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sclgate/sclgate/internal/syncbuf"
	"github.com/sclgate/sclgate/internal/testcert"
	"github.com/sclgate/sclgate/internal/testnet"
	"golang.org/x/crypto/bcrypt"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds sclgate once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sclgate-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "sclgate")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// tool finds an external program or fails the test, naming the package.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("%s not found: install Debian package %s (scripts/test.sh does)", name, pkg)
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(t *testing.T, addr string, proc *exec.Cmd) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		if proc != nil && proc.ProcessState != nil {
			t.Fatalf("%s exited before listening", proc.Path)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listening on %s after 10s", addr)
}

// sink is a running smtp-sink that dumps each transaction into dir.
type sink struct {
	addr string
	dir  string
}

func startSink(t *testing.T, args ...string) *sink {
	t.Helper()
	bin := tool(t, "smtp-sink", "postfix")
	s := &sink{addr: freePort(t), dir: t.TempDir()}
	// smtp-sink drops to nobody when run as root: let it reach its dump
	// directory (t.TempDir's parent is 0700).
	os.Chmod(filepath.Dir(s.dir), 0o755)
	os.Chmod(s.dir, 0o777)
	full := []string{"-d", s.dir + "/%H%M%S."}
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		full = append(full, "-u", "nobody")
	}
	full = append(full, args...)
	// As startGW: a port found free may be taken before smtp-sink binds
	// it, and then it exits; it starts again on another, up to 5 times.
	for attempt := 1; attempt <= 5; attempt++ {
		cmd := exec.Command(bin, append(full, s.addr, "64")...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond); err == nil {
				c.Close()
				return s
			}
			select {
			case <-exited:
				deadline = time.Time{} // try another port
			default:
			}
		}
		select {
		case <-exited:
			s.addr = freePort(t)
		default:
			t.Fatalf("smtp-sink: nothing listening on %s after 10s", s.addr)
		}
	}
	t.Fatalf("smtp-sink exited 5 times before listening")
	return nil
}

// maildirOne waits up to 5 s for a message in the maildir dir, and
// returns it; a second one there fails the test.
func maildirOne(t *testing.T, dir string) string {
	t.Helper()
	var files []string
	for deadline := time.Now().Add(5 * time.Second); len(files) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(dir, "new", "*"))
	}
	if len(files) != 1 {
		t.Fatalf("%d messages in the maildir %s, want 1", len(files), dir)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// messages returns the dumped transactions, waiting up to 5s for want of them.
func (s *sink) messages(t *testing.T, want int) []string {
	t.Helper()
	var out []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		out = out[:0]
		files, _ := filepath.Glob(filepath.Join(s.dir, "*"))
		for _, f := range files {
			// smtp-sink opens a dump file when a transaction starts and
			// writes its envelope lines into it: a file with nothing
			// else is a transaction in progress or aborted, not mail.
			if b, _ := os.ReadFile(f); sinkMail(b) {
				out = append(out, string(b))
			}
		}
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sinkMail says whether an smtp-sink dump holds a message: a line other
// than the envelope lines smtp-sink writes first.
func sinkMail(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		name, _, _ := strings.Cut(l, ":")
		switch name {
		case "X-Client-Addr", "X-Client-Proto", "X-Helo-Args", "X-Mail-Args", "X-Rcpt-Args":
		default:
			return true
		}
	}
	return false
}

// gw is a running sclgate serve.
type gw struct {
	addr, metrics string
	dir, config   string
	cmd           *exec.Cmd
	log           *syncbuf.Buffer
	done          chan struct{} // closed when the process has exited
}

// startGW writes yaml (with listen, metrics.listen and archive.dir filled
// in unless given) and starts the binary on it. A port freePort found
// free may be taken before the binary binds it (another test's outgoing
// connection gets it as its local port): then it starts again on new
// ports, up to 5 times.
func startGW(t *testing.T, yaml string) *gw {
	t.Helper()
	for attempt := 1; ; attempt++ {
		if g := tryStartGW(t, yaml, attempt < 5); g != nil {
			return g
		}
	}
}

// tryStartGW is one attempt of startGW; it returns nil when the binary
// could not bind a port it was given by freePort and retry is set.
func tryStartGW(t *testing.T, yaml string, retry bool) *gw {
	t.Helper()
	ownPorts := !strings.Contains(yaml, "\nlisten:") && !strings.HasPrefix(yaml, "listen:") && !strings.Contains(yaml, "metrics:")
	g := &gw{addr: freePort(t), metrics: freePort(t), dir: t.TempDir(), log: &syncbuf.Buffer{}, done: make(chan struct{})}
	if !strings.Contains(yaml, "\nlisten:") {
		yaml = "listen: " + g.addr + "\n" + yaml
	}
	if !strings.Contains(yaml, "metrics:") {
		yaml += "\nmetrics:\n  listen: " + g.metrics + "\n"
	}
	if !strings.Contains(yaml, "archive:") {
		yaml += "\narchive:\n  dir: " + filepath.Join(g.dir, "archive") + "\n"
	}
	if !strings.Contains(yaml, "hostname:") {
		yaml += "\nhostname: gw.test\n"
	}
	// Most tests force SCLs with weight-list phrases and count exact
	// figures: they score with the rules alone unless they say otherwise.
	if !strings.Contains(yaml, "classifier:") {
		if strings.Contains(yaml, "filter:\n") {
			yaml = strings.Replace(yaml, "filter:\n", "filter:\n  classifier: none\n", 1)
		} else {
			yaml += "\nfilter:\n  classifier: none\n"
		}
	}
	g.config = filepath.Join(g.dir, "sclgate.yaml")
	if err := os.WriteFile(g.config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(binary(t), "serve", "-config", g.config)
	g.cmd.Dir = g.dir
	g.cmd.Stderr = g.log
	g.cmd.Stdout = g.log
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		g.cmd.Process.Kill()
		<-g.done
		if t.Failed() {
			t.Logf("sclgate log:\n%s", g.log.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", g.addr, 200*time.Millisecond); err == nil {
			c.Close()
			return g
		}
		select {
		case <-g.done:
			if retry && ownPorts && strings.Contains(g.log.String(), "address already in use") {
				return nil
			}
			t.Fatalf("sclgate serve exited before listening on %s:\n%s", g.addr, g.log.String())
		default:
		}
	}
	t.Fatalf("nothing listening on %s after 10s", g.addr)
	return nil
}

// waitLog waits up to 5s for the gateway's log to contain s.
func (g *gw) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns the value of one series on /metrics, e.g.
// `sclgate_messages_acted_upon_total{action="archive"}`.
func (g *gw) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + g.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("series %s not on /metrics", series)
	return 0
}

// swaks runs swaks against the gateway and returns its transcript.
func swaks(t *testing.T, server string, args ...string) string {
	t.Helper()
	bin := tool(t, "swaks", "swaks")
	full := append([]string{"--server", server, "--timeout", "20", "--helo", "client.test"}, args...)
	out, _ := exec.Command(bin, full...).CombinedOutput() // non-zero on any 4xx/5xx: the transcript says which
	return string(out)
}

// lastReply returns swaks' last reply line of the form "<~ NNN" / "<** NNN".
func reply(transcript, code string) bool {
	re := regexp.MustCompile(`(?m)^<[-~*]+ +` + regexp.QuoteMeta(code))
	return re.MatchString(transcript)
}

// weightsFile writes a weight list that forces SCLs by phrase.
func weightsFile(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "weights.xml")
	os.WriteFile(p, []byte(`<?xml version="1.0" encoding="UTF-8"?>
<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
  <CustomWeightEntry Type="BODY" Change="MAX" Text="casino jackpot"/>
  <CustomWeightEntry Type="SUBJECT" Change="MIN" Text="EDIT:"/>
  <CustomWeightEntry Type="BODY" Change="6" Text="cheap watches"/>
</CustomWeightEntries>
`), 0o644)
	return p
}

func header(msg, name string) (string, bool) {
	re := regexp.MustCompile(`(?mi)^` + regexp.QuoteMeta(name) + `: ?(.*(?:\r?\n[ \t].*)*)`)
	m := re.FindStringSubmatch(msg)
	if m == nil {
		return "", false
	}
	return m[1], true
}

func TestServeRelayStampsAndStripsSpoofedVerdicts(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\n")
	out := swaks(t, g.addr, "--to", "bob@example.com", "--from", "alice@example.org",
		"--header", "X-SCL: -1", "--header", "X-Spam-Flag: NO", "--header", "X-MS-Exchange-Organization-SCL: -1",
		"--header", "X-SCL-Report: all good", "--body", "hello bob")
	if !reply(out, "250 2.0.0 OK: queued as") {
		t.Fatalf("no 250 for DATA:\n%s", out)
	}
	msgs := s.messages(t, 1)
	if len(msgs) != 1 {
		t.Fatalf("%d messages at the sink", len(msgs))
	}
	m := msgs[0]
	if v, _ := header(m, "X-SCL"); v != "0" {
		t.Errorf("X-SCL = %q\n%s", v, m)
	}
	if v, _ := header(m, "X-SCL-Report"); !strings.Contains(v, "classifier=none") {
		t.Errorf("X-SCL-Report = %q", v)
	}
	for _, spoof := range []string{"X-SCL: -1", "X-Spam-Flag: NO", "X-MS-Exchange-Organization-SCL: -1", "all good"} {
		if strings.Contains(m, spoof) {
			t.Errorf("spoofed %q reached the downstream:\n%s", spoof, m)
		}
	}
	if !strings.Contains(m, "Received: from client.test ([127.0.0.1])") || !strings.Contains(m, "hello bob") {
		t.Errorf("trace field or body missing:\n%s", m)
	}
	if g.metric(t, "sclgate_messages_relayed_total") != 1 || g.metric(t, "sclgate_messages_scanned_total") != 1 ||
		g.metric(t, `sclgate_messages_scl_total{scl="0"}`) != 1 {
		t.Errorf("metrics do not count one relayed message")
	}
}

func TestServeGatewayActions(t *testing.T) {
	for _, action := range []string{"archive", "delete", "reject", "none"} {
		t.Run(action, func(t *testing.T) {
			s := startSink(t)
			dir := t.TempDir()
			g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  weights_file: %s\n  gateway_action: %s\n", s.addr, weightsFile(t, dir), action))
			out := swaks(t, g.addr, "--to", "bob@example.com", "--from", "spammer@spam.test", "--body", "win the casino jackpot now")
			switch action {
			case "reject":
				if !strings.Contains(out, "550 5.7.1 Message rejected as spam by content filtering") {
					t.Errorf("reject: %s", out)
				}
			default:
				if !reply(out, "250 ") || strings.Contains(out, "<** ") {
					t.Errorf("%s: want 250:\n%s", action, out)
				}
			}
			archived, _ := filepath.Glob(filepath.Join(g.dir, "archive", "*.eml"))
			wantArchived := 0
			if action == "archive" {
				wantArchived = 1
			}
			if len(archived) != wantArchived {
				t.Errorf("%d files archived, want %d", len(archived), wantArchived)
			}
			wantRelayed := 0
			if action == "none" {
				wantRelayed = 1
			}
			msgs := s.messages(t, wantRelayed)
			if len(msgs) != wantRelayed {
				t.Errorf("%d messages relayed, want %d", len(msgs), wantRelayed)
			}
			if action == "none" && len(msgs) == 1 {
				if v, _ := header(msgs[0], "X-SCL"); v != "9" {
					t.Errorf("X-SCL %q", v)
				}
				if v, _ := header(msgs[0], "X-Spam-Flag"); v != "YES" {
					t.Errorf("X-Spam-Flag %q", v)
				}
			}
			if got := g.metric(t, `sclgate_messages_acted_upon_total{action="`+action+`"}`); got != 1 {
				t.Errorf("acted_upon{%s} = %v", action, got)
			}
			if got := g.metric(t, `sclgate_messages_scl_total{scl="9"}`); got != 1 {
				t.Errorf("scl 9 count = %v", got)
			}
		})
	}
}

func TestServeSpamFlagAboveStoreThreshold(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  weights_file: %s\n", s.addr, weightsFile(t, dir)))
	swaks(t, g.addr, "--to", "bob@example.com", "--body", "cheap watches here")                                        // SCL 6 > 5: flagged, below 7: relayed
	swaks(t, g.addr, "--to", "bob@example.com", "--body", "nothing to see here")                                       // SCL 0
	swaks(t, g.addr, "--to", "bob@example.com", "--header", "Subject: EDIT: cheap watches", "--body", "cheap watches") // MIN: 0
	msgs := s.messages(t, 3)
	if len(msgs) != 3 {
		t.Fatalf("%d relayed", len(msgs))
	}
	flagged := map[string]bool{}
	for _, m := range msgs {
		scl, _ := header(m, "X-SCL")
		_, f := header(m, "X-Spam-Flag")
		flagged[scl] = f
		if scl == "6" && !f || scl == "0" && f {
			t.Errorf("X-SCL %s with X-Spam-Flag %v:\n%s", scl, f, m)
		}
	}
	if len(flagged) != 2 {
		t.Errorf("want SCLs 6 and 0, got %v", flagged)
	}
}

func TestServeArchiveFileFormat(t *testing.T) {
	for _, storeSCL := range []bool{true, false} {
		t.Run(fmt.Sprint("store_scl=", storeSCL), func(t *testing.T) {
			s := startSink(t)
			dir := t.TempDir()
			g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  weights_file: %s\narchive:\n  dir: %s\n  store_scl: %v\n",
				s.addr, weightsFile(t, dir), filepath.Join(dir, "arch"), storeSCL))
			out := swaks(t, g.addr, "--to", "bob@example.com,carol@example.com", "--from", "spammer@spam.test", "--body", "casino jackpot")
			if !reply(out, "250 2.0.0") {
				t.Fatalf("archive: %s", out)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "arch", "*.eml"))
			if len(files) != 1 {
				t.Fatalf("%d archive files", len(files))
			}
			if !regexp.MustCompile(`^\d{8}T\d{6}\.\d+Z-[a-z0-9]+\.eml$`).MatchString(filepath.Base(files[0])) {
				t.Errorf("file name %s is not <UTC time>-<id>.eml", filepath.Base(files[0]))
			}
			b, _ := os.ReadFile(files[0])
			want := "X-Sender: <spammer@spam.test>\r\nX-Receiver: <bob@example.com>\r\nX-Receiver: <carol@example.com>\r\n"
			if storeSCL {
				// With the SCL, the report that explains it.
				want += "X-SCL: 9\r\nX-SCL-Report: scl=9 classifier=none score=0 classifier_scl=0; rules: BODY MAX \"casino jackpot\"\r\n"
			}
			if !strings.HasPrefix(string(b), want) {
				t.Errorf("archive head:\n%q\nwant prefix\n%q", string(b[:min(len(b), 200)]), want)
			}
			rest := string(b[len(want):])
			if strings.HasPrefix(rest, "X-SCL") || !strings.Contains(rest, "casino jackpot") || !strings.Contains(rest, "Subject: test") {
				t.Errorf("message after the head is not the message as received:\n%s", rest)
			}
			if len(s.messages(t, 0)) != 0 {
				t.Error("archived message was relayed too")
			}
		})
	}
}

func TestServeRelayDenied(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\naccepted_domains: [example.com]\n")
	out := swaks(t, g.addr, "--to", "victim@elsewhere.test")
	if !strings.Contains(out, "550 5.7.1 Relaying denied") {
		t.Errorf("foreign domain:\n%s", out)
	}
	if g.metric(t, `sclgate_smtp_refusals_total{reason="relay_denied"}`) != 1 {
		t.Error("relay_denied not counted")
	}
	if len(s.messages(t, 0)) != 0 {
		t.Error("something was relayed")
	}
}

func TestServeDownstreamRejectionsPassThrough(t *testing.T) {
	s := startSink(t, "-f", "RCPT")
	g := startGW(t, "downstream: smtp://"+s.addr+"\n")
	out := swaks(t, g.addr, "--to", "bob@example.com")
	// smtp-sink's own words, passed through as they are.
	if !reply(out, "500 5.3.0 Error: command failed") {
		t.Errorf("RCPT rejection not passed through:\n%s", out)
	}
	s4 := startSink(t, "-r", ".")
	g4 := startGW(t, "downstream: smtp://"+s4.addr+"\n")
	out = swaks(t, g4.addr, "--to", "bob@example.com")
	if !reply(out, "450 4.3.0 Error: command failed") {
		t.Errorf("DATA 4xx not passed through:\n%s", out)
	}
	if g4.metric(t, "sclgate_messages_relayed_total") != 0 || g4.metric(t, `sclgate_relay_failures_total{reason="data"}`) != 1 {
		t.Error("metrics for a refused DATA")
	}
}

func TestServeDownstreamFailuresGive451(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		g := startGW(t, "downstream: smtp://"+testnet.RefusingAddr(t)+"\n") // nothing listens there
		out := swaks(t, g.addr, "--to", "bob@example.com")
		if !reply(out, "451 4.4.1") || reply(out, "250 2.0.0 OK") {
			t.Errorf("downstream down:\n%s", out)
		}
		if g.metric(t, `sclgate_relay_failures_total{reason="connect"}`) != 1 {
			t.Error("connect failure not counted")
		}
	})
	t.Run("drops mid-DATA", func(t *testing.T) {
		s := startSink(t, "-q", ".")
		g := startGW(t, "downstream: smtp://"+s.addr+"\n")
		out := swaks(t, g.addr, "--to", "bob@example.com")
		if !reply(out, "451 4.4.2") || reply(out, "250 2.0.0 OK") {
			t.Errorf("downstream dropped at the dot:\n%s", out)
		}
	})
	t.Run("slower than the timeout", func(t *testing.T) {
		s := startSink(t, "-w", "5")
		g := startGW(t, "downstream: smtp://"+s.addr+"\nlimits:\n  downstream_timeout: 1s\n")
		out := swaks(t, g.addr, "--to", "bob@example.com")
		if !reply(out, "451 ") || reply(out, "250 2.0.0 OK") {
			t.Errorf("slow downstream:\n%s", out)
		}
		if g.metric(t, `sclgate_relay_failures_total{reason="timeout"}`) != 1 {
			t.Error("timeout not counted")
		}
	})
}

func TestServeArchiveUnwritableGives451(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-a-dir")
	os.WriteFile(blocker, []byte("x"), 0o644)
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  weights_file: %s\narchive:\n  dir: %s\n",
		s.addr, weightsFile(t, dir), dir+"/arch"))
	// Break the archive after start: the directory becomes a file.
	os.RemoveAll(filepath.Join(dir, "arch"))
	os.WriteFile(filepath.Join(dir, "arch"), []byte("x"), 0o644)
	out := swaks(t, g.addr, "--to", "bob@example.com", "--body", "casino jackpot")
	if !reply(out, "451 4.3.0") || reply(out, "250 2.0.0 OK") {
		t.Errorf("archive unwritable:\n%s", out)
	}
	if len(s.messages(t, 0)) != 0 {
		t.Error("message relayed instead")
	}
	if g.metric(t, `sclgate_relay_failures_total{reason="archive"}`) != 1 {
		t.Error("archive failure not counted")
	}
}

func TestServeOversize(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\nlimits:\n  max_message_bytes: 2000\n")
	out := swaks(t, g.addr, "--to", "bob@example.com", "--body", strings.Repeat("0123456789 ", 400))
	if !regexp.MustCompile(`250[- ]SIZE 2000\r?\n`).MatchString(out) || !reply(out, "552 ") {
		t.Errorf("oversize:\n%s", out)
	}
	if len(s.messages(t, 0)) != 0 {
		t.Error("oversize message relayed")
	}
}

// startAuthGW starts a gateway with STARTTLS (a throwaway certificate) and
// the user alice, password s3cret, relaying to a new smtp-sink; extra is
// more YAML.
func startAuthGW(t *testing.T, extra string) (*gw, *sink) {
	t.Helper()
	s := startSink(t)
	cert, key := selfSigned(t, t.TempDir())
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	return startGW(t, fmt.Sprintf("downstream: smtp://%s\ntls:\n  cert_file: %s\n  key_file: %s\nauth:\n  users:\n    alice: %q\n%s",
		s.addr, cert, key, hash, extra)), s
}

func TestServeStartTLSThenAuth(t *testing.T) {
	g, s := startAuthGW(t, "")

	// Without TLS no AUTH is offered.
	out := swaks(t, g.addr, "--to", "bob@example.com", "--quit-after", "EHLO")
	if strings.Contains(out, "AUTH") || !strings.Contains(out, "STARTTLS") {
		t.Errorf("plain EHLO:\n%s", out)
	}
	// Wrong password.
	out = swaks(t, g.addr, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong", "--to", "x@elsewhere.test")
	if !reply(out, "535 5.7.8") {
		t.Errorf("bad password:\n%s", out)
	}
	// Authenticated clients may relay anywhere and are not filtered.
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		out = swaks(t, g.addr, "--tls", "--auth", mech, "--auth-user", "alice", "--auth-password", "s3cret", "--to", "friend@elsewhere.test")
		if !reply(out, "235 ") || !reply(out, "250 2.0.0 OK") {
			t.Errorf("AUTH %s:\n%s", mech, out)
		}
	}
	msgs := s.messages(t, 2)
	if len(msgs) != 2 {
		t.Fatalf("%d relayed", len(msgs))
	}
	for _, m := range msgs {
		if v, _ := header(m, "X-SCL"); v != "-1" {
			t.Errorf("authenticated mail X-SCL = %q", v)
		}
		if v, _ := header(m, "X-SCL-Report"); v != "unfiltered: authenticated client" {
			t.Errorf("authenticated mail X-SCL-Report = %q", v)
		}
		if !strings.Contains(m, "with ESMTPSA") {
			t.Errorf("Received does not say ESMTPSA:\n%s", m)
		}
	}
}

func TestServeProxyProtocol(t *testing.T) {
	s := startSink(t)
	proxyArgs := []string{"--proxy-version", "1", "--proxy-family", "TCP4", "--proxy-source", "203.0.113.7",
		"--proxy-source-port", "40000", "--proxy-dest", "127.0.0.1", "--proxy-dest-port", "25"}

	// From a listed balancer: the header's address is the client.
	g := startGW(t, "downstream: smtp://"+s.addr+"\nproxy_protocol: [127.0.0.1]\n")
	out := swaks(t, g.addr, append([]string{"--to", "bob@example.com"}, proxyArgs...)...)
	if !reply(out, "250 2.0.0 OK") {
		t.Fatalf("via PROXY:\n%s", out)
	}
	msgs := s.messages(t, 1)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Received: from client.test ([203.0.113.7])") {
		t.Errorf("PROXY address not used:\n%v", msgs)
	}
	// An IPv6 client, through PROXY v2, greeting with HELO: the
	// Received field has RFC 5321's IPv6 address-literal, and SMTP, not
	// ESMTP, for a HELO session.
	out = swaks(t, g.addr, "--to", "bob@example.com", "--protocol", "SMTP", "--proxy-version", "2", "--proxy-family", "AF_INET6",
		"--proxy-source", "2001:db8::99", "--proxy-source-port", "40000", "--proxy-dest", "::1", "--proxy-dest-port", "25")
	if !reply(out, "250 2.0.0 OK") {
		t.Fatalf("via PROXY v2 from IPv6:\n%s", out)
	}
	msgs = s.messages(t, 2)
	v6 := regexp.MustCompile(`Received: from client\.test \(\[IPv6:2001:db8::99\]\)\r?\n\tby \S+ \(sclgate\) with SMTP id `)
	if len(msgs) != 2 || !v6.MatchString(msgs[0]) && !v6.MatchString(msgs[1]) {
		t.Errorf("IPv6 HELO client's Received field:\n%v", msgs)
	}

	// From anyone else: not honoured.
	s2 := startSink(t)
	g2 := startGW(t, "downstream: smtp://"+s2.addr+"\nproxy_protocol: [192.0.2.1]\n")
	out = swaks(t, g2.addr, append([]string{"--to", "bob@example.com"}, proxyArgs...)...)
	// The PROXY line is just an unknown command to sclgate here: answered
	// with an error, and the session goes on with the real address.
	if !regexp.MustCompile(`(?m)^<\*\* 5\d\d 5\.5\.\d `).MatchString(out) {
		t.Errorf("PROXY line from an unlisted client not refused as a command:\n%s", out)
	}
	for _, m := range s2.messages(t, 1) {
		if strings.Contains(m, "203.0.113.7") || !strings.Contains(m, "([127.0.0.1])") {
			t.Errorf("PROXY header honoured from an unlisted client:\n%s", m)
		}
	}
}

func TestServeMetricsCountExactly(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  weights_file: %s\n  gateway_action: reject\n", s.addr, weightsFile(t, dir)))
	for i := 0; i < 3; i++ {
		swaks(t, g.addr, "--to", "bob@example.com", "--body", "plain mail")
	}
	swaks(t, g.addr, "--to", "bob@example.com", "--body", "cheap watches")
	swaks(t, g.addr, "--to", "bob@example.com", "--body", "casino jackpot")
	swaks(t, g.addr, "--to", "x@elsewhere.test")
	want := map[string]float64{
		"sclgate_messages_scanned_total":                      5,
		"sclgate_messages_relayed_total":                      4,
		`sclgate_messages_scl_total{scl="0"}`:                 3,
		`sclgate_messages_scl_total{scl="6"}`:                 1,
		`sclgate_messages_scl_total{scl="9"}`:                 1,
		`sclgate_messages_acted_upon_total{action="reject"}`:  1,
		`sclgate_messages_acted_upon_total{action="archive"}`: 0,
		`sclgate_smtp_refusals_total{reason="relay_denied"}`:  1,
		"sclgate_scan_duration_seconds_count":                 5,
		"sclgate_weights_entries":                             3,
		"sclgate_sessions_active":                             0,
	}
	for series, v := range want {
		if got := g.metric(t, series); got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	resp, err := http.Get("http://" + g.metrics + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz: %v %v", resp, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(b)) != "ok" {
		t.Errorf("/healthz body %q", b)
	}
	for _, name := range []string{"sclgate_build_info{", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(scrape(t, g), name) {
			t.Errorf("%s missing from /metrics", name)
		}
	}
}

func scrape(t *testing.T, g *gw) string {
	resp, err := http.Get("http://" + g.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// smtpConn is a raw SMTP client for the signal tests, where one session
// must span a reload or a shutdown.
type smtpConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialSMTP(t *testing.T, addr string) *smtpConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &smtpConn{t: t, c: c, r: bufio.NewReader(c)}
	s.expect("220")
	s.cmd("EHLO client.test", "250")
	return s
}

// expect reads one reply (all its lines) and checks its code.
func (s *smtpConn) expect(code string) string {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var all string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading reply: %v (so far %q)", err, all)
		}
		all += line
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	if !strings.HasPrefix(all, code) {
		s.t.Fatalf("reply %q, want %s", all, code)
	}
	return all
}

func (s *smtpConn) cmd(line, code string) string {
	s.t.Helper()
	fmt.Fprintf(s.c, "%s\r\n", line)
	return s.expect(code)
}

// startTLS says STARTTLS and goes on over TLS (any certificate).
func (s *smtpConn) startTLS() {
	s.t.Helper()
	s.cmd("STARTTLS", "220")
	tc := tls.Client(s.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		s.t.Fatal(err)
	}
	s.c, s.r = tc, bufio.NewReader(tc)
}

func (s *smtpConn) send(body, code string) string {
	s.t.Helper()
	s.cmd("MAIL FROM:<a@example.org>", "250")
	s.cmd("RCPT TO:<bob@example.com>", "250")
	s.cmd("DATA", "354")
	fmt.Fprintf(s.c, "Subject: test\r\n\r\n%s\r\n.\r\n", body)
	return s.expect(code)
}

// Failed AUTHs count toward limits.max_errors like other refusals, and
// over the whole session: password guessing in one session ends with 421
// and a close, whatever else the session delivers.
func TestServeAuthGuessingDisconnects(t *testing.T) {
	g, _ := startAuthGW(t, "limits:\n  max_errors: 3\n")
	c := dialSMTP(t, g.addr)
	c.startTLS()
	c.cmd("EHLO client.test", "250")
	wrong := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong"))
	c.cmd(wrong, "535 5.7.8")
	c.cmd(wrong, "535 5.7.8")
	// A delivered message does not buy more guesses (it does forgive
	// other refusals: limits.max_errors counts those since the last
	// delivery).
	c.send("a cheap message", "250")
	c.cmd(wrong, "421 4.7.0")
	if err := c.c.SetReadDeadline(time.Now().Add(5 * time.Second)); err == nil {
		if _, err := c.r.ReadByte(); err == nil {
			t.Error("connection still open after 421")
		}
	}
}

func TestServeSIGHUPThresholdNextMessageSameSession(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	w := weightsFile(t, dir)
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  weights_file: %s\n  gateway_action: reject\n", s.addr, w))
	c := dialSMTP(t, g.addr)
	c.send("cheap watches", "250") // SCL 6 < 7: relayed

	cfg, _ := os.ReadFile(g.config)
	os.WriteFile(g.config, bytes.Replace(cfg, []byte("gateway_action: reject"), []byte("gateway_action: reject\n  gateway_threshold: 5"), 1), 0o644)
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog(t, "gateway_threshold=5")
	g.waitLog(t, "changed=[filter.gateway_threshold]") // what the reload changed

	c.send("cheap watches", "550 5.7.1 Message rejected as spam") // same session, new threshold
	c.cmd("QUIT", "221")
	if n := len(s.messages(t, 1)); n != 1 {
		t.Errorf("%d relayed, want 1", n)
	}

	// A restart-only setting changed is said to need a restart; put back
	// as serve started with it, it is not (it was compared with the last
	// reload, so the warning came again).
	const warn = "changed settings that apply only after a restart: limits.max_connections; the other settings apply now"
	cfg, _ = os.ReadFile(g.config)
	os.WriteFile(g.config, append(cfg, "\nlimits:\n  max_connections: 7\n"...), 0o644)
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog(t, warn)
	os.WriteFile(g.config, cfg, 0o644)
	g.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(g.log.String(), "configuration reloaded") < 3 {
		if time.Now().After(deadline) {
			t.Fatal("third reload never logged")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(g.log.String(), warn); n != 1 {
		t.Errorf("restart warning logged %d times, want 1 (not after putting the setting back)", n)
	}

	// TLS files are read only at start: a reload to a pair that does not
	// load says so now, not at the restart that would then fail.
	_, key := selfSigned(t, dir)
	os.WriteFile(g.config, append(cfg, fmt.Sprintf("\ntls:\n  cert_file: %s\n  key_file: %s\n", key, key)...), 0o644)
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog(t, "the tls files do not load now")
}

func TestServeSIGTERMFinishesTransactionInFlight(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\nlimits:\n  shutdown_timeout: 10s\n")
	idle := dialSMTP(t, g.addr)
	c := dialSMTP(t, g.addr)
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<bob@example.com>", "250")
	c.cmd("DATA", "354")
	fmt.Fprintf(c.c, "Subject: in flight\r\n\r\nfirst half\r\n")

	start := time.Now()
	g.cmd.Process.Signal(syscall.SIGTERM)
	g.waitLog(t, "shutting down")

	// New connections get 421 4.3.2 while the transaction finishes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", g.addr, time.Second)
		if err != nil {
			t.Fatalf("new connection refused by the kernel after SIGTERM: %v", err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if strings.HasPrefix(line, "421 4.3.2 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connection greeted with %q after SIGTERM", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The idle session is told 421 4.3.2 and closed (RFC 5321 section 3.8).
	expect421Close(t, "idle session", idle.c, idle.r)
	// /healthz says so too, for a load balancer that checks it: 503.
	if resp, err := http.Get("http://" + g.metrics + "/healthz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/healthz while draining: %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}

	// The message in flight completes, then its session is closed the
	// same way.
	fmt.Fprintf(c.c, "second half\r\n.\r\n")
	c.expect("250")
	expect421Close(t, "session after its transaction", c.c, c.r)
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		t.Fatal("sclgate did not exit within the bound")
	}
	if el := time.Since(start); el > 12*time.Second {
		t.Errorf("exit took %v", el)
	}
	msgs := s.messages(t, 1)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "second half") {
		t.Errorf("in-flight message not delivered whole: %v", msgs)
	}
}

// expect421Close reads one line, which must be a 421 4.3.2, and then the
// end of the connection.
func expect421Close(t *testing.T, what string, c net.Conn, r *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := r.ReadString('\n')
	if !strings.HasPrefix(line, "421 4.3.2 ") {
		t.Errorf("%s: got %q (%v) on SIGTERM, want 421 4.3.2", what, line, err)
	}
	if more, err := r.ReadString('\n'); err == nil || more != "" {
		t.Errorf("%s: %q after the 421, want the connection closed (%v)", what, more, err)
	}
}

// Idle sessions under TLS are told 421 inside TLS; a client that has
// started TLS but not yet said EHLO again has no session, and gets no
// plaintext line in its TLS stream, only the close.
func TestServeSIGTERMUnderTLS(t *testing.T) {
	g, _ := startAuthGW(t, "")
	starttls := func(ehlo bool) *smtpConn {
		c := dialSMTP(t, g.addr)
		c.startTLS()
		if ehlo {
			c.cmd("EHLO client.test", "250")
		}
		return c
	}
	withSession, noSession := starttls(true), starttls(false)
	// STARTTLS straight after the greeting, with no EHLO at all (go-smtp
	// allows it): there never was a session to say the connection is TLS.
	raw, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	early := &smtpConn{t: t, c: raw, r: bufio.NewReader(raw)}
	early.expect("220")
	early.startTLS()
	g.cmd.Process.Signal(syscall.SIGTERM)
	expect421Close(t, "TLS session", withSession.c, withSession.r)
	for what, c := range map[string]*smtpConn{"TLS after EHLO, no session yet": noSession, "TLS before any EHLO": early} {
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := c.r.ReadByte(); err == nil {
			t.Errorf("%s: read %q, want the connection closed", what, b)
		} else if errors.Is(err, os.ErrDeadlineExceeded) || strings.Contains(err.Error(), "record") {
			t.Errorf("%s: %v, want a plain close", what, err)
		}
	}
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		t.Fatal("sclgate did not exit")
	}
}

func TestServeCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("filter:\n  gateway_threshold: 8\n"), 0o644)
	out, err := exec.Command(binary(t), "serve", "-check", "-config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Errorf("good config: %v %s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("filter:\n  gateway_treshold: 8\n"), 0o644)
	out, err = exec.Command(binary(t), "serve", "-check", "-config", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "gateway_treshold") {
		t.Errorf("bad config: %v %s", err, out)
	}
	// A weight list that is not there: serve runs without rules until it
	// appears (a lost file must not keep the gateway from starting after
	// ExecStartPre's check), and the check names the missing file, since
	// a typo in the path would drop every rule.
	missing := filepath.Join(dir, "missing.yaml")
	os.WriteFile(missing, []byte("filter:\n  weights_file: "+filepath.Join(dir, "wieghts.xml")+"\n"), 0o644)
	cmd := exec.Command(binary(t), "serve", "-check", "-config", missing)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), "configuration OK") ||
		!strings.HasPrefix(stderr.String(), "warning: config: "+missing+": line 2: filter.weights_file: "+filepath.Join(dir, "wieghts.xml")+" does not exist") {
		t.Errorf("missing weight list: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	// What serve would fail on at start is refused by the check, naming
	// the configuration file: an archive.dir it cannot create (under a
	// file), a downstream port no dial can use, TLS files that are not
	// there. (A directory serve can create is fine, and is not created.)
	os.WriteFile(filepath.Join(dir, "afile"), nil, 0o644)
	_, tlsKey := selfSigned(t, dir)
	for name, c := range map[string]struct{ yaml, want string }{
		"archive under a file": {"archive:\n  dir: " + filepath.Join(dir, "afile", "archive") + "\n", "archive.dir: " + filepath.Join(dir, "afile") + " is not a directory"},
		"downstream port":      {"downstream: smtp://127.0.0.1:99999\n", `port "99999": want a number from 1 to 65535`},
		"tls files":            {"tls:\n  cert_file: " + filepath.Join(dir, "no.pem") + "\n  key_file: " + filepath.Join(dir, "no.key") + "\n", "line 2: tls.cert_file: open " + filepath.Join(dir, "no.pem")},
		// crypto/tls's own error, with the files and the line.
		"tls pair": {"tls:\n  cert_file: " + tlsKey + "\n  key_file: " + tlsKey + "\n", "line 2: tls.cert_file: " + tlsKey + " and " + tlsKey + ": failed to find certificate PEM data"},
		// Not waited on for ever (it was, silently).
		"tls fifo": {"tls:\n  cert_file: " + filepath.Join(dir, "cert.fifo") + "\n  key_file: " + filepath.Join(dir, "no.key") + "\n", "line 2: tls.cert_file: " + filepath.Join(dir, "cert.fifo") + ": is not a regular file"},
		"downstream ca_file": {"downstream: smtp://127.0.0.1:25\ndownstream_tls:\n  mode: verify\n  ca_file: " + filepath.Join(dir, "no-ca.pem") + "\n",
			"line 4: downstream_tls.ca_file: open " + filepath.Join(dir, "no-ca.pem")},
		"downstream ca_file not PEM": {"downstream: smtp://127.0.0.1:25\ndownstream_tls:\n  mode: verify\n  ca_file: " + tlsKey + "\n",
			"line 4: downstream_tls.ca_file: " + tlsKey + ": no PEM certificate in it"},
	} {
		if err := syscall.Mkfifo(filepath.Join(dir, "cert.fifo"), 0o644); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		os.WriteFile(f, []byte(c.yaml), 0o644)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, binary(t), "serve", "-check", "-config", f).CombinedOutput()
		cancel()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), f+": ") || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: %v %s", name, err, out)
		}
	}
	f := filepath.Join(dir, "newdir.yaml")
	os.WriteFile(f, []byte("archive:\n  dir: "+filepath.Join(dir, "new", "archive")+"\n"), 0o644)
	if out, err := exec.Command(binary(t), "serve", "-check", "-config", f).CombinedOutput(); err != nil {
		t.Errorf("archive.dir to be created: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("the check created the archive directory: %v", err)
	}
}

// selfSigned writes a throwaway certificate for 127.0.0.1.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	c := testcert.SelfSigned(t, "gw.test", "127.0.0.1")
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, c.CertPEM, 0o644)
	os.WriteFile(keyFile, c.KeyPEM, 0o600)
	return certFile, keyFile
}

func TestServeConnectionLimits(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\nlimits:\n  max_connections_per_ip: 2\n")
	a := dialSMTP(t, g.addr)
	b := dialSMTP(t, g.addr)
	c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "421 4.7.0 ") {
		t.Errorf("third connection from one address: %q %v", line, err)
	}
	if g.metric(t, `sclgate_smtp_refusals_total{reason="too_many_connections"}`) != 1 {
		t.Error("refusal not counted")
	}
	// And logged with the client, as Postfix logs its concurrency limit.
	g.waitLog(t, `connection refused: too many connections" limit=max_connections_per_ip client=127.0.0.1`)
	// A slot freed is a slot available again (once sclgate has closed
	// its side of the connection).
	a.cmd("QUIT", "221")
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.HasPrefix(line, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never freed: %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.cmd("QUIT", "221")
}

// A dead external engine: each message is scored by the built-in model
// instead, the reply is still 250, the report says who scored it, and
// sclgate_classifier_errors_total{classifier} counts each failure; its
// series is on /metrics at 0 before the first one.
func TestServeClassifierDownFallsBack(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\nfilter:\n  classifier: spamd://"+testnet.RefusingAddr(t)+"\n  classifier_timeout: 2s\n")
	if v := g.metric(t, `sclgate_classifier_errors_total{classifier="spamd"}`); v != 0 {
		t.Fatalf("classifier errors before any mail: %v", v)
	}
	for i := range 2 {
		out := swaks(t, g.addr, "--to", "bob@example.com", "--body", fmt.Sprintf("message %d", i))
		if !reply(out, "250 2.0.0 OK") {
			t.Fatalf("with spamd down:\n%s", out)
		}
	}
	for _, m := range s.messages(t, 2) {
		if v, _ := header(m, "X-SCL-Report"); !strings.Contains(v, "classifier=builtin (spamd failed)") {
			t.Errorf("X-SCL-Report %q", v)
		}
	}
	if v := g.metric(t, `sclgate_classifier_errors_total{classifier="spamd"}`); v != 2 {
		t.Errorf("classifier errors = %v, want 2", v)
	}
}

// A STARTTLS whose handshake fails goes on in plaintext (go-smtp answers
// 550): the session's guards and its error count work there as before the
// attempt, so errors still end it at limits.max_errors.
func TestServeFailedStartTLSStillCounts(t *testing.T) {
	g, _ := startAuthGW(t, "limits:\n  max_errors: 3\n")
	c := dialSMTP(t, g.addr)
	c.cmd("STARTTLS", "220")
	// Only a cipher suite the server does not take: the handshake fails
	// after the server has read the ClientHello.
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_RC4_128_SHA}})
	if err := tc.Handshake(); err == nil {
		t.Fatal("handshake succeeded")
	}
	// go-smtp's "550 Handshake error", the first error, may have been
	// read by the TLS client along with the server's alert.
	fmt.Fprintf(c.c, "RCPT TO:<bob@example.com>\r\n")
	if out := c.expect("5"); strings.HasPrefix(out, "550") {
		c.expect("502")
	}
	c.cmd("MAIL FROM:x", "501")
	c.expect("421 4.7.0")
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadByte(); err == nil {
		t.Error("connection still open after 421")
	}
}

// What a client sends after STARTTLS, before the handshake, is dropped
// (RFC 3207): it neither runs as a command nor breaks the handshake.
// After a failed handshake, an idle client gets go-smtp's idle 421, not a
// silent close.
func TestServeStartTLSDropsPipelined(t *testing.T) {
	g, _ := startAuthGW(t, "limits:\n  command_timeout: 2s\n")
	c := dialSMTP(t, g.addr)
	fmt.Fprintf(c.c, "STARTTLS\r\nMAIL FROM:<evil@b.test>\r\n")
	c.expect("220")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after pipelined plaintext: %v", err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
	c.cmd("EHLO client.test", "250")
	c.cmd("RCPT TO:<bob@example.com>", "502") // no MAIL was taken

	c = dialSMTP(t, g.addr)
	c.cmd("STARTTLS", "220")
	bad := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_RC4_128_SHA}})
	if err := bad.Handshake(); err == nil {
		t.Fatal("handshake succeeded")
	}
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, _ := io.ReadAll(c.r)
	if !strings.Contains(string(all), "421 ") {
		t.Errorf("idle after a failed handshake: %q, want go-smtp's 421", all)
	}
	// The same when the handshake fails on its first bytes (no ClientHello
	// at all).
	c = dialSMTP(t, g.addr)
	c.cmd("STARTTLS", "220")
	fmt.Fprintf(c.c, "hello\r\n")
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, _ = io.ReadAll(c.r)
	if !strings.Contains(string(all), "550 ") || !strings.Contains(string(all), "421 ") {
		t.Errorf("idle after a handshake of plaintext: %q, want 550 then go-smtp's 421", all)
	}
}

// Two sclgates in a row, the second as the first one's mailbox server:
// downstream_tls verify takes the CA from ca_file, the message arrives
// over TLS (the second's Received field says ESMTPS), and a certificate
// for another name defers mail with a 451, logged and counted.
func TestServeDownstreamTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	cert := ca.Issue(t, "mailbox.test")
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "mailbox.pem"), filepath.Join(dir, "mailbox.key")
	os.WriteFile(caFile, ca.PEM, 0o644)
	os.WriteFile(certFile, cert.CertPEM, 0o644)
	os.WriteFile(keyFile, cert.KeyPEM, 0o600)
	maildir := filepath.Join(dir, "maildir")
	mailbox := startGW(t, "downstream: maildir:"+maildir+"\ntls:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\n")

	front := startGW(t, "downstream: smtp://"+mailbox.addr+"\ndownstream_tls:\n  mode: verify\n  ca_file: "+caFile+"\n  server_name: mailbox.test\n")
	if out := swaks(t, front.addr, "--to", "bob@example.com", "--body", "over TLS"); !reply(out, "250 ") {
		t.Fatalf("relay over TLS:\n%s", out)
	}
	msg := []byte(maildirOne(t, maildir))
	if !regexp.MustCompile(`Received: from gw\.test \(\[127\.0\.0\.1\]\)\r?\n\tby gw\.test \(sclgate\) with ESMTPS `).Match(msg) {
		t.Errorf("the mailbox's Received field does not say TLS:\n%s", msg)
	}
	if n := front.metric(t, `sclgate_downstream_connections_total{tls="yes"}`); n != 1 {
		t.Errorf("downstream connections over TLS: %v, want 1", n)
	}

	other := startGW(t, "downstream: smtp://"+mailbox.addr+"\ndownstream_tls:\n  mode: verify\n  ca_file: "+caFile+"\n  server_name: other.test\n")
	if out := swaks(t, other.addr, "--to", "bob@example.com", "--body", "not for other.test"); !reply(out, "451 4.4.1 ") {
		t.Errorf("certificate for another name:\n%s", out)
	}
	other.waitLog(t, "TLS with the downstream failed; message deferred")
	other.waitLog(t, "certificate is valid for mailbox.test, not other.test")
	if n := other.metric(t, `sclgate_relay_failures_total{reason="tls"}`); n != 1 {
		t.Errorf("relay failures for TLS: %v, want 1", n)
	}
}

// SMTPUTF8 (RFC 6531) end to end. A first sclgate before a second one,
// which offers it too and delivers into a maildir, passes UTF-8 addresses
// and header fields on as they came; before smtp-sink, which does not
// offer it, a recipient with a UTF-8 local part gets 553 5.6.7, one with
// only a UTF-8 domain goes in A-labels, and ASCII mail that asked for
// SMTPUTF8 goes as it is.
func TestServeSMTPUTF8(t *testing.T) {
	md := filepath.Join(t.TempDir(), "md")
	inner := startGW(t, "downstream: maildir:"+md+"\naccepted_domains: [bücher.test]\n")
	outer := startGW(t, "downstream: smtp://"+inner.addr+"\naccepted_domains: [bücher.test]\n")
	c := dialSMTP(t, outer.addr)
	if ehlo := c.cmd("EHLO client.test", "250"); !strings.Contains(ehlo, "250-SMTPUTF8\r\n") && !strings.Contains(ehlo, "250 SMTPUTF8\r\n") {
		t.Fatalf("EHLO does not offer SMTPUTF8:\n%s", ehlo)
	}
	c.cmd("MAIL FROM:<jörg@sender.test> SMTPUTF8", "250")
	c.cmd("RCPT TO:<δοκιμή@Bücher.test>", "250")
	c.cmd("DATA", "354")
	fmt.Fprintf(c.c, "From: Jörg <jörg@sender.test>\r\nSubject: Grüße\r\n\r\nhello\r\n.\r\n")
	c.expect("250")
	m := maildirOne(t, md)
	for _, want := range []string{"Return-Path: <jörg@sender.test>\r\n", "Delivered-To: δοκιμή@Bücher.test\r\n", "Subject: Grüße\r\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, m)
		}
	}
	if n := strings.Count(m, " with UTF8SMTP id "); n != 2 {
		t.Errorf("%d Received fields say UTF8SMTP, want 2 (one per sclgate):\n%s", n, m)
	}

	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\naccepted_domains: [bücher.test]\n")
	c = dialSMTP(t, g.addr)
	c.cmd("MAIL FROM:<bob@sender.test> SMTPUTF8", "250")
	c.cmd("RCPT TO:<δοκιμή@bücher.test>", "553 5.6.7")
	c.cmd("RCPT TO:<carol@bücher.test>", "250")
	c.cmd("DATA", "354")
	fmt.Fprintf(c.c, "Subject: Grüße\r\n\r\nhello\r\n.\r\n")
	c.expect("250")
	msgs := s.messages(t, 1)
	if len(msgs) != 1 {
		t.Fatalf("smtp-sink got %d messages, want 1", len(msgs))
	}
	if v, _ := header(msgs[0], "X-Rcpt-Args"); v != "<carol@xn--bcher-kva.test>" {
		t.Errorf("smtp-sink got RCPT %q, want the domain in A-labels", v)
	}
	if v, _ := header(msgs[0], "X-Mail-Args"); !strings.HasPrefix(v, "<bob@sender.test>") || strings.Contains(v, "SMTPUTF8") {
		t.Errorf("smtp-sink got MAIL %q, want no SMTPUTF8 (it offers none)", v)
	}
	if got := g.metric(t, `sclgate_relay_failures_total{reason="smtputf8"}`); got != 1 {
		t.Errorf("relay_failures{smtputf8} = %v, want 1", got)
	}
	g.waitLog(t, `msg="address refused: it needs SMTPUTF8, which the downstream does not offer" client=127.0.0.1 helo=client.test step=rcpt`)
}
