// Package grafana holds Trawl's Grafana dashboards and datasource
// provisioning, and expands dashboard queries the way Grafana and the
// grafana-clickhouse-datasource plugin do, so the tests can run every panel's
// SQL on a real ClickHouse.
package grafana

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Var is the current value of a dashboard variable.
type Var struct {
	// All is the "All" option; Values then lists every option (used when the
	// variable has no custom all value).
	All      bool
	AllValue string
	// Values selected; a multi-value variable always has a list, even of one.
	Values []string
	Multi  bool
}

// Query is what a panel query is expanded with.
type Query struct {
	From, To time.Time
	// Interval is the panel's $__interval (Grafana: the time range divided
	// by the data points, at least the panel's min interval).
	Interval time.Duration
	Vars     map[string]Var
}

// ExpandClickHouse expands a ClickHouse panel query as it happens in Grafana:
// the plugin's frontend first replaces $__conditionalAll(cond, $var) (with
// 1=1 when var is All), then Grafana's template service replaces variables
// (multi-value ones formatted by the plugin as 'a','b', single values raw),
// then the plugin's backend expands its macros ($__timeFilter, ...).
func ExpandClickHouse(sql string, q Query) (string, error) {
	s, err := conditionalAll(sql, q)
	if err != nil {
		return "", err
	}
	s = replaceVars(s, q, func(v Var) string {
		if v.All && v.AllValue != "" {
			return v.AllValue
		}
		if v.Multi || len(v.Values) != 1 {
			return "'" + strings.Join(v.Values, "','") + "'"
		}
		return v.Values[0]
	})
	return backendMacros(s, q)
}

// ExpandPrometheus replaces variables in a PromQL expression as Grafana's
// Prometheus datasource does: multi values as a regex alternation, All as
// the custom all value; $__rate_interval and $__interval as durations.
func ExpandPrometheus(expr string, q Query) string {
	rate := q.Interval * 4
	if rate < time.Minute {
		rate = time.Minute
	}
	expr = strings.ReplaceAll(expr, "$__rate_interval", promDuration(rate))
	expr = strings.ReplaceAll(expr, "${__rate_interval}", promDuration(rate))
	return replaceVars(expr, q, func(v Var) string {
		if v.All && v.AllValue != "" {
			return v.AllValue
		}
		quoted := make([]string, len(v.Values))
		for i, x := range v.Values {
			quoted[i] = regexp.QuoteMeta(x)
		}
		if len(quoted) == 1 {
			return quoted[0]
		}
		return "(" + strings.Join(quoted, "|") + ")"
	})
}

func promDuration(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Seconds())) }

// conditionalAll mirrors the plugin's applyConditionalAll: innermost-last
// occurrence first, arguments split at top-level commas.
func conditionalAll(sql string, q Query) (string, error) {
	const macro = "$__conditionalAll("
	for {
		i := strings.LastIndex(sql, macro)
		if i < 0 {
			return sql, nil
		}
		args, end, err := macroArgs(sql, i+len(macro)-1)
		if err != nil {
			return "", err
		}
		if len(args) != 2 {
			return "", fmt.Errorf("$__conditionalAll needs 2 arguments, got %d in %q", len(args), sql[i:end])
		}
		phrase := args[0]
		name := strings.Trim(strings.TrimSpace(args[1]), "${}")
		if v, ok := q.Vars[name]; ok && (v.All || len(v.Values) == 0) {
			phrase = "1=1"
		}
		sql = sql[:i] + phrase + sql[end:]
	}
}

// macroArgs reads the parenthesised arguments starting at open (the index
// of "("), splitting at commas outside nested parentheses. It returns the
// arguments and the index just past ")".
func macroArgs(s string, open int) ([]string, int, error) {
	depth, start := 0, open+1
	var args []string
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return append(args, s[start:i]), i + 1, nil
			}
		case ',':
			if depth == 1 {
				args = append(args, s[start:i])
				start = i + 1
			}
		}
	}
	return nil, 0, fmt.Errorf("unbalanced parentheses after %q", s[open:min(len(s), open+40)])
}

// Grafana's variable syntax: $name, ${name}, ${name:format}, [[name]].
var varRE = regexp.MustCompile(`\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}`)

func replaceVars(s string, q Query, format func(Var) string) string {
	ms := time.Duration(time.Millisecond)
	builtin := map[string]string{
		"__interval":    promDuration(q.Interval),
		"__interval_ms": fmt.Sprint(int64(q.Interval / ms)),
		"__from":        fmt.Sprint(q.From.UnixMilli()),
		"__to":          fmt.Sprint(q.To.UnixMilli()),
		"__range_s":     fmt.Sprint(int64(q.To.Sub(q.From).Seconds())),
	}
	return varRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[4]
		if v, ok := builtin[name]; ok {
			return v
		}
		v, ok := q.Vars[name]
		if !ok {
			return m // not a variable: a plugin macro such as $__timeFilter
		}
		return format(v)
	})
}

// The backend macros of grafana-clickhouse-datasource (pkg/macros): times
// as toDateTime(unix seconds) or fromUnixTimestamp64Milli(ms), intervals of
// at least one second.
func backendMacros(s string, q Query) (string, error) {
	dt := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	dt64 := func(t time.Time) string { return fmt.Sprintf("fromUnixTimestamp64Milli(%d)", t.UnixMilli()) }
	date := func(t time.Time) string { return fmt.Sprintf("toDate('%s')", t.UTC().Format("2006-01-02")) }
	secs := int(math.Max(q.Interval.Seconds(), 1))
	millis := int(math.Max(float64(q.Interval.Milliseconds()), 1))
	macros := map[string]func(args []string) (string, error){
		"fromTime":    func([]string) (string, error) { return dt(q.From), nil },
		"toTime":      func([]string) (string, error) { return dt(q.To), nil },
		"fromTime_ms": func([]string) (string, error) { return dt64(q.From), nil },
		"toTime_ms":   func([]string) (string, error) { return dt64(q.To), nil },
		"interval_s":  func([]string) (string, error) { return fmt.Sprint(secs), nil },
		"timeFilter": one(func(c string) string {
			return fmt.Sprintf("%s >= %s AND %s <= %s", c, dt(q.From), c, dt(q.To))
		}),
		"timeFilter_ms": one(func(c string) string {
			return fmt.Sprintf("%s >= %s AND %s <= %s", c, dt64(q.From), c, dt64(q.To))
		}),
		"dateFilter": one(func(c string) string {
			return fmt.Sprintf("%s >= %s AND %s <= %s", c, date(q.From), c, date(q.To))
		}),
		"timeInterval": one(func(c string) string {
			return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", c, secs)
		}),
		"timeInterval_ms": one(func(c string) string {
			return fmt.Sprintf("toStartOfInterval(toDateTime64(%s, 3), INTERVAL %d millisecond)", c, millis)
		}),
	}
	var out strings.Builder
	for {
		i := strings.Index(s, "$__")
		if i < 0 {
			out.WriteString(s)
			return out.String(), nil
		}
		out.WriteString(s[:i])
		j := i + 3
		for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		name := s[i+3 : j]
		f, ok := macros[name]
		if !ok {
			return "", fmt.Errorf("unknown macro $__%s", name)
		}
		var args []string
		end := j
		if j < len(s) && s[j] == '(' {
			var err error
			if args, end, err = macroArgs(s, j); err != nil {
				return "", err
			}
			for k := range args {
				args[k] = strings.TrimSpace(args[k])
			}
		}
		r, err := f(args)
		if err != nil {
			return "", fmt.Errorf("$__%s: %w", name, err)
		}
		out.WriteString(r)
		s = s[end:]
	}
}

func one(f func(col string) string) func([]string) (string, error) {
	return func(args []string) (string, error) {
		if len(args) != 1 || args[0] == "" {
			return "", fmt.Errorf("expected 1 argument, received %d", len(args))
		}
		return f(args[0]), nil
	}
}
