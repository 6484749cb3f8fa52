package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/trawl-dev/trawl/internal/dnscodes"
)

// DialFunc creates a connection where its caller lives (a pod's network
// namespace).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DNSServer is the demo cluster's DNS: it answers A queries for the names
// of a fixed table (e.g. "postgres.databases.svc.cluster.local."),
// NXDOMAIN for other names, and forwards the names of some zones to an
// upstream server, like CoreDNS's `forward` plugin. The same type plays
// the upstream resolver, with a delay before every answer (the demo's slow
// upstream). Messages are parsed and built with
// golang.org/x/net/dns/dnsmessage; one question per query, class IN.
type DNSServer struct {
	conn    net.PacketConn
	records map[string]netip.Addr
	zones   []forwardZone
	delay   time.Duration
	wg      sync.WaitGroup
}

type forwardZone struct {
	zone     string // canonical, with the trailing dot
	upstream string // ip:port
	dial     DialFunc
}

// TTL of the demo DNS's answers, in seconds.
const dnsTTL = 30

// NewDNSServer serves on conn (already bound, possibly inside a pod's network
// namespace). Names are matched case-insensitively, with or without the
// trailing dot.
func NewDNSServer(conn net.PacketConn, records map[string]netip.Addr) *DNSServer {
	r := make(map[string]netip.Addr, len(records))
	for name, addr := range records {
		r[canonical(name)] = addr
	}
	return &DNSServer{conn: conn, records: r}
}

// Forward sends queries for names in zone (e.g. "partner.example") to the
// server at upstream (ip:port) over dial, and relays its answer; SERVFAIL
// when the upstream does not answer within 2 s.
func (s *DNSServer) Forward(zone, upstream string, dial DialFunc) *DNSServer {
	s.zones = append(s.zones, forwardZone{zone: canonical(zone), upstream: upstream, dial: dial})
	return s
}

// Delay makes the server wait d before each answer.
func (s *DNSServer) Delay(d time.Duration) *DNSServer {
	s.delay = d
	return s
}

// Serve answers until ctx ends or the connection is closed. Each query is
// answered on its own goroutine, so a slow upstream delays only its own
// names.
func (s *DNSServer) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		s.conn.Close()
	}()
	defer s.wg.Wait()
	for {
		buf := make([]byte, 1232)
		n, addr, err := s.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dns read: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			resp := s.respond(ctx, buf[:n])
			if resp == nil {
				return
			}
			if s.delay > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(s.delay):
				}
			}
			_, _ = s.conn.WriteTo(resp, addr)
		}()
	}
}

// respond returns the answer to the query msg, relayed from an upstream
// for forwarded zones; nil when msg is not a query with one question.
func (s *DNSServer) respond(ctx context.Context, msg []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	q := qs[0]
	name := canonical(q.Name.String())
	if q.Class == dnsmessage.ClassINET {
		for _, z := range s.zones {
			if name == z.zone || strings.HasSuffix(name, "."+z.zone) {
				if resp, err := exchange(ctx, z.dial, z.upstream, msg, 2*time.Second, nil, nil); err == nil {
					return resp
				}
				return s.answer(h, q, dnsmessage.RCodeServerFailure, netip.Addr{})
			}
		}
	}
	addr, ok := s.records[name]
	switch {
	case q.Class != dnsmessage.ClassINET:
		return s.answer(h, q, dnsmessage.RCodeNotImplemented, netip.Addr{})
	case !ok:
		return s.answer(h, q, dnsmessage.RCodeNameError, netip.Addr{})
	case q.Type != dnsmessage.TypeA || !addr.Is4():
		// The name exists, but has no record of that type.
		return s.answer(h, q, dnsmessage.RCodeSuccess, netip.Addr{})
	default:
		return s.answer(h, q, dnsmessage.RCodeSuccess, addr)
	}
}

// answer builds the response to the query with header h and question q:
// rcode and, when a is valid, one A record.
func (s *DNSServer) answer(h dnsmessage.Header, q dnsmessage.Question, rcode dnsmessage.RCode, a netip.Addr) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{
		ID: h.ID, Response: true, Authoritative: rcode != dnsmessage.RCodeServerFailure,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode,
	})
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil {
		return nil
	}
	if a.IsValid() {
		if b.StartAnswers() != nil {
			return nil
		}
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: dnsTTL}
		if b.AResource(rh, dnsmessage.AResource{A: a.As4()}) != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// exchange sends msg to server over a new UDP socket made by dial and
// returns the first message that answers it (same id). sent and received,
// when not nil, get the times the query left and the answer arrived: the
// socket's creation (a switch into the client's namespace, which a loaded
// machine can delay by hundreds of milliseconds) is not part of the
// exchange the node sees.
func exchange(ctx context.Context, dial DialFunc, server string, msg []byte, timeout time.Duration, sent, received *time.Time) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(ctx, "udp", server)
	if err != nil {
		return nil, fmt.Errorf("dns dial %s: %w", server, err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if sent != nil {
		*sent = time.Now()
	}
	if _, err := c.Write(msg); err != nil {
		return nil, fmt.Errorf("dns query %s: %w", server, err)
	}
	buf := make([]byte, 1232)
	for {
		n, err := c.Read(buf)
		if received != nil {
			*received = time.Now()
		}
		if err != nil {
			return nil, fmt.Errorf("dns answer from %s: %w", server, err)
		}
		if n >= 2 && len(msg) >= 2 && buf[0] == msg[0] && buf[1] == msg[1] {
			return buf[:n], nil
		}
	}
}

// Lookup is one DNS exchange of a demo client, as the client measured it:
// the name as asked (with the trailing dot), the answer's rcode
// (internal/dnscodes' name: NOERROR, NXDOMAIN, ...), its A record, and when
// the query left and the answer arrived.
type Lookup struct {
	From     string // "namespace/pod" of the client ("" outside the demo's pods)
	Server   string // ip:port
	Name     string
	Rcode    string
	Addr     netip.Addr
	Sent     time.Time
	Received time.Time
	Err      error // no answer (timeout, network)
}

// Latency is the time from the query's send to the answer's receipt.
func (l Lookup) Latency() time.Duration { return l.Received.Sub(l.Sent) }

// QueryA asks server (ip:port) for name's A record once, over dial: dial
// must create the socket where the client lives.
func QueryA(ctx context.Context, dial DialFunc, server, name string) Lookup {
	l := Lookup{Server: server, Name: canonical(name)}
	qn, err := dnsmessage.NewName(l.Name)
	if err != nil {
		l.Err = fmt.Errorf("dns: bad name %q: %w", name, err)
		return l
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{ID: uint16(rand.Uint32()), RecursionDesired: true})
	var msg []byte
	if err = b.StartQuestions(); err == nil {
		err = b.Question(dnsmessage.Question{Name: qn, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	}
	if err == nil {
		msg, err = b.Finish()
	}
	if err != nil {
		l.Err = fmt.Errorf("dns: build query for %q: %w", name, err)
		return l
	}
	timeout := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	resp, err := exchange(ctx, dial, server, msg, timeout, &l.Sent, &l.Received)
	if err != nil {
		l.Err = err
		return l
	}
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		l.Err = fmt.Errorf("dns: malformed answer from %s: %w", server, err)
		return l
	}
	l.Rcode = dnscodes.RcodeName(uint32(h.RCode))
	if err := p.SkipAllQuestions(); err != nil {
		l.Err = fmt.Errorf("dns: malformed answer from %s: %w", server, err)
		return l
	}
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			break // dnsmessage.ErrSectionDone, or a broken record: no address
		}
		if rh.Type != dnsmessage.TypeA {
			_ = p.SkipAnswer()
			continue
		}
		a, err := p.AResource()
		if err != nil {
			break
		}
		l.Addr = netip.AddrFrom4(a.A)
		break
	}
	return l
}

// LookupA asks server (ip:port) for name's A record over dial and returns
// the address; an rcode other than NOERROR or an answer without an A
// record is an error.
func LookupA(ctx context.Context, dial DialFunc, server, name string) (netip.Addr, error) {
	l := QueryA(ctx, dial, server, name)
	return l.Addr, l.result()
}

func (l Lookup) result() error {
	switch {
	case l.Err != nil:
		return l.Err
	case l.Rcode != dnscodes.RcodeName(dnscodes.NoError):
		return fmt.Errorf("dns: %s: %s", l.Name, l.Rcode)
	case !l.Addr.IsValid():
		return fmt.Errorf("dns: %s has no A record", l.Name)
	}
	return nil
}

// Resolver is a pod's stub resolver as Kubernetes configures it
// (/etc/resolv.conf): the cluster DNS, the search list of the pod's
// namespace and ndots:5.
type Resolver struct {
	Server string   // ip:port
	Search []string // e.g. frontend.svc.cluster.local, svc.cluster.local, cluster.local
	Ndots  int
	Dial   DialFunc
}

// PodResolver is the resolver of a pod of namespace ns with the cluster
// DNS at server.
func PodResolver(server, ns string, dial DialFunc) Resolver {
	return Resolver{Server: server, Search: []string{ns + ".svc.cluster.local", "svc.cluster.local", "cluster.local"}, Ndots: 5, Dial: dial}
}

// Names are the names the resolver asks for name, in order: a name with a
// trailing dot as it is; one with fewer than Ndots dots through the search
// list first, then as it is; others the other way round (glibc's rule).
func (r Resolver) Names(name string) []string {
	if strings.HasSuffix(name, ".") {
		return []string{canonical(name)}
	}
	var searched []string
	for _, s := range r.Search {
		searched = append(searched, canonical(name+"."+s))
	}
	if strings.Count(name, ".") < r.Ndots {
		return append(searched, canonical(name))
	}
	return append([]string{canonical(name)}, searched...)
}

// LookupA resolves name's A record through the search list, stopping at
// the first answer with an address, and returns every exchange it made.
func (r Resolver) LookupA(ctx context.Context, name string) (netip.Addr, []Lookup, error) {
	var tried []Lookup
	var err error
	for _, n := range r.Names(name) {
		l := QueryA(ctx, r.Dial, r.Server, n)
		tried = append(tried, l)
		if err = l.result(); err == nil {
			return l.Addr, tried, nil
		}
		if l.Err != nil {
			return netip.Addr{}, tried, err // no answer at all: the server is unreachable
		}
	}
	return netip.Addr{}, tried, err
}

func canonical(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}
