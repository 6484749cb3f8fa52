package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	"github.com/trawl-dev/trawl/internal/flowid"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// agentBatch is batch seq of one agent, as every relay would receive it:
// ten flows with derived ids (seconds apart, per batch a minute later), and
// for some sequences a conntrack sample or a lost event, or only those.
func agentBatch(seq int) *store.Batch {
	const node, boot = "node-a", "boot-1"
	b := &store.Batch{Key: fmt.Sprintf("%s/%s/%d", node, boot, seq)}
	at := filtertest.Base.Add(time.Duration(seq) * time.Minute)
	if seq%4 != 0 { // every 4th batch has no flows
		for i, f := range filtertest.Flows() {
			f.Uuid = flowid.Derive(node, boot, uint64(seq), i)
			f.NodeName = node
			f.Time = timestamppb.New(at.Add(time.Duration(i) * time.Second))
			b.Flows = append(b.Flows, f)
		}
	}
	if seq%2 == 0 {
		b.Conntrack = []*flowv1.ConntrackSample{{Time: timestamppb.New(at), NodeName: node, Entries: uint64(seq), Max: 1000}}
	}
	if seq%3 == 0 {
		b.Lost = []*flowv1.LostEvent{{Time: timestamppb.New(at), NodeName: node, NumEventsLost: uint64(seq), Source: flowv1.LostEventSource_RINGBUF_RESERVE_FAILED}}
	}
	return b
}

func agentBatches(from, to int) []*store.Batch {
	var out []*store.Batch
	for seq := from; seq <= to; seq++ {
		out = append(out, agentBatch(seq))
	}
	return out
}

// contents summarises a database: rows per table, flow ids stored more
// than once, and the rollups' totals.
type contents struct {
	flows, conntrack, lost, repeatedIDs       uint64
	records, newFlows, bytes, packets, drops  uint64
	policyRecords, policyBytes, policyPackets uint64
}

func contentsOf(t *testing.T, dsn string) contents {
	t.Helper()
	conn := chtest.Open(t, dsn)
	ctx := context.Background()
	var c contents
	for _, q := range []struct {
		sql  string
		dest []any
	}{
		{"SELECT count() FROM flows", []any{&c.flows}},
		{"SELECT count() FROM conntrack", []any{&c.conntrack}},
		{"SELECT count() FROM lost_events", []any{&c.lost}},
		{"SELECT count() FROM (SELECT id_hi, id_lo FROM flows GROUP BY id_hi, id_lo HAVING count() > 1)", []any{&c.repeatedIDs}},
		{"SELECT sum(records), sum(flows), sum(bytes), sum(packets), sum(drops) FROM flows_1m", []any{&c.records, &c.newFlows, &c.bytes, &c.packets, &c.drops}},
		{"SELECT sum(records), sum(bytes), sum(packets) FROM policy_1m", []any{&c.policyRecords, &c.policyBytes, &c.policyPackets}},
	} {
		if err := conn.QueryRow(ctx, q.sql).Scan(q.dest...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	return c
}

// relayStore is one relay replica's connection to the shared database.
func relayStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), store.Config{Retention: filtertest.Retention(), DSN: dsn, BatchRows: 1 << 20, BatchInterval: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

// runRelayWriter runs a writer that reports the batches it found stored.
func runRelayWriter(t *testing.T, s *store.Store) (*store.Writer, func() int) {
	w := s.NewWriter(nil)
	hits := make(chan int, 100)
	w.OnDedupHits(func(n int) { hits <- n })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, func() int {
		n := 0
		for {
			select {
			case h := <-hits:
				n += h
			default:
				return n
			}
		}
	}
}

// reference is what a single ingest of every batch stores.
func reference(t *testing.T, batches []*store.Batch) contents {
	t.Helper()
	dsn := chtest.Database(t)
	if err := store.WriteGroupForTest(context.Background(), relayStore(t, dsn), batches); err != nil {
		t.Fatal(err)
	}
	return contentsOf(t, dsn)
}

func TestBatchesResentToAnotherRelayInADifferentGroupAreStoredOnce(t *testing.T) {
	want := reference(t, agentBatches(1, 9))
	if want.flows == 0 || want.conntrack == 0 || want.lost == 0 || want.policyRecords == 0 || want.bytes == 0 {
		t.Fatalf("reference ingest stored too little to compare: %+v", want)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		a, b       [2]int // batches each relay inserts as one group
		wantHitsOf int    // batches relay B finds stored
	}{
		{"relay B's group overlaps the end of relay A's", [2]int{1, 6}, [2]int{3, 9}, 4},
		{"relay B's group contains relay A's", [2]int{4, 5}, [2]int{1, 9}, 2},
		{"relay B resends exactly relay A's group", [2]int{1, 9}, [2]int{1, 9}, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := chtest.Database(t)
			relayA, relayB := relayStore(t, dsn), relayStore(t, dsn)
			// Relay A's insert landed (its answer may have been lost, or
			// the agent reconnected before the ack): the agent resends.
			if err := store.WriteGroupForTest(ctx, relayA, agentBatches(tc.a[0], tc.a[1])); err != nil {
				t.Fatal(err)
			}
			w, hits := runRelayWriter(t, relayB)
			write(t, w, agentBatches(tc.b[0], tc.b[1])...)
			// Relay A retries its insert once more, as after a lost answer.
			if err := store.WriteGroupForTest(ctx, relayA, agentBatches(tc.a[0], tc.a[1])); err != nil {
				t.Fatal(err)
			}
			if got := contentsOf(t, dsn); got != want {
				t.Errorf("stored\n %+v\nwant what one ingest stores\n %+v", got, want)
			}
			if got := hits(); got != tc.wantHitsOf {
				t.Errorf("relay B reported %d batches already stored, want %d", got, tc.wantHitsOf)
			}
		})
	}
}

func TestABatchPartlyStoredGetsOnlyItsMissingTablesInserted(t *testing.T) {
	// An insert stores flows, then conntrack, then lost events; a relay
	// that stopped between them left the batch half stored.
	full := agentBatch(6) // flows, a conntrack sample and a lost event
	if full.Flows == nil || full.Conntrack == nil || full.Lost == nil {
		t.Fatal("batch 6 should have every kind of record")
	}
	want := reference(t, []*store.Batch{agentBatch(6)})
	dsn := chtest.Database(t)
	first := agentBatch(6)
	first.Conntrack, first.Lost = nil, nil
	if err := store.WriteGroupForTest(context.Background(), relayStore(t, dsn), []*store.Batch{first}); err != nil {
		t.Fatal(err)
	}
	w, _ := runRelayWriter(t, relayStore(t, dsn))
	write(t, w, full)
	if got := contentsOf(t, dsn); got != want {
		t.Errorf("stored\n %+v\nwant\n %+v", got, want)
	}
}

func TestMigrateAddsBatchRecordsToADatabaseAtVersion1(t *testing.T) {
	ctx := context.Background()
	dsn := chtest.Database(t)
	s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: dsn, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := store.MigrateToForTest(ctx, s, 1); err != nil {
		t.Fatalf("migrate to version 1: %v", err)
	}
	conn := chtest.Open(t, dsn)
	// A version 1 relay's insert: no batch column.
	if err := conn.Exec(ctx, "INSERT INTO flows (time, id_hi, id_lo, node) VALUES (now64(9), 1, 1, 'old')"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // twice: the second run finds v2 recorded and does nothing
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate a version 1 database: %v", err)
		}
	}
	var applied uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM schema_migrations FINAL WHERE version = 2").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Errorf("version 2 recorded %d times, want once", applied)
	}
	for range 2 {
		if err := store.WriteGroupForTest(ctx, s, []*store.Batch{agentBatch(1), agentBatch(2)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.WriteGroupForTest(ctx, s, []*store.Batch{agentBatch(2), agentBatch(3)}); err != nil {
		t.Fatal(err)
	}
	got := contentsOf(t, dsn)
	if want := uint64(1 + 3*len(filtertest.Flows())); got.flows != want || got.repeatedIDs != 0 {
		t.Errorf("flows has %d rows (%d ids repeated), want the old row and %d new ones, each once", got.flows, got.repeatedIDs, want-1)
	}
	var oldBatch uint64
	if err := conn.QueryRow(ctx, "SELECT batch FROM flows WHERE node = 'old'").Scan(&oldBatch); err != nil || oldBatch != 0 {
		t.Errorf("the version 1 row reads batch %d (err %v), want 0", oldBatch, err)
	}
}

func TestBatchIDsDifferAndAreNeverZero(t *testing.T) {
	seen := map[uint64]string{}
	for _, k := range []string{"node-a/boot/1", "node-a/boot/2", "node-b/boot/1", "x"} {
		id := store.BatchID(k)
		if id == 0 {
			t.Errorf("BatchID(%q) = 0, which marks unkeyed rows", k)
		}
		if prev, ok := seen[id]; ok {
			t.Errorf("BatchID(%q) = BatchID(%q)", k, prev)
		}
		seen[id] = k
	}
	if store.BatchID("") != 0 {
		t.Error(`BatchID("") is not 0`)
	}
}

// BenchmarkStoredCheck times the writer's check before an insert attempt:
// a group of 50 agent batches (50k rows at 1000 flows a batch) looked up
// in a batches table holding 2,000 stored batches.
func BenchmarkStoredCheck(b *testing.B) {
	ctx := context.Background()
	dsn := chtest.Database(b)
	s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: dsn, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	var stored []*store.Batch
	for seq := 1; seq <= 2000; seq++ {
		stored = append(stored, agentBatch(seq))
		if len(stored) == 100 {
			if err := store.WriteGroupForTest(ctx, s, stored); err != nil {
				b.Fatal(err)
			}
			stored = nil
		}
	}
	group := agentBatches(1980, 2029) // 20 stored, 30 new
	b.ResetTimer()
	for b.Loop() {
		if err := store.StoredPartsForTest(ctx, s, group); err != nil {
			b.Fatal(err)
		}
	}
}

// A group of which some batches are stored already inserts the others from
// a copy of their rows: every field of those must read back as written.
func TestTheBatchesOfAGroupNotYetStoredReadBackFieldForField(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	want := richFlows()
	batches := []*store.Batch{{Key: "node-a/boot/1", Flows: want[:4]}, {Key: "node-a/boot/2", Flows: want[4:9]}, {Key: "node-a/boot/3", Flows: want[9:]}}
	if err := store.WriteGroupForTest(context.Background(), s, batches[1:2]); err != nil {
		t.Fatal(err)
	}
	if err := store.WriteGroupForTest(context.Background(), s, batches); err != nil {
		t.Fatal(err)
	}
	got := query(t, s, &observerv1.GetFlowsRequest{})
	requireFlows(t, got, want)
}

// An insert can store its rows and fail before the batches records its
// views write after them (views are not atomic with their table), or
// store one shard's rows and not the other's. The retry's check then finds
// some of the group's batches and not the others; the others' rows are
// stored already, and a retry under a new token would store them again.
// Here the first attempt stores both batches, loses batch b's record, and
// fails: each flow must still be stored once.
func TestARetryAfterAnInsertThatStoredRowsWithoutTheirRecordsStoresThemOnce(t *testing.T) {
	dsn := chtest.Database(t)
	s := relayStore(t, dsn)
	conn := chtest.Open(t, dsn)
	ctx := context.Background()
	a, b := agentBatch(1), agentBatch(5) // flows only, both
	w, _ := runRelayWriter(t, s)
	failed := false
	store.SetAfterInsertForTest(w, func(table string) error {
		if failed || table != "flows" {
			return nil
		}
		failed = true
		if err := conn.Exec(ctx, "ALTER TABLE batches DELETE WHERE batch = ? SETTINGS mutations_sync = 2", store.BatchID(b.Key)); err != nil {
			t.Errorf("drop batch b's record: %v", err)
		}
		return fmt.Errorf("connection lost after the insert (injected)")
	})
	done := make(chan error, 2)
	w.Enqueue(a, func(err error) { done <- err })
	w.Enqueue(b, func(err error) { done <- err })
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the batches were not stored within 30 s")
		}
	}
	if !failed {
		t.Fatal("the first insert was not failed: the test tested nothing")
	}
	c := contentsOf(t, dsn)
	if want := uint64(len(a.Flows) + len(b.Flows)); c.flows != want || c.repeatedIDs != 0 {
		t.Errorf("%d flows stored, %d ids more than once; want %d, each once", c.flows, c.repeatedIDs, want)
	}
}
