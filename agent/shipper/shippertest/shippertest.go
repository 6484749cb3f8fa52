// Package shippertest runs a shipper for tests: the agent side of the ingest
// stream, without TLS, flushing every 20 ms, stopped when the test ends.
package shippertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trawl-dev/trawl/agent/shipper"
)

// Start runs a shipper to the relay's ingest address addr. Unset fields of
// cfg get test defaults (node "node-a", 20 ms flushes, a quiet log); its
// metrics go to reg, a fresh registry when nil.
func Start(t testing.TB, addr string, cfg shipper.Config, reg *prometheus.Registry) *shipper.Shipper {
	t.Helper()
	cfg.Addr, cfg.Insecure = addr, true
	if cfg.NodeName == "" {
		cfg.NodeName = "node-a"
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 20 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s, err := shipper.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}
