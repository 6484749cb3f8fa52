// Package nodes keeps the relay's live view of agents: which have an open
// stream, their last heartbeat (version, kernel features, counters) and
// their latest conntrack sample. GetNodes, ServerStatus and GetConntrack read
// it; ClickHouse keeps the durable copy for other replicas and restarts.
package nodes

import (
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// Registry is safe for concurrent use. The zero value is not usable; use New.
type Registry struct {
	// OnChange, when set, is called (outside the lock) with a copy of a
	// node's status after a connect, heartbeat or disconnect.
	onChange func(*flowv1.NodeStatus)

	mu    sync.Mutex
	nodes map[string]*node
}

type node struct {
	status    *flowv1.NodeStatus
	streams   int
	conntrack *flowv1.ConntrackSample
}

// New returns an empty registry; onChange may be nil.
func New(onChange func(*flowv1.NodeStatus)) *Registry {
	return &Registry{onChange: onChange, nodes: map[string]*node{}}
}

func (r *Registry) get(name string) *node {
	n := r.nodes[name]
	if n == nil {
		n = &node{status: &flowv1.NodeStatus{NodeName: name}}
		r.nodes[name] = n
	}
	return n
}

func (r *Registry) changed(n *node) {
	if r.onChange == nil {
		return
	}
	s := proto.Clone(n.status).(*flowv1.NodeStatus)
	r.mu.Unlock()
	r.onChange(s)
	r.mu.Lock()
}

// Connect records a stream opened by an agent that said hello from addr.
func (r *Registry) Connect(h *ingestv1.Hello, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.get(h.GetNodeName())
	n.streams++
	s := n.status
	s.State = flowv1.NodeState_NODE_CONNECTED
	s.BootId = h.GetBootId()
	s.Version = h.GetAgentVersion()
	s.Kernel = h.GetKernel()
	s.Features = h.GetFeatures()
	s.StartedAt = h.GetStartedAt()
	s.Address = addr
	s.LastSeen = timestamppb.Now()
	s.Message = ""
	r.changed(n)
}

// Disconnect records the end of one of the node's streams.
func (r *Registry) Disconnect(name, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.nodes[name]
	if n == nil {
		return
	}
	if n.streams--; n.streams <= 0 {
		n.streams = 0
		n.status.State = flowv1.NodeState_NODE_UNAVAILABLE
		n.status.Message = reason
		r.changed(n)
	}
}

// Heartbeat applies an agent heartbeat.
func (r *Registry) Heartbeat(name string, hb *ingestv1.Heartbeat) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.get(name)
	s := n.status
	if hb.GetAgentVersion() != "" {
		s.Version = hb.GetAgentVersion()
	}
	if len(hb.GetFeatures()) > 0 {
		s.Features = hb.GetFeatures()
	}
	if hb.GetCounters() != nil {
		s.Counters = hb.GetCounters()
	}
	s.LastSeen = timestamppb.Now()
	r.changed(n)
}

// Seen updates a node's last-seen time (a batch arrived).
func (r *Registry) Seen(name string) {
	r.mu.Lock()
	r.get(name).status.LastSeen = timestamppb.Now()
	r.mu.Unlock()
}

// Conntrack remembers the newest conntrack sample of a node.
func (r *Registry) Conntrack(c *flowv1.ConntrackSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.get(c.GetNodeName())
	if n.conntrack == nil || !c.GetTime().AsTime().Before(n.conntrack.GetTime().AsTime()) {
		n.conntrack = c
	}
}

// LatestConntrack returns the newest sample of each node (all nodes when
// names is empty).
func (r *Registry) LatestConntrack(names []string) []*flowv1.ConntrackSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*flowv1.ConntrackSample
	for name, n := range r.nodes {
		if n.conntrack != nil && (len(names) == 0 || slices.Contains(names, name)) {
			out = append(out, n.conntrack)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetNodeName() < out[j].GetNodeName() })
	return out
}

// List returns copies of all node statuses, sorted by name.
func (r *Registry) List() []*flowv1.NodeStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*flowv1.NodeStatus, 0, len(r.nodes))
	for _, n := range r.nodes {
		if n.status.GetState() == flowv1.NodeState_UNKNOWN_NODE_STATE {
			continue // only conntrack seen, never a stream: not an agent we know
		}
		out = append(out, proto.Clone(n.status).(*flowv1.NodeStatus))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetNodeName() < out[j].GetNodeName() })
	return out
}

// Connected returns the number of nodes with an open stream.
func (r *Registry) Connected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := 0
	for _, n := range r.nodes {
		if n.streams > 0 {
			c++
		}
	}
	return c
}

// LastSeen returns each node's last-seen time.
func (r *Registry) LastSeen() map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]time.Time, len(r.nodes))
	for name, n := range r.nodes {
		if n.status.LastSeen != nil {
			out[name] = n.status.LastSeen.AsTime()
		}
	}
	return out
}
