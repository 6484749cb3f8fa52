package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/trawl-dev/trawl/internal/testbed"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// A small DNS server for the tests, written with dnsmessage: A records for
// the names in dnsZone, NXDOMAIN for the rest, and slowName answered after
// slowDelay.
const (
	slowName  = "slow.demo.test."
	slowDelay = 150 * time.Millisecond
)

type dnsAnswer struct {
	ips  []string
	ttls []uint32
}

var dnsZone = map[string]dnsAnswer{
	"web.demo.test.": {ips: []string{"10.1.2.3", "10.1.2.4"}, ttls: []uint32{300, 30}},
	slowName:         {ips: []string{"10.1.2.5"}, ttls: []uint32{60}},
}

// answer builds the response to a query; nil for what is not a query.
func answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	if qs[0].Name.String() == slowName {
		time.Sleep(slowDelay)
	}
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true}, Questions: qs}
	z, ok := dnsZone[qs[0].Name.String()]
	if !ok {
		m.RCode = dnsmessage.RCodeNameError
	}
	for i, ip := range z.ips {
		m.Answers = append(m.Answers, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: qs[0].Name, Class: dnsmessage.ClassINET, TTL: z.ttls[i]},
			Body:   &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()},
		})
	}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

// serveDNS answers on UDP and TCP port 53 of the pod until the test ends.
func serveDNS(t *testing.T, pod *testbed.Pod) {
	t.Helper()
	serveDNSOn(t, pod.ListenPacket, pod.Listen, pod.IP)
}

// serveDNSOn answers on UDP and TCP port 53 of ip, with listeners of a
// namespace (a pod's, or net's for the test's own).
func serveDNSOn(t *testing.T, listenPacket func(string, string) (net.PacketConn, error), listen func(string, string) (net.Listener, error), ip netip.Addr) {
	t.Helper()
	addr := net.JoinHostPort(ip.String(), "53")
	pc, err := listenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { pc.Close(); ln.Close(); wg.Wait() })
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := append([]byte(nil), buf[:n]...)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := answer(q); r != nil {
					pc.WriteTo(r, from)
				}
			}()
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				var l [2]byte
				for {
					if _, err := io.ReadFull(c, l[:]); err != nil {
						return
					}
					q := make([]byte, binary.BigEndian.Uint16(l[:]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					r := answer(q)
					if r == nil {
						return
					}
					// Prefix and message in one write: one segment.
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(r))), r...))
				}
			}()
		}
	}()
}

func packQuery(t *testing.T, id uint16, name string) []byte {
	t.Helper()
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lookup is one query the client made and what it saw.
type lookup struct {
	proto      string // "udp" or "tcp"
	name       string
	id         uint16
	clientPort uint32
	elapsed    time.Duration // query written to response read, as the client measured
	rcode      dnsmessage.RCode
}

// query sends one query from the client pod and waits for the answer.
func query(t *testing.T, client *testbed.Pod, server netip.Addr, proto, name string, id uint16) lookup {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, proto, net.JoinHostPort(server.String(), "53"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	q := packQuery(t, id, name)
	if proto == "tcp" {
		q = append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)
	}
	l := lookup{proto: proto, name: name, id: id}
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	p, _ := strconv.Atoi(port)
	l.clientPort = uint32(p)
	start := time.Now()
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	var resp []byte
	if proto == "tcp" {
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			t.Fatalf("%s %s: %v", proto, name, err)
		}
		resp = buf[:binary.BigEndian.Uint16(buf)]
		if _, err := io.ReadFull(c, resp); err != nil {
			t.Fatalf("%s %s: %v", proto, name, err)
		}
	} else {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%s %s: %v", proto, name, err)
		}
		resp = buf[:n]
	}
	l.elapsed = time.Since(start)
	var p2 dnsmessage.Parser
	h, err := p2.Start(resp)
	if err != nil || h.ID != id {
		t.Fatalf("%s %s: bad response (%v, id %d)", proto, name, err, h.ID)
	}
	l.rcode = h.RCode
	return l
}

func ports(f *flowv1.Flow) (src, dst uint32) {
	if u := f.GetL4().GetUDP(); u != nil {
		return u.SourcePort, u.DestinationPort
	}
	if tc := f.GetL4().GetTCP(); tc != nil {
		return tc.SourcePort, tc.DestinationPort
	}
	return 0, 0
}

func l7Records(a *agent) []*flowv1.Flow {
	var out []*flowv1.Flow
	for _, r := range a.records() {
		if f := r.GetFlow(); f.GetEventKind() == flowv1.EventKind_L7_EVENT || f.GetType() == flowv1.FlowType_L7 {
			out = append(out, f)
		}
	}
	return out
}

// scrape reads the agent's /metrics.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
	body, _ := io.ReadAll(c)
	return string(body)
}

func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no series %s in /metrics", series)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestDNSQueriesAndResponsesOverUDPAndTCPBecomeL7RecordsWithLatency(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "dns"}})
	client, server := bed.Pod("client"), bed.Pod("dns")
	serveDNS(t, server)
	metricsAddr := net.JoinHostPort(bed.NodeAddr.String(), "9965")
	a := startAgent(t, bed, "--fate-wait", "1s", "--metrics-address", metricsAddr)

	var lookups []lookup
	id := uint16(100)
	for _, proto := range []string{"udp", "tcp"} {
		for _, name := range []string{"web.demo.test.", "missing.demo.test.", slowName} {
			id++
			lookups = append(lookups, query(t, client, server.IP, proto, name, id))
		}
	}
	// A packet to port 53 that is not DNS, and traffic on other ports.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	junk, err := client.Dial(ctx, "udp", net.JoinHostPort(server.IP.String(), "53"))
	if err != nil {
		t.Fatal(err)
	}
	junk.Write([]byte("this is not a DNS message"))
	junk.Close()
	other, err := client.Dial(ctx, "udp", net.JoinHostPort(server.IP.String(), "5300"))
	if err != nil {
		t.Fatal(err)
	}
	other.Write(packQuery(t, 999, "web.demo.test.")) // DNS bytes, but not on a DNS port
	other.Close()
	ln, received := tcpSink(t, server, net.JoinHostPort(server.IP.String(), "0"))
	if c, err := client.Dial(ctx, "tcp", ln.Addr().String()); err == nil {
		c.Write(make([]byte, 10000))
		c.Close()
		<-received
	}

	last := lookups[len(lookups)-1]
	a.waitFor(t, 10*time.Second, "the last lookup's response record", func(r *observerv1.GetFlowsResponse) bool {
		f := r.GetFlow()
		_, dp := ports(f)
		return f.GetL7().GetType() == flowv1.L7FlowType_RESPONSE && dp == last.clientPort
	})
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, scrape(t, metricsAddr), `trawl_agent_dns_messages_total{outcome="malformed"}`) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the malformed DNS message was not counted in trawl_agent_dns_messages_total")
		}
		time.Sleep(100 * time.Millisecond)
	}
	body := scrape(t, metricsAddr)
	if v := metricValue(t, body, `trawl_agent_dns_matching_total{result="matched"}`); v != float64(len(lookups)) {
		t.Errorf("matched responses %v, want %d", v, len(lookups))
	}
	a.stop(t)

	recs := l7Records(a)
	for _, f := range recs {
		sp, dp := ports(f)
		if sp != 53 && dp != 53 {
			t.Errorf("L7 record of traffic that is not on port 53: %v", f)
		}
	}
	node := "test-" + bed.ID
	for _, l := range lookups {
		t.Run(fmt.Sprintf("%s %s", l.proto, l.name), func(t *testing.T) {
			var req, resp []*flowv1.Flow
			for _, f := range recs {
				sp, dp := ports(f)
				isProto := (l.proto == "udp") == (f.GetL4().GetUDP() != nil)
				switch {
				case isProto && sp == l.clientPort && dp == 53 && f.IP.Source == client.IP.String():
					req = append(req, f)
				case isProto && sp == 53 && dp == l.clientPort && f.IP.Source == server.IP.String():
					resp = append(resp, f)
				}
			}
			if len(req) != 1 || len(resp) != 1 {
				t.Fatalf("%d request and %d response records, want one each:\n%v\n%v", len(req), len(resp), req, resp)
			}
			q, r := req[0], resp[0]
			for _, f := range []*flowv1.Flow{q, r} {
				if f.Type != flowv1.FlowType_L7 || f.EventKind != flowv1.EventKind_L7_EVENT || f.Verdict != flowv1.Verdict_FORWARDED ||
					f.NodeName != node || f.ObservationPoint != "tcx-ingress" || f.GetL7().GetDns().GetObservationSource() != "tcx-ingress" ||
					f.TrafficDirection != flowv1.TrafficDirection_EGRESS || f.Time == nil || f.Packets != 0 {
					t.Errorf("record %v: want L7, L7_EVENT, FORWARDED, node %s, tcx-ingress, EGRESS of the sending pod, a time, no packets", f, node)
				}
				if d := f.GetL7().GetDns(); d.Query != l.name || !slices.Equal(d.Qtypes, []string{"A"}) {
					t.Errorf("record %v: want query %s, qtypes [A]", f, l.name)
				}
			}
			if q.GetL7().Type != flowv1.L7FlowType_REQUEST || q.IsReply == nil || q.IsReply.Value || q.Interface.GetName() != client.HostVeth ||
				q.L7.LatencyNs != 0 || q.GetL7().GetDns().Rcode != 0 || len(q.GetL7().GetDns().Ips) != 0 {
				t.Errorf("request %v: want REQUEST, not a reply, seen on %s, no latency or answer", q, client.HostVeth)
			}
			d := r.GetL7().GetDns()
			if r.GetL7().Type != flowv1.L7FlowType_RESPONSE || r.IsReply == nil || !r.IsReply.Value || r.Interface.GetName() != server.HostVeth ||
				r.IP.Destination != client.IP.String() || d.Rcode != uint32(l.rcode) {
				t.Errorf("response %v: want RESPONSE, a reply to %s, seen on %s, rcode %d", r, client.IP, server.HostVeth, l.rcode)
			}
			want, ok := dnsZone[l.name]
			if !ok && (d.Rcode != 3 || len(d.Ips) != 0 || d.Ttl != 0) {
				t.Errorf("response %v: want NXDOMAIN without addresses", r)
			}
			if ok && (!slices.Equal(d.Ips, want.ips) || d.Ttl != slices.Min(want.ttls) || !slices.Equal(d.Rrtypes, []string{"A"})) {
				t.Errorf("response %v: want addresses %v, TTL %d, rrtypes [A]", r, want.ips, slices.Min(want.ttls))
			}
			// The node sees the query after the client sent it and the
			// response before the client read it.
			lat := time.Duration(r.GetL7().LatencyNs)
			if lat <= 0 || lat > l.elapsed {
				t.Errorf("latency %s, want in (0, %s] (what the client measured)", lat, l.elapsed)
			}
			if l.name == slowName && (lat < l.elapsed*9/10 || lat < slowDelay) {
				t.Errorf("latency %s of the slow name, want within 10%% of the client's %s and at least the server's delay %s", lat, l.elapsed, slowDelay)
			}
		})
	}
}

func TestADroppedDNSQueryIsDroppedWithTheKernelsReasonNeverForwarded(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "dns"}})
	client, server := bed.Pod("client"), bed.Pod("dns")
	serveDNS(t, server)
	// Queries from one client port never reach the server.
	const blocked = 5999
	if _, err := bed.Node.Run(context.Background(), "iptables", "-I", "FORWARD", "-p", "udp", "--sport", strconv.Itoa(blocked), "--dport", "53", "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, bed, "--fate-wait", "1s")
	pc, err := client.ListenPacket("udp", net.JoinHostPort(client.IP.String(), strconv.Itoa(blocked)))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo(packQuery(t, 7, "web.demo.test."), &net.UDPAddr{IP: server.IP.AsSlice(), Port: 53}); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, _, err := pc.ReadFrom(make([]byte, 512)); err == nil {
		t.Fatal("the blocked query was answered")
	}
	// One answered query beside it, so the test also sees a FORWARDED one.
	ok := query(t, client, server.IP, "udp", "web.demo.test.", 8)
	r := a.waitFor(t, 10*time.Second, "the blocked query's record", func(r *observerv1.GetFlowsResponse) bool {
		sp, _ := ports(r.GetFlow())
		return r.GetFlow().GetL7().GetType() == flowv1.L7FlowType_REQUEST && sp == blocked
	})
	if f := r.GetFlow(); f.Verdict != flowv1.Verdict_DROPPED || f.DropReasonKernel != "NETFILTER_DROP" {
		t.Errorf("blocked query %v: want DROPPED, NETFILTER_DROP", f)
	}
	r = a.waitFor(t, 10*time.Second, "the answered query's record", func(r *observerv1.GetFlowsResponse) bool {
		sp, _ := ports(r.GetFlow())
		return r.GetFlow().GetL7().GetType() == flowv1.L7FlowType_REQUEST && sp == ok.clientPort
	})
	if f := r.GetFlow(); f.Verdict != flowv1.Verdict_FORWARDED {
		t.Errorf("answered query %v: want FORWARDED", f)
	}
	a.stop(t)
}

func TestDNSMessagesOverTheRateLimitAreReportedAsLostEvents(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "dns"}})
	client, server := bed.Pod("client"), bed.Pod("dns")
	// One message per second per CPU (burst 2): 100 queries overflow it.
	a := startAgent(t, bed, "--dns-rate", "1", "--disable-drops")
	pc, err := client.ListenPacket("udp", net.JoinHostPort(client.IP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const n = 100
	for i := 0; i < n; i++ {
		pc.WriteTo(packQuery(t, uint16(i), "web.demo.test."), &net.UDPAddr{IP: server.IP.AsSlice(), Port: 53})
	}
	a.waitFor(t, 10*time.Second, "a RATE_LIMITED lost-events record for DNS", func(r *observerv1.GetFlowsResponse) bool {
		le := r.GetLostEvents()
		return le.GetSource() == flowv1.LostEventSource_RATE_LIMITED && strings.Contains(le.Detail, "DNS")
	})
	a.stop(t)
	var lost uint64
	for _, r := range a.records() {
		if le := r.GetLostEvents(); le.GetSource() == flowv1.LostEventSource_RATE_LIMITED && strings.Contains(le.Detail, "DNS") {
			lost += le.NumEventsLost
		}
	}
	requests := 0
	for _, f := range l7Records(a) {
		if f.GetL7().GetType() == flowv1.L7FlowType_REQUEST {
			requests++
		}
	}
	// Every query is either a record or counted as lost.
	if uint64(requests)+lost != n || requests == 0 {
		t.Errorf("%d request records + %d lost = %d, want %d with some records", requests, lost, uint64(requests)+lost, n)
	}
}

func TestDNSPortsFlagTakesUpToFourPortsOrNone(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want []uint16
		err  bool
	}{
		{[]string{"53"}, []uint16{53}, false},
		{[]string{"53", "5353"}, []uint16{53, 5353}, false},
		{[]string{"none"}, []uint16{}, false},
		{[]string{"0"}, nil, true},
		{[]string{"dns"}, nil, true},
		{[]string{"1", "2", "3", "4", "5"}, nil, true},
	} {
		got, err := parseDNSPorts(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("parseDNSPorts(%v) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	if _, err := parseDNSPorts([]string{"x"}); err == nil || !strings.Contains(err.Error(), "--dns-ports") {
		t.Errorf("error %v does not name the flag", err)
	}
}

func TestDNSQueriesTheNodeSendsOverUDPAndTCPAreSeenAtLocalOutAndMatched(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"dns"}})
	server := bed.Pod("dns")
	serveDNS(t, server)
	a := startAgent(t, bed, "--fate-wait", "1s")
	node := &testbed.Pod{Netns: bed.Node}
	// TCP from a local socket carries its payload in page fragments: the
	// program reads it through a dynptr, not from the linear data.
	lookups := []lookup{query(t, node, server.IP, "udp", slowName, 41), query(t, node, server.IP, "tcp", slowName, 42)}
	waitForResponses(t, a, lookups)
	a.stop(t)
	for _, l := range lookups {
		t.Run(l.proto, func(t *testing.T) {
			req, resp := exchangeOf(t, a, l)
			if req.ObservationPoint != "netfilter-local-out" || req.GetL7().GetDns().GetObservationSource() != "netfilter-local-out" ||
				req.GetL7().GetDns().GetQuery() != slowName || req.Interface.GetName() != server.HostVeth ||
				req.Verdict != flowv1.Verdict_FORWARDED || req.Source.GetIdentity() != 1 {
				t.Errorf("request %v: want %s seen at netfilter-local-out toward %s, FORWARDED, from reserved:host", req, slowName, server.HostVeth)
			}
			lat := time.Duration(resp.GetL7().LatencyNs)
			if resp.ObservationPoint != "tcx-ingress" || lat < slowDelay || lat > l.elapsed {
				t.Errorf("response %v: want seen at tcx-ingress, latency %s in [%s, %s]", resp, lat, slowDelay, l.elapsed)
			}
		})
	}
}

func TestAResponseFromBehindAServiceDNATIsMatchedWithItsQuery(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "dns"}})
	client, server := bed.Pod("client"), bed.Pod("dns")
	serveDNS(t, server)
	// kube-proxy's way: the Service address is translated to the pod's in
	// the node's PREROUTING, after the tcx hooks saw the packet.
	const service = "10.96.0.10"
	for _, proto := range []string{"udp", "tcp"} {
		if _, err := bed.Node.Run(context.Background(), "iptables", "-t", "nat", "-A", "PREROUTING", "-d", service, "-p", proto, "--dport", "53",
			"-j", "DNAT", "--to-destination", server.IP.String()+":53"); err != nil {
			t.Fatal(err)
		}
	}
	a := startAgent(t, bed, "--fate-wait", "1s")
	lookups := []lookup{
		query(t, client, netip.MustParseAddr(service), "udp", slowName, 51),
		query(t, client, netip.MustParseAddr(service), "tcp", slowName, 52),
	}
	waitForResponses(t, a, lookups)
	a.stop(t)
	for _, l := range lookups {
		t.Run(l.proto, func(t *testing.T) {
			req, resp := exchangeOf(t, a, l)
			// Each record keeps its packet's addresses.
			if req.IP.Destination != service || resp.IP.Source != server.IP.String() {
				t.Errorf("request to %s, response from %s: want %s and %s", req.IP.Destination, resp.IP.Source, service, server.IP)
			}
			lat := time.Duration(resp.GetL7().LatencyNs)
			if lat < slowDelay || lat > l.elapsed {
				t.Errorf("response %v: latency %s, want in [%s, %s]", resp, lat, slowDelay, l.elapsed)
			}
		})
	}
}

func TestAResponseToAMasqueradedQueryIsMatchedWithItsQuery(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client"}})
	client := bed.Pod("client")
	// An upstream resolver outside the node (in the test's own namespace,
	// behind the node's uplink); the node masquerades what pods send there.
	serveDNSOn(t, net.ListenPacket, net.Listen, bed.RootAddr)
	if _, err := bed.Node.Run(context.Background(), "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", bed.NodeLink, "-j", "MASQUERADE"); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, bed, "--fate-wait", "1s")
	lookups := []lookup{
		query(t, client, bed.RootAddr, "udp", slowName, 61),
		query(t, client, bed.RootAddr, "tcp", slowName, 62),
	}
	for _, l := range lookups {
		a.waitFor(t, 10*time.Second, "the response of the "+l.proto+" query", func(r *observerv1.GetFlowsResponse) bool {
			return r.GetFlow().GetL7().GetType() == flowv1.L7FlowType_RESPONSE && r.GetFlow().GetL7().GetDns().GetQuery() == slowName &&
				(l.proto == "udp") == (r.GetFlow().GetL4().GetUDP() != nil)
		})
	}
	a.stop(t)
	for _, l := range lookups {
		t.Run(l.proto, func(t *testing.T) {
			var req, resp *flowv1.Flow
			for _, f := range l7Records(a) {
				if (l.proto == "udp") != (f.GetL4().GetUDP() != nil) {
					continue
				}
				sp, dp := ports(f)
				switch {
				case f.L7.Type == flowv1.L7FlowType_REQUEST && sp == l.clientPort && dp == 53:
					req = f
				case f.L7.Type == flowv1.L7FlowType_RESPONSE && sp == 53:
					resp = f
				}
			}
			if req == nil || resp == nil {
				t.Fatalf("request %v, response %v: want both", req, resp)
			}
			// The response was seen on the uplink, to the node's address.
			if req.IP.Source != client.IP.String() || resp.IP.Destination != bed.NodeAddr.String() || resp.Interface.GetName() != bed.NodeLink {
				t.Errorf("request from %s, response to %s on %s: want %s, and %s on %s", req.IP.Source, resp.IP.Destination,
					resp.Interface.GetName(), client.IP, bed.NodeAddr, bed.NodeLink)
			}
			lat := time.Duration(resp.GetL7().LatencyNs)
			if lat < slowDelay || lat > l.elapsed {
				t.Errorf("response %v: latency %s, want in [%s, %s]", resp, lat, slowDelay, l.elapsed)
			}
		})
	}
}

// waitForResponses waits until the agent has published the response of
// every lookup.
func waitForResponses(t *testing.T, a *agent, lookups []lookup) {
	t.Helper()
	for _, l := range lookups {
		a.waitFor(t, 10*time.Second, "the response of the "+l.proto+" query", func(r *observerv1.GetFlowsResponse) bool {
			_, dp := ports(r.GetFlow())
			return r.GetFlow().GetL7().GetType() == flowv1.L7FlowType_RESPONSE && dp == l.clientPort
		})
	}
}

// exchangeOf finds a lookup's request and response records among the
// agent's L7 records; both must be there.
func exchangeOf(t *testing.T, a *agent, l lookup) (req, resp *flowv1.Flow) {
	t.Helper()
	for _, f := range l7Records(a) {
		sp, dp := ports(f)
		if (l.proto == "udp") != (f.GetL4().GetUDP() != nil) {
			continue
		}
		switch {
		case sp == l.clientPort && dp == 53:
			req = f
		case sp == 53 && dp == l.clientPort:
			resp = f
		}
	}
	if req == nil || resp == nil {
		t.Fatalf("request %v, response %v: want both", req, resp)
	}
	return req, resp
}
