package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:2525" || c.Filter.GatewayThreshold != 7 || c.Filter.StoreThreshold != 5 ||
		c.Filter.GatewayAction != ActionArchive || !c.Archive.StoreSCL || c.Metrics.Listen != "127.0.0.1:9325" ||
		c.Limits.CommandTimeout != 5*time.Minute || c.Filter.Classifier != "builtin" || c.DownstreamTLS.Mode != TLSMay {
		t.Errorf("defaults: %+v", c)
	}
	d, err := ParseDownstream(c.Downstream)
	if err != nil || d.Scheme != "maildir" {
		t.Errorf("default downstream %q: %+v %v", c.Downstream, d, err)
	}
}

func TestOverride(t *testing.T) {
	c, err := Parse("x.yaml", []byte(`
accepted_domains: [Example.NET.]
trusted_networks: [10.0.0.0/8, 192.0.2.7]
filter:
  gateway_threshold: 8
limits:
  data_timeout: 90s
`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.AcceptedDomains, []string{"example.net"}) {
		t.Errorf("a list in the file replaces the default list, normalised: %q", c.AcceptedDomains)
	}
	if c.Filter.GatewayThreshold != 8 || c.Filter.StoreThreshold != 5 || c.Limits.DataTimeout != 90*time.Second {
		t.Errorf("override kept other defaults? %+v %+v", c.Filter, c.Limits)
	}
	if len(c.Trusted) != 2 || c.Trusted[1].String() != "192.0.2.7/32" {
		t.Errorf("trusted: %v", c.Trusted)
	} // An internationalised domain is kept as mail spells it: A-labels.
	c, err = Parse("x.yaml", []byte("accepted_domains: [Bücher.Test, ours.test]\n"))
	if err != nil || !slices.Equal(c.AcceptedDomains, []string{"xn--bcher-kva.test", "ours.test"}) {
		t.Errorf("IDN: %q %v", c.AcceptedDomains, err)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"filter:\n  gateway_treshold: 3\n", "config: x.yaml: line 2: field gateway_treshold is not a known key in section filter"},
		{"bogus: 1\n", "field bogus is not a known key"},
		{"archive:\n  web:\n    lisen: x\n", "line 3: field lisen is not a known key in section archive.web"},
		{"archive:\n  dri: x\n", "line 2: field dri is not a known key in section archive"},
		{"filter:\n  gateway_threshold: 10\n", "gateway_threshold: 10 is not within 1..9"},
		{"filter:\n  gateway_action: bounce\n", `gateway_action: "bounce"`},
		{"downstream: ftp://x\n", `unknown scheme "ftp"`},
		{"downstream: smtp://hostonly\n", "host and port are required"},
		{"trusted_networks: [nonsense]\n", "neither an address nor a CIDR"},
		{"limits:\n  command_timeout: 5\n", "into a duration (such as 30s or 5m)"},
		{"limits:\n  command_timeout: -5s\n", "limits.command_timeout: -5s; must be a positive duration"},
		{"auth:\n  users: {bob: x}\n", "auth.users needs tls"},
		{"listen: [1\n", "x.yaml"},
		{"archive:\n  retention: 30x\n", "not a duration such as 30d"},
		{"archive:\n  web:\n    listen: 127.0.0.1:9326\n", "needs archive.web.users"},
		{"definitions:\n  dir: /var/lib/sclgate/defs\nfilter:\n  weights_file: /var/lib/sclgate/defs/w.xml\n", "inside definitions.dir"},
	}
	for _, c := range cases {
		_, err := Parse("x.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
}

func TestParseDownstream(t *testing.T) {
	cases := map[string]Downstream{
		"smtp://127.0.0.1:25":     {"smtp", "tcp", "127.0.0.1:25"},
		"lmtp://[::1]:24":         {"lmtp", "tcp", "[::1]:24"},
		"lmtp:/run/dovecot/lmtp":  {"lmtp", "unix", "/run/dovecot/lmtp"},
		"maildir:/var/mail/inbox": {"maildir", "", "/var/mail/inbox"},
	}
	for in, want := range cases {
		got, err := ParseDownstream(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", in, got, err)
		}
	}
	// A port no dial can use is refused when the file is read (serve
	// -check), not at every message's first dial.
	for _, in := range []string{"smtp://127.0.0.1:99999", "smtp://127.0.0.1:0", "lmtp://host:abc", "smtp://[::1]:65536"} {
		if _, err := ParseDownstream(in); err == nil || !strings.Contains(err.Error(), "port") {
			t.Errorf("%s: %v", in, err)
		}
	}
}

func TestRetentionDays(t *testing.T) {
	c, err := Parse("x.yaml", []byte("archive:\n  retention: 30d\n"))
	if err != nil || time.Duration(c.Archive.Retention) != 30*24*time.Hour {
		t.Errorf("30d: %v %v", c, err)
	}
	if d, err := ParseDays("36h"); err != nil || d != 36*time.Hour {
		t.Errorf("36h: %v %v", d, err)
	}
	// Days past a Duration's range are refused, not wrapped into minutes.
	for _, s := range []string{"36501d", "227452207108200d", "9999999999999d"} {
		if _, err := ParseDays(s); err == nil || !strings.Contains(err.Error(), "at most 36500d") {
			t.Errorf("%s: %v", s, err)
		}
	}
	if d, err := ParseDays("36500d"); err != nil || d != 36500*24*time.Hour {
		t.Errorf("36500d: %v %v", d, err)
	}
	// A daily update check is written as one would say it.
	c, err = Parse("x.yaml", []byte("updates:\n  interval: 1d\n"))
	if err != nil || time.Duration(c.Updates.Interval) != 24*time.Hour {
		t.Errorf("updates.interval 1d: %v %v", c, err)
	}
	if _, err := Parse("x.yaml", []byte("updates:\n  interval: 30s\n")); err == nil || !strings.Contains(err.Error(), "shorter than a minute") {
		t.Errorf("updates.interval 30s: %v", err)
	}
}

// The weight list may not live in definitions.dir however the two paths
// are written: one relative and one absolute, or through a symbolic link.
func TestWeightsOutsideDefinitions(t *testing.T) {
	dir := t.TempDir()
	defs := filepath.Join(dir, "defs")
	os.Mkdir(defs, 0o755)
	os.Symlink(defs, filepath.Join(dir, "link"))
	t.Chdir(dir)
	for _, tc := range []struct {
		defsDir, weights string
		inside           bool
	}{
		{"defs", filepath.Join(defs, "w.xml"), true},
		{defs, "defs/w.xml", true},
		{defs, filepath.Join(dir, "link", "w.xml"), true},
		{"link", "defs/sub/w.xml", true},
		{defs, filepath.Join(dir, "defs2", "w.xml"), false},
		{defs, filepath.Join(dir, "w.xml"), false},
		{"defs", "..defs/w.xml", false},
	} {
		y := "definitions:\n  dir: " + tc.defsDir + "\nfilter:\n  weights_file: " + tc.weights + "\n"
		_, err := Parse("x.yaml", []byte(y))
		if got := err != nil && strings.Contains(err.Error(), "inside definitions.dir"); got != tc.inside {
			t.Errorf("dir %s, weights %s: err %v, want inside=%v", tc.defsDir, tc.weights, err, tc.inside)
		}
	}
}

// Bad values name their key: each limit on its own, a listen port out of
// range, a duration yaml.v3 cannot read (it gives only the line), and a
// host name that would break the greeting and every Received field.
func TestErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"limits:\n  max_message_bytes: -5\n  max_recipients: 0\n", "limits.max_message_bytes: -5; must be positive"},
		{"limits:\n  max_recipients: 0\n", "limits.max_recipients: 0; must be positive"},
		{"limits:\n  shutdown_timeout: 0s\n", "limits.shutdown_timeout: 0s; must be a positive duration"},
		{"limits:\n  command_timeout: 5 minutes\n", "line 2 (command_timeout): cannot unmarshal"},
		{"listen: 127.0.0.1:99999\n", `listen: "127.0.0.1:99999": port "99999"`},
		{"metrics:\n  listen: 127.0.0.1:70000\n", `metrics.listen: "127.0.0.1:70000"`},
		{"archive:\n  web:\n    listen: 127.0.0.1:x9\n", `archive.web.listen: "127.0.0.1:x9"`},
		{"hostname: \"gw.test\\r\\n250 injected\"\n", "hostname: \"gw.test\\r\\n250 injected\" is not a host name"},
		{"hostname: mx 1.example.com\n", "is not a host name"},
		{"updates:\n  source: ftp://defs.example.com/\n", `updates.source: "ftp://defs.example.com/": unsupported scheme "ftp"`},
		{"downstream_tls:\n  mode: required\n", `line 2: downstream_tls.mode: "required" is not none, may, encrypt or verify`},
		// Required TLS towards a maildir or a socket could never happen.
		{"downstream_tls:\n  mode: encrypt\n", `line 2: downstream_tls.mode: encrypt needs an smtp:// or lmtp://host:port downstream ("maildir:sclgate-data/maildir" carries no TLS)`},
		{"downstream: lmtp:/run/dovecot/lmtp\ndownstream_tls: {mode: verify}\n", "downstream_tls.mode: verify needs an smtp://"},
		// A check asked for with a mode that makes none.
		{"downstream: smtp://mailbox:25\ndownstream_tls:\n  ca_file: /etc/ssl/ca.pem\n", `line 3: downstream_tls.ca_file: used only with mode: verify (mode is "may")`},
		{"downstream: smtp://mailbox:25\ndownstream_tls: {mode: encrypt, server_name: mailbox}\n", `downstream_tls.server_name: used only with mode: verify (mode is "encrypt")`},
		{"downstream: smtp://mailbox:25\ndownstream_tls: {mode: verify, server_name: \"mail box\"}\n", `downstream_tls.server_name: "mail box" is not a host name or address`},
	} {
		_, err := Parse("x.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
	if _, err := Parse("x.yaml", []byte("hostname: mx1.example.com\nlisten: 0.0.0.0:smtp\n")); err != nil {
		t.Errorf("good host name and service port: %v", err)
	}
	for _, ok := range []string{"downstream_tls: {mode: none}\n", "downstream_tls: {mode: may}\n",
		"downstream: smtp://10.0.0.5:25\ndownstream_tls: {mode: verify, ca_file: /etc/sclgate/ca.pem, server_name: mailbox.example.com}\n",
		"downstream: lmtp://[::1]:24\ndownstream_tls: {mode: verify, server_name: \"::1\"}\n",
		"downstream: lmtp://dovecot:24\ndownstream_tls: {mode: encrypt}\n"} {
		if _, err := Parse("x.yaml", []byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// A value the checks refuse is named with the line that sets it, as a
// syntax error is; a problem with a value the file does not set (a
// default) has no line to name.
func TestErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"listen: 127.0.0.1:2525\nfilter:\n  gateway_threshold: 12\n", "config: x.yaml: line 3: filter.gateway_threshold: 12 is not within 1..9"},
		{"filter:\n  store_threshold: 5\n  gateway_action: archve\n", `config: x.yaml: line 3: filter.gateway_action: "archve"`},
		{"downstream: ftp://x\n", "config: x.yaml: line 1: downstream: "},
		{"tls:\n  cert_file: /c.pem\n", "config: x.yaml: line 1: tls: cert_file and key_file go together"},
		{"auth:\n  users:\n    al.ice: nothash\n", "line 3: auth.users.al.ice: not a bcrypt hash"},
		{"tls:\n  cert_file: /c\n  key_file: /k\nauth:\n  users:\n    alice: x\n    \"alice smith\": y\n", "line 7: auth.users.alice smith: not a bcrypt hash"},
		{"limits:\n  max_recipients: 10\n  max_message_bytes: -5\n", "line 3: limits.max_message_bytes: -5"},
		{"definitions:\n  dir: /var/lib/d\nfilter:\n  weights_file: /var/lib/d/w.xml\n", "line 4: filter.weights_file: /var/lib/d/w.xml is inside"},
	} {
		_, err := Parse("x.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
	// A second YAML document would be ignored: refused.
	if _, err := Parse("x.yaml", []byte("listen: 127.0.0.1:2525\n---\nfilter:\n  gateway_action: bogus\n")); err == nil || !strings.Contains(err.Error(), "line 2: a further YAML document") {
		t.Errorf("two documents: %v", err)
	}
	for _, ok := range []string{"---\nlisten: 127.0.0.1:2525\n", "listen: 127.0.0.1:2525\n---\n# nothing here\n", "listen: 127.0.0.1:2525\n---\n",
		"listen: 127.0.0.1:2525\n...\n---\n", "listen: 127.0.0.1:2525\n--- ~\n", "listen: 127.0.0.1:2525\n...\n", "listen: 127.0.0.1:2525\n--- {}\n", "listen: 127.0.0.1:2525\n--- []\n", "listen: 127.0.0.1:2525\n--- \"\"\n"} {
		if _, err := Parse("x.yaml", []byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	if _, err := Parse("x.yaml", []byte("listen: 127.0.0.1:2525\n---\n---\nfilter: {gateway_action: bogus}\n")); err == nil || !strings.Contains(err.Error(), "a further YAML document") {
		t.Errorf("an empty document, then one that sets something: %v", err)
	}
	// A key the file does not set (its section only, or nothing): no line.
	for _, c := range []struct{ yaml, msg string }{
		{"filter:\n  store_threshold: 5\n", "filter.gateway_action: x"},
		{"listen: x\n", "archive.dir: needed"},
		{"", "listen: x"},
		{"[1, 2]\n", "listen: x"},
	} {
		if n := keyLine([]byte(c.yaml), strings.Split(keyPathRE.FindStringSubmatch(c.msg)[1], ".")); n != 0 {
			t.Errorf("keyLine(%q, %q) = %d, want 0", c.yaml, c.msg, n)
		}
	}
}

// Where names the file, the line and the key for errors found after
// loading.
func TestWhere(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(f, []byte("listen: 127.0.0.1:2525\narchive:\n  dir: /nonexistent/archive\n"), 0o644)
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Where("archive", "dir"), "config: "+f+": line 3: archive.dir"; got != want {
		t.Errorf("Where = %q, want %q", got, want)
	}
	if got, want := c.Where("filter", "gateway_action"), "config: "+f+": filter.gateway_action"; got != want {
		t.Errorf("Where (a default) = %q, want %q", got, want)
	}
}

func TestChanged(t *testing.T) {
	a, err := Parse("a.yaml", []byte("downstream: smtp://127.0.0.1:2526\naccepted_domains: [example.com]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := Changed(a, a); len(got) != 0 {
		t.Errorf("Changed(a, a) = %q", got)
	}
	b, err := Parse("b.yaml", []byte("downstream: smtp://127.0.0.1:2527\naccepted_domains: [example.com, example.net]\n"+
		"filter: {store_threshold: 2, exchange_scl_header: true}\nlimits: {downstream_timeout: 1m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"accepted_domains", "downstream", "limits.downstream_timeout", "filter.store_threshold", "filter.exchange_scl_header"}
	if got := Changed(a, b); !slices.Equal(got, want) {
		t.Errorf("Changed = %q, want %q", got, want)
	}
	// An empty map or list is the same setting as none (null).
	c, err := Parse("c.yaml", []byte("downstream: smtp://127.0.0.1:2526\naccepted_domains: [example.com]\nauth: {users: ~}\nupdates: {trusted_keys: ~}\ntrusted_networks:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := Changed(a, c); len(got) != 0 {
		t.Errorf("Changed(none, empty) = %q", got)
	}
}

// Something that is not a regular file in the configuration's place is
// an error at once: a FIFO was waited on for ever (and SIGHUP's reload
// and the shutdown behind it).
func TestLoadNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "sclgate.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Load(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), fifo+": is not a regular file") {
			t.Errorf("FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		// Let the open waiting on it go, then fail.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("Load of a FIFO hung")
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
}
