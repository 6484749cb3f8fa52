// Command trawl-agent is the Trawl node agent: watches the kernel datapath
// with eBPF (flows, drops with the kernel's reason, conntrack pressure) and
// streams the records to the relay, or writes them as JSON lines.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/collect"
	"github.com/trawl-dev/trawl/agent/conntrack"
	"github.com/trawl-dev/trawl/agent/datapath"
	"github.com/trawl-dev/trawl/agent/export"
	"github.com/trawl-dev/trawl/agent/metrics"
	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/internal/version"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

type options struct {
	nodeName          string
	output            string
	metricsAddr       string
	logLevel          string
	dp                datapath.Config
	collect           collect.Config
	noConntrack       bool
	conntrackInterval time.Duration
	conntrackTop      int
	conntrackWindow   time.Duration
	ship              shipper.Config
}

func main() {
	var o options
	cmd := &cobra.Command{
		Use:           "trawl-agent",
		Short:         "the Trawl node agent: watches the kernel datapath with eBPF and streams flows to the relay",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &o)
		},
	}
	host, _ := os.Hostname()
	fs := cmd.Flags()
	fs.StringVar(&o.nodeName, "node-name", host, "node name put in every record")
	fs.StringVar(&o.output, "output", "", `"jsonl" writes records to stdout, "none" does not (default: jsonl without --relay, none with it)`)
	fs.StringVar(&o.metricsAddr, "metrics-address", ":9965", `Prometheus metrics listen address ("" disables)`)
	// The old name, as in the first releases; the relay's name is the one.
	fs.StringVar(&o.metricsAddr, "metrics-addr", ":9965", "")
	_ = fs.MarkDeprecated("metrics-addr", "use --metrics-address")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error (logs go to stderr)")
	fs.StringSliceVar(&o.dp.Interfaces, "interfaces", nil, "interface name globs to watch (default: veth-like pod interfaces and the default-route interfaces)")
	fs.StringVar(&o.dp.AttachMode, "attach-mode", "auto", "auto, tcx or tc")
	fs.StringVar(&o.dp.DropHook, "drop-hook", "auto", "auto, tp_btf or tracepoint (skb:kfree_skb attachment)")
	fs.StringVar(&o.dp.DropReasons, "drop-reasons", "", `kernel drop reasons to report: "all", a list, or "-NAME" to remove from the default (all but NOT_SPECIFIED and CONSUMED)`)
	fs.Uint32Var(&o.dp.FlowMapSize, "flow-map-size", 131072, "capacity of the in-kernel flow map")
	fs.Uint64Var(&o.dp.EventsPerSecond, "event-rate", 1000, "instant events (new flow, close, first drop) per second per CPU before suppression")
	fs.BoolVar(&o.dp.DisableDrops, "disable-drops", false, "do not attach the kfree_skb drop program")
	fs.BoolVar(&o.noConntrack, "disable-conntrack", false, "do not sample conntrack pressure")
	fs.StringVar(&o.dp.EgressHook, "egress-hook", "auto", "where what the node sends is counted: auto, netfilter (LOCAL_OUT) or tcx (egress of watched interfaces; also counts traffic forwarded from unwatched ones, at a second program run per forwarded packet)")
	fs.DurationVar(&o.collect.FlushInterval, "flush-interval", 5*time.Second, "how often the flow and drop maps are polled")
	fs.DurationVar(&o.collect.ActiveTimeout, "active-timeout", 0, "longest span of one aggregate record (default: --flush-interval)")
	fs.DurationVar(&o.collect.IdleTimeout, "idle-timeout", 30*time.Second, "flows idle this long are evicted from the map")
	fs.DurationVar(&o.collect.FateWait, "fate-wait", 4*time.Second, "how long a packet's fate may take to be known: new-flow events wait up to this long for it, aggregates report packets this old as delivered unless dropped")
	fs.BoolVar(&o.dp.Loopback, "loopback", false, "report drops of loopback traffic (127.0.0.0/8, ::1)")
	fs.DurationVar(&o.conntrackInterval, "conntrack-interval", 10*time.Second, "period of conntrack samples")
	fs.IntVar(&o.conntrackTop, "conntrack-top", 10, "top creators of new conntrack entries per sample")
	fs.DurationVar(&o.conntrackWindow, "conntrack-top-window", time.Minute, "trailing window over which top creators are ranked")
	shipper.RegisterFlags(fs, &o.ship)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "trawl-agent: %v\n", err)
		os.Exit(1)
	}
}

func run(cmd *cobra.Command, o *options) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	relay := cmd.Flags().Changed("relay")
	switch o.output {
	case "":
		o.output = "jsonl"
		if relay {
			o.output = "none"
		}
	case "jsonl", "none":
	default:
		return fmt.Errorf("--output %q: want jsonl or none", o.output)
	}
	if o.nodeName == "" {
		return errors.New("--node-name is empty and the hostname is unknown")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	var pubs export.Multi
	if o.output == "jsonl" {
		pubs = append(pubs, export.NewJSONLines(os.Stdout))
	}
	var ship *shipper.Shipper
	if relay {
		o.ship.NodeName = o.nodeName
		o.ship.LostCounter = m.LostEvents
		o.ship.Log = log
		s, err := shipper.New(o.ship, reg)
		if err != nil {
			return fmt.Errorf("relay client: %w", err)
		}
		ship = s
		pubs = append(pubs, s)
	}

	o.dp.Log = log.With("component", "datapath")
	dp, err := datapath.Open(o.dp)
	if err != nil {
		return err
	}
	defer func() {
		if err := dp.Close(); err != nil {
			log.Error("detach", "err", err)
		}
	}()
	logFeatures(log, dp)
	m.Info.WithLabelValues(version.Version, kernelRelease(), o.nodeName).Set(1)
	for _, f := range dp.Features.Proto() {
		v := 0.0
		if f.Enabled {
			v = 1
		}
		m.FeatureEnabled.WithLabelValues(f.Name).Set(v)
	}

	o.collect.NodeName = o.nodeName
	o.collect.Log = log.With("component", "collect")
	if ship != nil {
		o.collect.BootID = ship.BootID()
	}
	col := collect.New(o.collect, dp, pubs, m)
	if ship != nil {
		ship.SetHeartbeat(func() *ingestv1.Heartbeat {
			return &ingestv1.Heartbeat{
				Time:         timestamppb.Now(),
				AgentVersion: version.Version,
				Features:     dp.Features.Proto(),
				Counters:     col.Totals(),
			}
		})
	}

	var g group
	g.Go("datapath", func(ctx context.Context) error { return dp.Run(ctx) })
	g.Go("collect", func(ctx context.Context) error { return col.Run(ctx) })
	if !o.noConntrack {
		cfg := conntrack.Config{NodeName: o.nodeName, Interval: o.conntrackInterval, TopN: o.conntrackTop, TopWindow: o.conntrackWindow, Netns: dp.Netns, Log: log.With("component", "conntrack"),
			Sources: dp.Flow.CtSources}
		s := conntrack.New(cfg, pubs, m)
		g.Go("conntrack", func(ctx context.Context) error { return s.Run(ctx) })
	}
	// The shipper outlives the collectors so their last records (the final
	// poll at shutdown) still reach the relay.
	shipCtx, shipCancel := context.WithCancel(context.Background())
	defer shipCancel()
	shipErr := make(chan error, 1)
	if ship != nil {
		go func() { shipErr <- ship.Run(shipCtx) }()
		g.Go("shipper", func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return nil
			case err := <-shipErr:
				shipErr <- err
				return fmt.Errorf("relay stream stopped: %w", err)
			}
		})
	}
	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener %s: %w", o.metricsAddr, err)
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		g.Go("metrics", func(ctx context.Context) error {
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	log.Info("trawl-agent running", "node", o.nodeName, "version", version.Version, "output", o.output, "relay", relay)
	err = g.Wait(ctx)
	if ship != nil {
		drainShipper(ship, 3*time.Second)
		shipCancel()
		<-shipErr
	}
	return err
}

// drainShipper gives the relay a moment to acknowledge what is buffered.
func drainShipper(s *shipper.Shipper, wait time.Duration) {
	s.Flush()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if batches, _ := s.Stats(); batches == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func logFeatures(log *slog.Logger, dp *datapath.Datapath) {
	var on, off []string
	for _, f := range dp.Features.Proto() {
		if f.Enabled {
			on = append(on, f.Name)
			continue
		}
		if f.Detail != "" {
			off = append(off, f.Name+" ("+f.Detail+")")
		} else {
			off = append(off, f.Name)
		}
	}
	src := ""
	if dp.Reasons != nil {
		src = dp.Reasons.Source
	}
	log.Info("kernel features", "enabled", strings.Join(on, ","), "off", strings.Join(off, "; "), "drop_reason_names", src)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// group runs actors until the context ends or the first one fails, then
// stops the rest and waits for them.
type group struct {
	actors []actor
}

type actor struct {
	name string
	fn   func(context.Context) error
}

func (g *group) Go(name string, fn func(context.Context) error) {
	g.actors = append(g.actors, actor{name, fn})
}

func (g *group) Wait(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, a := range g.actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := a.fn(ctx)
			if err != nil {
				once.Do(func() { first = fmt.Errorf("%s: %w", a.name, err) })
			}
			cancel()
		}()
	}
	wg.Wait()
	return first
}
