package grafana_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"sigs.k8s.io/yaml"

	"github.com/trawl-dev/trawl/deploy/grafana"
	"github.com/trawl-dev/trawl/deploy/prometheus"
	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/relay/store"
)

func TestMain(m *testing.M) { chtest.Main(m) }

const dashboardsDir = "dashboards"

// The dashboards the issue asks for.
var wantDashboards = map[string][]string{ // title -> variables
	"Trawl / Flows":          {"node", "namespace"},
	"Trawl / Drops & Policy": {"node", "namespace"},
	"Trawl / Conntrack":      {"node", "namespace"},
	"Trawl / Pipeline":       {"node"},
	"Trawl / DNS":            {"node", "namespace"},
	"Trawl / TCP health":     {"node", "namespace"},
}

// wantColumns are the columns each ClickHouse panel's visualization relies
// on (time series: a DateTime "time" first, then series label and value).
// A new panel needs an entry here, so its query gets checked too.
var wantColumns = map[string][]string{
	"Trawl / Flows|Flow rate by verdict":                     {"time", "verdict", "flows_per_second"},
	"Trawl / Flows|Byte rate by verdict":                     {"time", "verdict", "bytes_per_second"},
	"Trawl / Flows|Top talkers by namespace":                 {"src_namespace", "dst_namespace", "bytes", "packets", "flows"},
	"Trawl / Flows|Top talkers by workload":                  {"src_namespace", "src_workload", "dst_namespace", "dst_workload", "bytes", "packets", "flows"},
	"Trawl / Flows|Bytes by protocol":                        {"protocol", "bytes"},
	"Trawl / Flows|Top destination ports":                    {"protocol", "port", "bytes", "flows", "workloads"},
	"Trawl / Flows|Recent flows":                             {"time", "node", "kind", "verdict", "source", "destination", "protocol", "dst_port", "packets", "bytes", "drop_reason_desc"},
	"Trawl / Drops & Policy|Drops by reason":                 {"time", "reason", "drops_per_second"},
	"Trawl / Drops & Policy|Policy drops by namespace":       {"time", "namespace", "drops_per_second"},
	"Trawl / Drops & Policy|Policy drops by policy":          {"policy", "drops", "records", "source_workloads"},
	"Trawl / Drops & Policy|Top denied pairs":                {"src_namespace", "src_workload", "dst_namespace", "dst_workload", "protocol", "port", "drops", "policies"},
	"Trawl / Drops & Policy|Recent drops":                    {"time", "node", "source", "destination", "protocol", "dst_port", "packets", "drop_reason_desc", "drop_reason_kernel", "drop_class", "denied_by"},
	"Trawl / Conntrack|Utilization history (samples)":        {"time", "node", "utilization"},
	"Trawl / Conntrack|Top conntrack creators":               {"creator", "ip", "node", "new_entries"},
	"Trawl / Pipeline|Lost events reported (history)":        {"time", "node_source", "lost"},
	"Trawl / DNS|DNS queries per second by client namespace": {"time", "client_namespace", "queries_per_second"},
	"Trawl / DNS|DNS errors by rcode":                        {"time", "rcode", "responses_per_second"},
	"Trawl / DNS|NXDOMAIN by client workload":                {"client_namespace", "client_workload", "nxdomain", "responses", "nxdomain_ratio", "names"},
	"Trawl / DNS|DNS latency p50 and p99":                    {"time", "p50_ms", "p99_ms"},
	"Trawl / DNS|DNS latency by client workload":             {"client_namespace", "client_workload", "responses", "p50_ms", "p99_ms"},
	"Trawl / DNS|Top DNS names":                              {"name", "queries", "answered", "nxdomain", "other_errors", "clients"},
	"Trawl / DNS|Slowest DNS names":                          {"name", "responses", "p50_ms", "p99_ms"},
	"Trawl / DNS|Recent DNS errors":                          {"time", "node", "client", "server", "name", "rcode", "latency_ms"},
	"Trawl / TCP health|Handshake RTT p50 and p99 by pair":   {"time", "pair", "p50_ms", "p99_ms"},
	"Trawl / TCP health|Slowest pairs":                       {"client_namespace", "client_workload", "server_namespace", "server_workload", "connections", "p50_ms", "p99_ms", "retransmits", "resets", "timeouts"},
	"Trawl / TCP health|Retransmits per pair":                {"time", "pair", "retransmits_per_second"},
	"Trawl / TCP health|Most retransmitting pairs":           {"client_namespace", "client_workload", "server_namespace", "server_workload", "retransmits", "connections", "resets"},
	"Trawl / TCP health|Connection timeouts by server":       {"time", "server", "timeouts_per_minute"},
	"Trawl / TCP health|Recent resets":                       {"time", "node", "client", "server", "server_port", "reset_by"},
	"Trawl / TCP health|Recent connect timeouts":             {"time", "node", "client", "destination", "dst_port", "syns"},
}

func readDashboards(t *testing.T) []*grafana.Dashboard {
	t.Helper()
	ds, err := grafana.ReadDashboards(dashboardsDir)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestTheDashboardsExistWithTheirVariables(t *testing.T) {
	got := map[string]bool{}
	uids := map[string]bool{}
	for _, d := range readDashboards(t) {
		got[d.Title] = true
		if d.UID == "" || uids[d.UID] {
			t.Errorf("%s: uid %q empty or not unique", d.File, d.UID)
		}
		uids[d.UID] = true
		want, ok := wantDashboards[d.Title]
		if !ok {
			t.Errorf("%s: unexpected dashboard %q", d.File, d.Title)
			continue
		}
		var names []string
		for _, v := range d.Templating.List {
			names = append(names, v.Name)
			if !v.Multi || !v.IncludeAll {
				t.Errorf("%s: variable %s should be multi-value with All", d.Title, v.Name)
			}
		}
		for _, w := range want {
			if !slices.Contains(names, w) {
				t.Errorf("%s: no variable %s (has %v)", d.Title, w, names)
			}
		}
	}
	for title := range wantDashboards {
		if !got[title] {
			t.Errorf("no dashboard %q", title)
		}
	}
}

func TestEveryPanelUsesAProvisionedDatasource(t *testing.T) {
	b, err := os.ReadFile("provisioning/datasources/trawl.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name           string            `json:"name"`
			UID            string            `json:"uid"`
			Type           string            `json:"type"`
			Access         string            `json:"access,omitempty"`
			URL            string            `json:"url,omitempty"`
			Editable       bool              `json:"editable"`
			JSONData       map[string]any    `json:"jsonData"`
			SecureJSONData map[string]string `json:"secureJsonData,omitempty"`
		} `json:"datasources"`
	}
	if err := yaml.UnmarshalStrict(b, &prov); err != nil {
		t.Fatal(err)
	}
	provisioned := map[string]string{}
	for _, d := range prov.Datasources {
		provisioned[d.UID] = d.Type
	}
	if provisioned[grafana.ClickHouseUID] != grafana.ClickHouseType || provisioned[grafana.PrometheusUID] != grafana.PrometheusType {
		t.Fatalf("provisioning has %v, want %s (%s) and %s (%s)", provisioned, grafana.ClickHouseUID, grafana.ClickHouseType, grafana.PrometheusUID, grafana.PrometheusType)
	}
	for _, d := range readDashboards(t) {
		for _, p := range d.AllPanels() {
			if p.Type == "row" {
				continue
			}
			for _, tg := range p.Targets {
				ref := tg.Datasource
				if ref == nil {
					ref = p.Datasource
				}
				if ref == nil || provisioned[ref.UID] != ref.Type {
					t.Errorf("%s / %s: datasource %+v is not provisioned", d.Title, p.Title, ref)
				}
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s / %s: no queries", d.Title, p.Title)
			}
		}
	}
}

func TestConntrackUtilizationPanelsDrawTheAlertThresholds(t *testing.T) {
	found := 0
	for _, d := range readDashboards(t) {
		for _, p := range d.AllPanels() {
			if !strings.Contains(strings.ToLower(p.Title), "utilization") {
				continue
			}
			found++
			values, style := thresholds(t, p)
			if !slices.Equal(values, []float64{0.8, 0.95}) {
				t.Errorf("%s / %s: thresholds %v, want the alerts' 0.8 and 0.95", d.Title, p.Title, values)
			}
			if m := style; m == "" || m == "off" {
				t.Errorf("%s / %s: thresholds are not drawn (thresholdsStyle %q)", d.Title, p.Title, m)
			}
		}
	}
	if found < 1 {
		t.Error("no conntrack utilization panel")
	}
}

// thresholds reads a panel's threshold values and how they are drawn.
func thresholds(t *testing.T, p grafana.Panel) (values []float64, style string) {
	t.Helper()
	var fc struct {
		Defaults struct {
			Thresholds struct {
				Steps []struct {
					Value *float64 `json:"value"`
				} `json:"steps"`
			} `json:"thresholds"`
			Custom struct {
				ThresholdsStyle struct {
					Mode string `json:"mode"`
				} `json:"thresholdsStyle"`
			} `json:"custom"`
		} `json:"defaults"`
	}
	if err := json.Unmarshal(p.FieldConfig, &fc); err != nil {
		t.Fatal(err)
	}
	for _, s := range fc.Defaults.Thresholds.Steps {
		if s.Value != nil {
			values = append(values, *s.Value)
		}
	}
	return values, fc.Defaults.Custom.ThresholdsStyle.Mode
}

// Each Prometheus panel marked "(alerted)" plots the series of an alert of
// deploy/prometheus/trawl-rules.yaml and draws its threshold.
func TestTheAlertedPanelsDrawTheAlertThresholds(t *testing.T) {
	want := map[string]map[string]float64{
		"Trawl / DNS": {
			"NXDOMAIN ratio by client workload (alerted)": 0.5, // TrawlDNSNXDomainRatioHigh
			"SERVFAIL by server (alerted)":                0.1, // TrawlDNSServerFailures
			"DNS latency p99 and p50 by server (alerted)": 0.5, // TrawlDNSLatencyHigh, seconds
		},
		"Trawl / TCP health": {
			"Handshake RTT p99 and p50 by pair (alerted)": 0.01, // TrawlTCPHandshakeRTTJump's floor, seconds
			"Retransmit ratio by pair (alerted)":          0.02, // TrawlTCPRetransmitRatioHigh
			"Connection timeouts by server (alerted)":     0.05, // TrawlTCPConnectTimeouts, per second
		},
	}
	seen := map[string]int{}
	for _, d := range readDashboards(t) {
		if want[d.Title] == nil {
			continue // its alerted panels are checked by their own tests
		}
		for _, p := range d.AllPanels() {
			w, ok := want[d.Title][p.Title]
			if !ok {
				if strings.HasSuffix(p.Title, "(alerted)") {
					t.Errorf("%s / %s: an alerted panel this test does not know", d.Title, p.Title)
				}
				continue
			}
			seen[d.Title]++
			if values, _ := thresholds(t, p); len(values) != 1 || values[0] != w {
				t.Errorf("%s / %s: thresholds %v, want the alert's %v", d.Title, p.Title, values, w)
			}
		}
	}
	for title, panels := range want {
		if seen[title] != len(panels) {
			t.Errorf("%s: found %d of its %d alerted panels", title, seen[title], len(panels))
		}
	}
}

func TestEveryPromQLExpressionParsesAndUsesOnlyDocumentedMetrics(t *testing.T) {
	contract, err := prometheus.ReadMetricsDoc("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	q := grafana.Query{Interval: 15 * time.Second, Vars: map[string]grafana.Var{
		"node":      {Multi: true, Values: []string{"node-a", "node-b"}},
		"namespace": {Multi: true, All: true, AllValue: ".*"},
	}}
	exprs := map[string]string{}
	for _, d := range readDashboards(t) {
		for _, v := range d.Templating.List {
			if v.Datasource != nil && v.Datasource.Type == grafana.PrometheusType {
				// label_values(metric, label) is Grafana's, not PromQL: check the metric.
				text := v.QueryText()
				inner, ok := strings.CutPrefix(text, "label_values(")
				if !ok {
					t.Errorf("%s: variable %s: unsupported query %q", d.Title, v.Name, text)
					continue
				}
				metric := strings.TrimSpace(strings.Split(inner, ",")[0])
				exprs[d.Title+" / variable "+v.Name] = metric
			}
		}
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					continue
				}
				exprs[d.Title+" / "+p.Title+" / "+tg.RefID] = grafana.ExpandPrometheus(tg.Expr, q)
			}
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("found only %d PromQL expressions", len(exprs))
	}
	if err := prometheus.CheckExprs(t.TempDir(), exprs); err != nil {
		t.Fatal(err)
	}
	for name, e := range exprs {
		for _, p := range contract.Check(e) {
			t.Errorf("%s: %s", name, p)
		}
	}
}

// Selections the ClickHouse queries are run with: everything, one value of
// each variable, two values of each.
var selections = []struct {
	name      string
	node, ns  grafana.Var
	wantsRows bool
}{
	{"all nodes and namespaces", grafana.Var{Multi: true, All: true, AllValue: ".*"}, grafana.Var{Multi: true, All: true, AllValue: ".*"}, true},
	{"one node and one namespace", grafana.Var{Multi: true, Values: []string{"node-a"}}, grafana.Var{Multi: true, Values: []string{"shop"}}, true},
	{"two nodes and two namespaces", grafana.Var{Multi: true, Values: []string{"node-a", "node-b"}}, grafana.Var{Multi: true, Values: []string{"shop", "web"}}, true},
	{"a node without data", grafana.Var{Multi: true, Values: []string{"node-z"}}, grafana.Var{Multi: true, Values: []string{"nowhere"}}, false},
}

// schemaWithTestData makes a database with the store's schema and the
// panels' test data, timed around now (returned, to the second).
func schemaWithTestData(t *testing.T, ctx context.Context) (driver.Conn, time.Time) {
	t.Helper()
	dsn := chtest.Database(t)
	st, err := store.Open(ctx, store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	conn := chtest.Open(t, dsn)
	now := time.Now().Truncate(time.Second)
	insertTestData(t, ctx, conn.Exec, now)
	// The DNS columns and dns_1m are schema version 4 (docs/dns.md): without
	// them only the DNS panels fail.
	if err := insertDNSTestData(ctx, conn.Exec, now); err != nil {
		t.Errorf("insert the DNS test data into flows' DNS columns (docs/dns.md): %v", err)
	}
	// The TCP health columns and tcp_1m are schema version 5
	// (docs/tcp-health.md): without them only the TCP health panels fail.
	if err := insertTCPTestData(ctx, conn.Exec, now); err != nil {
		t.Errorf("insert the TCP test data into flows' TCP health columns (docs/tcp-health.md): %v", err)
	}
	return conn, now
}

func TestEveryClickHousePanelQueryRunsOnTheSchemaAndReturnsItsColumns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, now := schemaWithTestData(t, ctx)

	seen := map[string]bool{}
	for _, d := range readDashboards(t) {
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				ds := tg.Datasource
				if ds == nil {
					ds = p.Datasource
				}
				if ds == nil || ds.Type != grafana.ClickHouseType {
					continue
				}
				key := d.Title + "|" + p.Title
				seen[key] = true
				want, ok := wantColumns[key]
				if !ok {
					t.Errorf("%s: ClickHouse panel without expected columns in this test", key)
					continue
				}
				interval := 15 * time.Second
				if p.Interval != "" {
					var err error
					if interval, err = time.ParseDuration(p.Interval); err != nil {
						t.Fatalf("%s: interval %q: %v", key, p.Interval, err)
					}
				}
				for _, sel := range selections {
					t.Run(key+"/"+sel.name, func(t *testing.T) {
						q := grafana.Query{From: now.Add(-time.Hour), To: now, Interval: interval,
							Vars: map[string]grafana.Var{"node": sel.node, "namespace": sel.ns}}
						sql, err := grafana.ExpandClickHouse(tg.RawSQL, q)
						if err != nil {
							t.Fatal(err)
						}
						cols, types, n, err := run(ctx, conn.Query, sql)
						if err != nil {
							t.Fatalf("query failed: %v\n%s", err, sql)
						}
						if !slices.Equal(cols, want) {
							t.Errorf("columns %v, want %v", cols, want)
						}
						if tg.Format != nil && *tg.Format == 0 && (len(types) == 0 || !strings.HasPrefix(types[0], "DateTime")) {
							t.Errorf("time series panel: first column has type %v, want DateTime", types)
						}
						if sel.wantsRows && n == 0 {
							t.Errorf("no rows from the test data\n%s", sql)
						}
						if !sel.wantsRows && n != 0 {
							t.Errorf("%d rows for a selection without data: a filter is ignored\n%s", n, sql)
						}
					})
				}
			}
		}
		for _, v := range d.Templating.List {
			if v.Datasource == nil || v.Datasource.Type != grafana.ClickHouseType {
				continue
			}
			t.Run(d.Title+"|variable "+v.Name, func(t *testing.T) {
				sql, err := grafana.ExpandClickHouse(v.QueryText(), grafana.Query{From: now.Add(-time.Hour), To: now, Interval: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				values, err := column(ctx, conn.Query, sql)
				if err != nil {
					t.Fatalf("%v\n%s", err, sql)
				}
				want := map[string][]string{"node": {"node-a", "node-b"}, "namespace": {"db", "kube-system", "shop", "web"}}[v.Name]
				if d.Title == "Trawl / DNS" && v.Name == "namespace" {
					// Client namespaces: kube-system's DNS server only answers.
					want = []string{"db", "shop", "web"}
				}
				if d.Title == "Trawl / TCP health" && v.Name == "namespace" {
					// Clients' and servers' namespaces of tcp_1m: the seeded
					// TCP pairs touch no kube-system pod.
					want = []string{"db", "shop", "web"}
				}
				if !slices.Equal(values, want) {
					t.Errorf("values %v, want %v", values, want)
				}
			})
		}
	}
	for key := range wantColumns {
		if !seen[key] {
			t.Errorf("expected panel %s not found in the dashboards", key)
		}
	}
}

// Aggregations over time read the per-minute rollups (flows_1m, policy_1m,
// dns_1m, tcp_1m);
// the raw flows table only serves "newest N" listings, which it answers
// fast because it is sorted by time.
func TestAggregatingPanelsReadTheRollupsNotTheFlowsTable(t *testing.T) {
	rawFlows := regexp.MustCompile(`(?i)\bFROM\s+flows\b(?:[^_]|$)`)
	for _, d := range readDashboards(t) {
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				if !rawFlows.MatchString(tg.RawSQL) {
					continue
				}
				sql := strings.Join(strings.Fields(tg.RawSQL), " ")
				if !strings.Contains(sql, "ORDER BY time DESC LIMIT") || strings.Contains(sql, "GROUP BY") {
					t.Errorf("%s / %s aggregates over the raw flows table; read flows_1m or policy_1m", d.Title, p.Title)
				}
			}
		}
	}
}
