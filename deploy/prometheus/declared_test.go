package prometheus_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/trawl-dev/trawl/deploy/prometheus"
)

// The rules and dashboards are checked against docs/metrics.md; this checks
// docs/metrics.md against the code, so a name or label the binaries do not
// declare cannot hide behind the document. (A scrape of running binaries,
// in the end-to-end test, also catches metrics declared but never
// registered.)
func TestEveryDocumentedMetricIsDeclaredByTheAgentOrRelayWithItsLabels(t *testing.T) {
	declared, err := prometheus.DeclaredMetrics("trawl_", "../../agent", "../../relay", "../../internal")
	if err != nil {
		t.Fatal(err)
	}
	if len(declared) < 20 {
		t.Fatalf("found only %d trawl_ metrics declared in agent/, relay/ and internal/", len(declared))
	}
	contract, err := prometheus.ReadMetricsDoc(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range contract.Series {
		if m.Name != name || !strings.HasPrefix(name, "trawl_") {
			continue // histogram suffixes and Prometheus' own series
		}
		d, ok := declared[name]
		if !ok {
			t.Errorf("%s is in docs/metrics.md but no Go code declares it", name)
			continue
		}
		if !strings.HasPrefix(m.Type, d.Type) {
			t.Errorf("%s: docs/metrics.md says %q, %s declares a %s", name, m.Type, d.Pos, d.Type)
		}
		labels := slices.Clone(m.Labels)
		slices.Sort(labels)
		if !slices.Equal(labels, d.Labels) {
			t.Errorf("%s: docs/metrics.md lists labels %v, %s declares %v", name, labels, d.Pos, d.Labels)
		}
	}
	for name, d := range declared {
		if _, ok := contract.Series[name]; !ok {
			t.Errorf("%s (%s) is exported but not documented in docs/metrics.md", name, d.Pos)
		}
	}
}
