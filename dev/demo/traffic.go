package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/trawl-dev/trawl/internal/testbed"
)

// The demo's story, by the pods' app labels (exported for the end-to-end test).
const (
	AppDNS      = "kube-dns" // k8s-app label
	AppGateway  = "api-gateway"
	AppPayments = "payment-service"
	AppPostgres = "postgres"
	AppFrontend = "frontend"
	AppLoadgen  = "loadgen"

	// ClosedPort has no listener on the frontend pod: connections to it are
	// refused by the kernel (drop reason NO_SOCKET).
	ClosedPort = 7070
)

// PodByApp returns the pod whose app (or k8s-app) label is app.
func (s *Stack) PodByApp(app string) *Pod {
	for _, p := range s.Pods {
		if p.Labels["app"] == app || p.Labels["k8s-app"] == app {
			return p
		}
	}
	return nil
}

// StartServers starts the demo's servers inside their pods: cluster DNS,
// payment-service :8080, postgres :5432, api-gateway :80, frontend :80.
// They stop when ctx ends.
func (s *Stack) StartServers(ctx context.Context) error {
	records := map[string]netip.Addr{}
	for _, p := range s.Pods {
		app := p.Labels["app"]
		if app == "" {
			app = p.Labels["k8s-app"]
		}
		records[app+"."+p.Namespace+".svc.cluster.local"] = p.IP
	}
	dns := s.PodByApp(AppDNS)
	if dns == nil {
		return errors.New("demo manifests have no kube-dns pod")
	}
	pc, err := dns.Netns.ListenPacket("udp", ":53")
	if err != nil {
		return fmt.Errorf("dns listen in %s: %w", dns.Name, err)
	}
	go NewDNSServer(pc, records).Serve(ctx)

	for app, port := range map[string]int{AppPayments: 8080, AppPostgres: 5432, AppGateway: 80, AppFrontend: 80} {
		p := s.PodByApp(app)
		if p == nil {
			return fmt.Errorf("demo manifests have no %s pod", app)
		}
		l, err := p.Netns.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("listen on %s:%d: %w", p.Name, port, err)
		}
		go serveTCP(ctx, l)
	}
	return nil
}

// serveTCP answers each connection's request with a fixed-size reply.
func serveTCP(ctx context.Context, l net.Listener) {
	go func() { <-ctx.Done(); l.Close() }()
	reply := make([]byte, 2048)
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			// Long enough for the conntrack burst's idle connections.
			_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
			buf := make([]byte, 512)
			if _, err := c.Read(buf); err != nil {
				return
			}
			_, _ = c.Write(reply)
		}()
	}
}

// Call is one client action of the story and its outcome.
type Call struct {
	From, To string // "namespace/pod"
	Port     int
	Proto    string
	Err      error
}

// Round runs one round of the story's calls and returns their outcomes:
// allowed calls (api-gateway → payment-service:8080, payment-service →
// postgres:5432, DNS lookups), denied ones (frontend → postgres:5432,
// payment-service → frontend:80) and one to a closed port (api-gateway →
// frontend:7070).
func (s *Stack) Round(ctx context.Context) []Call {
	gw, pay, pg, fe, dns := s.PodByApp(AppGateway), s.PodByApp(AppPayments), s.PodByApp(AppPostgres), s.PodByApp(AppFrontend), s.PodByApp(AppDNS)
	if gw == nil || pay == nil || pg == nil || fe == nil || dns == nil {
		return []Call{{Err: errors.New("demo manifests lack a pod of the story")}}
	}
	dnsAddr := net.JoinHostPort(dns.IP.String(), "53")
	var calls []Call
	lookup := func(from *Pod, name string) {
		_, err := LookupA(ctx, from.Netns.Dial, dnsAddr, name)
		calls = append(calls, Call{From: ID(from), To: ID(dns), Port: 53, Proto: "UDP", Err: err})
	}
	request := func(from, to *Pod, port int, timeout time.Duration) {
		calls = append(calls, Call{From: ID(from), To: ID(to), Port: port, Proto: "TCP", Err: RequestTCP(ctx, from.Netns, to.IP, port, timeout)})
	}
	lookup(gw, AppPayments+"."+pay.Namespace+".svc.cluster.local")
	request(gw, pay, 8080, 2*time.Second)
	lookup(pay, AppPostgres+"."+pg.Namespace+".svc.cluster.local")
	request(pay, pg, 5432, 2*time.Second)
	// Denied by policy: their SYNs are dropped, so they time out.
	request(fe, pg, 5432, 700*time.Millisecond)
	request(pay, fe, 80, 700*time.Millisecond)
	request(gw, fe, ClosedPort, 2*time.Second)
	return calls
}

// RequestTCP opens a TCP connection from a pod and writes one request line.
func RequestTCP(ctx context.Context, from *testbed.Pod, to netip.Addr, port int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := from.Dial(ctx, "tcp", net.JoinHostPort(to.String(), strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, c)
	return err
}

// RunTraffic repeats Round every interval until ctx ends.
func (s *Stack) RunTraffic(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Burst fills the node's conntrack table: it lowers nf_conntrack_max to
// ConntrackMax (holding the machine-wide conntrack lock), opens that many
// long-lived TCP connections from the loadgen pod to the frontend pod and a
// few more that the full table refuses, holds them for hold, then closes
// them with RST (so their entries expire in seconds, not TIME_WAIT's
// minutes) and restores the limit. It returns how many connections were
// open at the peak.
func (s *Stack) Burst(ctx context.Context, hold time.Duration) (int, error) {
	src, dst := s.PodByApp(AppLoadgen), s.PodByApp(AppFrontend)
	if src == nil || dst == nil {
		return 0, errors.New("demo manifests lack the loadgen or frontend pod")
	}
	lock, err := testbed.LockConntrack(ctx)
	if err != nil {
		return 0, err
	}
	defer lock.Unlock()
	if err := lock.SetMax(s.cfg.ConntrackMax); err != nil {
		return 0, err
	}
	s.logf("conntrack burst: nf_conntrack_max lowered to %d, loadgen opens connections to frontend:80", s.cfg.ConntrackMax)

	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	defer func() {
		for _, c := range conns {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
		}
	}()
	target := net.JoinHostPort(dst.IP.String(), "80")
	attempts := s.cfg.ConntrackMax + s.cfg.ConntrackMax/4
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := 0; i < attempts && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			defer cancel()
			c, err := src.Netns.Dial(dctx, "tcp", target)
			if err != nil {
				return // refused by the full table: that is the point
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.logf("conntrack burst: %d connections open, holding %s", len(conns), hold)
	select {
	case <-ctx.Done():
	case <-time.After(hold):
	}
	return len(conns), nil
}

// ID is a pod's "namespace/name".
func ID(p *Pod) string { return p.Namespace + "/" + p.Name }
