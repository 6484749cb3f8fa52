// Package relay assembles the Trawl relay: the agent ingest stream
// (relay/ingest), the live hub (relay/hub), the ClickHouse store
// (relay/store), the observer API (relay/observer) and Hubble's beside it
// on the same listener (relay/hubble), gRPC health and reflection on both
// listeners, and Prometheus metrics (Hubble's flow metrics among them).
//
// Running a relay in-process (tests, the CLI's end-to-end tests):
//
//	cfg := relay.DefaultConfig()
//	cfg.ObserverAddr, cfg.IngestAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
//	cfg.ClickHouseDSN = chtest.Database(t)
//	cfg.Insecure = true
//	r, err := relay.New(cfg)           // binds the listeners, opens and migrates the store
//	go r.Run(ctx)                      // serves until ctx ends, then shuts down gracefully
//	r.ObserverAddr(), r.IngestAddr()   // the bound host:port addresses
//
// New binds every listener, so the accessors are valid as soon as it
// returns; Run must be called (once) to serve. When New fails it leaves
// nothing open.
package relay

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/tlsconfig"
	"github.com/trawl-dev/trawl/internal/version"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/hub"
	"github.com/trawl-dev/trawl/relay/hubble"
	"github.com/trawl-dev/trawl/relay/ingest"
	"github.com/trawl-dev/trawl/relay/nodes"
	"github.com/trawl-dev/trawl/relay/observer"
)

// Enricher adds Kubernetes metadata and policy verdicts to records in place
// (implemented by relay/enrich).
type Enricher = ingest.Enricher

// Config is the relay's configuration. Start from DefaultConfig.
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
	// QueueRows bounds rows waiting for ClickHouse (decoded, about 1 KiB
	// each); a full queue stops acks and reads, so agents buffer instead.
	QueueRows int

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
	// LiveBuffer is each --follow subscriber's buffer in records.
	LiveBuffer int

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
}

// DefaultConfig returns the defaults: ports 4245/4246/9966, a local
// ClickHouse, 7 days of retention.
func DefaultConfig() Config {
	dsn := os.Getenv("TRAWL_CLICKHOUSE_DSN")
	if dsn == "" {
		dsn = "clickhouse://127.0.0.1:9000/default"
	}
	return Config{
		ObserverAddr:        ":4245",
		IngestAddr:          ":4246",
		MetricsAddr:         ":9966",
		ClickHouseDSN:       dsn,
		Retention:           7 * 24 * time.Hour,
		QueueRows:           100_000,
		Limits:              ingest.Limits{MaxBatchBytes: ingest.DefaultMaxBatchBytes, MaxBatchRecords: ingest.DefaultMaxBatchRecords},
		MaxObserverMsgBytes: 4 << 20,
		Keepalive:           30 * time.Second,
		LiveBuffer:          8192,
		ShutdownTimeout:     10 * time.Second,
		Hubble:              hubble.DefaultConfig(),
	}
}

// RegisterFlags binds the relay's flags to cfg.
func RegisterFlags(fs *pflag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.ObserverAddr, "listen-address", cfg.ObserverAddr, "observer API address (trawl observe)")
	fs.StringVar(&cfg.IngestAddr, "ingest-address", cfg.IngestAddr, "agent ingest address")
	fs.StringVar(&cfg.MetricsAddr, "metrics-address", cfg.MetricsAddr, "Prometheus /metrics address (empty: off)")
	fs.BoolVar(&cfg.Pprof, "pprof", cfg.Pprof, "serve Go profiles at /debug/pprof/ on --metrics-address")
	fs.Var(memoryLimit{&cfg.MemoryLimit}, "memory-limit", "soft limit of the relay's memory (e.g. 900MiB): the collector works harder near it; auto: 90% of the container's limit; off: none (env GOMEMLIMIT wins)")
	fs.StringVar(&cfg.ClickHouseDSN, "clickhouse-dsn", cfg.ClickHouseDSN, "ClickHouse DSN, clickhouse://user:pass@host:9000/database (env TRAWL_CLICKHOUSE_DSN)")
	fs.StringVar(&cfg.ClickHouseCluster, "clickhouse-cluster", cfg.ClickHouseCluster, "ClickHouse cluster name: Replicated + Distributed tables, DDL ON CLUSTER")
	fs.DurationVar(&cfg.Retention, "retention", cfg.Retention, "how long flows are kept (TTL)")
	fs.IntVar(&cfg.BatchRows, "insert-batch-rows", cfg.BatchRows, "rows per ClickHouse insert (0: store default)")
	fs.DurationVar(&cfg.BatchInterval, "insert-interval", cfg.BatchInterval, "longest wait before an insert (0: store default)")
	fs.IntVar(&cfg.QueueRows, "insert-queue-rows", cfg.QueueRows, "rows held for ClickHouse before ingest pushes back on agents (0: store default)")
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
	fs.IntVar(&cfg.LiveBuffer, "follow-buffer", cfg.LiveBuffer, "records buffered per --follow subscriber before it loses records")
	fs.StringSliceVar(&cfg.Peers, "peers", cfg.Peers, "other relay replicas' observer addresses (or one DNS name for all) merged into --follow")
	fs.StringVar(&cfg.PeerTLS.CA, "peer-tls-ca", cfg.PeerTLS.CA, "CA file verifying peer relays' observer certificates")
	fs.StringVar(&cfg.PeerTLS.Cert, "peer-tls-cert", cfg.PeerTLS.Cert, "client certificate presented to peers (when their observer API requires one)")
	fs.StringVar(&cfg.PeerTLS.Key, "peer-tls-key", cfg.PeerTLS.Key, "key of --peer-tls-cert")
	fs.StringVar(&cfg.PeerTLS.ServerName, "peer-tls-server-name", cfg.PeerTLS.ServerName, "name expected in peers' certificates (default: the peer's address)")
	fs.StringVar(&cfg.Manifests, "manifests", cfg.Manifests, "directory or file of Kubernetes YAML (Pods, Services, Namespaces, NetworkPolicies) for enrichment without API access")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, "kubeconfig for enrichment from the API server (in-cluster config when empty and running in a pod)")
	hubble.RegisterFlags(fs, &cfg.Hubble)
	if t := os.Getenv("TRAWL_OBSERVER_TOKEN"); t != "" && cfg.ObserverToken == "" {
		cfg.ObserverToken = t
	}
}

type tokenFile struct{ dst *string }

func (t tokenFile) String() string { return "" }
func (t tokenFile) Type() string   { return "file" }
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

// Relay is a configured relay with its listeners bound.
type Relay struct {
	cfg  Config
	log  *slog.Logger
	reg  *prometheus.Registry
	back backend

	hub      *hub.Hub
	nodes    *nodes.Registry
	ingest   *ingest.Server
	observer *observer.Server
	closers  []func()

	ingestLis, observerLis, metricsLis net.Listener
	ingestSrv, observerSrv             *grpc.Server
	ingestHealth, observerHealth       *health.Server
	metricsSrv                         *http.Server

	nodeUpdates chan *flowv1.NodeStatus
	runOnce     sync.Once
}

// New opens and migrates the store, builds the servers and binds the
// listeners. Call Run to serve.
func New(cfg Config) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	def := DefaultConfig()
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if cfg.MaxObserverMsgBytes <= 0 {
		cfg.MaxObserverMsgBytes = def.MaxObserverMsgBytes
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = def.Keepalive
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = def.ShutdownTimeout
	}
	r := &Relay{cfg: cfg, log: cfg.Log.With("component", "relay"), reg: cfg.Registry, nodeUpdates: make(chan *flowv1.NodeStatus, 1024)}
	ok := false
	defer func() {
		if !ok {
			r.close()
		}
	}()

	m := newMetrics(cfg.Registry)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	back, err := openBackend(ctx, cfg, cfg.Registry)
	if err != nil {
		return nil, err
	}
	r.back = back
	r.closers = append(r.closers, func() { _ = back.Close() })

	enr := cfg.Enricher
	if enr == nil {
		var stopEnrich context.CancelFunc
		enr, stopEnrich, err = newEnricher(cfg)
		if err != nil {
			return nil, err
		}
		r.closers = append(r.closers, stopEnrich)
	}
	r.hub = hub.New(hub.Config{
		SubscriberBuffer: cfg.LiveBuffer,
		OnLost:           func(n int) { m.lost.WithLabelValues("observer_events_queue").Add(float64(n)) },
		OnSubscribers:    func(n int) { m.subscribers.Set(float64(n)) },
	})
	// Node state changes (connected, unavailable) also go to --follow
	// subscribers as node_status records, as Hubble's observe shows them.
	var stateMu sync.Mutex
	lastState := map[string]flowv1.NodeState{}
	r.nodes = nodes.New(func(s *flowv1.NodeStatus) {
		select {
		case r.nodeUpdates <- s:
		default: // the store copy catches up with the next heartbeat
		}
		stateMu.Lock()
		changed := lastState[s.GetNodeName()] != s.GetState()
		lastState[s.GetNodeName()] = s.GetState()
		stateMu.Unlock()
		if changed {
			now := timestamppb.Now()
			r.hub.Publish("", []*observerv1.GetFlowsResponse{{
				ResponseTypes: &observerv1.GetFlowsResponse_NodeStatus{NodeStatus: s}, NodeName: s.GetNodeName(), Time: now,
			}})
		}
	})
	mtls := cfg.IngestTLS.CA != ""
	im := ingest.NewMetrics(cfg.Registry, m.lost)
	// The writer finds resends that another relay stored; they count as
	// dedup hits like the ones the ingest server recognises itself.
	if d, ok := back.(interface{ OnDedupHits(func(int)) }); ok {
		d.OnDedupHits(im.DedupHits)
	}
	hm, err := hubble.NewMetrics(cfg.Hubble.MetricsConfig(), cfg.Registry)
	if err != nil {
		return nil, err
	}
	r.ingest = ingest.New(ingest.Config{Limits: cfg.Limits, RequireClientCert: mtls, NodeNameInCert: cfg.NodeNameInCert, Enricher: enr, Log: cfg.Log},
		hm.Sink(back), r.hub, r.nodes, im)
	var peers observer.Peers
	if len(cfg.Peers) > 0 {
		p, err := newPeers(cfg)
		if err != nil {
			return nil, err
		}
		peers = p
	}
	r.observer = observer.New(observer.Config{LiveBuffer: cfg.LiveBuffer, Log: cfg.Log, Peers: peers}, back, r.hub, r.nodes, r.ingest)

	// Ingest server.
	// Ingest verifies a client certificate when given and the handler
	// refuses streams without one, with an error naming the problem (a
	// failed handshake would only say "connection reset").
	iauth := tlsconfig.NoClientCert
	if mtls {
		iauth = tlsconfig.VerifyIfGiven
	}
	icreds, err := serverCreds(cfg.IngestTLS, iauth, cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("ingest TLS: %w", err)
	}
	r.ingestSrv = grpc.NewServer(append(commonServerOpts(cfg), grpc.Creds(icreds),
		grpc.MaxRecvMsgSize(cfg.Limits.MaxBatchBytes+(1<<20)),
		// Batch sizes from gRPC's own count: no second walk over each batch.
		grpc.StatsHandler(ingest.StatsHandler()))...)
	ingestv1.RegisterIngestServiceServer(r.ingestSrv, r.ingest)
	r.ingestHealth = health.NewServer()
	healthpb.RegisterHealthServer(r.ingestSrv, r.ingestHealth)
	reflection.Register(r.ingestSrv)

	// Observer server.
	otls := cfg.ObserverTLS
	if !otls.HasCert() {
		otls.Cert, otls.Key = cfg.IngestTLS.Cert, cfg.IngestTLS.Key
	}
	oauth := tlsconfig.NoClientCert
	if otls.CA != "" {
		oauth = tlsconfig.RequireClientCert
	}
	ocreds, err := serverCreds(otls, oauth, cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("observer TLS: %w", err)
	}
	auth := tokenAuth(cfg.ObserverToken)
	r.observerSrv = grpc.NewServer(append(commonServerOpts(cfg), grpc.Creds(ocreds),
		grpc.MaxRecvMsgSize(cfg.MaxObserverMsgBytes),
		grpc.ChainUnaryInterceptor(auth.unary), grpc.ChainStreamInterceptor(auth.stream))...)
	observerv1.RegisterObserverServer(r.observerSrv, r.observer)
	r.observerHealth = health.NewServer()
	healthpb.RegisterHealthServer(r.observerSrv, r.observerHealth)
	hubble.Register(r.observerSrv, r.observerHealth, hubble.NewServer(
		hubble.ServerConfig{TLS: otls.HasCert(), TeardownDrops: cfg.Hubble.TeardownDrops, Log: cfg.Log}, r.observer, back))
	reflection.Register(r.observerSrv)

	if r.ingestLis, err = net.Listen("tcp", cfg.IngestAddr); err != nil {
		return nil, fmt.Errorf("ingest listener: %w", err)
	}
	if r.observerLis, err = net.Listen("tcp", cfg.ObserverAddr); err != nil {
		return nil, fmt.Errorf("observer listener: %w", err)
	}
	if cfg.MetricsAddr != "" {
		if r.metricsLis, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		r.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	ok = true
	return r, nil
}

func (r *Relay) close() {
	for _, l := range []net.Listener{r.ingestLis, r.observerLis, r.metricsLis} {
		if l != nil {
			_ = l.Close()
		}
	}
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
}

// ObserverAddr is the bound observer API address (host:port).
func (r *Relay) ObserverAddr() string { return r.observerLis.Addr().String() }

// IngestAddr is the bound agent ingest address (host:port).
func (r *Relay) IngestAddr() string { return r.ingestLis.Addr().String() }

// MetricsAddr is the bound metrics address ("" when disabled).
func (r *Relay) MetricsAddr() string {
	if r.metricsLis == nil {
		return ""
	}
	return r.metricsLis.Addr().String()
}

// Registry is the Prometheus registry holding the relay's metrics.
func (r *Relay) Registry() *prometheus.Registry { return r.reg }

// Run serves until ctx ends, then shuts down: ingest stops first (agents
// reconnect elsewhere and resend what was not acked), the writer flushes,
// then the observer API and the store close.
func (r *Relay) Run(ctx context.Context) error {
	err := errors.New("relay: Run called twice")
	r.runOnce.Do(func() { err = r.run(ctx) })
	return err
}

func (r *Relay) run(ctx context.Context) error {
	defer r.close()
	if limit, restore := applyMemoryLimit(r.cfg.MemoryLimit); limit > 0 {
		defer restore()
		r.log.Info("soft memory limit", "bytes", limit)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	goRun := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && ctx.Err() == nil {
				select {
				case errc <- fmt.Errorf("%s: %w", name, err):
				default: // the first failure is already shutting the relay down
				}
			}
		}()
	}
	// The writer outlives the ingest server so acked work is flushed.
	wctx, wcancel := context.WithCancel(context.Background())
	var wwg sync.WaitGroup
	wwg.Add(1)
	go func() {
		defer wwg.Done()
		if err := r.back.Run(wctx); err != nil && wctx.Err() == nil {
			select {
			case errc <- fmt.Errorf("clickhouse writer: %w", err):
			default:
			}
		}
	}()
	goRun("ingest server", func() error { return r.ingestSrv.Serve(r.ingestLis) })
	goRun("observer server", func() error { return r.observerSrv.Serve(r.observerLis) })
	if r.metricsSrv != nil {
		goRun("metrics server", func() error {
			if err := r.metricsSrv.Serve(r.metricsLis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	goRun("node status writer", func() error { r.writeNodes(ctx); return nil })
	r.log.Info("relay serving", "observer", r.ObserverAddr(), "ingest", r.IngestAddr(), "metrics", r.MetricsAddr(), "version", version.Version)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		r.log.Error("relay failed; shutting down", "err", runErr)
	}
	cancel()
	r.ingestHealth.Shutdown()
	r.observerHealth.Shutdown()
	// Stop ingest; if a stream is stuck in a full writer queue, stopping
	// the writer releases it (its batch stays unacked and is resent).
	ingestStopped := make(chan struct{})
	go func() { stop(r.ingestSrv, r.cfg.ShutdownTimeout/2); close(ingestStopped) }()
	select {
	case <-ingestStopped:
	case <-time.After(r.cfg.ShutdownTimeout / 2):
	}
	wcancel()
	wwg.Wait()
	<-ingestStopped
	stop(r.observerSrv, time.Second)
	if r.metricsSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		_ = r.metricsSrv.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	r.log.Info("relay stopped")
	return runErr
}

// stop drains a gRPC server, cutting long streams after timeout.
func stop(s *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
		<-done
	}
}

// writeNodes copies node status changes to ClickHouse, at most one write per
// node per 15 s unless its state changes.
func (r *Relay) writeNodes(ctx context.Context) {
	type last struct {
		at    time.Time
		state flowv1.NodeState
	}
	written := map[string]last{}
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-r.nodeUpdates:
			l := written[s.GetNodeName()]
			if l.state == s.GetState() && time.Since(l.at) < 15*time.Second {
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := r.back.UpsertNode(wctx, s)
			cancel()
			if err != nil {
				r.log.Warn("store node status", "node", s.GetNodeName(), "err", err)
				continue
			}
			written[s.GetNodeName()] = last{time.Now(), s.GetState()}
		}
	}
}

func commonServerOpts(cfg Config) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.Keepalive, Timeout: 20 * time.Second}),
		// Agents and CLIs ping every 30 s or more; allow down to 10 s.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxSendMsgSize(16 << 20),
	}
}

func serverCreds(f tlsconfig.Files, auth tlsconfig.ClientAuth, insecureOK bool) (credentials.TransportCredentials, error) {
	if !f.HasCert() {
		if !insecureOK {
			return nil, errors.New("no certificate configured and --insecure not given")
		}
		return insecure.NewCredentials(), nil
	}
	if auth == tlsconfig.NoClientCert {
		f.CA = ""
	}
	tc, err := tlsconfig.Server(f, auth)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}

// authenticator checks the observer API's bearer token (health checks are
// exempt so probes work without it).
type authenticator struct{ token string }

func tokenAuth(token string) authenticator { return authenticator{token} }

func (a authenticator) check(ctx context.Context, method string) error {
	if a.token == "" || strings.HasPrefix(method, "/grpc.health.v1.Health/") {
		return nil
	}
	if strings.HasPrefix(method, "/grpc.reflection.") {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		tok, ok := strings.CutPrefix(v, "Bearer ")
		if !ok {
			// Basic auth with the token as password, any user: what the
			// hubble CLI can send (--basic-auth-username/-password).
			tok, ok = basicPassword(v)
		}
		if ok && subtle.ConstantTimeCompare([]byte(tok), []byte(a.token)) == 1 {
			return nil
		}
	}
	if len(md.Get("authorization")) == 0 {
		return status.Error(codes.Unauthenticated, "this relay requires a bearer token (trawl --token or TRAWL_TOKEN)")
	}
	return status.Error(codes.Unauthenticated, "bearer token rejected")
}

func basicPassword(v string) (string, bool) {
	enc, ok := strings.CutPrefix(v, "Basic ")
	if !ok {
		return "", false
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", false
	}
	_, pass, ok := strings.Cut(string(b), ":")
	return pass, ok
}

func (a authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (a authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

type relayMetrics struct {
	lost        *prometheus.CounterVec
	subscribers prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) relayMetrics {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "trawl_relay_info", Help: "Build of the relay."}, []string{"version"})
	info.WithLabelValues(version.Version).Set(1)
	m := relayMetrics{
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_lost_events_total",
			Help: "Records lost in the relay (slow subscribers, rejected batches) and reported by agents, by cause."}, []string{"cause"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "trawl_relay_subscribers", Help: "Live --follow subscribers."}),
	}
	reg.MustRegister(info, m.lost, m.subscribers)
	for _, c := range []string{"observer_events_queue", "batch_rejected"} {
		m.lost.WithLabelValues(c)
	}
	return m
}
