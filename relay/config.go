package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/trawl-dev/trawl/internal/tlsconfig"
	"github.com/trawl-dev/trawl/relay/hubble"
	"github.com/trawl-dev/trawl/relay/ingest"
	"github.com/trawl-dev/trawl/relay/store"
)

// Config is the relay's configuration. Start from DefaultConfiguration.
type Config struct {
	// Listen addresses; ":0" picks a free port (see the accessors).
	ObserverAddr string
	IngestAddr   string
	// MetricsAddr serves /metrics; empty disables it.
	MetricsAddr string
	// Pprof adds Go's /debug/pprof/ handlers to the metrics listener (for
	// profiling a running relay; off by default: profiles reveal internals).
	Pprof bool

	// ClickHouse: DSN (the database is its path), optional cluster name
	// for ON CLUSTER / Replicated + Distributed tables, and retention.
	ClickHouseDSN     string
	ClickHouseCluster string
	Retention         time.Duration
	// Writer batching (0: the store's defaults).
	BatchRows     int
	BatchInterval time.Duration
	// QueueBytes bounds the batches waiting for ClickHouse by their encoded
	// size (decoded they take a few times that); a full queue stops acks
	// and reads, so agents buffer instead.
	QueueBytes int

	// IngestTLS: Cert/Key serve TLS to agents; CA turns on mutual TLS (a
	// stream without a client certificate signed by CA is refused).
	IngestTLS tlsconfig.Files
	// NodeNameInCert (with mutual TLS) requires each agent's node name in
	// its certificate's DNS names or common name.
	NodeNameInCert bool
	// ObserverTLS: Cert/Key serve TLS to CLIs (default: IngestTLS's
	// certificate); CA requires client certificates too.
	ObserverTLS tlsconfig.Files
	// ObserverToken, when set, is required as "authorization: Bearer <token>".
	ObserverToken string
	// Insecure allows plaintext on listeners that have no certificate.
	Insecure bool

	// Limits on agent batches; MaxObserverMsgBytes bounds observer requests.
	Limits              ingest.Limits
	MaxObserverMsgBytes int
	// Keepalive pings idle connections at this interval (default 30 s).
	Keepalive time.Duration
	// IngestMaxConnectionAge ends an agent's connection after this long
	// (default 10 min; 0 never), so that agents spread again over the
	// replicas behind one address after one restarts: without it, every
	// agent that moved to the surviving replica stays there. The agent
	// resends what was not acknowledged; the resends are de-duplicated.
	IngestMaxConnectionAge time.Duration
	// LiveBuffer is each --follow subscriber's buffer in records.
	LiveBuffer int
	// FollowSeamWait bounds how long a follow with history waits for the
	// inserts in flight when it started before it queries ClickHouse
	// (default observer.DefaultSeamWait); their records not stored by then
	// are reported lost to it.
	FollowSeamWait time.Duration

	// Peers are other relay replicas (host:port of their observer API, or
	// one DNS name resolving to all of them) whose live streams a follow
	// merges. This relay's own address is recognised and skipped.
	Peers []string
	// PeerTLS is used to reach peers (plaintext when Insecure and empty).
	PeerTLS tlsconfig.Files

	// Manifests and Kubeconfig feed enrichment (relay/enrich); Enricher,
	// when set, is used as is.
	Manifests  string
	Kubeconfig string
	Enricher   Enricher

	// FQDNCacheEntries bounds the cache of DNS answers that names flows
	// (destination_names, source_names; relay/enrich.Names): 0 is the
	// default, negative turns naming off.
	FQDNCacheEntries int

	// Hubble configures Hubble's observer API and flow metrics.
	Hubble hubble.Config

	// Registry receives the relay's metrics (a fresh one when nil).
	Registry *prometheus.Registry
	Log      *slog.Logger
	// ShutdownTimeout bounds the graceful shutdown (default 10 s).
	ShutdownTimeout time.Duration
	// MemoryLimit is the Go runtime's soft memory limit applied while Run
	// serves, in bytes: 0 (default) is 90 % of the cgroup's memory limit
	// when there is one, <0 is none. GOMEMLIMIT in the environment wins.
	MemoryLimit int64
	// MemoryBudget is the heap the relay takes at start and holds while Run
	// serves, idle or loaded (memlimit.go), in bytes: 0 (default) is
	// 6 × QueueBytes + 8 MiB (200 MiB with the default queue), at most
	// three quarters of the memory limit; <0 is none (the heap follows the
	// load, paced by GOGC). GOGC in the environment wins.
	MemoryBudget int64
}

// DefaultConfiguration returns the relay's defaults: ports 4245/4246/9966, a
// local ClickHouse (env TRAWL_CLICKHOUSE_DSN), and the components' own
// defaults (retention from relay/store, batch limits from relay/ingest,
// Hubble's metrics from relay/hubble).
func DefaultConfiguration() Config {
	dsn := os.Getenv("TRAWL_CLICKHOUSE_DSN")
	if dsn == "" {
		dsn = "clickhouse://127.0.0.1:9000/default"
	}
	return Config{
		ObserverAddr:           ":4245",
		IngestAddr:             ":4246",
		MetricsAddr:            ":9966",
		ClickHouseDSN:          dsn,
		Retention:              store.DefaultConfiguration().Retention,
		QueueBytes:             store.DefaultQueueBytes,
		Limits:                 ingest.DefaultConfiguration().Limits,
		MaxObserverMsgBytes:    4 << 20,
		Keepalive:              30 * time.Second,
		LiveBuffer:             8192,
		IngestMaxConnectionAge: 10 * time.Minute,
		ShutdownTimeout:        10 * time.Second,
		Hubble:                 hubble.DefaultConfiguration(),
	}
}

// Validate checks the configuration without touching the network.
func (c *Config) Validate() error {
	if c.ClickHouseDSN == "" {
		return errors.New("--clickhouse-dsn is required")
	}
	if c.ObserverAddr == "" || c.IngestAddr == "" {
		return errors.New("--listen-address and --ingest-address are required")
	}
	if c.Pprof && c.MetricsAddr == "" {
		return errors.New("--pprof serves on the metrics listener; set --metrics-address")
	}
	if c.Retention < time.Hour {
		return fmt.Errorf("--retention %s is shorter than an hour", c.Retention)
	}
	if !c.IngestTLS.HasCert() && !c.Insecure {
		return errors.New("the ingest listener needs --tls-cert/--tls-key (add --tls-ca for mutual TLS), or --insecure for plaintext")
	}
	if c.NodeNameInCert && c.IngestTLS.CA == "" {
		return errors.New("--tls-node-names needs mutual TLS (--tls-ca)")
	}
	if c.IngestTLS.CA != "" && !c.IngestTLS.HasCert() {
		return errors.New("--tls-ca (mutual TLS) needs --tls-cert and --tls-key")
	}
	if !c.ObserverTLS.HasCert() && !c.IngestTLS.HasCert() && !c.Insecure {
		return errors.New("the observer API needs --observer-tls-cert/--observer-tls-key (or --tls-cert), or --insecure for plaintext")
	}
	return nil
}

// setDefaults fills what New needs and a caller may leave unset.
func (c *Config) setDefaults() {
	def := DefaultConfiguration()
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
		c.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if c.MaxObserverMsgBytes <= 0 {
		c.MaxObserverMsgBytes = def.MaxObserverMsgBytes
	}
	if c.Keepalive <= 0 {
		c.Keepalive = def.Keepalive
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = def.ShutdownTimeout
	}
}
