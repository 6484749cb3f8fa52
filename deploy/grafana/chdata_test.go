package grafana_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

type execFunc func(ctx context.Context, query string, args ...any) error
type queryFunc func(ctx context.Context, query string, args ...any) (driver.Rows, error)

// flowRow is one row of the flows table with the columns the dashboards read.
type flowRow struct {
	ago                    time.Duration
	node, kind, verdict    string
	dir                    string
	reasonDesc, reasonKern string
	srcIP, dstIP           string
	proto                  int
	srcPort, dstPort       int
	srcNS, srcPod, srcWL   string
	dstNS, dstPod, dstWL   string
	allowed, denied        []string
	packets, bytes         int
}

// insertTestData writes a small cluster's worth of records: forwarded
// traffic shop->web on node-a and web->db on node-b, a NO_SOCKET drop, a
// policy drop of shop->db, a teardown drop, conntrack samples with creators,
// lost events.
// Rollups fill through the schema's materialized views.
func insertTestData(t *testing.T, ctx context.Context, exec execFunc, now time.Time) {
	t.Helper()
	shopToWeb := flowRow{node: "node-a", verdict: "FORWARDED", dir: "EGRESS", srcIP: "10.1.0.5", dstIP: "10.2.0.7", proto: 6, srcPort: 41000, dstPort: 8080,
		srcNS: "shop", srcPod: "frontend-7d9f-abcde", srcWL: "frontend", dstNS: "web", dstPod: "api-5c6b-xyz12", dstWL: "api", allowed: []string{"web/allow-shop"}}
	webToDB := flowRow{node: "node-b", verdict: "FORWARDED", dir: "EGRESS", srcIP: "10.2.0.7", dstIP: "10.3.0.9", proto: 6, srcPort: 52000, dstPort: 5432,
		srcNS: "web", srcPod: "api-5c6b-xyz12", srcWL: "api", dstNS: "db", dstPod: "postgres-0", dstWL: "postgres"}
	var rows []flowRow
	for i, ago := range []time.Duration{40 * time.Minute, 20 * time.Minute, 5 * time.Minute} {
		for _, base := range []flowRow{shopToWeb, webToDB} {
			agg := base
			agg.ago, agg.kind, agg.packets, agg.bytes = ago, "AGGREGATE", 10*(i+1), 15000*(i+1)
			rows = append(rows, agg)
			newFlow := base
			newFlow.ago, newFlow.kind, newFlow.packets, newFlow.bytes = ago+time.Second, "FLOW_NEW", 1, 60
			rows = append(rows, newFlow)
		}
	}
	noSocket := shopToWeb
	noSocket.ago, noSocket.kind, noSocket.verdict, noSocket.dstPort = 10*time.Minute, "DROP", "DROPPED", 9999
	noSocket.reasonDesc, noSocket.reasonKern, noSocket.packets, noSocket.bytes, noSocket.allowed = "NO_SOCKET", "NO_SOCKET", 3, 180, nil
	policyDrop := flowRow{ago: 8 * time.Minute, node: "node-a", kind: "DROP", verdict: "DROPPED", dir: "EGRESS", reasonDesc: "POLICY_DENIED", reasonKern: "NETFILTER_DROP",
		srcIP: "10.1.0.5", dstIP: "10.3.0.9", proto: 6, srcPort: 41500, dstPort: 5432, srcNS: "shop", srcPod: "frontend-7d9f-abcde", srcWL: "frontend",
		dstNS: "db", dstPod: "postgres-0", dstWL: "postgres", denied: []string{"db/deny-all-but-web"}, packets: 4, bytes: 240}
	// A teardown drop (a receive queue purged at close): counted, but no drop
	// panel may show it. Its class comes from the column's default.
	teardown := shopToWeb
	teardown.ago, teardown.kind, teardown.verdict = 6*time.Minute, "DROP", "DROPPED"
	teardown.reasonDesc, teardown.reasonKern, teardown.packets, teardown.bytes, teardown.allowed = "QUEUE_PURGE", "QUEUE_PURGE", 500, 26000, nil
	// An address outside any pod.
	world := flowRow{ago: 3 * time.Minute, node: "node-b", kind: "AGGREGATE", verdict: "FORWARDED", dir: "INGRESS", srcIP: "203.0.113.9", dstIP: "10.2.0.7",
		proto: 17, srcPort: 5353, dstPort: 53, dstNS: "web", dstPod: "api-5c6b-xyz12", dstWL: "api", packets: 2, bytes: 160}
	rows = append(rows, noSocket, policyDrop, teardown, world)

	var values []string
	for _, r := range rows {
		ts := now.Add(-r.ago).UnixNano()
		values = append(values, fmt.Sprintf("(fromUnixTimestamp64Nano(CAST(%d AS Int64)), %s, %s, %s, %s, %s, %s, 4, toIPv6(%s), toIPv6(%s), %d, %d, %d, %s, %s, %s, %s, %s, %s, 1, %s, %s, %d, %d, 'tcx-egress')",
			ts, q(r.node), q(r.verdict), q(r.kind), q(r.dir), q(r.reasonDesc), q(r.reasonKern), q("::ffff:"+r.srcIP), q("::ffff:"+r.dstIP),
			r.proto, r.srcPort, r.dstPort, q(r.srcNS), q(r.srcPod), q(r.srcWL), q(r.dstNS), q(r.dstPod), q(r.dstWL), arr(r.allowed), arr(r.denied), r.packets, r.bytes))
	}
	mustExec(t, ctx, exec, `INSERT INTO flows (time, node, verdict, event_kind, direction, drop_reason_desc, drop_reason_kernel, ip_version,
  src_ip, dst_ip, proto, src_port, dst_port, src_namespace, src_pod, src_workload, dst_namespace, dst_pod, dst_workload,
  is_reply, allowed_by, denied_by, packets, bytes, observation_point) VALUES `+strings.Join(values, ",\n"))

	values = values[:0]
	for i, ago := range []time.Duration{30 * time.Minute, 15 * time.Minute, 2 * time.Minute} {
		for _, node := range []string{"node-a", "node-b"} {
			entries := 50000 + 20000*i
			values = append(values, fmt.Sprintf("(fromUnixTimestamp64Nano(CAST(%d AS Int64)), %s, %d, 262144, %f, 'PERIODIC', 120, %d, 0, 0, 0, 0, ['shop/frontend-7d9f-abcde', ''], ['10.1.0.5', '198.51.100.4'], [90, 30])",
				now.Add(-ago).UnixNano(), q(node), entries, float64(entries)/262144, i))
		}
	}
	mustExec(t, ctx, exec, `INSERT INTO conntrack (time, node, entries, max, utilization, trigger, new, drop, early_drop, insert_failed, invalid, search_restart,
  creators, creator_ips, creator_new) VALUES `+strings.Join(values, ",\n"))

	mustExec(t, ctx, exec, fmt.Sprintf(`INSERT INTO lost_events (time, node, source, num_events_lost, detail) VALUES
  (fromUnixTimestamp64Nano(CAST(%d AS Int64)), 'node-a', 'RINGBUF_RESERVE_FAILED', 17, 'drop events'),
  (fromUnixTimestamp64Nano(CAST(%d AS Int64)), 'node-b', 'MAP_FULL', 3, 'flows')`,
		now.Add(-12*time.Minute).UnixNano(), now.Add(-4*time.Minute).UnixNano()))
}

func q(s string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'" }

func arr(ss []string) string {
	quoted := make([]string, len(ss))
	for i, s := range ss {
		quoted[i] = q(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

func mustExec(t *testing.T, ctx context.Context, exec execFunc, sql string) {
	t.Helper()
	if err := exec(ctx, sql); err != nil {
		t.Fatalf("insert test data: %v\n%s", err, sql)
	}
}

// run executes a query and returns its column names and types and the
// number of rows.
func run(ctx context.Context, query queryFunc, sql string) ([]string, []string, int, error) {
	rows, err := query(ctx, sql)
	if err != nil {
		return nil, nil, 0, err
	}
	defer rows.Close()
	var types []string
	for _, ct := range rows.ColumnTypes() {
		types = append(types, ct.DatabaseTypeName())
	}
	n := 0
	for rows.Next() {
		n++
	}
	return rows.Columns(), types, n, rows.Err()
}

// column returns the values of a one-column query as strings.
func column(ctx context.Context, query queryFunc, sql string) ([]string, error) {
	rows, err := query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if n := len(rows.Columns()); n != 1 {
		return nil, fmt.Errorf("variable query returns %d columns, want 1", n)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
