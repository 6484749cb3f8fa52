package hubble

import (
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// hubbleDocumented are the metric names and labels as Cilium documents
// them (Documentation/observability/metrics.rst, "Exported Metrics", v1.19;
// policy_verdicts_total, absent from that table, from pkg/hubble/metrics/
// policy), in the order Hubble declares the labels, followed by the
// context labels the options add ("source", "destination" and the
// labelsContext names, see "Context Options").
var hubbleDocumented = map[string][]string{
	"hubble_flows_processed_total":    {"protocol", "type", "subtype", "verdict"},
	"hubble_drop_total":               {"reason", "protocol"},
	"hubble_tcp_flags_total":          {"flag", "family"},
	"hubble_port_distribution_total":  {"protocol", "port"},
	"hubble_icmp_total":               {"family", "type"},
	"hubble_policy_verdicts_total":    {"direction", "match", "action"},
	"hubble_flows_to_world_total":     {"protocol", "verdict"},
	"hubble_lost_events_total":        {"source"},
	"hubble_dns_queries_total":        {"rcode", "qtypes", "ips_returned"},
	"hubble_dns_responses_total":      {"rcode", "qtypes", "ips_returned"},
	"hubble_dns_response_types_total": {"type", "qtypes"},
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labelNames(m *dto.Metric) []string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName())
	}
	return out
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// value sums the series of a family whose labels include want.
func value(mf *dto.MetricFamily, want map[string]string) float64 {
	sum := 0.0
	for _, m := range mf.GetMetric() {
		l := labelsOf(m)
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
				break
			}
		}
		if ok {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func allFlows() []*flowv1.Flow {
	var out []*flowv1.Flow
	for _, c := range goldenRecords() {
		if f := c.rec.GetFlow(); f != nil {
			out = append(out, f)
		}
	}
	return append(out, filtertest.Flows()...)
}

func lostEvents() []*flowv1.LostEvent {
	var out []*flowv1.LostEvent
	for _, c := range goldenRecords() {
		if l := c.rec.GetLostEvents(); l != nil {
			out = append(out, l)
		}
	}
	return out
}

// The metrics have Hubble's names and labels, without and with context
// options (Prometheus sorts label names on the way out).
func TestMetricNamesAndLabelsAreHubbles(t *testing.T) {
	for _, c := range []struct {
		name    string
		options string
		extra   []string
	}{
		{"no context", "", nil},
		{"source and destination context", ":sourceContext=namespace;destinationContext=pod", []string{"source", "destination"}},
		{"labels context", ":labelsContext=source_namespace,destination_namespace,traffic_direction", []string{"source_namespace", "destination_namespace", "traffic_direction"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			var specs []string
			for _, n := range MetricNames() {
				specs = append(specs, n+c.options)
			}
			m, err := NewMetrics(MetricsConfig{Metrics: specs, TeardownDrops: true}, reg)
			if err != nil {
				t.Fatal(err)
			}
			// flows-to-world counts policy drops to the world; add one.
			m.Observe(append(allFlows(), &flowv1.Flow{Verdict: flowv1.Verdict_DROPPED, EventKind: flowv1.EventKind_DROP, DropReasonDesc: "POLICY_DENIED",
				L4: tcp(1, 2, nil), Destination: worldEP}), lostEvents())
			got := gather(t, reg)
			for name, fixed := range hubbleDocumented {
				mf := got[name]
				if mf == nil {
					t.Errorf("%s: not exported", name)
					continue
				}
				if mf.GetType() != dto.MetricType_COUNTER {
					t.Errorf("%s: type %v, want counter", name, mf.GetType())
				}
				want := append(append([]string(nil), fixed...), c.extra...)
				if name == "hubble_lost_events_total" {
					want = fixed // not a flow metric: no context
				}
				sort.Strings(want)
				for _, s := range mf.GetMetric() {
					if got := labelNames(s); !slices.Equal(got, want) {
						t.Errorf("%s: labels %v, want %v", name, got, want)
						break
					}
				}
			}
			for name := range got {
				if strings.HasPrefix(name, "hubble_") && hubbleDocumented[name] == nil {
					t.Errorf("%s: not a metric Hubble has", name)
				}
			}
		})
	}
}

// Label values are Hubble's, and each metric counts the records the
// package comment says it does.
func TestMetricValues(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(MetricsConfig{Metrics: []string{
		"flow", "drop:sourceContext=pod;destinationContext=workload|reserved-identity", "tcp", "port-distribution",
		"icmp", "policy:sourceContext=app", "flows-to-world:port;any-drop",
	}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(allFlows(), lostEvents())
	g := gather(t, reg)
	for _, c := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"hubble_flows_processed_total", map[string]string{"type": "Trace", "subtype": "from-endpoint", "verdict": "FORWARDED", "protocol": "TCP"}, 3 + 2}, // + the TCP health aggregate and the connect timeout
		{"hubble_flows_processed_total", map[string]string{"type": "Trace", "subtype": "to-endpoint", "verdict": "FORWARDED", "protocol": "TCP"}, 2},
		{"hubble_flows_processed_total", map[string]string{"type": "L7", "subtype": "DNS", "verdict": "FORWARDED", "protocol": "DNS"}, 3},
		{"hubble_flows_processed_total", map[string]string{"type": "Trace", "subtype": "to-network", "protocol": "TCP"}, 1},
		{"hubble_flows_processed_total", map[string]string{"type": "Trace", "subtype": "from-network", "protocol": "ICMPv6"}, 1},
		{"hubble_flows_processed_total", map[string]string{"type": "Drop", "subtype": "", "verdict": "DROPPED"}, 4}, // the teardown drop is left out
		{"hubble_flows_processed_total", map[string]string{"type": "PolicyVerdict", "verdict": "FORWARDED"}, 1},
		{"hubble_flows_processed_total", map[string]string{"type": "PolicyVerdict", "verdict": "AUDIT"}, 1},
		{"hubble_flows_processed_total", map[string]string{"protocol": "Unknown L4"}, 1},
		// Packets of drop records, by Hubble's reason where it has one,
		// else the kernel's; teardown drops are left out by default.
		{"hubble_drop_total", map[string]string{"reason": "POLICY_DENIED", "protocol": "TCP", "source": "attacker/evil-1", "destination": "shop/db"}, 6},
		{"hubble_drop_total", map[string]string{"reason": "NO_SOCKET", "protocol": "UDP", "destination": "shop/db"}, 1},
		{"hubble_drop_total", map[string]string{"reason": "NO_SOCKET", "protocol": "UDP", "destination": "reserved:world"}, 1},
		{"hubble_drop_total", map[string]string{"reason": "QUEUE_PURGE"}, 0},
		// One per flag on new and close events.
		{"hubble_tcp_flags_total", map[string]string{"flag": "SYN", "family": "IPv4"}, 1},
		{"hubble_tcp_flags_total", map[string]string{"flag": "FIN", "family": "IPv4"}, 2},
		{"hubble_tcp_flags_total", map[string]string{"flag": "SYN-ACK"}, 0},
		// Packets of forwarded aggregates known not to be replies.
		{"hubble_port_distribution_total", map[string]string{"protocol": "TCP", "port": "5432"}, 42 + 10 + 9}, // not the connect timeout's SYNs
		{"hubble_port_distribution_total", map[string]string{"protocol": "TCP", "port": "9999"}, 0},           // a reply
		{"hubble_port_distribution_total", map[string]string{"protocol": "TCP", "port": "443"}, 12},
		{"hubble_port_distribution_total", map[string]string{"protocol": "TCP", "port": "40000"}, 0},
		{"hubble_icmp_total", map[string]string{"family": "IPv6", "type": "EchoRequest"}, 5},
		{"hubble_icmp_total", map[string]string{"family": "IPv4", "type": "EchoRequest"}, 2},
		{"hubble_policy_verdicts_total", map[string]string{"direction": "ingress", "match": "none", "action": "forwarded", "source": "web"}, 1},
		{"hubble_policy_verdicts_total", map[string]string{"direction": "egress", "action": "audit", "source": "db"}, 1}, // k8s:app=db comes first
		{"hubble_flows_to_world_total", map[string]string{"protocol": "ICMPv4", "verdict": "FORWARDED", "port": ""}, 1},
		{"hubble_flows_to_world_total", map[string]string{"protocol": "UDP", "verdict": "DROPPED", "port": "53"}, 1},
		{"hubble_lost_events_total", map[string]string{"source": "perf_event_ring_buffer"}, 17},
		{"hubble_lost_events_total", map[string]string{"source": "unknown_lost_event_source"}, 3},
	} {
		mf := g[c.metric]
		if mf == nil {
			t.Errorf("%s: not exported", c.metric)
			continue
		}
		if got := value(mf, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.metric, c.labels, got, c.want)
		}
	}
}

// A metric never has more series than its budget; what it cannot count is
// counted as overflow, and idle series free their place.
func TestMetricSeriesBudget(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(MetricsConfig{Metrics: []string{"flow:sourceContext=pod"}, SeriesLimit: 3, SeriesIdle: time.Minute}, reg)
	if err != nil {
		t.Fatal(err)
	}
	pods := func(names ...string) []*flowv1.Flow {
		var out []*flowv1.Flow
		for _, n := range names {
			out = append(out, &flowv1.Flow{Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE,
				Source: &flowv1.Endpoint{Namespace: "ns", PodName: n}})
		}
		return out
	}
	m.Observe(pods("a", "b", "c", "d", "e", "a"), nil)
	g := gather(t, reg)
	if n := len(g["hubble_flows_processed_total"].GetMetric()); n != 3 {
		t.Errorf("%d series, want the budget of 3", n)
	}
	if got := value(g["trawl_hubble_metrics_overflow_total"], map[string]string{"metric": "hubble_flows_processed_total"}); got != 2 {
		t.Errorf("overflow %v, want 2 (d and e)", got)
	}
	if got := value(g["hubble_flows_processed_total"], map[string]string{"source": "ns/a"}); got != 2 {
		t.Errorf("ns/a counted %v, want 2", got)
	}
	// Two minutes later every series is idle: the next batch sweeps them.
	h := m.handlers[0]
	for _, s := range h.series {
		s.last -= int64(2 * time.Minute)
	}
	m.lastSweep = m.lastSweep.Add(-time.Hour)
	m.Observe(pods("d"), nil)
	g = gather(t, reg)
	if got := value(g["hubble_flows_processed_total"], map[string]string{"source": "ns/d"}); got != 1 || len(g["hubble_flows_processed_total"].GetMetric()) != 1 {
		t.Errorf("after the sweep: %v", g["hubble_flows_processed_total"].GetMetric())
	}
}

func TestMetricSpecsAreChecked(t *testing.T) {
	for _, spec := range []string{"dns:nonsense", "kafka", "httpV2:exemplars=true", "flow:sourceContext=nonsense", "drop:labelsContext=source_nonsense",
		"tcp:query", "nosuchmetric"} {
		if _, err := NewMetrics(MetricsConfig{Metrics: []string{spec}}, nil); err == nil {
			t.Errorf("%q accepted", spec)
		}
	}
	if _, err := NewMetrics(MetricsConfig{Metrics: []string{"flow", "flow:sourceContext=pod"}}, nil); err == nil {
		t.Error("a metric configured twice was accepted")
	}
}
