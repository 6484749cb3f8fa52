package store

import (
	"log/slog"
	"time"

	"github.com/ClickHouse/ch-go"
)

// Config configures a Store. Zero fields take DefaultConfiguration's values.
type Config struct {
	// DSN of ClickHouse, e.g. clickhouse://user:pass@host:9000/trawl.
	DSN string
	// Database holds Trawl's tables. Optional: default the DSN's database,
	// else "trawl".
	Database string
	// Cluster, when set, makes the schema use ON CLUSTER, Replicated engines
	// and Distributed tables. Optional.
	Cluster string
	// ShardOnly, with Cluster, keeps Distributed tables but uses plain
	// MergeTree engines and no ON CLUSTER, for clusters without ClickHouse
	// Keeper (sharding without replication; run Migrate against every
	// server). Optional.
	ShardOnly bool
	// Retention is the TTL of flows, rollups, samples and lost events.
	// Optional: default 7 days.
	Retention time.Duration
	// BatchRows and BatchInterval bound the writer's inserts: an insert is
	// sent when it holds BatchRows rows or BatchInterval passed since its
	// first batch arrived. Optional: defaults 50000 and 1 s.
	BatchRows     int
	BatchInterval time.Duration
	// QueueBytes bounds the batches waiting in the writer, the two inserts
	// being encoded or sent included, by their encoded size (Batch.Bytes);
	// an insert holds at most half of it. Decoded, a flow takes about 3.4
	// times its encoded size (docs/benchmarks/relay.md), so this bounds most
	// of the relay's memory; beyond it Enqueue blocks and agents buffer
	// instead. Optional: default DefaultQueueBytes.
	QueueBytes int
	// Log is optional: default slog.Default().
	Log *slog.Logger
}

// DefaultConfiguration is the one place of the store's defaults (the relay's
// --retention and insert flags start from it).
func DefaultConfiguration() Config {
	return Config{
		Database:      "trawl",
		Retention:     7 * 24 * time.Hour,
		BatchRows:     50000,
		BatchInterval: time.Second,
		QueueBytes:    DefaultQueueBytes,
	}
}

// DefaultQueueBytes is the writer queue's default bound: 64 MiB encoded,
// inserts of up to 32 MiB, so that an insert of the benchmark's fully
// labelled records reaches BatchRows (at 32 MiB they stopped at ~32,000 rows,
// the bytes' bound). Larger inserts cost ClickHouse less per flow: agents →
// relay → ClickHouse went from 141,744 to 167,578 flows/s (medians, every run
// above every run of 32 MiB) and ClickHouse from 7.20 to 5.82 CPU s per
// million flows, with the relay's peak RSS at 239–247 MiB under the same
// 200 MiB heap budget; docs/benchmarks/relay.md, "Inserts of 50,000 rows".
const DefaultQueueBytes = 64 << 20

// setDefaults fills unset fields (but the database, which depends on the
// DSN) from def.
func (c *Config) setDefaults(def Config) {
	if c.Retention <= 0 {
		c.Retention = def.Retention
	}
	if c.BatchRows <= 0 {
		c.BatchRows = def.BatchRows
	}
	if c.BatchInterval <= 0 {
		c.BatchInterval = def.BatchInterval
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = def.QueueBytes
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// workSettings are query settings of every insert that change how much
// work ClickHouse does for it, never what it stores (the de-duplication
// and visibility settings are insertInput's).
//
// optimize_on_insert = 0: with it on (ClickHouse's default), every part
// written to a Summing or Aggregating table is sorted and then merged
// with itself, to sum rows of equal keys, at insert time. The rollups'
// materialized views already GROUP BY their table's key, so each view's
// block has one row per key and that pass finds nothing to sum
// (TestEachRollupGetsOneRowPerKeyFromAnInsert). Replaying the benchmark's
// data, it cost 1.5 of the flows_1m view's 2.7 CPU s per 1M flows and 0.5
// of policy_1m's 1.15 (docs/benchmarks/relay.md, "ClickHouse's side of an
// insert"). Readers sum the rollups' rows by key anyway, as background
// merges are lazy.
var workSettings = []ch.Setting{ch.SettingInt("optimize_on_insert", 0)}

// InsertWorkSettings are workSettings as clickhouse-go settings, for a
// client that inserts the same rows outside the writer and should cost
// ClickHouse the same (dev/cmd/bench-relay's raw insert).
func InsertWorkSettings() map[string]any {
	m := make(map[string]any, len(workSettings))
	for _, s := range workSettings {
		m[s.Key] = s.Value
	}
	return m
}
