package store

import (
	"log/slog"
	"time"
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
	// QueueRows bounds the rows waiting in the writer (including the two
	// inserts being encoded or sent). Optional: default 4 × BatchRows. Each
	// queued flow is a decoded message (~1 KiB), so this bounds the relay's
	// memory; beyond it Enqueue blocks and agents buffer instead.
	QueueRows int
	// Log is optional: default slog.Default().
	Log *slog.Logger
}

// DefaultConfiguration is the one place of the store's defaults (the relay's
// --retention and insert flags start from it). QueueRows defaults to
// 4 × BatchRows.
func DefaultConfiguration() Config {
	return Config{
		Database:      "trawl",
		Retention:     7 * 24 * time.Hour,
		BatchRows:     50000,
		BatchInterval: time.Second,
	}
}

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
	if c.QueueRows <= 0 {
		c.QueueRows = 4 * c.BatchRows
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}
