package proxy

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// Accept failures (out of descriptors) are retried every 50 ms; the log
// gets one line for a burst of them, not twenty a second.
func TestAcceptErrorLogThrottled(t *testing.T) {
	var buf bytes.Buffer
	logf := acceptErrorLog(slog.New(slog.NewTextHandler(&buf, nil)))
	for range 100 {
		logf(errors.New("accept4: too many open files"))
	}
	if n := strings.Count(buf.String(), "accept failed"); n != 1 {
		t.Fatalf("%d lines for 100 failures in a burst:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "too many open files") || !strings.Contains(buf.String(), "failures=1") {
		t.Errorf("line lacks the error or the count: %s", buf.String())
	}
	// The burst ends: its count, which no throttled line showed, is told.
	logf(nil)
	if !strings.Contains(buf.String(), "accepting connections again") || !strings.Contains(buf.String(), "failures=100") {
		t.Errorf("no line with the burst's count when accepting works again:\n%s", buf.String())
	}
	// A lasting shortage, where accepting fails and works by turns: no
	// more lines within the minute, either kind.
	lines := strings.Count(buf.String(), "\n")
	for range 100 {
		logf(errors.New("accept4: too many open files"))
		logf(nil)
	}
	if n := strings.Count(buf.String(), "\n") - lines; n != 0 {
		t.Errorf("%d more lines for 100 failures and recoveries within a minute:\n%s", n, buf.String())
	}
}
