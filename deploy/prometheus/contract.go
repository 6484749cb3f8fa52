// Package prometheus holds Trawl's alert rules (trawl-rules.yaml, tested by
// this package's tests with promtool) and the checks the rule and dashboard
// tests share: the metric contract in docs/metrics.md, the metric names a
// PromQL expression uses, and running promtool.
package prometheus

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Metric is one row of the tables in docs/metrics.md.
type Metric struct {
	Name   string
	Type   string // counter, gauge, histogram
	Labels []string
}

// SeriesNames are the names a metric exposes: a histogram's _bucket, _sum and
// _count besides its own name.
func (m Metric) SeriesNames() []string {
	if strings.HasPrefix(m.Type, "histogram") {
		return []string{m.Name, m.Name + "_bucket", m.Name + "_sum", m.Name + "_count"}
	}
	return []string{m.Name}
}

// Contract is the set of series names a rule or panel may use, with their
// labels.
type Contract struct {
	Series map[string]Metric // by series name (histogram suffixes included)
}

// Builtin are series that Prometheus itself adds per target; rules may use
// them besides the documented metrics.
var Builtin = []Metric{{Name: "up", Type: "gauge"}}

// TargetLabels are the labels Prometheus attaches to every scraped series.
var TargetLabels = []string{"job", "instance"}

var metricRow = regexp.MustCompile("^\\|\\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\\s*\\|([^|]*)\\|([^|]*)\\|")

// ReadMetricsDoc parses the metric tables of docs/metrics.md: each row
// starting with a back-quoted metric name. Label cells list label names in
// back quotes, with their values in parentheses.
func ReadMetricsDoc(path string) (*Contract, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read metric contract: %w", err)
	}
	defer f.Close()
	c := &Contract{Series: map[string]Metric{}}
	add := func(m Metric) {
		for _, s := range m.SeriesNames() {
			if s != m.Name {
				m := m
				m.Labels = append(append([]string{}, m.Labels...), "le")
				c.Series[s] = m
				continue
			}
			c.Series[s] = m
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := metricRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		add(Metric{Name: m[1], Type: strings.TrimSpace(m[2]), Labels: labelNames(m[3])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metric contract %s: %w", path, err)
	}
	if len(c.Series) == 0 {
		return nil, fmt.Errorf("metric contract %s: no metric rows found", path)
	}
	for _, b := range Builtin {
		add(b)
	}
	return c, nil
}

var (
	parens   = regexp.MustCompile(`\([^)]*\)`)
	backtick = regexp.MustCompile("`([^`]+)`")
)

func labelNames(cell string) []string {
	var out []string
	for _, m := range backtick.FindAllStringSubmatch(parens.ReplaceAllString(cell, ""), -1) {
		out = append(out, m[1])
	}
	return out
}

// Selector is one vector selector in a PromQL expression: a metric name and
// the label names its matchers use.
type Selector struct {
	Metric string
	Labels []string
}

// promqlWords are the keywords and aggregation operators that look like
// metric names to a tokenizer but are not.
var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true,
	"offset": true, "bool": true, "inf": true, "nan": true, "atan2": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true,
	"stddev": true, "stdvar": true, "count": true, "count_values": true,
	"bottomk": true, "topk": true, "quantile": true, "limitk": true,
	"limit_ratio": true,
}

var (
	promString  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	grafanaVar  = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promToken   = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*|[0-9][0-9A-Za-z_.]*|\S`)
	matcherName = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)`)
	identStart  = regexp.MustCompile(`^[A-Za-z_:]`)
)

// Selectors lists the vector selectors of a PromQL expression. It is a
// tokenizer, not a parser (promtool checks syntax): identifiers that are not
// keywords, not function calls, not inside label matchers, ranges or label
// lists (by/on/...) are metric names. Grafana variables ($node, ${x},
// $__rate_interval) are blanked first.
func Selectors(expr string) []Selector {
	// Keep matcher braces intact but blank string contents, so label names
	// can still be read and strings cannot look like metrics.
	s := promString.ReplaceAllString(expr, `""`)
	s = grafanaVar.ReplaceAllString(s, "x")
	toks := promToken.FindAllString(s, -1)
	var out []Selector
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t == "[":
			for i < len(toks) && toks[i] != "]" {
				i++
			}
			continue
		case t == "{":
			// A selector without a name ({__name__="x"}) is not used here.
			j := i
			for j < len(toks) && toks[j] != "}" {
				j++
			}
			i = j
			continue
		case promqlWords[strings.ToLower(t)]:
			// by (...), on (...) and friends take a label list.
			if k := strings.ToLower(t); (k == "by" || k == "without" || k == "on" || k == "ignoring" || k == "group_left" || k == "group_right") && i+1 < len(toks) && toks[i+1] == "(" {
				for i < len(toks) && toks[i] != ")" {
					i++
				}
			}
			continue
		}
		if !identStart.MatchString(t) {
			continue
		}
		if i+1 < len(toks) && toks[i+1] == "(" {
			continue // a function call
		}
		sel := Selector{Metric: t}
		if i+1 < len(toks) && toks[i+1] == "{" {
			j := i + 1
			var body strings.Builder
			for j < len(toks) && toks[j] != "}" {
				body.WriteString(toks[j])
				body.WriteString(" ")
				j++
			}
			for _, m := range matcherName.FindAllStringSubmatch(body.String(), -1) {
				sel.Labels = append(sel.Labels, m[1])
			}
			i = j
		}
		out = append(out, sel)
	}
	return out
}

// Check returns one problem per selector of expr whose metric is not in the
// contract or whose matchers name a label the metric does not have.
func (c *Contract) Check(expr string) []string {
	var problems []string
	for _, sel := range Selectors(expr) {
		m, ok := c.Series[sel.Metric]
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not in docs/metrics.md", sel.Metric))
			continue
		}
		for _, l := range sel.Labels {
			if !contains(m.Labels, l) && !contains(TargetLabels, l) && l != "__name__" {
				problems = append(problems, fmt.Sprintf("metric %s has no label %q (docs/metrics.md lists %v)", sel.Metric, l, m.Labels))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
