package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
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

	// AppUpstreamDNS is the resolver the cluster DNS forwards SlowZone to.
	AppUpstreamDNS = "upstream-dns"

	// ClosedPort has no listener on the frontend pod: connections to it are
	// refused by the kernel (drop reason NO_SOCKET).
	ClosedPort = 7070

	// StormName is a misspelt service (api-gateway.api-gateway) that the
	// StormApp pod keeps asking for, three times a round, through its
	// search list: with ndots:5 that is four names, all NXDOMAIN (the
	// search-list storm).
	StormName = "api-gatway.api-gateway"
	StormApp  = AppFrontend

	// SlowName is in SlowZone, which the cluster DNS forwards to the
	// upstream-dns pod; that one answers SlowAddr after UpstreamDelay. The
	// SlowApp pod asks for it in every round.
	SlowZone      = "partner.example"
	SlowName      = "api.partner.example."
	SlowApp       = AppPayments
	UpstreamDelay = 200 * time.Millisecond
)

// SlowAddr is the upstream's answer for SlowName.
var SlowAddr = netip.MustParseAddr("198.51.100.20")

// PodByApp returns the pod whose app (or k8s-app) label is app.
func (s *Stack) PodByApp(app string) *Pod {
	for _, p := range s.Pods {
		if p.Labels["app"] == app || p.Labels["k8s-app"] == app {
			return p
		}
	}
	return nil
}

// StartServers starts the demo's servers inside their pods: cluster DNS
// (forwarding SlowZone to the slow upstream-dns pod), payment-service
// :8080, postgres :5432, api-gateway :80, frontend :80. They stop when ctx
// ends. It also sets up the TCP story's impairments: the slow link of
// SlowLinkApp's pod and the black hole of DarkAddr (removed by Close).
func (s *Stack) StartServers(ctx context.Context) error {
	records := map[string]netip.Addr{}
	for _, p := range s.Pods {
		app := p.Labels["app"]
		if app == "" {
			app = p.Labels["k8s-app"]
		}
		records[app+"."+p.Namespace+".svc.cluster.local"] = p.IP
	}
	dns, upstream := s.PodByApp(AppDNS), s.PodByApp(AppUpstreamDNS)
	if dns == nil || upstream == nil {
		return errors.New("demo manifests lack the kube-dns or the upstream-dns pod")
	}
	upc, err := upstream.Netns.ListenPacket("udp", ":53")
	if err != nil {
		return fmt.Errorf("dns listen in %s: %w", upstream.Name, err)
	}
	go NewDNSServer(upc, map[string]netip.Addr{SlowName: SlowAddr}).Delay(UpstreamDelay).Serve(ctx)
	pc, err := dns.Netns.ListenPacket("udp", ":53")
	if err != nil {
		return fmt.Errorf("dns listen in %s: %w", dns.Name, err)
	}
	go NewDNSServer(pc, records).Forward(SlowZone, net.JoinHostPort(upstream.IP.String(), "53"), dns.Netns.Dial).Serve(ctx)

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
	return s.startTCPStory(ctx)
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
// postgres:5432 over the slow link, DNS lookups of the story's services
// and of SlowName), denied ones (frontend → postgres:5432,
// payment-service → frontend:80), one to a closed port (api-gateway →
// frontend:7070, reset by the server) and one to the blackholed DarkAddr
// (api-gateway, a connect timeout). Every TCP attempt is in TCPConnects. The round also runs
// the DNS storm (StormApp asking for StormName), which fails by design and
// is not among the calls; every DNS exchange is in DNSLookups.
func (s *Stack) Round(ctx context.Context) []Call {
	gw, pay, pg, fe, dns := s.PodByApp(AppGateway), s.PodByApp(AppPayments), s.PodByApp(AppPostgres), s.PodByApp(AppFrontend), s.PodByApp(AppDNS)
	storm, slow := s.PodByApp(StormApp), s.PodByApp(SlowApp)
	if gw == nil || pay == nil || pg == nil || fe == nil || dns == nil || storm == nil || slow == nil {
		return []Call{{Err: errors.New("demo manifests lack a pod of the story")}}
	}
	dnsAddr := net.JoinHostPort(dns.IP.String(), "53")
	var calls []Call
	resolve := func(from *Pod, name string) error {
		_, tried, err := PodResolver(dnsAddr, from.Namespace, from.Netns.Dial).LookupA(ctx, name)
		s.recordDNS(from, tried)
		return err
	}
	lookup := func(from *Pod, name string) {
		calls = append(calls, Call{From: ID(from), To: ID(dns), Port: 53, Proto: "UDP", Err: resolve(from, name)})
	}
	request := func(from, to *Pod, port int, timeout time.Duration) {
		calls = append(calls, Call{From: ID(from), To: ID(to), Port: port, Proto: "TCP", Err: s.connectTCP(ctx, from, ID(to), to.IP, port, timeout)})
	}
	// The blackholed partner: no answer ever comes, the client gives up
	// after a while (meanwhile the round goes on).
	dark := s.PodByApp(DarkApp)
	darkDone := make(chan error, 1)
	if dark != nil {
		go func() {
			darkDone <- s.connectTCP(ctx, dark, DarkAddr.String(), DarkAddr, DarkPort, 1500*time.Millisecond)
		}()
	} else {
		darkDone <- errors.New("demo manifests lack the " + DarkApp + " pod")
	}
	// Fully qualified names (trailing dot): one query each, no search list.
	lookup(gw, AppPayments+"."+pay.Namespace+".svc.cluster.local.")
	request(gw, pay, 8080, 2*time.Second)
	lookup(pay, AppPostgres+"."+pg.Namespace+".svc.cluster.local.")
	request(pay, pg, 5432, 2*time.Second)
	lookup(slow, SlowName)
	// The storming client retries its misspelt name, as clients do.
	for range stormRetries {
		_ = resolve(storm, StormName)
	}
	// Denied by policy: their SYNs are dropped, so they time out.
	request(fe, pg, 5432, 700*time.Millisecond)
	request(pay, fe, 80, 700*time.Millisecond)
	request(gw, fe, ClosedPort, 2*time.Second)
	calls = append(calls, Call{From: ID(gw), To: DarkAddr.String(), Port: DarkPort, Proto: "TCP", Err: <-darkDone})
	return calls
}

// stormRetries is how often StormApp asks for StormName per round: with
// its four search-list names, 12 NXDOMAIN answers a round.
const stormRetries = 3

// maxDNSLog bounds the lookups a stack remembers (the newest are kept).
const maxDNSLog = 20000

func (s *Stack) recordDNS(from *Pod, tried []Lookup) {
	s.dnsMu.Lock()
	defer s.dnsMu.Unlock()
	for _, l := range tried {
		l.From = ID(from)
		s.dnsLog = append(s.dnsLog, l)
	}
	if n := len(s.dnsLog) - maxDNSLog; n > 0 {
		s.dnsLog = append(s.dnsLog[:0:0], s.dnsLog[n:]...)
	}
}

// DNSLookups returns every DNS exchange the demo's clients made (oldest
// first), each with the latency the client measured.
func (s *Stack) DNSLookups() []Lookup {
	s.dnsMu.Lock()
	defer s.dnsMu.Unlock()
	return slices.Clone(s.dnsLog)
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
	return requestReply(c, timeout)
}

// requestReply writes one request line and reads the reply to its end.
func requestReply(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, c)
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
