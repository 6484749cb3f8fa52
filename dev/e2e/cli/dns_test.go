package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/cli/app"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// dnsPair builds a DNS query from client to the cluster DNS and its
// answer, latency after it (0: not matched to the query).
func dnsPair(client *flowv1.Endpoint, clientIP string, port uint32, name, qtype string, rcode uint32, ips []string, latency time.Duration, at time.Time) []*flowv1.Flow {
	server := &flowv1.Endpoint{Namespace: "kube-system", PodName: "coredns-0", Workloads: []*flowv1.Workload{{Name: "coredns", Kind: "Deployment"}}}
	rec := func(src, dst *flowv1.Endpoint, sip, dip string, sp, dp uint32, l7 *flowv1.Layer7, t time.Time) *flowv1.Flow {
		return &flowv1.Flow{
			Time: timestamppb.New(t), Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_L7_EVENT, Type: flowv1.FlowType_L7,
			IP:     &flowv1.IP{Source: sip, Destination: dip, IpVersion: flowv1.IPVersion_IPv4},
			L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: sp, DestinationPort: dp}}},
			Source: src, Destination: dst, L7: l7, IsReply: wrapperspb.Bool(l7.GetType() == flowv1.L7FlowType_RESPONSE),
			FirstSeen: timestamppb.New(t), LastSeen: timestamppb.New(t),
		}
	}
	q := &flowv1.Layer7{Type: flowv1.L7FlowType_REQUEST, Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{Query: name, Qtypes: []string{qtype}, ObservationSource: "tcx-egress"}}}
	a := &flowv1.Layer7{Type: flowv1.L7FlowType_RESPONSE, LatencyNs: uint64(latency), Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{
		Query: name, Qtypes: []string{qtype}, Rcode: rcode, Ips: ips, Ttl: 30, ObservationSource: "tcx-ingress"}}}
	if len(ips) > 0 {
		a.GetDns().Rrtypes = []string{qtype}
	}
	return []*flowv1.Flow{
		rec(client, server, clientIP, "10.96.0.10", port, 53, q, at),
		rec(server, client, "10.96.0.10", clientIP, 53, port, a, at.Add(latency)),
	}
}

// records counts the flow records of -o json output.
func records(t *testing.T, out string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			Flow json.RawMessage `json:"flow"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		if r.Flow != nil {
			n++
		}
	}
	return n
}

// DNS records go through the real relay and ClickHouse: the DNS filters
// select them in history, compact output shows them in Hubble's shape, and
// `trawl top --dns` ranks them from the relay's DNS rollup.
func TestDNSRecordsThroughARealRelay(t *testing.T) {
	r := startRelay(t)
	s := startShipper(t, r.IngestAddr(), "node-dns")
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	web := &flowv1.Endpoint{Namespace: "shop", PodName: "web-1", Workloads: []*flowv1.Workload{{Name: "web", Kind: "Deployment"}}}
	amf := &flowv1.Endpoint{Namespace: "telco", PodName: "amf-1", Workloads: []*flowv1.Workload{{Name: "amf", Kind: "StatefulSet"}}}
	var fs []*flowv1.Flow
	for i, lat := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond} {
		fs = append(fs, dnsPair(web, "10.1.0.5", 41000+uint32(i), "api.example.com.", "A", 0, []string{"93.184.216.34"}, lat, base.Add(time.Duration(i)*time.Second))...)
	}
	for i := range 2 {
		fs = append(fs, dnsPair(web, "10.1.0.5", 42000+uint32(i), "paymnts.shop.svc.cluster.local.", "AAAA", 3, nil, 500*time.Microsecond, base.Add(time.Duration(10+i)*time.Second))...)
	}
	fs = append(fs, dnsPair(web, "10.1.0.5", 43000, "slow.example.net.", "A", 2, nil, 2*time.Second, base.Add(20*time.Second))...)
	fs = append(fs, dnsPair(amf, "10.1.0.7", 44000, "typo.example.", "A", 3, nil, 700*time.Microsecond, base.Add(30*time.Second))...)
	fs = append(fs, &flowv1.Flow{
		Time: timestamppb.New(base.Add(40 * time.Second)), Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4,
		IP:     &flowv1.IP{Source: "10.1.0.5", Destination: "93.184.216.34", IpVersion: flowv1.IPVersion_IPv4},
		L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: 45000, DestinationPort: 443, Flags: &flowv1.TCPFlags{SYN: true}}}},
		Source: web, Destination: &flowv1.Endpoint{Labels: []string{"reserved:world"}}, DestinationNames: []string{"api.example.com"},
		Packets: 10, Bytes: 4000, FirstSeen: timestamppb.New(base.Add(39 * time.Second)), LastSeen: timestamppb.New(base.Add(40 * time.Second)),
	})
	for _, f := range fs {
		publishFlow(s, f)
	}
	s.Flush()
	waitFor(t, "the shipper's batches to be stored", func() bool { q, _ := s.Stats(); return q == 0 })
	srv := r.ObserverAddr()
	ctx := context.Background()

	for _, tt := range []struct {
		name string
		args []string
		want int
	}{
		{"--type l7", []string{"--type", "l7"}, 14},
		{"--protocol dns leaves the flow out", []string{"--protocol", "dns"}, 14},
		{"--not --type l7", []string{"--not", "--type", "l7"}, 1},
		{"--dns-rcode NXDOMAIN", []string{"--dns-rcode", "NXDOMAIN"}, 3},
		{"--dns-rcode by number and name", []string{"--dns-rcode", "2,noerror"}, 4},
		{"--to-fqdn: the queries for the name and the flow to its address", []string{"--to-fqdn", "api.example.com"}, 4},
		{"--from-fqdn: the answers about the name", []string{"--from-fqdn", "*.example.com"}, 3},
		{"--fqdn either way", []string{"--fqdn", "API.example.com."}, 7},
		{"--dns-query", []string{"--dns-query", `cluster\.local\.$`}, 4},
		{"--dns-query with a client", []string{"--dns-query", `^typo\.`, "--from-namespace", "telco"}, 1},
	} {
		t.Run("observe "+tt.name, func(t *testing.T) {
			args := append([]string{"observe", "--server", srv, "--all", "-o", "json"}, tt.args...)
			code, out, errOut := trawl(t, ctx, args...)
			if code != app.ExitOK {
				t.Fatalf("%v: exit %d: %s", args, code, errOut)
			}
			if n := records(t, out); n != tt.want {
				t.Fatalf("%v printed %d records, want %d:\n%s", tt.args, n, tt.want, out)
			}
		})
	}

	t.Run("compact lines of a slow SERVFAIL", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "observe", "--server", srv, "--all", "--dns-query", `^slow\.`, "--color", "never")
		if code != app.ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, w := range []string{
			"shop/web-1:43000 -> kube-system/coredns-0:53 dns-request FORWARDED (DNS Query slow.example.net. A)",
			"shop/web-1:43000 <- kube-system/coredns-0:53 dns-response FORWARDED (DNS Answer RCode: Server Failure TTL: 30 (Query slow.example.net. A); latency 2s)",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	})

	t.Run("top --dns", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "top", "--dns", "--server", srv, "--since", "1h")
		if code != app.ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		tables := strings.Split(out, "\n\n")
		if len(tables) != 3 {
			t.Fatalf("want three tables:\n%s", out)
		}
		// Names by queries: api.example.com. (3) first.
		if l := strings.Fields(strings.Split(tables[0], "\n")[2]); l[0] != "api.example.com." || l[1] != "3" || l[2] != "0" {
			t.Errorf("top name row %v:\n%s", l, tables[0])
		}
		// NXDOMAIN clients: shop/web (2, asking for the misspelt service) before telco/amf (1).
		rows := strings.Split(tables[1], "\n")
		if l := strings.Fields(rows[2]); l[0] != "shop/web" || l[1] != "2" || l[3] != "paymnts.shop.svc.cluster.local." {
			t.Errorf("top NXDOMAIN client row %v:\n%s", l, tables[1])
		}
		if l := strings.Fields(rows[3]); l[0] != "telco/amf" || l[1] != "1" || l[3] != "typo.example." {
			t.Errorf("second NXDOMAIN client row %v:\n%s", l, tables[1])
		}
		// Slowest: slow.example.net. with a p99 near 2 s.
		if l := strings.Fields(strings.Split(tables[2], "\n")[2]); l[0] != "slow.example.net." || !strings.HasSuffix(l[1], "s") || strings.HasSuffix(l[1], "ms") {
			t.Errorf("slowest name row %v:\n%s", l, tables[2])
		}
	})

	t.Run("top --dns nxdomain -n telco -o json", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "top", "--dns", "nxdomain", "-n", "telco", "-o", "json", "--server", srv, "--since", "1h")
		if code != app.ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], `"source":"telco/amf"`) || !strings.Contains(lines[0], `"dns_nxdomain":"1"`) {
			t.Errorf("want telco/amf alone with one NXDOMAIN answer:\n%s", out)
		}
	})

	// Last: the answers it publishes would change the counts above.
	t.Run("follow selects live DNS answers with the same filter", func(t *testing.T) {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var out, errOut syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- app.Run(fctx, []string{"observe", "--server", srv, "-f", "--dns-rcode", "NXDOMAIN", "--from-fqdn", "late.example.", "--color", "never"},
				app.IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
		}()
		// The subscription starts asynchronously; keep publishing until one arrives.
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; !strings.Contains(out.String(), "dns-response"); i++ {
			if time.Now().After(deadline) {
				t.Fatalf("no live answer printed; stderr %q", errOut.String())
			}
			if i%20 == 0 {
				for _, f := range dnsPair(amf, "10.1.0.7", 46000, "late.example.", "A", 3, nil, time.Millisecond, time.Now()) {
					publishFlow(s, f)
				}
				s.Flush()
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		if code := <-done; code != app.ExitOK {
			t.Fatalf("exit %d after cancel: %s", code, errOut.String())
		}
		if got := out.String(); strings.Contains(got, "dns-request") ||
			!strings.Contains(got, "telco/amf-1:46000 <- kube-system/coredns-0:53 dns-response FORWARDED (DNS Answer RCode: Non-Existent Domain TTL: 30 (Query late.example. A); latency 1ms)") {
			t.Errorf("followed:\n%s", got)
		}
	})
}
