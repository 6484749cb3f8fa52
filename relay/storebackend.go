package relay

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trawl-dev/trawl/relay/store"
)

// storeBackend is relay/store as the relay's backend: the store answers
// queries and keeps node status, its writer takes batches (ingest hands it
// store.Batch as they are).
type storeBackend struct {
	*store.Store
	*store.Writer
}

var _ backend = storeBackend{}

func storeConfig(cfg Config) store.Config {
	return store.Config{
		DSN: cfg.ClickHouseDSN, Cluster: cfg.ClickHouseCluster, Retention: cfg.Retention,
		BatchRows: cfg.BatchRows, BatchInterval: cfg.BatchInterval, QueueBytes: cfg.QueueBytes, Log: cfg.Log,
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
	return storeBackend{Store: st, Writer: st.NewWriter(reg)}, nil
}

// QueueRows is the writer's queue, never negative (observer.Store).
func (b storeBackend) QueueRows() uint64 { return uint64(max(b.Writer.QueueRows(), 0)) }
