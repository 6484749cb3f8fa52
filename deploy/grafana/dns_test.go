package grafana_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/trawl-dev/trawl/deploy/grafana"
)

// dnsPanel runs the SQL of one ClickHouse panel of the DNS dashboard over
// the last hour with the given node and namespace selections, and returns
// its rows by column name.
func dnsPanel(t *testing.T, ctx context.Context, conn driver.Conn, now time.Time, title string, node, ns grafana.Var) []map[string]any {
	t.Helper()
	return panelRows(t, ctx, conn, now, "Trawl / DNS", title, node, ns)
}

// panelRows runs the SQL of one ClickHouse panel of a dashboard over the
// last hour with the given node and namespace selections, and returns its
// rows by column name.
func panelRows(t *testing.T, ctx context.Context, conn driver.Conn, now time.Time, dashboard, title string, node, ns grafana.Var) []map[string]any {
	t.Helper()
	for _, d := range readDashboards(t) {
		if d.Title != dashboard {
			continue
		}
		for _, p := range d.AllPanels() {
			if p.Title != title || len(p.Targets) == 0 || p.Targets[0].RawSQL == "" {
				continue
			}
			q := grafana.Query{From: now.Add(-time.Hour), To: now, Interval: time.Minute, Vars: map[string]grafana.Var{"node": node, "namespace": ns}}
			sql, err := grafana.ExpandClickHouse(p.Targets[0].RawSQL, q)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := conn.Query(ctx, sql)
			if err != nil {
				t.Fatalf("%s: %v\n%s", title, err, sql)
			}
			defer rows.Close()
			var out []map[string]any
			for rows.Next() {
				vals := make([]any, len(rows.Columns()))
				for i, ct := range rows.ColumnTypes() {
					vals[i] = newScanTarget(ct.ScanType())
				}
				if err := rows.Scan(vals...); err != nil {
					t.Fatalf("%s: %v", title, err)
				}
				row := map[string]any{}
				for i, c := range rows.Columns() {
					row[c] = deref(vals[i : i+1])[0]
				}
				out = append(out, row)
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("%s: %v", title, err)
			}
			return out
		}
	}
	t.Fatalf("no ClickHouse panel %q in the dashboard %q", title, dashboard)
	return nil
}

func num(v any) float64 {
	if f, ok := v.(float32); ok {
		return float64(f)
	}
	return toFloat(v)
}

func near(got, want float64) bool { return math.Abs(got-want) < 1e-6 }

var (
	allValues = grafana.Var{Multi: true, All: true, AllValue: ".*"}
	nodeA     = grafana.Var{Multi: true, Values: []string{"node-a"}}
	shopOnly  = grafana.Var{Multi: true, Values: []string{"shop"}}
)

// The seeded exchanges of dnsTestExchanges, read back through every DNS
// panel: each number below follows from that list.
func TestTheDNSPanelsShowTheSeededQueriesErrorsAndLatencies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, now := schemaWithTestData(t, ctx)
	panel := func(title string) []map[string]any {
		return dnsPanel(t, ctx, conn, now, title, allValues, allValues)
	}

	t.Run("queries per second add up to the queries of each client namespace", func(t *testing.T) {
		byNS := map[string]float64{}
		for _, r := range panel("DNS queries per second by client namespace") {
			byNS[fmt.Sprint(r["client_namespace"])] += num(r["queries_per_second"]) * 60
		}
		want := map[string]float64{"shop": 18, "web": 7, "db": 1}
		for ns, w := range want {
			if !near(byNS[ns], w) {
				t.Errorf("%s: %v queries over the hour, want %v (all: %v)", ns, byNS[ns], w, byNS)
			}
		}
		if len(byNS) != len(want) {
			t.Errorf("namespaces %v, want %v", byNS, want)
		}
		var one float64
		for _, r := range dnsPanel(t, ctx, conn, now, "DNS queries per second by client namespace", nodeA, shopOnly) {
			one += num(r["queries_per_second"]) * 60
		}
		if !near(one, 18) {
			t.Errorf("node-a and shop selected: %v queries, want frontend's 18", one)
		}
	})

	t.Run("errors by rcode count NXDOMAIN and SERVFAIL answers and no NOERROR", func(t *testing.T) {
		byRcode := map[string]float64{}
		for _, r := range panel("DNS errors by rcode") {
			byRcode[fmt.Sprint(r["rcode"])] += num(r["responses_per_second"]) * 60
		}
		if len(byRcode) != 2 || !near(byRcode["NXDOMAIN"], 12) || !near(byRcode["SERVFAIL"], 1) {
			t.Errorf("errors by rcode over the hour %v, want NXDOMAIN 12 and SERVFAIL 1", byRcode)
		}
	})

	t.Run("NXDOMAIN by client workload names the storming workload only", func(t *testing.T) {
		rows := panel("NXDOMAIN by client workload")
		if len(rows) != 1 {
			t.Fatalf("%d rows %v, want shop/frontend only", len(rows), rows)
		}
		r := rows[0]
		if r["client_namespace"] != "shop" || r["client_workload"] != "frontend" || num(r["nxdomain"]) != 12 || num(r["responses"]) != 18 ||
			!near(num(r["nxdomain_ratio"]), 0.667) || num(r["names"]) != 4 {
			t.Errorf("row %v, want shop/frontend with 12 NXDOMAIN of 18 responses (ratio 0.667) over 4 names", r)
		}
	})

	t.Run("latency over time is the one answer of a minute where only one was answered", func(t *testing.T) {
		at := map[time.Time]map[string]any{}
		for _, r := range panel("DNS latency p50 and p99") {
			at[r["time"].(time.Time).UTC()] = r
		}
		for _, c := range []struct {
			answered time.Time
			ms       float64
		}{
			{now.Add(-15*time.Minute + time.Millisecond), 1},     // postgres' backup.db.svc.cluster.local.
			{now.Add(-10*time.Minute + 50*time.Millisecond), 50}, // api's SERVFAIL
		} {
			r, ok := at[c.answered.Truncate(time.Minute).UTC()]
			if !ok {
				t.Errorf("no point for the minute of %s among %d", c.answered, len(at))
				continue
			}
			if !near(num(r["p50_ms"]), c.ms) || !near(num(r["p99_ms"]), c.ms) {
				t.Errorf("minute of %s: p50 %v ms, p99 %v ms; want both %v", c.answered, r["p50_ms"], r["p99_ms"], c.ms)
			}
		}
	})

	t.Run("latency by client workload puts the client of the slow name first", func(t *testing.T) {
		rows := panel("DNS latency by client workload")
		got := map[string]map[string]any{}
		for _, r := range rows {
			got[fmt.Sprint(r["client_namespace"], "/", r["client_workload"])] = r
		}
		if len(rows) != 3 || fmt.Sprint(rows[0]["client_namespace"], "/", rows[0]["client_workload"]) != "web/api" {
			t.Fatalf("rows %v, want web/api first of three", rows)
		}
		if api := got["web/api"]; num(api["responses"]) != 7 || num(api["p99_ms"]) < 50 || num(api["p99_ms"]) > 200 || num(api["p50_ms"]) > num(api["p99_ms"]) {
			t.Errorf("web/api %v: want 7 responses, p50 <= p99 within its answers' 3..200 ms and p99 at least the SERVFAIL's 50 ms", api)
		}
		if fe := got["shop/frontend"]; num(fe["responses"]) != 18 || num(fe["p50_ms"]) < 1 || num(fe["p99_ms"]) > 2 {
			t.Errorf("shop/frontend %v: want 18 responses between 1 and 2 ms", fe)
		}
		if db := got["db/postgres"]; num(db["responses"]) != 1 || !near(num(db["p50_ms"]), 1) || !near(num(db["p99_ms"]), 1) {
			t.Errorf("db/postgres %v: want its one 1 ms answer", db)
		}
	})

	t.Run("top names rank the most asked name first with its answers", func(t *testing.T) {
		rows := panel("Top DNS names")
		if len(rows) != 9 {
			t.Errorf("%d names, want 9", len(rows))
		}
		byName := map[string]map[string]any{}
		for _, r := range rows {
			byName[fmt.Sprint(r["name"])] = r
		}
		if len(rows) == 0 || rows[0]["name"] != "api.web.svc.cluster.local." || num(rows[0]["queries"]) != 6 || num(rows[0]["answered"]) != 6 || num(rows[0]["clients"]) != 1 {
			t.Errorf("first row %v, want api.web.svc.cluster.local. asked and answered 6 times by 1 client", rows[0])
		}
		if r := byName["apii.web."]; num(r["queries"]) != 3 || num(r["nxdomain"]) != 3 || num(r["answered"]) != 0 {
			t.Errorf("apii.web. %v, want 3 queries, 3 NXDOMAIN", r)
		}
		if r := byName["broken.partner.example."]; num(r["other_errors"]) != 1 || num(r["nxdomain"]) != 0 {
			t.Errorf("broken.partner.example. %v, want its SERVFAIL among the other errors", r)
		}
	})

	t.Run("slowest names put the slow upstream's name first at its latency", func(t *testing.T) {
		rows := panel("Slowest DNS names")
		if len(rows) < 2 {
			t.Fatalf("%d rows", len(rows))
		}
		if r := rows[0]; r["name"] != "slow.partner.example." || num(r["responses"]) != 3 || !near(num(r["p50_ms"]), 200) || !near(num(r["p99_ms"]), 200) {
			t.Errorf("first row %v, want slow.partner.example. with 3 answers at 200 ms", r)
		}
		if r := rows[1]; r["name"] != "broken.partner.example." || !near(num(r["p99_ms"]), 50) {
			t.Errorf("second row %v, want broken.partner.example. at 50 ms", r)
		}
	})

	t.Run("recent errors list every failed answer newest first with client and server", func(t *testing.T) {
		rows := panel("Recent DNS errors")
		if len(rows) != 13 {
			t.Errorf("%d rows, want the 12 NXDOMAIN and 1 SERVFAIL answers", len(rows))
		}
		for i, r := range rows {
			if rc := r["rcode"]; rc != "NXDOMAIN" && rc != "SERVFAIL" {
				t.Errorf("row %d has rcode %v", i, rc)
			}
			if i > 0 && r["time"].(time.Time).After(rows[i-1]["time"].(time.Time)) {
				t.Errorf("row %d is newer than row %d", i, i-1)
			}
		}
		if len(rows) > 0 {
			r := rows[0]
			if r["name"] != "apii.web." || r["client"] != "shop/frontend-7d9f-abcde" || r["server"] != "kube-system/coredns-6f7b-k2p4q" || !near(num(r["latency_ms"]), 1) {
				t.Errorf("newest error %v, want frontend's apii.web. answered by coredns in 1 ms", r)
			}
		}
	})
}
