package store

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// An insert can outlive its client. When a relay dies (or its insert times
// out) after sending an insert's last block, ClickHouse goes on writing the
// rows, the Distributed table's shards and the materialized views included,
// and only then finds nobody to answer. The agents meanwhile resend the
// batches to another relay, whose pre-insert check (storedParts) finds them
// not stored yet: without more, both inserts store them.
//
// So every insert names its batches in log_comment (batchComment), which
// system.processes shows while the insert runs, and before each insert
// attempt the writer first asks the servers whether an insert naming any of
// its batches is still running (insertsRunning), and waits until none is;
// only then does it read the batches table. The order matters: an insert
// gone from system.processes has committed its rows (or failed), so the
// batches table read after it sees them.
//
// What this does not cover: two live relays that both hold a batch and
// both pass this check before either insert starts. An agent moves only
// when its stream breaks, so that needs a relay that lives on after losing
// an agent's stream with the batch still queued.

// commentPrefix starts the log_comment of every insert the writer sends
// into database db. The database is in it because relays of another Trawl
// database on the same servers (a second installation, tests sharing a
// server) use the same batch ids for the same node names: their inserts
// are none of this writer's business.
func commentPrefix(db string) string { return "trawl batches " + db + ":" }

// batchComment is an insert's log_comment: the prefix, then its batch ids,
// space-separated. Decimal ids cost ~20 bytes a batch (a kilobyte for an
// insert of fifty 1000-flow batches), also in system.query_log, where they
// tell which insert stored a batch.
func batchComment(db string, items []item, include []bool) string {
	var b strings.Builder
	b.WriteString(commentPrefix(db))
	for i, it := range items {
		if include[i] && it.id != 0 {
			b.WriteByte(' ')
			b.WriteString(strconv.FormatUint(it.id, 10))
		}
	}
	return b.String()
}

// insertsRunning returns how many inserts naming any of the items' batches
// are running on the servers the writer's inserts reach: this server, or
// every server of the cluster when the tables are Distributed. An error
// (a server of the cluster unreachable, say) is not "none": the writer
// retries.
func (s *Store) insertsRunning(ctx context.Context, items []item) (int, error) {
	var ids []string
	for _, it := range items {
		if it.id != 0 {
			ids = append(ids, "'"+strconv.FormatUint(it.id, 10)+"'")
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	from, err := s.processes.from(ctx, s)
	if err != nil {
		return 0, err
	}
	q := "SELECT count() FROM " + from + " WHERE query_kind = 'Insert'" +
		" AND startsWith(Settings['log_comment'], " + quoteString(commentPrefix(s.d.db)) + ")" +
		" AND hasAny(splitByChar(' ', Settings['log_comment']), [" + strings.Join(ids, ",") + "])"
	var n uint64
	if err := s.conn.QueryRow(ctx, q).Scan(&n); err != nil {
		return 0, fmt.Errorf("ask which inserts are running: %w", err)
	}
	return int(n), nil
}

// processesTable is where insertsRunning looks: system.processes, or its
// union over the cluster named by --clickhouse-cluster or, when the relay
// was not told, by the Distributed flows table it inserts into. Found once.
type processesTable struct {
	mu   sync.Mutex
	expr string
}

// distributedCluster reads the cluster name from a Distributed engine's
// definition: Distributed('cluster', 'db', 'table'[, key]).
var distributedCluster = regexp.MustCompile(`^Distributed\(\s*'([^']*)'`)

func (p *processesTable) from(ctx context.Context, s *Store) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.expr != "" {
		return p.expr, nil
	}
	cluster := s.cfg.Cluster
	if cluster == "" {
		var engine string
		err := s.conn.QueryRow(ctx, "SELECT engine_full FROM system.tables WHERE database = ? AND name = 'flows'", s.cfg.Database).Scan(&engine)
		if err != nil {
			return "", fmt.Errorf("read the flows table's engine: %w", err)
		}
		if m := distributedCluster.FindStringSubmatch(engine); m != nil {
			if !identRE.MatchString(m[1]) {
				return "", fmt.Errorf("flows is Distributed over cluster %q: want letters, digits and underscores", m[1])
			}
			cluster = m[1]
		}
	}
	p.expr = "system.processes"
	if cluster != "" {
		p.expr = "clusterAllReplicas(" + quoteString(cluster) + ", system.processes)"
	}
	return p.expr, nil
}
