package proxy

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Accept failures (out of descriptors) are retried every 50 ms; the log
// gets one line for a burst of them, not twenty a second.
func TestAcceptErrorLogThrottled(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	logf := acceptErrorLog(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now })
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
	now = now.Add(5 * time.Second)
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
	// A minute on, a failure is logged; when accepting works again, that
	// is said at once, though the last "again" line is less than a minute
	// old: a failure that is over must not be the log's last word.
	now = now.Add(55 * time.Second) // a minute after the first failure line
	logf(errors.New("accept4: too many open files"))
	now = now.Add(time.Second)
	logf(nil)
	tail := buf.String()[strings.LastIndex(strings.TrimSuffix(buf.String(), "\n"), "\n")+1:]
	if !strings.Contains(tail, "accepting connections again") || !strings.Contains(tail, "failures=101") {
		t.Errorf("last line %q, want accepting again with the 101 failures since the last such line", tail)
	}
}
