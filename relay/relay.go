// Package relay assembles the Trawl relay: the agent ingest stream
// (relay/ingest), the live hub (relay/hub), the ClickHouse store
// (relay/store), the observer API (relay/observer) and Hubble's beside it
// on the same listener (relay/hubble), gRPC health and reflection on both
// listeners, and Prometheus metrics (Hubble's flow metrics among them).
//
// Running a relay in-process (tests, the CLI's end-to-end tests):
//
//	cfg := relay.DefaultConfiguration()
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
//
// Files: config.go (Config, DefaultConfiguration, Validate), flags.go (the
// command line), relay.go (New: the components in dependency order),
// servers.go (the gRPC servers), auth.go (the observer API's token),
// metrics.go, run.go (the run loop and shutdown order), storebackend.go
// (relay/store as the backend), peers.go (follow across replicas),
// memlimit.go.
package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
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
	cfg.setDefaults()
	r := &Relay{cfg: cfg, log: cfg.Log.With("component", "relay"), reg: cfg.Registry, nodeUpdates: make(chan *flowv1.NodeStatus, 1024)}
	if err := r.build(); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// build makes the components in dependency order: store, enrichment, hub
// and node registry, ingest, observer (Trawl's and Hubble's API), then the
// gRPC servers and the listeners.
func (r *Relay) build() error {
	cfg := r.cfg
	m := newMetrics(cfg.Registry)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	back, err := openBackend(ctx, cfg, cfg.Registry)
	if err != nil {
		return err
	}
	r.back = back
	r.closers = append(r.closers, func() { _ = back.Close() })

	enr := cfg.Enricher
	if enr == nil {
		var stopEnrich context.CancelFunc
		enr, stopEnrich, err = newEnricher(cfg)
		if err != nil {
			return err
		}
		r.closers = append(r.closers, stopEnrich)
	}
	r.hub = hub.New(hub.Config{
		SubscriberBuffer: cfg.LiveBuffer,
		OnLost:           func(n int) { m.lost.WithLabelValues("observer_events_queue").Add(float64(n)) },
		OnSubscribers:    func(n int) { m.subscribers.Set(float64(n)) },
	})
	r.nodes = nodes.New(r.nodeChanged())

	im := ingest.NewMetrics(cfg.Registry, m.lost)
	// The writer finds resends that another relay stored; they count as
	// dedup hits like the ones the ingest server recognises itself.
	if d, ok := back.(interface{ OnDedupHits(func(int)) }); ok {
		d.OnDedupHits(im.DedupHits)
	}
	hm, err := hubble.NewMetrics(cfg.Hubble.MetricsConfig(), cfg.Registry)
	if err != nil {
		return err
	}
	r.ingest = ingest.New(ingest.Config{Limits: cfg.Limits, RequireClientCert: cfg.IngestTLS.CA != "", NodeNameInCert: cfg.NodeNameInCert, Enricher: enr, NameEntries: cfg.FQDNCacheEntries, Log: cfg.Log},
		hm.Sink(back), r.hub, r.nodes, im)
	var peers observer.Peers
	if len(cfg.Peers) > 0 {
		p, err := newPeers(cfg)
		if err != nil {
			return err
		}
		peers = p
	}
	r.observer = observer.New(observer.Config{
		LiveBuffer: cfg.LiveBuffer, SeamWait: cfg.FollowSeamWait, Log: cfg.Log, Peers: peers,
		OnLost: func(n int) { m.lost.WithLabelValues("observer_events_queue").Add(float64(n)) },
	}, back, r.hub, r.nodes, r.ingest)

	if err := r.newIngestServer(); err != nil {
		return err
	}
	if err := r.newObserverServer(); err != nil {
		return err
	}
	return r.listen()
}

// nodeChanged is the node registry's callback: node status goes to the
// store (see writeNodes), and state changes (connected, unavailable) also
// go to --follow subscribers as node_status records, as Hubble's observe
// shows them.
func (r *Relay) nodeChanged() func(*flowv1.NodeStatus) {
	var stateMu sync.Mutex
	lastState := map[string]flowv1.NodeState{}
	return func(s *flowv1.NodeStatus) {
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
	}
}

// listen binds the ingest, observer and metrics listeners.
func (r *Relay) listen() error {
	var err error
	if r.ingestLis, err = net.Listen("tcp", r.cfg.IngestAddr); err != nil {
		return fmt.Errorf("ingest listener: %w", err)
	}
	if r.observerLis, err = net.Listen("tcp", r.cfg.ObserverAddr); err != nil {
		return fmt.Errorf("observer listener: %w", err)
	}
	if r.cfg.MetricsAddr != "" {
		if r.metricsLis, err = net.Listen("tcp", r.cfg.MetricsAddr); err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		r.metricsSrv = newMetricsServer(r.cfg.Registry, r.cfg.Pprof)
	}
	return nil
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
