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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/collect"
	"github.com/trawl-dev/trawl/agent/conntrack"
	"github.com/trawl-dev/trawl/agent/datapath"
	"github.com/trawl-dev/trawl/agent/export"
	"github.com/trawl-dev/trawl/agent/metrics"
	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/internal/logging"
	"github.com/trawl-dev/trawl/internal/version"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// run validates the options, opens the datapath and runs the collectors,
// the metrics server and, with --relay, the shipper until SIGINT/SIGTERM or
// the first failure.
func run(parent context.Context, o *options) error {
	log := logging.New(o.logLevel)
	switch o.output {
	case "":
		o.output = "jsonl"
		if o.relay {
			o.output = "none"
		}
	case "jsonl", "none":
	default:
		return fmt.Errorf("--output %q: want jsonl or none", o.output)
	}
	if o.nodeName == "" {
		return errors.New("--node-name is empty and the hostname is unknown")
	}
	if o.dnsPorts != nil {
		ports, err := parseDNSPorts(o.dnsPorts)
		if err != nil {
			return err
		}
		o.dp.DNSPorts = ports
	}
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	var pubs export.Multi
	if o.output == "jsonl" {
		pubs = append(pubs, export.NewJSONLines(os.Stdout))
	}
	var ship *shipper.Shipper
	if o.relay {
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
	m.Info.WithLabelValues(version.Version, version.KernelRelease(), o.nodeName).Set(1)
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

	// The shipper outlives the group below: the collectors' last records
	// (their final poll at shutdown) still reach the relay. It runs on its
	// own context, cancelled only after the group has stopped and the
	// shipper has had a moment to send what it holds.
	shipCtx, shipCancel := context.WithCancel(context.Background())
	defer shipCancel()
	shipErr := make(chan error, 1)
	if ship != nil {
		go func() { shipErr <- ship.Run(shipCtx) }()
	}

	// Listen before any actor starts: a busy port fails the start while
	// nothing runs yet that the return would leave behind (an interface
	// being attached).
	var serveMetrics func(context.Context) error
	if o.metricsAddr != "" {
		if serveMetrics, err = metricsServer(o.metricsAddr, reg); err != nil {
			return err
		}
	}

	// The group: every actor stops when the signal arrives or when any
	// actor returns, and the first error, named after its actor, is the
	// agent's.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	actor := func(name string, fn func(context.Context) error) {
		g.Go(func() error {
			defer cancel()
			if err := fn(gctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	actor("datapath", dp.Run)
	actor("collect", col.Run)
	if !o.noConntrack {
		cfg := conntrack.Config{NodeName: o.nodeName, Interval: o.conntrackInterval, TopN: o.conntrackTop, TopWindow: o.conntrackWindow, Netns: dp.Netns, Log: log.With("component", "conntrack"),
			Sources: dp.Flow.CtSources}
		actor("conntrack", conntrack.New(cfg, pubs, m).Run)
	}
	if ship != nil {
		// Watches the shipper: a relay stream that ends stops the agent.
		actor("shipper", func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return nil
			case err := <-shipErr:
				shipErr <- err
				return fmt.Errorf("relay stream stopped: %w", err)
			}
		})
	}
	if serveMetrics != nil {
		actor("metrics", serveMetrics)
	}
	log.Info("trawl-agent running", "node", o.nodeName, "version", version.Version, "output", o.output, "relay", o.relay,
		"dns_ports", fmt.Sprint(dp.DNSPorts()))
	err = g.Wait()
	if ship != nil {
		if batches, bytes := ship.Drain(o.ship.DrainTimeout); batches > 0 {
			// Not known to be stored: the relay may have inserted them
			// without its ack arriving. Said once, loudly, as the process
			// (and its metrics) end here.
			log.Error("stopping with unacknowledged batches: their records may be lost", "batches", batches, "bytes", bytes)
		}
		shipCancel()
		<-shipErr
	}
	return err
}

// metricsServer listens on addr at once (so a busy port fails the start)
// and returns the actor that serves /metrics until its context ends.
func metricsServer(addr string, reg *prometheus.Registry) (func(context.Context) error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	return func(ctx context.Context) error {
		go func() { <-ctx.Done(); srv.Close() }()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, nil
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
