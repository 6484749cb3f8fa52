package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	"github.com/trawl-dev/trawl/relay/store"
)

// A relay killed after sending an insert's last block leaves the insert
// running on ClickHouse, and its agents resend the batches to another
// relay. That relay's writer must wait for the insert to end and then find
// the batches stored, not store them a second time: on one server, and
// across shards when it writes through the other server's Distributed
// tables without being told the cluster (as the soak's relays do).
func TestABatchStillBeingInsertedForADeadRelayIsStoredOnce(t *testing.T) {
	chtest.SkipShort(t)
	ctx := context.Background()
	cases := []struct {
		name string
		// setup returns a connection to the server the dead relay's
		// insert runs on and the live relay's store.
		setup func(t *testing.T) (driver.Conn, *store.Store)
	}{
		{"one server", func(t *testing.T) (driver.Conn, *store.Store) {
			dsn := chtest.Database(t)
			return chtest.Open(t, dsn), relayStore(t, dsn)
		}},
		{"two shards, the live relay writing through the other server", func(t *testing.T) (driver.Conn, *store.Store) {
			srvs, _ := twoShards(t)
			s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: "clickhouse://" + srvs[1].Addr + "/trawl?insert_distributed_sync=1",
				BatchInterval: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return chtest.Open(t, "clickhouse://"+srvs[0].Addr+"/trawl"), s
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, relay := c.setup(t)
			b := agentBatch(1) // ten flows, nothing else
			id := store.BatchID(b.Key)
			comment := store.BatchCommentForTest(relay, b.Key)

			// The dead relay's insert: the batch's rows, written slowly
			// (0.25 s a row), named as the writer names its inserts.
			const slowRows = 10
			slowDone := slowInsert(t, conn, comment, id, slowRows)

			w, hits := runRelayWriter(t, relay)
			done := make(chan error, 1)
			w.Enqueue(b, func(err error) { done <- err })
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("the resent batch: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the resent batch was not stored within 30 s")
			}
			if err := <-slowDone; err != nil {
				t.Fatalf("the dead relay's insert: %v", err)
			}
			var rows uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM flows WHERE batch = ?", id).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if rows != slowRows {
				t.Errorf("%d rows of the batch stored, want the dead relay's %d only", rows, slowRows)
			}
			if h := hits(); h != 1 {
				t.Errorf("the writer found %d batches already stored, want 1", h)
			}
		})
	}
}

// Another Trawl database on the same server (a second installation, tests
// sharing a server) has the same batch ids for the same node names. Its
// inserts must not hold this database's writer: the writer stores the
// batch while the other database's insert of it still runs.
func TestAnInsertOfTheSameBatchIntoAnotherDatabaseDoesNotHoldTheWriter(t *testing.T) {
	chtest.SkipShort(t)
	ctx := context.Background()
	otherDSN := chtest.Database(t)
	other, ours := relayStore(t, otherDSN), relayStore(t, chtest.Database(t))
	conn := chtest.Open(t, otherDSN)
	b := agentBatch(1)
	id := store.BatchID(b.Key)
	comment := store.BatchCommentForTest(other, b.Key)

	// The other database's insert of the same batch: 10 s long.
	slowDone := slowInsert(t, conn, comment, id, 40)

	w, hits := runRelayWriter(t, ours)
	done := make(chan error, 1)
	w.Enqueue(b, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the batch: %v", err)
		}
	case err := <-slowDone:
		t.Fatalf("the other database's insert ended (%v) before the writer stored the batch: the writer waited for it", err)
	}
	if err := <-slowDone; err != nil {
		t.Fatalf("the other database's insert: %v", err)
	}
	var rows uint64
	if err := chtest.Open(t, otherDSN).QueryRow(ctx, "SELECT count() FROM "+store.DatabaseForTest(ours)+".flows WHERE batch = ?", id).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if want := uint64(len(b.Flows)); rows != want {
		t.Errorf("%d rows of the batch stored in this database, want %d", rows, want)
	}
	if h := hits(); h != 0 {
		t.Errorf("the writer found %d batches already stored, want none", h)
	}
}

// slowInsert starts an insert of rows flows of batch id into conn's flows
// table, a row every 0.25 s (a block a row: a block may sleep 3 s at most),
// named by comment as the writer names its inserts, and returns once the
// insert shows in system.processes. The channel gets its result.
func slowInsert(t *testing.T, conn driver.Conn, comment string, id uint64, rows int) <-chan error {
	t.Helper()
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		ictx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
			"log_comment": comment, "insert_distributed_sync": 1, "max_block_size": 1}))
		done <- conn.Exec(ictx, fmt.Sprintf(`INSERT INTO flows (time, node, id_hi, id_lo, batch)
SELECT now64(9), 'node-a', 1, number, %d FROM numbers(%d) WHERE sleepEachRow(0.25) = 0`, id, rows))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE Settings['log_comment'] = ?", comment).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return done
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow insert never showed in system.processes")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
