// Package store is the one place that knows Trawl's ClickHouse schema: it
// creates and migrates the tables, writes flows, conntrack samples, lost
// events and node status in batches with idempotent retries (each agent
// batch stored once across relay replicas, see Writer), and answers
// the observer's queries (filters translated to SQL with bound parameters).
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Store is an open connection to ClickHouse with Trawl's schema.
type Store struct {
	cfg  Config
	conn driver.Conn
	ins  *inserter // the writer's inserts (inserter.go)
	// processes is where the writer looks for inserts still running
	// (running.go).
	processes processesTable
	d         ddl
	log       *slog.Logger
}

// Open connects to ClickHouse (it does not create or migrate anything; call
// Migrate). The connection uses LZ4 on the wire.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	opts, err := clickhouse.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse ClickHouse DSN: %w", err)
	}
	if cfg.Database == "" {
		cfg.Database = opts.Auth.Database
	}
	def := DefaultConfiguration()
	if cfg.Database == "" || cfg.Database == "default" {
		cfg.Database = def.Database
	}
	if !identRE.MatchString(cfg.Database) {
		return nil, fmt.Errorf("database name %q: want letters, digits and underscores", cfg.Database)
	}
	if cfg.Cluster != "" && !identRE.MatchString(cfg.Cluster) {
		return nil, fmt.Errorf("cluster name %q: want letters, digits and underscores", cfg.Cluster)
	}
	cfg.setDefaults(def)
	// Connect without selecting the database: it may not exist before
	// Migrate. Every statement names its tables fully.
	opts.Auth.Database = ""
	if opts.MaxOpenConns < 4 {
		opts.MaxOpenConns = 4
	}
	if opts.DialTimeout == 0 || opts.DialTimeout > 5*time.Second {
		opts.DialTimeout = 5 * time.Second
	}
	ins, err := newInserter(opts)
	if err != nil {
		return nil, fmt.Errorf("ClickHouse %s: %w", redact(cfg.DSN), err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open ClickHouse %s: %w", redact(cfg.DSN), err)
	}
	s := &Store{cfg: cfg, conn: conn, ins: ins, log: cfg.Log.With("component", "store"),
		d: ddl{db: cfg.Database, cluster: cfg.Cluster, retention: cfg.Retention, shardOnly: cfg.ShardOnly}}
	_ = ctx
	return s, nil
}

// redact drops the password from a DSN for messages.
func redact(dsn string) string {
	return regexp.MustCompile(`://([^:@/]*):[^@/]*@`).ReplaceAllString(dsn, "://$1:***@")
}

// Close closes the connections.
func (s *Store) Close() error { return errors.Join(s.ins.close(), s.conn.Close()) }

// Database is the database holding the tables.
func (s *Store) Database() string { return s.cfg.Database }

// Ping checks that ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping ClickHouse: %w", err)
	}
	return nil
}

// Version is the ClickHouse server version.
func (s *Store) Version(ctx context.Context) (string, error) {
	var v string
	if err := s.conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return "", fmt.Errorf("query ClickHouse version: %w", err)
	}
	return v, nil
}

// Migrate brings the schema to the latest version. It records each applied
// step in schema_migrations and is safe to run again (and concurrently from
// several relays: every statement is idempotent).
func (s *Store) Migrate(ctx context.Context) error {
	for _, q := range s.d.migrationsTable() {
		if err := s.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("create migrations table: %w", err)
		}
	}
	applied := map[int]bool{}
	// The local table: with a cluster, the Distributed one would also ask
	// servers that are not migrated yet. Every statement is idempotent, so a
	// server that has no record simply runs them again.
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM "+s.d.local("schema_migrations"))
	if err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("read applied migrations: %w", err)
		}
		applied[int(v)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		for _, q := range m.stmts(s.d) {
			if err := s.conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		pctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"v": fmt.Sprint(m.version), "n": m.name}))
		if err := s.conn.Exec(pctx, "INSERT INTO "+s.d.local("schema_migrations")+" (version, name) VALUES ({v:UInt32}, {n:String})"); err != nil {
			return fmt.Errorf("record migration %d: %w", m.version, err)
		}
		s.log.Info("applied schema migration", "version", m.version, "name", m.name, "database", s.cfg.Database)
	}
	return nil
}

// SchemaVersion is the highest migration this build knows.
func SchemaVersion() int { return migrations[len(migrations)-1].version }
