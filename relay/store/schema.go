package store

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/trawl-dev/trawl/internal/dropclass"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// migration is one step of the schema. Its statements are idempotent
// (IF NOT EXISTS), so a step interrupted half-way can simply run again.
type migration struct {
	version int
	name    string
	stmts   func(d ddl) []string
}

// migrations is the schema's history. Append only: never edit a step that
// may have run somewhere; add a new one.
var migrations = []migration{
	{1, "flows, rollups, conntrack, lost events, nodes", schemaV1},
	{2, "batch keys on records and the batches table", schemaV2},
	{3, "drop classes on flows and in the flows_1m rollup", schemaV3},
	{4, "DNS (L7) columns on flows, L7_EVENT, the dns_1m rollup", schemaV4},
	{5, "TCP health columns on flows, CONNECT_TIMEOUT, the tcp_1m rollup", schemaV5},
	{6, "smaller flows rows: codecs per column, LowCardinality addresses, policies rebuilt from their names", schemaV6},
}

// ddl renders names and engines for a single server or a cluster. With a
// cluster every table exists as <name>_local (Replicated engine, ON CLUSTER)
// plus <name>, a Distributed table over it; reads and inserts use <name>,
// materialized views connect the local tables.
type ddl struct {
	db        string
	cluster   string
	retention time.Duration
	shardOnly bool // cluster without Keeper: plain engines, no ON CLUSTER
}

func (d ddl) on() string {
	if d.cluster == "" || d.shardOnly {
		return ""
	}
	return " ON CLUSTER " + quoteIdent(d.cluster)
}

// local is the table that holds the data; table is the one clients use.
func (d ddl) local(name string) string {
	if d.cluster == "" {
		return d.table(name)
	}
	return d.table(name + "_local")
}

func (d ddl) table(name string) string { return quoteIdent(d.db) + "." + quoteIdent(name) }

// engine renders a MergeTree-family engine; kind is "", "Summing" or
// "Replacing", args its arguments.
func (d ddl) engine(name, kind, args string) string {
	if d.cluster == "" || d.shardOnly {
		if args == "" {
			return kind + "MergeTree"
		}
		return kind + "MergeTree(" + args + ")"
	}
	zk := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s_local', '{replica}'", d.db, name)
	if args != "" {
		zk += ", " + args
	}
	return "Replicated" + kind + "MergeTree(" + zk + ")"
}

// distributed creates the Distributed table over name_local (cluster only).
// shard is the sharding expression: deterministic, so a retried insert sends
// identical blocks to the same shards and is de-duplicated there.
func (d ddl) distributed(name, shard string) []string {
	if d.cluster == "" {
		return nil
	}
	return []string{fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s AS %s ENGINE = Distributed(%s, %s, %s, %s)",
		d.table(name), d.on(), d.local(name), quoteString(d.cluster), quoteString(d.db), quoteString(name+"_local"), shard)}
}

// dedupSettings make insert_deduplication_token work on non-replicated tables
// too (the window is 0 there by default).
const dedupSettings = "non_replicated_deduplication_window = 10000, replicated_deduplication_window = 10000"

func enum8(names map[int32]string) string {
	keys := make([]int, 0, len(names))
	for k := range names {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s = %d", quoteString(names[int32(k)]), k))
	}
	return "Enum8(" + strings.Join(parts, ", ") + ")"
}

// eventKindsV1 are the event kinds version 1 created flows.event_kind with;
// later kinds are added by the migration that introduced them (L7_EVENT:
// version 4). Pinned, not read from the proto: a step must create the same
// table whatever the proto holds when it runs.
var eventKindsV1 = map[int32]string{0: "EVENT_KIND_UNSPECIFIED", 1: "AGGREGATE", 2: "FLOW_NEW", 3: "FLOW_CLOSE", 4: "DROP", 5: "POLICY_VERDICT"}

// eventKindsV4 adds L7_EVENT (DNS records).
var eventKindsV4 = func() map[int32]string {
	m := map[int32]string{6: "L7_EVENT"}
	for k, v := range eventKindsV1 {
		m[k] = v
	}
	return m
}()

// eventKindsV5 adds CONNECT_TIMEOUT (TCP health).
var eventKindsV5 = func() map[int32]string {
	m := map[int32]string{7: "CONNECT_TIMEOUT"}
	for k, v := range eventKindsV4 {
		m[k] = v
	}
	return m
}()

// eventKinds are the event kinds of the latest schema: what the writer can
// store (a kind the proto has and no migration added yet is stored as 0,
// never failing an insert; TestEventKindEnumHasEveryKindOfTheProto flags it).
var eventKinds = eventKindsV5

func schemaV1(d ddl) []string {
	retention := int64(d.retention / time.Second)
	verdict, kind, dir := enum8(flowv1.Verdict_name), enum8(eventKindsV1), enum8(flowv1.TrafficDirection_name)
	var s []string
	s = append(s, fmt.Sprintf("CREATE DATABASE IF NOT EXISTS %s%s", quoteIdent(d.db), d.on()))

	// flows: one row per record. Sorted by time first (newest-N and time
	// ranges stop early; a namespace or hour bucket first made newest-N 5-7x
	// slower), then by flow id so that a query's tie-break on the id still
	// reads in order (ORDER BY time, id: 20 ms; ORDER BY time with the id as
	// a tie-break outside the key: 500-800 ms on 5 M rows). Namespaces, pods,
	// addresses and nodes have skip indexes. Day partitions let TTL drop
	// whole parts.
	endpoint := func(p string) string {
		return strings.NewReplacer("P_", p+"_").Replace(`
  P_namespace LowCardinality(String),
  P_pod LowCardinality(String),
  P_workload LowCardinality(String),
  P_workload_kind LowCardinality(String),
  P_labels Array(LowCardinality(String)),
  P_more_workload_names Array(String),
  P_more_workload_kinds Array(String),
  P_service_namespace LowCardinality(String),
  P_service LowCardinality(String),
  P_names Array(String),`)
	}
	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  time DateTime64(9) CODEC(DoubleDelta, ZSTD(1)),
  id_hi UInt64 CODEC(ZSTD(1)),
  id_lo UInt64 CODEC(Delta, ZSTD(1)),
  uuid_raw String CODEC(ZSTD(1)),
  node LowCardinality(String),
  verdict %s,
  event_kind %s,
  flow_type UInt8,
  direction %s,
  drop_reason_desc LowCardinality(String),
  drop_reason_kernel LowCardinality(String),
  ip_version UInt8,
  src_ip IPv6 CODEC(ZSTD(1)),
  dst_ip IPv6 CODEC(ZSTD(1)),
  proto UInt8,
  src_port UInt16 CODEC(ZSTD(1)),
  dst_port UInt16 CODEC(ZSTD(1)),
  tcp_flags UInt16,%s%s
  is_reply UInt8,
  iface_index UInt32 CODEC(ZSTD(1)),
  iface_name LowCardinality(String),
  allowed_by Array(LowCardinality(String)),
  denied_by Array(LowCardinality(String)),
  packets UInt64 CODEC(T64, ZSTD(1)),
  bytes UInt64 CODEC(T64, ZSTD(1)),
  first_seen_offset Int64 CODEC(T64, ZSTD(1)),
  last_seen_offset Int64 CODEC(T64, ZSTD(1)),
  netns UInt64 CODEC(ZSTD(1)),
  observation_point LowCardinality(String),
  present UInt16,
  extra String CODEC(ZSTD(1)),
  INDEX src_ns src_namespace TYPE bloom_filter GRANULARITY 1,
  INDEX dst_ns dst_namespace TYPE bloom_filter GRANULARITY 1,
  INDEX src_pod_idx src_pod TYPE bloom_filter GRANULARITY 1,
  INDEX dst_pod_idx dst_pod TYPE bloom_filter GRANULARITY 1,
  INDEX src_ip_idx src_ip TYPE bloom_filter GRANULARITY 2,
  INDEX dst_ip_idx dst_ip TYPE bloom_filter GRANULARITY 2,
  INDEX node_idx node TYPE set(256) GRANULARITY 2,
  INDEX verdict_idx verdict TYPE set(8) GRANULARITY 1
) ENGINE = %s
PARTITION BY toDate(time)
ORDER BY (time, id_hi, id_lo)
TTL toDateTime(time) + toIntervalSecond(%d)
SETTINGS ttl_only_drop_parts = 1, %s`,
		d.local("flows"), d.on(), verdict, kind, dir, endpoint("src"), endpoint("dst"), d.engine("flows", "", ""), retention, dedupSettings))
	s = append(s, d.distributed("flows", "cityHash64(id_hi, intDiv(id_lo, 1048576))")...)

	// flows_1m: traffic and drops per minute. Byte and packet totals only
	// from AGGREGATE records, drop counts only from DROP records, new flows
	// from FLOW_NEW records: instant events are never double counted. The
	// key keeps the node (dashboards filter by it; a workload pair spans a
	// few nodes at most) and leaves out the pod: pods multiply the rows the
	// view writes on every insert, and per-pod detail is in flows.
	rollupKey := `minute, node, src_namespace, dst_namespace, src_workload, dst_workload, verdict, direction, drop_reason_desc, proto, port`
	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  minute DateTime,
  node LowCardinality(String),
  src_namespace LowCardinality(String),
  src_workload LowCardinality(String),
  dst_namespace LowCardinality(String),
  dst_workload LowCardinality(String),
  verdict %s,
  direction %s,
  drop_reason_desc LowCardinality(String),
  proto UInt8,
  port UInt16,
  records UInt64,
  flows UInt64,
  packets UInt64,
  bytes UInt64,
  drops UInt64,
  drop_bytes UInt64
) ENGINE = %s
PARTITION BY toDate(minute)
ORDER BY (%s)
TTL minute + toIntervalSecond(%d)
SETTINGS ttl_only_drop_parts = 1, %s`,
		d.local("flows_1m"), d.on(), verdict, dir, d.engine("flows_1m", "Summing", ""), rollupKey, retention, dedupSettings))
	s = append(s, d.distributed("flows_1m", "rand()")...)
	s = append(s, fmt.Sprintf(`CREATE MATERIALIZED VIEW IF NOT EXISTS %s%s TO %s AS
SELECT toStartOfMinute(time) AS minute, node, src_namespace, src_workload, dst_namespace, dst_workload,
  verdict, direction, drop_reason_desc, proto,
  if(is_reply = 2, src_port, dst_port) AS port,
  count() AS records,
  countIf(event_kind = 'FLOW_NEW') AS flows,
  sumIf(f.packets, event_kind = 'AGGREGATE') AS packets,
  sumIf(f.bytes, event_kind = 'AGGREGATE') AS bytes,
  sumIf(f.packets, event_kind = 'DROP') AS drops,
  sumIf(f.bytes, event_kind = 'DROP') AS drop_bytes
FROM %s AS f
GROUP BY %s`, d.local("flows_1m_mv"), d.on(), d.local("flows_1m"), d.local("flows"), rollupKey))

	// policy_1m: records per minute per policy that allowed or denied them,
	// by namespace and workload pair and verdict.
	policyKey := `minute, policy, effect, node, src_namespace, dst_namespace, src_workload, dst_workload, verdict, proto, port`
	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  minute DateTime,
  policy LowCardinality(String),
  effect Enum8('allowed' = 1, 'denied' = 2),
  node LowCardinality(String),
  src_namespace LowCardinality(String),
  src_workload LowCardinality(String),
  dst_namespace LowCardinality(String),
  dst_workload LowCardinality(String),
  verdict %s,
  proto UInt8,
  port UInt16,
  records UInt64,
  packets UInt64,
  bytes UInt64,
  drops UInt64
) ENGINE = %s
PARTITION BY toDate(minute)
ORDER BY (%s)
TTL minute + toIntervalSecond(%d)
SETTINGS ttl_only_drop_parts = 1, %s`,
		d.local("policy_1m"), d.on(), verdict, d.engine("policy_1m", "Summing", ""), policyKey, retention, dedupSettings))
	s = append(s, d.distributed("policy_1m", "rand()")...)
	s = append(s, fmt.Sprintf(`CREATE MATERIALIZED VIEW IF NOT EXISTS %s%s TO %s AS
SELECT toStartOfMinute(time) AS minute, pe.1 AS policy, pe.2 AS effect,
  node, src_namespace, dst_namespace, src_workload, dst_workload, verdict, proto,
  if(is_reply = 2, src_port, dst_port) AS port,
  count() AS records,
  sumIf(f.packets, event_kind = 'AGGREGATE') AS packets,
  sumIf(f.bytes, event_kind = 'AGGREGATE') AS bytes,
  sumIf(f.packets, event_kind = 'DROP') AS drops
FROM %s AS f
ARRAY JOIN arrayConcat(arrayMap(p -> (p, 'allowed'), allowed_by), arrayMap(p -> (p, 'denied'), denied_by)) AS pe
GROUP BY %s`, d.local("policy_1m_mv"), d.on(), d.local("policy_1m"), d.local("flows"), policyKey))

	// conntrack: one row per sample; the full sample is kept as protobuf.
	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  time DateTime64(9) CODEC(DoubleDelta, ZSTD(1)),
  node LowCardinality(String),
  netns UInt64,
  entries UInt64,
  max UInt64,
  utilization Float64,
  trigger LowCardinality(String),
  new UInt64, drop UInt64, early_drop UInt64, insert_failed UInt64, invalid UInt64, search_restart UInt64,
  creators Array(String),
  creator_ips Array(String),
  creator_new Array(UInt64),
  sample String CODEC(ZSTD(1))
) ENGINE = %s
PARTITION BY toDate(time)
ORDER BY (node, time)
TTL toDateTime(time) + toIntervalSecond(%d)
SETTINGS ttl_only_drop_parts = 1, %s`,
		d.local("conntrack"), d.on(), d.engine("conntrack", "", ""), retention, dedupSettings))
	s = append(s, d.distributed("conntrack", "cityHash64(node)")...)

	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  time DateTime64(9),
  node LowCardinality(String),
  source LowCardinality(String),
  num_events_lost UInt64,
  has_cpu UInt8,
  cpu Int32,
  detail String,
  present UInt8
) ENGINE = %s
PARTITION BY toDate(time)
ORDER BY time
TTL toDateTime(time) + toIntervalSecond(%d)
SETTINGS ttl_only_drop_parts = 1, %s`,
		d.local("lost_events"), d.on(), d.engine("lost_events", "", ""), retention, dedupSettings))
	s = append(s, d.distributed("lost_events", "cityHash64(node)")...)

	// nodes: the latest status per node wins (ReplacingMergeTree on
	// last_seen; readers take argMax as well, merges are lazy).
	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  node LowCardinality(String),
  last_seen DateTime64(9),
  state LowCardinality(String),
  version LowCardinality(String),
  boot_id String,
  status String
) ENGINE = %s
ORDER BY node`, d.local("nodes"), d.on(), d.engine("nodes", "Replacing", "last_seen")))
	s = append(s, d.distributed("nodes", "cityHash64(node)")...)
	return s
}

// schemaV2 lets any relay ask which agent batches are stored, whichever
// insert carried them: flows, conntrack and lost_events get a batch column
// (BatchID of the agent batch key, 0 for rows written without one), and
// materialized views record each (batch, node, table) in batches as part of
// the very insert that stores the rows. The writer asks batches before every
// insert attempt and leaves out what is there (see Writer). The column costs
// 8 bytes a row before compression; an EPHEMERAL column would cost nothing
// but materialized views do not see those (ClickHouse 26.7: "no column b").
func schemaV2(d ddl) []string {
	retention := int64(d.retention / time.Second)
	var s []string
	for _, t := range batchTables {
		s = append(s, fmt.Sprintf("ALTER TABLE %s%s ADD COLUMN IF NOT EXISTS batch UInt64 DEFAULT 0 CODEC(ZSTD(1))", d.local(t), d.on()))
		if d.cluster != "" { // the Distributed table clients insert into
			s = append(s, fmt.Sprintf("ALTER TABLE %s%s ADD COLUMN IF NOT EXISTS batch UInt64 DEFAULT 0", d.table(t), d.on()))
		}
	}
	// ORDER BY batch: the writer looks keys up by it. time is the oldest
	// record of the batch in that table, so the TTL drops a batch's entry
	// with its rows, not before (a resend after that is stored again).
	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  batch UInt64,
  node LowCardinality(String),
  tbl LowCardinality(String),
  time DateTime64(9)
) ENGINE = %s
PARTITION BY toYYYYMM(time)
ORDER BY (batch, node, tbl)
TTL toDateTime(time) + toIntervalSecond(%d)
SETTINGS %s`, d.local("batches"), d.on(), d.engine("batches", "Replacing", ""), retention, dedupSettings))
	s = append(s, d.distributed("batches", "batch")...)
	for _, t := range batchTables {
		s = append(s, fmt.Sprintf(`CREATE MATERIALIZED VIEW IF NOT EXISTS %s%s TO %s AS
SELECT batch, node, %s AS tbl, min(time) AS time
FROM %s
WHERE batch != 0
GROUP BY batch, node`, d.local("batches_"+t+"_mv"), d.on(), d.local("batches"), quoteString(t), d.local(t)))
	}
	return s
}

// rollupKeyV3 is the key of flows_1m from version 3 on: version 1's and the
// drop class.
const rollupKeyV3 = `minute, node, src_namespace, dst_namespace, src_workload, dst_workload, verdict, direction, drop_reason_desc, proto, port, drop_class`

// schemaV3 adds drop_class (internal/dropclass: policy, no-socket, overload,
// malformed, routing, teardown, other; empty on records that are not drops)
// to flows and to the flows_1m rollup, whose key gains it so that drop
// counts are kept per class: dashboards and alerts leave teardown out.
//
// flows rows written before this version have no stored class: the
// column's DEFAULT computes it from their drop reasons when they are read
// (dropClassSQL, the table as this build knows it). Rows of the rollup
// written before have an empty drop_class (a sorting-key column added by ALTER
// may have no default expression); Top classifies those from their
// drop_reason_desc at query time. New relays always send the class.
//
// Every statement is idempotent: ADD COLUMN IF NOT EXISTS, a MODIFY ORDER
// BY to the key the table already has, and MODIFY QUERY to the same query
// change nothing when run again.
func schemaV3(d ddl) []string {
	def := "if(verdict = 'DROPPED', " + dropClassSQL("drop_reason_desc", "drop_reason_kernel") + ", '')"
	var s []string
	s = append(s, fmt.Sprintf("ALTER TABLE %s%s ADD COLUMN IF NOT EXISTS drop_class LowCardinality(String) DEFAULT %s AFTER drop_reason_kernel",
		d.local("flows"), d.on(), def))
	if d.cluster != "" {
		s = append(s, fmt.Sprintf("ALTER TABLE %s%s ADD COLUMN IF NOT EXISTS drop_class LowCardinality(String) DEFAULT %s AFTER drop_reason_kernel",
			d.table("flows"), d.on(), def))
	}
	s = append(s, fmt.Sprintf("ALTER TABLE %s%s ADD COLUMN IF NOT EXISTS drop_class LowCardinality(String) AFTER drop_reason_desc, MODIFY ORDER BY (%s)",
		d.local("flows_1m"), d.on(), rollupKeyV3))
	if d.cluster != "" {
		s = append(s, fmt.Sprintf("ALTER TABLE %s%s ADD COLUMN IF NOT EXISTS drop_class LowCardinality(String) AFTER drop_reason_desc",
			d.table("flows_1m"), d.on()))
	}
	s = append(s, fmt.Sprintf(`ALTER TABLE %s%s MODIFY QUERY
SELECT toStartOfMinute(time) AS minute, node, src_namespace, src_workload, dst_namespace, dst_workload,
  verdict, direction, drop_reason_desc, drop_class, proto,
  if(is_reply = 2, src_port, dst_port) AS port,
  count() AS records,
  countIf(event_kind = 'FLOW_NEW') AS flows,
  sumIf(f.packets, event_kind = 'AGGREGATE') AS packets,
  sumIf(f.bytes, event_kind = 'AGGREGATE') AS bytes,
  sumIf(f.packets, event_kind = 'DROP') AS drops,
  sumIf(f.bytes, event_kind = 'DROP') AS drop_bytes
FROM %s AS f
GROUP BY %s`, d.local("flows_1m_mv"), d.on(), d.local("flows"), rollupKeyV3))
	return s
}

// dnsColumns are the flows columns of L7 DNS records (docs/dns.md, "The
// contract"). On other records they hold empty strings, 0 and empty arrays, which
// cost next to nothing after compression (docs/benchmarks/dns.md).
const dnsColumns = `l7_type LowCardinality(String) AFTER drop_class,
  l7_latency_ns UInt64 CODEC(T64, ZSTD(1)) AFTER l7_type,
  dns_query String CODEC(ZSTD(1)) AFTER l7_latency_ns,
  dns_rcode LowCardinality(String) AFTER dns_query,
  dns_qtypes Array(LowCardinality(String)) AFTER dns_rcode,
  dns_rrtypes Array(LowCardinality(String)) AFTER dns_qtypes,
  dns_ips Array(String) CODEC(ZSTD(1)) AFTER dns_rrtypes,
  dns_cnames Array(String) CODEC(ZSTD(1)) AFTER dns_ips,
  dns_ttl UInt32 CODEC(T64, ZSTD(1)) AFTER dns_cnames`

// dnsRollupKey is the key of dns_1m.
const dnsRollupKey = `minute, node, client_namespace, client_workload, dns_query, dns_rcode`

// schemaV4 adds DNS: the L7 columns of flows (docs/dns.md), L7_EVENT in
// event_kind (widening an Enum8 is a metadata change, no data is
// rewritten), and the dns_1m rollup with its materialized view.
//
// dns_1m keeps, per minute, node, client (namespace and workload: the
// query's source, the response's destination; endpoints without a
// namespace by their reserved identity, e.g. reserved:host), query name
// and response code: queries (requests), responses, and a t-digest of the
// matched responses' latency. AggregatingMergeTree: the counts are
// SimpleAggregateFunction(sum) and the digest merges, so parts and shards
// combine exactly (the digest approximately, as t-digests do). Rows written
// before this version have no DNS columns and roll up nothing.
func schemaV4(d ddl) []string {
	retention := int64(d.retention / time.Second)
	kinds := enum8(eventKindsV4)
	var s []string
	s = append(s, d.addFlowColumns(dnsColumns, kinds)...)
	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  minute DateTime,
  node LowCardinality(String),
  client_namespace LowCardinality(String),
  client_workload LowCardinality(String),
  dns_query String,
  dns_rcode LowCardinality(String),
  queries SimpleAggregateFunction(sum, UInt64),
  responses SimpleAggregateFunction(sum, UInt64),
  latency AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), UInt64)
) ENGINE = %s
PARTITION BY toDate(minute)
ORDER BY (%s)
TTL minute + toIntervalSecond(%d)
SETTINGS ttl_only_drop_parts = 1, %s`,
		d.local("dns_1m"), d.on(), d.engine("dns_1m", "Aggregating", ""), dnsRollupKey, retention, dedupSettings))
	s = append(s, d.distributed("dns_1m", "rand()")...)
	client := func(p string) string {
		return fmt.Sprintf("if(%[1]s_namespace = '', arrayFirst(l -> startsWith(l, 'reserved:'), %[1]s_labels), %[1]s_workload)", p)
	}
	s = append(s, fmt.Sprintf(`CREATE MATERIALIZED VIEW IF NOT EXISTS %s%s TO %s AS
SELECT toStartOfMinute(time) AS minute, node,
  if(l7_type = 'RESPONSE', dst_namespace, src_namespace) AS client_namespace,
  toString(if(l7_type = 'RESPONSE', %s, %s)) AS client_workload,
  dns_query, dns_rcode,
  countIf(l7_type = 'REQUEST') AS queries,
  countIf(l7_type = 'RESPONSE') AS responses,
  quantilesTDigestStateIf(0.5, 0.9, 0.99)(l7_latency_ns, l7_type = 'RESPONSE' AND l7_latency_ns > 0) AS latency
FROM %s AS f
WHERE event_kind = 'L7_EVENT' AND l7_type IN ('REQUEST', 'RESPONSE')
GROUP BY %s`, d.local("dns_1m_mv"), d.on(), d.local("dns_1m"), client("dst"), client("src"), d.local("flows"), dnsRollupKey))
	return s
}

// addFlowColumns renders the ALTERs that add columns (one per line of cols,
// comma-separated) to flows and set event_kind to kinds: on the local table
// with their codecs, on the Distributed table (cluster) without (it stores
// nothing).
func (d ddl) addFlowColumns(cols, kinds string) []string {
	codec := regexp.MustCompile(` CODEC\([^)]*\)\)?`)
	alter := func(table string, distributed bool) string {
		var add []string
		for _, c := range strings.Split(cols, ",\n") {
			if distributed {
				c = codec.ReplaceAllString(c, "")
			}
			add = append(add, "ADD COLUMN IF NOT EXISTS "+strings.TrimSpace(c))
		}
		return fmt.Sprintf("ALTER TABLE %s%s %s,\n  MODIFY COLUMN event_kind %s", table, d.on(), strings.Join(add, ",\n  "), kinds)
	}
	s := []string{alter(d.local("flows"), false)}
	if d.cluster != "" { // the Distributed table clients insert into and read
		s = append(s, alter(d.table("flows"), true))
	}
	return s
}

// tcpColumns are the flows columns of TCP health (docs/tcp-health.md, "The
// contract"). Most rows hold zeros and empty strings; ClickHouse stores such columns
// sparse (only the non-default values and their positions), so rows
// without TCP health cost next to nothing (docs/benchmarks/tcp-health.md).
const tcpColumns = `tcp_syn_ack_ns UInt64 CODEC(T64, ZSTD(1)) AFTER dns_ttl,
  tcp_ack_ns UInt64 CODEC(T64, ZSTD(1)) AFTER tcp_syn_ack_ns,
  tcp_retransmits UInt32 CODEC(T64, ZSTD(1)) AFTER tcp_ack_ns,
  tcp_reset_by LowCardinality(String) AFTER tcp_retransmits,
  tcp_zero_windows UInt32 CODEC(T64, ZSTD(1)) AFTER tcp_reset_by`

// tcpRollupKey is the grouping of tcp_1m; tcpRollupOrder its sort key: the
// same columns, hour first, then the pair. A pair's day is then 24 short
// ranges of the table (a sort key starting with the minute reads every row
// of the day for one pair: 90-170 ms on the 50 M-flow bench data set), and
// a ranking of the last hour still reads that hour only.
const (
	tcpRollupKey   = `minute, node, client_namespace, client_workload, server_namespace, server_workload, server_port`
	tcpRollupOrder = `toStartOfHour(minute), client_namespace, client_workload, server_namespace, server_workload, minute, node, server_port`
)

// schemaV5 adds TCP health: the tcp_ columns of flows, CONNECT_TIMEOUT in
// event_kind, and the tcp_1m rollup with its materialized view.
//
// tcp_1m keeps, per minute, node, client (namespace and workload), server
// (namespace and workload) and server port: connections (AGGREGATE records
// that carry a handshake), a t-digest of their handshake RTT (SYN-ACK half
// plus ACK half, ns), retransmitted segments and resets (both from
// AGGREGATE records only: a FLOW_CLOSE event repeats its connection's RST),
// and connect timeouts (CONNECT_TIMEOUT records). The client is the
// record's source unless it is a reply (is_reply), whatever direction the
// record has; endpoints without a namespace go by their reserved identity
// (reserved:world, reserved:host), as in dns_1m. Only TCP records with any
// of these figures are read, so the view costs nothing on other rows. Rows
// written before this version have zeros and roll up nothing.
func schemaV5(d ddl) []string {
	retention := int64(d.retention / time.Second)
	var s []string
	s = append(s, d.addFlowColumns(tcpColumns, enum8(eventKindsV5))...)
	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  minute DateTime,
  node LowCardinality(String),
  client_namespace LowCardinality(String),
  client_workload LowCardinality(String),
  server_namespace LowCardinality(String),
  server_workload LowCardinality(String),
  server_port UInt16,
  connections SimpleAggregateFunction(sum, UInt64),
  rtt AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), UInt64),
  retransmits SimpleAggregateFunction(sum, UInt64),
  resets SimpleAggregateFunction(sum, UInt64),
  timeouts SimpleAggregateFunction(sum, UInt64)
) ENGINE = %s
PARTITION BY toDate(minute)
ORDER BY (%s)
TTL minute + toIntervalSecond(%d)
SETTINGS ttl_only_drop_parts = 1, %s`,
		d.local("tcp_1m"), d.on(), d.engine("tcp_1m", "Aggregating", ""), tcpRollupOrder, retention, dedupSettings))
	s = append(s, d.distributed("tcp_1m", "rand()")...)
	ident := func(p string) string {
		return fmt.Sprintf("toString(if(%[1]s_namespace = '', arrayFirst(l -> startsWith(l, 'reserved:'), %[1]s_labels), %[1]s_workload))", p)
	}
	s = append(s, fmt.Sprintf(`CREATE MATERIALIZED VIEW IF NOT EXISTS %s%s TO %s AS
SELECT toStartOfMinute(time) AS minute, node,
  if(is_reply = 2, dst_namespace, src_namespace) AS client_namespace,
  if(is_reply = 2, %[4]s, %[5]s) AS client_workload,
  if(is_reply = 2, src_namespace, dst_namespace) AS server_namespace,
  if(is_reply = 2, %[5]s, %[4]s) AS server_workload,
  if(is_reply = 2, src_port, dst_port) AS server_port,
  countIf(event_kind = 'AGGREGATE' AND tcp_syn_ack_ns + tcp_ack_ns > 0) AS connections,
  quantilesTDigestStateIf(0.5, 0.9, 0.99)(tcp_syn_ack_ns + tcp_ack_ns, event_kind = 'AGGREGATE' AND tcp_syn_ack_ns + tcp_ack_ns > 0) AS rtt,
  sumIf(toUInt64(tcp_retransmits), event_kind = 'AGGREGATE') AS retransmits,
  countIf(event_kind = 'AGGREGATE' AND tcp_reset_by != '') AS resets,
  countIf(event_kind = 'CONNECT_TIMEOUT') AS timeouts
FROM %[6]s AS f
WHERE proto = 6 AND (event_kind = 'CONNECT_TIMEOUT' OR (event_kind = 'AGGREGATE' AND (tcp_syn_ack_ns + tcp_ack_ns > 0 OR tcp_retransmits > 0 OR tcp_reset_by != '')))
GROUP BY %[7]s`, d.local("tcp_1m_mv"), d.on(), d.local("tcp_1m"), ident("dst"), ident("src"), d.local("flows"), tcpRollupKey))
	return s
}

// flowCodecsV6 are the codecs of the flows columns from version 6 on, chosen
// per column by measurement on the benchmark's data set
// (docs/benchmarks/relay.md, "Storage per column"). Rows are in time order,
// so a column of a few hundred values (pods, namespaces, addresses,
// interfaces) is a random draw per row: LZ4, the default, cannot compress
// such draws, ZSTD's entropy coding stores them near their entropy. T64
// helps integers that use a few low bits of a wide type; label arrays
// compress best at level 6. Changing only a codec rewrites nothing: parts
// written before keep theirs until a merge rewrites them.
var flowCodecsV6 = []struct{ codec, columns string }{
	{"ZSTD(1)", `node verdict flow_type direction drop_reason_desc drop_reason_kernel drop_class ip_version proto
		src_namespace src_pod src_workload src_workload_kind src_more_workload_names src_more_workload_kinds src_service_namespace src_service src_names
		dst_namespace dst_pod dst_workload dst_workload_kind dst_more_workload_names dst_more_workload_kinds dst_service_namespace dst_service dst_names
		is_reply iface_name allowed_by denied_by observation_point l7_type dns_rcode dns_qtypes dns_rrtypes tcp_reset_by tcp_syn_ack_ns tcp_ack_ns`},
	{"T64, ZSTD(1)", `src_port tcp_flags iface_index netns present`},
	{"ZSTD(3)", `first_seen_offset`},
	{"ZSTD(6)", `src_labels dst_labels`},
}

// lowCardinalityAddresses: a MergeTree column stores a source or
// destination address in 16 bytes, and ZSTD still needs about 2 of them to
// encode a draw among a few hundred; as LowCardinality each part keeps
// every address once and a row is a small index (about 1 byte compressed).
// ClickHouse asks for allow_suspicious_low_cardinality_types to create it
// (it doubts fixed-size types gain); queries, skip indexes and functions
// treat it as IPv6.
const lowCardinalityAddresses = "LowCardinality(IPv6) CODEC(ZSTD(1))"

// policyEgressColumn counts the egress policies among a row's allowed_by
// (low byte) and denied_by (high byte) names, for rows whose policies are
// stored as their names only (policiesByName in rows.go).
const policyEgressColumn = "policy_egress UInt16 DEFAULT 0 CODEC(ZSTD(1))"

// schemaV6 makes flows rows smaller without changing what a reader gets
// back (issue 15 part 4): new codecs per column (flowCodecsV6; metadata
// only), src_ip and dst_ip as LowCardinality(IPv6) (a mutation that
// rewrites those two columns of existing parts in the background; rows
// stay readable throughout), and policy_egress, with which a row's
// allowing and denying policies are rebuilt from allowed_by and denied_by
// instead of being stored a second time in extra. Rows written before keep
// their policies in extra, which a reader still prefers.
//
// Every statement is idempotent: setting a column to the codec or type it
// has, or adding a column that exists, changes nothing.
func schemaV6(d ddl) []string {
	// event_kind with its type: the last statement that names it says which
	// kinds the schema has (TestEventKindEnumHasEveryKindOfTheProto).
	mods := []string{"MODIFY COLUMN event_kind " + enum8(eventKindsV5) + " CODEC(ZSTD(1))"}
	for _, g := range flowCodecsV6 {
		for _, c := range strings.Fields(g.columns) {
			mods = append(mods, fmt.Sprintf("MODIFY COLUMN %s CODEC(%s)", c, g.codec))
		}
	}
	const suspicious = " SETTINGS allow_suspicious_low_cardinality_types = 1"
	s := []string{
		fmt.Sprintf("ALTER TABLE %s%s %s", d.local("flows"), d.on(), strings.Join(mods, ",\n  ")),
		fmt.Sprintf("ALTER TABLE %s%s ADD COLUMN IF NOT EXISTS %s AFTER tcp_zero_windows", d.local("flows"), d.on(), policyEgressColumn),
		fmt.Sprintf("ALTER TABLE %s%s MODIFY COLUMN src_ip %s, MODIFY COLUMN dst_ip %s%s",
			d.local("flows"), d.on(), lowCardinalityAddresses, lowCardinalityAddresses, suspicious),
	}
	if d.cluster != "" { // the Distributed table stores nothing: types, no codecs
		s = append(s,
			fmt.Sprintf("ALTER TABLE %s%s ADD COLUMN IF NOT EXISTS policy_egress UInt16 DEFAULT 0 AFTER tcp_zero_windows", d.table("flows"), d.on()),
			fmt.Sprintf("ALTER TABLE %s%s MODIFY COLUMN src_ip LowCardinality(IPv6), MODIFY COLUMN dst_ip LowCardinality(IPv6)%s", d.table("flows"), d.on(), suspicious))
	}
	return s
}

// dropClassSQL is the SQL twin of the relay's classification of a DROPPED
// record (relay/enrich): policy when the policies explain it (desc is
// POLICY_DENIED), else dropclass.Of of the kernel's reason. Names are
// compared in upper case without the SKB_DROP_REASON_ prefix, as
// dropclass.Of does; unknown names are "other".
func dropClassSQL(descCol, kernelCol string) string {
	var names, classes []string
	for _, c := range dropclass.All {
		for _, r := range dropclass.Reasons(c) {
			names = append(names, quoteString(r))
			classes = append(classes, quoteString(string(c)))
		}
	}
	return fmt.Sprintf("if(%s = 'POLICY_DENIED', 'policy', transform(replaceRegexpOne(upper(%s), '^SKB_DROP_REASON_', ''), [%s], [%s], %s))",
		descCol, kernelCol, strings.Join(names, ", "), strings.Join(classes, ", "), quoteString(string(dropclass.Other)))
}

// batchTables are the tables whose rows carry their agent batch.
var batchTables = []string{"flows", "conntrack", "lost_events"}

// migrationsTable records applied migrations.
func (d ddl) migrationsTable() []string {
	s := []string{fmt.Sprintf("CREATE DATABASE IF NOT EXISTS %s%s", quoteIdent(d.db), d.on()),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s%s (
  version UInt32,
  name String,
  applied_at DateTime DEFAULT now()
) ENGINE = %s
ORDER BY version`, d.local("schema_migrations"), d.on(), d.engine("schema_migrations", "Replacing", "")),
	}
	return append(s, d.distributed("schema_migrations", "version")...)
}

// Statements returns the full DDL for a database and optional cluster, for
// review (`trawl-relay migrate --print` may show it) and tests.
func Statements(database, cluster string, retention time.Duration) []string {
	d := ddl{db: database, cluster: cluster, retention: retention}
	out := d.migrationsTable()
	for _, m := range migrations {
		out = append(out, m.stmts(d)...)
	}
	return out
}

// quoteIdent quotes a ClickHouse identifier. Names come from configuration
// and are validated, but quoting keeps them inert regardless.
func quoteIdent(s string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(s) + "`"
}

func quoteString(s string) string {
	return "'" + strings.NewReplacer("\\", "\\\\", "'", "\\'").Replace(s) + "'"
}
