package relay

import (
	"context"
	"fmt"
	"os"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	"github.com/trawl-dev/trawl/relay/enrich"
	"github.com/trawl-dev/trawl/relay/hubble"
	"github.com/trawl-dev/trawl/relay/ingest"
	"github.com/trawl-dev/trawl/relay/observer"
)

// backend is what the relay needs from storage: the writer (ingest.Sink),
// the queries (observer.Store) and node status persistence.
type backend interface {
	ingest.Sink
	observer.Store
	hubble.Store
	UpsertNode(ctx context.Context, s *flowv1.NodeStatus) error
	// Run drives the writer until ctx ends, flushing what it holds.
	Run(ctx context.Context) error
	Close() error
}

// newEnricher builds the enrichment from --manifests/--kubeconfig (or the
// pod's service account when running in a cluster without either). Its
// background watches stop when the returned cancel is called.
func newEnricher(cfg Config) (Enricher, context.CancelFunc, error) {
	inCluster := cfg.Manifests == "" && cfg.Kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != ""
	if cfg.Manifests == "" && cfg.Kubeconfig == "" && !inCluster {
		return ingest.NopEnricher{}, func() {}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := enrich.New(ctx, enrich.Config{Manifests: cfg.Manifests, Kubeconfig: cfg.Kubeconfig, InCluster: inCluster, Log: cfg.Log})
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("enrichment: %w", err)
	}
	return e, cancel, nil
}
