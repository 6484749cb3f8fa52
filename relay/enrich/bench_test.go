package enrich

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"

	"github.com/trawl-dev/trawl/internal/kube"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// benchFlows: 10,000 pods and 1,000 policies (kube.Synthetic), and a
// working set of 4096 flows between random pods, a quarter of them drops.
func benchFlows(b *testing.B) (*Enricher, []*flowv1.Flow, []string) {
	objs := kube.Synthetic(100, 100, 10)
	var ips []string
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			ips = append(ips, p.Status.PodIP)
		}
	}
	s := kube.NewStore(kube.StoreConfig{})
	s.ReplaceAll(objs)
	s.Rebuild()
	r := rand.New(rand.NewPCG(3, 4))
	now := timestamppb.Now()
	flows := make([]*flowv1.Flow, 4096)
	for i := range flows {
		v, reason := flowv1.Verdict_FORWARDED, ""
		if i%4 == 0 {
			v, reason = flowv1.Verdict_DROPPED, "NETFILTER_DROP"
		}
		flows[i] = &flowv1.Flow{Time: now, Verdict: v, DropReasonKernel: reason, DropReasonDesc: reason, NodeName: "node-1",
			IP: &flowv1.IP{Source: ips[r.IntN(len(ips))], Destination: ips[r.IntN(len(ips))]},
			L4: &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: 40000, DestinationPort: 8080}}}}
	}
	return NewFromStore(s), flows, ips
}

// BenchmarkEnrich: the relay's per-flow cost (endpoints, service, verdicts).
func BenchmarkEnrich(b *testing.B) {
	e, flows, _ := benchFlows(b)
	for _, f := range flows {
		e.Enrich(f)
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		f := flows[i&4095]
		if f.Verdict == flowv1.Verdict_DROPPED {
			f.DropReasonDesc = f.DropReasonKernel
		}
		e.Enrich(f)
	}
	cpu.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}

// BenchmarkBaselineParseAndLookup is the floor of any address-based
// enrichment: parse both addresses and look each up in a map.
func BenchmarkBaselineParseAndLookup(b *testing.B) {
	_, flows, ips := benchFlows(b)
	m := make(map[netip.Addr]*flowv1.Endpoint, len(ips))
	for _, s := range ips {
		m[netip.MustParseAddr(s)] = &flowv1.Endpoint{}
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		f := flows[i&4095]
		s, _ := netip.ParseAddr(f.IP.Source)
		d, _ := netip.ParseAddr(f.IP.Destination)
		f.Source, f.Destination = m[s], m[d]
	}
	cpu.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}
