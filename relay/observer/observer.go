// Package observer serves the observer API (trawl.observer.v1.Observer):
// history from ClickHouse, live records from the hub, node and server status.
//
// GetFlows with follow and history subscribes to the hub before it queries
// ClickHouse. The hub hands back the inserts in flight at that moment (their
// records were published before the subscription, so they do not come
// live); GetFlows waits until they are stored (Config.SeamWait at most),
// then queries history. Every record is then in history or live, once: a
// history row whose uuid is already queued live is skipped in history and
// sent from there. Records whose insert did not succeed within the wait are
// not in history; they are reported as lost to that follow (a LostEvent),
// never skipped silently.
package observer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/version"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/hub"
	"github.com/trawl-dev/trawl/relay/nodes"
)

// Store is what the observer reads from ClickHouse.
type Store interface {
	QueryFlows(ctx context.Context, req *observerv1.GetFlowsRequest, fn func(*observerv1.GetFlowsResponse) error) error
	CountFlows(ctx context.Context) (uint64, error)
	LatestConntrack(ctx context.Context, nodes []string) ([]*flowv1.ConntrackSample, error)
	Top(ctx context.Context, req *observerv1.GetTopRequest) (*observerv1.GetTopResponse, error)
	Nodes(ctx context.Context) ([]*flowv1.NodeStatus, error)
	Ping(ctx context.Context) error
	Version(ctx context.Context) (string, error)
	QueueRows() uint64
}

// Ingest reports the ingest side's counters for ServerStatus.
type Ingest interface {
	SeenFlows() uint64
	FlowsRate() float64
	LastInsert() time.Time
}

// Peers merges other relay replicas' live streams into a follow (optional).
type Peers interface {
	// Follow streams the peers' live records matching req to fn until ctx
	// ends. Records must be those the peers received themselves.
	Follow(ctx context.Context, req *observerv1.GetFlowsRequest, fn func(*observerv1.GetFlowsResponse)) error
}

// PeerHeader marks a GetFlows call made by a peer relay: it is answered from
// this relay's own hub only, never fanned out again.
const PeerHeader = "x-trawl-peer"

// Config configures a Server.
type Config struct {
	// LiveBuffer is the per-subscriber buffer (records); hub default when 0.
	LiveBuffer int
	// OnLost counts records lost to a follow at the seam (the hub counts
	// those lost to slow subscribers itself).
	OnLost func(n int)
	// SeamWait bounds how long a follow with history waits for the inserts
	// in flight when it started (default 5 s): ClickHouse slow or down
	// must not hold the follow back for long; what is not stored by then
	// is reported lost to it.
	SeamWait time.Duration
	Log      *slog.Logger
	Peers    Peers
}

// Server implements observerv1.ObserverServer.
type Server struct {
	observerv1.UnimplementedObserverServer

	cfg     Config
	store   Store
	hub     *hub.Hub
	nodes   *nodes.Registry
	ingest  Ingest
	started time.Time
}

// New returns an observer server.
func New(cfg Config, st Store, h *hub.Hub, reg *nodes.Registry, in Ingest) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.SeamWait <= 0 {
		cfg.SeamWait = DefaultSeamWait
	}
	return &Server{cfg: cfg, store: st, hub: h, nodes: reg, ingest: in, started: time.Now()}
}

// DefaultSeamWait is Config.SeamWait's default: at full ingest the writer's
// queue is stored within a few seconds.
const DefaultSeamWait = 5 * time.Second

// recordKey identifies a record for the seam de-duplication.
func recordKey(r *observerv1.GetFlowsResponse) string {
	switch x := r.GetResponseTypes().(type) {
	case *observerv1.GetFlowsResponse_Flow:
		return x.Flow.GetUuid()
	case *observerv1.GetFlowsResponse_LostEvents:
		l := x.LostEvents
		return "lost/" + l.GetNodeName() + "/" + strconv.FormatInt(l.GetTime().AsTime().UnixNano(), 10) + "/" + l.GetSource().String() + "/" + strconv.FormatUint(l.GetNumEventsLost(), 10)
	}
	return ""
}

// maxQueued bounds the live records held while history streams.
const maxQueued = 1 << 20

// flowStream says which hub records belong on GetFlows: flows, lost events
// and node state changes (conntrack samples have GetConntrack: periodic
// samples would drown the flows).
func flowStream(r *observerv1.GetFlowsResponse) bool {
	return r.GetFlow() != nil || r.GetLostEvents() != nil || r.GetNodeStatus() != nil
}

// GetFlows serves history, then (with follow) live records.
func (s *Server) GetFlows(req *observerv1.GetFlowsRequest, stream observerv1.Observer_GetFlowsServer) error {
	ctx := stream.Context()
	f, err := filter.Compile(req.GetAllowlist(), req.GetDenylist())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "filter: %v", err)
	}
	if err := checkTimes(req.GetSince(), req.GetUntil()); err != nil {
		return err
	}
	send := func(r *observerv1.GetFlowsResponse) error {
		if err := stream.Send(r); err != nil {
			return err
		}
		return nil
	}
	follow := req.GetFollow() && req.GetUntil() == nil
	if !follow {
		return s.history(ctx, req, send)
	}
	match := func(r *observerv1.GetFlowsResponse) bool { return flowStream(r) && f.Match(r) }
	liveOnly := req.GetNumber() == 0 && req.GetSince() == nil
	var sub *subscription
	var inFlight *hub.InFlight
	if liveOnly {
		sub = s.hub.Subscribe(match, s.cfg.LiveBuffer)
	} else {
		sub, inFlight = s.hub.SubscribeSeam(match, s.cfg.LiveBuffer)
		defer inFlight.Release()
	}
	defer sub.Close()

	var peerC chan *observerv1.GetFlowsResponse
	md, _ := metadata.FromIncomingContext(ctx)
	if s.cfg.Peers != nil && len(md.Get(PeerHeader)) == 0 {
		peerC = make(chan *observerv1.GetFlowsResponse, 4096)
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			err := s.cfg.Peers.Follow(pctx, req, func(r *observerv1.GetFlowsResponse) {
				select {
				case peerC <- r:
				default:
					sub.AddLost(1)
				}
			})
			if err != nil && pctx.Err() == nil {
				s.cfg.Log.Warn("follow peers", "err", err)
			}
		}()
	}

	if !liveOnly {
		// Records that will be sent after history: whatever arrives live
		// meanwhile (bounded; beyond it they are reported lost).
		later := map[string]struct{}{}
		var queued []*observerv1.GetFlowsResponse
		keep := func(r *observerv1.GetFlowsResponse) {
			k := recordKey(r)
			if _, dup := later[k]; dup && k != "" {
				return
			}
			if len(queued) >= maxQueued {
				sub.AddLost(1) // reported like any slow follower's loss
				return
			}
			later[k] = struct{}{}
			queued = append(queued, r)
		}
		drain := func() {
			for {
				select {
				case r := <-sub.C():
					keep(r)
				default:
					return
				}
			}
		}
		notStored, waited := s.awaitStored(ctx, inFlight, sub, keep)
		if ctx.Err() != nil {
			return nil
		}
		err := s.history(ctx, req, func(r *observerv1.GetFlowsResponse) error {
			// Anything stored has been published first, so it is in the
			// subscription's channel by now: drain before deciding.
			drain()
			if _, later := later[recordKey(r)]; later {
				return nil
			}
			return send(r)
		})
		if err != nil {
			return err
		}
		drain()
		if notStored > 0 {
			if s.cfg.OnLost != nil {
				s.cfg.OnLost(notStored)
			}
			if err := send(seamLost(notStored, waited)); err != nil {
				return err
			}
		}
		for _, r := range queued {
			if err := send(r); err != nil {
				return err
			}
		}
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-sub.C():
			if err := s.sendLost(sub, send); err != nil {
				return err
			}
			if err := send(r); err != nil {
				return err
			}
		case r := <-peerC:
			if err := send(r); err != nil {
				return err
			}
		case <-tick.C:
			if err := s.sendLost(sub, send); err != nil {
				return err
			}
		}
	}
}

// awaitStored waits until the inserts in flight when the follow subscribed
// are settled, at most SeamWait, keeping what arrives live meanwhile. It
// returns the number of their records not in ClickHouse and how long it
// waited.
func (s *Server) awaitStored(ctx context.Context, f *hub.InFlight, sub *subscription, keep func(*observerv1.GetFlowsResponse)) (int, time.Duration) {
	start := time.Now()
	timeout := time.NewTimer(s.cfg.SeamWait)
	defer timeout.Stop()
	for {
		select {
		case <-f.Done():
		case <-timeout.C:
		case <-ctx.Done():
		case r := <-sub.C():
			keep(r)
			continue
		}
		return f.Release(), time.Since(start).Round(time.Millisecond)
	}
}

// seamLost is the LostEvent of records a follow's history misses because
// their insert had not succeeded when the history query ran.
func seamLost(n int, waited time.Duration) *observerv1.GetFlowsResponse {
	now := timestamppb.Now()
	return &observerv1.GetFlowsResponse{
		ResponseTypes: &observerv1.GetFlowsResponse_LostEvents{LostEvents: &flowv1.LostEvent{
			Source: flowv1.LostEventSource_OBSERVER_EVENTS_QUEUE, NumEventsLost: uint64(n), Time: now,
			Detail: fmt.Sprintf("%d records the relay received before this follow started were not yet in ClickHouse when its history was read "+
				"(their insert failed, or had not succeeded after %s), so this follow misses them; counted before the follow's filter", n, waited),
		}},
		Time: now,
	}
}

func (s *Server) sendLost(sub *subscription, send func(*observerv1.GetFlowsResponse) error) error {
	n := sub.TakeLost()
	if n == 0 {
		return nil
	}
	now := timestamppb.Now()
	return send(&observerv1.GetFlowsResponse{
		ResponseTypes: &observerv1.GetFlowsResponse_LostEvents{LostEvents: &flowv1.LostEvent{
			Source: flowv1.LostEventSource_OBSERVER_EVENTS_QUEUE, NumEventsLost: n, Time: now,
			Detail: "this follow fell behind the relay's live stream; records were dropped for it",
		}},
		Time: now,
	})
}

func (s *Server) history(ctx context.Context, req *observerv1.GetFlowsRequest, fn func(*observerv1.GetFlowsResponse) error) error {
	q := proto.Clone(req).(*observerv1.GetFlowsRequest)
	q.Follow = false
	if err := s.store.QueryFlows(ctx, q, fn); err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return err
		}
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Errorf(codes.Unavailable, "query flow history from ClickHouse: %v", err)
	}
	return nil
}

func checkTimes(since, until *timestamppb.Timestamp) error {
	for _, t := range []*timestamppb.Timestamp{since, until} {
		if t != nil && t.CheckValid() != nil {
			return status.Errorf(codes.InvalidArgument, "invalid time %v: %v", t, t.CheckValid())
		}
	}
	if since != nil && until != nil && until.AsTime().Before(since.AsTime()) {
		return status.Errorf(codes.InvalidArgument, "until (%s) is before since (%s)", until.AsTime().Format(time.RFC3339), since.AsTime().Format(time.RFC3339))
	}
	return nil
}

// GetNodes merges the agents connected to this relay with those ClickHouse
// knows (seen by other replicas or before a restart).
func (s *Server) GetNodes(ctx context.Context, _ *observerv1.GetNodesRequest) (*observerv1.GetNodesResponse, error) {
	live := s.nodes.List()
	byName := map[string]*flowv1.NodeStatus{}
	for _, n := range live {
		byName[n.GetNodeName()] = n
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stored, err := s.store.Nodes(qctx)
	if err != nil {
		s.cfg.Log.Warn("read nodes from ClickHouse", "err", err)
	}
	for _, n := range stored {
		cur, ok := byName[n.GetNodeName()]
		if ok && (cur.GetState() == flowv1.NodeState_NODE_CONNECTED || !cur.GetLastSeen().AsTime().Before(n.GetLastSeen().AsTime())) {
			continue
		}
		if !ok || n.GetLastSeen().AsTime().After(cur.GetLastSeen().AsTime()) {
			n = proto.Clone(n).(*flowv1.NodeStatus)
			if n.GetState() == flowv1.NodeState_NODE_CONNECTED && time.Since(n.GetLastSeen().AsTime()) > 2*time.Minute {
				n.State = flowv1.NodeState_NODE_UNAVAILABLE
				n.Message = "no heartbeat for " + time.Since(n.GetLastSeen().AsTime()).Round(time.Second).String()
			}
			byName[n.GetNodeName()] = n
		}
	}
	out := &observerv1.GetNodesResponse{}
	for _, n := range byName {
		out.Nodes = append(out.Nodes, n)
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].GetNodeName() < out.Nodes[j].GetNodeName() })
	return out, nil
}

// ServerStatus reports flows stored and seen, ingest rate, nodes and the
// health of ClickHouse. It answers even when ClickHouse is down.
func (s *Server) ServerStatus(ctx context.Context, _ *observerv1.ServerStatusRequest) (*observerv1.ServerStatusResponse, error) {
	resp := &observerv1.ServerStatusResponse{
		SeenFlows: s.ingest.SeenFlows(),
		UptimeNs:  uint64(time.Since(s.started)),
		Version:   version.Version,
		FlowsRate: s.ingest.FlowsRate(),
		Clickhouse: &observerv1.ClickHouseStatus{
			PendingRows: s.store.QueueRows(),
		},
	}
	if t := s.ingest.LastInsert(); !t.IsZero() {
		resp.Clickhouse.LastInsert = timestamppb.New(t)
	}
	nodesResp, _ := s.GetNodes(ctx, nil)
	for _, n := range nodesResp.GetNodes() {
		if n.GetState() == flowv1.NodeState_NODE_CONNECTED {
			resp.NumConnectedNodes++
		} else {
			resp.NumUnavailableNodes++
			resp.UnavailableNodes = append(resp.UnavailableNodes, n.GetNodeName())
		}
	}
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.store.Ping(qctx); err != nil {
		resp.Clickhouse.Error = err.Error()
		return resp, nil
	}
	resp.Clickhouse.Healthy = true
	if v, err := s.store.Version(qctx); err == nil {
		resp.Clickhouse.Version = v
	}
	n, err := s.store.CountFlows(qctx)
	if err != nil {
		resp.Clickhouse.Healthy = false
		resp.Clickhouse.Error = fmt.Sprintf("count flows: %v", err)
		return resp, nil
	}
	resp.NumFlows = n
	return resp, nil
}

// GetConntrack sends the latest sample per node, then (with follow) new ones.
func (s *Server) GetConntrack(req *observerv1.GetConntrackRequest, stream observerv1.Observer_GetConntrackServer) error {
	ctx := stream.Context()
	names := req.GetNodeName()
	match := func(r *observerv1.GetFlowsResponse) bool {
		c := r.GetConntrack()
		return c != nil && (len(names) == 0 || slices.Contains(names, c.GetNodeName()))
	}
	var sub *subscription
	if req.GetFollow() {
		sub = s.hub.Subscribe(match, s.cfg.LiveBuffer)
		defer sub.Close()
	}
	latest := map[string]*flowv1.ConntrackSample{}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	stored, err := s.store.LatestConntrack(qctx, names)
	cancel()
	if err != nil {
		s.cfg.Log.Warn("latest conntrack from ClickHouse; using this relay's memory", "err", err)
	}
	for _, c := range stored {
		latest[c.GetNodeName()] = c
	}
	for _, c := range s.nodes.LatestConntrack(names) {
		if cur, ok := latest[c.GetNodeName()]; !ok || c.GetTime().AsTime().After(cur.GetTime().AsTime()) {
			latest[c.GetNodeName()] = c
		}
	}
	keys := make([]string, 0, len(latest))
	for k := range latest {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := stream.Send(&observerv1.GetConntrackResponse{Sample: latest[k]}); err != nil {
			return err
		}
	}
	if sub == nil {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-sub.C():
			if err := stream.Send(&observerv1.GetConntrackResponse{Sample: r.GetConntrack()}); err != nil {
				return err
			}
		}
	}
}

// GetTop answers from the rollup tables.
func (s *Server) GetTop(ctx context.Context, req *observerv1.GetTopRequest) (*observerv1.GetTopResponse, error) {
	if req.GetKind() == observerv1.TopKind_TOP_KIND_UNSPECIFIED {
		return nil, status.Error(codes.InvalidArgument, "top: kind is required (talkers, droppers, denied-pairs, conntrack-creators)")
	}
	if err := checkTimes(req.GetSince(), req.GetUntil()); err != nil {
		return nil, err
	}
	resp, err := s.store.Top(ctx, req)
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return nil, err
		}
		return nil, status.Errorf(codes.Unavailable, "top from ClickHouse: %v", err)
	}
	return resp, nil
}

// subscription is the hub's, with a hook for records lost on the peer path.
type subscription = hub.Subscription
