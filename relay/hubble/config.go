package hubble

import (
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Config is the relay's configuration of Hubble's API and metrics.
type Config struct {
	// Metrics are Hubble metric specs (see MetricsConfig.Metrics).
	Metrics []string
	// SeriesLimit bounds each metric's series; SeriesIdle forgets series
	// not updated for that long (0: never).
	SeriesLimit int
	SeriesIdle  time.Duration
	// TeardownDrops serves and counts teardown-class drops on the Hubble
	// API and metrics (Hubble's datapath never reports them).
	TeardownDrops bool
}

// DefaultConfiguration enables DefaultMetrics with a budget of
// DefaultSeriesLimit series per metric, forgetting series idle for an hour.
func DefaultConfiguration() Config {
	return Config{
		Metrics:     append([]string(nil), DefaultMetrics...),
		SeriesLimit: DefaultSeriesLimit,
		SeriesIdle:  time.Hour,
	}
}

// MetricsConfig is the metrics part of c.
func (c Config) MetricsConfig() MetricsConfig {
	return MetricsConfig(c)
}

// RegisterFlags binds the Hubble flags to c.
func RegisterFlags(fs *pflag.FlagSet, c *Config) {
	fs.Var(&specList{dst: &c.Metrics}, "hubble-metrics",
		`Hubble metrics to export on --metrics-address, space-separated as cilium-agent's --hubble-metrics, e.g. "drop:sourceContext=namespace;destinationContext=namespace flow tcp"; repeatable; "" for none (`+strings.Join(MetricNames(), ", ")+`)`)
	fs.IntVar(&c.SeriesLimit, "hubble-metrics-series-limit", c.SeriesLimit, "most series per Hubble metric; records beyond are counted in trawl_hubble_metrics_overflow_total")
	fs.DurationVar(&c.SeriesIdle, "hubble-metrics-series-idle", c.SeriesIdle, "delete Hubble metric series not updated for this long, freeing their budget (0: never)")
	fs.BoolVar(&c.TeardownDrops, "hubble-teardown-drops", c.TeardownDrops, "serve and count teardown-class drops (socket close, queue purge) on the Hubble API and metrics; Hubble never reports them")
}

// specList is a list of metric specs: each value is split on white space;
// the first value given replaces the default, later ones add to it.
type specList struct {
	dst *[]string
	set bool
}

func (s *specList) String() string {
	if s.dst == nil {
		return ""
	}
	return strings.Join(*s.dst, " ")
}

func (s *specList) Type() string { return "specs" }

func (s *specList) Set(v string) error {
	if !s.set {
		*s.dst = nil
		s.set = true
	}
	*s.dst = append(*s.dst, strings.Fields(v)...)
	return nil
}
