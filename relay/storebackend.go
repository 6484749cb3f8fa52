package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/ingest"
	"github.com/trawl-dev/trawl/relay/store"
)

// storeQueries are the store's read side and node persistence.
type storeQueries interface {
	QueryFlows(ctx context.Context, req *observerv1.GetFlowsRequest, fn func(*observerv1.GetFlowsResponse) error) error
	CountFlows(ctx context.Context) (uint64, error)
	LatestConntrack(ctx context.Context, nodes []string) ([]*flowv1.ConntrackSample, error)
	Top(ctx context.Context, req *observerv1.GetTopRequest) (*observerv1.GetTopResponse, error)
	UpsertNode(ctx context.Context, s *flowv1.NodeStatus) error
	Nodes(ctx context.Context) ([]*flowv1.NodeStatus, error)
}

var _ storeQueries = (*store.Store)(nil)

// storeBackend adapts relay/store to the relay's backend.
type storeBackend struct {
	st *store.Store
	w  *store.Writer
	q  storeQueries
}

func storeConfig(cfg Config) store.Config {
	if cfg.QueueRows > 0 && cfg.QueueRows < 2*cfg.BatchRows {
		cfg.QueueRows = 2 * cfg.BatchRows // room to fill one insert while another is in flight
	}
	return store.Config{
		DSN: cfg.ClickHouseDSN, Cluster: cfg.ClickHouseCluster, Retention: cfg.Retention,
		BatchRows: cfg.BatchRows, BatchInterval: cfg.BatchInterval, QueueRows: cfg.QueueRows, Log: cfg.Log,
	}
}

// Migrate brings the ClickHouse schema of cfg up to date.
func Migrate(ctx context.Context, cfg Config) error {
	st, err := store.Open(ctx, storeConfig(cfg))
	if err != nil {
		return fmt.Errorf("open ClickHouse: %w", err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate ClickHouse schema: %w", err)
	}
	return nil
}

func openBackend(ctx context.Context, cfg Config, reg prometheus.Registerer) (backend, error) {
	st, err := store.Open(ctx, storeConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("open ClickHouse: %w", err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate ClickHouse schema: %w", err)
	}
	b := &storeBackend{st: st, w: st.NewWriter(reg)}
	b.q = st
	return b, nil
}

func (b *storeBackend) Enqueue(x *ingest.Batch, done func(error)) {
	sb := store.Batch(*x)
	b.w.Enqueue(&sb, done)
}

func (b *storeBackend) Run(ctx context.Context) error { return b.w.Run(ctx) }

// OnDedupHits passes the writer's count of batches it found already stored
// (resends another relay stored) to f.
func (b *storeBackend) OnDedupHits(f func(batches int)) { b.w.OnDedupHits(f) }
func (b *storeBackend) Close() error                    { return b.st.Close() }
func (b *storeBackend) Ping(ctx context.Context) error {
	return b.st.Ping(ctx)
}
func (b *storeBackend) Version(ctx context.Context) (string, error) { return b.st.Version(ctx) }
func (b *storeBackend) QueueRows() uint64                           { return uint64(max(b.w.QueueRows(), 0)) }

func (b *storeBackend) QueryFlows(ctx context.Context, req *observerv1.GetFlowsRequest, fn func(*observerv1.GetFlowsResponse) error) error {
	return b.q.QueryFlows(ctx, req, fn)
}

func (b *storeBackend) CountFlows(ctx context.Context) (uint64, error) {
	return b.q.CountFlows(ctx)
}

func (b *storeBackend) LatestConntrack(ctx context.Context, nodes []string) ([]*flowv1.ConntrackSample, error) {
	return b.q.LatestConntrack(ctx, nodes)
}

func (b *storeBackend) Top(ctx context.Context, req *observerv1.GetTopRequest) (*observerv1.GetTopResponse, error) {
	return b.q.Top(ctx, req)
}

func (b *storeBackend) UpsertNode(ctx context.Context, s *flowv1.NodeStatus) error {
	return b.q.UpsertNode(ctx, s)
}

func (b *storeBackend) Nodes(ctx context.Context) ([]*flowv1.NodeStatus, error) {
	return b.q.Nodes(ctx)
}

func (b *storeBackend) Namespaces(ctx context.Context, since time.Time) ([]string, error) {
	return b.st.Namespaces(ctx, since)
}

func (b *storeBackend) NodeRecords(ctx context.Context) (map[string]uint64, error) {
	return b.st.NodeRecords(ctx)
}
