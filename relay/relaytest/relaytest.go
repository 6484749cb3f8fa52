// Package relaytest runs a relay for tests: on loopback ports, without TLS,
// with short batch intervals and a quiet log, stopped when the test ends.
package relaytest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/relay"
)

// Start runs a relay that stores into the ClickHouse database at dsn.
// mutate, when not nil, changes the configuration before the relay is made.
func Start(t testing.TB, dsn string, mutate func(*relay.Config)) *relay.Relay {
	t.Helper()
	cfg := relay.DefaultConfiguration()
	cfg.ObserverAddr, cfg.IngestAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ClickHouseDSN = dsn
	cfg.Insecure = true
	cfg.BatchInterval = 100 * time.Millisecond
	cfg.Log = slog.New(slog.DiscardHandler)
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	})
	return r
}
