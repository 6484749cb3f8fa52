package ingest_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/internal/vtcodec"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/hub"
	"github.com/trawl-dev/trawl/relay/ingest"
	"github.com/trawl-dev/trawl/relay/nodes"
	"github.com/trawl-dev/trawl/relay/store"
)

// Decoded batches are reused once stored (recycle in stream.go). These tests
// send many small batches through a real gRPC stream, so that later batches
// decode into the records of earlier ones, and check that nothing anyone
// still holds changes meanwhile.

// serve runs an ingest server on sink and h and returns its address.
func serve(t *testing.T, cfg ingest.Config, sink ingest.Sink, h *hub.Hub) (string, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	lost := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_lost_events_total"}, []string{"cause"})
	srv := ingest.New(cfg, sink, h, nodes.New(nil), ingest.NewMetrics(reg, lost))
	g := grpc.NewServer(grpc.ForceServerCodecV2(vtcodec.Codec{}))
	ingestv1.RegisterIngestServiceServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String(), reg
}

// shipBatches sends n flows in batches of 3 and waits until all are acked.
func shipBatches(t *testing.T, addr string, from, n int) {
	t.Helper()
	s, _ := startShipper(t, addr, shipper.Config{BatchRecords: 3, FlushInterval: time.Hour})
	for i := from; i < from+n; i++ {
		s.Publish(testFlow(i))
	}
	s.Flush()
	waitFor(t, "every batch acknowledged", 10*time.Second, func() bool { q, _ := s.Stats(); return q == 0 })
}

// holdFirstSink keeps the first batch it gets without calling done (an
// insert still running) and stores the others at once.
type holdFirstSink struct {
	mu    sync.Mutex
	first *store.Batch
	snap  []*flowv1.Flow
	done  func(error)
	n     int
}

func (s *holdFirstSink) Enqueue(b *store.Batch, done func(error)) {
	s.mu.Lock()
	s.n++
	if s.first == nil {
		s.first, s.done = b, done
		for _, f := range b.Flows {
			s.snap = append(s.snap, f.CloneVT())
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	done(nil)
}

func TestABatchIsNotReusedWhileTheWriterHoldsIt(t *testing.T) {
	sink := &holdFirstSink{}
	addr, _ := serve(t, ingest.Config{}, sink, hub.New(hub.Config{}))
	s, _ := startShipper(t, addr, shipper.Config{BatchRecords: 3, FlushInterval: time.Hour})
	for i := range 300 {
		s.Publish(testFlow(i))
	}
	s.Flush()
	waitFor(t, "every batch handed to the writer", 10*time.Second, func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return sink.n == 100 })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.first.Flows) != len(sink.snap) {
		t.Fatalf("the held batch has %d flows, had %d when enqueued", len(sink.first.Flows), len(sink.snap))
	}
	for i, f := range sink.first.Flows {
		if !proto.Equal(f, sink.snap[i]) {
			t.Fatalf("flow %d of the batch the writer still holds changed while later batches were decoded:\n%v\nwas\n%v", i, f, sink.snap[i])
		}
	}
	sink.done(nil)
}

func TestRecordsAFollowSubscriberReceivedNeverChange(t *testing.T) {
	h := hub.New(hub.Config{SubscriberBuffer: 1000})
	addr, _ := serve(t, ingest.Config{}, newMemSink(), h)
	sub, _ := h.Subscribe(nil, 0)
	shipBatches(t, addr, 0, 90)
	var got []*observerv1.GetFlowsResponse
	for len(got) < 90 {
		select {
		case r := <-sub.C():
			got = append(got, r)
		case <-time.After(10 * time.Second):
			t.Fatalf("the subscriber got %d of 90 records", len(got))
		}
	}
	sub.Close()
	// Without subscribers these batches' records are reused: they must not
	// be decoded into the ones the subscriber holds.
	shipBatches(t, addr, 1000, 300)
	for i, r := range got {
		want := testFlow(i).GetFlow()
		if f := r.GetFlow(); f.GetPackets() != want.GetPackets() || f.GetIP().GetDestination() != want.GetIP().GetDestination() {
			t.Fatalf("record %d that a subscriber received changed after its batch was stored:\n%v\nwant packets %d, destination %s",
				i, f, want.GetPackets(), want.GetIP().GetDestination())
		}
	}
}

// sharingEnricher gives every flow the same values, as relay/enrich does
// from its caches (endpoints, services, policies) and the names cache.
type sharingEnricher struct {
	ep       *flowv1.Endpoint
	svc      *flowv1.Service
	policies []*flowv1.Policy
	names    []string
}

func (e *sharingEnricher) Enrich(f *flowv1.Flow) {
	f.Source, f.DestinationService = e.ep, e.svc
	f.EgressAllowedBy, f.IngressDeniedBy = e.policies, e.policies
	f.DestinationNames = e.names
}

func (e *sharingEnricher) EnrichConntrack(*flowv1.ConntrackSample) {}

func TestSharedEnrichmentSurvivesTheReuseOfBatches(t *testing.T) {
	e := &sharingEnricher{
		ep:       &flowv1.Endpoint{Namespace: "team-a", PodName: "web-1", Labels: []string{"k8s:app=web"}, Workloads: []*flowv1.Workload{{Name: "web", Kind: "Deployment"}}},
		svc:      &flowv1.Service{Name: "web", Namespace: "team-a"},
		policies: []*flowv1.Policy{{Name: "allow-web", Namespace: "team-a", Kind: "NetworkPolicy"}},
		names:    []string{"web.example.com"},
	}
	want := &sharingEnricher{ep: e.ep.CloneVT(), svc: e.svc.CloneVT(), policies: []*flowv1.Policy{e.policies[0].CloneVT()}, names: []string{e.names[0]}}
	sink := newMemSink()
	addr, _ := serve(t, ingest.Config{Enricher: e}, sink, hub.New(hub.Config{}))
	shipBatches(t, addr, 0, 300)
	if !proto.Equal(e.ep, want.ep) || !proto.Equal(e.svc, want.svc) || len(e.policies) != 1 || !proto.Equal(e.policies[0], want.policies[0]) ||
		len(e.names) != 1 || e.names[0] != want.names[0] {
		t.Fatalf("the enrichment's shared values changed: %v %v %v %v", e.ep, e.svc, e.policies, e.names)
	}
	for _, f := range sink.flows() {
		if !proto.Equal(f.GetSource(), want.ep) || f.GetDestinationNames()[0] != "web.example.com" {
			t.Fatalf("a stored flow lost its enrichment: %v", f)
		}
	}
}
