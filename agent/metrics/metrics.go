// Package metrics defines the agent's Prometheus metrics, exactly as listed
// in docs/metrics.md (Agent section). The relay stream client registers its
// own trawl_agent_relay_*/buffer/batches metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Agent holds every datapath metric of one agent process.
type Agent struct {
	Info             *prometheus.GaugeVec
	FeatureEnabled   *prometheus.GaugeVec
	Flows            *prometheus.CounterVec
	Packets          *prometheus.CounterVec
	Bytes            *prometheus.CounterVec
	Events           *prometheus.CounterVec
	Drops            *prometheus.CounterVec
	LostEvents       *prometheus.CounterVec
	MapEntries       *prometheus.GaugeVec
	MapCapacity      *prometheus.GaugeVec
	PollDuration     *prometheus.HistogramVec
	ConntrackEntries *prometheus.GaugeVec
	ConntrackMax     *prometheus.GaugeVec
	ConntrackUtil    *prometheus.GaugeVec
	ConntrackStat    *prometheus.CounterVec
	ConntrackNew     *prometheus.CounterVec
	DNSMessages      *prometheus.CounterVec
	DNSMatching      *prometheus.CounterVec
}

// Lost-event causes (label values of trawl_agent_lost_events_total).
const (
	CauseRingbuf     = "ringbuf_reserve_failed"
	CauseRateLimited = "rate_limited"
	CauseMapFull     = "map_full"
	CauseMalformed   = "malformed_packet"
)

// New creates and registers the metrics.
func New(reg prometheus.Registerer) *Agent {
	m := &Agent{
		Info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trawl_agent_info", Help: "Build and kernel of the agent (always 1).",
		}, []string{"version", "kernel", "node"}),
		FeatureEnabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trawl_agent_feature_enabled", Help: "1 when a kernel feature is in use.",
		}, []string{"feature"}),
		Flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_agent_flows_total", Help: "Aggregated flow records exported.",
		}, []string{"direction", "verdict"}),
		Packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_agent_packets_total", Help: "Packets in aggregated records (counted once per packet).",
		}, []string{"direction", "verdict"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_agent_bytes_total", Help: "Bytes in aggregated records.",
		}, []string{"direction", "verdict"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_agent_events_total", Help: "Records produced by type.",
		}, []string{"type"}),
		Drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_agent_drops_total", Help: "Dropped packets by kernel drop reason and its class (internal/dropclass).",
		}, []string{"reason", "drop_class"}),
		LostEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_agent_lost_events_total", Help: "Records lost or suppressed, by cause.",
		}, []string{"cause"}),
		MapEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trawl_agent_map_entries", Help: "Entries in an eBPF map at the last poll.",
		}, []string{"map"}),
		MapCapacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trawl_agent_map_capacity", Help: "Max entries of an eBPF map.",
		}, []string{"map"}),
		PollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trawl_agent_poll_duration_seconds", Help: "Time of one poll of the flow/drop maps or conntrack.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}, []string{"collector"}),
		ConntrackEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trawl_conntrack_entries", Help: "nf_conntrack_count.",
		}, []string{"node"}),
		ConntrackMax: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trawl_conntrack_max", Help: "nf_conntrack_max.",
		}, []string{"node"}),
		ConntrackUtil: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trawl_conntrack_utilization", Help: "Conntrack entries / max, 0..1.",
		}, []string{"node"}),
		ConntrackStat: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_conntrack_stat_total", Help: "/proc/net/stat/nf_conntrack summed over CPUs.",
		}, []string{"node", "stat"}),
		ConntrackNew: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_conntrack_new_entries_total", Help: "New conntrack entries seen by the netfilter eBPF program.",
		}, []string{"node"}),
		DNSMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_agent_dns_messages_total", Help: "DNS messages read from the datapath, by outcome of parsing.",
		}, []string{"outcome"}),
		DNSMatching: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_agent_dns_matching_total", Help: "DNS responses matched to their query or not, and queries expired or evicted from the matching table.",
		}, []string{"result"}),
	}
	// Series with bounded labels exist from the start, so rate() and
	// alert rules see a zero before the first event.
	for _, c := range []string{CauseRingbuf, CauseRateLimited, CauseMapFull, CauseMalformed} {
		m.LostEvents.WithLabelValues(c)
	}
	for _, t := range []string{"aggregate", "flow_new", "flow_close", "drop", "conntrack", "dns_request", "dns_response", "connect_timeout"} {
		m.Events.WithLabelValues(t)
	}
	for _, d := range []string{"INGRESS", "EGRESS", "TRAFFIC_DIRECTION_UNKNOWN"} {
		m.Flows.WithLabelValues(d, "FORWARDED")
		m.Packets.WithLabelValues(d, "FORWARDED")
		m.Bytes.WithLabelValues(d, "FORWARDED")
	}
	reg.MustRegister(m.Info, m.FeatureEnabled, m.Flows, m.Packets, m.Bytes, m.Events, m.Drops,
		m.LostEvents, m.MapEntries, m.MapCapacity, m.PollDuration, m.ConntrackEntries,
		m.ConntrackMax, m.ConntrackUtil, m.ConntrackStat, m.ConntrackNew, m.DNSMessages, m.DNSMatching)
	return m
}
