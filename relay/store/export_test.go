package store

import (
	"context"
	"fmt"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// WriteGroupForTest inserts a group of batches exactly as one writer insert
// (and each of its retries) does.
func WriteGroupForTest(ctx context.Context, s *Store, batches []*Batch) error {
	return newWriter(s, nil).write(ctx, batches)
}

// MigrateToForTest applies the migrations up to version only, as an older
// relay would have left the database.
func MigrateToForTest(ctx context.Context, s *Store, version int) error {
	for _, q := range s.d.migrationsTable() {
		if err := s.conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	for _, m := range migrations {
		if m.version > version {
			break
		}
		for _, q := range m.stmts(s.d) {
			if err := s.conn.Exec(ctx, q); err != nil {
				return err
			}
		}
		if err := s.conn.Exec(ctx, "INSERT INTO "+s.d.local("schema_migrations")+" (version, name) VALUES (?, ?)", uint32(m.version), m.name); err != nil {
			return err
		}
	}
	return nil
}

// StoredPartsForTest runs the writer's pre-insert check for batches.
func StoredPartsForTest(ctx context.Context, s *Store, batches []*Batch) error {
	g := &group{cols: newFlowColumns()}
	for _, b := range batches {
		g.add(b, func(error) {})
	}
	_, err := s.storedParts(ctx, g.items)
	return err
}

// RerunMigrationForTest runs the statements of one migration again, as a
// relay does after it stopped before recording the step.
func RerunMigrationForTest(ctx context.Context, s *Store, version int) error {
	for _, m := range migrations {
		if m.version != version {
			continue
		}
		for _, q := range m.stmts(s.d) {
			if err := s.conn.Exec(ctx, q); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteColumnsForTest inserts flows with the columns a relay of the given
// schema version wrote (version 3: no DNS columns; version 4: no TCP health
// columns; version 5: no policy_egress, every policy in extra), as that
// relay would.
func WriteColumnsForTest(ctx context.Context, s *Store, flows []*flowv1.Flow, version int) error {
	n := len(flowColumnNames)
	switch version {
	case 3:
		n -= 9 + 5 + 1 // the DNS columns of version 4, the TCP ones of version 5, then version 6's policy_egress are last
	case 4:
		n -= 5 + 1
	case 5:
		n--
	default:
		return fmt.Errorf("WriteColumnsForTest knows versions 3 to 5 only")
	}
	c := newFlowColumns()
	for _, f := range flows {
		c.add(f)
	}
	// Before version 6 extra held every policy and policy_egress was not there.
	c.extra.Reset()
	c.policyEgress.Reset()
	for _, f := range flows {
		c.extra.Append(extraOf(f, true))
		c.policyEgress.Append(0)
	}
	return s.insertInput(ctx, "flows", fmt.Sprintf("v%d/%p", version, flows), "", c.input[:n])
}

// IdleColumnsForTest is how many sets of insert columns the writer holds
// unused and about the memory they hold (their capacity).
func IdleColumnsForTest(w *Writer) (sets, bytes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.free {
		bytes += c.memBytes()
	}
	return len(w.free), bytes
}

// ReservedColumnBytesForTest is about the memory of one set of insert
// columns as NewWriter makes it for rows rows.
func ReservedColumnBytesForTest(rows int) int {
	c := newFlowColumns()
	c.reserve(rows)
	return c.memBytes()
}

// BatchCommentForTest is the log_comment s's writer gives an insert of the
// batches with these keys.
func BatchCommentForTest(s *Store, keys ...string) string {
	items := make([]item, len(keys))
	include := make([]bool, len(keys))
	for i, k := range keys {
		items[i], include[i] = item{key: k, id: BatchID(k)}, true
	}
	return batchComment(s.d.db, items, include)
}

// SetAfterInsertForTest makes f run after each successful insert of w; an
// error from f fails the insert.
func SetAfterInsertForTest(w *Writer, f func(table string) error) { w.afterInsert = f }

// DatabaseForTest is the database s keeps its tables in.
func DatabaseForTest(s *Store) string { return s.d.db }
