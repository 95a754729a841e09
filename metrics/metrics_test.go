package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every labelled series an operator alerts on exists, at 0, from the first
// scrape: an alert on rate(sclgate_smtp_refusals_total{reason="size"}[5m])
// must not wait for the first refusal to have a series.
func TestSeriesStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, "test")
	for name, v := range map[string]*prometheus.CounterVec{
		"sclgate_smtp_refusals_total":             m.Rejected,
		"sclgate_definitions_update_checks_total": m.UpdateChecks,
		"sclgate_relay_failures_total":            m.RelayFailures,
		"sclgate_messages_acted_upon_total":       m.ActedUpon,
	} {
		if n := testutil.CollectAndCount(v, name); n == 0 {
			t.Errorf("%s: no series before the first event", name)
		}
	}
	if n := testutil.CollectAndCount(m.Rejected); n != len(RefusalReasons) {
		t.Errorf("refusals: %d series, want %d", n, len(RefusalReasons))
	}
	for _, r := range RefusalReasons {
		if v := testutil.ToFloat64(m.Rejected.WithLabelValues(r)); v != 0 {
			t.Errorf("refusals{%s} = %v", r, v)
		}
	}
}

// The refusal reasons counted anywhere in the code are the ones listed (and
// so started at 0, and named in the help text): every Refuse constant is
// in RefusalReasons, and the gateway counts refusals by those constants,
// never by a string of its own.
func TestRefusalReasonsComplete(t *testing.T) {
	src, err := os.ReadFile("metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := regexp.MustCompile(`(?m)^\s+Refuse\w+\s+= "([a-z_]+)"`).FindAllSubmatch(src, -1)
	if len(consts) == 0 {
		t.Fatal("no Refuse constants found in metrics.go: the pattern is out of date")
	}
	for _, m := range consts {
		if !slices.Contains(RefusalReasons, string(m[1])) {
			t.Errorf("refusal reason %q is a constant but not in RefusalReasons", m[1])
		}
	}
	if len(consts) != len(RefusalReasons) {
		t.Errorf("%d Refuse constants, %d RefusalReasons", len(consts), len(RefusalReasons))
	}
	literal := regexp.MustCompile(`(Rejected\.WithLabelValues|\brefuse)\("`)
	for _, dir := range []string{"../proxy", "../cmd/sclgate"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if loc := literal.FindIndex(b); loc != nil {
				t.Errorf("%s counts a refusal by a string of its own, not a metrics.Refuse constant: %q", f, b[loc[0]:min(loc[1]+20, len(b))])
			}
		}
	}
}
