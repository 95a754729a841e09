package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/sclgate/sclgate/metrics"
)

// stallingDownstream greets, answers EHLO unless stallAt is "EHLO", and
// then never answers the command stallAt names.
func stallingDownstream(t *testing.T, stallAt string) string {
	return scriptedDownstream(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		io.WriteString(c, "220 slow.test ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.Fields(line + " x")[0])
			switch {
			case strings.HasPrefix(cmd, stallAt):
				// no answer
			case cmd == "EHLO":
				io.WriteString(c, "250-slow.test\r\n250 PIPELINING\r\n")
			default:
				io.WriteString(c, "250 2.0.0 OK\r\n")
			}
		}
	})
}

// A downstream that does not answer EHLO or MAIL within
// downstream_timeout is a timeout in sclgate_relay_failures_total, as it
// is at RCPT or DATA, not "connect" (which is a downstream refused or
// unreachable): the connection cut at the timeout made the step fail on a
// closed connection. (At EHLO go-smtp's own command timeout, of the same
// length, usually fires first, an i/o timeout; the MAIL case is the one
// that fails without cutErr.)
func TestDownstreamStallCountedAsTimeout(t *testing.T) {
	for _, at := range []string{"EHLO", "MAIL"} {
		t.Run(at, func(t *testing.T) {
			g := startGateway(t, gwSetup{Downstream: stallingDownstream(t, at), YAML: "limits: {downstream_timeout: 1s}"})
			rc := ehloed(t, g.addr)
			if got := rc.last("MAIL FROM:<alice@example.org>"); !strings.HasPrefix(got, "451 4.4.1 ") {
				t.Errorf("MAIL: %q, want 451 4.4.1", got)
			}
			wantMetric(t, "relay_failures{timeout}", g.m.RelayFailures.WithLabelValues(metrics.FailTimeout), 1)
			wantMetric(t, "relay_failures{connect}", g.m.RelayFailures.WithLabelValues(metrics.FailConnect), 0)
		})
	}
}
