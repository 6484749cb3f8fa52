package hubble

import (
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// tcpMetricFlows are filtertest's TCP records plus the server's reset on
// an aggregate of the reply direction (the closed port's FLOW_CLOSE event
// repeats it and is not counted again) and a dropped aggregate with
// retransmits (not forwarded: not counted).
func tcpMetricFlows() []*flowv1.Flow {
	fs := filtertest.TCPFlows()
	rst := proto.Clone(fs[3]).(*flowv1.Flow)
	rst.EventKind = flowv1.EventKind_AGGREGATE
	dropped := proto.Clone(fs[2]).(*flowv1.Flow)
	dropped.Verdict, dropped.DropReasonDesc = flowv1.Verdict_DROPPED, "NO_SOCKET"
	return append(fs, rst, dropped)
}

// The tcp-health metrics of docs/tcp-health.md, on by default with the
// client as source and the server as destination whatever the record's
// direction.
func TestTCPHealthMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(MetricsConfig{Metrics: DefaultMetrics}, reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(tcpMetricFlows(), nil)
	g := gather(t, reg)
	web, db, api := "shop/web", "shop/db", "telco/api"
	for _, c := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		// The db's retransmits on its reply count for web -> db.
		{"trawl_tcp_retransmits_total", map[string]string{"source": web, "destination": db}, 3},
		{"trawl_tcp_retransmits_total", map[string]string{"source": web, "destination": api}, 1},
		{"trawl_tcp_retransmits_total", map[string]string{}, 4},
		// Packets of both directions of web -> db (records 0, 1, 5, 7).
		{"trawl_tcp_packets_total", map[string]string{"source": web, "destination": db}, 16},
		{"trawl_tcp_packets_total", map[string]string{}, 32},
		{"trawl_tcp_resets_total", map[string]string{"reset_by": "client", "source": web, "destination": db}, 1},
		{"trawl_tcp_resets_total", map[string]string{"reset_by": "server", "source": web, "destination": api}, 1},
		{"trawl_tcp_resets_total", map[string]string{}, 2},
		{"trawl_tcp_connect_timeouts_total", map[string]string{"source": web, "destination": "reserved:world"}, 1},
		{"trawl_tcp_connect_timeouts_total", map[string]string{}, 1},
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
	rtt := g["trawl_tcp_handshake_rtt_seconds"]
	if rtt == nil || rtt.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("trawl_tcp_handshake_rtt_seconds: %v", rtt)
	}
	for _, c := range []struct {
		src, dst string
		sum      float64
	}{{web, db, 0.0004}, {web, api, 0.021}, {api, db, 0.005}, {api, web, 0.010}} {
		if n, sum := histogram(rtt, map[string]string{"source": c.src, "destination": c.dst}); n != 1 || math.Abs(sum-c.sum) > 1e-12 {
			t.Errorf("handshake RTT of %s -> %s: %d observations, sum %v; want 1, %v", c.src, c.dst, n, sum, c.sum)
		}
	}
	if n, _ := histogram(rtt, map[string]string{}); n != 4 {
		t.Errorf("%d handshake observations, want 4", n)
	}
	for _, name := range []string{"trawl_tcp_retransmits_total", "trawl_tcp_handshake_rtt_seconds", "trawl_tcp_connect_timeouts_total"} {
		for _, s := range g[name].GetMetric() {
			if got := labelNames(s); len(got) != 2 || got[0] != "destination" || got[1] != "source" {
				t.Errorf("%s labels %v, want the context labels destination, source", name, got)
			}
		}
	}
	if got := gaugeValue(g["trawl_hubble_metrics_series"], map[string]string{"metric": "trawl_tcp_packets_total"}); got != 4 {
		t.Errorf("packets series counted %v, want 4 (web->db, web->api, api->db, api->web)", got)
	}
	// DNS messages (L7 records, some over TCP) change nothing.
	before := value(g["trawl_tcp_packets_total"], map[string]string{})
	var l7 []*flowv1.Flow
	for _, f := range filtertest.DNSFlows() {
		if f.GetL7() != nil {
			l7 = append(l7, f)
		}
	}
	if len(l7) < 5 {
		t.Fatalf("only %d DNS messages", len(l7))
	}
	m.Observe(l7, nil)
	if after := value(gather(t, reg)["trawl_tcp_packets_total"], map[string]string{}); after != before {
		t.Errorf("DNS records moved trawl_tcp_packets_total from %v to %v", before, after)
	}
}

// Each tcp-health metric keeps to its series budget; the rest is counted
// as overflow. Contexts are configurable as for Hubble's metrics.
func TestTCPHealthMetricsKeepTheirSeriesBudget(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(MetricsConfig{Metrics: []string{"tcp-health:sourceContext=namespace"}, SeriesLimit: 1}, reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(tcpMetricFlows(), nil)
	g := gather(t, reg)
	// Sources: shop (web) first, then telco (api): one series each metric.
	if got := value(g["trawl_tcp_packets_total"], map[string]string{"source": "shop"}); got != 24 {
		t.Errorf("packets of shop = %v, want 24", got)
	}
	if got := len(g["trawl_tcp_packets_total"].GetMetric()); got != 1 {
		t.Errorf("%d packets series, want 1 (the budget)", got)
	}
	if got := value(g["trawl_hubble_metrics_overflow_total"], map[string]string{"metric": "trawl_tcp_packets_total"}); got != 2 {
		t.Errorf("packets overflow %v, want 2 (api's two records)", got)
	}
	if got := value(g["trawl_hubble_metrics_overflow_total"], map[string]string{"metric": "trawl_tcp_handshake_rtt_seconds"}); got != 2 {
		t.Errorf("handshake overflow %v, want 2", got)
	}
	for _, s := range g["trawl_tcp_resets_total"].GetMetric() {
		if got := labelNames(s); len(got) != 2 || got[0] != "reset_by" || got[1] != "source" {
			t.Errorf("resets labels %v, want reset_by, source", got)
		}
	}
}
