package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

func TestClusterDDLUsesOnClusterReplicatedAndDistributedTables(t *testing.T) {
	all := strings.Join(store.Statements("trawl", "prod", 72*time.Hour), ";\n")
	for _, want := range []string{
		"CREATE DATABASE IF NOT EXISTS `trawl` ON CLUSTER `prod`",
		"CREATE TABLE IF NOT EXISTS `trawl`.`flows_local` ON CLUSTER `prod`",
		"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/trawl/flows_local', '{replica}')",
		"CREATE TABLE IF NOT EXISTS `trawl`.`flows` ON CLUSTER `prod` AS `trawl`.`flows_local` ENGINE = Distributed('prod', 'trawl', 'flows_local', cityHash64(id_hi, intDiv(id_lo, 1048576)))",
		"ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/trawl/flows_1m_local', '{replica}')",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS `trawl`.`flows_1m_mv_local` ON CLUSTER `prod` TO `trawl`.`flows_1m_local`",
		"FROM `trawl`.`flows_local` AS f",
		"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/trawl/nodes_local', '{replica}', last_seen)",
		"TTL toDateTime(time) + toIntervalSecond(259200)",
		"ttl_only_drop_parts = 1",
		"non_replicated_deduplication_window = 10000",
		"ALTER TABLE `trawl`.`flows_local` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS drop_class LowCardinality(String) DEFAULT if(verdict = 'DROPPED', ",
		"ALTER TABLE `trawl`.`flows` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS drop_class",
		"ALTER TABLE `trawl`.`flows_1m_local` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS drop_class LowCardinality(String) AFTER drop_reason_desc, MODIFY ORDER BY (",
		"ALTER TABLE `trawl`.`flows_1m` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS drop_class",
		"ALTER TABLE `trawl`.`flows_1m_mv_local` ON CLUSTER `prod` MODIFY QUERY",
		// version 4: DNS
		"ALTER TABLE `trawl`.`flows_local` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS l7_type LowCardinality(String) AFTER drop_class,\n  ADD COLUMN IF NOT EXISTS l7_latency_ns UInt64 CODEC(T64, ZSTD(1)) AFTER l7_type",
		"ALTER TABLE `trawl`.`flows` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS l7_type LowCardinality(String) AFTER drop_class,\n  ADD COLUMN IF NOT EXISTS l7_latency_ns UInt64 AFTER l7_type",
		"ADD COLUMN IF NOT EXISTS dns_ips Array(String) AFTER dns_rrtypes",
		"CREATE TABLE IF NOT EXISTS `trawl`.`dns_1m_local` ON CLUSTER `prod`",
		"ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/trawl/dns_1m_local', '{replica}')",
		"latency AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), UInt64)",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS `trawl`.`dns_1m_mv_local` ON CLUSTER `prod` TO `trawl`.`dns_1m_local` AS",
		// version 5: TCP health
		"ALTER TABLE `trawl`.`flows_local` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS tcp_syn_ack_ns UInt64 CODEC(T64, ZSTD(1)) AFTER dns_ttl,\n  ADD COLUMN IF NOT EXISTS tcp_ack_ns UInt64 CODEC(T64, ZSTD(1)) AFTER tcp_syn_ack_ns",
		"ALTER TABLE `trawl`.`flows` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS tcp_syn_ack_ns UInt64 AFTER dns_ttl,\n  ADD COLUMN IF NOT EXISTS tcp_ack_ns UInt64 AFTER tcp_syn_ack_ns",
		"ADD COLUMN IF NOT EXISTS tcp_reset_by LowCardinality(String) AFTER tcp_retransmits",
		"ADD COLUMN IF NOT EXISTS tcp_zero_windows UInt32 AFTER tcp_reset_by,\n  MODIFY COLUMN event_kind Enum8(",
		"'L7_EVENT' = 6, 'CONNECT_TIMEOUT' = 7)",
		"CREATE TABLE IF NOT EXISTS `trawl`.`tcp_1m_local` ON CLUSTER `prod`",
		"ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/trawl/tcp_1m_local', '{replica}')",
		"rtt AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), UInt64)",
		"ORDER BY (toStartOfHour(minute), client_namespace, client_workload, server_namespace, server_workload, minute, node, server_port)",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS `trawl`.`tcp_1m_mv_local` ON CLUSTER `prod` TO `trawl`.`tcp_1m_local` AS",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("cluster DDL lacks %q", want)
		}
	}
	for _, table := range []string{"flows", "flows_1m", "policy_1m", "dns_1m", "tcp_1m", "conntrack", "lost_events", "nodes", "schema_migrations"} {
		if !strings.Contains(all, "`trawl`.`"+table+"` ON CLUSTER `prod` AS `trawl`.`"+table+"_local` ENGINE = Distributed(") {
			t.Errorf("no Distributed table for %s", table)
		}
	}
}

func TestSingleServerDDLHasNoClusterParts(t *testing.T) {
	all := strings.Join(store.Statements("trawl", "", store.DefaultConfiguration().Retention), ";\n")
	for _, bad := range []string{"ON CLUSTER", "Replicated", "Distributed", "_local"} {
		if strings.Contains(all, bad) {
			t.Errorf("single-server DDL contains %q", bad)
		}
	}
	if !strings.Contains(all, "TTL toDateTime(time) + toIntervalSecond(604800)") {
		t.Error("default retention is not 7 days")
	}
}

// The last migration that touches event_kind names every EventKind of the
// proto: a kind added to the proto fails here until a migration adds it.
func TestEventKindEnumHasEveryKindOfTheProto(t *testing.T) {
	var last string
	for _, st := range store.Statements("trawl", "", time.Hour) {
		if i := strings.Index(st, "MODIFY COLUMN event_kind "); i >= 0 {
			last = st[i:]
		}
	}
	if last == "" {
		t.Fatal("no migration modifies event_kind")
	}
	for v, name := range flowv1.EventKind_name {
		if want := fmt.Sprintf("'%s' = %d", name, v); !strings.Contains(last, want) {
			t.Errorf("event_kind of the latest schema lacks %s (add a migration that widens it, as version 4 did for L7_EVENT, and point eventKinds at it; until then the writer stores it as 0): %s", want, last)
		}
	}
	for _, st := range store.Statements("trawl", "prod", time.Hour) {
		if strings.HasPrefix(st, "ALTER TABLE `trawl`.`flows` ON CLUSTER") && strings.Contains(st, "CODEC") {
			t.Errorf("the Distributed table gets a codec: %s", st)
		}
	}
}

// Inserts skip ClickHouse's on-insert merge of rollup parts
// (optimize_on_insert = 0, config.go): that is only lossless while every
// rollup view groups its insert by its table's whole key, so that a part
// holds each key once. The same records three times in one insert must
// give one row per key, with three times the counts.
func TestEachRollupGetsOneRowPerKeyFromAnInsert(t *testing.T) {
	dsn := chtest.Database(t)
	s := openStore(t, dsn)
	w := runWriter(t, s)
	once := append(filtertest.Flows(), richTCPFlows()...)
	var thrice []*flowv1.Flow
	for range 3 {
		for _, f := range once {
			thrice = append(thrice, proto.Clone(f).(*flowv1.Flow))
		}
	}
	write(t, w, &store.Batch{Key: "node-a/boot/1", Flows: thrice})
	conn := chtest.Open(t, dsn)
	cases := []struct {
		table, key, sum string
		want            uint64
	}{
		{"flows_1m", "minute, node, src_namespace, dst_namespace, src_workload, dst_workload, verdict, direction, drop_reason_desc, proto, port, drop_class",
			"records", 3 * uint64(len(once))},
		{"policy_1m", "minute, policy, effect, node, src_namespace, dst_namespace, src_workload, dst_workload, verdict, proto, port", "records", 0},
		{"tcp_1m", "minute, node, client_namespace, client_workload, server_namespace, server_workload, server_port", "connections", 0},
	}
	for _, tc := range cases {
		t.Run(tc.table, func(t *testing.T) {
			var rows, keys, sum uint64
			if err := conn.QueryRow(context.Background(), fmt.Sprintf("SELECT count(), uniqExact(%s), sum(%s) FROM %s.%s", tc.key, tc.sum, s.Database(), tc.table)).
				Scan(&rows, &keys, &sum); err != nil {
				t.Fatal(err)
			}
			if rows == 0 || sum == 0 {
				t.Fatalf("%s has %d rows summing %d %s: the records roll up nothing there, the test covers too little", tc.table, rows, sum, tc.sum)
			}
			if rows != keys {
				t.Errorf("%s has %d rows for %d keys after one insert", tc.table, rows, keys)
			}
			if sum%3 != 0 || (tc.want != 0 && sum != tc.want) {
				t.Errorf("%s: sum(%s) = %d, want three times each record's (%d)", tc.table, tc.sum, sum, tc.want)
			}
		})
	}
}
