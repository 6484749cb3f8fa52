package store

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/filter"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func (s *Store) query(ctx context.Context, b *sqlBuilder) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithParameters(b.params))
}

func timeParam(b *sqlBuilder, t *timestamppb.Timestamp) string {
	return "fromUnixTimestamp64Nano(" + b.bind("Int64", strconv.FormatInt(t.AsTime().UnixNano(), 10)) + ")"
}

// QueryFlows streams stored records selected by req in chronological order:
// flows from the flows table and lost-events records, filtered with the
// same semantics as internal/filter. since and until are inclusive bounds on
// time. number > 0 limits the result to the last N records (the first N
// with first); number 0 returns every record in the range. follow is
// ignored (the live part is the hub's). A bad filter returns a gRPC
// InvalidArgument error.
func (s *Store) QueryFlows(ctx context.Context, req *observerv1.GetFlowsRequest, fn func(*observerv1.GetFlowsResponse) error) error {
	f, err := filter.Compile(req.GetAllowlist(), req.GetDenylist())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	n, first := req.GetNumber(), req.GetFirst()
	asc := first || n == 0
	order := " ORDER BY time DESC, id_hi DESC, id_lo DESC"
	lostOrder := " ORDER BY time DESC"
	if asc {
		order = " ORDER BY time, id_hi, id_lo"
		lostOrder = " ORDER BY time"
	}
	limit := ""
	if n > 0 {
		limit = " LIMIT " + strconv.FormatUint(n, 10)
	}

	// Lost events are few; read them first and interleave.
	lb := newSQLBuilder()
	lq := "SELECT " + strings.Join(lostColumnNames, ", ") + " FROM " + s.d.table("lost_events") +
		" WHERE " + timeRange(lb, req) + " AND " + lb.whereOther(f, true) + lostOrder + limit
	lost, err := s.readLost(s.query(ctx, lb), lq)
	if err != nil {
		return err
	}

	b := newSQLBuilder()
	q := "SELECT " + selectFlowColumns() + " FROM " + s.d.table("flows") + " WHERE " + timeRange(b, req) + " AND " + b.whereFlows(f) + order + limit
	rows, err := s.conn.Query(s.query(ctx, b), q)
	if err != nil {
		return fmt.Errorf("query flows: %w", err)
	}
	defer rows.Close()
	var r flowRow
	targets := r.targets()
	emitted := uint64(0)
	var buf []*observerv1.GetFlowsResponse // last-N: collected newest first
	li := 0
	emit := func(resp *observerv1.GetFlowsResponse) error {
		emitted++
		if asc {
			return fn(resp)
		}
		buf = append(buf, resp)
		return nil
	}
	for rows.Next() && (n == 0 || emitted < n) {
		if err := rows.Scan(targets...); err != nil {
			return fmt.Errorf("read flow row: %w", err)
		}
		fl, err := r.flow()
		if err != nil {
			return err
		}
		for li < len(lost) && (n == 0 || emitted < n) && (asc && !lost[li].Time.AsTime().After(r.time) || !asc && lost[li].Time.AsTime().After(r.time)) {
			if err := emit(lostResponse(lost[li])); err != nil {
				return err
			}
			li++
		}
		if n > 0 && emitted >= n {
			break
		}
		if err := emit(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: fl}, NodeName: fl.NodeName, Time: fl.Time}); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read flows: %w", err)
	}
	for ; li < len(lost) && (n == 0 || emitted < n); li++ {
		if err := emit(lostResponse(lost[li])); err != nil {
			return err
		}
	}
	slices.Reverse(buf)
	for _, resp := range buf {
		if err := fn(resp); err != nil {
			return err
		}
	}
	return nil
}

func timeRange(b *sqlBuilder, req *observerv1.GetFlowsRequest) string {
	var p []string
	if req.GetSince() != nil {
		p = append(p, "time >= "+timeParam(b, req.GetSince()))
	}
	if req.GetUntil() != nil {
		p = append(p, "time <= "+timeParam(b, req.GetUntil()))
	}
	return and(p)
}

func lostResponse(l *flowv1.LostEvent) *observerv1.GetFlowsResponse {
	return &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_LostEvents{LostEvents: l}, NodeName: l.NodeName, Time: l.Time}
}

func (s *Store) readLost(ctx context.Context, q string) ([]*flowv1.LostEvent, error) {
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query lost events: %w", err)
	}
	defer rows.Close()
	var out []*flowv1.LostEvent
	for rows.Next() {
		var (
			t               time.Time
			node, src, det  string
			num             uint64
			hasCPU, present uint8
			cpu             int32
		)
		if err := rows.Scan(&t, &node, &src, &num, &hasCPU, &cpu, &det, &present); err != nil {
			return nil, fmt.Errorf("read lost events: %w", err)
		}
		l := &flowv1.LostEvent{NodeName: node, Source: flowv1.LostEventSource(flowv1.LostEventSource_value[src]), NumEventsLost: num, Detail: det}
		if present&1 != 0 {
			l.Time = timestamppb.New(t)
		}
		if hasCPU != 0 {
			l.Cpu = wrapperspb.Int32(cpu)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// CountFlows is the number of stored flow records.
func (s *Store) CountFlows(ctx context.Context) (uint64, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.d.table("flows")).Scan(&n); err != nil {
		return 0, fmt.Errorf("count flows: %w", err)
	}
	return n, nil
}

// LatestConntrack returns the newest sample of each node (of the given
// nodes; all nodes when empty), ordered by node name.
func (s *Store) LatestConntrack(ctx context.Context, nodes []string) ([]*flowv1.ConntrackSample, error) {
	b := newSQLBuilder()
	where := "1"
	if len(nodes) > 0 {
		where = b.inStrings("node", nodes)
	}
	q := "SELECT sample FROM " + s.d.table("conntrack") + " WHERE " + where + " ORDER BY node, time DESC LIMIT 1 BY node"
	rows, err := s.conn.Query(s.query(ctx, b), q)
	if err != nil {
		return nil, fmt.Errorf("query conntrack samples: %w", err)
	}
	defer rows.Close()
	var out []*flowv1.ConntrackSample
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("read conntrack sample: %w", err)
		}
		cs := &flowv1.ConntrackSample{}
		if err := proto.Unmarshal([]byte(raw), cs); err != nil {
			return nil, fmt.Errorf("decode conntrack sample: %w", err)
		}
		out = append(out, cs)
	}
	return out, rows.Err()
}

// UpsertNode stores a node's status; the newest last_seen wins.
func (s *Store) UpsertNode(ctx context.Context, n *flowv1.NodeStatus) error {
	if n.GetNodeName() == "" {
		return fmt.Errorf("store node status: empty node name")
	}
	seen := time.Now()
	if n.LastSeen != nil {
		seen = n.LastSeen.AsTime()
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node status: %w", err)
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.d.table("nodes")+" (node, last_seen, state, version, boot_id, status)")
	if err != nil {
		return fmt.Errorf("store node status of %s: %w", n.GetNodeName(), err)
	}
	if err := b.Append(n.GetNodeName(), seen, n.GetState().String(), n.GetVersion(), n.GetBootId(), string(raw)); err != nil {
		_ = b.Abort()
		return fmt.Errorf("store node status of %s: %w", n.GetNodeName(), err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("store node status of %s: %w", n.GetNodeName(), err)
	}
	return nil
}

// Nodes returns the latest stored status of every node, by name.
func (s *Store) Nodes(ctx context.Context) ([]*flowv1.NodeStatus, error) {
	rows, err := s.conn.Query(ctx, "SELECT argMax(status, last_seen) FROM "+s.d.table("nodes")+" GROUP BY node ORDER BY node")
	if err != nil {
		return nil, fmt.Errorf("query nodes: %w", err)
	}
	defer rows.Close()
	var out []*flowv1.NodeStatus
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("read node status: %w", err)
		}
		n := &flowv1.NodeStatus{}
		if err := proto.Unmarshal([]byte(raw), n); err != nil {
			return nil, fmt.Errorf("decode node status: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// entity renders a rollup endpoint as "namespace/workload", the namespace
// alone, or "world" for addresses outside the cluster.
func entity(p string) string {
	return fmt.Sprintf("if(%[1]s_namespace = '', 'world', if(%[1]s_workload = '', %[1]s_namespace, concat(%[1]s_namespace, '/', %[1]s_workload)))", p)
}

// rollupClassSQL is the drop class of a flows_1m row: stored from schema
// version 3 on, derived from the reason for rows rolled up before.
var rollupClassSQL = "if(drop_class != '', drop_class, " + dropClassSQL("drop_reason_desc", "drop_reason_desc") + ")"

// topClasses are the drop classes a droppers ranking counts: the requested
// ones, or every class but teardown.
func topClasses(req []string) ([]string, error) {
	if len(req) == 0 {
		var out []string
		for _, c := range dropclass.All {
			if c.Actionable() {
				out = append(out, string(c))
			}
		}
		return out, nil
	}
	var out []string
	for _, v := range req {
		c, err := dropclass.Parse(v)
		if err != nil {
			return nil, err
		}
		out = append(out, string(c))
	}
	return out, nil
}

// Top answers GetTop from the per-minute rollups (conntrack creators from
// the samples table). The window defaults to the last hour, the limit to 10.
// Droppers rank drops of the requested classes, by default every class but
// teardown.
func (s *Store) Top(ctx context.Context, req *observerv1.GetTopRequest) (*observerv1.GetTopResponse, error) {
	until := time.Now()
	if req.GetUntil() != nil {
		until = req.GetUntil().AsTime()
	}
	since := until.Add(-time.Hour)
	if req.GetSince() != nil {
		since = req.GetSince().AsTime()
	}
	limit := req.GetLimit()
	if limit == 0 {
		limit = 10
	}
	b := newSQLBuilder()
	lim := b.bind("UInt32", strconv.FormatUint(uint64(limit), 10))
	window := func(col string) string {
		return col + " >= toStartOfMinute(fromUnixTimestamp64Nano(" + b.bind("Int64", strconv.FormatInt(since.UnixNano(), 10)) +
			")) AND " + col + " <= fromUnixTimestamp64Nano(" + b.bind("Int64", strconv.FormatInt(until.UnixNano(), 10)) + ")"
	}
	nsFilter := func() string {
		if len(req.GetNamespace()) == 0 {
			return "1"
		}
		return "(" + b.inStrings("src_namespace", req.GetNamespace()) + " OR " + b.inStrings("dst_namespace", req.GetNamespace()) + ")"
	}
	var q string
	switch req.GetKind() {
	case observerv1.TopKind_TOP_KIND_DNS_NAMES, observerv1.TopKind_TOP_KIND_DNS_NXDOMAIN_CLIENTS, observerv1.TopKind_TOP_KIND_DNS_SLOW_NAMES:
		ns := "1"
		if len(req.GetNamespace()) > 0 {
			ns = b.inStrings("client_namespace", req.GetNamespace())
		}
		return s.topDNS(ctx, b, req.GetKind(), window("minute")+" AND "+ns, lim)
	case observerv1.TopKind_TOP_KIND_TCP_SLOWEST, observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS:
		ns := "1"
		if len(req.GetNamespace()) > 0 {
			ns = "(" + b.inStrings("client_namespace", req.GetNamespace()) + " OR " + b.inStrings("server_namespace", req.GetNamespace()) + ")"
		}
		return s.topTCP(ctx, b, req.GetKind(), window("minute")+" AND "+ns, lim)
	case observerv1.TopKind_TOP_KIND_TALKERS, observerv1.TopKind_TOP_KIND_UNSPECIFIED:
		q = "SELECT " + entity("src") + " AS s, " + entity("dst") + " AS d, '' AS reason, '' AS class, sum(bytes) AS by, sum(packets), sum(flows), sum(drops), toUInt64(0), CAST([], 'Array(String)') AS pol" +
			" FROM " + s.d.table("flows_1m") + " WHERE " + window("minute") + " AND " + nsFilter() +
			" GROUP BY s, d HAVING by > 0 ORDER BY by DESC, s, d LIMIT " + lim
	case observerv1.TopKind_TOP_KIND_DROPPERS:
		classes, err := topClasses(req.GetDropClass())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "drop_class: "+err.Error())
		}
		q = "SELECT " + entity("src") + " AS s, " + entity("dst") + " AS d, drop_reason_desc AS reason, " + rollupClassSQL + " AS class, sum(drop_bytes), toUInt64(0), sum(records), sum(drops) AS dr, toUInt64(0), CAST([], 'Array(String)') AS pol" +
			" FROM " + s.d.table("flows_1m") + " WHERE " + window("minute") + " AND " + nsFilter() +
			" GROUP BY s, d, reason, class HAVING dr > 0 AND " + b.inStrings("class", classes) + " ORDER BY dr DESC, s, d, reason LIMIT " + lim
	case observerv1.TopKind_TOP_KIND_DENIED_PAIRS:
		q = "SELECT " + entity("src") + " AS s, " + entity("dst") + " AS d, '' AS reason, '' AS class, sum(bytes), sum(packets), sum(records) AS r, sum(drops), toUInt64(0), arraySort(groupUniqArray(policy)) AS pol" +
			" FROM " + s.d.table("policy_1m") + " WHERE effect = 'denied' AND " + window("minute") + " AND " + nsFilter() +
			" GROUP BY s, d ORDER BY r DESC, s, d LIMIT " + lim
	case observerv1.TopKind_TOP_KIND_CONNTRACK_CREATORS:
		ns := "1"
		if len(req.GetNamespace()) > 0 {
			ns = b.inStrings("splitByChar('/', c)[1]", req.GetNamespace())
		}
		q = "SELECT c AS s, '' AS d, '' AS reason, '' AS class, toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), sum(n) AS ct, CAST([], 'Array(String)') AS pol FROM " + s.d.table("conntrack") +
			" ARRAY JOIN creators AS c, creator_new AS n WHERE " + window("time") + " AND " + ns +
			" GROUP BY s ORDER BY ct DESC, s LIMIT " + lim
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unknown top kind %d", int32(req.GetKind()))
	}
	rows, err := s.conn.Query(s.query(ctx, b), q)
	if err != nil {
		return nil, fmt.Errorf("query top %s: %w", req.GetKind(), err)
	}
	defer rows.Close()
	resp := &observerv1.GetTopResponse{}
	for rows.Next() {
		e := &observerv1.TopEntry{}
		var pol []string
		if err := rows.Scan(&e.Source, &e.Destination, &e.Reason, &e.DropClass, &e.Bytes, &e.Packets, &e.Flows, &e.Drops, &e.ConntrackEntries, &pol); err != nil {
			return nil, fmt.Errorf("read top %s: %w", req.GetKind(), err)
		}
		if len(pol) > 0 {
			e.Policies = pol
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, rows.Err()
}

// tcpEndpoint renders a tcp_1m client or server (p) as dnsClient does.
func tcpEndpoint(p string) string {
	return fmt.Sprintf("if(%[1]s_namespace = '', if(%[1]s_workload = '', 'world', %[1]s_workload), "+
		"if(%[1]s_workload = '', %[1]s_namespace, concat(%[1]s_namespace, '/', %[1]s_workload)))", p)
}

// TCPPairCounts are the per-group sums of tcp_1m a TCP ranking reads (and
// dev/cmd/bench-relay's pair query): connections with a handshake,
// retransmitted segments, resets, connect timeouts and the merged handshake
// RTT quantiles (0.5, 0.9, 0.99 in ns; NaN when no handshake was measured).
const TCPPairCounts = "sum(connections) AS conns, sum(retransmits) AS rtx, sum(resets) AS rst, sum(timeouts) AS tmo, " +
	"CAST(quantilesTDigestMerge(0.5, 0.9, 0.99)(rtt), 'Array(Float64)') AS q"

// topTCP ranks client/server workload pairs of the tcp_1m rollup by p99
// handshake RTT (pairs with a measured handshake) or by retransmitted
// segments (pairs with any). Source is the client, destination the server.
func (s *Store) topTCP(ctx context.Context, b *sqlBuilder, kind observerv1.TopKind, where, lim string) (*observerv1.GetTopResponse, error) {
	q := "SELECT " + tcpEndpoint("client") + " AS c, " + tcpEndpoint("server") + " AS sv, " + TCPPairCounts +
		" FROM " + s.d.table("tcp_1m") + " WHERE " + where + " GROUP BY c, sv"
	if kind == observerv1.TopKind_TOP_KIND_TCP_SLOWEST {
		q += " HAVING conns > 0 AND isFinite(q[3]) ORDER BY q[3] DESC, c, sv LIMIT " + lim
	} else {
		q += " HAVING rtx > 0 ORDER BY rtx DESC, c, sv LIMIT " + lim
	}
	rows, err := s.conn.Query(s.query(ctx, b), q)
	if err != nil {
		return nil, fmt.Errorf("query top %s: %w", kind, err)
	}
	defer rows.Close()
	resp := &observerv1.GetTopResponse{}
	for rows.Next() {
		e := &observerv1.TopEntry{}
		var lat []float64
		if err := rows.Scan(&e.Source, &e.Destination, &e.TcpConnections, &e.TcpRetransmits, &e.TcpResets, &e.TcpTimeouts, &lat); err != nil {
			return nil, fmt.Errorf("read top %s: %w", kind, err)
		}
		if len(lat) == 3 && !math.IsNaN(lat[0]) && !math.IsNaN(lat[2]) {
			e.TcpRttP50 = durationpb.New(time.Duration(lat[0]))
			e.TcpRttP99 = durationpb.New(time.Duration(lat[2]))
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, rows.Err()
}

// dnsClient renders a dns_1m client as "namespace/workload", the
// namespace alone, the reserved identity of an endpoint without a
// namespace (reserved:host), or "world".
const dnsClient = "if(client_namespace = '', if(client_workload = '', 'world', client_workload), " +
	"if(client_workload = '', client_namespace, concat(client_namespace, '/', client_workload)))"

// dnsCounts are the per-group sums of dns_1m every DNS ranking reads:
// queries, error responses (any rcode but NOERROR), NXDOMAIN responses,
// responses, and the merged latency quantiles (0.5, 0.9, 0.99; NaN when no
// response in the group was matched to its query).
const dnsCounts = "sum(queries) AS qs, sumIf(responses, dns_rcode NOT IN ('', 'NOERROR')) AS errs, " +
	"sumIf(responses, dns_rcode = 'NXDOMAIN') AS nx, sum(responses) AS rs, " +
	"CAST(quantilesTDigestMerge(0.5, 0.9, 0.99)(latency), 'Array(Float64)') AS lat"

// topDNS ranks the dns_1m rollup: names by queries, client workloads by
// NXDOMAIN answers (with the name each asked for most that way), names by
// p99 latency of matched responses.
func (s *Store) topDNS(ctx context.Context, b *sqlBuilder, kind observerv1.TopKind, where, lim string) (*observerv1.GetTopResponse, error) {
	from := " FROM " + s.d.table("dns_1m") + " WHERE " + where
	var q string
	switch kind {
	case observerv1.TopKind_TOP_KIND_DNS_NAMES:
		q = "SELECT dns_query AS name, '' AS top, " + dnsCounts + from +
			" GROUP BY name HAVING qs + rs > 0 ORDER BY qs DESC, rs DESC, name LIMIT " + lim
	case observerv1.TopKind_TOP_KIND_DNS_SLOW_NAMES:
		q = "SELECT dns_query AS name, '' AS top, " + dnsCounts + from +
			" GROUP BY name HAVING isFinite(lat[3]) ORDER BY lat[3] DESC, name LIMIT " + lim
	case observerv1.TopKind_TOP_KIND_DNS_NXDOMAIN_CLIENTS:
		// Per client and name first, so that each client's most refused
		// name can be picked (ties: the greater name, for a stable answer).
		q = "SELECT client AS name, argMax(dns_query, (n_nx, dns_query)) AS top, sum(n_qs) AS qs, sum(n_errs) AS errs, sum(n_nx) AS nx, sum(n_rs) AS rs, " +
			"CAST(quantilesTDigestMerge(0.5, 0.9, 0.99)(n_lat), 'Array(Float64)') AS lat FROM (" +
			"SELECT " + dnsClient + " AS client, dns_query, sum(queries) AS n_qs, sumIf(responses, dns_rcode NOT IN ('', 'NOERROR')) AS n_errs, " +
			"sumIf(responses, dns_rcode = 'NXDOMAIN') AS n_nx, sum(responses) AS n_rs, quantilesTDigestMergeState(0.5, 0.9, 0.99)(latency) AS n_lat" + from +
			" GROUP BY client, dns_query) GROUP BY name HAVING nx > 0 ORDER BY nx DESC, name LIMIT " + lim
	}
	rows, err := s.conn.Query(s.query(ctx, b), q)
	if err != nil {
		return nil, fmt.Errorf("query top %s: %w", kind, err)
	}
	defer rows.Close()
	resp := &observerv1.GetTopResponse{}
	for rows.Next() {
		var (
			name, top         string
			qs, errs, nx, _rs uint64
			lat               []float64
		)
		if err := rows.Scan(&name, &top, &qs, &errs, &nx, &_rs, &lat); err != nil {
			return nil, fmt.Errorf("read top %s: %w", kind, err)
		}
		e := &observerv1.TopEntry{Source: name, DnsQuery: name, DnsQueries: qs, DnsErrors: errs, DnsNxdomain: nx}
		if kind == observerv1.TopKind_TOP_KIND_DNS_NXDOMAIN_CLIENTS {
			e.DnsQuery, e.Reason = top, top
		}
		if len(lat) == 3 && !math.IsNaN(lat[0]) && !math.IsNaN(lat[2]) {
			e.DnsLatencyP50 = durationpb.New(time.Duration(lat[0]))
			e.DnsLatencyP99 = durationpb.New(time.Duration(lat[2]))
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, rows.Err()
}
