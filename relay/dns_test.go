package relay_test

import (
	"context"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/dev/chtest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func dnsMessage(at time.Time, typ flowv1.L7FlowType, src, dst string, sp, dp uint32, d *flowv1.DNS, latency time.Duration) *flowv1.Flow {
	d.ObservationSource = "tcx-ingress"
	return &flowv1.Flow{
		Time: timestamppb.New(at), Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_L7_EVENT, Type: flowv1.FlowType_L7,
		IP:      &flowv1.IP{Source: src, Destination: dst, IpVersion: flowv1.IPVersion_IPv4},
		L4:      &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: sp, DestinationPort: dp}}},
		IsReply: wrapperspb.Bool(typ == flowv1.L7FlowType_RESPONSE), ObservationPoint: "tcx-ingress",
		L7: &flowv1.Layer7{Type: typ, LatencyNs: uint64(latency), Record: &flowv1.Layer7_Dns{Dns: d}},
	}
}

// DNS records sent by the agent's shipper: stored field for field, the
// answer names the client's later connection to the address (and the way
// back, not another client's), GetTop ranks the name from dns_1m, and the
// Hubble DNS metrics count the messages.
func TestDNSRecordsThroughTheRelayNameTheClientsFlows(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, nil)
	s := startShipper(t, r.IngestAddr(), "node-a", nil)
	at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	query := dnsMessage(at, flowv1.L7FlowType_REQUEST, "10.244.1.5", "10.96.0.10", 41234, 53, &flowv1.DNS{Query: "api.example.com.", Qtypes: []string{"A"}}, 0)
	answer := dnsMessage(at.Add(2*time.Millisecond), flowv1.L7FlowType_RESPONSE, "10.96.0.10", "10.244.1.5", 53, 41234, &flowv1.DNS{
		Query: "api.example.com.", Qtypes: []string{"A"}, Ips: []string{"93.184.216.34"}, Ttl: 30,
		Cnames: []string{"api.edge.example.net."}, Rrtypes: []string{"CNAME", "A"}}, 2*time.Millisecond)
	sent := []*flowv1.Flow{proto.Clone(query).(*flowv1.Flow), proto.Clone(answer).(*flowv1.Flow)}
	publish(s, query)
	publish(s, answer)
	s.Flush() // the answer in one batch, the connections in the next
	out, back, other := realisticFlow(1, at.Add(time.Second)), realisticFlow(2, at.Add(2*time.Second)), realisticFlow(3, at.Add(3*time.Second))
	out.IP.Destination = "93.184.216.34"
	back.IP.Source, back.IP.Destination = "93.184.216.34", "10.244.1.5"
	other.IP.Source, other.IP.Destination = "10.244.1.6", "93.184.216.34"
	for _, f := range []*flowv1.Flow{out, back, other} {
		publish(s, f)
	}
	s.Flush()
	waitFor(t, "every batch acked", 30*time.Second, func() bool { return acked(s) })

	c := observerClient(t, r)
	got := history(t, c, &observerv1.GetFlowsRequest{Since: timestamppb.New(at.Add(-time.Minute))})
	if len(got) != 5 {
		t.Fatalf("%d records stored, want 5", len(got))
	}
	byPackets := map[uint64]*flowv1.Flow{}
	var dns []*flowv1.Flow
	for _, f := range got {
		if f.GetL7() != nil {
			dns = append(dns, f)
		} else {
			byPackets[f.GetPackets()] = f
		}
	}
	for _, want := range sent {
		want.NodeName = "node-a"
		found := false
		for _, g := range dns {
			if g.GetL7().GetType() == want.GetL7().GetType() {
				want.Uuid, found = g.GetUuid(), true
				if !proto.Equal(g, want) {
					t.Errorf("DNS %s read back as\n%v\nwant\n%v", want.GetL7().GetType(), g, want)
				}
			}
		}
		if !found {
			t.Errorf("DNS %s not stored", want.GetL7().GetType())
		}
	}
	for _, c := range []struct {
		name     string
		f        *flowv1.Flow
		src, dst []string
	}{
		{"the client's connection to the answer", byPackets[2], nil, []string{"api.example.com"}},
		{"the way back", byPackets[3], []string{"api.example.com"}, nil},
		{"another client", byPackets[4], nil, nil},
	} {
		if c.f == nil {
			t.Errorf("%s: not stored", c.name)
			continue
		}
		if !equalNames(c.f.GetSourceNames(), c.src) || !equalNames(c.f.GetDestinationNames(), c.dst) {
			t.Errorf("%s: source_names %v destination_names %v, want %v %v", c.name, c.f.GetSourceNames(), c.f.GetDestinationNames(), c.src, c.dst)
		}
	}

	top, err := c.GetTop(context.Background(), &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_DNS_NAMES, Since: timestamppb.New(at.Add(-time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if e := top.GetEntries(); len(e) != 1 || e[0].GetDnsQuery() != "api.example.com." || e[0].GetDnsQueries() != 1 ||
		e[0].GetDnsLatencyP99().AsDuration() != 2*time.Millisecond {
		t.Errorf("top DNS names %v, want api.example.com. with 1 query and a p99 of 2ms", e)
	}

	mfs, err := r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				counts[mf.GetName()] += m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				counts[mf.GetName()] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{"hubble_dns_queries_total": 1, "hubble_dns_responses_total": 1,
		"hubble_dns_response_types_total": 2, "trawl_dns_response_latency_seconds": 1} {
		if counts[name] != want {
			t.Errorf("%s = %v, want %v", name, counts[name], want)
		}
	}
}

func equalNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
