package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/dev/chserver"
	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// freePort is a port for a ClickHouse server the test restarts on it
// (chserver.FreePort says why not port 0).
func freePort(t *testing.T) int {
	t.Helper()
	p, err := chserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// twoShards starts two embedded servers as two shards of cluster
// trawl_two (the embedded server reads config.xml from its data
// directory) and migrates database trawl on both: Distributed tables over
// plain local tables. It returns the servers' stores.
func twoShards(t *testing.T) ([]*chserver.Server, []*store.Store) {
	t.Helper()
	ctx := context.Background()
	tcp := []int{freePort(t), freePort(t)}
	cfg := fmt.Sprintf(`<clickhouse><remote_servers><trawl_two>
<shard><replica><host>127.0.0.1</host><port>%d</port></replica></shard>
<shard><replica><host>127.0.0.1</host><port>%d</port></replica></shard>
</trawl_two></remote_servers></clickhouse>`, tcp[0], tcp[1])
	srvs := make([]*chserver.Server, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range srvs {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			srvs[i], errs[i] = chserver.Start(ctx, chserver.Config{DataDir: dir, TCPPort: tcp[i], HTTPPort: freePort(t)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start server %d: %v", i, err)
		}
		t.Cleanup(func() { srvs[i].Stop() })
	}
	stores := make([]*store.Store, 2)
	for i, srv := range srvs {
		s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: "clickhouse://" + srv.Addr + "/trawl", Cluster: "trawl_two", ShardOnly: true,
			BatchInterval: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate server %d: %v", i, err)
		}
		stores[i] = s
	}
	return srvs, stores
}

// Two shards: Distributed tables spread the writer's inserts over both,
// and reads through either server see all.
func TestDistributedTablesOverTwoServers(t *testing.T) {
	chtest.SkipShort(t)
	ctx := context.Background()
	srvs, stores := twoShards(t)

	// 8 agent boots × 5 batches: the sharding key (boot, sequence) spreads them.
	var batches []*store.Batch
	var all []*flowv1.Flow
	for boot := 0; boot < 8; boot++ {
		for seq := 1; seq <= 5; seq++ {
			fs := filtertest.Flows()
			for j, f := range fs {
				f.Time = timestamppb.New(filtertest.Base.Add(time.Duration(len(all)+j) * time.Millisecond))
				f.Uuid = store.FormatUUID(uint64(0x1000+boot), uint64(seq)<<20|uint64(j))
			}
			all = append(all, fs...)
			batches = append(batches, &store.Batch{Key: fmt.Sprintf("n/%d/%d", boot, seq), Flows: fs})
		}
	}
	write(t, runWriter(t, stores[0]), batches[3:]...)
	for i := 0; i < 2; i++ { // an insert and its retry, through the Distributed table
		if err := store.WriteGroupForTest(ctx, stores[0], batches[:3]); err != nil {
			t.Fatal(err)
		}
	}

	var perShard []uint64
	for _, srv := range srvs {
		var n uint64
		if err := chtest.Open(t, "clickhouse://"+srv.Addr).QueryRow(ctx, "SELECT count() FROM trawl.flows_local").Scan(&n); err != nil {
			t.Fatal(err)
		}
		perShard = append(perShard, n)
	}
	if perShard[0] == 0 || perShard[1] == 0 || perShard[0]+perShard[1] != uint64(len(all)) {
		t.Errorf("rows per shard %v, want both non-empty and %d in all", perShard, len(all))
	}
	for i, s := range stores {
		if n := count(t, s); n != uint64(len(all)) {
			t.Errorf("server %d counts %d flows through the Distributed table, want %d", i, n, len(all))
		}
	}
	got := query(t, stores[1], &observerv1.GetFlowsRequest{})
	if len(got) != len(all) {
		t.Fatalf("server 1 reads %d flows, want %d", len(got), len(all))
	}
	for i := range all {
		if !proto.Equal(got[i].GetFlow(), all[i]) {
			t.Fatalf("flow %d read through server 1 differs:\n got %v\nwant %v", i, got[i].GetFlow(), all[i])
		}
	}
	top, err := stores[1].Top(ctx, &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_TALKERS,
		Since: timestamppb.New(filtertest.Base.Add(-time.Minute)), Until: timestamppb.New(filtertest.Base.Add(time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	var bytes uint64
	for _, e := range top.Entries {
		bytes += e.Bytes
	}
	if want := uint64(74696 * 40); bytes != want {
		t.Errorf("rollup bytes over both shards %d, want %d", bytes, want)
	}
}
