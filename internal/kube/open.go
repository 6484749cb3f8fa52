package kube

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Config chooses where cluster metadata comes from: manifests, or the API
// server (a kubeconfig file, or the in-cluster service account).
type Config struct {
	Manifests  string
	Kubeconfig string
	InCluster  bool
	// ReloadInterval of manifests. Default 1 s.
	ReloadInterval time.Duration
	Log            *slog.Logger
	Store          StoreConfig
}

// ErrNoSource is returned by Open when no source is configured.
var ErrNoSource = fmt.Errorf("no Kubernetes metadata source: give manifests, a kubeconfig or in-cluster")

// Open builds the configured source, loads the initial state into a new
// Store and keeps it current until ctx ends.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	var src Source
	switch {
	case cfg.Manifests != "" && (cfg.Kubeconfig != "" || cfg.InCluster):
		return nil, fmt.Errorf("manifests and a Kubernetes API source are exclusive: choose one")
	case cfg.Manifests != "":
		src = &ManifestSource{Path: cfg.Manifests, Interval: cfg.ReloadInterval}
	case cfg.Kubeconfig != "" || cfg.InCluster:
		c, m, err := NewClients(cfg.Kubeconfig, cfg.InCluster)
		if err != nil {
			return nil, err
		}
		src = &InformerSource{Client: c, Metadata: m}
	default:
		return nil, ErrNoSource
	}
	sc := cfg.Store
	if sc.Log == nil {
		sc.Log = cfg.Log
	}
	return OpenSource(ctx, src, sc)
}

// OpenSource starts src into a new Store, publishes the first View and
// rebuilds it on changes until ctx ends.
func OpenSource(ctx context.Context, src Source, cfg StoreConfig) (*Store, error) {
	s := NewStore(cfg)
	if err := src.Start(ctx, s); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Name(), err)
	}
	s.Rebuild()
	go s.Run(ctx)
	return s, nil
}
