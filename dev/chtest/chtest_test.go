package chtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/dev/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func TestEmbeddedServerStoresAndReturnsRows(t *testing.T) {
	conn := chtest.Open(t, chtest.Database(t))
	ctx := context.Background()
	if err := conn.Exec(ctx, `CREATE TABLE t (ts DateTime64(9), addr IPv6, n UInt64)
		ENGINE = MergeTree ORDER BY ts`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO t")
	if err != nil {
		t.Fatalf("prepare batch: %v", err)
	}
	// A fixed date is safe: table t has no TTL.
	base := time.Date(2026, 11, 27, 8, 0, 0, 123456789, time.UTC)
	for i := 0; i < 1000; i++ {
		if err := batch.Append(base.Add(time.Duration(i)*time.Second), "::ffff:10.0.0.1", uint64(i)); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("send: %v", err)
	}
	var count, sum uint64
	var first time.Time
	if err := conn.QueryRow(ctx, "SELECT count(), sum(n), min(ts) FROM t").Scan(&count, &sum, &first); err != nil {
		t.Fatalf("query: %v", err)
	}
	if count != 1000 || sum != 999*1000/2 {
		t.Errorf("count, sum = %d, %d; want 1000, %d", count, sum, 999*1000/2)
	}
	if !first.Equal(base) {
		t.Errorf("min(ts) = %v, want %v (nanoseconds kept)", first, base)
	}
}

func TestDatabasesAreIsolatedPerTest(t *testing.T) {
	a, b := chtest.Database(t), chtest.Database(t)
	if a == b {
		t.Fatalf("two calls returned the same database %q", a)
	}
	ca := chtest.Open(t, a)
	if err := ca.Exec(context.Background(), "CREATE TABLE only_in_a (x UInt8) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	cb := chtest.Open(t, b)
	var n uint64
	if err := cb.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'only_in_a'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("table created in one test database is visible in another")
	}
}
