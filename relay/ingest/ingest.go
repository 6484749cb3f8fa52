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
package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/version"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
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
type Sink interface {
	Enqueue(b *store.Batch, done func(error))
}

// Config configures a Server.
type Config struct {
	Limits Limits
	// RequireClientCert rejects streams without a verified client
	// certificate (mutual TLS mode).
	RequireClientCert bool
	// NodeNameInCert additionally requires the node name of the hello to
	// be one of the certificate's DNS names or its common name, so one
	// node's certificate cannot speak for another.
	NodeNameInCert bool
	Enricher       Enricher
	Log            *slog.Logger
}

// Server implements ingestv1.IngestServiceServer.
type Server struct {
	ingestv1.UnimplementedIngestServiceServer

	cfg   Config
	sink  Sink
	hub   *hub.Hub
	nodes *nodes.Registry
	m     *Metrics
	log   *slog.Logger

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
	return &Server{
		cfg: cfg, sink: sink, hub: h, nodes: reg, m: m, log: cfg.Log.With("component", "ingest"),
		pending: map[string]*pendingBatch{}, acked: map[string]*window{}, bootsOf: map[string][]string{},
	}
}

// Stream serves one agent.
func (s *Server) Stream(stream ingestv1.IngestService_StreamServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if err := ValidateHello(hello); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	addr := ""
	if p, ok := peer.FromContext(ctx); ok {
		addr = p.Addr.String()
		if s.cfg.RequireClientCert {
			ti, ok := p.AuthInfo.(credentials.TLSInfo)
			if !ok || len(ti.State.VerifiedChains) == 0 {
				return status.Errorf(codes.Unauthenticated, "node %q: this relay requires mutual TLS; present a client certificate signed by its CA (--tls-cert/--tls-key)", hello.GetNodeName())
			}
			if s.cfg.NodeNameInCert {
				leaf := ti.State.VerifiedChains[0][0]
				if leaf.Subject.CommonName != hello.GetNodeName() && !slices.Contains(leaf.DNSNames, hello.GetNodeName()) {
					return status.Errorf(codes.PermissionDenied, "node %q: the client certificate is issued to %q %v, not to this node", hello.GetNodeName(), leaf.Subject.CommonName, leaf.DNSNames)
				}
			}
		}
	}
	node := hello.GetNodeName()
	log := s.log.With("node", node, "boot_id", hello.GetBootId(), "peer", addr)

	out := newOutbox()
	if err := stream.Send(&ingestv1.StreamResponse{Msg: &ingestv1.StreamResponse_Welcome{Welcome: &ingestv1.Welcome{
		RelayVersion: version.Version, MaxBatchBytes: uint64(s.cfg.Limits.MaxBatchBytes),
	}}}); err != nil {
		return err
	}
	s.nodes.Connect(hello, addr)
	s.m.connected.Inc()
	s.m.lastSeen.WithLabelValues(node).SetToCurrentTime()
	log.Info("agent connected")
	reason := "stream closed"
	defer func() {
		out.close()
		s.m.connected.Dec()
		s.nodes.Disconnect(node, reason)
		log.Info("agent disconnected", "reason", reason)
	}()

	// While this stream waits in a full writer queue (ClickHouse slow or
	// down) its heartbeats stay unread; that is the relay's back-pressure,
	// not a silent agent, so last-seen keeps moving meanwhile.
	var blocked atomic.Bool
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if blocked.Load() {
					s.m.lastSeen.WithLabelValues(node).SetToCurrentTime()
					s.nodes.Seen(node)
				}
			}
		}
	}()
	// The sender owns stream.Send after the welcome; acks come from the
	// writer's goroutine through the outbox.
	sendErr := make(chan error, 1)
	go func() { sendErr <- out.drain(ctx, stream.Send) }()

	type received struct {
		m    *ingestv1.StreamRequest
		size int // encoded size of m when StatsHandler reported it, else -1
	}
	recvd := make(chan received)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case recvd <- received{m, takeSize(ctx)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var r received
		select {
		case err := <-recvErr:
			reason = err.Error()
			return err
		case err := <-sendErr:
			reason = fmt.Sprintf("send: %v", err)
			return err
		case r = <-recvd:
		}
		switch x := r.m.GetMsg().(type) {
		case *ingestv1.StreamRequest_Batch:
			s.m.lastSeen.WithLabelValues(node).SetToCurrentTime()
			s.nodes.Seen(node)
			blocked.Store(true)
			s.handleBatch(ctx, hello, x.Batch, batchSize(r.m, r.size), out.put)
			blocked.Store(false)
		case *ingestv1.StreamRequest_Heartbeat:
			s.m.lastSeen.WithLabelValues(node).SetToCurrentTime()
			s.nodes.Heartbeat(node, x.Heartbeat)
		case *ingestv1.StreamRequest_Hello:
			reason = "second hello"
			return status.Error(codes.InvalidArgument, "hello may only be sent once per stream")
		default:
			reason = "empty message"
			return status.Error(codes.InvalidArgument, "stream message carries neither hello, batch nor heartbeat")
		}
	}
}

// Key is the de-duplication key of a batch.
func Key(node, boot string, seq uint64) string {
	return node + "/" + boot + "/" + strconv.FormatUint(seq, 10)
}

// handleBatch handles one batch; size is its encoded size, -1 if unknown.
func (s *Server) handleBatch(ctx context.Context, hello *ingestv1.Hello, b *ingestv1.Batch, size int, send func(*ingestv1.StreamResponse)) {
	boot, seq := b.GetBootId(), b.GetSequence()
	if err := validateBatch(b, hello, s.cfg.Limits, size); err != nil {
		s.m.batches.WithLabelValues("rejected").Inc()
		n := len(b.GetFlows()) + len(b.GetConntrack()) + len(b.GetLostEvents())
		s.m.lost.WithLabelValues("batch_rejected").Add(float64(n))
		s.log.Warn("batch rejected", "node", hello.GetNodeName(), "sequence", seq, "err", err)
		send(&ingestv1.StreamResponse{Msg: &ingestv1.StreamResponse_Nack{Nack: &ingestv1.Nack{BootId: boot, Sequence: seq, Reason: err.Error()}}})
		return
	}
	node := hello.GetNodeName()
	key := Key(node, boot, seq)
	ack := func(dup bool) *ingestv1.StreamResponse {
		return &ingestv1.StreamResponse{Msg: &ingestv1.StreamResponse_Ack{Ack: &ingestv1.Ack{BootId: boot, Sequence: seq, Duplicate: dup}}}
	}
	answer := func(dup bool) func() { return func() { send(ack(dup)) } }
	s.mu.Lock()
	if w := s.acked[node+"/"+boot]; w != nil && w.has(seq) {
		s.mu.Unlock()
		s.m.batches.WithLabelValues("duplicate").Inc()
		s.m.dedup.Inc()
		send(ack(true))
		return
	}
	if p := s.pending[key]; p != nil {
		// A resend of a batch still waiting for its insert: answer both
		// when that insert succeeds.
		p.acks = append(p.acks, answer(true))
		s.mu.Unlock()
		s.m.batches.WithLabelValues("duplicate").Inc()
		s.m.dedup.Inc()
		return
	}
	s.pending[key] = &pendingBatch{acks: []func(){answer(false)}}
	s.mu.Unlock()

	n, records := s.prepare(node, b)
	s.m.batches.WithLabelValues("accepted").Inc()
	s.hub.PublishFunc(key, n, records)
	sb := &store.Batch{Key: key, Flows: b.GetFlows(), Conntrack: b.GetConntrack(), Lost: b.GetLostEvents()}
	s.sink.Enqueue(sb, func(err error) { s.settle(node, boot, seq, key, err) })
}

// prepare completes, enriches and counts the records of an accepted batch.
// It returns their number as GetFlowsResponse records for the hub and a
// function building those records: the hub calls it only when a --follow
// subscriber needs them, so ingest without subscribers does not allocate a
// wrapper per record. After prepare nothing changes the batch's records
// (the writer and the hub only read them), so building later is the same as
// building now.
func (s *Server) prepare(node string, b *ingestv1.Batch) (int, func() []*observerv1.GetFlowsResponse) {
	received := len(b.GetFlows())
	pv, _ := s.cfg.Enricher.(PolicyVerdicter)
	var verdicts []*flowv1.Flow
	var verdictOf []int // index of the flow each verdict derives from
	for i, f := range b.GetFlows() {
		if f.Uuid == "" {
			f.Uuid = flowid.Derive(node, b.GetBootId(), b.GetSequence(), i)
		}
		f.NodeName = node
		s.cfg.Enricher.Enrich(f)
		enrich.DropFields(f) // the contract's drop fields, with or without enrichment
		s.m.countFlow(f)
		if pv != nil {
			for _, v := range pv.PolicyVerdicts(f) {
				verdicts = append(verdicts, v)
				verdictOf = append(verdictOf, i)
			}
		}
	}
	// Stored with the batch: a resend derives the same records (their uuids
	// come from the flows'), so de-duplication still holds.
	b.Flows = append(b.Flows, verdicts...)
	for _, c := range b.GetConntrack() {
		c.NodeName = node
		s.cfg.Enricher.EnrichConntrack(c)
		s.nodes.Conntrack(c)
	}
	for _, l := range b.GetLostEvents() {
		l.NodeName = node
		if l.Time == nil {
			l.Time = timestamppb.Now()
		}
		s.m.lost.WithLabelValues(lostCause(l.GetSource())).Add(float64(l.GetNumEventsLost()))
	}
	n := len(b.GetFlows()) + len(b.GetConntrack()) + len(b.GetLostEvents())
	s.m.records.WithLabelValues("flow").Add(float64(received))
	s.m.records.WithLabelValues("conntrack").Add(float64(len(b.GetConntrack())))
	s.m.records.WithLabelValues("lost_events").Add(float64(len(b.GetLostEvents())))
	s.m.batchRecords.Observe(float64(n))
	s.rate.add(received)

	flows, ct, lost := b.GetFlows()[:received], b.GetConntrack(), b.GetLostEvents()
	return n, func() []*observerv1.GetFlowsResponse {
		// Each flow is followed by its policy verdict, then conntrack
		// samples, then lost events.
		recs := make([]*observerv1.GetFlowsResponse, 0, n)
		j := 0
		for i, f := range flows {
			recs = append(recs, &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}, NodeName: node, Time: f.GetTime()})
			for ; j < len(verdicts) && verdictOf[j] == i; j++ {
				v := verdicts[j]
				recs = append(recs, &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: v}, NodeName: node, Time: v.GetTime()})
			}
		}
		for _, c := range ct {
			recs = append(recs, &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Conntrack{Conntrack: c}, NodeName: node, Time: c.GetTime()})
		}
		for _, l := range lost {
			recs = append(recs, &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_LostEvents{LostEvents: l}, NodeName: node, Time: l.GetTime()})
		}
		return recs
	}
}

// settle is the writer's verdict on a batch.
func (s *Server) settle(node, boot string, seq uint64, key string, err error) {
	s.mu.Lock()
	p := s.pending[key]
	delete(s.pending, key)
	if err == nil {
		s.ackedWindow(node, boot).add(seq)
	}
	s.mu.Unlock()
	s.hub.Stored(key) // stored, or never will be by this relay: forget it
	if err != nil {
		// Not stored (the writer stopped): no answer. The agent resends
		// the batch after it reconnects, here or to another replica.
		s.log.Debug("batch not stored", "key", key, "err", err)
		return
	}
	s.m.lastInsert.Store(time.Now().UnixNano())
	if p == nil {
		return
	}
	for _, a := range p.acks {
		a()
	}
}

// ackedWindow returns the acked-sequence window of a node's boot, keeping
// the windows of the last few boots per node. Call with s.mu held.
func (s *Server) ackedWindow(node, boot string) *window {
	k := node + "/" + boot
	w := s.acked[k]
	if w == nil {
		w = &window{above: map[uint64]struct{}{}}
		s.acked[k] = w
		boots := append(s.bootsOf[node], k)
		if len(boots) > 4 {
			delete(s.acked, boots[0])
			boots = boots[1:]
		}
		s.bootsOf[node] = boots
	}
	return w
}

// window holds the acknowledged sequences of one boot: all up to through,
// plus those above it (out of order or after a gap).
type window struct {
	through uint64
	above   map[uint64]struct{}
}

// maxAbove bounds a window. Agents keep at most a few dozen batches in
// flight, so a gap older than this many acks is a batch the agent dropped
// and will never resend.
const maxAbove = 4096

func (w *window) has(seq uint64) bool {
	if seq <= w.through {
		return true
	}
	_, ok := w.above[seq]
	return ok
}

func (w *window) add(seq uint64) {
	if seq <= w.through {
		return
	}
	w.above[seq] = struct{}{}
	for {
		if _, ok := w.above[w.through+1]; !ok {
			break
		}
		delete(w.above, w.through+1)
		w.through++
	}
	if len(w.above) > maxAbove {
		lo := ^uint64(0)
		for q := range w.above {
			lo = min(lo, q)
		}
		w.through = lo - 1
		w.add(lo) // advance through the now-contiguous run
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

func lostCause(src flowv1.LostEventSource) string {
	switch src {
	case flowv1.LostEventSource_RINGBUF_RESERVE_FAILED:
		return "ringbuf_reserve_failed"
	case flowv1.LostEventSource_RATE_LIMITED:
		return "rate_limited"
	case flowv1.LostEventSource_MAP_FULL:
		return "map_full"
	case flowv1.LostEventSource_AGENT_BUFFER_OVERFLOW:
		return "buffer_overflow"
	case flowv1.LostEventSource_BATCH_REJECTED:
		return "agent_batch_rejected"
	case flowv1.LostEventSource_MALFORMED_PACKET:
		return "malformed_packet"
	case flowv1.LostEventSource_OBSERVER_EVENTS_QUEUE:
		return "observer_events_queue"
	}
	return "unknown"
}

// outbox queues responses for one stream without ever blocking the writer
// that produces acks.
type outbox struct {
	mu     sync.Mutex
	q      []*ingestv1.StreamResponse
	closed bool
	signal chan struct{}
}

func newOutbox() *outbox { return &outbox{signal: make(chan struct{}, 1)} }

func (o *outbox) put(r *ingestv1.StreamResponse) {
	o.mu.Lock()
	if !o.closed {
		o.q = append(o.q, r)
	}
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

func (o *outbox) close() {
	o.mu.Lock()
	o.closed, o.q = true, nil
	o.mu.Unlock()
}

func (o *outbox) drain(ctx context.Context, send func(*ingestv1.StreamResponse) error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-o.signal:
		}
		o.mu.Lock()
		q := o.q
		o.q = nil
		o.mu.Unlock()
		for _, r := range q {
			if err := send(r); err != nil {
				return err
			}
		}
	}
}

// rateMeter counts flows per second over a sliding minute.
type rateMeter struct {
	mu    sync.Mutex
	secs  [60]uint64
	stamp [60]int64
	all   uint64
}

func (r *rateMeter) add(n int) {
	now := time.Now().Unix()
	r.mu.Lock()
	i := now % 60
	if r.stamp[i] != now {
		r.stamp[i], r.secs[i] = now, 0
	}
	r.secs[i] += uint64(n)
	r.all += uint64(n)
	r.mu.Unlock()
}

func (r *rateMeter) total() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all
}

func (r *rateMeter) perSecond() float64 {
	now := time.Now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	var sum uint64
	for i := range r.secs {
		if now-r.stamp[i] < 60 {
			sum += r.secs[i]
		}
	}
	return float64(sum) / 60
}

// Metrics are the ingest side's Prometheus metrics.
type Metrics struct {
	records      *prometheus.CounterVec
	batches      *prometheus.CounterVec
	batchRecords prometheus.Histogram
	dedup        prometheus.Counter
	lost         *prometheus.CounterVec
	connected    prometheus.Gauge
	lastSeen     *prometheus.GaugeVec
	flows        *prometheus.CounterVec
	drops        *prometheus.CounterVec
	policyDrops  *prometheus.CounterVec
	lastInsert   atomic.Int64
	// flowCounters caches trawl_relay_flows_total children by
	// [direction][verdict] enum value: the label lookup runs per flow.
	flowCounters [3][8]prometheus.Counter
}

// DedupHits counts batches found already stored by the writer.
func (m *Metrics) DedupHits(batches int) { m.dedup.Add(float64(batches)) }

// NewMetrics creates and registers the ingest metrics. lost is the relay's
// trawl_relay_lost_events_total (shared with the observer).
func NewMetrics(reg prometheus.Registerer, lost *prometheus.CounterVec) *Metrics {
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_ingest_records_total", Help: "Records received from agents."}, []string{"kind"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_ingest_batches_total", Help: "Batches received, by result."}, []string{"result"}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "trawl_relay_batch_records", Help: "Records per received batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		dedup:       prometheus.NewCounter(prometheus.CounterOpts{Name: "trawl_relay_dedup_hits_total", Help: "Resent batches recognised as already stored or pending."}),
		lost:        lost,
		connected:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "trawl_relay_connected_agents", Help: "Agents with an open stream."}),
		lastSeen:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "trawl_relay_agent_last_seen_timestamp_seconds", Help: "Last heartbeat or batch of each agent."}, []string{"node"}),
		flows:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_flows_total", Help: "Aggregated flow records ingested."}, []string{"direction", "verdict"}),
		drops:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_drops_total", Help: "Dropped packets after policy attribution, by drop_reason_desc and drop class."}, []string{"reason", "drop_class"}),
		policyDrops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_policy_drops_total", Help: "Dropped packets attributed to a denying policy."}, []string{"namespace", "policy"}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.batches, m.batchRecords, m.dedup, m.connected, m.lastSeen, m.flows, m.drops, m.policyDrops)
	}
	for d := range m.flowCounters {
		for v := range m.flowCounters[d] {
			m.flowCounters[d][v] = m.flows.WithLabelValues(directionLabel(flowv1.TrafficDirection(d)), verdictLabel(flowv1.Verdict(v)))
		}
	}
	for _, k := range []string{"flow", "conntrack", "lost_events"} {
		m.records.WithLabelValues(k)
	}
	for _, r := range []string{"accepted", "duplicate", "rejected"} {
		m.batches.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) countFlow(f *flowv1.Flow) {
	switch f.GetEventKind() {
	case flowv1.EventKind_AGGREGATE:
		d, v := f.GetTrafficDirection(), f.GetVerdict()
		if int(d) < len(m.flowCounters) && int(v) < len(m.flowCounters[0]) {
			m.flowCounters[d][v].Inc()
		} else {
			m.flows.WithLabelValues(directionLabel(d), verdictLabel(v)).Inc()
		}
	case flowv1.EventKind_DROP:
		reason := f.GetDropReasonDesc()
		if reason == "" {
			reason = f.GetDropReasonKernel()
		}
		if reason == "" {
			reason = "unknown"
		}
		class := f.GetDropClass()
		if class == "" {
			class = string(dropclass.Of(reason))
		}
		pk := float64(max(f.GetPackets(), 1))
		m.drops.WithLabelValues(reason, class).Add(pk)
		seen := map[string]bool{}
		for _, p := range append(f.GetIngressDeniedBy(), f.GetEgressDeniedBy()...) {
			k := p.GetNamespace() + "/" + p.GetName()
			if seen[k] {
				continue
			}
			seen[k] = true
			m.policyDrops.WithLabelValues(p.GetNamespace(), p.GetName()).Add(pk)
		}
	}
}

func directionLabel(d flowv1.TrafficDirection) string {
	switch d {
	case flowv1.TrafficDirection_INGRESS:
		return "ingress"
	case flowv1.TrafficDirection_EGRESS:
		return "egress"
	}
	return "unknown"
}

func verdictLabel(v flowv1.Verdict) string {
	switch v {
	case flowv1.Verdict_FORWARDED:
		return "forwarded"
	case flowv1.Verdict_DROPPED:
		return "dropped"
	case flowv1.Verdict_ERROR:
		return "error"
	case flowv1.Verdict_AUDIT:
		return "audit"
	case flowv1.Verdict_REDIRECTED:
		return "redirected"
	case flowv1.Verdict_TRACED:
		return "traced"
	case flowv1.Verdict_TRANSLATED:
		return "translated"
	}
	return "unknown"
}
