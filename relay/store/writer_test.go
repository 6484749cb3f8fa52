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

// A catch-up (here: a backlog sent as one large insert) grows the insert
// columns the writer reuses; once the inserts are small again the writer
// lets those columns go, so the relay's memory returns to its level before
// the catch-up instead of keeping the largest insert's for good.
func TestInsertColumnsGrownByACatchUpAreReleasedWhenInsertsGetSmall(t *testing.T) {
	dsn := chtest.Database(t)
	ctx := context.Background()
	s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: dsn, BatchInterval: 20 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	w := s.NewWriter(nil) // not running yet: the backlog queues up
	per := len(filtertest.Flows())
	seq := 0
	enqueue := func(batches int, done chan error) {
		for range batches {
			seq++
			w.Enqueue(&store.Batch{Key: fmt.Sprintf("node/boot/%d", seq), Flows: filtertest.Flows()}, func(err error) { done <- err })
		}
	}
	wait := func(what string, batches int, done chan error) {
		t.Helper()
		for range batches {
			if err := <-done; err != nil {
				t.Fatalf("%s: batch not stored: %v", what, err)
			}
		}
	}
	spare := func(what string, cond func(int) bool) int {
		t.Helper()
		// The columns are kept after the insert's batches are answered.
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := store.SpareColumnBytesForTest(w)
			if cond(n) {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the writer keeps %d bytes of spare columns", what, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	backlog := 20000 / per
	done := make(chan error, backlog)
	enqueue(backlog, done)
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = w.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-stopped })
	wait("backlog", backlog, done)
	big := spare("after the backlog", func(n int) bool { return n > 0 })

	// Small inserts, one batch each, as at a low steady rate, until the
	// catch-up's columns are gone. The writer judges by its last 8 inserts,
	// and which spare columns an insert takes depends on whether the one
	// before was recycled yet, so how many inserts that takes varies (12
	// were once not enough under load); 40 is far more than it needs.
	released := func(n int) bool { return n > 0 && n <= big/10 }
	small, inserts := 0, 0
	for inserts < 40 && !released(small) {
		one := make(chan error, 1)
		enqueue(1, one)
		wait(fmt.Sprintf("small insert %d", inserts), 1, one)
		inserts++
		small = store.SpareColumnBytesForTest(w)
	}
	small = spare(fmt.Sprintf("after %d small inserts", inserts), released)
	t.Logf("spare columns: %d bytes after the %d-row backlog, %d after %d small inserts", big, backlog*per, small, inserts)
	if c := contentsOf(t, dsn); c.flows != uint64((backlog+inserts)*per) {
		t.Errorf("stored %d flows, want %d", c.flows, (backlog+inserts)*per)
	}
}
