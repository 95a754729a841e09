package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/internal/syncbuf"
	"github.com/sclgate/sclgate/proxy"
	"github.com/sclgate/sclgate/update"
)

// builtinAs is the built-in bundle re-labelled as another version: a real,
// loadable model for update tests.
func builtinAs(t *testing.T, version string) string {
	t.Helper()
	b, err := defs.Read(bytes.NewReader(defs.Builtin()), defs.DefaultMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	b.Manifest.Version = version
	var buf bytes.Buffer
	if err := defs.Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), defs.FileName(version))
	os.WriteFile(p, buf.Bytes(), 0o644)
	return p
}

// serveDir serves dir over HTTP on 127.0.0.1, through handler wrap if given.
func serveDir(t *testing.T, dir string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = http.FileServer(http.Dir(dir))
	if wrap != nil {
		h = wrap(h)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// waitMetric polls /metrics until series has value want (bounded).
func (g *gw) waitMetric(t *testing.T, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if strings.Contains(scrape(t, g), fmt.Sprintf("%s %v\n", series, want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became %v:\n%s", series, want, grepLines(scrape(t, g), "sclgate_definitions"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestServeDefinitionsPublishInstallHotSwitchRollback(t *testing.T) {
	dir := t.TempDir()
	pub, priv, _ := defs.GenerateKey("")
	pubFile := filepath.Join(dir, "release.pub")
	os.WriteFile(pubFile, pub, 0o644)
	site := filepath.Join(dir, "site")
	if _, err := update.Publish(site, priv, "", []string{builtinAs(t, "2027.01.1")}); err != nil {
		t.Fatal(err)
	}
	url := serveDir(t, site, nil)

	s := startSink(t)
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  classifier: builtin\n  weights_file: %s\ndefinitions:\n  dir: %s\nupdates:\n  source: %s\n  trusted_keys: [%s]\n",
		s.addr, weightsFile(t, dir), filepath.Join(dir, "defs"), url, pubFile))
	builtin, _ := defs.Read(bytes.NewReader(defs.Builtin()), defs.DefaultMaxSize)
	g.waitMetric(t, `sclgate_definitions_info{version="`+builtin.Manifest.Version+`"}`, 1)

	// A session opened before the switch and kept open across it.
	c := dialSMTP(t, g.addr)
	c.send("before the switch", "250")

	run := func(args ...string) (int, string) {
		cmd := exec.Command(binary(t), append(args, "-config", g.config)...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	if code, out := run("update", "detect"); code != 10 {
		t.Fatalf("detect: %d %s", code, out)
	}
	if code, out := run("update", "install"); code != 0 {
		t.Fatalf("install: %d %s", code, out)
	}
	g.waitMetric(t, `sclgate_definitions_info{version="2027.01.1"}`, 1)
	c.send("after the switch", "250") // same session: not dropped

	update.Publish(site, priv, "", []string{builtinAs(t, "2027.02.1")})
	if code, out := run("update", "install"); code != 0 {
		t.Fatalf("install 2: %d %s", code, out)
	}
	g.waitMetric(t, `sclgate_definitions_info{version="2027.02.1"}`, 1)
	c.send("after the second switch", "250")

	if code, out := run("update", "rollback"); code != 0 || !strings.Contains(out, "from 2027.02.1 to 2027.01.1") {
		t.Fatalf("rollback: %d %s", code, out)
	}
	g.waitMetric(t, `sclgate_definitions_info{version="2027.01.1"}`, 1)
	c.send("after the rollback", "250")
	c.cmd("QUIT", "221")

	// An install followed at once by a reload that restarts the
	// background loops (here: a new updates.interval): the switch is not
	// lost between the old watcher and the new one.
	if code, out := run("update", "install", "-version", "2027.02.1"); code != 0 {
		t.Fatalf("install -version: %d %s", code, out)
	}
	// Switching definitions leaves the weight list alone: it was not
	// read again, so no reload is counted.
	if v := g.metric(t, `sclgate_weights_reloads_total{result="ok"}`); v != 0 {
		t.Errorf("weight list reloads after definition switches: %v, want 0", v)
	}
	cfg, _ := os.ReadFile(g.config)
	os.WriteFile(g.config, bytes.Replace(cfg, []byte("updates:\n"), []byte("updates:\n  interval: 2h\n"), 1), 0o644)
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog(t, "restarted on the new settings")
	g.waitMetric(t, `sclgate_definitions_info{version="2027.02.1"}`, 1)
	// SIGHUP does read it again (for file systems that do not notify).
	g.waitMetric(t, `sclgate_weights_reloads_total{result="ok"}`, 1)

	// The bundle in use damaged on disk: serve notices and scores with
	// the built-in definitions; installing the version again mends it
	// (the active link stays as it was) and serve switches back.
	bundle := filepath.Join(dir, "defs", "2027.02.1", update.BundleFile)
	data, _ := os.ReadFile(bundle)
	os.WriteFile(bundle, data[:len(data)/2], 0o644)
	g.waitMetric(t, `sclgate_definitions_info{version="`+builtin.Manifest.Version+`"}`, 1)
	if code, out := run("update", "install", "-version", "2027.02.1"); code != 0 || !strings.Contains(out, "repaired 2027.02.1: its damaged copy was installed again") {
		t.Fatalf("install over the damaged copy: %d %s", code, out)
	}
	g.waitMetric(t, `sclgate_definitions_info{version="2027.02.1"}`, 1)

	msgs := s.messages(t, 4)
	wantDefs := map[string]string{
		"before the switch":       "defs=" + builtin.Manifest.Version,
		"after the switch":        "defs=2027.01.1",
		"after the second switch": "defs=2027.02.1",
		"after the rollback":      "defs=2027.01.1",
	}
	if len(msgs) != 4 {
		t.Fatalf("%d messages relayed", len(msgs))
	}
	for _, m := range msgs {
		for body, want := range wantDefs {
			if strings.Contains(m, body+"\n") || strings.Contains(m, body+"\r\n") {
				rep, _ := header(m, "X-SCL-Report")
				if !strings.Contains(rep, want) || !strings.Contains(rep, "classifier=builtin") {
					t.Errorf("%q: X-SCL-Report %q, want %s", body, rep, want)
				}
			}
		}
	}

	// Rolling back past the first install goes back to the built-in
	// definitions, which were in use before it, and serve switches to them.
	if code, out := run("update", "rollback"); code != 0 || !strings.Contains(out, "from 2027.02.1 to 2027.01.1") {
		t.Fatalf("rollback to 2027.01.1: %d %s", code, out)
	}
	g.waitMetric(t, `sclgate_definitions_info{version="2027.01.1"}`, 1)
	if code, out := run("update", "rollback"); code != 0 || out != "rolled back from 2027.01.1 to the built-in definitions "+builtin.Manifest.Version+"\n" {
		t.Fatalf("rollback to the built-in definitions: %d %s", code, out)
	}
	g.waitMetric(t, `sclgate_definitions_info{version="`+builtin.Manifest.Version+`"}`, 1)
	g.waitLog(t, "definitions switched")
}

// kill -9 in the middle of an install (here: mid-download, the longest
// step) leaves the version that was active, working; a second install
// completes.
func TestUpdateKill9DuringInstall(t *testing.T) {
	dir := t.TempDir()
	pub, priv, _ := defs.GenerateKey("")
	pubFile := filepath.Join(dir, "release.pub")
	os.WriteFile(pubFile, pub, 0o644)
	site := filepath.Join(dir, "site")
	update.Publish(site, priv, "", []string{builtinAs(t, "2027.01.1")})
	slow := make(chan struct{})
	url := serveDir(t, site, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".tar.gz") {
				select {
				case <-slow: // released: serve normally
				default: // send the first bytes, then hang
					real, _ := os.ReadFile(filepath.Join(site, filepath.Base(r.URL.Path)))
					w.Header().Set("Content-Length", fmt.Sprint(len(real)))
					w.Write(real[:4096])
					w.(http.Flusher).Flush()
					<-r.Context().Done()
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	config := filepath.Join(dir, "sclgate.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("definitions:\n  dir: %s\nupdates:\n  source: %s\n  trusted_keys: [%s]\n", filepath.Join(dir, "defs"), url, pubFile)), 0o644)

	cmd := exec.Command(binary(t), "update", "install", "-config", config)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(dir, "defs", ".download", defs.FileName("2027.01.1")+".part")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := os.Stat(part); err == nil && st.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("download never started: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	// Nothing half-installed: the built-in definitions are still in use.
	code, status, _ := sclgate(t, "", "update", "status", "-config", config)
	if code != 0 || !strings.Contains(status, "built in; nothing installed") {
		t.Errorf("status after kill -9:\n%s", status)
	}
	if code, out, errOut := sclgate(t, "", "scan", "-config", config, "../../testdata/messages/plain.eml"); code != 0 || !strings.Contains(out, "classifier=builtin") {
		t.Errorf("scan after kill -9: %d %s %s", code, out, errOut)
	}
	close(slow)
	if code, out, errOut := sclgate(t, "", "update", "install", "-config", config); code != 0 || !strings.Contains(out, "2027.01.1") {
		t.Fatalf("install after kill -9: %d %s %s", code, out, errOut)
	}
}

// With updates.enabled, serve checks the source itself shortly after start,
// installs the new version and switches to it; a check that fails is
// counted and mail still flows.
func TestServeAutomaticUpdates(t *testing.T) {
	dir := t.TempDir()
	pub, priv, _ := defs.GenerateKey("")
	pubFile := filepath.Join(dir, "release.pub")
	os.WriteFile(pubFile, pub, 0o644)
	site := filepath.Join(dir, "site")
	update.Publish(site, priv, "", []string{builtinAs(t, "2027.03.1")})
	url := serveDir(t, site, nil)

	s := startSink(t)
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  classifier: builtin\ndefinitions:\n  dir: %s\nupdates:\n  enabled: true\n  interval: 1h\n  source: %s\n  trusted_keys: [%s]\n",
		s.addr, filepath.Join(dir, "defs"), url, pubFile))
	g.waitMetric(t, `sclgate_definitions_info{version="2027.03.1"}`, 1)
	g.waitMetric(t, `sclgate_definitions_update_checks_total{result="installed"}`, 1)

	// A source that is down: counted as an error, mail unaffected.
	bad := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  classifier: builtin\ndefinitions:\n  dir: %s\nupdates:\n  enabled: true\n  source: http://127.0.0.1:1/\n  trusted_keys: [%s]\n",
		s.addr, filepath.Join(dir, "defs2"), pubFile))
	bad.waitMetric(t, `sclgate_definitions_update_checks_total{result="error"}`, 1)
	if out := swaks(t, bad.addr, "--to", "bob@example.com"); !reply(out, "250 2.0.0 OK") {
		t.Errorf("mail while updates fail:\n%s", out)
	}

	// SIGHUP applies updates.*: pointed at the working source, the
	// updater starts over on it and installs.
	cfg, _ := os.ReadFile(bad.config)
	os.WriteFile(bad.config, bytes.Replace(cfg, []byte("http://127.0.0.1:1/"), []byte(url), 1), 0o644)
	bad.cmd.Process.Signal(syscall.SIGHUP)
	bad.waitLog(t, "automatic updates restarted on the new settings")
	bad.waitMetric(t, `sclgate_definitions_update_checks_total{result="installed"}`, 1)
	bad.waitMetric(t, `sclgate_definitions_info{version="2027.03.1"}`, 1)
}

// serve's automatic updater logs what to do about a failure, as update
// install prints it: the check that fails (a source that is down) and the
// install that fails (a bundle without its signature).
func TestAutoUpdateLogsWhatToDo(t *testing.T) {
	cases := []struct {
		name, msg, hint string
		source          func(t *testing.T, cfgFile, src string) string
	}{
		{"check", "definitions update check failed", "check updates.source (or -source) and that this machine can reach it",
			func(t *testing.T, _, _ string) string { return "http://127.0.0.1:1/" }},
		{"no such directory", "definitions update check failed", "updates.source (or -source) names a directory that is not there",
			func(t *testing.T, _, _ string) string { return filepath.Join(t.TempDir(), "unmounted") }},
		{"install", "definitions update failed", "sclgate never uses an unsigned file",
			func(t *testing.T, cfgFile, src string) string {
				os.Remove(filepath.Join(src, defs.FileName("2027.10.1")+".minisig"))
				cfg, err := config.Load(cfgFile)
				if err != nil {
					t.Fatal(err)
				}
				return cfg.Updates.Source
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfgFile, src, _, _ := updateSetup(t, "2027.10.1")
			cfg, err := config.Load(cfgFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Updates.Source = c.source(t, cfgFile, src)
			var logs syncbuf.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				autoUpdate(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)), func(result string) { cancel() })
			}()
			<-done
			line := grepLines(logs.String(), c.msg)
			if line == "" || !strings.Contains(line, `what_to_do="`+c.hint) ||
				!strings.Contains(line, "Nothing was installed; the definitions in use are unchanged.") {
				t.Errorf("log:\n%s", logs.String())
			}
		})
	}
}

// A policy rebuilt with the same downstream settings (a SIGHUP that
// changed something else, a definitions switch) keeps its downstream,
// and with it the connections kept for reuse; a changed setting makes a
// new one.
func TestPolicyKeepsDownstream(t *testing.T) {
	g := &gateway{log: slog.New(slog.DiscardHandler)}
	cfg, err := config.Parse("t.yaml", []byte("downstream: smtp://127.0.0.1:2526\n"))
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := config.ParseDownstream(cfg.Downstream)
	opts := func(cfg *config.Config) proxy.DownstreamOptions {
		o, err := downstreamOptions(cfg, cfg.Limits.DownstreamIdle, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	first := g.downstream(ds, opts(cfg))
	if again := g.downstream(ds, opts(cfg)); again != first {
		t.Error("the same settings made a new downstream")
	}
	cfg.Limits.DownstreamTimeout++
	if other := g.downstream(ds, opts(cfg)); other == first {
		t.Error("a changed downstream_timeout kept the downstream")
	}
}
