package ingest

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trawl-dev/trawl/internal/dropclass"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Metrics are the ingest side's Prometheus metrics.
type Metrics struct {
	records      *prometheus.CounterVec
	batches      *prometheus.CounterVec
	batchRecords prometheus.Histogram
	dedup        prometheus.Counter
	lost         *prometheus.CounterVec
	connected    prometheus.Gauge
	lastSeen     *prometheus.GaugeVec
	flows        *prometheus.CounterVec
	drops        *prometheus.CounterVec
	policyDrops  *prometheus.CounterVec
	lastInsert   atomic.Int64
	// flowCounters caches trawl_relay_flows_total children by
	// [direction][verdict] enum value: the label lookup runs per flow.
	flowCounters [3][8]prometheus.Counter
}

// DedupHits counts batches found already stored by the writer.
func (m *Metrics) DedupHits(batches int) { m.dedup.Add(float64(batches)) }

// NewMetrics creates and registers the ingest metrics. lost is the relay's
// trawl_relay_lost_events_total (shared with the observer).
func NewMetrics(reg prometheus.Registerer, lost *prometheus.CounterVec) *Metrics {
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_ingest_records_total", Help: "Records received from agents."}, []string{"kind"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_ingest_batches_total", Help: "Batches received, by result."}, []string{"result"}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "trawl_relay_batch_records", Help: "Records per received batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		dedup:       prometheus.NewCounter(prometheus.CounterOpts{Name: "trawl_relay_dedup_hits_total", Help: "Resent batches recognised as already stored or pending."}),
		lost:        lost,
		connected:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "trawl_relay_connected_agents", Help: "Agents with an open stream."}),
		lastSeen:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "trawl_relay_agent_last_seen_timestamp_seconds", Help: "Last heartbeat or batch of each agent."}, []string{"node"}),
		flows:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_flows_total", Help: "Aggregated flow records ingested."}, []string{"direction", "verdict"}),
		drops:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_drops_total", Help: "Dropped packets after policy attribution, by drop_reason_desc and drop class."}, []string{"reason", "drop_class"}),
		policyDrops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_policy_drops_total", Help: "Dropped packets attributed to a denying policy."}, []string{"namespace", "policy"}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.batches, m.batchRecords, m.dedup, m.connected, m.lastSeen, m.flows, m.drops, m.policyDrops)
	}
	for d := range m.flowCounters {
		for v := range m.flowCounters[d] {
			m.flowCounters[d][v] = m.flows.WithLabelValues(directionLabel(flowv1.TrafficDirection(d)), verdictLabel(flowv1.Verdict(v)))
		}
	}
	for _, k := range []string{"flow", "conntrack", "lost_events"} {
		m.records.WithLabelValues(k)
	}
	for _, r := range []string{"accepted", "duplicate", "rejected"} {
		m.batches.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) countFlow(f *flowv1.Flow) {
	switch f.GetEventKind() {
	case flowv1.EventKind_AGGREGATE:
		d, v := f.GetTrafficDirection(), f.GetVerdict()
		if int(d) < len(m.flowCounters) && int(v) < len(m.flowCounters[0]) {
			m.flowCounters[d][v].Inc()
		} else {
			m.flows.WithLabelValues(directionLabel(d), verdictLabel(v)).Inc()
		}
	case flowv1.EventKind_DROP:
		reason := f.GetDropReasonDesc()
		if reason == "" {
			reason = f.GetDropReasonKernel()
		}
		if reason == "" {
			reason = "unknown"
		}
		class := f.GetDropClass()
		if class == "" {
			class = string(dropclass.Of(reason))
		}
		pk := float64(max(f.GetPackets(), 1))
		m.drops.WithLabelValues(reason, class).Add(pk)
		seen := map[string]bool{}
		for _, p := range append(f.GetIngressDeniedBy(), f.GetEgressDeniedBy()...) {
			k := p.GetNamespace() + "/" + p.GetName()
			if seen[k] {
				continue
			}
			seen[k] = true
			m.policyDrops.WithLabelValues(p.GetNamespace(), p.GetName()).Add(pk)
		}
	}
}

func directionLabel(d flowv1.TrafficDirection) string {
	switch d {
	case flowv1.TrafficDirection_INGRESS:
		return "ingress"
	case flowv1.TrafficDirection_EGRESS:
		return "egress"
	}
	return "unknown"
}

func verdictLabel(v flowv1.Verdict) string {
	switch v {
	case flowv1.Verdict_FORWARDED:
		return "forwarded"
	case flowv1.Verdict_DROPPED:
		return "dropped"
	case flowv1.Verdict_ERROR:
		return "error"
	case flowv1.Verdict_AUDIT:
		return "audit"
	case flowv1.Verdict_REDIRECTED:
		return "redirected"
	case flowv1.Verdict_TRACED:
		return "traced"
	case flowv1.Verdict_TRANSLATED:
		return "translated"
	}
	return "unknown"
}
