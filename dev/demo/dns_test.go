package demo

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// serveDNS starts srv on conn until the test ends.
func serveDNS(t *testing.T, srv *DNSServer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

func listenUDP(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

var dialer net.Dialer

func TestDNSServerAnswersClusterNamesAndRefusesOthers(t *testing.T) {
	pc := listenUDP(t)
	serveDNS(t, NewDNSServer(pc, map[string]netip.Addr{
		"postgres.databases.svc.cluster.local": netip.MustParseAddr("10.96.0.20"),
	}))
	tests := []struct {
		name    string
		want    string
		wantErr string
	}{
		{"postgres.databases.svc.cluster.local", "10.96.0.20", ""},
		{"POSTGRES.databases.svc.cluster.local.", "10.96.0.20", ""},
		{"missing.databases.svc.cluster.local", "", "NXDOMAIN"},
		{strings.Repeat("x", 64) + ".svc.cluster.local", "", "build query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LookupA(context.Background(), dialer.DialContext, pc.LocalAddr().String(), tt.name)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LookupA = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("LookupA = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestDNSServerAnswersAnotherTypeOfAKnownNameWithNoRecord(t *testing.T) {
	s := NewDNSServer(nil, map[string]netip.Addr{"web.shop.svc.cluster.local": netip.MustParseAddr("10.1.0.5")})
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("web.shop.svc.cluster.local."), Type: dnsmessage.TypeAAAA, Class: dnsmessage.ClassINET})
	q, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(s.respond(context.Background(), q)); err != nil {
		t.Fatal(err)
	}
	if m.ID != 7 || !m.Response || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 || len(m.Questions) != 1 || !m.RecursionDesired {
		t.Errorf("answer %+v, want id 7, NOERROR, the question echoed, no records", m)
	}
}

func TestDNSServerIgnoresGarbageAndResponses(t *testing.T) {
	s := NewDNSServer(nil, nil)
	response := []byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1}
	for _, q := range [][]byte{nil, {1, 2, 3}, make([]byte, 12), {0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a'}, response} {
		if resp := s.respond(context.Background(), q); resp != nil {
			t.Errorf("respond(%v) = %v, want no answer", q, resp)
		}
	}
}

// The cluster DNS forwards partner.example to a slow upstream and relays its
// answer: the client gets the upstream's address, no sooner than its delay.
func TestDNSServerForwardsAZoneToItsSlowUpstream(t *testing.T) {
	const delay = 200 * time.Millisecond
	up := listenUDP(t)
	serveDNS(t, NewDNSServer(up, map[string]netip.Addr{"api.partner.example": netip.MustParseAddr("198.51.100.20")}).Delay(delay))
	cluster := listenUDP(t)
	serveDNS(t, NewDNSServer(cluster, map[string]netip.Addr{"web.shop.svc.cluster.local": netip.MustParseAddr("10.1.0.5")}).
		Forward("partner.example", up.LocalAddr().String(), dialer.DialContext))

	l := QueryA(context.Background(), dialer.DialContext, cluster.LocalAddr().String(), "api.partner.example.")
	if l.Err != nil || l.Rcode != "NOERROR" || l.Addr != netip.MustParseAddr("198.51.100.20") {
		t.Fatalf("lookup %+v, want NOERROR 198.51.100.20", l)
	}
	if l.Latency() < delay {
		t.Errorf("answered in %s, before the upstream's %s delay", l.Latency(), delay)
	}
	if l := QueryA(context.Background(), dialer.DialContext, cluster.LocalAddr().String(), "nope.partner.example."); l.Rcode != "NXDOMAIN" {
		t.Errorf("a name the upstream does not know: %+v, want its NXDOMAIN relayed", l)
	}
	if l := QueryA(context.Background(), dialer.DialContext, cluster.LocalAddr().String(), "web.shop.svc.cluster.local."); l.Rcode != "NOERROR" || l.Addr != netip.MustParseAddr("10.1.0.5") {
		t.Errorf("a cluster name: %+v, want NOERROR 10.1.0.5 from the cluster DNS itself", l)
	}
}

func TestDNSServerAnswersServfailWhenTheUpstreamIsUnreachable(t *testing.T) {
	gone := listenUDP(t)
	addr := gone.LocalAddr().String()
	gone.Close() // nothing listens there now: the forwarded query is refused
	cluster := listenUDP(t)
	serveDNS(t, NewDNSServer(cluster, nil).Forward("partner.example", addr, dialer.DialContext))
	if l := QueryA(context.Background(), dialer.DialContext, cluster.LocalAddr().String(), "api.partner.example."); l.Err != nil || l.Rcode != "SERVFAIL" {
		t.Errorf("lookup %+v, want SERVFAIL", l)
	}
}

// A pod's resolver with Kubernetes' ndots:5 tries a short name with every
// search domain first: a misspelt service is four NXDOMAIN answers.
func TestPodResolverWalksTheSearchListLikeNdots5(t *testing.T) {
	pc := listenUDP(t)
	serveDNS(t, NewDNSServer(pc, map[string]netip.Addr{"api-gateway.api-gateway.svc.cluster.local": netip.MustParseAddr("10.244.1.11")}))
	r := PodResolver(pc.LocalAddr().String(), "frontend", dialer.DialContext)
	names := func(ls []Lookup) (out []string) {
		for _, l := range ls {
			out = append(out, l.Name+" "+l.Rcode)
		}
		return out
	}

	_, tried, err := r.LookupA(context.Background(), "api-gatway.api-gateway")
	want := []string{
		"api-gatway.api-gateway.frontend.svc.cluster.local. NXDOMAIN",
		"api-gatway.api-gateway.svc.cluster.local. NXDOMAIN",
		"api-gatway.api-gateway.cluster.local. NXDOMAIN",
		"api-gatway.api-gateway. NXDOMAIN",
	}
	if err == nil || !slices.Equal(names(tried), want) {
		t.Errorf("misspelt name: tried %v (err %v), want %v and an error", names(tried), err, want)
	}

	addr, tried, err := r.LookupA(context.Background(), "api-gateway.api-gateway")
	want = []string{"api-gateway.api-gateway.frontend.svc.cluster.local. NXDOMAIN", "api-gateway.api-gateway.svc.cluster.local. NOERROR"}
	if err != nil || addr != netip.MustParseAddr("10.244.1.11") || !slices.Equal(names(tried), want) {
		t.Errorf("short name: %v after %v (err %v), want 10.244.1.11 after %v", addr, names(tried), err, want)
	}

	_, tried, err = r.LookupA(context.Background(), "api-gateway.api-gateway.svc.cluster.local.")
	if err != nil || len(tried) != 1 {
		t.Errorf("a fully qualified name: tried %v (err %v), want one query", names(tried), err)
	}
}
