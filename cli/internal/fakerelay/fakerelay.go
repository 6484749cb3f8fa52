// Package fakerelay is a small in-process Observer server for the CLI's
// tests of its own client code (connection, streaming, follow, exit codes)
// over a real gRPC loopback listener. It is not a model of the relay's
// selection semantics; the end-to-end tests run against the real relay.
package fakerelay

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trawl-dev/trawl/internal/filter"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Server answers with canned data and records what it was asked.
type Server struct {
	observerv1.UnimplementedObserverServer

	History   []*observerv1.GetFlowsResponse
	Status    *observerv1.ServerStatusResponse
	Nodes     *observerv1.GetNodesResponse
	Conntrack []*observerv1.GetConntrackResponse
	Top       map[observerv1.TopKind]*observerv1.GetTopResponse
	// Live feeds --follow streams after the history.
	Live chan *observerv1.GetFlowsResponse
	// Token, when set, must come as "Bearer <token>".
	Token string

	mu       sync.Mutex
	requests []any
	// Following is closed when a follow stream has sent its history.
	Following chan struct{}
	once      sync.Once
}

// Start serves s on a loopback port until the test ends; it returns the address.
func Start(t *testing.T, s *Server) string {
	t.Helper()
	if s.Live == nil {
		s.Live = make(chan *observerv1.GetFlowsResponse, 16)
	}
	s.Following = make(chan struct{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	observerv1.RegisterObserverServer(g, s)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// Requests returns the requests received so far.
func (s *Server) Requests() []any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]any(nil), s.requests...)
}

func (s *Server) record(ctx context.Context, req any) error {
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	if s.Token == "" {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer "+s.Token {
		return status.Error(codes.Unauthenticated, "missing or wrong token")
	}
	return nil
}

// GetFlows sends the history matching the request's filters (number, first
// and since/until handled simply), then live records when following.
func (s *Server) GetFlows(req *observerv1.GetFlowsRequest, stream observerv1.Observer_GetFlowsServer) error {
	if err := s.record(stream.Context(), req); err != nil {
		return err
	}
	flt, err := filter.Compile(req.GetAllowlist(), req.GetDenylist())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var sel []*observerv1.GetFlowsResponse
	for _, r := range s.History {
		t := r.GetTime().AsTime()
		if req.GetSince() != nil && t.Before(req.GetSince().AsTime()) || req.GetUntil() != nil && t.After(req.GetUntil().AsTime()) {
			continue
		}
		if flt.Match(r) {
			sel = append(sel, r)
		}
	}
	if n := req.GetNumber(); n > 0 && uint64(len(sel)) > n {
		if req.GetFirst() {
			sel = sel[:n]
		} else {
			sel = sel[uint64(len(sel))-n:]
		}
	} else if n == 0 && req.GetFollow() && req.GetSince() == nil {
		sel = nil
	}
	for _, r := range sel {
		if err := stream.Send(r); err != nil {
			return err
		}
	}
	if !req.GetFollow() {
		return nil
	}
	s.once.Do(func() { close(s.Following) })
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case r := <-s.Live:
			if flt.Match(r) {
				if err := stream.Send(r); err != nil {
					return err
				}
			}
		}
	}
}

// ServerStatus returns Status.
func (s *Server) ServerStatus(ctx context.Context, req *observerv1.ServerStatusRequest) (*observerv1.ServerStatusResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	return s.Status, nil
}

// GetNodes returns Nodes.
func (s *Server) GetNodes(ctx context.Context, req *observerv1.GetNodesRequest) (*observerv1.GetNodesResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	return s.Nodes, nil
}

// GetConntrack sends Conntrack, then waits for the client when following.
func (s *Server) GetConntrack(req *observerv1.GetConntrackRequest, stream observerv1.Observer_GetConntrackServer) error {
	if err := s.record(stream.Context(), req); err != nil {
		return err
	}
	for _, r := range s.Conntrack {
		if err := stream.Send(r); err != nil {
			return err
		}
	}
	if req.GetFollow() {
		s.once.Do(func() { close(s.Following) })
		<-stream.Context().Done()
	}
	return nil
}

// GetTop returns Top[kind].
func (s *Server) GetTop(ctx context.Context, req *observerv1.GetTopRequest) (*observerv1.GetTopResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	if r, ok := s.Top[req.GetKind()]; ok {
		return r, nil
	}
	return &observerv1.GetTopResponse{}, nil
}
