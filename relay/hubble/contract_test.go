package hubble_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/agent/shipper/shippertest"
	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay"
	"github.com/trawl-dev/trawl/relay/hubble"
	"github.com/trawl-dev/trawl/relay/relaytest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// stack is an in-process relay on embedded ClickHouse holding filtertest's
// data set, each flow shipped by an agent of its node, plus two fresh flows.
type stack struct {
	relay    *relay.Relay
	client   observerpb.ObserverClient
	conn     *grpc.ClientConn
	shippers map[string]*shipper.Shipper
}

func startStack(t *testing.T) *stack { return startStackWith(t, nil) }

func startStackWith(t *testing.T, mutate func(*relay.Config)) *stack {
	t.Helper()
	var token string
	r := relaytest.Start(t, chtest.Database(t), func(c *relay.Config) {
		c.Retention = filtertest.Retention()
		if mutate != nil {
			mutate(c)
		}
		token = c.ObserverToken
	})
	conn, err := grpc.NewClient(r.ObserverAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &stack{relay: r, conn: conn, client: observerpb.NewObserverClient(conn), shippers: map[string]*shipper.Shipper{}}
	if token != "" {
		return s // the test speaks with a token; it ships its own flows
	}
	flows := filtertest.Flows()
	for _, f := range flows {
		s.publish(t, f)
	}
	s.waitStored(t, uint64(len(flows)))
	return s
}

// publish ships f from an agent on f's node.
func (s *stack) publish(t *testing.T, f *flowv1.Flow) {
	t.Helper()
	sh := s.shippers[f.GetNodeName()]
	if sh == nil {
		sh = shippertest.Start(t, s.relay.IngestAddr(), shipper.Config{NodeName: f.GetNodeName()}, nil)
		s.shippers[f.GetNodeName()] = sh
	}
	sh.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}, NodeName: f.GetNodeName(), Time: f.GetTime()})
}

func (s *stack) waitStored(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := s.client.ServerStatus(context.Background(), &observerpb.ServerStatusRequest{})
		if err == nil && st.GetNumFlows() >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d flows not stored after a minute (status %v, %v)", n, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// flows runs a GetFlows that ends and returns which of filtertest's flows
// were received, in order (their index, from their time: agents give
// records their own uuids), with the responses.
func (s *stack) flows(t *testing.T, req *observerpb.GetFlowsRequest) ([]int, []*observerpb.GetFlowsResponse) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.client.GetFlows(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	var all []*observerpb.GetFlowsResponse
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return ids, all
		}
		if err != nil {
			t.Fatalf("GetFlows(%v): %v", req, err)
		}
		all = append(all, r)
		if f := r.GetFlow(); f != nil {
			ids = append(ids, index(f))
		}
	}
}

// index is the position of f in filtertest's data set (-1 if not from it).
func index(f *flowpb.Flow) int {
	d := f.GetTime().AsTime().Sub(filtertest.Base)
	if d < 0 || d%time.Second != 0 || d > time.Minute {
		return -1
	}
	return int(d / time.Second)
}

func at(i int) *timestamppb.Timestamp {
	return timestamppb.New(filtertest.Base.Add(time.Duration(i) * time.Second))
}

// The relay answers Hubble's observer API, driven by Cilium's generated
// client, on the listener of Trawl's own.
func TestHubbleContract(t *testing.T) {
	s := startStack(t)
	// filtertest's flow 10 is a teardown drop: Hubble's API leaves it out.
	all := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}

	t.Run("health for hubble status", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(s.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: hubble.HealthService})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %s: %v, %v", hubble.HealthService, resp, err)
		}
	})
	t.Run("server status", func(t *testing.T) {
		st, err := s.client.ServerStatus(context.Background(), &observerpb.ServerStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetNumFlows() != 11 || st.GetMaxFlows() != st.GetNumFlows() || st.GetSeenFlows() < 11 || st.GetUptimeNs() == 0 ||
			st.GetNumConnectedNodes().GetValue() != 5 || st.GetNumUnavailableNodes() == nil || !strings.HasPrefix(st.GetVersion(), "trawl ") {
			t.Errorf("status %v", st)
		}
	})
	t.Run("last N", func(t *testing.T) {
		got, _ := s.flows(t, &observerpb.GetFlowsRequest{Number: 3})
		if want := []int{7, 8, 9}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("first N", func(t *testing.T) {
		got, _ := s.flows(t, &observerpb.GetFlowsRequest{Number: 2, First: true})
		if want := []int{0, 1}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("since and until", func(t *testing.T) {
		got, _ := s.flows(t, &observerpb.GetFlowsRequest{Since: at(2), Until: at(4)})
		if want := []int{2, 3, 4}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("since with a number: the first N from since, as Hubble", func(t *testing.T) {
		got, _ := s.flows(t, &observerpb.GetFlowsRequest{Since: at(5), Number: 2})
		if want := []int{5, 6}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("all", func(t *testing.T) {
		got, _ := s.flows(t, &observerpb.GetFlowsRequest{Number: math.MaxUint64})
		if want := all; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("filters", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			wl, bl []*flowpb.FlowFilter
			want   []int
		}{
			{"--type drop", []*flowpb.FlowFilter{{EventType: []*flowpb.EventTypeFilter{{Type: 1}}}}, nil, []int{2, 3}},
			{"--from-pod shop/web --verdict FORWARDED", []*flowpb.FlowFilter{{SourcePod: []string{"shop/web"}, Verdict: []flowpb.Verdict{flowpb.Verdict_FORWARDED}}}, nil, []int{0, 7}},
			{"--not --protocol icmp (blacklist)", nil, []*flowpb.FlowFilter{{Protocol: []string{"icmp"}}}, []int{0, 1, 2, 3, 5, 6, 8, 9}},
			{"--pod shop/ --not --label k8s:app=db", []*flowpb.FlowFilter{{SourcePod: []string{"shop/"}}, {DestinationPod: []string{"shop/"}}},
				[]*flowpb.FlowFilter{{SourceLabel: []string{"k8s:app=db"}}, {DestinationLabel: []string{"k8s:app=db"}}}, []int{3, 5, 7, 9}},
			{"reply false also selects drops", []*flowpb.FlowFilter{{Reply: []bool{false}}}, nil, []int{0, 2, 3, 5}},
			{"--node-name node-c*", []*flowpb.FlowFilter{{NodeName: []string{"node-c*"}}}, nil, []int{5, 6}},
			{"--drop-reason-desc POLICY_DENIED", []*flowpb.FlowFilter{{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_POLICY_DENIED}}}, nil, []int{2}},
		} {
			got, _ := s.flows(t, &observerpb.GetFlowsRequest{Number: 100, Whitelist: c.wl, Blacklist: c.bl})
			if want := c.want; !slices.Equal(got, want) {
				t.Errorf("%s: got %v, want %v", c.name, got, want)
			}
		}
	})
	t.Run("translated flows", func(t *testing.T) {
		_, resps := s.flows(t, &observerpb.GetFlowsRequest{Since: at(2), Until: at(2)})
		if len(resps) != 1 {
			t.Fatalf("got %v", resps)
		}
		f := resps[0].GetFlow()
		if f.GetVerdict() != flowpb.Verdict_DROPPED || f.GetDropReasonDesc() != flowpb.DropReason_POLICY_DENIED ||
			f.GetEventType().GetType() != 1 || f.GetSource().GetPodName() != "evil-1" || len(f.GetIngressDeniedBy()) != 2 ||
			f.GetNodeName() != "node-b" || resps[0].GetNodeName() != "node-b" || f.GetExtensions() == nil {
			t.Errorf("flow %v", f)
		}
	})
	t.Run("field mask of hubble observe", func(t *testing.T) {
		_, resps := s.flows(t, &observerpb.GetFlowsRequest{Number: 1, FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"time", "verdict", "source.pod_name", "l4"}}})
		f := resps[0].GetFlow()
		if f.GetTime() == nil || f.GetUuid() != "" || f.GetSource().GetLabels() != nil || f.GetExtensions() != nil || f.GetNodeName() != "" {
			t.Errorf("masked flow %v", f)
		}
	})
	t.Run("unsupported filters are refused", func(t *testing.T) {
		for _, c := range []struct {
			f     *flowpb.FlowFilter
			field string
		}{
			{&flowpb.FlowFilter{SourceIdentity: []uint32{2}}, "source_identity"},
			{&flowpb.FlowFilter{HttpStatusCode: []string{"5+"}}, "http_status_code"},
			{&flowpb.FlowFilter{SourcePod: []string{"web"}}, "source_pod"},
		} {
			st, err := s.client.GetFlows(context.Background(), &observerpb.GetFlowsRequest{Number: 5, Blacklist: []*flowpb.FlowFilter{c.f}})
			if err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.field) {
				t.Errorf("%s: %v", c.field, err)
			}
		}
	})
	t.Run("agent and debug events", func(t *testing.T) {
		ae, err := s.client.GetAgentEvents(context.Background(), &observerpb.GetAgentEventsRequest{})
		if err == nil {
			_, err = ae.Recv()
		}
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("GetAgentEvents: %v", err)
		}
		de, err := s.client.GetDebugEvents(context.Background(), &observerpb.GetDebugEventsRequest{})
		if err == nil {
			_, err = de.Recv()
		}
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("GetDebugEvents: %v", err)
		}
	})
	t.Run("nodes", func(t *testing.T) {
		resp, err := s.client.GetNodes(context.Background(), &observerpb.GetNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range resp.GetNodes() {
			names = append(names, n.GetName())
			if n.GetState().String() != "NODE_CONNECTED" || n.GetTls() == nil || n.GetUptimeNs() == 0 {
				t.Errorf("node %v", n)
			}
			if n.GetName() == "node-a" && (n.GetNumFlows() != 4 || n.GetMaxFlows() != 4) {
				t.Errorf("node-a: %d/%d flows, want 4 stored", n.GetNumFlows(), n.GetMaxFlows())
			}
		}
		if want := []string{"node-a", "node-b", "node-c.example", "node-d", "node-e"}; !slices.Equal(names, want) {
			t.Errorf("nodes %v, want %v", names, want)
		}
	})
	t.Run("follow", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// History since flow 8 (of the allowed kind), then live.
		st, err := s.client.GetFlows(ctx, &observerpb.GetFlowsRequest{Follow: true, Since: at(8),
			Whitelist: []*flowpb.FlowFilter{{SourcePod: []string{"live/"}}, {SourcePod: []string{"shop/db"}}},
			Blacklist: []*flowpb.FlowFilter{{DestinationPod: []string{"live/skip"}}}})
		if err != nil {
			t.Fatal(err)
		}
		next := func() *flowpb.Flow {
			for {
				r, err := st.Recv()
				if err != nil {
					t.Fatalf("follow: %v", err)
				}
				if f := r.GetFlow(); f != nil {
					return f
				}
			}
		}
		if f := next(); index(f) != 8 {
			t.Fatalf("history: got %v, want flow 8", f)
		}
		now := time.Now()
		for i, dst := range []string{"skip", "seen"} {
			s.publish(t, &flowv1.Flow{Time: timestamppb.New(now.Add(time.Duration(i) * time.Millisecond)), NodeName: "node-a",
				Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE,
				Source: &flowv1.Endpoint{Namespace: "live", PodName: "client"}, Destination: &flowv1.Endpoint{Namespace: "live", PodName: dst},
				IP: &flowv1.IP{Source: "10.9.0.1", Destination: "10.9.0.2", IpVersion: flowv1.IPVersion_IPv4}, Packets: 1, Bytes: 60})
		}
		f := next()
		if f.GetDestination().GetPodName() != "seen" || f.GetSource().GetNamespace() != "live" || f.GetEventType().GetType() != 4 {
			t.Errorf("live: got %v, want the flow to live/seen", f)
		}
	})
	t.Run("namespaces with flows in the last hour", func(t *testing.T) {
		// The follow test shipped flows of namespace live just now.
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := s.client.GetNamespaces(context.Background(), &observerpb.GetNamespacesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range resp.GetNamespaces() {
				got = append(got, n.GetNamespace())
			}
			if slices.Contains(got, "live") {
				if !slices.IsSorted(got) || slices.Contains(got, "") {
					t.Errorf("namespaces %v: want sorted, without the empty one", got)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("namespaces %v: live missing", got)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		mfs, err := s.relay.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, mf := range mfs {
			found[mf.GetName()] = true
		}
		for _, name := range []string{"hubble_flows_processed_total", "hubble_drop_total", "hubble_tcp_flags_total",
			"hubble_port_distribution_total", "hubble_policy_verdicts_total", "hubble_icmp_total"} {
			if !found[name] {
				t.Errorf("%s not exported by the relay", name)
			}
		}
	})
}

// With --observer-token, the hubble CLI authenticates with basic auth
// (any user, the token as password); health checks need nothing.
func TestHubbleWithObserverToken(t *testing.T) {
	s := startStackWith(t, func(c *relay.Config) { c.ObserverToken = "s3cret" })
	if _, err := healthpb.NewHealthClient(s.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: hubble.HealthService}); err != nil {
		t.Errorf("health: %v", err)
	}
	for _, c := range []struct {
		name, auth string
		want       codes.Code
	}{
		{"no credentials", "", codes.Unauthenticated},
		{"basic auth with the token", "Basic " + base64.StdEncoding.EncodeToString([]byte("hubble:s3cret")), codes.OK},
		{"basic auth with another password", "Basic " + base64.StdEncoding.EncodeToString([]byte("hubble:guess")), codes.Unauthenticated},
		{"bearer token", "Bearer s3cret", codes.OK},
	} {
		ctx := context.Background()
		if c.auth != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", c.auth)
		}
		if _, err := s.client.ServerStatus(ctx, &observerpb.ServerStatusRequest{}); status.Code(err) != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
