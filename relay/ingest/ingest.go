// Package ingest is the relay's end of the agent → relay stream
// (trawl.ingest.v1.IngestService). For each batch it validates, fills in
// missing flow ids, enriches, publishes to the live hub, hands the batch to
// the ClickHouse writer, and acknowledges it only once the writer reports
// the insert containing it succeeded. While ClickHouse is down the hub keeps
// serving live follow and acks stop, which holds the agents' buffers
// (back-pressure) until the writer catches up.
//
// Resends are de-duplicated by (node, boot id, sequence): a batch this relay
// already acknowledged is acked again as a duplicate without being stored; a
// batch still waiting for its insert gets the resend's ack attached. Across
// relay replicas or restarts the store's writer recognises batches already
// stored (relay/store: the batches table, checked before every insert) and
// acknowledges them without storing them again.
//
// Files: config.go (Config, Limits, DefaultConfiguration), stream.go (the
// stream protocol: hello, batches, acks), dedup.go (the acked-sequence
// window), outbox.go (responses to one stream), validate.go, size.go (batch
// sizes from gRPC's stats), rate.go (flows per second for ServerStatus),
// metrics.go (metrics and their label tables).
package ingest

import (
	"log/slog"
	"sync"
	"time"

	"github.com/trawl-dev/trawl/internal/vtcodec"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	"github.com/trawl-dev/trawl/relay/enrich"
	"github.com/trawl-dev/trawl/relay/hub"
	"github.com/trawl-dev/trawl/relay/nodes"
	"github.com/trawl-dev/trawl/relay/store"
)

// Enricher adds Kubernetes metadata and policy attribution to records in
// place. relay/enrich implements it; the default does nothing.
type Enricher interface {
	Enrich(f *flowv1.Flow)
	EnrichConntrack(s *flowv1.ConntrackSample)
}

// PolicyVerdicter is an Enricher that also derives policy-verdict records
// (event kind POLICY_VERDICT) from enriched flows, like Hubble's
// PolicyVerdict events. They are stored and streamed beside the flow they
// come from, never added to totals.
type PolicyVerdicter interface {
	PolicyVerdicts(f *flowv1.Flow) []*flowv1.Flow
}

// NopEnricher leaves records as they are.
type NopEnricher struct{}

// Enrich does nothing.
func (NopEnricher) Enrich(*flowv1.Flow) {}

// EnrichConntrack does nothing.
func (NopEnricher) EnrichConntrack(*flowv1.ConntrackSample) {}

// Sink stores batches. done(nil) must be called only after the insert
// containing the batch succeeded; done(err) means it was not stored (the
// writer stopped) and is not answered: the agent resends after reconnecting.
// The batch is the store's type (store.Batch): ingest hands the writer what
// it stores, with no conversion.
//
// Enqueue must not keep b.Flows, or anything they point to, once it
// returns (copy what is kept, as the store's Writer does into its
// columns): ingest then reuses their memory for later batches
// (internal/vtcodec.Slabs). Strings taken from them stay valid; the
// conntrack samples and lost events may be kept.
type Sink interface {
	Enqueue(b *store.Batch, done func(error))
}

// Server implements ingestv1.IngestServiceServer. Register it on a gRPC
// server with grpc.ForceServerCodecV2(vtcodec.Codec{}): Stream receives
// into vtcodec.Request (batches decoded with the stream's string table),
// which only that codec decodes.
type Server struct {
	ingestv1.UnimplementedIngestServiceServer

	cfg   Config
	sink  Sink
	hub   *hub.Hub
	nodes *nodes.Registry
	m     *Metrics
	log   *slog.Logger
	names *enrich.Names  // nil: naming off
	slabs *vtcodec.Slabs // decode memory, recycled across batches and streams

	mu      sync.Mutex
	pending map[string]*pendingBatch // key → waiting for the insert
	acked   map[string]*window       // "node/boot" → acked sequences
	bootsOf map[string][]string      // node → its boot keys, oldest first

	rate rateMeter
}

type pendingBatch struct {
	// acks answer each stream that sent this batch once it is stored.
	acks []func()
}

// New returns a server writing to sink and publishing to h.
func New(cfg Config, sink Sink, h *hub.Hub, reg *nodes.Registry, m *Metrics) *Server {
	cfg.Limits.setDefaults()
	if cfg.Enricher == nil {
		cfg.Enricher = NopEnricher{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	var names *enrich.Names
	if cfg.NameEntries >= 0 {
		names = enrich.NewNames(cfg.NameEntries)
	}
	return &Server{
		cfg: cfg, sink: sink, hub: h, nodes: reg, m: m, log: cfg.Log.With("component", "ingest"), names: names, slabs: vtcodec.NewSlabs(0),
		pending: map[string]*pendingBatch{}, acked: map[string]*window{}, bootsOf: map[string][]string{},
	}
}

// SeenFlows is the number of flows ingested since start.
func (s *Server) SeenFlows() uint64 { return s.rate.total() }

// FlowsRate is flows per second over the last minute.
func (s *Server) FlowsRate() float64 { return s.rate.perSecond() }

// LastInsert is when an insert last succeeded (zero before the first).
func (s *Server) LastInsert() time.Time {
	n := s.m.lastInsert.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
