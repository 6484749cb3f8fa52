package grafana_test

import (
	"testing"
	"time"

	"github.com/trawl-dev/trawl/deploy/grafana"
)

func TestClickHouseQueriesExpandAsGrafanaAndThePluginDo(t *testing.T) {
	from := time.Unix(1700000000, 0)
	to := from.Add(time.Hour)
	q := grafana.Query{From: from, To: to, Interval: time.Minute, Vars: map[string]grafana.Var{
		"node":  {Multi: true, Values: []string{"a", "b"}},
		"ns":    {Multi: true, All: true, AllValue: ".*", Values: []string{"x", "y"}},
		"plain": {Values: []string{"v"}},
		"one":   {Multi: true, Values: []string{"only"}},
	}}
	cases := []struct{ name, in, want string }{
		{"time filter in seconds", "$__timeFilter(minute)", "minute >= toDateTime(1700000000) AND minute <= toDateTime(1700003600)"},
		{"time filter in milliseconds", "$__timeFilter_ms(time)", "time >= fromUnixTimestamp64Milli(1700000000000) AND time <= fromUnixTimestamp64Milli(1700003600000)"},
		{"from and to", "$__fromTime, $__toTime", "toDateTime(1700000000), toDateTime(1700003600)"},
		{"time interval", "$__timeInterval(minute)", "toStartOfInterval(toDateTime(minute), INTERVAL 60 second)"},
		{"interval seconds", "x / $__interval_s", "x / 60"},
		{"multi-value variable quoted and joined", "node IN (${node})", "node IN ('a','b')"},
		{"multi-value variable with one value still quoted", "node IN ($one)", "node IN ('only')"},
		{"single-value variable raw", "x = '$plain'", "x = 'v'"},
		{"conditional all with a selection keeps the condition", "$__conditionalAll(node IN (${node}), $node)", "node IN ('a','b')"},
		{"conditional all with All becomes 1=1", "$__conditionalAll((a IN (${ns}) OR b IN (${ns})), $ns)", "1=1"},
		{"All outside conditional all is the all value", "ns = '$ns'", "ns = '.*'"},
		{"nested parentheses in arguments", "$__conditionalAll(splitByChar('/', c)[1] IN (${node}), $node) AND $__timeFilter(t)",
			"splitByChar('/', c)[1] IN ('a','b') AND t >= toDateTime(1700000000) AND t <= toDateTime(1700003600)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := grafana.ExpandClickHouse(c.in, q)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("ExpandClickHouse(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
		})
	}
}

func TestClickHouseExpansionRejectsUnknownMacrosAndBadArguments(t *testing.T) {
	q := grafana.Query{From: time.Unix(0, 0), To: time.Unix(3600, 0), Interval: time.Second}
	for _, in := range []string{"$__timeFilterr(x)", "$__timeFilter()", "$__timeFilter(a, b)", "$__timeInterval(x"} {
		if got, err := grafana.ExpandClickHouse(in, q); err == nil {
			t.Errorf("ExpandClickHouse(%q) = %q, want an error", in, got)
		}
	}
}

func TestPrometheusVariablesExpandToRegexes(t *testing.T) {
	q := grafana.Query{Interval: 15 * time.Second, Vars: map[string]grafana.Var{
		"node": {Multi: true, Values: []string{"a.b", "c"}},
		"all":  {Multi: true, All: true, AllValue: ".*"},
	}}
	cases := []struct{ in, want string }{
		{`x{node=~"$node"}`, `x{node=~"(a\.b|c)"}`},
		{`x{node=~"${all}"}`, `x{node=~".*"}`},
		{`rate(x[$__rate_interval])`, `rate(x[60s])`},
	}
	for _, c := range cases {
		if got := grafana.ExpandPrometheus(c.in, q); got != c.want {
			t.Errorf("ExpandPrometheus(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
