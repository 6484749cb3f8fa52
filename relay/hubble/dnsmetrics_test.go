package hubble

import (
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// histogram sums count and sum of the series of a histogram family whose
// labels include want.
func histogram(mf *dto.MetricFamily, want map[string]string) (count uint64, sum float64) {
	for _, m := range mf.GetMetric() {
		l := labelsOf(m)
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
			}
		}
		if ok {
			count += m.GetHistogram().GetSampleCount()
			sum += m.GetHistogram().GetSampleSum()
		}
	}
	return count, sum
}

// dnsMetricFlows are filtertest's DNS records plus a dropped query, a
// response with a code Hubble has words for and dnscodes has not, and one
// with a code nobody names.
func dnsMetricFlows() []*flowv1.Flow {
	fs := filtertest.DNSFlows()
	dropped := proto.Clone(fs[0]).(*flowv1.Flow)
	dropped.Verdict, dropped.DropReasonDesc = flowv1.Verdict_DROPPED, "POLICY_DENIED"
	cookie := proto.Clone(fs[1]).(*flowv1.Flow)
	cookie.L7.GetDns().Rcode, cookie.L7.GetDns().Ips, cookie.L7.GetDns().Rrtypes, cookie.L7.LatencyNs = 23, nil, nil, 0
	odd := proto.Clone(cookie).(*flowv1.Flow)
	odd.L7.GetDns().Rcode = 12
	return append(fs, dropped, cookie, odd)
}

// The dns metric behaves as Hubble's dns handler, with the default
// contexts of docs/dns.md, and the latency histogram observes matched
// responses.
func TestDNSMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(MetricsConfig{Metrics: DefaultMetrics}, reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(dnsMetricFlows(), nil)
	g := gather(t, reg)
	web, dns := "shop/web", "kube-system/coredns"
	for _, c := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"hubble_dns_queries_total", map[string]string{"rcode": "", "qtypes": "A", "ips_returned": "0", "source": web, "destination": dns}, 1},
		{"hubble_dns_queries_total", map[string]string{"rcode": "", "qtypes": "AAAA", "source": ""}, 1}, // amf-1 has no workload
		{"hubble_dns_queries_total", map[string]string{"rcode": "", "qtypes": "A,AAAA"}, 1},
		{"hubble_dns_queries_total", map[string]string{"rcode": "Policy denied", "qtypes": "A", "source": web}, 1},
		{"hubble_dns_queries_total", map[string]string{}, 4},
		{"hubble_dns_responses_total", map[string]string{"rcode": "No Error", "qtypes": "A", "ips_returned": "1", "source": dns, "destination": web}, 1},
		{"hubble_dns_responses_total", map[string]string{"rcode": "Non-Existent Domain", "qtypes": "AAAA", "ips_returned": "0"}, 1},
		{"hubble_dns_responses_total", map[string]string{"rcode": "Server Failure"}, 1},
		{"hubble_dns_responses_total", map[string]string{"rcode": "Bad/missing Server Cookie"}, 1},
		{"hubble_dns_responses_total", map[string]string{"rcode": ""}, 1}, // code 12: Hubble has no words either
		{"hubble_dns_responses_total", map[string]string{}, 5},
		{"hubble_dns_response_types_total", map[string]string{"type": "A", "qtypes": "A", "destination": web}, 1},
		{"hubble_dns_response_types_total", map[string]string{"type": "SOA", "qtypes": "AAAA"}, 1},
		{"hubble_dns_response_types_total", map[string]string{}, 2},
		{"hubble_flows_processed_total", map[string]string{"protocol": "DNS", "type": "L7", "subtype": "DNS"}, 9},
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
	lat := g["trawl_dns_response_latency_seconds"]
	if lat == nil || lat.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("trawl_dns_response_latency_seconds: %v", lat)
	}
	if n, sum := histogram(lat, map[string]string{"source": dns, "destination": web}); n != 1 || math.Abs(sum-0.00125) > 1e-12 {
		t.Errorf("latency of shop/web's matched response: %d observations, sum %v; want 1, 0.00125", n, sum)
	}
	if n, _ := histogram(lat, map[string]string{}); n != 2 {
		t.Errorf("%d latency observations, want 2 (the matched responses)", n)
	}
	for _, s := range lat.GetMetric() {
		if got := labelNames(s); len(got) != 2 || got[0] != "destination" || got[1] != "source" {
			t.Errorf("latency labels %v, want the context labels destination, source", got)
		}
	}
	if got := gaugeValue(g["trawl_hubble_metrics_series"], map[string]string{"metric": "trawl_dns_response_latency_seconds"}); got != 2 {
		t.Errorf("latency series counted %v, want 2", got)
	}
}

func gaugeValue(mf *dto.MetricFamily, want map[string]string) float64 {
	for _, m := range mf.GetMetric() {
		l := labelsOf(m)
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
			}
		}
		if ok {
			return m.GetGauge().GetValue()
		}
	}
	return math.NaN()
}

// The options query and ignoreAAAA, and Hubble's label order (context
// labels first).
func TestDNSMetricOptions(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(MetricsConfig{Metrics: []string{"dns:query;ignoreAAAA;sourceContext=namespace"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(dnsMetricFlows(), nil)
	g := gather(t, reg)
	if got := value(g["hubble_dns_queries_total"], map[string]string{"query": "api.example.com.", "source": "shop"}); got != 2 {
		t.Errorf("queries of api.example.com. from shop = %v, want 2 (one dropped)", got)
	}
	if got := value(g["hubble_dns_queries_total"], map[string]string{"query": "nope.example.org."}); got != 0 {
		t.Errorf("an AAAA-only query counted %v times with ignoreAAAA", got)
	}
	if got := value(g["hubble_dns_queries_total"], map[string]string{"query": "wWw.Example.COM."}); got != 1 {
		t.Errorf("an A and AAAA query counted %v times with ignoreAAAA, want 1", got)
	}
	if got := value(g["hubble_dns_response_types_total"], map[string]string{"query": "api.example.com.", "type": "A"}); got != 1 {
		t.Errorf("response types with the query label: %v", got)
	}
	if n, _ := histogram(g["trawl_dns_response_latency_seconds"], map[string]string{}); n != 1 {
		t.Errorf("%d latency observations with ignoreAAAA, want 1", n)
	}
	for _, s := range g["hubble_dns_responses_total"].GetMetric() {
		want := []string{"ips_returned", "qtypes", "query", "rcode", "source"}
		if got := labelNames(s); len(got) != len(want) {
			t.Errorf("responses labels %v, want %v", got, want)
		}
	}
	if got := gaugeValue(g["trawl_hubble_metrics_series"], map[string]string{"metric": "hubble_dns_queries_total"}); got != 3 {
		t.Errorf("query series %v, want 3", got)
	}
}

// Label order as Hubble declares it: context labels before the metric's
// own (Prometheus sorts names on the way out, so this looks at the
// descriptor).
func TestDNSMetricLabelOrderIsHubbles(t *testing.T) {
	hs, err := newHandlers("dns:query;sourceContext=namespace;destinationContext=pod", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"hubble_dns_queries_total":           `[source destination rcode qtypes ips_returned query]`,
		"hubble_dns_responses_total":         `[source destination rcode qtypes ips_returned query]`,
		"hubble_dns_response_types_total":    `[source destination type qtypes query]`,
		"trawl_dns_response_latency_seconds": `[source destination]`,
	}
	if len(hs) != len(want) {
		t.Fatalf("%d handlers, want %d", len(hs), len(want))
	}
	for _, h := range hs {
		var d string
		if h.hist != nil {
			d = descLabels(h.hist)
		} else {
			d = descLabels(h.vec)
		}
		if d != want[h.name] {
			t.Errorf("%s: labels %s, want %s", h.name, d, want[h.name])
		}
	}
}

// descLabels is the variable label names of a one-metric collector's
// descriptor, in declaration order, as "[a b]".
func descLabels(c prometheus.Collector) string {
	ch := make(chan *prometheus.Desc, 1)
	c.Describe(ch)
	d := (<-ch).String()
	_, rest, _ := strings.Cut(d, "variableLabels: {")
	names, _, _ := strings.Cut(rest, "}")
	return "[" + strings.ReplaceAll(names, ",", " ") + "]"
}
