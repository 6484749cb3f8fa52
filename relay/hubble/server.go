package hubble

import (
	"context"
	"log/slog"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// HealthService is the gRPC health service name Hubble's clients check
// (`hubble status`: Cilium's pkg/hubble/api/v1.ObserverServiceName).
const HealthService = "hubble.server.Observer"

// TrawlObserver is the part of Trawl's own observer (relay/observer) the
// Hubble API is served from: one implementation of history then follow,
// filters, nodes and status.
type TrawlObserver interface {
	GetFlows(*observerv1.GetFlowsRequest, observerv1.Observer_GetFlowsServer) error
	GetNodes(context.Context, *observerv1.GetNodesRequest) (*observerv1.GetNodesResponse, error)
	ServerStatus(context.Context, *observerv1.ServerStatusRequest) (*observerv1.ServerStatusResponse, error)
}

// Store answers what Trawl's observer API has no call for (relay/store).
type Store interface {
	// Namespaces are the namespaces with flow records since a time, sorted.
	Namespaces(ctx context.Context, since time.Time) ([]string, error)
	// NodeRecords is the number of stored records per node.
	NodeRecords(ctx context.Context) (map[string]uint64, error)
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// TLS says whether the listener serves TLS (reported per node, as
	// Hubble relay reports its connections to nodes).
	TLS bool
	// TeardownDrops serves drops of the teardown class (queue purges at
	// socket close and the like), which Hubble's datapath never reports;
	// they are left out unless set.
	TeardownDrops bool
	Log           *slog.Logger
}

// Server implements Hubble's observer.Observer on top of Trawl's observer.
type Server struct {
	observerpb.UnimplementedObserverServer

	cfg   ServerConfig
	trawl TrawlObserver
	store Store
}

// NewServer returns a Hubble observer server backed by Trawl's.
func NewServer(cfg ServerConfig, trawl TrawlObserver, st Store) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Server{cfg: cfg, trawl: trawl, store: st}
}

// Register adds the server to s and marks Hubble's health service serving
// in hs (a health server's Shutdown marks it not serving again).
func Register(s *grpc.Server, hs *health.Server, srv *Server) {
	observerpb.RegisterObserverServer(s, srv)
	hs.SetServingStatus(HealthService, healthpb.HealthCheckResponse_SERVING)
}

// teardownDeny is the deny filter that leaves teardown drops out.
var teardownDeny = &observerv1.FlowFilter{DropClass: []string{"teardown"}}

// GetFlows serves Trawl's GetFlows (ClickHouse history, then live records
// with follow) translated to Hubble's flows, lost events and node events.
func (s *Server) GetFlows(req *observerpb.GetFlowsRequest, stream observerpb.Observer_GetFlowsServer) error {
	treq, err := TranslateRequest(req)
	if err != nil {
		return err
	}
	if !s.cfg.TeardownDrops {
		treq.Denylist = append(treq.Denylist, teardownDeny)
	}
	mask, err := newFieldMask(req.GetFieldMask())
	if err != nil {
		return err
	}
	return s.trawl.GetFlows(treq, &flowStream{ServerStream: stream, out: stream, mask: mask})
}

// flowStream is the Trawl GetFlows stream that translates what is sent on
// it to the Hubble call's stream.
type flowStream struct {
	grpc.ServerStream
	out  observerpb.Observer_GetFlowsServer
	mask fieldMask
}

func (s *flowStream) Send(r *observerv1.GetFlowsResponse) error {
	h := ToHubble(r)
	if h == nil {
		return nil
	}
	if f := h.GetFlow(); f != nil && s.mask != nil {
		s.mask.prune(f.ProtoReflect())
	}
	return s.out.Send(h)
}

// GetAgentEvents is Cilium agent events, which Trawl does not have.
func (s *Server) GetAgentEvents(*observerpb.GetAgentEventsRequest, observerpb.Observer_GetAgentEventsServer) error {
	return status.Error(codes.Unimplemented, "Trawl has no Cilium agent events (no Cilium agent runs); use GetFlows, or trawl nodes for agent state")
}

// GetDebugEvents is Cilium datapath debug events, which Trawl does not have.
func (s *Server) GetDebugEvents(*observerpb.GetDebugEventsRequest, observerpb.Observer_GetDebugEventsServer) error {
	return status.Error(codes.Unimplemented, "Trawl has no Cilium datapath debug events; use GetFlows (drops carry the kernel's reason)")
}

// GetNodes lists the agents Trawl knows (connected to any relay replica or
// seen before) as Hubble nodes. Trawl keeps what the retention allows, not
// a ring of flows: num_flows and max_flows are both the node's stored
// records; seen_flows is what the agent exported since it started.
func (s *Server) GetNodes(ctx context.Context, _ *observerpb.GetNodesRequest) (*observerpb.GetNodesResponse, error) {
	resp, err := s.trawl.GetNodes(ctx, &observerv1.GetNodesRequest{})
	if err != nil {
		return nil, err
	}
	var stored map[string]uint64
	if s.store != nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		stored, err = s.store.NodeRecords(qctx)
		cancel()
		if err != nil {
			s.cfg.Log.Warn("stored records per node", "err", err)
		}
	}
	out := &observerpb.GetNodesResponse{}
	for _, n := range resp.GetNodes() {
		out.Nodes = append(out.Nodes, node(n, stored[n.GetNodeName()], s.cfg.TLS))
	}
	return out, nil
}

func node(n *flowv1.NodeStatus, stored uint64, tls bool) *observerpb.Node {
	out := &observerpb.Node{
		Name:      n.GetNodeName(),
		Version:   n.GetVersion(),
		Address:   n.GetAddress(),
		State:     NodeState(n.GetState()),
		Tls:       &observerpb.TLS{Enabled: tls},
		NumFlows:  stored,
		MaxFlows:  stored,
		SeenFlows: n.GetCounters()["records"],
	}
	if t := n.GetStartedAt(); t != nil && n.GetState() == flowv1.NodeState_NODE_CONNECTED {
		out.UptimeNs = uint64(max(time.Since(t.AsTime()), 0))
	}
	return out
}

// GetNamespaces lists the namespaces with flows in the last hour, as
// Hubble does, sorted (Trawl has one cluster, unnamed).
func (s *Server) GetNamespaces(ctx context.Context, _ *observerpb.GetNamespacesRequest) (*observerpb.GetNamespacesResponse, error) {
	if s.store == nil {
		return nil, status.Error(codes.Unavailable, "no store to list namespaces from")
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	names, err := s.store.Namespaces(qctx, time.Now().Add(-time.Hour))
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.Unavailable, "namespaces from ClickHouse: %v", err)
	}
	out := &observerpb.GetNamespacesResponse{}
	for _, ns := range names {
		out.Namespaces = append(out.Namespaces, &observerpb.Namespace{Namespace: ns})
	}
	return out, nil
}

// ServerStatus is Trawl's status in Hubble's terms: num_flows and
// max_flows are the records stored in ClickHouse (there is no ring to fill:
// the retention decides), seen_flows and flows_rate this relay's ingest.
func (s *Server) ServerStatus(ctx context.Context, _ *observerpb.ServerStatusRequest) (*observerpb.ServerStatusResponse, error) {
	st, err := s.trawl.ServerStatus(ctx, &observerv1.ServerStatusRequest{})
	if err != nil {
		return nil, err
	}
	return &observerpb.ServerStatusResponse{
		NumFlows:            st.GetNumFlows(),
		MaxFlows:            st.GetNumFlows(),
		SeenFlows:           st.GetSeenFlows(),
		UptimeNs:            st.GetUptimeNs(),
		NumConnectedNodes:   wrapperspb.UInt32(st.GetNumConnectedNodes()),
		NumUnavailableNodes: wrapperspb.UInt32(st.GetNumUnavailableNodes()),
		UnavailableNodes:    st.GetUnavailableNodes(),
		Version:             "trawl " + st.GetVersion(),
		FlowsRate:           st.GetFlowsRate(),
	}, nil
}
