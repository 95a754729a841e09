package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goldenDir holds the head-parsing test cases: NN-name.eml inputs and the
// NN-name.json results expected from them. See its README.
const goldenDir = "../testdata/archive"

// headResult is what the golden files record about reading one file:
// either the error, or the head and a summary of the message.
type headResult struct {
	Error string `json:"error,omitempty"`
	*GoldenHead
}

// GoldenHead is exported only because encoding/json cannot fill in an
// embedded pointer to an unexported type.
type GoldenHead struct {
	From          string   `json:"from"`
	To            []string `json:"to"`
	SCL           int      `json:"scl"`
	HasSCL        bool     `json:"has_scl"`
	Report        string   `json:"report,omitempty"`
	MessageSize   int      `json:"message_size"`
	MessageSHA256 string   `json:"message_sha256"`
	MessageStart  string   `json:"message_start"` // the first 40 bytes, as UTF-8
}

func readGolden(t *testing.T, data []byte) headResult {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(data))
	h, n, err := readHead(r)
	if err != nil {
		return headResult{Error: err.Error()}
	}
	msg, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading the message: %v", err)
	}
	if int(n)+len(msg) != len(data) {
		t.Errorf("head %d + message %d bytes != file %d bytes", n, len(msg), len(data))
	}
	sum := sha256.Sum256(msg)
	start := msg
	if len(start) > 40 {
		start = start[:40]
	}
	return headResult{GoldenHead: &GoldenHead{
		From:          h.env.From,
		To:            h.env.To,
		SCL:           h.scl,
		HasSCL:        h.hasSCL,
		Report:        h.report,
		MessageSize:   len(msg),
		MessageSHA256: hex.EncodeToString(sum[:]),
		// JSON strings are UTF-8, so encoding/json writes U+FFFD for
		// each invalid byte; converting through []rune does the same.
		MessageStart: string([]rune(string(start))),
	}}
}

// TestGolden reads every testdata/archive/*.eml and compares the result
// with the .json next to it. On a difference it writes what it got to a
// .got file, to compare and, if right, rename over the .json.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(goldenDir, "*.eml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no test cases in %s: %v", goldenDir, err)
	}
	for _, in := range inputs {
		base := strings.TrimSuffix(in, ".eml")
		t.Run(filepath.Base(base), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := readGolden(t, data)
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false) // addresses have < and >
			enc.SetIndent("", "  ")
			if err := enc.Encode(got); err != nil {
				t.Fatal(err)
			}
			gotJSON := buf.Bytes()

			wantJSON, err := os.ReadFile(base + ".json")
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			var want headResult
			if err == nil {
				if err := json.Unmarshal(wantJSON, &want); err != nil {
					t.Fatalf("%s.json: %v", base, err)
				}
			}
			if err != nil || !reflect.DeepEqual(got, want) {
				if werr := os.WriteFile(base+".got", gotJSON, 0o644); werr != nil {
					t.Error(werr)
				}
				t.Errorf("result differs from %s.json (or it is missing); got written to %s.got:\n%s",
					base, base, gotJSON)
				return
			}
			// A stale .got from an earlier failure would only confuse.
			os.Remove(base + ".got")
		})
	}
}

func TestParseAddr(t *testing.T) {
	cases := []struct {
		in, want string
		err      bool
	}{
		{"<a@b>", "a@b", false},
		{"  <a@b>", "a@b", false},
		{"<>", "", false},
		{"", "", false},
		{"a@b", "a@b", false},
		{"a@b SMTP", "a@b", false},
		{"a@b\tSMTP", "a@b", false},
		{"<a@b> SMTP", "a@b", false},
		{"<a@b>SMTP", "a@b", false},
		{`<"a> b"@c>`, `"a> b"@c`, false},
		{`"a b"@c NOTIFY=NEVER`, `"a b"@c`, false},
		{`<"a\"> b"@c>`, `"a\"> b"@c`, false},
		{"<a@b", "", true},
		{`<"a>@b>`, "", true},
	}
	for _, c := range cases {
		got, err := parseAddr([]byte(c.in))
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseAddr(%q) = %q, %v; want %q, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestParseSCL(t *testing.T) {
	for in, want := range map[string]int{"0": 0, " 9": 9, "-1": -1, "5 (IMF)": 5, " 7 \t": 7} {
		if got, err := parseSCL([]byte(in)); err != nil || got != want {
			t.Errorf("parseSCL(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", " ", "10", "-2", "x", "5x", "0x5", "99999999999999999999"} {
		if got, err := parseSCL([]byte(in)); err == nil {
			t.Errorf("parseSCL(%q) = %d, want an error", in, got)
		}
	}
}

// TestReadHeadSmallBuffer checks that ReadHead works with the smallest
// buffer bufio allows, and leaves the reader at the message.
func TestReadHeadSmallBuffer(t *testing.T) {
	data := "X-Sender: <" + strings.Repeat("a", 300) + "@example.com>\r\n" +
		"X-Receiver: <b@example.org>\r\nX-SCL: 3\r\nX-Receive: not the head\r\n"
	r := bufio.NewReaderSize(strings.NewReader(data), 16)
	env, scl, hasSCL, err := ReadHead(r)
	if err != nil {
		t.Fatal(err)
	}
	if env.From != strings.Repeat("a", 300)+"@example.com" || !hasSCL || scl != 3 {
		t.Errorf("got %+v, %d, %v", env, scl, hasSCL)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "X-Receive: not the head\r\n" {
		t.Errorf("message = %q", rest)
	}
}

func TestReadHeadLimits(t *testing.T) {
	long := "X-Sender: <a@b>\r\nX-Receiver: <" + strings.Repeat("x", maxHeadLine) + ">\r\n"
	if _, _, _, err := ReadHead(bufio.NewReader(strings.NewReader(long))); !errors.Is(err, ErrMalformed) {
		t.Errorf("long line: err = %v, want ErrMalformed", err)
	}
	many := "X-Sender: <a@b>\r\n" + strings.Repeat("X-Receiver: <c@d>\r\n", maxHeadLines+1)
	if _, _, _, err := ReadHead(bufio.NewReader(strings.NewReader(many))); !errors.Is(err, ErrMalformed) {
		t.Errorf("many lines: err = %v, want ErrMalformed", err)
	}
	last := "X-Receiver: <c@d>\r\nX-Sender: <a@b>" // no line end at all
	env, _, _, err := ReadHead(bufio.NewReader(strings.NewReader(last)))
	if err != nil || env.From != "a@b" {
		t.Errorf("no final line end: %+v, %v", env, err)
	}
}

func TestCheckHead(t *testing.T) {
	ok := []Envelope{
		{From: "", To: []string{"a@b"}},
		{From: "a@b", To: []string{"c@d", "e@f"}},
		{From: `"john doe"@example.com`, To: []string{`"a> b"@c`}},
		{From: "josé@example.com", To: []string{"日本@example.jp"}},
	}
	for _, env := range ok {
		if err := checkHead(head{env: env, scl: 5, hasSCL: true}); err != nil {
			t.Errorf("checkHead(%+v) = %v", env, err)
		}
	}
	bad := []Envelope{
		{From: "a@b"},
		{From: "a@b", To: []string{""}},
		{From: "a@b", To: []string{"c@d>\r\nX-Receiver: <evil@example.com"}},
		{From: "a@b\n", To: []string{"c@d"}},
		{From: "a@b", To: []string{"c>d@e"}},
		{From: `a"b@c`, To: []string{"c@d"}},
		{From: "a@b", To: []string{"c\x00@d"}},
	}
	for _, env := range bad {
		if err := checkHead(head{env: env, scl: 5, hasSCL: true}); err == nil {
			t.Errorf("checkHead(%+v) = nil, want an error", env)
		}
	}
	env := Envelope{From: "a@b", To: []string{"c@d"}}
	if err := checkHead(head{env: env, scl: 10, hasSCL: true}); err == nil {
		t.Error("SCL 10 accepted")
	}
	if err := checkHead(head{env: env, scl: 10}); err != nil {
		t.Errorf("SCL not stored, but checked: %v", err)
	}
	for _, r := range []string{"a\r\nX-Receiver: <evil@example.com>", " a", "a\x00", strings.Repeat("x", maxReport+1)} {
		if err := checkHead(head{env: env, scl: 9, hasSCL: true, report: r}); err == nil {
			t.Errorf("report %.40q accepted", r)
		}
	}
}

// TestWriteHeadRoundTrip checks that what writeHead writes reads back.
func TestWriteHeadRoundTrip(t *testing.T) {
	env := Envelope{From: "", To: []string{"a@b", `"x y"@z`}}
	var b bytes.Buffer
	if err := writeHead(&b, head{env: env, scl: -1, hasSCL: true}); err != nil {
		t.Fatal(err)
	}
	want := "X-Sender: <>\r\nX-Receiver: <a@b>\r\nX-Receiver: <\"x y\"@z>\r\nX-SCL: -1\r\n"
	if b.String() != want {
		t.Errorf("head = %q, want %q", b.String(), want)
	}
	got, scl, hasSCL, err := ReadHead(bufio.NewReader(&b))
	if err != nil || !reflect.DeepEqual(got, env) || scl != -1 || !hasSCL {
		t.Errorf("read back %+v, %d, %v, %v", got, scl, hasSCL, err)
	}
	// With a report: after the SCL, read back as written.
	b.Reset()
	h := head{env: env, scl: 9, hasSCL: true, report: `scl=9 classifier=builtin score=0.99; rules: BODY MAX "x"`}
	if err := writeHead(&b, h); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(b.String(), "X-SCL: 9\r\nX-SCL-Report: "+h.report+"\r\n") {
		t.Errorf("head = %q", b.String())
	}
	b.WriteString("Received: from x\r\n\r\nbody\r\n")
	if h2, _, err := readHead(bufio.NewReader(&b)); err != nil || !reflect.DeepEqual(h2, h) {
		t.Errorf("read back %+v, %v; want %+v", h2, err, h)
	}
}

// TestReadHeadIOError checks that a failing reader is reported as such,
// not as a malformed head.
func TestReadHeadIOError(t *testing.T) {
	for _, head := range []string{"", "X-Sender: <a@b>\r\nX-Rec", "X-Sender: <a@b>\r\nX-Receiver: <c"} {
		r := bufio.NewReaderSize(io.MultiReader(strings.NewReader(head), iotestErrReader{}), 16)
		_, _, _, err := ReadHead(r)
		if !errors.Is(err, errTestRead) || errors.Is(err, ErrMalformed) {
			t.Errorf("ReadHead(%q + error) = %v, want the read error", head, err)
		}
	}
}

// A list's sender filter is a part of the address, any case; "<>" picks
// the null sender of bounces.
func TestSenderMatches(t *testing.T) {
	bounce, alice := Envelope{From: ""}, Envelope{From: "Alice@Example.org"}
	for _, c := range []struct {
		e      Envelope
		filter string
		want   bool
	}{
		{alice, "", true}, {alice, "alice@", true}, {alice, "EXAMPLE", true}, {alice, "bob", false}, {alice, "<>", false},
		{bounce, "", true}, {bounce, "<>", true}, {bounce, "a", false},
	} {
		if got := c.e.SenderMatches(c.filter); got != c.want {
			t.Errorf("%q matches %q: %v, want %v", c.e.From, c.filter, got, c.want)
		}
	}
}
