package proxy

import "testing"

// naiveDotCR is the byte-at-a-time definition scanDotCR must agree with.
func naiveDotCR(b []byte) bool {
	for i := 0; i+3 < len(b); i++ {
		if b[i] == '\n' && b[i+1] == '.' && b[i+2] == '\r' && b[i+3] != '\n' {
			return true
		}
	}
	return false
}

// FuzzScanDotCR feeds a stream split at two points and compares the
// verdict with naiveDotCR on the whole stream.
func FuzzScanDotCR(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\r\nb", "\r\n.\r\n", "x\n.\rX", "\n.\r", "\n", ".\r\n.\rq", ""} {
		f.Add([]byte(s), uint8(1), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, i, j uint8) {
		x, y := int(i)%(len(b)+1), int(j)%(len(b)+1)
		if x > y {
			x, y = y, x
		}
		c := &limitConn{}
		for _, part := range [][]byte{b[:x], b[x:y], b[y:]} {
			c.scanDotCR(part)
		}
		if got, want := c.dotCR.Load(), naiveDotCR(b); got != want {
			t.Fatalf("%q split at %d, %d: scanDotCR %v, want %v", b, x, y, got, want)
		}
	})
}

func TestScanDotCRSplits(t *testing.T) {
	for _, s := range []string{"ab\r\n.\r\r\n.\r\n", "\r\n.\rX", "hello\r\n.\r\n", "\r\n..\r\n", "\n.\r\n"} {
		b := []byte(s)
		for x := 0; x <= len(b); x++ {
			for y := x; y <= len(b); y++ {
				c := &limitConn{}
				c.scanDotCR(b[:x])
				c.scanDotCR(b[x:y])
				c.scanDotCR(b[y:])
				if got, want := c.dotCR.Load(), naiveDotCR(b); got != want {
					t.Errorf("%q split %d,%d: %v, want %v", s, x, y, got, want)
				}
			}
		}
	}
}
