package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/internal/backoff"
	"github.com/trawl-dev/trawl/internal/tlsconfig"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/observer"
)

// peers merges other relay replicas' live streams into a follow. Each entry
// of Config.Peers is host:port; a host that resolves to several addresses
// (a headless Service) stands for all of them. Addresses of this relay's
// own interfaces on its own observer port are skipped. Requests to peers
// carry observer.PeerHeader so they never fan out again.
type peers struct {
	cfg   Config
	creds credentials.TransportCredentials
	token string
}

func newPeers(cfg Config) (*peers, error) {
	p := &peers{cfg: cfg, token: cfg.ObserverToken}
	switch {
	case cfg.PeerTLS.Enabled():
		tc, err := tlsconfig.Client(cfg.PeerTLS)
		if err != nil {
			return nil, fmt.Errorf("peer TLS: %w", err)
		}
		p.creds = credentials.NewTLS(tc)
	case cfg.Insecure:
		p.creds = insecure.NewCredentials()
	default:
		return nil, errors.New("--peers needs peer TLS files or --insecure")
	}
	for _, e := range cfg.Peers {
		if _, _, err := net.SplitHostPort(e); err != nil {
			return nil, fmt.Errorf("--peers entry %q: want host:port: %w", e, err)
		}
	}
	return p, nil
}

// resolve expands the configured peers into addresses, minus this relay.
func (p *peers) resolve(ctx context.Context) []string {
	own := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				own[ipn.IP.String()] = true
			}
		}
	}
	_, ownPort, _ := net.SplitHostPort(p.cfg.ObserverAddr)
	seen := map[string]bool{}
	var out []string
	for _, e := range p.cfg.Peers {
		host, port, _ := net.SplitHostPort(e)
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			p.cfg.Log.Warn("resolve peer", "peer", e, "err", err)
			continue
		}
		for _, ip := range ips {
			if own[ip] && port == ownPort {
				continue
			}
			a := net.JoinHostPort(ip, port)
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// Follow implements observer.Peers.
func (p *peers) Follow(ctx context.Context, req *observerv1.GetFlowsRequest, fn func(*observerv1.GetFlowsResponse)) error {
	q := proto.Clone(req).(*observerv1.GetFlowsRequest)
	q.Follow, q.Number, q.First, q.Since, q.Until = true, 0, false, nil, nil
	md := metadata.Pairs(observer.PeerHeader, "1")
	if p.token != "" {
		md.Append("authorization", "Bearer "+p.token)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)
	var mu sync.Mutex // fn is called from one goroutine per peer
	var wg sync.WaitGroup
	for _, addr := range p.resolve(ctx) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.followOne(ctx, addr, q, func(r *observerv1.GetFlowsResponse) {
				mu.Lock()
				fn(r)
				mu.Unlock()
			})
		}()
	}
	wg.Wait()
	return nil
}

func (p *peers) followOne(ctx context.Context, addr string, req *observerv1.GetFlowsRequest, fn func(*observerv1.GetFlowsResponse)) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.creds))
	if err != nil {
		p.cfg.Log.Warn("peer", "addr", addr, "err", err)
		return
	}
	defer conn.Close()
	retry := backoff.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	for ctx.Err() == nil {
		stream, err := observerv1.NewObserverClient(conn).GetFlows(ctx, req)
		if err == nil {
			for {
				r, rerr := stream.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				retry.Reset()
				fn(r)
			}
		}
		if ctx.Err() != nil {
			return
		}
		p.cfg.Log.Debug("peer follow ended; retrying", "addr", addr, "err", err)
		retry.Wait(ctx)
	}
}
