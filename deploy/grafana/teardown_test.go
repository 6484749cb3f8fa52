package grafana_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/deploy/grafana"
)

// Teardown drops are counted (the rollup has them) but no ClickHouse panel
// shows them: no row names their reason, and the dropped bytes of the
// traffic panels leave them out (their packets had been delivered).
func TestPanelsLeaveTeardownDropsOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, now := schemaWithTestData(t, ctx)

	var counted uint64
	if err := conn.QueryRow(ctx, "SELECT sum(drops) FROM flows_1m WHERE drop_class = 'teardown'").Scan(&counted); err != nil || counted != 500 {
		t.Fatalf("the rollup counts %d teardown drops (err %v), want 500", counted, err)
	}
	all := grafana.Var{Multi: true, All: true, AllValue: ".*"}
	q := grafana.Query{From: now.Add(-time.Hour), To: now, Interval: time.Minute, Vars: map[string]grafana.Var{"node": all, "namespace": all}}
	var droppedBytes float64
	for _, d := range readDashboards(t) {
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				if tg.RawSQL == "" {
					continue
				}
				sql, err := grafana.ExpandClickHouse(tg.RawSQL, q)
				if err != nil {
					t.Fatal(err)
				}
				rows, err := conn.Query(ctx, sql)
				if err != nil {
					t.Fatalf("%s / %s: %v", d.Title, p.Title, err)
				}
				cols := rows.Columns()
				for rows.Next() {
					vals := make([]any, len(cols))
					for i, ct := range rows.ColumnTypes() {
						vals[i] = newScanTarget(ct.ScanType())
					}
					if err := rows.Scan(vals...); err != nil {
						t.Fatalf("%s / %s: %v", d.Title, p.Title, err)
					}
					row := fmt.Sprint(deref(vals)...)
					if strings.Contains(row, "QUEUE_PURGE") || strings.Contains(row, "teardown") {
						t.Errorf("%s / %s shows a teardown drop: %s", d.Title, p.Title, row)
					}
					if p.Title == "Byte rate by verdict" && fmt.Sprint(deref(vals[1:2])...) == "DROPPED" {
						droppedBytes += toFloat(deref(vals[2:3])[0]) * 60
					}
				}
				rows.Close()
			}
		}
	}
	// 180 B of NO_SOCKET and 240 B of the policy drop; not the 26000 B of
	// the teardown drop.
	if droppedBytes != 420 {
		t.Errorf("Byte rate by verdict: DROPPED bytes %v over the hour, want 420", droppedBytes)
	}
}

func newScanTarget(t reflect.Type) any { return reflect.New(t).Interface() }

func deref(ptrs []any) []any {
	out := make([]any, len(ptrs))
	for i, p := range ptrs {
		out[i] = reflect.ValueOf(p).Elem().Interface()
	}
	return out
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case uint64:
		return float64(n)
	case int64:
		return float64(n)
	case uint32:
		return float64(n)
	case uint16:
		return float64(n)
	}
	panic(fmt.Sprintf("not a number: %T", v))
}
