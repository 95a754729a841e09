package scorer

import (
	"encoding/base64"
	"io"
	"strings"
	"testing"
)

// Base64 is read as RFC 2045 says and mail clients do: characters outside
// the alphabet are skipped, not the end of the part.
func TestBase64Lenient(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		name, in, want string
		bad            bool
	}{
		{"plain", enc("Hello, special offer for you"), "Hello, special offer for you", false},
		{"lines", "SGVsbG8s\r\nIHNwZWNp\r\nYWwgb2Zm\r\nZXI=\r\n", "Hello, special offer", false},
		{"indented lines", "SGVsbG8s\r\n  IHNwZWNp\r\n\tYWwgb2ZmZXI=", "Hello, special offer", false},
		{"bad first", "!" + enc("Hello, special offer"), "Hello, special offer", true},
		{"bad inside", "SGVsbG8s*IHNwZWNp\x00YWwgb2ZmZXI=", "Hello, special offer", true},
		{"bad line", "SGVsbG8s\r\n<>--!!\r\nIHNwZWNpYWwgb2ZmZXI=", "Hello, special offer", true},
		{"two texts", enc("Hello, ") + enc("special offer"), "Hello, special offer", false},
		{"no padding", strings.TrimRight(enc("special offer"), "="), "special offer", false},
		{"lone value", enc("abc") + "Q", "abc", false},
		{"empty", "", "", false},
	} {
		var warned int
		d := &base64Reader{r: strings.NewReader(c.in), bad: func() { warned++ }}
		got, err := io.ReadAll(d)
		if err != nil || string(got) != c.want || (warned == 1) != c.bad || warned > 1 {
			t.Errorf("%s: %q, %v, warned %d times; want %q", c.name, got, err, warned, c.want)
		}
	}
	// Small reads get the same bytes.
	d := &base64Reader{r: strings.NewReader("!" + enc("Hello, special offer for you")), bad: func() {}}
	var got []byte
	buf := make([]byte, 2)
	for {
		n, err := d.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
	}
	if string(got) != "Hello, special offer for you" {
		t.Errorf("2-byte reads: %q", got)
	}
}

// One bad character in front of a base64 body hid the whole text from the
// model and from BODY rules, at the top level and in a multipart; the
// header keeps its transfer encoding, and the defect is recorded.
func TestParseBase64BadCharacter(t *testing.T) {
	body := "!" + base64.StdEncoding.EncodeToString([]byte("Hello, special offer for you")) + "\r\n"
	for name, raw := range map[string]string{
		"top": "Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body,
		"multipart": "Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n" +
			"Content-Type: text/html\r\nContent-Transfer-Encoding: BASE64\r\n\r\n" + body + "--b--\r\n",
		"attached message": "Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" +
			"Subject: inner\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body,
	} {
		m := Parse([]byte(raw))
		if !strings.Contains(m.Text, "Hello, special offer for you") {
			t.Errorf("%s: text %q, defects %q", name, m.Text, m.Defects)
		}
		found := false
		for _, d := range m.Defects {
			found = found || strings.HasSuffix(d, ": base64: characters outside the alphabet skipped")
		}
		if !found {
			t.Errorf("%s: defects %q", name, m.Defects)
		}
	}
	m := Parse([]byte("Subject: t\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body))
	if m.Header.Get("Content-Transfer-Encoding") != "base64" {
		t.Errorf("header lost its transfer encoding: %v", m.Header)
	}
}
