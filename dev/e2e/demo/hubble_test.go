package demo_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/dev/demo"
	"github.com/trawl-dev/trawl/relay/hubble"
)

// checkHubble runs the Hubble contract test's checks against the demo
// stack with Cilium's generated client: health, status, history with
// filters and blacklists, nodes, namespaces, and Hubble's metrics. fe and
// pg are the frontend and postgres pods ("namespace/name"), whose
// connections the policies deny.
func checkHubble(t *testing.T, ctx context.Context, s *demo.Stack, fe, pg string) {
	conn, err := grpc.NewClient(s.ObserverAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := observerpb.NewObserverClient(conn)
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: hubble.HealthService})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of %s: %v, %v", hubble.HealthService, hc, err)
	}
	st, err := c.ServerStatus(ctx, &observerpb.ServerStatusRequest{})
	if err != nil || st.GetNumFlows() == 0 || st.GetNumConnectedNodes().GetValue() == 0 {
		t.Errorf("status: %v, %v", st, err)
	}
	flows := func(req *observerpb.GetFlowsRequest) []*flowpb.Flow {
		t.Helper()
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		stream, err := c.GetFlows(qctx, req)
		if err != nil {
			t.Fatal(err)
		}
		var out []*flowpb.Flow
		for {
			r, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return out
			}
			if err != nil {
				t.Fatalf("GetFlows: %v", err)
			}
			if f := r.GetFlow(); f != nil {
				out = append(out, f)
			}
		}
	}
	since := timestamppb.New(time.Now().Add(-10 * time.Minute))
	// hubble observe --since 10m --from-pod frontend --to-pod postgres --type drop
	denied := flows(&observerpb.GetFlowsRequest{Since: since, Whitelist: []*flowpb.FlowFilter{{
		SourcePod: []string{fe}, DestinationPod: []string{pg}, EventType: []*flowpb.EventTypeFilter{{Type: 1}}}}})
	var policyDrop bool
	for _, f := range denied {
		if f.GetVerdict() != flowpb.Verdict_DROPPED || f.GetEventType().GetType() != 1 {
			t.Errorf("--type drop gave %v", f)
		}
		if f.GetDropReasonDesc() == flowpb.DropReason_POLICY_DENIED && f.GetEventType().GetSubType() == 133 {
			for _, p := range f.GetIngressDeniedBy() {
				policyDrop = policyDrop || p.GetNamespace()+"/"+p.GetName() == "databases/postgres-ingress"
			}
		}
	}
	if !policyDrop {
		t.Errorf("no POLICY_DENIED drop of %s -> %s denied by databases/postgres-ingress among %d drops", fe, pg, len(denied))
	}
	// hubble observe --since 10m --last 500 --not --protocol tcp
	for _, f := range flows(&observerpb.GetFlowsRequest{Since: since, Number: 500, Blacklist: []*flowpb.FlowFilter{{Protocol: []string{"tcp"}}}}) {
		if f.GetL4().GetTCP() != nil {
			t.Errorf("--not --protocol tcp gave a TCP flow: %v", f)
			break
		}
	}
	if got := flows(&observerpb.GetFlowsRequest{Number: 20}); len(got) != 20 {
		t.Errorf("--last 20 gave %d flows", len(got))
	}
	nodes, err := c.GetNodes(ctx, &observerpb.GetNodesRequest{})
	if err != nil || len(nodes.GetNodes()) == 0 || nodes.GetNodes()[0].GetNumFlows() == 0 {
		t.Errorf("nodes: %v, %v", nodes, err)
	}
	nss, err := c.GetNamespaces(ctx, &observerpb.GetNamespacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nss.GetNamespaces() {
		names = append(names, n.GetNamespace())
	}
	for _, want := range []string{"databases", "frontend", "payments"} {
		if !slices.Contains(names, want) {
			t.Errorf("namespaces %v: %s missing", names, want)
		}
	}
	exported := scrapeFamilies(t, ctx, s.RelayMetrics)
	for _, name := range []string{"hubble_flows_processed_total", "hubble_drop_total", "hubble_tcp_flags_total",
		"hubble_port_distribution_total", "hubble_policy_verdicts_total"} {
		if !exported[name] {
			t.Errorf("the relay does not export %s", name)
		}
	}
}
