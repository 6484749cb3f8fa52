// Command trawl-agent is the Trawl node agent: watches the kernel datapath
// with eBPF (flows, drops with the kernel's reason, conntrack pressure) and
// streams the records to the relay, or writes them as JSON lines.
//
// main.go holds the flags; agent.go wires the components and runs them.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/trawl-dev/trawl/agent/collect"
	"github.com/trawl-dev/trawl/agent/datapath"
	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/internal/logging"
	"github.com/trawl-dev/trawl/internal/version"
)

type options struct {
	nodeName          string
	output            string
	metricsAddr       string
	logLevel          slog.Level
	dp                datapath.Config
	collect           collect.Config
	noConntrack       bool
	conntrackInterval time.Duration
	conntrackTop      int
	conntrackWindow   time.Duration
	ship              shipper.Config
	relay             bool // --relay was given
	dnsPorts          []string
}

func main() {
	cmd, _ := newCommand()
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "trawl-agent: %v\n", err)
		os.Exit(1)
	}
}

// newCommand returns the command and the options its flags fill.
func newCommand() (*cobra.Command, *options) {
	o := &options{}
	cmd := &cobra.Command{
		Use:           "trawl-agent",
		Short:         "the Trawl node agent: watches the kernel datapath with eBPF and streams flows to the relay",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.relay = cmd.Flags().Changed("relay")
			return run(cmd.Context(), o)
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
	fs.Var(logging.Level{L: &o.logLevel}, "log-level", "debug, info, warn or error (logs go to stderr)")
	fs.StringSliceVar(&o.dp.Interfaces, "interfaces", nil, "interface name globs to watch (default: veth-like pod interfaces and the default-route interfaces)")
	fs.StringVar(&o.dp.AttachMode, "attach-mode", "auto", "auto, tcx or tc")
	fs.StringVar(&o.dp.DropHook, "drop-hook", "auto", "auto, tp_btf or tracepoint (skb:kfree_skb attachment)")
	fs.StringVar(&o.dp.DropReasons, "drop-reasons", "", `kernel drop reasons to report: "all", a list, or "-NAME" to remove from the default (all but NOT_SPECIFIED and CONSUMED)`)
	fs.Uint32Var(&o.dp.FlowMapSize, "flow-map-size", 131072, "capacity of the in-kernel flow map")
	fs.Uint64Var(&o.dp.EventsPerSecond, "event-rate", 1000, "instant events (new flow, close, first drop) per second per CPU before suppression")
	fs.StringSliceVar(&o.dnsPorts, "dns-ports", []string{"53"}, `UDP and TCP ports whose DNS messages become L7 records (at most 4; "none" turns DNS capture off)`)
	fs.Uint64Var(&o.dp.DNSPerSecond, "dns-rate", 5000, "DNS messages per second per CPU copied to the agent before suppression (counted as lost events)")
	fs.BoolVar(&o.dp.DisableDrops, "disable-drops", false, "do not attach the kfree_skb drop program")
	fs.BoolVar(&o.noConntrack, "disable-conntrack", false, "do not sample conntrack pressure")
	fs.StringVar(&o.dp.EgressHook, "egress-hook", "auto", "where what the node sends is counted: auto, netfilter (LOCAL_OUT) or tcx (egress of watched interfaces; also counts traffic forwarded from unwatched ones, at a second program run per forwarded packet)")
	fs.DurationVar(&o.collect.FlushInterval, "flush-interval", 5*time.Second, "how often the flow and drop maps are polled")
	fs.DurationVar(&o.collect.ActiveTimeout, "active-timeout", 0, "longest span of one aggregate record (default: --flush-interval)")
	fs.DurationVar(&o.collect.IdleTimeout, "idle-timeout", 30*time.Second, "flows idle this long are evicted from the map")
	fs.DurationVar(&o.collect.SYNTimeout, "syn-timeout", 3*time.Second, "a TCP connection attempt (SYNs only) with no packet back and no drop for this long is reported as CONNECT_TIMEOUT (once its SYNs' fate is known, --fate-wait)")
	fs.DurationVar(&o.collect.FateWait, "fate-wait", 4*time.Second, "how long a packet's fate may take to be known: new-flow events wait up to this long for it, aggregates report packets this old as delivered unless dropped")
	fs.BoolVar(&o.dp.Loopback, "loopback", false, "report drops of loopback traffic (127.0.0.0/8, ::1)")
	fs.DurationVar(&o.conntrackInterval, "conntrack-interval", 10*time.Second, "period of conntrack samples")
	fs.IntVar(&o.conntrackTop, "conntrack-top", 10, "top creators of new conntrack entries per sample")
	fs.DurationVar(&o.conntrackWindow, "conntrack-top-window", time.Minute, "trailing window over which top creators are ranked")
	shipper.RegisterFlags(fs, &o.ship)
	return cmd, o
}

// parseDNSPorts reads --dns-ports: port numbers, or "none" (or nothing) for
// no DNS capture.
func parseDNSPorts(in []string) ([]uint16, error) {
	out := []uint16{}
	for _, s := range in {
		if s == "none" || s == "" {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("--dns-ports: %q is not a port number", s)
		}
		out = append(out, uint16(n))
	}
	if len(out) > datapath.MaxDNSPorts {
		return nil, fmt.Errorf("--dns-ports: %d ports, at most %d", len(out), datapath.MaxDNSPorts)
	}
	return out, nil
}
