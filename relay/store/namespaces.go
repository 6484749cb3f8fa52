package store

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Namespaces returns the namespaces that had flow records (as source or
// destination) since the given time, sorted, from the per-minute rollup
// (Hubble's GetNamespaces).
func (s *Store) Namespaces(ctx context.Context, since time.Time) ([]string, error) {
	b := newSQLBuilder()
	q := "SELECT DISTINCT ns FROM " + s.d.table("flows_1m") + " ARRAY JOIN [src_namespace, dst_namespace] AS ns" +
		" WHERE minute >= toStartOfMinute(fromUnixTimestamp64Nano(" + b.bind("Int64", strconv.FormatInt(since.UnixNano(), 10)) + "))" +
		" AND ns != '' ORDER BY ns"
	rows, err := s.conn.Query(s.query(ctx, b), q)
	if err != nil {
		return nil, fmt.Errorf("query namespaces: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ns string
		if err := rows.Scan(&ns); err != nil {
			return nil, fmt.Errorf("read namespaces: %w", err)
		}
		out = append(out, ns)
	}
	return out, rows.Err()
}

// NodeRecords returns the number of stored flow records per node, from the
// per-minute rollup (Hubble's per-node flow counts).
func (s *Store) NodeRecords(ctx context.Context) (map[string]uint64, error) {
	rows, err := s.conn.Query(ctx, "SELECT node, sum(records) FROM "+s.d.table("flows_1m")+" GROUP BY node")
	if err != nil {
		return nil, fmt.Errorf("query records per node: %w", err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var node string
		var n uint64
		if err := rows.Scan(&node, &n); err != nil {
			return nil, fmt.Errorf("read records per node: %w", err)
		}
		out[node] = n
	}
	return out, rows.Err()
}
