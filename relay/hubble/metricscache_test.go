package hubble

import (
	"fmt"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/dev/benchdata"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// The caches in front of the series maps (seriesCache) and of the
// interned "namespace/name" values (joinCache) must not change what is
// counted where. These tests count the same records with them and without
// them, record by record as before they existed, and compare everything a
// scrape shows: every series of every metric, the overflow counts and the
// series gauges.

// contextSpecs are every metric with contexts that read every kind of
// field a label can come from: names, workloads, labels, addresses, DNS
// names, direction-dependent contexts and labelsContext.
var contextSpecs = []string{
	"flow:sourceContext=workload|reserved-identity;destinationContext=pod|ip",
	"drop:sourceContext=namespace;destinationContext=workload-name|dns;labelsContext=source_namespace,destination_workload,destination_workload_kind,traffic_direction",
	"tcp:sourceIngressContext=pod;sourceEgressContext=namespace;destinationContext=identity",
	"port-distribution:destinationContext=app|identity",
	"icmp:sourceContext=ip",
	"policy:sourceContext=app;destinationContext=reserved-identity",
	"flows-to-world:port;any-drop;sourceContext=pod",
	"dns:query;sourceContext=workload|reserved-identity;destinationContext=namespace",
	"tcp-health:sourceContext=workload|reserved-identity;destinationContext=pod",
}

// variedFlows is a batch of records that differ in every field a label
// derives from: the package's golden and filter records (DNS, TCP health,
// ICMP, policy verdicts, drops), the relay benchmark's data set, and a
// cross product of namespaces, workloads, verdicts, drop reasons,
// protocols, ports, directions and reply flags. Equal values come both as
// the same strings in memory and as copies, and some as prefixes of one
// another sharing their first bytes (the caches index by address and
// length).
func variedFlows() []*flowv1.Flow {
	out := allFlows()
	out = append(out, dnsMetricFlows()...)
	out = append(out, tcpMetricFlows()...)
	for _, b := range benchdata.Generate(3000, time.Now().UTC().Truncate(time.Hour)) {
		out = append(out, b.Flows...)
	}
	const shared = "team-100/svc-10"
	verdicts := []flowv1.Verdict{flowv1.Verdict_FORWARDED, flowv1.Verdict_DROPPED, flowv1.Verdict_AUDIT}
	kinds := []flowv1.EventKind{flowv1.EventKind_AGGREGATE, flowv1.EventKind_FLOW_NEW, flowv1.EventKind_FLOW_CLOSE,
		flowv1.EventKind_DROP, flowv1.EventKind_POLICY_VERDICT, flowv1.EventKind_CONNECT_TIMEOUT}
	reasons := []string{"POLICY_DENIED", "NO_SOCKET", "NETFILTER_DROP", ""}
	i := 0
	for _, ns := range []string{"team-1", "team-10", "team-100", shared[:7], shared[:8], strings.Clone("team-1")} {
		for _, wl := range []string{"svc-1", "svc-10", shared[9:], shared[9:14], ""} {
			for _, v := range verdicts {
				for _, k := range kinds {
					i++
					f := &flowv1.Flow{Verdict: v, EventKind: k, Packets: uint64(1 + i%5),
						IP:               &flowv1.IP{Source: fmt.Sprintf("10.0.%d.%d", i%3, i%7), Destination: "10.9.0.1", IpVersion: flowv1.IPVersion(1 + i%2)},
						Source:           &flowv1.Endpoint{Namespace: ns, PodName: wl + "-pod", Labels: []string{"k8s:app=" + wl}},
						Destination:      &flowv1.Endpoint{Namespace: "team-1", PodName: "db-0", Labels: []string{"k8s:app=db", "reserved:host"}},
						TrafficDirection: flowv1.TrafficDirection(i % 3), IsReply: wrapperspb.Bool(i%4 == 1),
						ObservationPoint: []string{"tcx-ingress", "tcx-egress", "nic-ingress"}[i%3],
						SourceNames:      []string{"a.example", "b.example"}[:i%3%2+1],
					}
					if wl != "" {
						f.Source.Workloads = []*flowv1.Workload{{Name: wl, Kind: []string{"Deployment", "StatefulSet"}[i%2]}}
					}
					if i%5 == 0 {
						f.Destination = &flowv1.Endpoint{Labels: []string{"reserved:world"}}
					}
					if v == flowv1.Verdict_DROPPED {
						f.DropReasonDesc = reasons[i%len(reasons)]
						f.DropReasonKernel = reasons[(i+1)%len(reasons)]
					}
					switch i % 4 {
					case 0:
						f.L4 = tcp(uint32(40000+i%3), []uint32{80, 443, 5432}[i%3], &flowv1.TCPFlags{SYN: i%2 == 0, ACK: i%3 == 0, FIN: i%5 == 0, RST: i%7 == 0})
						f.TcpHealth = &flowv1.TCPHealth{Retransmits: uint32(i % 3), ResetBy: flowv1.TCPSide(i % 3),
							HandshakeSynAck: durationpb.New(time.Duration(i) * time.Microsecond), HandshakeAck: durationpb.New(time.Duration(i%5) * time.Microsecond)}
					case 1:
						f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: 5353, DestinationPort: []uint32{53, 123}[i%2]}}}
					case 2:
						f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{Type: uint32(i % 9), Code: uint32(i % 2)}}}
					}
					if i%9 == 0 {
						f.DropClass = "teardown"
					}
					out = append(out, f)
				}
			}
		}
	}
	// DNS records with every label of the dns metrics changed one at a time.
	for _, base := range dnsMetricFlows() {
		for j, change := range []func(d *flowv1.DNS){
			func(d *flowv1.DNS) { d.Rcode = 3 },
			func(d *flowv1.DNS) { d.Qtypes = []string{"AAAA"} },
			func(d *flowv1.DNS) { d.Qtypes = append(d.Qtypes, "TXT") },
			func(d *flowv1.DNS) { d.Ips = append(d.Ips, "10.1.1.1") },
			func(d *flowv1.DNS) { d.Query = "other.example." },
			func(d *flowv1.DNS) { d.Rrtypes = []string{"CNAME", "A"} },
		} {
			f := proto.Clone(base).(*flowv1.Flow)
			if d := f.GetL7().GetDns(); d != nil {
				change(d)
				f.L7.LatencyNs = uint64(j+1) * 1e6
			}
			out = append(out, f)
		}
	}
	return out
}

// countedAs is what a scrape shows after m has counted batches: every
// family in text, with the overflow counts and series gauges (but not when
// each series was made).
func countedAs(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() { // when a series was made is not what it counted
			if m.Counter != nil {
				m.Counter.CreatedTimestamp = nil
			}
			if m.Histogram != nil {
				m.Histogram.CreatedTimestamp = nil
			}
		}
		b.WriteString(prototext.Format(mf))
		b.WriteByte('\n')
	}
	return b.String()
}

// withoutCaches makes m count as before the caches: every record's key
// built and looked up in the series map, every name joined through the map.
func withoutCaches(m *Metrics) {
	for _, h := range m.handlers {
		h.recent = nil
		h.ctx.names.recent = nil
	}
}

// withOneSlot leaves the caches one slot each: every record of another
// series or name than the last collides, so only comparing the values
// keeps it from being counted in the wrong series.
func withOneSlot(m *Metrics) {
	for _, h := range m.handlers {
		if h.recent != nil {
			h.recent.max = 1
			h.recent.resize(1)
		}
		h.ctx.names.recent = newJoinCache(1)
	}
}

// idle makes every series of m idle for two hours, and the sweep due.
func idle(m *Metrics) {
	for _, h := range append(append([]*handler(nil), m.handlers...), m.lost) {
		for _, s := range h.series {
			s.last -= int64(2 * time.Hour)
		}
	}
	m.lastSweep = m.lastSweep.Add(-2 * time.Hour)
}

// Counting a varied batch at once, with the caches, shows exactly what
// counting it one record per batch without them shows: the same series
// with the same values, the same overflow when the series budget is full,
// and the same series again after idle ones were deleted.
func TestMetricCachesCountEveryRecordInTheSeriesItsLabelsSay(t *testing.T) {
	flows, lost := variedFlows(), lostEvents()
	for _, c := range []struct {
		name     string
		specs    []string
		limit    int
		teardown bool
		shrink   func(*Metrics)
	}{
		{"default metrics", DefaultMetrics, 0, false, nil},
		{"every metric with contexts", contextSpecs, 0, true, nil},
		{"every metric with contexts and one slot per cache", contextSpecs, 0, false, withOneSlot},
		{"a series budget of 7", contextSpecs, 7, false, nil},
		{"a series budget of 7 and one slot per cache", contextSpecs, 7, true, withOneSlot},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := MetricsConfig{Metrics: c.specs, SeriesLimit: c.limit, SeriesIdle: time.Hour, TeardownDrops: c.teardown}
			regCached, regDirect := prometheus.NewRegistry(), prometheus.NewRegistry()
			cached, err := NewMetrics(cfg, regCached)
			if err != nil {
				t.Fatal(err)
			}
			direct, err := NewMetrics(cfg, regDirect)
			if err != nil {
				t.Fatal(err)
			}
			withoutCaches(direct)
			if c.shrink != nil {
				c.shrink(cached)
			}
			for round := range 3 {
				if round == 2 {
					// Every series idle: the next batch deletes them
					// all, then counts in new ones.
					idle(cached)
					idle(direct)
				}
				cached.Observe(flows, lost)
				for i, f := range flows {
					var l []*flowv1.LostEvent
					if i == 0 {
						l = lost
					}
					direct.Observe([]*flowv1.Flow{f}, l)
				}
				got, want := countedAs(t, regCached), countedAs(t, regDirect)
				if got != want {
					t.Fatalf("round %d: with the caches\n%s\nwithout them\n%s", round, firstDifference(got, want), firstDifference(want, got))
				}
			}
			if c.limit > 0 && value(gather(t, regCached)["trawl_hubble_metrics_overflow_total"], nil) == 0 {
				t.Error("the budget of 7 overflowed nothing: the batch does not test it")
			}
		})
	}
}

// firstDifference is a's lines around the first where a and b differ.
func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range al {
		if i >= len(bl) || al[i] != bl[i] {
			return strings.Join(al[max(0, i-12):min(len(al), i+4)], "\n")
		}
	}
	return "(a prefix of the other)"
}

// A record differing from a counted one in any one field a label derives
// from is counted in its own series, though its other values are the same
// strings in memory; one that differs in no label's field is counted in
// the same series.
func TestMetricCachesTellRecordsApartByEveryLabelField(t *testing.T) {
	base := func() *flowv1.Flow {
		return &flowv1.Flow{Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Packets: 3,
			TrafficDirection: flowv1.TrafficDirection_EGRESS, IsReply: wrapperspb.Bool(false), ObservationPoint: "tcx-ingress",
			IP:     &flowv1.IP{Source: "10.0.0.1", Destination: "10.0.0.2", IpVersion: flowv1.IPVersion_IPv4},
			Source: &flowv1.Endpoint{Namespace: "shop", PodName: "web-0", Labels: []string{"k8s:app=web"}, Workloads: []*flowv1.Workload{{Name: "web", Kind: "Deployment"}}},
			Destination: &flowv1.Endpoint{Namespace: "shop", PodName: "db-0", Labels: []string{"k8s:app=db"},
				Workloads: []*flowv1.Workload{{Name: "db", Kind: "StatefulSet"}}},
			L4:        tcp(40000, 5432, &flowv1.TCPFlags{ACK: true}),
			TcpHealth: &flowv1.TCPHealth{Retransmits: 1},
		}
	}
	drop := func(f *flowv1.Flow) {
		f.Verdict, f.EventKind, f.DropReasonDesc = flowv1.Verdict_DROPPED, flowv1.EventKind_DROP, "POLICY_DENIED"
	}
	for _, c := range []struct {
		name   string
		setup  func(f *flowv1.Flow) // of both records, when the field is in a label of other records only
		change func(f *flowv1.Flow)
		same   bool // counted in the base record's series everywhere
	}{
		{"another source namespace", nil, func(f *flowv1.Flow) { f.Source.Namespace = "shop2" }, false},
		{"a source namespace one byte shorter at the same address", nil, func(f *flowv1.Flow) { f.Source.Namespace = f.Source.Namespace[:3] }, false},
		{"another source workload", nil, func(f *flowv1.Flow) { f.Source.Workloads[0].Name = "web2" }, false},
		{"another destination workload kind", drop, func(f *flowv1.Flow) { f.Destination.Workloads[0].Kind = "DaemonSet" }, false},
		{"another drop reason", drop, func(f *flowv1.Flow) { f.DropReasonDesc = "NO_SOCKET" }, false},
		{"no source workload: its reserved identity", nil, func(f *flowv1.Flow) {
			f.Source.Workloads, f.Source.Labels = nil, []string{"reserved:host"}
		}, false},
		{"another destination pod", nil, func(f *flowv1.Flow) { f.Destination.PodName = "db-1" }, false},
		{"another destination address", func(f *flowv1.Flow) { f.Destination.Namespace, f.Destination.PodName = "", "" }, func(f *flowv1.Flow) { f.IP.Destination = "10.0.0.3" }, false},
		{"another app label", nil, func(f *flowv1.Flow) { f.Destination.Labels = []string{"k8s:app=pg"} }, false},
		{"the other direction", nil, func(f *flowv1.Flow) { f.TrafficDirection = flowv1.TrafficDirection_INGRESS }, false},
		{"a reply (client and server swap)", nil, func(f *flowv1.Flow) { f.IsReply = wrapperspb.Bool(true) }, false},
		{"another destination port", nil, func(f *flowv1.Flow) { f.L4 = tcp(40000, 5433, &flowv1.TCPFlags{ACK: true}) }, false},
		{"UDP", nil, func(f *flowv1.Flow) {
			f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: 40000, DestinationPort: 5432}}}
		}, false},
		{"IPv6", func(f *flowv1.Flow) {
			f.EventKind, f.L4 = flowv1.EventKind_FLOW_NEW, tcp(40000, 5432, &flowv1.TCPFlags{SYN: true})
		}, func(f *flowv1.Flow) { f.IP.IpVersion = flowv1.IPVersion_IPv6 }, false},
		{"audited", nil, func(f *flowv1.Flow) { f.Verdict = flowv1.Verdict_AUDIT }, false},
		{"another source port and byte count", nil, func(f *flowv1.Flow) {
			f.L4, f.Bytes = tcp(40001, 5432, &flowv1.TCPFlags{ACK: true}), 1234
		}, true},
		{"the same names as copies", nil, func(f *flowv1.Flow) {
			f.Source.Namespace, f.Destination.PodName = strings.Clone(f.Source.Namespace), strings.Clone(f.Destination.PodName)
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, shrink := range []func(*Metrics){nil, withOneSlot} {
				reg := prometheus.NewRegistry()
				m, err := NewMetrics(MetricsConfig{Metrics: contextSpecs}, reg)
				if err != nil {
					t.Fatal(err)
				}
				if shrink != nil {
					shrink(m)
				}
				f := base()
				if c.setup != nil {
					c.setup(f)
				}
				m.Observe([]*flowv1.Flow{f}, nil)
				before := seriesCounts(m)
				// The clone's strings are f's in memory; the change
				// replaces one.
				g := proto.Clone(f).(*flowv1.Flow)
				c.change(g)
				m.Observe([]*flowv1.Flow{g}, nil)
				after := seriesCounts(m)
				grew := false
				for name, n := range after {
					if n != before[name] {
						grew = true
					}
				}
				if grew == c.same {
					t.Errorf("series before %v, after %v: want a new series %v", before, after, !c.same)
				}
				reg2 := prometheus.NewRegistry()
				ref, err := NewMetrics(MetricsConfig{Metrics: contextSpecs}, reg2)
				if err != nil {
					t.Fatal(err)
				}
				withoutCaches(ref)
				ref.Observe([]*flowv1.Flow{f}, nil)
				ref.Observe([]*flowv1.Flow{g}, nil)
				if got, want := countedAs(t, reg), countedAs(t, reg2); got != want {
					t.Errorf("with the caches\n%s\nwithout them\n%s", firstDifference(got, want), firstDifference(want, got))
				}
			}
		})
	}
}

// seriesCounts is each metric's number of series.
func seriesCounts(m *Metrics) map[string]int {
	out := map[string]int{}
	for _, h := range m.handlers {
		out[h.name] = len(h.series)
	}
	return out
}

// The verdict label is Hubble's name of the verdict, numbers without a
// name included, as the enum's String says.
func TestVerdictLabelIsTheEnumsName(t *testing.T) {
	for v := int32(-2); v < 40; v++ {
		if got, want := verdictName(flowv1.Verdict(v)), flowpb.Verdict(v).String(); got != want {
			t.Errorf("verdict %d: %q, want %q", v, got, want)
		}
	}
}

// A port's label is its decimal number, also after the bounded table of
// them was started afresh.
func TestPortLabelIsTheNumber(t *testing.T) {
	h := &handler{}
	for round := range 2 {
		for p := uint32(0); p < maxPorts+10; p += 7 {
			if got := h.portString(p); got != fmt.Sprint(p) {
				t.Fatalf("round %d: port %d labelled %q", round, p, got)
			}
		}
		if len(h.ports) > maxPorts {
			t.Fatalf("%d ports kept, more than %d", len(h.ports), maxPorts)
		}
	}
}
