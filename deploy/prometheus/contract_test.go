package prometheus_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/trawl-dev/trawl/deploy/prometheus"
)

func TestSelectorsFindTheMetricsOfAnExpression(t *testing.T) {
	cases := []struct {
		name string
		expr string
		want []prometheus.Selector
	}{
		{"a bare metric", `up`, []prometheus.Selector{{Metric: "up"}}},
		{"matchers give label names, strings are not metrics",
			`sum by (node) (increase(trawl_conntrack_stat_total{stat=~"drop|early_drop"}[5m])) > 0`,
			[]prometheus.Selector{{Metric: "trawl_conntrack_stat_total", Labels: []string{"stat"}}}},
		{"by-lists, offsets and set operators are skipped",
			`sum by (namespace) (rate(a_total[5m])) > 3 * (sum by (namespace) (increase(b_total[1h] offset 5m)) / 3600 or c * 0)`,
			[]prometheus.Selector{{Metric: "a_total"}, {Metric: "b_total"}, {Metric: "c"}}},
		{"histogram quantile",
			`histogram_quantile(0.99, sum by (le, table) (rate(trawl_relay_insert_duration_seconds_bucket{table=~"$table"}[$__rate_interval])))`,
			[]prometheus.Selector{{Metric: "trawl_relay_insert_duration_seconds_bucket", Labels: []string{"table"}}}},
		{"grafana variables are not metrics",
			`trawl_conntrack_utilization{node=~"${node:regex}"} unless on (node) $other`,
			[]prometheus.Selector{{Metric: "trawl_conntrack_utilization", Labels: []string{"node"}}, {Metric: "x"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := prometheus.Selectors(c.expr)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Selectors(%q)\n got %+v\nwant %+v", c.expr, got, c.want)
			}
		})
	}
}

func TestContractCheckReportsUnknownMetricsAndLabels(t *testing.T) {
	doc := "| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n" +
		"| `trawl_x_total` | counter | `cause` (`a`, `b`), `node` | x |\n" +
		"| `trawl_lat_seconds` | histogram | `table` | y |\n"
	path := filepath.Join(t.TempDir(), "metrics.md")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := prometheus.ReadMetricsDoc(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		expr     string
		problems int
	}{
		{`rate(trawl_x_total{cause="a",node="n",instance="i"}[5m])`, 0},
		{`rate(trawl_lat_seconds_bucket{le="1",table="t"}[5m]) + trawl_lat_seconds_count`, 0},
		{`up{job="trawl-agent"} == 0`, 0},
		{`rate(trawl_y_total[5m])`, 1},
		{`trawl_x_total{a="b"}`, 1},
		{`trawl_lat_seconds_total`, 1},
	}
	for _, tc := range cases {
		if got := c.Check(tc.expr); len(got) != tc.problems {
			t.Errorf("Check(%q) = %v, want %d problems", tc.expr, got, tc.problems)
		}
	}
}
