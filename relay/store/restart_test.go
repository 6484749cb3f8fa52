package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/dev/chserver"
	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

func port(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// The writer keeps every batch through a ClickHouse outage: it retries the
// same inserts until the server is back, acknowledges only stored batches,
// and nothing is stored twice.
func TestWriterSurvivesClickHouseRestartWithoutLossOrDuplicates(t *testing.T) {
	chtest.SkipShort(t)
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := chserver.Start(ctx, chserver.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("start ClickHouse: %v", err)
	}
	defer func() { srv.Stop() }()
	s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: "clickhouse://" + srv.Addr + "/trawl_restart", BatchRows: 500,
		BatchInterval: 20 * time.Millisecond, QueueBytes: 5000 * store.EstimatedRowBytes,
		// The writer's retries, shown when the test fails.
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	w := runWriter(t, s)

	const batches, perBatch = 120, 50
	var mu sync.Mutex
	acked, failed := 0, 0
	var wg sync.WaitGroup
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			fs := make([]*flowv1.Flow, perBatch)
			for j := range fs {
				f := filtertest.Flows()[j%10]
				f.Time = timestamppb.New(filtertest.Base.Add(time.Duration(i*perBatch+j) * time.Millisecond))
				f.Uuid = store.FormatUUID(0xabc, uint64(i)<<20|uint64(j))
				fs[j] = f
			}
			wg.Add(1)
			w.Enqueue(&store.Batch{Key: fmt.Sprintf("node/boot/%d", i), Flows: fs}, func(err error) {
				mu.Lock()
				if err == nil {
					acked++
				} else {
					failed++
				}
				mu.Unlock()
				wg.Done()
			})
			time.Sleep(2 * time.Millisecond)
		}
	}
	produce(0, 40)
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop ClickHouse: %v", err)
	}
	mu.Lock()
	ackedBefore := acked
	mu.Unlock()
	done := make(chan struct{})
	go func() { produce(40, batches); close(done) }() // Enqueue may block: the queue holds 5000 rows
	time.Sleep(3 * time.Second)
	mu.Lock()
	ackedDuring := acked - ackedBefore
	mu.Unlock()
	srv, err = chserver.Start(ctx, chserver.Config{DataDir: dir, TCPPort: port(t, srv.Addr), HTTPPort: port(t, srv.HTTPAddr)})
	if err != nil {
		t.Fatalf("restart ClickHouse: %v", err)
	}
	allAcked := make(chan struct{})
	go func() { <-done; wg.Wait(); close(allAcked) }()
	select {
	case <-allAcked:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d batches acknowledged 2 minutes after ClickHouse restarted", acked, batches)
	}
	if ackedDuring > 1 { // at most the insert in flight when the server stopped
		t.Errorf("%d batches acknowledged while ClickHouse was down", ackedDuring)
	}
	if acked != batches || failed != 0 {
		t.Errorf("acked %d, failed %d of %d batches", acked, failed, batches)
	}
	conn := chtest.Open(t, "clickhouse://"+srv.Addr)
	var rows, distinct uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(id_hi, id_lo) FROM trawl_restart.flows").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != batches*perBatch || distinct != rows {
		t.Errorf("stored %d rows (%d distinct), want %d once each", rows, distinct, batches*perBatch)
	}
}
