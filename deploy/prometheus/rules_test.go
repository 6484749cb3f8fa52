package prometheus_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/trawl-dev/trawl/deploy/prometheus"
)

const (
	rulesPath    = "trawl-rules.yaml"
	metricsDoc   = "../../docs/metrics.md"
	runbooksDoc  = "../../docs/runbooks.md"
	runbookURL   = "https://github.com/trawl-dev/trawl/blob/main/docs/runbooks.md#"
	testsPattern = "tests/*.yaml"
)

func readRules(t *testing.T) *prometheus.RuleFile {
	t.Helper()
	f, err := prometheus.ReadRules(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Alerts()) == 0 {
		t.Fatalf("%s has no alerts", rulesPath)
	}
	return f
}

func TestPromtoolAcceptsTheRules(t *testing.T) {
	out, err := prometheus.Promtool("check", "rules", rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out)
}

func TestPromtoolUnitTestsOfTheRulesPass(t *testing.T) {
	files, err := filepath.Glob(testsPattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule unit tests match %s (err %v)", testsPattern, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := prometheus.Promtool("test", "rules", f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The unit tests would be worthless if promtool passed anything: a test that
// expects an alert which cannot fire must fail.
func TestPromtoolFailsAUnitTestThatExpectsTheWrongAlert(t *testing.T) {
	abs, err := filepath.Abs(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	wrong := `rule_files: [` + abs + `]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'trawl_conntrack_utilization{node="n"}'
        values: '0.5+0x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: TrawlConntrackTableNearlyFull
        exp_alerts:
          - exp_labels: {severity: warning, node: n}
`
	path := filepath.Join(t.TempDir(), "wrong.yaml")
	if err := os.WriteFile(path, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := prometheus.Promtool("test", "rules", path); err == nil {
		t.Fatal("promtool passed a unit test expecting an alert at 50 % utilization")
	}
}

func TestPromtoolRejectsAnExpressionThatDoesNotParse(t *testing.T) {
	err := prometheus.CheckExprs(t.TempDir(), map[string]string{"broken": `sum by (node (rate(x[5m]))`})
	if err == nil {
		t.Fatal("promtool accepted a broken expression")
	}
}

// testCases is the part of a promtool unit test file this test reads.
type testCases struct {
	Tests []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func TestEveryAlertHasAUnitTestWhereItFiresAndOneWhereItStaysQuiet(t *testing.T) {
	fires, quiet := map[string]bool{}, map[string]bool{}
	files, _ := filepath.Glob(testsPattern)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tc testCases
		if err := yaml.Unmarshal(b, &tc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range tc.Tests {
			for _, a := range c.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	for _, a := range readRules(t).Alerts() {
		if !fires[a.Alert] {
			t.Errorf("alert %s: no unit test makes it fire", a.Alert)
		}
		if !quiet[a.Alert] {
			t.Errorf("alert %s: no unit test checks it stays quiet", a.Alert)
		}
	}
}

func TestEveryAlertHasASeveritySummaryDescriptionAndRunbookSection(t *testing.T) {
	anchors, err := prometheus.MarkdownAnchors(runbooksDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range readRules(t).Alerts() {
		t.Run(a.Alert, func(t *testing.T) {
			if s := a.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("severity %q, want warning or critical", s)
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(a.Annotations[k]) == "" {
					t.Errorf("annotation %s is missing", k)
				}
			}
			url := a.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, runbookURL)
			if !ok {
				t.Fatalf("runbook_url %q does not point into %s", url, runbookURL)
			}
			if anchor != strings.ToLower(a.Alert) {
				t.Errorf("runbook anchor %q, want the alert's own section %q", anchor, strings.ToLower(a.Alert))
			}
			if !anchors[anchor] {
				t.Errorf("docs/runbooks.md has no heading with anchor #%s", anchor)
			}
		})
	}
}

func TestRulesUseOnlyMetricsAndLabelsListedInTheMetricsContract(t *testing.T) {
	contract, err := prometheus.ReadMetricsDoc(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	f := readRules(t)
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if len(prometheus.Selectors(r.Expr)) == 0 {
				t.Errorf("%s: found no metric in %q", r.Alert, r.Expr)
			}
			for _, p := range contract.Check(r.Expr) {
				t.Errorf("%s: %s", r.Alert+r.Record, p)
			}
		}
	}
}
