package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	"github.com/trawl-dev/trawl/relay/store"
)

// The writer's insert columns are its memory budget, taken up front: both
// sets are made by NewWriter with room for BatchRows rows, a catch-up (a
// backlog that fills both, and a batch that then waits for one) does not
// make more or grow them once they held such inserts, and small inserts
// afterwards release nothing. So an idle relay, a loaded one and one
// catching up after an outage hold the same columns.
func TestInsertColumnsAreMadeUpFrontAndKeptThroughACatchUp(t *testing.T) {
	const batchRows = 2000
	dsn := chtest.Database(t)
	ctx := context.Background()
	s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: dsn, BatchInterval: 20 * time.Millisecond,
		BatchRows: batchRows, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	w := s.NewWriter(nil) // not running yet: the backlog queues up
	per := len(filtertest.Flows())
	perInsert := batchRows / per // batches that fill one insert's rows
	seq, stored := 0, 0
	enqueue := func(done chan error) {
		seq++
		w.Enqueue(&store.Batch{Key: fmt.Sprintf("node/boot/%d", seq), Flows: filtertest.Flows()}, func(err error) { done <- err })
	}
	wait := func(what string, batches int, done chan error) {
		t.Helper()
		for range batches {
			if err := <-done; err != nil {
				t.Fatalf("%s: batch not stored: %v", what, err)
			}
		}
		stored += batches
	}
	idle := func(what string) int {
		t.Helper()
		// The columns come back after the insert's batches are answered.
		deadline := time.Now().Add(10 * time.Second)
		for {
			sets, bytes := store.IdleColumnsForTest(w)
			if sets == 2 {
				return bytes
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d sets of insert columns idle, want the writer's 2", what, sets)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	made := idle("before any batch")
	if want := 2 * store.ReservedColumnBytesForTest(batchRows); made != want {
		t.Fatalf("NewWriter made %d bytes of insert columns, want 2 sets with room for %d rows each (%d bytes)", made, batchRows, want)
	}
	if made < 2*batchRows*100 {
		t.Fatalf("NewWriter made %d bytes of insert columns: under 100 B per row, so they were not made for %d rows", made, batchRows)
	}

	// A catch-up: enough batches to fill both sets' inserts are queued at
	// once; one more needs a third insert and waits for a set to come back.
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	t.Cleanup(func() { cancel(); <-stopped })
	running := false
	catchUp := func(what string) {
		t.Helper()
		done := make(chan error, 2*perInsert+1)
		for range 2 * perInsert {
			enqueue(done)
		}
		third := make(chan struct{})
		go func() { enqueue(done); close(third) }()
		if !running {
			select {
			case <-third:
				t.Fatalf("%s: a batch was queued for a third insert while both sets of columns were taken", what)
			case <-time.After(300 * time.Millisecond):
			}
			if got, want := w.QueueRows(), 2*perInsert*per; got != want {
				t.Errorf("%s: the queue holds %d rows while the batch waits, want both inserts' %d", what, got, want)
			}
			go func() { defer close(stopped); _ = w.Run(runCtx) }()
			running = true
		}
		wait(what, 2*perInsert+1, done)
		<-third
	}
	catchUp("first catch-up")
	// What rows' strings and array elements take grows once, to what these
	// inserts need.
	filled := idle("after the first catch-up")
	if filled < made {
		t.Fatalf("after a catch-up the insert columns hold %d bytes, less than the %d made up front", filled, made)
	}
	catchUp("second catch-up")
	if again := idle("after the second catch-up"); again != filled {
		t.Errorf("a second catch-up of the same batches took the insert columns from %d to %d bytes, want them unchanged", filled, again)
	}
	for i := range 10 {
		done := make(chan error, 1)
		enqueue(done)
		wait(fmt.Sprintf("small insert %d", i), 1, done)
	}
	if after := idle("after small inserts"); after != filled {
		t.Errorf("small inserts after the catch-ups took the insert columns from %d to %d bytes, want them kept", filled, after)
	}
	t.Logf("insert columns: %d bytes made up front, %d after the catch-ups and small inserts", made, filled)
	if c := contentsOf(t, dsn); c.flows != uint64(stored*per) {
		t.Errorf("stored %d flows, want %d", c.flows, stored*per)
	}
}
