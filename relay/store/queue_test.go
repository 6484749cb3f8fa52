package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	"github.com/trawl-dev/trawl/relay/store"
)

// The writer's queue is bounded by the batches' encoded bytes: a batch that
// would take it over the bound waits in Enqueue (the agent's stream stops
// being read) until an insert makes room, and then both are stored once.
func TestABatchOverTheQueuesBytesWaitsUntilAnInsertMakesRoom(t *testing.T) {
	dsn := chtest.Database(t)
	ctx := context.Background()
	s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: dsn, BatchInterval: 20 * time.Millisecond,
		QueueBytes: 1000, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	w := s.NewWriter(nil) // not running yet: nothing leaves the queue
	done := make(chan error, 2)
	batch := func(i int) *store.Batch {
		return &store.Batch{Key: fmt.Sprintf("node/boot/%d", i), Flows: filtertest.Flows(), Bytes: 600}
	}
	w.Enqueue(batch(1), func(err error) { done <- err })
	second := make(chan struct{})
	go func() { w.Enqueue(batch(2), func(err error) { done <- err }); close(second) }()
	select {
	case <-second:
		t.Fatal("a batch that takes the queue over its bytes was queued at once")
	case <-time.After(300 * time.Millisecond):
	}
	if got := w.QueueRows(); got != len(filtertest.Flows()) {
		t.Errorf("queue holds %d rows while the second batch waits, want the first batch's %d", got, len(filtertest.Flows()))
	}
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = w.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-stopped })
	<-second
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("batch not stored: %v", err)
		}
	}
	if c := contentsOf(t, dsn); c.flows != uint64(2*len(filtertest.Flows())) {
		t.Errorf("stored %d flows, want %d: each batch once", c.flows, 2*len(filtertest.Flows()))
	}
}

// Enqueue encodes the flows into their insert's columns: the queue keeps no
// Flow reachable (they take ~3.4 times their encoded bytes), and what it
// stores later is what they said.
func TestQueuedFlowsCanBeFreedBeforeTheirInsert(t *testing.T) {
	dsn := chtest.Database(t)
	ctx := context.Background()
	s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: dsn, BatchInterval: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	w := s.NewWriter(nil) // not running yet: the batch stays queued
	n := len(filtertest.Flows())
	freed := make(chan struct{}, n)
	done := make(chan error, 1)
	func() { // a function of its own: no variable of the test keeps the flows
		fs := filtertest.Flows()
		for _, f := range fs {
			runtime.AddCleanup(f, func(ch chan struct{}) { ch <- struct{}{} }, freed)
		}
		w.Enqueue(&store.Batch{Key: "node/boot/1", Flows: fs}, func(err error) { done <- err })
	}()
	got := 0
	for round := 0; got < n && round < 50; round++ {
		runtime.GC()
		wait := time.After(100 * time.Millisecond) // cleanups run after a collection, on a goroutine of their own
	drain:
		for got < n {
			select {
			case <-freed:
				got++
			case <-wait:
				break drain
			}
		}
	}
	if got < n {
		t.Fatalf("%d of %d queued flows were freed after 50 collections: the queue keeps them reachable", got, n)
	}
	if rows := w.QueueRows(); rows != n {
		t.Errorf("queue holds %d rows, want %d", rows, n)
	}
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = w.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-stopped })
	if err := <-done; err != nil {
		t.Fatalf("batch not stored: %v", err)
	}
	if c := contentsOf(t, dsn); c.flows != uint64(n) {
		t.Errorf("stored %d flows, want %d", c.flows, n)
	}
}
