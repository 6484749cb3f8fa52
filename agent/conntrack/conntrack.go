// Package conntrack samples the pressure on the node's conntrack table:
// nf_conntrack_count/max, /proc/net/stat/nf_conntrack summed over CPUs, and
// the sources creating the most new entries (counted by the netfilter eBPF
// program). A sample goes out every Interval, and at once when utilization
// crosses 80, 90 or 95 % or the drop counter increases.
package conntrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/agent/export"
	"github.com/trawl-dev/trawl/agent/metrics"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Config of the sampler.
type Config struct {
	NodeName string
	// Interval between periodic samples. Default 10s.
	Interval time.Duration
	// Check is how often thresholds and drops are checked. Default 1s.
	Check time.Duration
	// TopN creators per sample. Default 10.
	TopN int
	// TopWindow is the trailing window over which creators are ranked.
	// Per-interval counts are not enough: once the table is full nobody can
	// create entries, and that is when the operator asks who filled it.
	// Default 1 minute.
	TopWindow time.Duration
	// ProcDir is where proc is mounted. Default /proc.
	ProcDir string
	// Sources is the netfilter program's per-source map (optional).
	Sources *ebpf.Map
	// Netns is the inode of the sampled namespace (the agent's).
	Netns uint64
	Log   *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if c.Check <= 0 {
		c.Check = time.Second
	}
	if c.Check > c.Interval {
		c.Check = c.Interval
	}
	if c.TopN <= 0 {
		c.TopN = 10
	}
	if c.TopWindow <= 0 {
		c.TopWindow = time.Minute
	}
	if c.ProcDir == "" {
		c.ProcDir = "/proc"
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Stats are the /proc/net/stat/nf_conntrack columns, summed over CPUs.
type Stats map[string]uint64

// ReadStats parses /proc/net/stat/nf_conntrack: a header of column names,
// then one row of hexadecimal counters per CPU. "entries" is global (the
// same on every row) and is not summed.
func ReadStats(path string) (Stats, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("%s: no per-CPU rows", path)
	}
	names := strings.Fields(lines[0])
	out := Stats{}
	for _, line := range lines[1:] {
		fields := strings.Fields(line)
		if len(fields) != len(names) {
			return nil, fmt.Errorf("%s: row has %d columns, header %d", path, len(fields), len(names))
		}
		for i, f := range fields {
			v, err := strconv.ParseUint(f, 16, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: column %s: %w", path, names[i], err)
			}
			if names[i] == "entries" {
				out[names[i]] = v
				continue
			}
			out[names[i]] += v
		}
	}
	return out, nil
}

func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

// reading is one look at the table.
type reading struct {
	at           time.Time
	entries, max uint64
	stats        Stats
}

func (r reading) utilization() float64 {
	if r.max == 0 {
		return 0
	}
	return float64(r.entries) / float64(r.max)
}

// level of a utilization: 0 below 80 %, then 1, 2, 3 at 80, 90, 95 %.
func level(u float64) int {
	switch {
	case u >= 0.95:
		return 3
	case u >= 0.90:
		return 2
	case u >= 0.80:
		return 1
	}
	return 0
}

// Sampler produces ConntrackSamples.
type Sampler struct {
	cfg Config
	pub export.Publisher
	m   *metrics.Agent

	last      *reading // last emitted sample
	prevCheck *reading // last check, for the metric counters and drop detection
	lastLevel int
	creators  map[netip.Addr]uint64 // since the last emitted sample
	// recent holds the creators of earlier samples within TopWindow.
	recent []creatorCounts
	warned bool
}

// New makes a sampler; Run starts it.
func New(cfg Config, pub export.Publisher, m *metrics.Agent) *Sampler {
	cfg.setDefaults()
	m.PollDuration.WithLabelValues("conntrack")
	return &Sampler{cfg: cfg, pub: pub, m: m, creators: map[netip.Addr]uint64{}}
}

func (s *Sampler) read() (*reading, error) {
	dir := filepath.Join(s.cfg.ProcDir, "sys/net/netfilter")
	entries, err := readUint(filepath.Join(dir, "nf_conntrack_count"))
	if err != nil {
		return nil, fmt.Errorf("read nf_conntrack_count (is nf_conntrack loaded?): %w", err)
	}
	max, err := readUint(filepath.Join(dir, "nf_conntrack_max"))
	if err != nil {
		return nil, fmt.Errorf("read nf_conntrack_max: %w", err)
	}
	stats, err := ReadStats(filepath.Join(s.cfg.ProcDir, "net/stat/nf_conntrack"))
	if err != nil {
		return nil, fmt.Errorf("read conntrack stats: %w", err)
	}
	return &reading{at: time.Now(), entries: entries, max: max, stats: stats}, nil
}

// Run samples until ctx is done.
func (s *Sampler) Run(ctx context.Context) error {
	check := time.NewTicker(s.cfg.Check)
	defer check.Stop()
	s.tick(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-check.C:
			s.tick(false)
		}
	}
}

var metricStats = []string{"new", "drop", "early_drop", "insert_failed", "invalid", "search_restart"}

func (s *Sampler) tick(first bool) {
	start := time.Now()
	defer func() { s.m.PollDuration.WithLabelValues("conntrack").Observe(time.Since(start).Seconds()) }()
	r, err := s.read()
	if err != nil {
		if !s.warned {
			s.cfg.Log.Info("conntrack sampling waits for nf_conntrack", "err", err)
			s.warned = true
		}
		return
	}
	s.collectCreators()
	node := s.cfg.NodeName
	s.m.ConntrackEntries.WithLabelValues(node).Set(float64(r.entries))
	s.m.ConntrackMax.WithLabelValues(node).Set(float64(r.max))
	s.m.ConntrackUtil.WithLabelValues(node).Set(r.utilization())
	dropUp := false
	if s.prevCheck != nil {
		for _, name := range metricStats {
			if d := r.stats[name] - s.prevCheck.stats[name]; r.stats[name] >= s.prevCheck.stats[name] && d > 0 {
				s.m.ConntrackStat.WithLabelValues(node, name).Add(float64(d))
			}
		}
		dropUp = r.stats["drop"] > s.prevCheck.stats["drop"]
	} else {
		for _, name := range metricStats {
			s.m.ConntrackStat.WithLabelValues(node, name).Add(0)
		}
	}
	s.prevCheck = r

	lvl := level(r.utilization())
	var trigger flowv1.ConntrackTrigger
	switch {
	case lvl > s.lastLevel:
		trigger = flowv1.ConntrackTrigger_THRESHOLD
	case dropUp:
		trigger = flowv1.ConntrackTrigger_DROP_INCREASE
	case first || s.last == nil || r.at.Sub(s.last.at) >= s.cfg.Interval:
		trigger = flowv1.ConntrackTrigger_PERIODIC
	}
	if lvl < s.lastLevel {
		s.lastLevel = lvl // re-arm the thresholds on the way down
	}
	if trigger == flowv1.ConntrackTrigger_CONNTRACK_TRIGGER_UNSPECIFIED {
		return
	}
	if lvl > s.lastLevel {
		s.lastLevel = lvl
	}
	s.emit(r, trigger)
}

func (s *Sampler) emit(r *reading, trigger flowv1.ConntrackTrigger) {
	sample := &flowv1.ConntrackSample{
		NodeName:    s.cfg.NodeName,
		Time:        timestamppb.New(r.at),
		Entries:     r.entries,
		Max:         r.max,
		Utilization: r.utilization(),
		Trigger:     trigger,
		Netns:       s.cfg.Netns,
		Deltas:      &flowv1.ConntrackStats{},
	}
	if s.last != nil {
		d := func(name string) uint64 {
			if r.stats[name] < s.last.stats[name] {
				return 0
			}
			return r.stats[name] - s.last.stats[name]
		}
		sample.Interval = durationpb.New(r.at.Sub(s.last.at))
		sample.Deltas = &flowv1.ConntrackStats{
			New: d("new"), Drop: d("drop"), EarlyDrop: d("early_drop"), InsertFailed: d("insert_failed"),
			Invalid: d("invalid"), SearchRestart: d("search_restart"), Found: d("found"), Insert: d("insert"), Delete: d("delete"),
		}
	}
	sample.TopCreators = s.topCreators(r.at)
	s.last = r
	s.m.Events.WithLabelValues("conntrack").Inc()
	s.pub.Publish(&observerv1.GetFlowsResponse{
		ResponseTypes: &observerv1.GetFlowsResponse_Conntrack{Conntrack: sample},
		NodeName:      s.cfg.NodeName,
		Time:          sample.Time,
	})
}

// collectCreators moves the per-source counts out of the kernel map.
func (s *Sampler) collectCreators() {
	if s.cfg.Sources == nil {
		return
	}
	const batch = 1024
	keys := make([]bpf.FlowCtSrcKey, batch)
	vals := make([]uint64, batch)
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := s.cfg.Sources.BatchLookupAndDelete(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			s.addCreator(keys[i], vals[i])
		}
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			// The map is emptied each check: its fill is the number of
			// sources seen in one check interval.
			s.m.MapEntries.WithLabelValues("ct_sources").Set(float64(total))
			s.m.MapCapacity.WithLabelValues("ct_sources").Set(float64(s.cfg.Sources.MaxEntries()))
			return
		}
		if err != nil {
			s.collectCreatorsSlow()
			return
		}
	}
}

func (s *Sampler) collectCreatorsSlow() {
	var k bpf.FlowCtSrcKey
	var v uint64
	var keys []bpf.FlowCtSrcKey
	it := s.cfg.Sources.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := s.cfg.Sources.LookupAndDelete(k, &v); err == nil {
			s.addCreator(k, v)
		}
	}
}

func (s *Sampler) addCreator(k bpf.FlowCtSrcKey, n uint64) {
	var a netip.Addr
	if k.Family == 6 {
		a = netip.AddrFrom16(k.Addr)
	} else {
		a = netip.AddrFrom4([4]byte{k.Addr[0], k.Addr[1], k.Addr[2], k.Addr[3]})
	}
	s.creators[a] += n
}

// creatorCounts are the new entries per source seen up to one sample.
type creatorCounts struct {
	at     time.Time
	counts map[netip.Addr]uint64
}

// topCreators ranks sources by the new entries they created within the
// trailing TopWindow ending at now, and starts a new interval.
func (s *Sampler) topCreators(now time.Time) []*flowv1.ConntrackCreator {
	s.recent = append(s.recent, creatorCounts{at: now, counts: s.creators})
	s.creators = map[netip.Addr]uint64{}
	keep := s.recent[:0]
	for _, c := range s.recent {
		if now.Sub(c.at) < s.cfg.TopWindow {
			keep = append(keep, c)
		}
	}
	s.recent = keep
	sum := map[netip.Addr]uint64{}
	for _, c := range s.recent {
		for a, n := range c.counts {
			sum[a] += n
		}
	}
	out := make([]*flowv1.ConntrackCreator, 0, len(sum))
	for a, n := range sum {
		out = append(out, &flowv1.ConntrackCreator{Ip: a.String(), NewEntries: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].NewEntries != out[j].NewEntries {
			return out[i].NewEntries > out[j].NewEntries
		}
		return out[i].Ip < out[j].Ip
	})
	if len(out) > s.cfg.TopN {
		out = out[:s.cfg.TopN]
	}
	return out
}
