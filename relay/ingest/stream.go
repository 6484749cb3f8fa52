package ingest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/version"
	"github.com/trawl-dev/trawl/internal/vtcodec"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/enrich"
	"github.com/trawl-dev/trawl/relay/store"
)

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
		size int           // encoded size of m when StatsHandler reported it, else -1
		slab *vtcodec.Slab // what a batch's flows were decoded into, nil otherwise
	}
	recvd := make(chan received)
	recvErr := make(chan error, 1)
	// handled: the loop is done with the last message received. The
	// receiver waits for it before decoding the next one, so a stream holds
	// one decoded batch, not two, while it waits in a full writer queue
	// (the relay's memory grows with the agents connected, not only with
	// the queue); gRPC's flow-control window holds what follows, encoded.
	handled := make(chan struct{}, 1)
	go func() {
		// Batches of one stream share their repeated strings (namespaces,
		// labels, pods): internal/vtcodec.Strings, used by this goroutine
		// only.
		strs := vtcodec.NewStrings(0)
		for {
			m := new(ingestv1.StreamRequest)
			req := &vtcodec.Request{Msg: m, Strings: strs, Slabs: s.slabs}
			if err := stream.RecvMsg(req); err != nil {
				recvErr <- err
				return
			}
			select {
			case recvd <- received{m, takeSize(ctx), req.Slab}:
			case <-ctx.Done():
				return
			}
			select {
			case <-handled:
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
			if !s.handleBatch(ctx, hello, x.Batch, batchSize(r.m, r.size), out.put) {
				s.slabs.Put(r.slab)
			}
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
		handled <- struct{}{}
	}
}

// Key is the de-duplication key of a batch.
func Key(node, boot string, seq uint64) string {
	return node + "/" + boot + "/" + strconv.FormatUint(seq, 10)
}

// handleBatch handles one batch; size is its encoded size, -1 if unknown.
// shared reports whether the hub handed the batch's records to --follow
// subscribers, who may hold them for as long as they take to read them;
// otherwise nothing reaches the batch's messages once it returns (the
// sink keeps none, see Sink), and their memory can be reused.
func (s *Server) handleBatch(ctx context.Context, hello *ingestv1.Hello, b *ingestv1.Batch, size int, send func(*ingestv1.StreamResponse)) (shared bool) {
	boot, seq := b.GetBootId(), b.GetSequence()
	if size < 0 {
		size = b.SizeVT() // the writer's queue counts it too
	}
	if err := validateBatch(b, hello, s.cfg.Limits, size); err != nil {
		s.m.batches.WithLabelValues("rejected").Inc()
		n := len(b.GetFlows()) + len(b.GetConntrack()) + len(b.GetLostEvents())
		s.m.lost.WithLabelValues("batch_rejected").Add(float64(n))
		s.log.Warn("batch rejected", "node", hello.GetNodeName(), "sequence", seq, "err", err)
		send(&ingestv1.StreamResponse{Msg: &ingestv1.StreamResponse_Nack{Nack: &ingestv1.Nack{BootId: boot, Sequence: seq, Reason: err.Error()}}})
		return false
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
		return false
	}
	if p := s.pending[key]; p != nil {
		// A resend of a batch still waiting for its insert: answer both
		// when that insert succeeds.
		p.acks = append(p.acks, answer(true))
		s.mu.Unlock()
		s.m.batches.WithLabelValues("duplicate").Inc()
		s.m.dedup.Inc()
		return false
	}
	s.pending[key] = &pendingBatch{acks: []func(){answer(false)}}
	s.mu.Unlock()

	n, records := s.prepare(node, b)
	s.m.batches.WithLabelValues("accepted").Inc()
	// The hub calls build before PublishFunc returns, or never.
	s.hub.PublishFunc(key, n, func() []*observerv1.GetFlowsResponse {
		shared = true
		return records()
	})
	sb := &store.Batch{Key: key, Flows: b.GetFlows(), Conntrack: b.GetConntrack(), Lost: b.GetLostEvents(), Bytes: size}
	s.sink.Enqueue(sb, func(err error) { s.settle(node, boot, seq, key, err) })
	return shared
}

// prepare completes, enriches and counts the records of an accepted batch.
// It returns their number as GetFlowsResponse records for the hub and a
// function building those records: the hub calls it at once, and only
// when a --follow subscriber exists, so ingest without subscribers does not
// allocate a wrapper per record.
func (s *Server) prepare(node string, b *ingestv1.Batch) (int, func() []*observerv1.GetFlowsResponse) {
	received := len(b.GetFlows())
	pv, _ := s.cfg.Enricher.(PolicyVerdicter)
	var verdicts []*flowv1.Flow
	var verdictOf []int // index of the flow each verdict derives from
	// Names from the DNS answers of the node's clients first (this batch's
	// included), so that policy-verdict records copy them.
	s.names.Batch(node, b.GetFlows())
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
	s.hub.Settled(key, err == nil) // stored, or never will be by this relay
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
