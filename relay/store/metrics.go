package store

import "github.com/prometheus/client_golang/prometheus"

// writerMetrics are the relay's insert metrics (docs/metrics.md).
type writerMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	rows     *prometheus.CounterVec
	queue    prometheus.Gauge
	waits    prometheus.Counter
}

func newWriterMetrics(reg prometheus.Registerer) *writerMetrics {
	m := &writerMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trawl_relay_insert_duration_seconds", Help: "ClickHouse insert latency.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"table"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_relay_insert_errors_total", Help: "Failed ClickHouse inserts (retried).",
		}, []string{"table"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trawl_relay_insert_rows_total", Help: "Rows written to ClickHouse.",
		}, []string{"table"}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trawl_relay_queue_rows", Help: "Rows waiting to be written to ClickHouse.",
		}),
		waits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trawl_relay_insert_waits_total", Help: "Insert attempts postponed because an insert of some of the same batches was still running on ClickHouse (sent by a relay that died or gave up).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.errors, m.rows, m.queue, m.waits)
	}
	return m
}
