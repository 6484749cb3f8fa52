package hubble

import (
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trawl-dev/trawl/internal/dnscodes"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	"github.com/trawl-dev/trawl/relay/ingest"
	"github.com/trawl-dev/trawl/relay/store"
)

// Hubble's flow metrics, exported by the relay from what it ingests: the
// names, labels and label values of Cilium's Hubble metrics (Cilium's
// documentation, "Hubble Exported Metrics", and pkg/hubble/metrics), so
// that dashboards and alerts written for Hubble work on Trawl.
//
// Which Trawl records feed which metric (Trawl aggregates; Hubble counts
// events):
//
//	hubble_flows_processed_total    every flow record, +1
//	hubble_drop_total               DROP records, +dropped packets
//	hubble_tcp_flags_total          forwarded FLOW_NEW and FLOW_CLOSE records (the connection's SYN, SYN-ACK, FIN, RST), +1 per flag
//	hubble_port_distribution_total  forwarded AGGREGATE records that are not replies, +packets
//	hubble_icmp_total               AGGREGATE and DROP records of ICMP, +packets
//	hubble_policy_verdicts_total    POLICY_VERDICT records (not from the host), +1
//	hubble_flows_to_world_total     AGGREGATE records to reserved:world that are not replies and DROP records of policy (any drop with any-drop), +1; with syn-only forwarded FLOW_NEW SYNs
//	hubble_lost_events_total        lost-events records, +lost records
//	hubble_dns_queries_total        DNS query records (and dropped DNS records, rcode "Policy denied"), +1
//	hubble_dns_responses_total      DNS response records, +1
//	hubble_dns_response_types_total DNS response records, +1 per answer record type
//	trawl_dns_response_latency_seconds  DNS responses matched to their query: the latency
//	trawl_tcp_handshake_rtt_seconds     forwarded TCP AGGREGATE records with a handshake: its RTT (both halves)
//	trawl_tcp_retransmits_total         forwarded TCP AGGREGATE records, +retransmitted segments
//	trawl_tcp_packets_total             forwarded TCP AGGREGATE records, +packets
//	trawl_tcp_resets_total              forwarded TCP AGGREGATE records with a reset, +1 (reset_by client or server)
//	trawl_tcp_connect_timeouts_total    CONNECT_TIMEOUT records, +1
//
// The trawl_tcp_* metrics (spec tcp-health, docs/tcp-health.md) label the
// connection's client as source and its server as destination whatever
// the record's direction: a reply's endpoints are swapped for the context.
//
// Every metric has a hard budget of series: a record that would create a
// series beyond it is not counted there but in
// trawl_hubble_metrics_overflow_total{metric}; series not updated for the
// idle time are deleted, which frees their place.

// MetricsConfig configures Hubble's metrics.
type MetricsConfig struct {
	// Metrics are Hubble's metric specs, as cilium-agent's --hubble-metrics:
	// "name" or "name:option;option=value", e.g.
	// "drop:sourceContext=namespace;destinationContext=namespace".
	Metrics []string
	// SeriesLimit is the most series one metric may have (default 5000).
	SeriesLimit int
	// SeriesIdle deletes series not updated for this long (0: never).
	SeriesIdle time.Duration
	// TeardownDrops counts drops of the teardown class (which Hubble's
	// datapath never reports).
	TeardownDrops bool
}

// DefaultMetrics are enabled unless configured otherwise: Hubble's flow
// metrics without context labels, and DNS with the client and server
// workloads (docs/dns.md).
var DefaultMetrics = []string{"flow", "drop", "tcp", "port-distribution", "icmp", "policy",
	"dns:sourceContext=workload|reserved-identity;destinationContext=workload|reserved-identity",
	"tcp-health:sourceContext=workload|reserved-identity;destinationContext=workload|reserved-identity"}

// DefaultSeriesLimit is the default series budget per metric.
const DefaultSeriesLimit = 5000

type handler struct {
	name     string
	vec      *prometheus.CounterVec
	hist     *prometheus.HistogramVec // instead of vec for histograms
	memo     *ctxMemo                 // shared by a family's handlers
	ctx      contextOptions
	observe  func(h *handler, f *flowv1.Flow)
	opts     map[string]bool // metric-specific options (flows-to-world)
	ctxFirst bool
	series   map[string]*series
	limit    int
	overflow prometheus.Counter
	count    prometheus.Gauge

	now   int64
	vals  []string
	key   []byte
	ports map[uint32]string // port label values (port-distribution, flows-to-world)
	// recent finds the series of label values seen before without
	// building and hashing their key (see seriesOf); nil: not used.
	recent *seriesCache
	// added: series with counts of the batch being observed, added to
	// their counters once at its end (flush).
	added []*series
}

type series struct {
	// vals, last and pending first: counting a record reads and writes
	// them, the counters only at the batch's end.
	vals []string // in short when they fit: one allocation, and cache line, less per series
	last int64
	// pending is what the batch being observed counted so far. Why not
	// Add at once: a counter's value is a cache line of its own, and the
	// records of a batch touch a few hundred series in turn, so one atomic
	// add per record and metric missed the cache each time.
	pending float64
	short   [4]string
	c       prometheus.Counter
	o       prometheus.Observer // histograms
}

// Metrics counts ingested records into Hubble's metrics. Safe for
// concurrent use.
type Metrics struct {
	cfg       MetricsConfig
	mu        sync.Mutex
	handlers  []*handler // every metric
	passes    []*handler // what Observe runs over a batch: the handlers, a family's behind one dispatcher
	lost      *handler
	lastSweep time.Time
}

type metricDef struct {
	name     string // without hubble_
	help     string
	fixed    []string // the metric's own labels
	ctxFirst bool     // context labels before the metric's own (drop)
	options  []string // metric-specific options
	observe  func(h *handler, f *flowv1.Flow)
	// family: the spec enables these metrics (with the spec's options)
	// instead of one (dns: three counters and a histogram).
	family []metricDef
	// histogram: a Trawl histogram (full name in name) rather than a
	// hubble_ counter; trawl: a Trawl counter (full name in name).
	histogram, trawl bool
	// accept: a family's records (the others skip all of its metrics).
	accept func(f *flowv1.Flow) bool
	// clientServer: a family whose context labels the connection's client
	// as source and its server as destination (a reply's are swapped).
	clientServer bool
	// optionLabels: option -> label appended to fixed when the option is set.
	optionLabels map[string]string
}

var metricDefs = map[string]metricDef{
	"flow": {name: "flows_processed_total", help: "Total number of flows processed",
		fixed: []string{"protocol", "type", "subtype", "verdict"}, observe: observeFlow},
	"drop": {name: "drop_total", help: "Number of drops",
		fixed: []string{"reason", "protocol"}, ctxFirst: true, observe: observeDrop},
	"tcp": {name: "tcp_flags_total", help: "TCP flag occurrences",
		fixed: []string{"flag", "family"}, observe: observeTCP},
	"port-distribution": {name: "port_distribution_total", help: "Numbers of packets distributed by destination port",
		fixed: []string{"protocol", "port"}, observe: observePorts},
	"icmp": {name: "icmp_total", help: "Number of ICMP messages",
		fixed: []string{"family", "type"}, observe: observeICMP},
	"policy": {name: "policy_verdicts_total", help: "Total number of Cilium network policy verdicts",
		fixed: []string{"direction", "match", "action"}, observe: observePolicy},
	"flows-to-world": {name: "flows_to_world_total", help: "Total number of flows to reserved:world",
		fixed: []string{"protocol", "verdict"}, options: []string{"any-drop", "port", "syn-only"}, observe: observeToWorld},
}

// dnsOptions are the dns metric's options, as Hubble's: query adds the
// query name as a label (unbounded: mind the series budget), ignoreAAAA
// leaves out records whose only question type is AAAA.
var dnsOptions = []string{"query", "ignoreaaaa"}

func init() {
	metricDefs["dns"] = metricDef{family: []metricDef{
		{name: "dns_queries_total", help: "Number of DNS queries observed", ctxFirst: true,
			fixed: []string{"rcode", "qtypes", "ips_returned"}, options: dnsOptions, optionLabels: map[string]string{"query": "query"}, observe: observeDNSQuery},
		{name: "dns_responses_total", help: "Number of DNS queries observed", ctxFirst: true,
			fixed: []string{"rcode", "qtypes", "ips_returned"}, options: dnsOptions, optionLabels: map[string]string{"query": "query"}, observe: observeDNSResponse},
		{name: "dns_response_types_total", help: "Number of DNS queries observed", ctxFirst: true,
			fixed: []string{"type", "qtypes"}, options: dnsOptions, optionLabels: map[string]string{"query": "query"}, observe: observeDNSResponseTypes},
		{name: "trawl_dns_response_latency_seconds", histogram: true, options: dnsOptions, observe: observeDNSLatency},
	}, accept: func(f *flowv1.Flow) bool { return f.GetL7().GetDns() != nil }}
	metricDefs["tcp-health"] = metricDef{family: []metricDef{
		{name: "trawl_tcp_handshake_rtt_seconds", histogram: true, observe: observeTCPHandshake},
		{name: "trawl_tcp_retransmits_total", trawl: true, observe: observeTCPRetransmits},
		{name: "trawl_tcp_packets_total", trawl: true, observe: observeTCPPackets},
		{name: "trawl_tcp_resets_total", trawl: true, fixed: []string{"reset_by"}, observe: observeTCPResets},
		{name: "trawl_tcp_connect_timeouts_total", trawl: true, observe: observeTCPTimeouts},
	}, accept: tcpHealthRecord, clientServer: true}
}

var unsupportedMetrics = map[string]string{
	"http":   "Trawl records no HTTP (L7) flows",
	"httpv2": "Trawl records no HTTP (L7) flows",
	"kafka":  "Trawl records no Kafka (L7) flows",
}

// MetricNames lists the metric specs Trawl supports.
func MetricNames() []string {
	var out []string
	for k := range metricDefs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// NewMetrics parses cfg and registers the metrics on reg. No specs means
// no Hubble metrics (nil, nil).
func NewMetrics(cfg MetricsConfig, reg prometheus.Registerer) (*Metrics, error) {
	if len(cfg.Metrics) == 0 {
		return nil, nil
	}
	if cfg.SeriesLimit <= 0 {
		cfg.SeriesLimit = DefaultSeriesLimit
	}
	m := &Metrics{cfg: cfg, lastSweep: time.Now()}
	overflow := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_hubble_metrics_overflow_total",
		Help: "Records not counted in a Hubble metric because its series budget (--hubble-metrics-series-limit) was full."}, []string{"metric"})
	count := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "trawl_hubble_metrics_series",
		Help: "Series of each Hubble metric (bounded by --hubble-metrics-series-limit)."}, []string{"metric"})
	seen := map[string]bool{}
	names := newJoinedNames()
	for _, spec := range cfg.Metrics {
		hs, err := newHandlers(spec, cfg.SeriesLimit)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			h.ctx.names = names
			if seen[h.name] {
				return nil, fmt.Errorf("hubble metrics: %s configured twice", h.name)
			}
			seen[h.name] = true
			m.handlers = append(m.handlers, h)
		}
		if len(hs) == 1 {
			m.passes = append(m.passes, hs[0])
			continue
		}
		// A family (dns, tcp-health) looks at its records once: one pass
		// that skips every record it does not accept, then its metrics.
		memo := &ctxMemo{}
		for _, h := range hs {
			h.memo = memo
		}
		def := metricDefs[familyName(spec)]
		var view clientView
		m.passes = append(m.passes, &handler{name: "dispatch", observe: func(d *handler, f *flowv1.Flow) {
			if !def.accept(f) {
				return
			}
			if def.clientServer {
				f = view.of(f)
			}
			memo.f = nil // a record at a reused address is a new record
			for _, h := range hs {
				h.now = d.now
				h.observe(h, f)
			}
		}})
	}
	// Hubble enables lost_events_total with any other metric.
	m.lost = &handler{name: "hubble_lost_events_total", series: map[string]*series{}, limit: cfg.SeriesLimit,
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "hubble", Name: "lost_events_total", Help: "Number of lost events"}, []string{"source"})}
	all := append(append([]*handler(nil), m.handlers...), m.lost)
	if reg != nil {
		reg.MustRegister(overflow, count)
	}
	for _, h := range all {
		h.overflow = overflow.WithLabelValues(h.name)
		h.count = count.WithLabelValues(h.name)
		if reg != nil {
			var c prometheus.Collector = h.vec
			if h.hist != nil {
				c = h.hist
			}
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("hubble metrics: register %s: %w", h.name, err)
			}
		}
	}
	return m, nil
}

// familyName is the metric name of a spec.
func familyName(spec string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(spec), ":")
	return name
}

// tcpHandshakeBuckets are trawl_tcp_handshake_rtt_seconds' buckets: a
// handshake within the node (tens of microseconds) to one that needed a
// retransmitted SYN (1 s and more).
var tcpHandshakeBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// dnsLatencyBuckets are trawl_dns_response_latency_seconds' buckets: a
// cache hit on the node (sub-millisecond) to an upstream timeout (5 s).
var dnsLatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// newHandlers parses one spec into the handlers of its metrics (one, or a
// family's).
func newHandlers(spec string, limit int) ([]*handler, error) {
	name, optStr, _ := strings.Cut(strings.TrimSpace(spec), ":")
	def, ok := metricDefs[name]
	if !ok {
		if why, known := unsupportedMetrics[strings.ToLower(name)]; known {
			return nil, fmt.Errorf("hubble metric %q: %s", name, why)
		}
		return nil, fmt.Errorf("hubble metric %q: unknown (Trawl has %s)", name, strings.Join(MetricNames(), ", "))
	}
	defs := def.family
	if defs == nil {
		defs = []metricDef{def}
	}
	var out []*handler
	for _, d := range defs {
		h, err := newHandler(name, d, optStr, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

func newHandler(name string, def metricDef, optStr string, limit int) (*handler, error) {
	h := &handler{name: "hubble_" + def.name, observe: def.observe, series: map[string]*series{}, limit: limit, opts: map[string]bool{},
		recent: newSeriesCache()}
	if def.histogram || def.trawl {
		h.name = def.name
	}
	if optStr != "" {
		for _, opt := range strings.Split(optStr, ";") {
			if opt == "" {
				continue
			}
			key, value, _ := strings.Cut(opt, "=")
			isCtx, err := h.ctx.setOption(key, value)
			if err != nil {
				return nil, fmt.Errorf("hubble metric %q: %w", name, err)
			}
			if isCtx {
				continue
			}
			if !slices.Contains(def.options, strings.ToLower(key)) {
				return nil, fmt.Errorf("hubble metric %q: unknown option %q", name, key)
			}
			h.opts[strings.ToLower(key)] = true
		}
	}
	fixed := def.fixed
	if h.opts["port"] {
		fixed = append(append([]string(nil), fixed...), "port")
	}
	for _, opt := range def.options {
		if l, ok := def.optionLabels[opt]; ok && h.opts[opt] {
			fixed = append(append([]string(nil), fixed...), l)
		}
	}
	labels := append(append([]string(nil), fixed...), h.ctx.labelNames()...)
	if def.ctxFirst {
		labels = append(h.ctx.labelNames(), fixed...)
		h.ctxFirst = true
	}
	if def.histogram || def.trawl {
		h.vec, h.hist = trawlMetric(def.name, labels)
		return h, nil
	}
	h.vec = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "hubble", Name: def.name, Help: def.help}, labels)
	return h, nil
}

// trawlMetric makes Trawl's own metric of a family (each name once, with
// its options written out, so the metrics contract test finds it).
func trawlMetric(name string, labels []string) (*prometheus.CounterVec, *prometheus.HistogramVec) {
	switch name {
	case "trawl_dns_response_latency_seconds":
		// The matched responses' latency with the DNS metric's context labels.
		return nil, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "trawl_dns_response_latency_seconds",
			Help:    "Latency of DNS responses matched to their query (same client, server, ports and message id), as seen on the node.",
			Buckets: dnsLatencyBuckets}, labels)
	case "trawl_tcp_handshake_rtt_seconds":
		return nil, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "trawl_tcp_handshake_rtt_seconds",
			Help:    "Handshake RTT of TCP connections (SYN to SYN-ACK plus SYN-ACK to ACK, as seen on the node), by client (source) and server (destination).",
			Buckets: tcpHandshakeBuckets}, labels)
	case "trawl_tcp_retransmits_total":
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_tcp_retransmits_total",
			Help: "TCP segments the node's own sockets retransmitted, by connection client (source) and server (destination)."}, labels), nil
	case "trawl_tcp_packets_total":
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_tcp_packets_total",
			Help: "Packets of forwarded TCP aggregate records (the retransmit ratio's denominator), by connection client (source) and server (destination)."}, labels), nil
	case "trawl_tcp_resets_total":
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_tcp_resets_total",
			Help: "TCP connections reset, by the side that sent the RST (reset_by), client (source) and server (destination)."}, labels), nil
	case "trawl_tcp_connect_timeouts_total":
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trawl_tcp_connect_timeouts_total",
			Help: "TCP connection attempts whose SYN had no answer within the agent's --syn-timeout, by client (source) and server (destination)."}, labels), nil
	}
	panic("hubble metrics: no Trawl metric " + name)
}

// add counts n for a series given by the metric's own label values
// followed (or preceded, for drop_total) by f's context values.
func (h *handler) add(f *flowv1.Flow, n float64, fixed ...string) {
	if s := h.seriesOf(f, fixed); s != nil {
		if s.pending == 0 {
			h.added = append(h.added, s)
		}
		s.pending += n
	}
}

// flush adds the batch's counts to the counters.
func (h *handler) flush() {
	for _, s := range h.added {
		s.c.Add(s.pending)
		s.pending = 0
	}
	clear(h.added)
	h.added = h.added[:0]
}

// observeValue adds v to a histogram's series, as add does for counters.
func (h *handler) observeValue(f *flowv1.Flow, v float64, fixed ...string) {
	if s := h.seriesOf(f, fixed); s != nil {
		s.o.Observe(v)
	}
}

// ctxMemo holds the context values of the record a family's metrics are
// counting, so that its metrics (same options) work them out once.
type ctxMemo struct {
	f    *flowv1.Flow // nil: not computed for the current record
	vals []string
}

// appendContext appends f's context values (from the family's memo when
// the handler has one).
func (h *handler) appendContext(vals []string, f *flowv1.Flow) []string {
	m := h.memo
	if m == nil {
		return h.ctx.appendValues(vals, f)
	}
	if m.f != f {
		m.vals = h.ctx.appendValues(m.vals[:0], f)
		m.f = f
	}
	return append(vals, m.vals...)
}

// seriesOf finds or makes the series, nil when the budget is full.
func (h *handler) seriesOf(f *flowv1.Flow, fixed []string) *series {
	vals := h.vals[:0]
	if h.ctxFirst {
		vals = h.appendContext(vals, f)
		vals = append(vals, fixed...)
	} else {
		vals = append(vals, fixed...)
		vals = h.appendContext(vals, f)
	}
	h.vals = vals
	slot := -1
	if h.recent != nil {
		var s *series
		if s, slot = h.recent.find(vals); s != nil {
			s.last = h.now
			return s
		}
	}
	key := h.key[:0]
	for _, v := range vals {
		key = append(key, v...)
		key = append(key, 0xff)
	}
	h.key = key
	s, ok := h.series[string(key)]
	if !ok {
		if len(h.series) >= h.limit {
			h.overflow.Inc()
			return nil
		}
		s = &series{}
		vc := append(s.short[:0:len(s.short)], vals...)
		s.vals = vc
		if h.hist != nil {
			s.o = h.hist.WithLabelValues(vc...)
		} else {
			s.c = h.vec.WithLabelValues(vc...)
		}
		h.series[string(key)] = s
		h.count.Set(float64(len(h.series)))
		if h.recent != nil && h.recent.grow(len(h.series)) {
			_, slot = h.recent.find(vals)
		}
	}
	if slot >= 0 {
		h.recent.slots[slot] = s
	}
	s.last = h.now
	return s
}

// seriesCache is a direct-mapped cache in front of a handler's series map,
// indexed by the addresses and lengths of the label values. Why addresses:
// the values a record yields are mostly the same strings in memory as the
// last record of that series had (constants, interned names, the ingest
// stream's string table), so hashing their addresses costs a few
// multiplications where building the byte key and hashing it cost a copy
// and a pass over every byte, for every record and metric.
//
// A slot is a hint, never trusted: a hit compares the values themselves
// (string equality, which is a pointer check when the memory is the
// same), so a collision, a moved or a reused address can only miss. A
// cached series keeps its values alive, so their addresses are not reused
// while it is cached.
type seriesCache struct {
	slots []*series
	shift uint // 64 - log2(len(slots))
	max   int  // most slots: maxRecentSlots, less in tests
}

// Bounds of the cache's slots per metric: a pair of workloads per series
// (tcp-health) reaches thousands of series; 8 B a slot.
const (
	minRecentSlots = 64
	maxRecentSlots = 16384
)

func newSeriesCache() *seriesCache {
	c := &seriesCache{max: maxRecentSlots}
	c.resize(minRecentSlots)
	return c
}

func (c *seriesCache) resize(n int) {
	c.slots = make([]*series, n)
	c.shift = uint(64 - bits.TrailingZeros(uint(n)))
}

// grow doubles the slots (emptying them) while the series outnumber a
// quarter of them, up to c.max; true when it did. A quarter: at
// half, two series shared a slot often enough that a tenth of the records
// of tcp-health's thousands of series missed (relay data set).
func (c *seriesCache) grow(series int) bool {
	n := len(c.slots)
	for n < c.max && series > n/4 {
		n *= 2
	}
	if n == len(c.slots) {
		return false
	}
	c.resize(n)
	return true
}

// find is the cached series of vals, or nil and the slot it belongs in.
func (c *seriesCache) find(vals []string) (*series, int) {
	const mul = 0x9e3779b97f4a7c15 // 2^64 / golden ratio: spreads addresses over the top bits
	h := uint64(len(vals))
	for _, v := range vals {
		h = (h ^ uint64(uintptr(unsafe.Pointer(unsafe.StringData(v))))) * mul
		h = (h ^ uint64(len(v))) * mul
	}
	i := int(h >> c.shift)
	if s := c.slots[i]; s != nil && slices.Equal(s.vals, vals) {
		return s, i
	}
	return nil, i
}

// clear forgets every series (they are being deleted).
func (c *seriesCache) clear() { clear(c.slots) }

// sweep deletes series idle since before cutoff.
func (h *handler) sweep(cutoff int64) {
	for k, s := range h.series {
		if s.last < cutoff {
			if h.hist != nil {
				h.hist.DeleteLabelValues(s.vals...)
			} else {
				h.vec.DeleteLabelValues(s.vals...)
			}
			delete(h.series, k)
		}
	}
	if h.recent != nil {
		h.recent.clear() // a deleted series must be made anew, in its vec
	}
	h.count.Set(float64(len(h.series)))
}

// Observe counts the records of one ingested batch.
func (m *Metrics) Observe(flows []*flowv1.Flow, lost []*flowv1.LostEvent) {
	if m == nil {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	// Idle series go first, so the batch can use the room they free.
	if idle := m.cfg.SeriesIdle; idle > 0 && now.Sub(m.lastSweep) >= min(idle/2, time.Minute) {
		m.lastSweep = now
		cutoff := now.Add(-idle).UnixNano()
		for _, h := range m.handlers {
			h.sweep(cutoff)
		}
		m.lost.sweep(cutoff)
	}
	for _, h := range m.passes {
		h.now = now.UnixNano()
	}
	// Record by record, every metric while the record is in cache: a
	// batch's records do not fit in it, and a pass per metric over the
	// batch read each of them from memory again (each metric keeps its
	// own series, so the order it sees is the same).
	for _, f := range flows {
		if !m.cfg.TeardownDrops && f.GetDropClass() == "teardown" {
			continue
		}
		for _, h := range m.passes {
			h.observe(h, f)
		}
	}
	m.lost.now = now.UnixNano()
	for _, l := range lost {
		src := strings.ToLower(LostEventSource(l.GetSource()).String())
		m.lost.add(nil, float64(l.GetNumEventsLost()), src)
	}
	for _, h := range m.handlers {
		h.flush()
	}
	m.lost.flush()
}

// Sink counts each batch the relay stores, then passes it on.
func (m *Metrics) Sink(next ingest.Sink) ingest.Sink {
	if m == nil {
		return next
	}
	return metricsSink{m, next}
}

type metricsSink struct {
	m    *Metrics
	next ingest.Sink
}

func (s metricsSink) Enqueue(b *store.Batch, done func(error)) {
	s.m.Observe(b.Flows, b.Lost)
	s.next.Enqueue(b, done)
}

// verdictNames are Hubble's verdict names by number, looked up in an
// array: String() goes through the protobuf runtime's descriptors.
var verdictNames = func() (out [16]string) {
	for i := range out {
		out[i] = flowpb.Verdict(i).String()
	}
	return out
}()

// verdictName is Hubble's name of v (as flowpb.Verdict's String).
func verdictName(v flowv1.Verdict) string {
	if uint(v) < uint(len(verdictNames)) {
		return verdictNames[v]
	}
	return flowpb.Verdict(v).String()
}

func forwarded(v flowv1.Verdict) bool {
	return v == flowv1.Verdict_FORWARDED || v == flowv1.Verdict_REDIRECTED
}

func packets(f *flowv1.Flow) float64 { return float64(max(f.GetPackets(), 1)) }

func observeFlow(h *handler, f *flowv1.Flow) {
	typ, _, point := eventType(f)
	sub, proto := "", ""
	switch typ {
	case msgTypeTrace:
		sub, proto = traceSubtypeName(point), protocolName(f.GetL4())
	case msgTypeAccessLog: // Hubble's protocol and subtype of L7 records
		proto = "Unknown L7"
		if f.GetL7().GetDns() != nil {
			sub, proto = "DNS", "DNS"
		}
	default:
		proto = protocolName(f.GetL4())
	}
	h.add(f, 1, proto, eventTypeName(typ), sub, verdictName(f.GetVerdict()))
}

func observeDrop(h *handler, f *flowv1.Flow) {
	if f.GetEventKind() != flowv1.EventKind_DROP {
		return
	}
	h.add(f, packets(f), dropReasonLabel(f), protocolName(f.GetL4()))
}

func observeTCP(h *handler, f *flowv1.Flow) {
	k := f.GetEventKind()
	if k != flowv1.EventKind_FLOW_NEW && k != flowv1.EventKind_FLOW_CLOSE || !forwarded(f.GetVerdict()) || f.GetIP() == nil {
		return
	}
	fl := f.GetL4().GetTCP().GetFlags()
	if fl == nil {
		return
	}
	family := flowpb.IPVersion(f.GetIP().GetIpVersion()).String()
	if fl.FIN {
		h.add(f, 1, "FIN", family)
	}
	if fl.SYN {
		if fl.ACK {
			h.add(f, 1, "SYN-ACK", family)
		} else {
			h.add(f, 1, "SYN", family)
		}
	}
	if fl.RST {
		h.add(f, 1, "RST", family)
	}
}

// portString is p's label value, made once per port: the records of a
// batch name a few ports over and over.
func (h *handler) portString(p uint32) string {
	if s, ok := h.ports[p]; ok {
		return s
	}
	if h.ports == nil || len(h.ports) >= maxPorts {
		h.ports = make(map[uint32]string)
	}
	s := strconv.FormatUint(uint64(p), 10)
	h.ports[p] = s
	return s
}

// maxPorts bounds handler.ports; a full map is started afresh.
const maxPorts = 4096

func observePorts(h *handler, f *flowv1.Flow) {
	if f.GetEventKind() != flowv1.EventKind_AGGREGATE || !forwarded(f.GetVerdict()) ||
		f.GetIsReply() == nil || f.GetIsReply().GetValue() {
		return
	}
	l4 := f.GetL4()
	switch {
	case l4.GetTCP() != nil:
		h.add(f, packets(f), "TCP", h.portString(l4.GetTCP().GetDestinationPort()))
	case l4.GetUDP() != nil:
		h.add(f, packets(f), "UDP", h.portString(l4.GetUDP().GetDestinationPort()))
	case l4.GetSCTP() != nil:
		h.add(f, packets(f), "SCTP", h.portString(l4.GetSCTP().GetDestinationPort()))
	case l4.GetICMPv4() != nil:
		h.add(f, packets(f), "ICMPv4", "0")
	case l4.GetICMPv6() != nil:
		h.add(f, packets(f), "ICMPv6", "0")
	}
}

func observeICMP(h *handler, f *flowv1.Flow) {
	if k := f.GetEventKind(); k != flowv1.EventKind_AGGREGATE && k != flowv1.EventKind_DROP {
		return
	}
	l4 := f.GetL4()
	if i := l4.GetICMPv4(); i != nil {
		h.add(f, packets(f), "IPv4", icmpTypeName(false, i.GetType(), i.GetCode()))
	}
	if i := l4.GetICMPv6(); i != nil {
		h.add(f, packets(f), "IPv6", icmpTypeName(true, i.GetType(), i.GetCode()))
	}
}

// Hubble's reserved identity of the host (pkg/identity ReservedIdentityHost).
const identityHost = 1

func observePolicy(h *handler, f *flowv1.Flow) {
	if f.GetEventKind() != flowv1.EventKind_POLICY_VERDICT || f.GetSource().GetIdentity() == identityHost {
		return
	}
	// Trawl's verdicts come from Kubernetes NetworkPolicies evaluated by
	// the relay; it does not say which kind of rule matched: the match
	// type is Hubble's "none" (policy_match_type 0).
	h.add(f, 1, lowerName(lowerDirections, int32(f.GetTrafficDirection())), "none", lowerName(lowerVerdicts, int32(f.GetVerdict())))
}

// Hubble's policy verdict labels are the lower-case enum names.
var lowerDirections, lowerVerdicts = lowerNames(flowpb.TrafficDirection_name), lowerNames(flowpb.Verdict_name)

func lowerNames(names map[int32]string) map[int32]string {
	out := make(map[int32]string, len(names))
	for k, v := range names {
		out[k] = strings.ToLower(v)
	}
	return out
}

func lowerName(lower map[int32]string, v int32) string {
	if s, ok := lower[v]; ok {
		return s
	}
	return strconv.Itoa(int(v)) // as protobuf names an unknown value
}

func toWorld(ep *flowv1.Endpoint) bool {
	for _, l := range ep.GetLabels() {
		if l == "reserved:world" || l == "reserved:world-ipv4" || l == "reserved:world-ipv6" {
			return true
		}
	}
	return false
}

func observeToWorld(h *handler, f *flowv1.Flow) {
	if !toWorld(f.GetDestination()) || f.GetL4() == nil {
		return
	}
	k := f.GetEventKind()
	reply := f.GetIsReply().GetValue()
	switch {
	case h.opts["syn-only"]:
		if k != flowv1.EventKind_FLOW_NEW || !forwarded(f.GetVerdict()) || reply || !f.GetL4().GetTCP().GetFlags().GetSYN() {
			return
		}
	case k == flowv1.EventKind_DROP:
		if !h.opts["any-drop"] && f.GetDropReasonDesc() != "POLICY_DENIED" {
			return
		}
	case k == flowv1.EventKind_AGGREGATE:
		if reply {
			return
		}
	default:
		return
	}
	vals := []string{protocolName(f.GetL4()), verdictName(f.GetVerdict())}
	if h.opts["port"] {
		port := ""
		if _, dp, ok := l4Ports(f.GetL4()); ok {
			port = h.portString(dp)
		}
		vals = append(vals, port)
	}
	h.add(f, 1, vals...)
}

func l4Ports(l4 *flowv1.Layer4) (src, dst uint32, ok bool) {
	switch {
	case l4.GetTCP() != nil:
		return l4.GetTCP().GetSourcePort(), l4.GetTCP().GetDestinationPort(), true
	case l4.GetUDP() != nil:
		return l4.GetUDP().GetSourcePort(), l4.GetUDP().GetDestinationPort(), true
	case l4.GetSCTP() != nil:
		return l4.GetSCTP().GetSourcePort(), l4.GetSCTP().GetDestinationPort(), true
	}
	return 0, 0, false
}

// DNS metrics, with the behaviour of Hubble's dns handler: a DROPPED
// record counts as a query with rcode "Policy denied" (Hubble's DNS proxy
// drops only by policy; Trawl's drops have other reasons too, see
// drop_reason_desc), a record that is not a reply as a query (rcode ""),
// a reply as a response with Hubble's words for its rcode and one
// response_types count per answer record type. ignoreAAAA skips records
// whose only question type is AAAA; query adds the name.

// dnsOf is f's DNS record, nil for others and, with ignoreAAAA, for
// AAAA-only questions.
func dnsOf(h *handler, f *flowv1.Flow) *flowv1.DNS {
	d := f.GetL7().GetDns()
	if d == nil {
		return nil
	}
	if h.opts["ignoreaaaa"] && len(d.GetQtypes()) == 1 && d.GetQtypes()[0] == "AAAA" {
		return nil
	}
	return d
}

var ipsReturned [64]string

func ipsReturnedLabel(n int) string {
	if n < len(ipsReturned) {
		return ipsReturned[n]
	}
	return strconv.Itoa(n)
}

func init() {
	for i := range ipsReturned {
		ipsReturned[i] = strconv.Itoa(i)
	}
}

// dnsAdd counts a record in queries_total or responses_total.
func (h *handler) dnsAdd(f *flowv1.Flow, d *flowv1.DNS, rcode string) {
	qtypes := strings.Join(d.GetQtypes(), ",")
	if h.opts["query"] {
		h.add(f, 1, rcode, qtypes, ipsReturnedLabel(len(d.GetIps())), d.GetQuery())
		return
	}
	h.add(f, 1, rcode, qtypes, ipsReturnedLabel(len(d.GetIps())))
}

func observeDNSQuery(h *handler, f *flowv1.Flow) {
	d := dnsOf(h, f)
	switch {
	case d == nil:
	case f.GetVerdict() == flowv1.Verdict_DROPPED:
		h.dnsAdd(f, d, "Policy denied")
	case !f.GetIsReply().GetValue():
		h.dnsAdd(f, d, "")
	}
}

func observeDNSResponse(h *handler, f *flowv1.Flow) {
	if d := dnsOf(h, f); d != nil && f.GetVerdict() != flowv1.Verdict_DROPPED && f.GetIsReply().GetValue() {
		h.dnsAdd(f, d, hubbleRcode(d.GetRcode()))
	}
}

func observeDNSResponseTypes(h *handler, f *flowv1.Flow) {
	d := dnsOf(h, f)
	if d == nil || f.GetVerdict() == flowv1.Verdict_DROPPED || !f.GetIsReply().GetValue() {
		return
	}
	qtypes := strings.Join(d.GetQtypes(), ",")
	for _, t := range d.GetRrtypes() {
		if h.opts["query"] {
			h.add(f, 1, t, qtypes, d.GetQuery())
		} else {
			h.add(f, 1, t, qtypes)
		}
	}
}

// observeDNSLatency observes the responses matched to their query.
func observeDNSLatency(h *handler, f *flowv1.Flow) {
	d := dnsOf(h, f)
	if d == nil || f.GetVerdict() == flowv1.Verdict_DROPPED || !f.GetIsReply().GetValue() || f.GetL7().GetLatencyNs() == 0 {
		return
	}
	h.observeValue(f, float64(f.GetL7().GetLatencyNs())/1e9)
}

// hubbleRcodeMore are Hubble's words for the response codes
// internal/dnscodes has no name for (IANA's descriptions).
var hubbleRcodeMore = map[uint32]string{
	11: "DSO-TYPE Not Implemented", 16: "Bad OPT Version", 17: "Key not recognized", 18: "Signature out of time window",
	19: "Bad TKEY Mode", 20: "Duplicate key name", 21: "Algorithm not supported", 22: "Bad Truncation", 23: "Bad/missing Server Cookie",
}

// hubbleRcode is the rcode label of Hubble's DNS metrics: Hubble's words,
// "" for a code Hubble has no words for.
func hubbleRcode(code uint32) string {
	if !strings.HasPrefix(dnscodes.RcodeName(code), "RCODE") {
		return dnscodes.HubbleRcode(code)
	}
	return hubbleRcodeMore[code]
}

// TCP health (docs/tcp-health.md): the records of forwarded TCP connections
// that carry it, and connection attempts that timed out.

// tcpHealthRecord: a record the tcp-health metrics look at.
func tcpHealthRecord(f *flowv1.Flow) bool {
	if f.GetL4().GetTCP() == nil {
		return false
	}
	k := f.GetEventKind()
	return k == flowv1.EventKind_AGGREGATE && forwarded(f.GetVerdict()) || k == flowv1.EventKind_CONNECT_TIMEOUT
}

// clientView shows a record with its connection's client as source and
// its server as destination: the record itself unless it is a reply, else
// a reused copy with endpoints, addresses and names swapped (the fields the
// metrics and their context labels read). Only for the duration of one
// record's count.
type clientView struct {
	f  flowv1.Flow
	ip flowv1.IP
}

func (v *clientView) of(f *flowv1.Flow) *flowv1.Flow {
	if !f.GetIsReply().GetValue() {
		return f
	}
	v.f.Source, v.f.Destination = f.Destination, f.Source
	v.f.SourceNames, v.f.DestinationNames = f.DestinationNames, f.SourceNames
	v.f.IP = nil
	if f.IP != nil {
		v.ip.Source, v.ip.Destination, v.ip.IpVersion = f.IP.Destination, f.IP.Source, f.IP.IpVersion
		v.f.IP = &v.ip
	}
	v.f.TrafficDirection, v.f.EventKind, v.f.Verdict, v.f.Packets = f.TrafficDirection, f.EventKind, f.Verdict, f.Packets
	v.f.L4, v.f.TcpHealth, v.f.IsReply = f.L4, f.TcpHealth, f.IsReply
	return &v.f
}

// observeTCPHandshake observes a connection's handshake RTT, once per
// connection (the agent carries it on one record).
func observeTCPHandshake(h *handler, f *flowv1.Flow) {
	t := f.GetTcpHealth()
	if t == nil || f.GetEventKind() != flowv1.EventKind_AGGREGATE {
		return
	}
	rtt := t.GetHandshakeSynAck().AsDuration() + t.GetHandshakeAck().AsDuration()
	if t.GetHandshakeSynAck() == nil && t.GetHandshakeAck() == nil || rtt <= 0 {
		return
	}
	h.observeValue(f, rtt.Seconds())
}

func observeTCPRetransmits(h *handler, f *flowv1.Flow) {
	if n := f.GetTcpHealth().GetRetransmits(); n > 0 && f.GetEventKind() == flowv1.EventKind_AGGREGATE {
		h.add(f, float64(n))
	}
}

func observeTCPPackets(h *handler, f *flowv1.Flow) {
	if f.GetEventKind() == flowv1.EventKind_AGGREGATE && f.GetPackets() > 0 {
		h.add(f, float64(f.GetPackets()))
	}
}

func observeTCPResets(h *handler, f *flowv1.Flow) {
	if f.GetEventKind() != flowv1.EventKind_AGGREGATE {
		return
	}
	switch f.GetTcpHealth().GetResetBy() {
	case flowv1.TCPSide_CLIENT:
		h.add(f, 1, "client")
	case flowv1.TCPSide_SERVER:
		h.add(f, 1, "server")
	}
}

func observeTCPTimeouts(h *handler, f *flowv1.Flow) {
	if f.GetEventKind() == flowv1.EventKind_CONNECT_TIMEOUT {
		h.add(f, 1)
	}
}
