package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
)

// inserter sends the writer's inserts over a ch-go connection of its own.
// Why not clickhouse-go, which the store uses for everything else
// (migrations, queries, the pre-insert check): its batches take Go slices
// and copy them into ch-go columns on every insert, LowCardinality columns
// row by row through reflection; the writer builds ch-go's columns itself
// (chcols.go) and hands them over as they are. Same protocol, same server,
// same settings: the DSN's compression, insert_deduplication_token per
// insert and synchronous inserts.
//
// Compression on the wire is the DSN's `compress` parameter, off by default
// (clickhouse-go's default too). Compressed, ch-go encodes the whole insert
// into one buffer and compresses it into a second of the same size, owned
// by the client: a client dialled after a failed insert grows that second
// buffer again, by steps, through the catch-up's ever larger inserts, each
// step a large allocation the relay's fragmented heap takes from new pages
// (+32 MB of heap in two seconds in a soak's catch-up, released again a
// collection later: the relay's RSS swings, docs/benchmarks/relay.md,
// "Compression to ClickHouse"). Uncompressed, ch-go writes the block
// straight from the kept buffer and the columns, and the relay and the
// server spend no CPU on LZ4. Across a network where bytes cost more than
// that, set compress=lz4 (deploy/kubernetes/external-clickhouse does).
//
// One connection: the writer sends one insert at a time. A connection whose
// insert failed is closed (its state is unknown: the server may still be
// reading the block) and the next insert dials again.
type inserter struct {
	mu     sync.Mutex
	opts   ch.Options // Address is set per dial
	addrs  []string
	client *ch.Client
	// buf is the encoded insert, kept across dials: ch-go encodes a whole
	// insert into it, so a client dialled after a failed insert would
	// otherwise grow a new one from nothing, by doubling, during the
	// catch-up that follows an outage (large inserts).
	buf *proto.Buffer
}

// clickhouse-go's default when the DSN sets no read_timeout: an insert of
// tens of thousands of rows into tables with materialized views may keep
// the server busy longer than ch-go's own 3 s default.
const defaultReadTimeout = 5 * time.Minute

func newInserter(o *clickhouse.Options) (*inserter, error) {
	if o.Protocol == clickhouse.HTTP {
		return nil, errors.New("the writer inserts over ClickHouse's native protocol: use a clickhouse:// DSN, not http://")
	}
	addrs := o.Addr
	if len(addrs) == 0 {
		addrs = []string{"localhost:9000"}
	}
	compression, err := nativeCompression(o.Compression)
	if err != nil {
		return nil, err
	}
	in := &inserter{addrs: addrs, buf: new(proto.Buffer), opts: ch.Options{
		User: o.Auth.Username, Password: o.Auth.Password,
		Compression: compression, ClientName: "trawl-relay",
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, TLS: o.TLS,
	}}
	if o.Compression != nil && o.Compression.Level > 0 {
		in.opts.CompressionLevel = ch.CompressionLevel(o.Compression.Level)
	}
	if in.opts.ReadTimeout == 0 {
		in.opts.ReadTimeout = defaultReadTimeout
	}
	for k, v := range o.Settings {
		in.opts.Settings = append(in.opts.Settings, ch.Setting{Key: k, Value: fmt.Sprint(v)})
	}
	return in, nil
}

// nativeCompression is ch-go's form of the DSN's compression (nil: none).
// gzip, deflate and brotli are HTTP's only.
func nativeCompression(c *clickhouse.Compression) (ch.Compression, error) {
	if c == nil {
		return ch.CompressionDisabled, nil
	}
	switch c.Method {
	case clickhouse.CompressionNone:
		return ch.CompressionDisabled, nil
	case clickhouse.CompressionLZ4:
		return ch.CompressionLZ4, nil
	case clickhouse.CompressionLZ4HC:
		return ch.CompressionLZ4HC, nil
	case clickhouse.CompressionZSTD:
		return ch.CompressionZSTD, nil
	}
	return 0, fmt.Errorf("compress=%s: the native protocol compresses with lz4, lz4hc or zstd (or none)", c.Method)
}

// do runs an insert query, dialling first when there is no connection.
func (in *inserter) do(ctx context.Context, q ch.Query) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.client == nil || in.client.IsClosed() {
		c, err := in.dial(ctx)
		if err != nil {
			return err
		}
		in.client = c
	}
	if err := in.client.Do(ctx, q); err != nil {
		_ = in.client.Close()
		in.client = nil
		return err
	}
	return nil
}

func (in *inserter) dial(ctx context.Context) (*ch.Client, error) {
	var errs []error
	for _, a := range in.addrs {
		// Kept for its capacity, not its bytes: a failed insert (or
		// handshake) may have left encoded packets in it, which ch-go
		// empties only when it writes them out; a new client would send
		// them ahead of its Hello.
		in.buf.Reset()
		o := in.opts
		o.Address = a
		c, err := ch.DialWithBuffer(ctx, o, in.buf)
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	return nil, fmt.Errorf("connect for inserts: %w", errors.Join(errs...))
}

func (in *inserter) close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.client == nil {
		return nil
	}
	err := in.client.Close()
	in.client = nil
	return err
}

// insertInput sends one columnar insert with its de-duplication token and
// its batches' comment (batchComment). A
// retry that sends the same rows in the same order with the same token is
// de-duplicated by ClickHouse, in the table and (with
// deduplicate_blocks_in_dependent_materialized_views) in the rollups.
func (s *Store) insertInput(ctx context.Context, table, token, comment string, input proto.Input) error {
	settings := []ch.Setting{
		// The batches, for the writers that must wait while this insert
		// runs (running.go).
		{Key: "log_comment", Value: comment, Important: true},
		ch.SettingInt("insert_deduplicate", 1),
		{Key: "insert_deduplication_token", Value: token + "/" + table, Important: true},
		ch.SettingInt("deduplicate_blocks_in_dependent_materialized_views", 1),
		// Rows become visible, and errors surface, before the batches are
		// acknowledged: never buffered on the server.
		ch.SettingInt("async_insert", 0),
	}
	settings = append(settings, workSettings...)
	if s.cfg.Cluster != "" {
		settings = append(settings, ch.SettingInt("insert_distributed_sync", 1)) // ack only once the shards have it
	}
	names := make([]string, len(input))
	for i, c := range input {
		names[i] = c.Name
	}
	return s.ins.do(ctx, ch.Query{
		Body:     "INSERT INTO " + s.d.table(table) + " (" + strings.Join(names, ", ") + ") VALUES",
		Input:    input,
		Settings: settings,
	})
}
