package relay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/agent/shipper/shippertest"
	"github.com/trawl-dev/trawl/dev/chserver"
	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/tlsconfig"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay"
	"github.com/trawl-dev/trawl/relay/relaytest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startRelay runs an in-process relay on loopback ports against dsn.
func startRelay(t *testing.T, dsn string, mutate func(*relay.Config)) *relay.Relay {
	t.Helper()
	return relaytest.Start(t, dsn, mutate)
}

func startShipper(t *testing.T, addr, node string, mutate func(*shipper.Config)) *shipper.Shipper {
	t.Helper()
	cfg := shipper.Config{NodeName: node, BatchRecords: 50}
	if mutate != nil {
		mutate(&cfg)
	}
	return shippertest.Start(t, addr, cfg, nil)
}

func observerClient(t *testing.T, r *relay.Relay, opts ...grpc.DialOption) observerv1.ObserverClient {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(r.ObserverAddr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return observerv1.NewObserverClient(conn)
}

// realisticFlow has most fields a datapath fills.
func realisticFlow(i int, at time.Time) *flowv1.Flow {
	return &flowv1.Flow{
		Time:             timestamppb.New(at),
		Verdict:          flowv1.Verdict_FORWARDED,
		EventKind:        flowv1.EventKind_AGGREGATE,
		Type:             flowv1.FlowType_L3_L4,
		TrafficDirection: flowv1.TrafficDirection_EGRESS,
		IP:               &flowv1.IP{Source: "10.244.1.5", Destination: fmt.Sprintf("10.244.2.%d", i%250+1), IpVersion: flowv1.IPVersion_IPv4},
		L4: &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(30000 + i%30000), DestinationPort: 8080,
			Flags: &flowv1.TCPFlags{SYN: true, ACK: true}}}},
		Interface:        &flowv1.NetworkInterface{Index: 7, Name: "veth1234"},
		FirstSeen:        timestamppb.New(at.Add(-time.Second)),
		LastSeen:         timestamppb.New(at),
		Packets:          uint64(i + 1),
		Bytes:            uint64(1500 * (i + 1)),
		ObservationPoint: "tcx-egress",
		Netns:            4026531993,
	}
}

func publish(s *shipper.Shipper, f *flowv1.Flow) {
	s.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}})
}

// history returns the stored flows by uuid, failing on a repeated uuid.
func history(t *testing.T, c observerv1.ObserverClient, req *observerv1.GetFlowsRequest) map[string]*flowv1.Flow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.GetFlows(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*flowv1.Flow{}
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("GetFlows: %v", err)
		}
		if f := r.GetFlow(); f != nil {
			if _, dup := out[f.GetUuid()]; dup {
				t.Fatalf("flow %s returned twice", f.GetUuid())
			}
			out[f.GetUuid()] = f
		}
	}
}

func countRows(t *testing.T, dsn, table string) (rows, distinct uint64) {
	t.Helper()
	conn := chtest.Open(t, dsn)
	var q string
	if table == "flows" {
		q = "SELECT count(), uniqExact(id_hi, id_lo, uuid_raw) FROM flows"
	} else {
		q = "SELECT count(), count() FROM " + table
	}
	if err := conn.QueryRow(context.Background(), q).Scan(&rows, &distinct); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return rows, distinct
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func acked(s *shipper.Shipper) bool { q, _ := s.Stats(); return q == 0 }

// proxy forwards TCP and can cut every connection, like a network fault,
// hold back what the server sends (acks lost in the network), and switch
// to another server.
type proxy struct {
	lis    net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	target string
	paused atomic.Bool
}

func (p *proxy) retarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
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
			p.mu.Lock()
			to := p.target
			p.mu.Unlock()
			u, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { // server → client, held back while paused
				buf := make([]byte, 32<<10)
				for {
					n, err := u.Read(buf)
					for p.paused.Load() {
						time.Sleep(10 * time.Millisecond)
					}
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestShippedFlowsArriveInClickHouseExactlyOnceFieldForField(t *testing.T) {
	for _, cut := range []bool{false, true} {
		name := "over a steady stream"
		if cut {
			name = "when the stream breaks mid-stream and the agent resends"
		}
		t.Run(name, func(t *testing.T) {
			dsn := chtest.Database(t)
			r := startRelay(t, dsn, nil)
			p := newProxy(t, r.IngestAddr())
			s := startShipper(t, p.lis.Addr().String(), "node-a", nil)
			base := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
			const n = 1000
			sent := map[int]*flowv1.Flow{}
			for i := range n {
				f := realisticFlow(i, base.Add(time.Duration(i)*time.Millisecond))
				sent[i] = proto.Clone(f).(*flowv1.Flow)
				publish(s, f)
				if cut && i == n/2 {
					s.Flush()
					time.Sleep(30 * time.Millisecond) // some batches in flight, unacked
					p.cut()
				}
			}
			s.Flush()
			waitFor(t, "every batch acked", 60*time.Second, func() bool { return acked(s) })
			rows, distinct := countRows(t, dsn, "flows")
			if rows != n || distinct != n {
				t.Fatalf("flows table holds %d rows (%d distinct ids), want exactly %d", rows, distinct, n)
			}
			got := history(t, observerClient(t, r), &observerv1.GetFlowsRequest{Since: timestamppb.New(base.Add(-time.Hour))})
			for i, want := range sent {
				// Sequences are assigned in order, 50 records a batch, except
				// where Flush closed a batch early: find the flow by content.
				_ = i
				want.NodeName = "node-a"
				var match *flowv1.Flow
				for _, g := range got {
					if g.GetPackets() == want.GetPackets() {
						match = g
						break
					}
				}
				if match == nil {
					t.Fatalf("flow %d missing from history", i)
				}
				want.Uuid = match.GetUuid()
				if !proto.Equal(match, want) {
					t.Fatalf("flow %d read back as\n%v\nwant\n%v", i, match, want)
				}
			}
		})
	}
}

func TestFollowShowsAFlowIngestedAfterTheCallWithinOneSecond(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, nil)
	s := startShipper(t, r.IngestAddr(), "node-a", nil)
	c := observerClient(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.GetFlows(ctx, &observerv1.GetFlowsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscription", 5*time.Second, func() bool { return metric(t, r, "trawl_relay_subscribers") == 1 })
	waitFor(t, "the agent", 10*time.Second, func() bool { return metric(t, r, "trawl_relay_connected_agents") == 1 })
	start := time.Now()
	publish(s, realisticFlow(7, time.Now()))
	var got *observerv1.GetFlowsResponse
	for got.GetFlow() == nil { // skip node_status: the agent may connect after the call
		if got, err = st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("followed flow arrived after %s, want within 1 s", took)
	}
	if got.GetFlow().GetPackets() != 8 || got.GetNodeName() != "node-a" {
		t.Errorf("followed record %v, want the published flow from node-a", got)
	}
}

func TestHistoryThenFollowAcrossAConcurrentIngestNeitherSkipsNorRepeats(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, func(c *relay.Config) { c.BatchInterval = 300 * time.Millisecond })
	s := startShipper(t, r.IngestAddr(), "node-a", func(c *shipper.Config) { c.BatchRecords = 5; c.FlushInterval = 5 * time.Millisecond })
	since := time.Now().Add(-time.Minute)
	const n = 3000
	go func() {
		for i := range n {
			publish(s, realisticFlow(i, time.Now()))
			if i%10 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	// Start in the middle of the ingest: part is stored, part is queued
	// for the writer, part not yet sent.
	waitFor(t, "some flows stored", 30*time.Second, func() bool { rows, _ := countRows(t, dsn, "flows"); return rows > 300 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := observerClient(t, r).GetFlows(ctx, &observerv1.GetFlowsRequest{Since: timestamppb.New(since), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for len(seen) < n {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d distinct flows: %v", len(seen), err)
		}
		if f := resp.GetFlow(); f != nil {
			seen[f.GetPackets()]++
		}
		if l := resp.GetLostEvents(); l != nil {
			t.Fatalf("lost events during the test: %v", l)
		}
	}
	// Anything repeated would arrive right behind; give it a moment.
	extra := make(chan *observerv1.GetFlowsResponse, 1)
	go func() {
		if r, err := st.Recv(); err == nil {
			extra <- r
		}
	}()
	select {
	case r := <-extra:
		t.Fatalf("record after all %d flows: %v", n, r)
	case <-time.After(time.Second):
	}
	for p, c := range seen {
		if c != 1 {
			t.Errorf("flow %d delivered %d times", p-1, c)
		}
	}
}

// While inserts fail (ClickHouse refuses the flows, queries still work), a
// follow with history cannot show what is in flight: it waits at most
// FollowSeamWait, then reports those records as lost to it, exactly as many
// as there are, and goes on live; nothing is skipped silently or repeated.
func TestAFollowStartedWhileInsertsFailReportsWhatItsHistoryMisses(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, func(c *relay.Config) {
		c.FollowSeamWait = time.Second
		c.BatchInterval = 50 * time.Millisecond
	})
	s := startShipper(t, r.IngestAddr(), "node-a", func(c *shipper.Config) { c.BatchRecords = 20 })
	since := time.Now().Add(-time.Minute)
	const stored, inFlight, live = 100, 60, 40
	i := 0
	for ; i < stored; i++ {
		publish(s, realisticFlow(i, time.Now()))
	}
	s.Flush()
	waitFor(t, "the first flows acked", 30*time.Second, func() bool { return acked(s) })

	conn := chtest.Open(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := conn.Exec(ctx, "ALTER TABLE flows ADD CONSTRAINT refuse_in_test CHECK packets = 0"); err != nil {
		t.Fatalf("make ClickHouse refuse flows: %v", err)
	}
	for ; i < stored+inFlight; i++ {
		publish(s, realisticFlow(i, time.Now()))
	}
	s.Flush()
	waitFor(t, "the relay to receive the flows it cannot store", 30*time.Second, func() bool {
		return metric(t, r, "trawl_relay_ingest_records_total") == stored+inFlight
	})

	st, err := observerClient(t, r).GetFlows(ctx, &observerv1.GetFlowsRequest{Since: timestamppb.New(since), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{} // by packets: flow i has i+1
	var lost []*flowv1.LostEvent
	recv := func(until func() bool) {
		t.Helper()
		for !until() {
			resp, err := st.Recv()
			if err != nil {
				t.Fatalf("after %d flows: %v", len(seen), err)
			}
			if f := resp.GetFlow(); f != nil {
				seen[f.GetPackets()]++
			}
			if l := resp.GetLostEvents(); l != nil {
				lost = append(lost, l)
			}
		}
	}
	recv(func() bool { return len(lost) > 0 })
	if len(seen) != stored {
		t.Errorf("history before the lost event has %d flows, want the %d stored", len(seen), stored)
	}
	if l := lost[0]; l.GetNumEventsLost() != inFlight || l.GetSource() != flowv1.LostEventSource_OBSERVER_EVENTS_QUEUE ||
		!strings.Contains(l.GetDetail(), "not yet in ClickHouse") {
		t.Errorf("lost event %v, want %d records not yet in ClickHouse (OBSERVER_EVENTS_QUEUE)", l, inFlight)
	}

	if err := conn.Exec(ctx, "ALTER TABLE flows DROP CONSTRAINT refuse_in_test"); err != nil {
		t.Fatalf("let ClickHouse store flows again: %v", err)
	}
	for ; i < stored+inFlight+live; i++ {
		publish(s, realisticFlow(i, time.Now()))
	}
	s.Flush()
	recv(func() bool { return len(seen) == stored+live })
	waitFor(t, "every flow acked", time.Minute, func() bool { return acked(s) })
	if rows, distinct := countRows(t, dsn, "flows"); rows != stored+inFlight+live || distinct != rows {
		t.Errorf("flows table holds %d rows (%d distinct), want %d", rows, distinct, stored+inFlight+live)
	}
	for p, c := range seen {
		switch n := int(p) - 1; {
		case c != 1:
			t.Errorf("flow %d delivered %d times", n, c)
		case n >= stored && n < stored+inFlight:
			t.Errorf("flow %d, in flight when the follow started, was delivered although reported lost", n)
		}
	}
	if len(lost) != 1 {
		t.Errorf("%d lost events, want 1: %v", len(lost), lost)
	}
	if got := metric(t, r, "trawl_relay_lost_events_total"); got != inFlight {
		t.Errorf("trawl_relay_lost_events_total = %v, want %d", got, inFlight)
	}
}

func metric(t *testing.T, r *relay.Relay, name string) float64 {
	t.Helper()
	mfs, err := r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestMutualTLSRefusesAgentsWithoutAClientCertificate(t *testing.T) {
	pki, err := tlsconfig.WriteDevPKI(t.TempDir(), nil, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, func(c *relay.Config) {
		c.Insecure = false
		c.IngestTLS = tlsconfig.Files{Cert: pki.Server.Cert, Key: pki.Server.Key, CA: pki.CA}
	})
	strict := startRelay(t, dsn, func(c *relay.Config) {
		c.Insecure = false
		c.IngestTLS = tlsconfig.Files{Cert: pki.Server.Cert, Key: pki.Server.Key, CA: pki.CA}
		c.NodeNameInCert = true
	})
	tests := []struct {
		name     string
		relay    *relay.Relay
		node     string
		files    tlsconfig.Files
		wantCode codes.Code
		wantMsg  string
	}{
		{"an agent without a client certificate is refused", r, "intruder", tlsconfig.Files{CA: pki.CA}, codes.Unauthenticated, "client certificate"},
		{"an agent with a certificate from the CA is welcomed", r, "intruder", pki.Clients["node-a"], codes.OK, ""},
		{"with --tls-node-names another node's certificate is refused", strict, "intruder", pki.Clients["node-a"], codes.PermissionDenied, "not to this node"},
		{"with --tls-node-names the node's own certificate is welcomed", strict, "node-a", pki.Clients["node-a"], codes.OK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.files.ServerName = "localhost"
			cc, err := tlsconfig.Client(tc.files)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient(tc.relay.IngestAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cc)))
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
			_ = st.Send(&ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Hello{Hello: &ingestv1.Hello{NodeName: tc.node, BootId: "b1"}}})
			_ = st.Send(&ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Batch{Batch: &ingestv1.Batch{NodeName: tc.node, BootId: "b1", Sequence: 1,
				Flows: []*flowv1.Flow{realisticFlow(1, time.Now())}}}})
			resp, err := st.Recv()
			if tc.wantCode != codes.OK {
				if status.Code(err) != tc.wantCode || !strings.Contains(status.Convert(err).Message(), tc.wantMsg) {
					t.Fatalf("got %v, %v; want %v saying %q", resp, err, tc.wantCode, tc.wantMsg)
				}
				return
			}
			if err != nil || resp.GetWelcome() == nil {
				t.Fatalf("got %v, %v; want a welcome", resp, err)
			}
			if resp, err = st.Recv(); err != nil || resp.GetAck() == nil {
				t.Fatalf("got %v, %v; want the batch acknowledged", resp, err)
			}
		})
	}
	// Only the welcomed agents' batches (acknowledged, so stored) are there.
	if rows, _ := countRows(t, dsn, "flows"); rows != 2 {
		t.Errorf("flows table holds %d rows, want only the 2 from the welcomed agents", rows)
	}
}

func TestObserverTokenIsRequiredWhenConfigured(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, func(c *relay.Config) { c.ObserverToken = "s3cret" })
	c := observerClient(t, r)
	tests := []struct {
		name  string
		token string
		want  codes.Code
	}{
		{"no token is refused", "", codes.Unauthenticated},
		{"a wrong token is refused", "guess", codes.Unauthenticated},
		{"the right token is accepted", "s3cret", codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tc.token)
			}
			_, err := c.ServerStatus(ctx, &observerv1.ServerStatusRequest{})
			if status.Code(err) != tc.want {
				t.Fatalf("ServerStatus: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestHostileFiltersAreRejectedOrInertAndChangeNothing(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, nil)
	s := startShipper(t, r.IngestAddr(), "node-a", nil)
	for i := range 10 {
		publish(s, realisticFlow(i, time.Now()))
	}
	s.Flush()
	waitFor(t, "flows stored", 20*time.Second, func() bool { return acked(s) })
	c := observerClient(t, r)
	hostile := []*observerv1.FlowFilter{
		{SourcePod: []string{"default/x'; DROP TABLE flows; --"}},
		{SourceLabel: []string{"app=') OR 1=1 --"}},
		{NodeName: []string{`node\' OR '1'='1`}},
		{SourceIp: []string{"1.2.3.4' OR 1=1"}},
		{DestinationPort: []string{"80; DELETE FROM flows"}},
	}
	for _, f := range hostile {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := c.GetFlows(ctx, &observerv1.GetFlowsRequest{Allowlist: []*observerv1.FlowFilter{f}})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			_, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				if status.Code(err) != codes.InvalidArgument {
					t.Errorf("filter %v: error %v, want InvalidArgument or no match", f, err)
				}
				break
			}
			n++
		}
		cancel()
		if n != 0 {
			t.Errorf("filter %v matched %d records, want none", f, n)
		}
	}
	if rows, _ := countRows(t, dsn, "flows"); rows != 10 {
		t.Errorf("flows table holds %d rows after hostile filters, want 10", rows)
	}
}

func TestNodesStatusAndMetricsDescribeTheConnectedAgent(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, nil)
	// The stream may open before SetHeartbeat: its first heartbeat then has
	// no features, and the next one is a HeartbeatInterval later.
	s := startShipper(t, r.IngestAddr(), "node-a", func(c *shipper.Config) { c.HeartbeatInterval = 100 * time.Millisecond })
	s.SetHeartbeat(func() *ingestv1.Heartbeat {
		return &ingestv1.Heartbeat{Features: []*flowv1.KernelFeature{{Name: "tcx", Enabled: true}}, Counters: map[string]uint64{"flows_exported": 3}}
	})
	for i := range 3 {
		publish(s, realisticFlow(i, time.Now()))
	}
	s.Flush()
	waitFor(t, "flows stored", 20*time.Second, func() bool { return acked(s) })
	c := observerClient(t, r)
	ctx := context.Background()
	// The features come with a heartbeat, which may follow the ack of the
	// flows: wait for it rather than read the status too early.
	var nodes *observerv1.GetNodesResponse
	waitFor(t, "node-a's heartbeat in its status", 20*time.Second, func() bool {
		var err error
		nodes, err = c.GetNodes(ctx, &observerv1.GetNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return len(nodes.GetNodes()) == 1 && len(nodes.GetNodes()[0].GetFeatures()) > 0
	})
	n := nodes.GetNodes()[0]
	if n.GetNodeName() != "node-a" || n.GetState() != flowv1.NodeState_NODE_CONNECTED || n.GetBootId() != s.BootID() || len(n.GetFeatures()) != 1 {
		t.Errorf("node status %v, want node-a connected with its boot id and features", n)
	}
	stat, err := c.ServerStatus(ctx, &observerv1.ServerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if stat.GetNumFlows() != 3 || stat.GetSeenFlows() != 3 || stat.GetNumConnectedNodes() != 1 || !stat.GetClickhouse().GetHealthy() {
		t.Errorf("ServerStatus %v, want 3 flows stored and seen, 1 node, healthy ClickHouse", stat)
	}
	resp, err := http.Get("http://" + r.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		"trawl_relay_info", "trawl_relay_ingest_records_total", "trawl_relay_ingest_batches_total", "trawl_relay_batch_records",
		"trawl_relay_insert_duration_seconds", "trawl_relay_insert_rows_total", "trawl_relay_queue_rows",
		"trawl_relay_dedup_hits_total", "trawl_relay_subscribers", "trawl_relay_lost_events_total", "trawl_relay_connected_agents",
		"trawl_relay_agent_last_seen_timestamp_seconds", "trawl_relay_flows_total",
	} {
		if !strings.Contains(string(body), "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// freePort is a port for a ClickHouse server the test restarts on it
// (chserver.FreePort says why not port 0).
func freePort(t *testing.T) int {
	t.Helper()
	p, err := chserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClickHouseOutageKeepsFollowLiveAndLosesOrRepeatsNothing(t *testing.T) {
	chtest.SkipShort(t)
	dir := t.TempDir()
	chCfg := chserver.Config{DataDir: dir, TCPPort: freePort(t), HTTPPort: freePort(t)}
	startCH := func() *chserver.Server {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		srv, err := chserver.Start(ctx, chCfg)
		if err != nil {
			t.Fatalf("start ClickHouse: %v", err)
		}
		return srv
	}
	ch := startCH()
	t.Cleanup(func() { _ = ch.Stop() })
	dsn := "clickhouse://" + ch.Addr + "/trawl"
	r := startRelay(t, dsn, func(c *relay.Config) {
		// Its retries through the outage, shown when the test fails.
		c.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	s := startShipper(t, r.IngestAddr(), "node-a", func(c *shipper.Config) { c.BatchRecords = 20 })
	c := observerClient(t, r)

	const perPhase = 500
	i := 0
	for ; i < perPhase; i++ {
		publish(s, realisticFlow(i, time.Now()))
	}
	s.Flush()
	waitFor(t, "first phase acked", 30*time.Second, func() bool { return acked(s) })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	follow, err := c.GetFlows(ctx, &observerv1.GetFlowsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscription", 5*time.Second, func() bool { return metric(t, r, "trawl_relay_subscribers") == 1 })

	if err := ch.Stop(); err != nil {
		t.Fatalf("stop ClickHouse: %v", err)
	}
	down := time.Now()
	// During the outage: flows keep coming and follow shows them live.
	for ; i < 2*perPhase; i++ {
		publish(s, realisticFlow(i, time.Now()))
		if i%50 == 0 {
			time.Sleep(time.Second)
		}
	}
	s.Flush()
	for live := 0; live < perPhase; live++ {
		resp, err := follow.Recv()
		if err != nil {
			t.Fatalf("follow during the outage, after %d records: %v", live, err)
		}
		if resp.GetNodeStatus() != nil {
			live-- // not a flow
			continue
		}
		if resp.GetFlow() == nil {
			t.Fatalf("follow during the outage sent %v, want flows", resp)
		}
	}
	if acked(s) {
		t.Fatal("the relay acknowledged batches while ClickHouse was down")
	}
	stat, err := c.ServerStatus(ctx, &observerv1.ServerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if stat.GetClickhouse().GetHealthy() {
		t.Error("ServerStatus says ClickHouse is healthy while it is down")
	}
	if wait := 30*time.Second - time.Since(down); wait > 0 {
		time.Sleep(wait)
	}
	ch = startCH()
	waitFor(t, "catch-up after ClickHouse returned", 2*time.Minute, func() bool { return acked(s) })
	rows, distinct := countRows(t, dsn, "flows")
	if rows != 2*perPhase || distinct != 2*perPhase {
		t.Fatalf("flows table holds %d rows (%d distinct), want exactly %d", rows, distinct, 2*perPhase)
	}
}

func TestGetConntrackSendsTheLatestSamplePerNodeThenFollows(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, nil)
	s := startShipper(t, r.IngestAddr(), "node-a", nil)
	sample := func(entries uint64, at time.Time) *observerv1.GetFlowsResponse {
		return &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Conntrack{Conntrack: &flowv1.ConntrackSample{
			Time: timestamppb.New(at), Entries: entries, Max: 1000, Utilization: float64(entries) / 1000, Trigger: flowv1.ConntrackTrigger_PERIODIC}}}
	}
	now := time.Now()
	s.Publish(sample(10, now.Add(-2*time.Second)))
	s.Publish(sample(20, now.Add(-time.Second)))
	s.Flush()
	waitFor(t, "samples stored", 20*time.Second, func() bool { return acked(s) })
	c := observerClient(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.GetConntrack(ctx, &observerv1.GetConntrackRequest{NodeName: []string{"node-a"}, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetSample().GetEntries() != 20 || first.GetSample().GetNodeName() != "node-a" {
		t.Fatalf("latest sample %v, want node-a with 20 entries", first.GetSample())
	}
	waitFor(t, "the subscription", 5*time.Second, func() bool { return metric(t, r, "trawl_relay_subscribers") == 1 })
	s.Publish(sample(30, now))
	next, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if next.GetSample().GetEntries() != 30 {
		t.Fatalf("followed sample %v, want 30 entries", next.GetSample())
	}
}

func TestObserverServesTLSAndRefusesPlaintextClients(t *testing.T) {
	pki, err := tlsconfig.WriteDevPKI(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, chtest.Database(t), func(c *relay.Config) {
		c.Insecure = false
		c.IngestTLS = tlsconfig.Files{Cert: pki.Server.Cert, Key: pki.Server.Key}
	})
	cc, err := tlsconfig.Client(tlsconfig.Files{CA: pki.CA, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := observerClient(t, r, grpc.WithTransportCredentials(credentials.NewTLS(cc))).ServerStatus(ctx, &observerv1.ServerStatusRequest{}); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	if _, err := observerClient(t, r).ServerStatus(ctx, &observerv1.ServerStatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext client got %v, want Unavailable", err)
	}
}

func TestFollowOnOneReplicaShowsFlowsIngestedByItsPeer(t *testing.T) {
	dsn := chtest.Database(t)
	a := startRelay(t, dsn, nil)
	b := startRelay(t, dsn, func(c *relay.Config) { c.Peers = []string{a.ObserverAddr()} })
	s := startShipper(t, a.IngestAddr(), "node-a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := observerClient(t, b).GetFlows(ctx, &observerv1.GetFlowsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	// b subscribes to its own hub and, through the peer call, to a's.
	waitFor(t, "the peer subscription", 10*time.Second, func() bool { return metric(t, a, "trawl_relay_subscribers") == 1 })
	publish(s, realisticFlow(41, time.Now()))
	var got *observerv1.GetFlowsResponse
	for got.GetFlow() == nil { // node_status records (the agent connecting) may come first
		if got, err = st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if got.GetFlow().GetPackets() != 42 || got.GetNodeName() != "node-a" {
		t.Fatalf("followed %v, want the flow node-a sent to the peer", got)
	}
}

func TestSlowFollowerGetsLostEventsAndDoesNotSlowIngest(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, func(c *relay.Config) { c.LiveBuffer = 10 })
	s := startShipper(t, r.IngestAddr(), "node-a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := observerClient(t, r).GetFlows(ctx, &observerv1.GetFlowsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscription", 5*time.Second, func() bool { return metric(t, r, "trawl_relay_subscribers") == 1 })
	const n = 20000
	for i := range n {
		publish(s, realisticFlow(i, time.Now()))
	}
	s.Flush()
	// Nobody reads the follow stream meanwhile; ingest must finish anyway.
	waitFor(t, "ingest to finish while the follower sleeps", 30*time.Second, func() bool { return acked(s) })
	var flows, lost uint64
	for flows+lost < n {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d flows and %d lost: %v", flows, lost, err)
		}
		switch {
		case resp.GetFlow() != nil:
			flows++
		case resp.GetLostEvents() != nil:
			if src := resp.GetLostEvents().GetSource(); src != flowv1.LostEventSource_OBSERVER_EVENTS_QUEUE {
				t.Fatalf("lost event source %v, want OBSERVER_EVENTS_QUEUE", src)
			}
			lost += resp.GetLostEvents().GetNumEventsLost()
		}
	}
	if lost == 0 {
		t.Fatalf("a follower with a 10-record buffer received all %d flows without loss; the test did not exercise a slow follower", n)
	}
	if flows+lost != n {
		t.Errorf("received %d flows + %d reported lost = %d, want %d", flows, lost, flows+lost, n)
	}
	if got := metric(t, r, "trawl_relay_lost_events_total"); got != float64(lost) {
		t.Errorf("trawl_relay_lost_events_total = %v, want %d", got, lost)
	}
}

func TestGetTopAnswersFromTheRollupsAndRejectsAMissingKind(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, nil)
	s := startShipper(t, r.IngestAddr(), "node-a", nil)
	for i := range 20 {
		publish(s, realisticFlow(i, time.Now()))
	}
	s.Flush()
	waitFor(t, "flows stored", 20*time.Second, func() bool { return acked(s) })
	c := observerClient(t, r)
	ctx := context.Background()
	if _, err := c.GetTop(ctx, &observerv1.GetTopRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("GetTop without kind: %v, want InvalidArgument", err)
	}
	top, err := c.GetTop(ctx, &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_TALKERS, Since: timestamppb.New(time.Now().Add(-time.Hour)), Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(top.GetEntries()) == 0 || top.GetEntries()[0].GetBytes() == 0 {
		t.Fatalf("top talkers %v, want entries with bytes", top)
	}
}

func TestAResendToARestartedRelayAfterALostAckIsNotStoredTwice(t *testing.T) {
	dsn := chtest.Database(t)
	newRelay := func() (*relay.Relay, func()) {
		cfg := relay.DefaultConfiguration()
		cfg.ObserverAddr, cfg.IngestAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", ""
		cfg.ClickHouseDSN, cfg.Insecure, cfg.BatchInterval, cfg.Log = dsn, true, 50*time.Millisecond, quietLog()
		r, err := relay.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = r.Run(ctx); close(done) }()
		return r, func() { cancel(); <-done }
	}
	a, stopA := newRelay()
	p := newProxy(t, a.IngestAddr())
	s := startShipper(t, p.lis.Addr().String(), "node-a", nil)
	waitFor(t, "the agent on relay A", 10*time.Second, func() bool { return metric(t, a, "trawl_relay_connected_agents") == 1 })
	p.paused.Store(true) // relay A's acks never reach the agent
	// Relay A stores each batch in an insert of its own; relay B will get
	// the resends together, so ClickHouse's per-insert token alone would
	// not recognise them.
	const n = 120
	for i := range n {
		publish(s, realisticFlow(i, time.Now()))
		if (i+1)%40 == 0 {
			s.Flush()
			waitFor(t, "relay A to store the batch", 30*time.Second, func() bool { rows, _ := countRows(t, dsn, "flows"); return rows == uint64(i+1) })
		}
	}
	if acked(s) {
		t.Fatal("acks reached the agent although the network held them back")
	}
	p.cut()
	stopA()
	b, stopB := newRelay()
	defer stopB()
	p.retarget(b.IngestAddr())
	p.paused.Store(false)
	waitFor(t, "relay B to acknowledge the resends", 30*time.Second, func() bool { return acked(s) })
	rows, distinct := countRows(t, dsn, "flows")
	if rows != n || distinct != n {
		t.Fatalf("flows table holds %d rows (%d distinct) after the resend, want exactly %d", rows, distinct, n)
	}
	if metric(t, b, "trawl_relay_dedup_hits_total") == 0 {
		t.Error("relay B did not count the resent batches as dedup hits")
	}
}

func TestNodesOutliveTheirStreamAndTheRelay(t *testing.T) {
	dsn := chtest.Database(t)
	a := startRelay(t, dsn, nil)
	cfg := shipper.Config{Addr: a.IngestAddr(), NodeName: "node-gone", Insecure: true, Log: quietLog()}
	s, err := shipper.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	waitFor(t, "the agent", 10*time.Second, func() bool { return metric(t, a, "trawl_relay_connected_agents") == 1 })
	cancel()
	<-done
	c := observerClient(t, a)
	var nodes *observerv1.GetNodesResponse
	waitFor(t, "the node to be unavailable", 10*time.Second, func() bool {
		nodes, err = c.GetNodes(context.Background(), &observerv1.GetNodesRequest{})
		return err == nil && len(nodes.GetNodes()) == 1 && nodes.GetNodes()[0].GetState() == flowv1.NodeState_NODE_UNAVAILABLE
	})
	stat, err := c.ServerStatus(context.Background(), &observerv1.ServerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if stat.GetNumUnavailableNodes() != 1 || len(stat.GetUnavailableNodes()) != 1 || stat.GetUnavailableNodes()[0] != "node-gone" {
		t.Errorf("ServerStatus %v, want node-gone unavailable", stat)
	}
	// Another replica (or this one restarted) knows the node from ClickHouse.
	b := startRelay(t, dsn, nil)
	waitFor(t, "the node from ClickHouse", 10*time.Second, func() bool {
		nodes, err = observerClient(t, b).GetNodes(context.Background(), &observerv1.GetNodesRequest{})
		return err == nil && len(nodes.GetNodes()) == 1
	})
	if n := nodes.GetNodes()[0]; n.GetNodeName() != "node-gone" || n.GetState() == flowv1.NodeState_NODE_CONNECTED || n.GetBootId() != s.BootID() {
		t.Errorf("node from ClickHouse %v, want node-gone, not connected, with its boot id", n)
	}
}

func TestFollowAppliesAllowAndDenyFilters(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, nil)
	s := startShipper(t, r.IngestAddr(), "node-a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := observerClient(t, r).GetFlows(ctx, &observerv1.GetFlowsRequest{
		Follow:    true,
		Allowlist: []*observerv1.FlowFilter{{Verdict: []flowv1.Verdict{flowv1.Verdict_DROPPED}}},
		Denylist:  []*observerv1.FlowFilter{{DestinationPort: []string{"9999"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscription", 5*time.Second, func() bool { return metric(t, r, "trawl_relay_subscribers") == 1 })
	forwarded := realisticFlow(1, time.Now())
	denied := realisticFlow(2, time.Now())
	denied.Verdict = flowv1.Verdict_DROPPED
	denied.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: 5, DestinationPort: 9999}}}
	wanted := realisticFlow(3, time.Now())
	wanted.Verdict, wanted.EventKind, wanted.DropReasonDesc, wanted.DropReasonKernel = flowv1.Verdict_DROPPED, flowv1.EventKind_DROP, "NO_SOCKET", "NO_SOCKET"
	for _, f := range []*flowv1.Flow{forwarded, denied, wanted} {
		publish(s, f)
	}
	got, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.GetFlow().GetPackets() != 4 {
		t.Fatalf("follow delivered %v first, want only the dropped flow not on port 9999", got.GetFlow())
	}
}

func TestBadRequestsAreInvalidArgument(t *testing.T) {
	r := startRelay(t, chtest.Database(t), nil)
	c := observerClient(t, r)
	now := time.Now()
	tests := []struct {
		name string
		req  *observerv1.GetFlowsRequest
	}{
		{"until before since", &observerv1.GetFlowsRequest{Since: timestamppb.New(now), Until: timestamppb.New(now.Add(-time.Hour))}},
		{"a malformed CIDR", &observerv1.GetFlowsRequest{Allowlist: []*observerv1.FlowFilter{{SourceIp: []string{"10.0.0.0/99"}}}}},
		{"a malformed port range", &observerv1.GetFlowsRequest{Follow: true, Denylist: []*observerv1.FlowFilter{{SourcePort: []string{"90-80x"}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := c.GetFlows(ctx, tc.req)
			if err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() == "" {
				t.Fatalf("got %v, want InvalidArgument with a message", err)
			}
		})
	}
}

func TestManifestsEnrichIngestedFlows(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, func(c *relay.Config) { c.Manifests = "../deploy/demo" })
	s := startShipper(t, r.IngestAddr(), "node-a", nil)
	f := realisticFlow(1, time.Now())
	f.IP.Source = "10.244.1.11" // api-gateway's pod in deploy/demo
	publish(s, f)
	s.Flush()
	waitFor(t, "the flow stored", 20*time.Second, func() bool { return acked(s) })
	got := history(t, observerClient(t, r), &observerv1.GetFlowsRequest{Since: timestamppb.New(time.Now().Add(-time.Hour))})
	if len(got) != 1 {
		t.Fatalf("history holds %d flows, want 1", len(got))
	}
	for _, g := range got {
		if g.GetSource().GetNamespace() != "api-gateway" || !strings.HasPrefix(g.GetSource().GetPodName(), "api-gateway-") {
			t.Fatalf("source endpoint %v, want the api-gateway pod from the manifests", g.GetSource())
		}
	}
}

func TestFollowShowsAgentsConnectingAndLeaving(t *testing.T) {
	r := startRelay(t, chtest.Database(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := observerClient(t, r).GetFlows(ctx, &observerv1.GetFlowsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscription", 5*time.Second, func() bool { return metric(t, r, "trawl_relay_subscribers") == 1 })
	s, err := shipper.New(shipper.Config{Addr: r.IngestAddr(), NodeName: "node-x", Insecure: true, Log: quietLog()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	done := make(chan struct{})
	go func() { _ = s.Run(sctx); close(done) }()
	for i, want := range []flowv1.NodeState{flowv1.NodeState_NODE_CONNECTED, flowv1.NodeState_NODE_UNAVAILABLE} {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ns := resp.GetNodeStatus(); ns.GetNodeName() != "node-x" || ns.GetState() != want {
			t.Fatalf("record %v, want node-x %v", resp, want)
		}
		if i == 0 {
			scancel()
			<-done
		}
	}
}

func TestPprofIsServedOnTheMetricsListenerOnlyWhenAsked(t *testing.T) {
	dsn := chtest.Database(t)
	for _, tc := range []struct {
		name  string
		pprof bool
		want  int
	}{
		{"with --pprof the profile index is served", true, http.StatusOK},
		{"without --pprof there is no profile index", false, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, dsn, func(c *relay.Config) { c.Pprof = tc.pprof })
			resp, err := http.Get("http://" + r.MetricsAddr() + "/debug/pprof/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("GET /debug/pprof/: %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	cfg := relay.DefaultConfiguration()
	cfg.Insecure, cfg.MetricsAddr, cfg.Pprof = true, "", true
	if err := cfg.Validate(); err == nil {
		t.Error("--pprof without a metrics listener was accepted")
	}
}
