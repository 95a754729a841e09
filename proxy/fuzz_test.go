package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/metrics"
	"github.com/sclgate/sclgate/scorer"
)

// FuzzCheckLineEnds: the DATA filter never panics; what it lets through
// has only CRLF line ends and no NUL, and unchanged unless normalising.
func FuzzCheckLineEnds(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", "a\nb", "\r", "\n.\n", "x\r\r\n.\r\n", "\x00", ""} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, normalize bool) {
		out, err := checkLineEnds(in, normalize)
		// The same verdict when the data arrives in two pieces.
		for _, cut := range []int{1, len(in) / 2, len(in) - 1} {
			if cut <= 0 || cut >= len(in) {
				continue
			}
			f := dataFilter{normalizeLF: normalize}
			var buf bytes.Buffer
			err2 := f.write(&buf, in[:cut])
			if err2 == nil {
				err2 = f.write(&buf, in[cut:])
			}
			if err2 == nil {
				err2 = f.close()
			}
			if (err == nil) != (err2 == nil) || (err == nil && !bytes.Equal(out, buf.Bytes())) {
				t.Fatalf("%q cut at %d: %v / %q, whole: %v / %q", in, cut, err2, buf.Bytes(), err, out)
			}
		}
		// Refused exactly when a line end is bare or a NUL is present
		// (bare LF only without normalize).
		bareCR := bytes.Count(in, []byte("\r")) != bytes.Count(in, []byte("\r\n"))
		bareLF := bytes.Count(in, []byte("\n")) != bytes.Count(in, []byte("\r\n"))
		if want := bytes.IndexByte(in, 0) >= 0 || bareCR || (bareLF && !normalize); want != (err != nil) {
			t.Fatalf("%q normalize=%v: err %v, want refused=%v", in, normalize, err, want)
		}
		if err != nil {
			return
		}
		if !normalize && !bytes.Equal(out, in) {
			t.Fatalf("changed without normalize: %q → %q", in, out)
		}
		if bytes.IndexByte(out, 0) >= 0 || bytes.Count(out, []byte("\r")) != bytes.Count(out, []byte("\r\n")) ||
			bytes.Count(out, []byte("\n")) != bytes.Count(out, []byte("\r\n")) {
			t.Fatalf("let through bare line ends or NUL: %q → %q", in, out)
		}
	})
}

// FuzzSession throws arbitrary bytes at a real server as a command stream
// (then QUIT): the server must answer or close within its timeouts, never
// hang or crash, and keep accepting new connections.
func FuzzSession(f *testing.F) {
	dir := f.TempDir()
	cfg, err := config.Parse("fuzz.yaml", []byte(`
downstream: maildir:`+filepath.Join(dir, "maildir")+`
archive: {dir: `+filepath.Join(dir, "archive")+`}
filter: {classifier: none}
limits: {command_timeout: 1s, data_timeout: 1s, downstream_timeout: 1s, max_message_bytes: 100000}
`))
	if err != nil {
		f.Fatal(err)
	}
	ds, _ := config.ParseDownstream(cfg.Downstream)
	srv := New(&Policy{Config: cfg, Scorer: &scorer.Scorer{Classifier: scorer.None{}}, Downstream: NewDownstream(ds, DownstreamOptions{Hostname: "fuzz.test", Timeout: time.Second})},
		Options{Metrics: metrics.New(prometheus.NewRegistry(), "fuzz")})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\n",
		"HELO x\r\nRCPT TO:<c@example.com>\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.test> SIZE=999999999\r\n",
		"EHLO x\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nAUTH PLAIN AGFsaWNlAHMzY3JldA==\r\nSTARTTLS\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<\"x@y\"@example.com>\r\nRSET\r\nVRFY root\r\nNOOP\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\nA\r\n.\rB\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("server stopped accepting: %v", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			c.Write(in)
			c.Write([]byte("\r\n.\r\nQUIT\r\n"))
		}()
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("session neither answered nor closed within its timeouts")
			}
		}
		// Still serving.
		c2, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("server stopped accepting: %v", err)
		}
		c2.SetDeadline(time.Now().Add(2 * time.Second))
		l, _ := bufio.NewReader(c2).ReadString('\n')
		c2.Close()
		if !strings.HasPrefix(l, "220 ") && !strings.HasPrefix(l, "421 ") {
			t.Fatalf("greeting after fuzz input: %q", l)
		}
	})
}
