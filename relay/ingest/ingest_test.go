package ingest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/agent/shipper/shippertest"
	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/vtcodec"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/hub"
	"github.com/trawl-dev/trawl/relay/ingest"
	"github.com/trawl-dev/trawl/relay/nodes"
	"github.com/trawl-dev/trawl/relay/store"
)

// memSink stores batches in memory and, like ClickHouse with
// insert_deduplication_token, stores a key only once. While held it
// queues inserts (ClickHouse down). It keeps copies of the flows, as the
// store's Writer keeps columns (Sink: ingest reuses the flows' memory).
type memSink struct {
	mu       sync.Mutex
	stored   map[string]*store.Batch
	enqueues int
	hold     bool
	held     []func()
}

func newMemSink() *memSink { return &memSink{stored: map[string]*store.Batch{}} }

func (m *memSink) Enqueue(b *store.Batch, done func(error)) {
	kept := *b
	kept.Flows = make([]*flowv1.Flow, len(b.Flows))
	for i, f := range b.Flows {
		kept.Flows[i] = proto.Clone(f).(*flowv1.Flow)
	}
	b = &kept
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enqueues++
	insert := func() {
		m.mu.Lock()
		if _, ok := m.stored[b.Key]; !ok {
			m.stored[b.Key] = b
		}
		m.mu.Unlock()
		done(nil)
	}
	if m.hold {
		m.held = append(m.held, insert)
		return
	}
	m.mu.Unlock()
	insert()
	m.mu.Lock()
}

func (m *memSink) release() {
	m.mu.Lock()
	m.hold = false
	held := m.held
	m.held = nil
	m.mu.Unlock()
	for _, f := range held {
		f()
	}
}

func (m *memSink) flows() map[string]*flowv1.Flow {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]*flowv1.Flow{}
	for _, b := range m.stored {
		for _, f := range b.Flows {
			out[f.GetUuid()] = f
		}
	}
	return out
}

func (m *memSink) lost() (n uint64, src []flowv1.LostEventSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.stored {
		for _, l := range b.Lost {
			n += l.GetNumEventsLost()
			src = append(src, l.GetSource())
		}
	}
	return n, src
}

// proxy forwards TCP connections and can cut them all, like a network fault.
type proxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, target: target}
	t.Cleanup(func() { lis.Close(); p.cut() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

type bed struct {
	sink *memSink
	hub  *hub.Hub
	srv  *ingest.Server
	addr string
	reg  *prometheus.Registry
}

func startRelay(t *testing.T, cfg ingest.Config, opts ...grpc.ServerOption) *bed {
	t.Helper()
	b := &bed{sink: newMemSink(), hub: hub.New(hub.Config{}), reg: prometheus.NewRegistry()}
	lost := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_lost_events_total"}, []string{"cause"})
	b.reg.MustRegister(lost)
	b.srv = ingest.New(cfg, b.sink, b.hub, nodes.New(nil), ingest.NewMetrics(b.reg, lost))
	g := grpc.NewServer(append(opts, grpc.ForceServerCodecV2(vtcodec.Codec{}))...)
	ingestv1.RegisterIngestServiceServer(g, b.srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	b.addr = lis.Addr().String()
	return b
}

func startShipper(t *testing.T, addr string, cfg shipper.Config) (*shipper.Shipper, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return shippertest.Start(t, addr, cfg, reg), reg
}

func testFlow(i int) *observerv1.GetFlowsResponse {
	return &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{
		Time:      timestamppb.New(time.Unix(1_700_000_000, int64(i))),
		Verdict:   flowv1.Verdict_FORWARDED,
		EventKind: flowv1.EventKind_AGGREGATE,
		IP:        &flowv1.IP{Source: "10.0.0.1", Destination: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), IpVersion: flowv1.IPVersion_IPv4},
		Packets:   uint64(i + 1),
		Bytes:     uint64(100 * (i + 1)),
	}}}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShippedFlowsAreStoredExactlyOnceWithDerivedIDs(t *testing.T) {
	b := startRelay(t, ingest.Config{})
	// Batches close only when full (or at the explicit Flush), so the
	// sequence and index of each record are known.
	s, _ := startShipper(t, b.addr, shipper.Config{BatchRecords: 7, FlushInterval: time.Hour})
	const n = 100
	for i := range n {
		s.Publish(testFlow(i))
	}
	s.Flush()
	waitFor(t, "all flows stored", 10*time.Second, func() bool { return len(b.sink.flows()) == n })
	waitFor(t, "all batches acked", 10*time.Second, func() bool { q, _ := s.Stats(); return q == 0 })
	got := b.sink.flows()
	for i := range n {
		seq, idx := uint64(i/7+1), i%7
		id := flowid.Derive("node-a", s.BootID(), seq, idx)
		f, ok := got[id]
		if !ok {
			t.Fatalf("flow %d (uuid %s) not stored", i, id)
		}
		want := testFlow(i).GetFlow()
		want.Uuid, want.NodeName = id, "node-a"
		if !proto.Equal(f, want) {
			t.Errorf("flow %d stored as %v, want %v", i, f, want)
		}
	}
}

func TestStreamCutWhileInsertsArePendingStoresEachBatchOnce(t *testing.T) {
	b := startRelay(t, ingest.Config{})
	b.sink.mu.Lock()
	b.sink.hold = true // ClickHouse slow: nothing acked yet
	b.sink.mu.Unlock()
	p := newProxy(t, b.addr)
	s, reg := startShipper(t, p.addr(), shipper.Config{BatchRecords: 10})
	const n = 200
	for i := range n {
		s.Publish(testFlow(i))
	}
	s.Flush()
	waitFor(t, "batches enqueued", 10*time.Second, func() bool { b.sink.mu.Lock(); defer b.sink.mu.Unlock(); return len(b.sink.held) > 0 })
	p.cut() // the stream breaks with every batch unacked
	waitFor(t, "resends", 15*time.Second, func() bool {
		return metricSum(t, reg, "trawl_agent_batches_sent_total") > float64(n/10)
	})
	b.sink.release()
	waitFor(t, "all batches acked", 15*time.Second, func() bool { q, _ := s.Stats(); return q == 0 })
	if got := len(b.sink.flows()); got != n {
		t.Fatalf("stored %d flows, want %d", got, n)
	}
	b.sink.mu.Lock()
	enq := b.sink.enqueues
	b.sink.mu.Unlock()
	if enq != n/10 {
		t.Errorf("the writer received %d batches, want %d: resends of pending batches must not be written again", enq, n/10)
	}
}

func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func lostValue(t *testing.T, reg *prometheus.Registry, cause string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "trawl_agent_lost_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cause" && l.GetValue() == cause {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestFullBufferDropsOldestAndReportsExactlyTheLostRecords(t *testing.T) {
	b := startRelay(t, ingest.Config{})
	b.sink.mu.Lock()
	b.sink.hold = true
	b.sink.mu.Unlock()
	one := proto.Size(&ingestv1.Batch{Flows: []*flowv1.Flow{testFlow(0).GetFlow()}})
	s, reg := startShipper(t, b.addr, shipper.Config{BatchRecords: 10, BufferBytes: 40 * one, MaxInflight: 2})
	const n = 300
	for i := range n {
		s.Publish(testFlow(i))
	}
	s.Flush()
	waitFor(t, "overflow counted", 5*time.Second, func() bool { return lostValue(t, reg, "buffer_overflow") > 0 })
	b.sink.release()
	waitFor(t, "buffer drained", 15*time.Second, func() bool { q, _ := s.Stats(); return q == 0 })
	dropped := lostValue(t, reg, "buffer_overflow")
	waitFor(t, "lost event stored", 10*time.Second, func() bool { n, _ := b.sink.lost(); return n > 0 })
	lost, srcs := b.sink.lost()
	stored := len(b.sink.flows())
	if uint64(dropped) != lost {
		t.Errorf("agent counted %v records dropped but reported %d to the relay", dropped, lost)
	}
	if stored+int(lost) != n {
		t.Errorf("stored %d + lost %d = %d, want every one of %d records accounted for", stored, lost, stored+int(lost), n)
	}
	for _, s := range srcs {
		if s != flowv1.LostEventSource_AGENT_BUFFER_OVERFLOW {
			t.Errorf("lost event source %v, want AGENT_BUFFER_OVERFLOW", s)
		}
	}
}

func TestProtocolViolationsGetClearErrorsAndChangeNothing(t *testing.T) {
	hello := &ingestv1.Hello{NodeName: "node-a", BootId: "boot1"}
	goodFlow := testFlow(1).GetFlow()
	tests := []struct {
		name     string
		msgs     []*ingestv1.StreamRequest
		wantCode codes.Code // stream error, or OK when a Nack is expected
		wantNack string
	}{
		{name: "a batch before hello is refused",
			msgs:     []*ingestv1.StreamRequest{{Msg: &ingestv1.StreamRequest_Batch{Batch: &ingestv1.Batch{NodeName: "node-a", BootId: "b", Sequence: 1, Flows: []*flowv1.Flow{goodFlow}}}}},
			wantCode: codes.InvalidArgument},
		{name: "a hello with a bad node name is refused",
			msgs:     []*ingestv1.StreamRequest{{Msg: &ingestv1.StreamRequest_Hello{Hello: &ingestv1.Hello{NodeName: "Bad Name'; DROP TABLE flows", BootId: "b"}}}},
			wantCode: codes.InvalidArgument},
		{name: "an empty message is refused",
			msgs:     []*ingestv1.StreamRequest{{Msg: &ingestv1.StreamRequest_Hello{Hello: hello}}, {}},
			wantCode: codes.InvalidArgument},
		{name: "a batch for another node is rejected",
			msgs:     []*ingestv1.StreamRequest{{Msg: &ingestv1.StreamRequest_Hello{Hello: hello}}, {Msg: &ingestv1.StreamRequest_Batch{Batch: &ingestv1.Batch{NodeName: "node-b", BootId: "boot1", Sequence: 1, Flows: []*flowv1.Flow{goodFlow}}}}},
			wantNack: "node-b"},
		{name: "a flow without time is rejected",
			msgs:     []*ingestv1.StreamRequest{{Msg: &ingestv1.StreamRequest_Hello{Hello: hello}}, {Msg: &ingestv1.StreamRequest_Batch{Batch: &ingestv1.Batch{NodeName: "node-a", BootId: "boot1", Sequence: 1, Flows: []*flowv1.Flow{{}}}}}},
			wantNack: "time"},
		{name: "an oversized batch is rejected",
			msgs: []*ingestv1.StreamRequest{{Msg: &ingestv1.StreamRequest_Hello{Hello: hello}}, {Msg: &ingestv1.StreamRequest_Batch{Batch: &ingestv1.Batch{NodeName: "node-a", BootId: "boot1", Sequence: 1,
				Flows: func() (fs []*flowv1.Flow) {
					for i := range 200 {
						fs = append(fs, testFlow(i).GetFlow())
					}
					return fs
				}()}}}},
			wantNack: "over the relay's limit"},
		{name: "sequence zero is rejected",
			msgs:     []*ingestv1.StreamRequest{{Msg: &ingestv1.StreamRequest_Hello{Hello: hello}}, {Msg: &ingestv1.StreamRequest_Batch{Batch: &ingestv1.Batch{NodeName: "node-a", BootId: "boot1", Flows: []*flowv1.Flow{goodFlow}}}}},
			wantNack: "sequence"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startRelay(t, ingest.Config{Limits: ingest.Limits{MaxBatchBytes: 4096}})
			conn, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := ingestv1.NewIngestServiceClient(conn).Stream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.msgs {
				if err := st.Send(m); err != nil {
					break
				}
			}
			for {
				resp, err := st.Recv()
				if err != nil {
					if tc.wantNack != "" {
						t.Fatalf("stream ended with %v, want a Nack", err)
					}
					if status.Code(err) != tc.wantCode {
						t.Fatalf("stream error %v, want code %v", err, tc.wantCode)
					}
					if status.Convert(err).Message() == "" {
						t.Fatal("error has no message")
					}
					break
				}
				if n := resp.GetNack(); n != nil {
					if tc.wantNack == "" {
						t.Fatalf("got Nack %q, want stream error %v", n.GetReason(), tc.wantCode)
					}
					if !containsFold(n.GetReason(), tc.wantNack) {
						t.Errorf("Nack reason %q does not mention %q", n.GetReason(), tc.wantNack)
					}
					break
				}
				if resp.GetAck() != nil {
					t.Fatal("a bad batch was acknowledged")
				}
			}
			b.sink.mu.Lock()
			defer b.sink.mu.Unlock()
			if b.sink.enqueues != 0 {
				t.Errorf("%d batches reached the writer, want none", b.sink.enqueues)
			}
		})
	}
}

func TestTheBatchByteLimitIsExactWhetherGRPCReportsSizesOrNot(t *testing.T) {
	hello := &ingestv1.Hello{NodeName: "node-a", BootId: "boot1"}
	batch := &ingestv1.Batch{NodeName: "node-a", BootId: "boot1", Sequence: 1}
	for i := range 20 {
		batch.Flows = append(batch.Flows, testFlow(i).GetFlow())
	}
	size := proto.Size(batch)
	for _, tc := range []struct {
		name    string
		opts    []grpc.ServerOption
		limit   int
		wantAck bool
	}{
		{"a batch of exactly the limit is accepted (sizes from gRPC)", []grpc.ServerOption{grpc.StatsHandler(ingest.StatsHandler())}, size, true},
		{"a batch one byte over the limit is rejected (sizes from gRPC)", []grpc.ServerOption{grpc.StatsHandler(ingest.StatsHandler())}, size - 1, false},
		{"a batch of exactly the limit is accepted (sizes computed)", nil, size, true},
		{"a batch one byte over the limit is rejected (sizes computed)", nil, size - 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startRelay(t, ingest.Config{Limits: ingest.Limits{MaxBatchBytes: tc.limit}}, tc.opts...)
			conn, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := ingestv1.NewIngestServiceClient(conn).Stream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []*ingestv1.StreamRequest{{Msg: &ingestv1.StreamRequest_Hello{Hello: hello}}, {Msg: &ingestv1.StreamRequest_Batch{Batch: batch}}} {
				if err := st.Send(m); err != nil {
					t.Fatal(err)
				}
			}
			for {
				resp, err := st.Recv()
				if err != nil {
					t.Fatalf("stream ended with %v before an answer to the batch", err)
				}
				if resp.GetWelcome() != nil {
					continue
				}
				if got := resp.GetAck() != nil; got != tc.wantAck {
					t.Fatalf("batch of %d bytes with limit %d: got %v, want ack=%v", size, tc.limit, resp, tc.wantAck)
				}
				if !tc.wantAck && !containsFold(resp.GetNack().GetReason(), fmt.Sprintf("is %d bytes", size)) {
					t.Errorf("Nack reason %q does not give the batch's size %d", resp.GetNack().GetReason(), size)
				}
				return
			}
		})
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func TestRejectedBatchesAreCountedLostAndReported(t *testing.T) {
	b := startRelay(t, ingest.Config{})
	s, reg := startShipper(t, b.addr, shipper.Config{BatchRecords: 1})
	s.Publish(testFlow(1))
	bad := testFlow(2)
	bad.GetFlow().Time = nil // the relay rejects a flow without time
	s.Publish(bad)
	s.Publish(testFlow(3))
	s.Flush()
	waitFor(t, "the rejection reported", 10*time.Second, func() bool { n, _ := b.sink.lost(); return n > 0 })
	waitFor(t, "buffer drained", 10*time.Second, func() bool { q, _ := s.Stats(); return q == 0 })
	if got := lostValue(t, reg, "batch_rejected"); got != 1 {
		t.Errorf("agent counted %v records rejected, want 1", got)
	}
	lost, srcs := b.sink.lost()
	if lost != 1 || len(srcs) != 1 || srcs[0] != flowv1.LostEventSource_BATCH_REJECTED {
		t.Errorf("relay stored lost events %d %v, want 1 BATCH_REJECTED", lost, srcs)
	}
	if got := len(b.sink.flows()); got != 2 {
		t.Errorf("stored %d flows, want the 2 valid ones", got)
	}
	if got := metricSum(t, b.reg, "trawl_relay_lost_events_total"); got < 1 {
		t.Errorf("relay lost counter %v, want the rejected record counted", got)
	}
}

// blockingSink stands for a writer whose queue is full: Enqueue waits.
type blockingSink struct{ release chan struct{} }

func (b blockingSink) Enqueue(_ *store.Batch, done func(error)) {
	<-b.release
	done(nil)
}

func TestBackPressureDoesNotMakeAnAgentLookSilent(t *testing.T) {
	sink := blockingSink{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	lost := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_lost_events_total"}, []string{"cause"})
	srv := ingest.New(ingest.Config{}, sink, hub.New(hub.Config{}), nodes.New(nil), ingest.NewMetrics(reg, lost))
	g := grpc.NewServer(grpc.ForceServerCodecV2(vtcodec.Codec{}))
	ingestv1.RegisterIngestServiceServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()
	defer close(sink.release)
	s, _ := startShipper(t, lis.Addr().String(), shipper.Config{})
	s.Publish(testFlow(1))
	s.Flush()
	waitFor(t, "the batch to reach the blocked writer", 5*time.Second, func() bool { return metricSum(t, reg, "trawl_relay_ingest_batches_total") == 1 })
	first := metricSum(t, reg, "trawl_relay_agent_last_seen_timestamp_seconds")
	waitFor(t, "last-seen to move while the stream is held", 15*time.Second, func() bool {
		return metricSum(t, reg, "trawl_relay_agent_last_seen_timestamp_seconds") > first
	})
}

// batchCounter counts the batches gRPC decoded on the server.
type batchCounter struct{ n atomic.Int64 }

func (p *batchCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (p *batchCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		if r, ok := in.Payload.(*vtcodec.Request); ok && r.Msg.GetBatch() != nil {
			p.n.Add(1)
		}
	}
}
func (p *batchCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (p *batchCounter) HandleConn(context.Context, stats.ConnStats)                       {}

// While the writer's queue is full a stream holds the one batch it is
// handing over, decoded, and does not decode the next one meanwhile (it
// waits in gRPC's flow control, encoded): the relay's memory must not grow
// by a decoded batch per connected agent beyond that. Once the writer takes
// the batch the stream goes on and every batch is stored.
func TestAStreamHeldByAFullQueueDecodesNoFurtherBatch(t *testing.T) {
	sink := blockingSink{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	lost := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_lost_events_total"}, []string{"cause"})
	srv := ingest.New(ingest.Config{}, sink, hub.New(hub.Config{}), nodes.New(nil), ingest.NewMetrics(reg, lost))
	decoded := &batchCounter{}
	g := grpc.NewServer(grpc.ForceServerCodecV2(vtcodec.Codec{}), grpc.StatsHandler(decoded))
	ingestv1.RegisterIngestServiceServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()
	s, _ := startShipper(t, lis.Addr().String(), shipper.Config{BatchRecords: 1, FlushInterval: time.Hour, HeartbeatInterval: time.Hour})
	for i := range 3 {
		s.Publish(testFlow(i))
	}
	s.Flush()
	waitFor(t, "the first batch to reach the blocked writer", 5*time.Second, func() bool { return metricSum(t, reg, "trawl_relay_ingest_batches_total") == 1 })
	// A stream that read ahead decodes the second batch within
	// milliseconds; this watches for a while (it cannot fail on a stream
	// that does not read ahead, however slow the machine).
	for range 30 {
		if n := decoded.n.Load(); n > 1 {
			t.Fatalf("the server decoded %d batches while the first waited for the writer; want 1", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(sink.release)
	waitFor(t, "every batch handed to the writer", 10*time.Second, func() bool { return metricSum(t, reg, "trawl_relay_ingest_batches_total") == 3 })
	waitFor(t, "every batch acknowledged", 10*time.Second, func() bool { q, _ := s.Stats(); return q == 0 })
}
