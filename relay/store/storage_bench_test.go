package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/dev/chtest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// dnsStorageRecords is a DNS data set shaped like a cluster's: n exchanges
// (a query and its response) from 200 pods of 20 workloads in 10
// namespaces to two DNS servers, for 2,000 names asked with a skew (a few
// names most of the time), 1–4 addresses per answer, a CNAME in a fifth
// of them, NXDOMAIN for a tenth, latencies of 0.2–50 ms, one exchange
// every 2 ms.
func dnsStorageRecords(n int, start time.Time) []*flowv1.Flow {
	r := rand.New(rand.NewPCG(13, 13))
	names := make([]string, 2000)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local.", i, i%10)
		if i%3 == 0 {
			names[i] = fmt.Sprintf("api-%d.example-%d.com.", i, i%50)
		}
	}
	servers := []*flowv1.Endpoint{
		{Namespace: "kube-system", PodName: "coredns-5d78c-a", Labels: []string{"k8s:k8s-app=kube-dns"}, Workloads: []*flowv1.Workload{{Name: "coredns", Kind: "Deployment"}}},
		{Namespace: "kube-system", PodName: "coredns-5d78c-b", Labels: []string{"k8s:k8s-app=kube-dns"}, Workloads: []*flowv1.Workload{{Name: "coredns", Kind: "Deployment"}}},
	}
	var out []*flowv1.Flow
	for i := 0; i < n; i++ {
		pod := r.IntN(200)
		client := &flowv1.Endpoint{Namespace: fmt.Sprintf("ns-%d", pod%10), PodName: fmt.Sprintf("app-%d-7d9f-%05d", pod%20, pod),
			Labels: []string{fmt.Sprintf("k8s:app=app-%d", pod%20)}, Workloads: []*flowv1.Workload{{Name: fmt.Sprintf("app-%d", pod%20), Kind: "Deployment"}}}
		srv := servers[i%2]
		cip, sip := fmt.Sprintf("10.244.%d.%d", pod/100, pod%100+2), fmt.Sprintf("10.244.9.%d", 10+i%2)
		port := uint32(32768 + r.IntN(28000))
		name := names[min(int(r.ExpFloat64()*200), len(names)-1)]
		qtype := "A"
		if r.IntN(3) == 0 {
			qtype = "AAAA"
		}
		at := start.Add(time.Duration(i) * 2 * time.Millisecond)
		lat := time.Duration(200+r.IntN(50_000)) * time.Microsecond
		q := &flowv1.DNS{Query: name, Qtypes: []string{qtype}, ObservationSource: "tcx-ingress"}
		a := &flowv1.DNS{Query: name, Qtypes: []string{qtype}, ObservationSource: "tcx-egress"}
		switch {
		case r.IntN(10) == 0:
			a.Rcode, a.Rrtypes = 3, []string{"SOA"}
		default:
			a.Ttl = uint32([]int{5, 30, 300}[r.IntN(3)])
			if r.IntN(5) == 0 {
				a.Cnames = []string{"edge-" + name}
				a.Rrtypes = append(a.Rrtypes, "CNAME")
			}
			for k := 0; k <= r.IntN(4); k++ {
				a.Ips = append(a.Ips, fmt.Sprintf("203.0.%d.%d", len(name)%200, (i+k)%250))
				a.Rrtypes = append(a.Rrtypes, qtype)
			}
		}
		rec := func(src, dst *flowv1.Endpoint, sa, da string, sp, dp uint32, typ flowv1.L7FlowType, d *flowv1.DNS, t time.Time, l time.Duration, op string) *flowv1.Flow {
			return &flowv1.Flow{Time: timestamppb.New(t), Uuid: store.FormatUUID(0x1234_5678_9abc_def0, uint64(len(out)+1)), NodeName: fmt.Sprintf("node-%d", pod%4),
				Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_L7_EVENT, Type: flowv1.FlowType_L7,
				IP:     &flowv1.IP{Source: sa, Destination: da, IpVersion: flowv1.IPVersion_IPv4},
				L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: sp, DestinationPort: dp}}},
				Source: src, Destination: dst, IsReply: wrapperspb.Bool(typ == flowv1.L7FlowType_RESPONSE), ObservationPoint: op,
				TrafficDirection: flowv1.TrafficDirection_EGRESS, Interface: &flowv1.NetworkInterface{Index: uint32(10 + pod%50), Name: fmt.Sprintf("lxc%04x", pod)},
				L7: &flowv1.Layer7{Type: typ, LatencyNs: uint64(l), Record: &flowv1.Layer7_Dns{Dns: d}}}
		}
		out = append(out, rec(client, srv, cip, sip, port, 53, flowv1.L7FlowType_REQUEST, q, at, 0, "tcx-ingress"),
			rec(srv, client, sip, cip, 53, port, flowv1.L7FlowType_RESPONSE, a, at.Add(lat), lat, "tcx-egress"))
	}
	return out
}

// columnBytes are the compressed bytes per row of the flows table after
// OPTIMIZE FINAL: all columns, and those of schema version 4's DNS.
func columnBytes(b *testing.B, dsn string) (rows uint64, all, dns float64) {
	ctx := context.Background()
	conn := chtest.Open(b, dsn)
	if err := conn.Exec(ctx, "OPTIMIZE TABLE flows FINAL"); err != nil {
		b.Fatal(err)
	}
	var comp, dnsComp uint64
	if err := conn.QueryRow(ctx, "SELECT sum(rows), sum(data_compressed_bytes) FROM system.parts WHERE active AND database = currentDatabase() AND table = 'flows'").Scan(&rows, &comp); err != nil {
		b.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT sum(data_compressed_bytes) FROM system.columns WHERE database = currentDatabase() AND table = 'flows' AND (name LIKE 'dns\\_%' OR name LIKE 'l7\\_%')").Scan(&dnsComp); err != nil {
		b.Fatal(err)
	}
	return rows, float64(comp) / float64(rows), float64(dnsComp) / float64(rows)
}

// BenchmarkStorageDNS measures storage, not time (run it once:
// -benchtime 1x): bytes per stored DNS record, and what the sparse DNS
// columns cost on rows that are not DNS (docs/benchmarks/dns.md, Storage).
func BenchmarkStorageDNS(b *testing.B) {
	const exchanges = 250_000
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
	write := func(dsn string, flows []*flowv1.Flow) {
		s := openStore(b, dsn)
		for i := 0; i < len(flows); i += 50_000 {
			if err := store.WriteGroupForTest(context.Background(), s, []*store.Batch{{Key: fmt.Sprintf("n/b/%d", i), Flows: flows[i:min(i+50_000, len(flows))]}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		dnsDSN := chtest.Database(b)
		write(dnsDSN, dnsStorageRecords(exchanges, start))
		rows, all, dns := columnBytes(b, dnsDSN)
		var rollupRows, rollupComp uint64
		conn := chtest.Open(b, dnsDSN)
		_ = conn.Exec(context.Background(), "OPTIMIZE TABLE dns_1m FINAL")
		if err := conn.QueryRow(context.Background(), "SELECT sum(rows), sum(data_compressed_bytes) FROM system.parts WHERE active AND database = currentDatabase() AND table = 'dns_1m'").Scan(&rollupRows, &rollupComp); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(all, "B/dns-record")
		b.ReportMetric(dns, "B/dns-record(l7-columns)")
		b.ReportMetric(float64(rollupComp)/float64(rows), "B/dns-record(dns_1m)")
		b.Logf("%d DNS records: %.1f B each compressed (%.1f B in the l7_/dns_ columns); dns_1m %d rows, %d B", rows, all, dns, rollupRows, rollupComp)

		// Rows that are not DNS: aggregates as the datapath fills them.
		plainDSN := chtest.Database(b)
		var plain []*flowv1.Flow
		for i := range 2 * exchanges {
			f := &flowv1.Flow{Time: timestamppb.New(start.Add(time.Duration(i) * time.Millisecond)), Uuid: store.FormatUUID(0x2234_5678_9abc_def0, uint64(i+1)),
				NodeName: fmt.Sprintf("node-%d", i%4), Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4,
				IP:      &flowv1.IP{Source: fmt.Sprintf("10.244.%d.%d", i%3, i%200+2), Destination: fmt.Sprintf("10.244.5.%d", i%50+2), IpVersion: flowv1.IPVersion_IPv4},
				L4:      &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(32768 + i%20000), DestinationPort: 8080, Flags: &flowv1.TCPFlags{ACK: true}}}},
				Packets: uint64(1 + i%40), Bytes: uint64(100 + i%40*1400), ObservationPoint: "tcx-ingress", IsReply: wrapperspb.Bool(false)}
			plain = append(plain, f)
		}
		write(plainDSN, plain)
		prows, pall, pdns := columnBytes(b, plainDSN)
		b.ReportMetric(pdns, "B/plain-row(l7-columns)")
		b.Logf("%d rows without DNS: %.2f B each compressed, of which %.3f B in the 9 l7_/dns_ columns", prows, pall, pdns)
	}
}

// tcpColumnBytes are the compressed bytes per row of the flows table's
// TCP health columns (schema version 5) after OPTIMIZE FINAL (columnBytes
// runs it).
func tcpColumnBytes(b *testing.B, dsn string) float64 {
	rows, _, _ := columnBytes(b, dsn)
	var comp uint64
	if err := chtest.Open(b, dsn).QueryRow(context.Background(), "SELECT sum(data_compressed_bytes) FROM system.columns WHERE database = currentDatabase() AND table = 'flows' AND name LIKE 'tcp\\_%' AND name != 'tcp_flags'").Scan(&comp); err != nil {
		b.Fatal(err)
	}
	return float64(comp) / float64(rows)
}

// BenchmarkStorageTCP measures storage, not time (run it once:
// -benchtime 1x): what the TCP health columns cost on rows without TCP
// health (sparse columns: next to nothing), on a mix where a tenth of the
// rows carry a handshake and a twentieth retransmits (dev/cmd/bench-relay's
// shape), and on rows that all carry a handshake; and tcp_1m's bytes per
// such row (docs/benchmarks/tcp-health.md, Storage and queries).
func BenchmarkStorageTCP(b *testing.B) {
	const n = 500_000
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
	rows := func(health func(r *rand.Rand, i int) *flowv1.TCPHealth) []*flowv1.Flow {
		r := rand.New(rand.NewPCG(14, 14))
		out := make([]*flowv1.Flow, 0, n)
		for i := range n {
			pod, srv := i%200, r.IntN(50)
			out = append(out, &flowv1.Flow{Time: timestamppb.New(start.Add(time.Duration(i) * time.Millisecond)), Uuid: store.FormatUUID(0x3234_5678_9abc_def0, uint64(i+1)),
				NodeName: fmt.Sprintf("node-%d", i%4), Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4,
				IP:          &flowv1.IP{Source: fmt.Sprintf("10.244.%d.%d", pod/100, pod%100+2), Destination: fmt.Sprintf("10.244.5.%d", srv+2), IpVersion: flowv1.IPVersion_IPv4},
				L4:          &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(32768 + i%20000), DestinationPort: 8080, Flags: &flowv1.TCPFlags{ACK: true}}}},
				Source:      &flowv1.Endpoint{Namespace: fmt.Sprintf("ns-%d", pod%10), PodName: fmt.Sprintf("app-%d-7d9f-%05d", pod%20, pod), Workloads: []*flowv1.Workload{{Name: fmt.Sprintf("app-%d", pod%20), Kind: "Deployment"}}},
				Destination: &flowv1.Endpoint{Namespace: "shop", PodName: fmt.Sprintf("db-%d", srv), Workloads: []*flowv1.Workload{{Name: fmt.Sprintf("db-%d", srv%5), Kind: "StatefulSet"}}},
				Packets:     uint64(1 + i%40), Bytes: uint64(100 + i%40*1400), ObservationPoint: "tcx-ingress", IsReply: wrapperspb.Bool(false),
				TcpHealth: health(r, i)})
		}
		return out
	}
	handshake := func(r *rand.Rand) *flowv1.TCPHealth {
		return &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(time.Duration(30_000 + r.IntN(500_000))), HandshakeAck: durationpb.New(time.Duration(10_000 + r.IntN(100_000)))}
	}
	for b.Loop() {
		for _, c := range []struct {
			name   string
			health func(r *rand.Rand, i int) *flowv1.TCPHealth
		}{
			{"none", func(*rand.Rand, int) *flowv1.TCPHealth { return nil }},
			{"mix", func(r *rand.Rand, _ int) *flowv1.TCPHealth {
				switch x := r.IntN(100); {
				case x < 10:
					return handshake(r)
				case x < 15:
					return &flowv1.TCPHealth{Retransmits: uint32(1 + r.IntN(4))}
				case x == 15:
					return &flowv1.TCPHealth{ResetBy: flowv1.TCPSide_SERVER}
				}
				return nil
			}},
			{"all", func(r *rand.Rand, _ int) *flowv1.TCPHealth { return handshake(r) }},
		} {
			dsn := chtest.Database(b)
			s := openStore(b, dsn)
			fs := rows(c.health)
			for i := 0; i < len(fs); i += 50_000 {
				if err := store.WriteGroupForTest(context.Background(), s, []*store.Batch{{Key: fmt.Sprintf("n/b/%d", i), Flows: fs[i:min(i+50_000, len(fs))]}}); err != nil {
					b.Fatal(err)
				}
			}
			tcp := tcpColumnBytes(b, dsn)
			_, all, _ := columnBytes(b, dsn)
			conn := chtest.Open(b, dsn)
			_ = conn.Exec(context.Background(), "OPTIMIZE TABLE tcp_1m FINAL")
			var rollupRows, rollupComp uint64
			if err := conn.QueryRow(context.Background(), "SELECT sum(rows), sum(data_compressed_bytes) FROM system.parts WHERE active AND database = currentDatabase() AND table = 'tcp_1m'").Scan(&rollupRows, &rollupComp); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(tcp, "B/row(tcp-columns,"+c.name+")")
			b.Logf("%s: %d rows, %.2f B each compressed, %.3f B in the 5 tcp_ columns; tcp_1m %d rows, %.3f B per flows row", c.name, n, all, tcp, rollupRows, float64(rollupComp)/n)
		}
	}
}
