package relay

import (
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/trawl-dev/trawl/internal/version"
)

type relayMetrics struct {
	lost        *prometheus.CounterVec
	subscribers prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) relayMetrics {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "trawl_relay_info", Help: "Build of the relay."}, []string{"version"})
	info.WithLabelValues(version.Version).Set(1)
	m := relayMetrics{
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_relay_lost_events_total",
			Help: "Records lost in the relay (slow subscribers, rejected batches) and reported by agents, by cause."}, []string{"cause"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "trawl_relay_subscribers", Help: "Live --follow subscribers."}),
	}
	reg.MustRegister(info, m.lost, m.subscribers)
	for _, c := range []string{"observer_events_queue", "batch_rejected"} {
		m.lost.WithLabelValues(c)
	}
	return m
}

// newMetricsServer serves /metrics from reg, /healthz, and Go's profiles
// under /debug/pprof/ when pprof is set.
func newMetricsServer(reg *prometheus.Registry, withPprof bool) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}
