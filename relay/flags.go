package relay

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/trawl-dev/trawl/relay/hubble"
)

// RegisterFlags binds the relay's flags to cfg.
func RegisterFlags(fs *pflag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.ObserverAddr, "listen-address", cfg.ObserverAddr, "observer API address (trawl observe)")
	fs.StringVar(&cfg.IngestAddr, "ingest-address", cfg.IngestAddr, "agent ingest address")
	fs.StringVar(&cfg.MetricsAddr, "metrics-address", cfg.MetricsAddr, "Prometheus /metrics address (empty: off)")
	fs.BoolVar(&cfg.Pprof, "pprof", cfg.Pprof, "serve Go profiles at /debug/pprof/ on --metrics-address")
	fs.Var(memoryLimit{&cfg.MemoryBudget}, "memory-budget", "heap the relay takes at start and holds whatever the load (its full-ingest memory; RSS adds ~40 MiB); auto: 3 × --insert-queue-bytes + 8 MiB, at most 3/4 of the memory limit; off: the heap follows the load (env GOGC wins)")
	fs.Var(memoryLimit{&cfg.MemoryLimit}, "memory-limit", "soft limit of the relay's memory (e.g. 900MiB): the collector works harder near it; auto: 90% of the container's limit; off: none (env GOMEMLIMIT wins)")
	fs.StringVar(&cfg.ClickHouseDSN, "clickhouse-dsn", cfg.ClickHouseDSN, "ClickHouse DSN, clickhouse://user:pass@host:9000/database (env TRAWL_CLICKHOUSE_DSN)")
	fs.StringVar(&cfg.ClickHouseCluster, "clickhouse-cluster", cfg.ClickHouseCluster, "ClickHouse cluster name: Replicated + Distributed tables, DDL ON CLUSTER")
	fs.DurationVar(&cfg.Retention, "retention", cfg.Retention, "how long flows are kept (TTL)")
	fs.IntVar(&cfg.BatchRows, "insert-batch-rows", cfg.BatchRows, "rows per ClickHouse insert (0: store default)")
	fs.DurationVar(&cfg.BatchInterval, "insert-interval", cfg.BatchInterval, "longest wait before an insert (0: store default)")
	fs.IntVar(&cfg.QueueBytes, "insert-queue-bytes", cfg.QueueBytes, "bytes of batches (encoded size) held for ClickHouse before ingest pushes back on agents; an insert takes at most half (0: store default)")
	fs.StringVar(&cfg.IngestTLS.Cert, "tls-cert", cfg.IngestTLS.Cert, "certificate file for the ingest listener (reloaded on change)")
	fs.StringVar(&cfg.IngestTLS.Key, "tls-key", cfg.IngestTLS.Key, "key file for the ingest listener")
	fs.StringVar(&cfg.IngestTLS.CA, "tls-ca", cfg.IngestTLS.CA, "CA file of agent client certificates: turns on mutual TLS for ingest")
	fs.BoolVar(&cfg.NodeNameInCert, "tls-node-names", cfg.NodeNameInCert, "with --tls-ca: an agent's node name must be in its certificate (DNS name or common name)")
	fs.StringVar(&cfg.ObserverTLS.Cert, "observer-tls-cert", cfg.ObserverTLS.Cert, "certificate file for the observer API (default: --tls-cert)")
	fs.StringVar(&cfg.ObserverTLS.Key, "observer-tls-key", cfg.ObserverTLS.Key, "key file for the observer API (default: --tls-key)")
	fs.StringVar(&cfg.ObserverTLS.CA, "observer-tls-ca", cfg.ObserverTLS.CA, "CA file of CLI client certificates: requires them on the observer API")
	fs.StringVar(&cfg.ObserverToken, "observer-token", cfg.ObserverToken, "bearer token required on the observer API (env TRAWL_OBSERVER_TOKEN; prefer --observer-token-file)")
	fs.Var(tokenFile{&cfg.ObserverToken}, "observer-token-file", "file holding the observer API bearer token")
	fs.BoolVar(&cfg.Insecure, "insecure", cfg.Insecure, "serve plaintext on listeners without a certificate")
	fs.IntVar(&cfg.Limits.MaxBatchBytes, "max-batch-bytes", cfg.Limits.MaxBatchBytes, "largest agent batch accepted, bytes")
	fs.IntVar(&cfg.Limits.MaxBatchRecords, "max-batch-records", cfg.Limits.MaxBatchRecords, "most records in one agent batch")
	fs.DurationVar(&cfg.Keepalive, "keepalive", cfg.Keepalive, "gRPC keepalive ping interval")
	fs.DurationVar(&cfg.IngestMaxConnectionAge, "ingest-max-connection-age", cfg.IngestMaxConnectionAge, "end agent connections after this long so agents spread over relay replicas again (0: never)")
	fs.IntVar(&cfg.LiveBuffer, "follow-buffer", cfg.LiveBuffer, "records buffered per --follow subscriber before it loses records")
	fs.DurationVar(&cfg.FollowSeamWait, "follow-seam-wait", cfg.FollowSeamWait, "longest wait of a --follow with history for the inserts in flight when it started; records not stored by then are reported lost to it (0: 5s)")
	fs.StringSliceVar(&cfg.Peers, "peers", cfg.Peers, "other relay replicas' observer addresses (or one DNS name for all) merged into --follow")
	fs.StringVar(&cfg.PeerTLS.CA, "peer-tls-ca", cfg.PeerTLS.CA, "CA file verifying peer relays' observer certificates")
	fs.StringVar(&cfg.PeerTLS.Cert, "peer-tls-cert", cfg.PeerTLS.Cert, "client certificate presented to peers (when their observer API requires one)")
	fs.StringVar(&cfg.PeerTLS.Key, "peer-tls-key", cfg.PeerTLS.Key, "key of --peer-tls-cert")
	fs.StringVar(&cfg.PeerTLS.ServerName, "peer-tls-server-name", cfg.PeerTLS.ServerName, "name expected in peers' certificates (default: the peer's address)")
	fs.StringVar(&cfg.Manifests, "manifests", cfg.Manifests, "directory or file of Kubernetes YAML (Pods, Services, Namespaces, NetworkPolicies) for enrichment without API access")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, "kubeconfig for enrichment from the API server (in-cluster config when empty and running in a pod)")
	fs.IntVar(&cfg.FQDNCacheEntries, "fqdn-cache-entries", cfg.FQDNCacheEntries, "DNS answers kept (per node, client and address) to name flows' destination_names/source_names; 0: 100000, negative: off")
	hubble.RegisterFlags(fs, &cfg.Hubble)
	if t := os.Getenv("TRAWL_OBSERVER_TOKEN"); t != "" && cfg.ObserverToken == "" {
		cfg.ObserverToken = t
	}
}

type tokenFile struct{ dst *string }

func (t tokenFile) String() string { return "" }

func (t tokenFile) Type() string { return "file" }

func (t tokenFile) Set(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read observer token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("observer token file %s is empty", path)
	}
	*t.dst = tok
	return nil
}
