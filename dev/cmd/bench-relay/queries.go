package main

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"google.golang.org/protobuf/types/known/timestamppb"

	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// fillSQL generates flows server-side (the same cluster shape as gen.go:
// 20 namespaces, 200 pods, 4 nodes, 5,000 skewed tuples, 2 % drops; of the
// TCP aggregates, 10 % carry a handshake RTT, 5 % retransmits, 1 % a
// reset and 1 % zero windows, as gen.go's), so a
// large data set does not need the client at 250k rows/s. The
// materialized views fill the rollups as with real inserts.
const fillSQL = `INSERT INTO %[1]s.flows (time, id_hi, id_lo, node, verdict, event_kind, flow_type, direction,
  drop_reason_desc, drop_reason_kernel, ip_version, src_ip, dst_ip, proto, src_port, dst_port, tcp_flags,
  src_namespace, src_pod, src_workload, src_workload_kind, src_labels,
  dst_namespace, dst_pod, dst_workload, dst_workload_kind, dst_labels,
  is_reply, iface_index, iface_name, allowed_by, denied_by, packets, bytes, first_seen_offset, netns, observation_point, present,
  tcp_syn_ack_ns, tcp_ack_ns, tcp_retransmits, tcp_reset_by, tcp_zero_windows)
WITH cityHash64(number) AS h, h %% 100 AS k, toUInt32(floor(5000 * pow((bitShiftRight(h, 8) %% 10000) / 10000., 2))) AS tup,
  tup %% 200 AS sp, (tup * 7919 + 13) %% 200 AS dp,
  concat('team-', leftPad(toString(sp %% 20), 2, '0')) AS sns, concat('team-', leftPad(toString(dp %% 20), 2, '0')) AS dns,
  concat('svc-', toString(intDiv(sp, 20) %% 5)) AS swl, concat('svc-', toString(intDiv(dp, 20) %% 5)) AS dwl,
  if(tup %% 10 = 0, 17, 6) AS pr, 1 + bitShiftRight(h, 20) %% 100 AS pk,
  if(pr = 6 AND k < 90, bitShiftRight(h, 44) %% 100, 100) AS th
SELECT
  fromUnixTimestamp64Nano(toInt64({start:Int64} + number * {step:Int64})),
  cityHash64('boot', number %% 4), bitOr(0x8000000000000000, (intDiv(number, 4000) * 1048576) + number %% 1000),
  concat('node-', toString(number %% 4)),
  if(k >= 98, 'DROPPED', 'FORWARDED'),
  multiIf(k < 90, 'AGGREGATE', k < 94, 'FLOW_NEW', k < 98, 'FLOW_CLOSE', 'DROP'),
  1, if(h %% 2 = 0, 'EGRESS', 'INGRESS'),
  if(k >= 98, if(h %% 3 = 0, 'NO_SOCKET', 'POLICY_DENIED'), ''), if(k >= 98, if(h %% 3 = 0, 'NO_SOCKET', 'NETFILTER_DROP'), ''),
  1, toIPv6(IPv4NumToString(toUInt32(167837696 + sp))), toIPv6(IPv4NumToString(toUInt32(167837696 + dp))),
  pr, 32768 + tup %% 28000, [80, 443, 5432, 6379, 8080, 53, 9090, 3306][1 + tup %% 8], if(pr = 6, 16, 0),
  sns, concat(swl, '-7d9f', toString(sp)), swl, 'Deployment', ['k8s:app=' || swl, 'k8s:io.kubernetes.pod.namespace=' || sns],
  dns, concat(dwl, '-7d9f', toString(dp)), dwl, 'Deployment', ['k8s:app=' || dwl, 'k8s:io.kubernetes.pod.namespace=' || dns],
  1, 10 + sp, concat('cali', toString(sp)),
  if(k < 98 AND h %% 10 < 4, ['' || dns || '/allow-' || dwl], []), if(k >= 98 AND h %% 3 != 0, [dns || '/default-deny'], []),
  if(k < 90, pk, if(k >= 98, 1 + h %% 3, 1)), if(k < 90, pk * (60 + bitShiftRight(h, 30) %% 1400), if(k >= 98, 60, 52)),
  if(k < 90, toInt64(bitShiftRight(h, 40) %% 5000) * 1000000, 0), 4026532000 + sp, 'tcx-ingress', 1 + 2 + 4 + 8 + 16 + 128 + 256 + 512 + if(pr = 6, 1024, 0) + if(th < 17, 16384, 0),
  if(th < 10, 30000 + (dp %% 10) * 50000 + bitShiftRight(h, 48) %% 200000, 0), if(th < 10, 10000 + bitShiftRight(h, 50) %% 100000, 0),
  if(th >= 10 AND th < 15, 1 + bitShiftRight(h, 56) %% 4, 0), if(th = 15, if(h %% 2 = 0, 'CLIENT', 'SERVER'), ''), if(th = 16, 1, 0)
FROM numbers({off:UInt64}, {cnt:UInt64})`

func timeIt(runs int, fn func() error) (time.Duration, error) {
	var ds []float64
	for i := 0; i < runs; i++ {
		start := time.Now()
		if err := fn(); err != nil {
			return 0, err
		}
		ds = append(ds, float64(time.Since(start)))
	}
	return time.Duration(median(ds)), nil
}

func queries(ctx context.Context, dsn string, conn driver.Conn, end time.Time) {
	db := *queryDB
	n := uint64(*queryFlows)
	var have uint64
	var last time.Time
	_ = conn.QueryRow(ctx, "SELECT count(), max(time) FROM "+db+".flows").Scan(&have, &last)
	if *keep && have == n {
		end = last.Truncate(time.Minute).Add(time.Minute) // reuse: queries relative to the stored data
	} else {
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC")
		have = 0
	}
	s := openStore(ctx, dsn, db)
	defer s.Close()
	start := end.Add(-24 * time.Hour)
	step := uint64(24*time.Hour) / n
	t0 := time.Now()
	const chunk = 10_000_000
	mvs := map[string]string{"flows_1m_mv": "flows_1m", "policy_1m_mv": "policy_1m", "tcp_1m_mv": "tcp_1m"}
	if have == 0 {
		log.Printf("filling %d flows over 24 h server-side…", n)
		// The views are detached during the fill and their targets filled
		// once afterwards with the views' own SELECT: the same rows, much
		// faster than aggregating every 65k-row block.
		for mv := range mvs {
			if err := conn.Exec(ctx, "DETACH TABLE "+db+"."+mv); err != nil {
				log.Fatalf("detach %s: %v", mv, err)
			}
		}
	}
	for off := uint64(0); have == 0 && off < n; off += chunk {
		cnt := min(chunk, n-off)
		qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{
			"start": fmt.Sprint(start.UnixNano()), "step": fmt.Sprint(step), "off": fmt.Sprint(off), "cnt": fmt.Sprint(cnt)}))
		if err := conn.Exec(qctx, fmt.Sprintf(fillSQL, db)); err != nil {
			log.Fatalf("fill: %v", err)
		}
		log.Printf("  %d/%d rows (%.0f rows/s)", off+cnt, n, float64(off+cnt)/time.Since(t0).Seconds())
	}
	if have == 0 {
		for mv, target := range mvs {
			if err := conn.Exec(ctx, "ATTACH TABLE "+db+"."+mv); err != nil {
				log.Fatalf("attach %s: %v", mv, err)
			}
			var sel string
			if err := conn.QueryRow(ctx, "SELECT as_select FROM system.tables WHERE database = ? AND name = ?", db, mv).Scan(&sel); err != nil {
				log.Fatalf("read %s: %v", mv, err)
			}
			if err := conn.Exec(ctx, "INSERT INTO "+db+"."+target+" "+sel); err != nil {
				log.Fatalf("fill %s: %v", target, err)
			}
		}
		log.Printf("filled in %s", time.Since(t0).Round(time.Second))
	}
	// Let background merges settle, as on a server that has been running.
	for i := 0; i < 120; i++ {
		var m uint64
		_ = conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = ?", db).Scan(&m)
		if m == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	var rows, parts, comp uint64
	_ = conn.QueryRow(ctx, "SELECT sum(rows), count(), sum(data_compressed_bytes) FROM system.parts WHERE active AND database = ? AND table = 'flows'", db).Scan(&rows, &parts, &comp)
	fmt.Printf("## Queries on %d stored flows (24 h, %d active parts, %.1f B/flow), median of %d runs\n\n", rows, parts, float64(comp)/float64(rows), *queryRuns)
	fmt.Println("| query | path | median | result |\n|---|---|---|---|")
	hour := timestamppb.New(end.Add(-time.Hour))
	until := timestamppb.New(end)

	var got int
	d, err := timeIt(*queryRuns, func() error {
		got = 0
		return s.QueryFlows(ctx, &observerv1.GetFlowsRequest{Number: 100, Allowlist: []*observerv1.FlowFilter{
			{SourcePod: []string{"team-03/"}}, {DestinationPod: []string{"team-03/"}}}},
			func(*observerv1.GetFlowsResponse) error { got++; return nil })
	})
	report("last 100 flows of namespace team-03 (from or to)", "store.QueryFlows (decoded Flows)", d, err, fmt.Sprintf("%d flows", got))

	var top *observerv1.GetTopResponse
	d, err = timeIt(*queryRuns, func() (err error) {
		top, err = s.Top(ctx, &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_DROPPERS, Since: hour, Until: until, Limit: 10})
		return err
	})
	report("drops of the last hour by reason (top 10 pairs+reason)", "store.Top DROPPERS (flows_1m rollup)", d, err, fmt.Sprintf("%d entries", len(top.GetEntries())))

	var reasons int
	d, err = timeIt(*queryRuns, func() error {
		reasons = 0
		qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"since": fmt.Sprint(end.Add(-time.Hour).UnixNano())}))
		r, err := conn.Query(qctx, "SELECT drop_reason_desc, sum(packets) FROM "+db+".flows WHERE time >= fromUnixTimestamp64Nano({since:Int64}) AND event_kind = 'DROP' GROUP BY 1 ORDER BY 2 DESC")
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			reasons++
		}
		return r.Err()
	})
	report("drops of the last hour by reason", "SQL on the flows table", d, err, fmt.Sprintf("%d reasons", reasons))

	d, err = timeIt(*queryRuns, func() (err error) {
		top, err = s.Top(ctx, &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_TALKERS, Since: hour, Until: until, Limit: 10})
		return err
	})
	report("top 10 talkers of the last hour (workload pairs by bytes)", "store.Top TALKERS (flows_1m rollup)", d, err, fmt.Sprintf("%d entries", len(top.GetEntries())))

	var pairs int
	d, err = timeIt(*queryRuns, func() error {
		pairs = 0
		qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"since": fmt.Sprint(end.Add(-time.Hour).UnixNano())}))
		r, err := conn.Query(qctx, "SELECT src_namespace, src_pod, dst_namespace, dst_pod, sum(bytes) AS b FROM "+db+
			".flows WHERE time >= fromUnixTimestamp64Nano({since:Int64}) AND event_kind = 'AGGREGATE' GROUP BY 1, 2, 3, 4 ORDER BY b DESC LIMIT 10")
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			pairs++
		}
		return r.Err()
	})
	report("top 10 talkers of the last hour (pod pairs by bytes)", "SQL on the flows table", d, err, fmt.Sprintf("%d pairs", pairs))
	tcpQueries(ctx, conn, s, db, end)
	fmt.Println()
	if *hubbleRuns > 0 {
		hubbleCompare(ctx, dsn, db)
	}
	if !*keep {
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC")
	}
}

func report(what, path string, d time.Duration, err error, result string) {
	if err != nil {
		fmt.Printf("| %s | %s | error: %v | |\n", what, path, err)
		return
	}
	fmt.Printf("| %s | %s | %.1f ms | %s |\n", what, path, float64(d.Microseconds())/1000, result)
}

// tcpQueries times TCP health over 24 h (issue 14, part 3): the handshake
// RTT quantiles and retransmits of one client/server workload pair (a busy
// TCP pair of fillSQL: team-01/svc-0 → team-12/svc-1) from the tcp_1m
// rollup and from the flows table, and the two TCP rankings of the day.
func tcpQueries(ctx context.Context, conn driver.Conn, s *store.Store, db string, end time.Time) {
	day := timestamppb.New(end.Add(-24 * time.Hour))
	until := timestamppb.New(end)
	pair := func(q string) (string, error) {
		qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{
			"since": fmt.Sprint(end.Add(-24 * time.Hour).UnixNano()), "until": fmt.Sprint(end.UnixNano())}))
		var conns, rtx, rst, tmo uint64
		var lat []float64
		if err := conn.QueryRow(qctx, q).Scan(&conns, &rtx, &rst, &tmo, &lat); err != nil {
			return "", err
		}
		if len(lat) != 3 {
			return "", fmt.Errorf("quantiles %v", lat)
		}
		return fmt.Sprintf("%d handshakes, RTT p50 %.2f ms p99 %.2f ms, %d retransmits", conns, lat[0]/1e6, lat[2]/1e6, rtx), nil
	}
	var res string
	d, err := timeIt(*queryRuns, func() (err error) {
		res, err = pair("SELECT " + store.TCPPairCounts + " FROM " + db + ".tcp_1m WHERE minute >= toStartOfMinute(fromUnixTimestamp64Nano({since:Int64})) AND minute <= fromUnixTimestamp64Nano({until:Int64})" +
			" AND client_namespace = 'team-01' AND client_workload = 'svc-0' AND server_namespace = 'team-12' AND server_workload = 'svc-1'")
		return err
	})
	report("TCP health of one workload pair over 24 h (RTT p50/p99, retransmits)", "SQL on the tcp_1m rollup", d, err, res)
	d, err = timeIt(*queryRuns, func() (err error) {
		res, err = pair("SELECT countIf(tcp_syn_ack_ns + tcp_ack_ns > 0) AS conns, sum(tcp_retransmits) AS rtx, countIf(tcp_reset_by != '') AS rst, toUInt64(0) AS tmo," +
			" CAST(quantilesTDigestIf(0.5, 0.9, 0.99)(tcp_syn_ack_ns + tcp_ack_ns, tcp_syn_ack_ns + tcp_ack_ns > 0), 'Array(Float64)') AS q FROM " + db + ".flows" +
			" WHERE time >= fromUnixTimestamp64Nano({since:Int64}) AND time <= fromUnixTimestamp64Nano({until:Int64}) AND proto = 6 AND event_kind = 'AGGREGATE'" +
			" AND if(is_reply = 2, dst_namespace, src_namespace) = 'team-01' AND if(is_reply = 2, dst_workload, src_workload) = 'svc-0'" +
			" AND if(is_reply = 2, src_namespace, dst_namespace) = 'team-12' AND if(is_reply = 2, src_workload, dst_workload) = 'svc-1'")
		return err
	})
	report("TCP health of one workload pair over 24 h (RTT p50/p99, retransmits)", "SQL on the flows table", d, err, res)
	for _, k := range []observerv1.TopKind{observerv1.TopKind_TOP_KIND_TCP_SLOWEST, observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS} {
		var top *observerv1.GetTopResponse
		d, err = timeIt(*queryRuns, func() (err error) {
			top, err = s.Top(ctx, &observerv1.GetTopRequest{Kind: k, Since: day, Until: until, Limit: 10})
			return err
		})
		first := ""
		if e := top.GetEntries(); len(e) > 0 {
			first = fmt.Sprintf(", first %s → %s (p99 %s, %d retransmits)", e[0].GetSource(), e[0].GetDestination(), e[0].GetTcpRttP99().AsDuration().Round(time.Microsecond), e[0].GetTcpRetransmits())
		}
		report("top 10 workload pairs of 24 h by "+map[bool]string{true: "p99 handshake RTT", false: "retransmits"}[k == observerv1.TopKind_TOP_KIND_TCP_SLOWEST],
			"store.Top "+strings.TrimPrefix(k.String(), "TOP_KIND_")+" (tcp_1m rollup)", d, err, fmt.Sprintf("%d entries%s", len(top.GetEntries()), first))
	}
}
