package cluster

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/cli/output"
	"github.com/trawl-dev/trawl/cli/usage"
	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/timeparse"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

type topKind struct {
	arg   string
	kind  observerv1.TopKind
	title string
}

// topKinds maps `trawl top` arguments to the rollup the relay reads.
var topKinds = []topKind{
	{"talkers", observerv1.TopKind_TOP_KIND_TALKERS, "Top talkers (bytes)"},
	{"droppers", observerv1.TopKind_TOP_KIND_DROPPERS, "Top droppers"},
	{"denied", observerv1.TopKind_TOP_KIND_DENIED_PAIRS, "Top denied pairs"},
	{"conntrack", observerv1.TopKind_TOP_KIND_CONNTRACK_CREATORS, "Top conntrack creators"},
}

// dnsTopKinds are the DNS tables of `trawl top --dns` (from the dns_1m
// rollup); "names", "nxdomain" and "slow" name one of them after --dns.
var dnsTopKinds = []topKind{
	{"dns-names", observerv1.TopKind_TOP_KIND_DNS_NAMES, "Top DNS names (queries)"},
	{"dns-nxdomain", observerv1.TopKind_TOP_KIND_DNS_NXDOMAIN_CLIENTS, "Top NXDOMAIN clients"},
	{"dns-slow", observerv1.TopKind_TOP_KIND_DNS_SLOW_NAMES, "Slowest DNS names (p99 latency)"},
}

// tcpTopKinds are the TCP health tables of `trawl top --tcp` (from the
// tcp_1m rollup); "slowest" and "retransmits" name one of them after --tcp.
var tcpTopKinds = []topKind{
	{"tcp-slowest", observerv1.TopKind_TOP_KIND_TCP_SLOWEST, "Slowest TCP pairs (p99 handshake RTT)"},
	{"tcp-retransmits", observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS, "Most retransmitting TCP pairs"},
}

// pickTopKinds returns the tables a command line asks for: without an
// argument the four traffic tables, the three DNS tables with --dns or the
// two TCP tables with --tcp; with one, that table ("names", "nxdomain",
// "slow" also name the DNS tables after --dns, "slowest", "retransmits"
// the TCP tables after --tcp).
func pickTopKinds(args []string, dns, tcp bool) ([]topKind, error) {
	if dns && tcp {
		return nil, fmt.Errorf("--dns and --tcp cannot be combined")
	}
	if len(args) == 0 {
		switch {
		case dns:
			return dnsTopKinds, nil
		case tcp:
			return tcpTopKinds, nil
		}
		return topKinds, nil
	}
	arg := strings.ToLower(args[0])
	if dns && !strings.HasPrefix(arg, "dns-") {
		arg = "dns-" + arg
	}
	if tcp && !strings.HasPrefix(arg, "tcp-") {
		arg = "tcp-" + arg
	}
	for _, k := range slices.Concat(topKinds, dnsTopKinds, tcpTopKinds) {
		if k.arg == arg && (!dns || slices.Contains(dnsTopKinds, k)) && (!tcp || slices.Contains(tcpTopKinds, k)) {
			return []topKind{k}, nil
		}
	}
	switch {
	case dns:
		return nil, fmt.Errorf("unknown DNS top kind %q: want names, nxdomain or slow", args[0])
	case tcp:
		return nil, fmt.Errorf("unknown TCP top kind %q: want slowest or retransmits", args[0])
	}
	return nil, fmt.Errorf("unknown top kind %q: want talkers, droppers, denied, conntrack, dns-names, dns-nxdomain, dns-slow, tcp-slowest or tcp-retransmits "+
		"(or --dns, --tcp for all of a kind)", args[0])
}

// NewTopCommand returns `trawl top`.
func NewTopCommand(d Deps) *cobra.Command {
	var (
		since, until string
		limit        uint32
		namespaces   []string
		format       string
		dropClasses  []string
		dns, tcp     bool
	)
	cmd := &cobra.Command{
		Use:   "top [talkers|droppers|denied|conntrack|dns-names|dns-nxdomain|dns-slow|tcp-slowest|tcp-retransmits]",
		Short: "Show top talkers, droppers, denied pairs, conntrack creators, DNS names or TCP pairs over a window",
		Long: "Show the top entries of the rollups over a window (default the last hour); without an argument, the four traffic tables.\n" +
			"Droppers rank every drop class but teardown (protocol-normal drops, counted but not worth a look) unless --drop-class says otherwise.\n" +
			"--dns shows the three DNS tables instead: names by queries (with errors, NXDOMAIN answers and latency), client workloads by NXDOMAIN answers, and names by p99 latency; " +
			"`trawl top --dns slow` (or `top dns-slow`) shows one.\n" +
			"--tcp shows the two TCP health tables instead: client/server workload pairs by p99 handshake RTT, and by retransmitted segments; " +
			"`trawl top --tcp retransmits` (or `top tcp-retransmits`) shows one.",
		ValidArgs: []string{"talkers", "droppers", "denied", "conntrack", "dns-names", "dns-nxdomain", "dns-slow", "tcp-slowest", "tcp-retransmits"},
		Args:      cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			kinds, err := pickTopKinds(args, dns, tcp)
			if err != nil {
				return usage.Error(err)
			}
			classes, err := topDropClasses(dropClasses)
			if err != nil {
				return usage.Error(fmt.Errorf("--drop-class: %w", err))
			}
			now := d.Now()
			req := &observerv1.GetTopRequest{Limit: limit, Namespace: namespaces, DropClass: classes}
			st, err := timeparse.Parse(since, now)
			if err != nil {
				return usage.Error(fmt.Errorf("--since: %w", err))
			}
			req.Since = timestamppb.New(st)
			if until != "" {
				ut, err := timeparse.Parse(until, now)
				if err != nil {
					return usage.Error(fmt.Errorf("--until: %w", err))
				}
				if ut.Before(st) {
					return usage.Error(fmt.Errorf("--since is after --until"))
				}
				req.Until = timestamppb.New(ut)
			}
			return d.top(cmd.Context(), cmd.OutOrStdout(), req, kinds, format)
		},
	}
	cmd.Flags().StringVar(&since, "since", "1h", "start of the window (90s, 3h, 2d, RFC 3339, 2026-11-27 10:00)")
	cmd.Flags().StringVar(&until, "until", "", "end of the window (default now)")
	cmd.Flags().Uint32Var(&limit, "limit", 10, "entries per table")
	cmd.Flags().StringSliceVarP(&namespaces, "namespace", "n", nil, "only flows from or to these namespaces")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVar(&dns, "dns", false, "the DNS tables: top names, top NXDOMAIN clients, slowest names (names, nxdomain or slow picks one)")
	cmd.Flags().BoolVar(&tcp, "tcp", false, "the TCP health tables: slowest client/server pairs by p99 handshake RTT, most retransmitting pairs (slowest or retransmits picks one)")
	cmd.Flags().StringSliceVar(&dropClasses, "drop-class", nil, "droppers of these classes (policy, no-socket, overload, malformed, routing, teardown, other, or all; default all but teardown)")
	return cmd
}

// topDropClasses turns --drop-class values into the request's classes: none
// for the relay's default (every class but teardown), every class for "all".
func topDropClasses(vals []string) ([]string, error) {
	var out []string
	for _, v := range vals {
		if strings.EqualFold(strings.TrimSpace(v), "all") {
			out = out[:0]
			for _, c := range dropclass.All {
				out = append(out, string(c))
			}
			return out, nil
		}
		c, err := dropclass.Parse(v)
		if err != nil {
			return nil, err
		}
		out = append(out, string(c))
	}
	return out, nil
}

func (d Deps) top(ctx context.Context, w io.Writer, base *observerv1.GetTopRequest, kinds []topKind, format string) error {
	conn, c, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for i, k := range kinds {
		req := &observerv1.GetTopRequest{Kind: k.kind, Since: base.Since, Until: base.Until, Limit: base.Limit, Namespace: base.Namespace}
		if k.kind == observerv1.TopKind_TOP_KIND_DROPPERS {
			req.DropClass = base.DropClass
		}
		uctx, cancel := conn.Unary(ctx)
		res, err := c.GetTop(uctx, req)
		cancel()
		if err != nil {
			return callError(conn.Server(), "top "+k.arg, err)
		}
		if format == "json" {
			for _, e := range res.GetEntries() {
				if err := writeJSON(w, e); err != nil {
					return err
				}
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := WriteTop(w, k.kind, k.title, res.GetEntries()); err != nil {
			return err
		}
	}
	return nil
}

// WriteTop prints one top table with the columns that matter for its kind.
func WriteTop(w io.Writer, kind observerv1.TopKind, title string, entries []*observerv1.TopEntry) error {
	fmt.Fprintln(w, title)
	if len(entries) == 0 {
		_, err := fmt.Fprintln(w, "  (none in this window)")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 0, 3, ' ', 0)
	switch kind {
	case observerv1.TopKind_TOP_KIND_TALKERS:
		fmt.Fprintln(tw, "SOURCE\tDESTINATION\tBYTES\tPACKETS\tFLOWS")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.GetSource(), e.GetDestination(), group(e.GetBytes()), group(e.GetPackets()), group(e.GetFlows()))
		}
	case observerv1.TopKind_TOP_KIND_DROPPERS:
		fmt.Fprintln(tw, "SOURCE\tDESTINATION\tREASON\tCLASS\tDROPS")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.GetSource(), dash(e.GetDestination()), dash(e.GetReason()), dash(e.GetDropClass()), group(e.GetDrops()))
		}
	case observerv1.TopKind_TOP_KIND_DENIED_PAIRS:
		fmt.Fprintln(tw, "SOURCE\tDESTINATION\tPOLICIES\tDROPS")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.GetSource(), e.GetDestination(), dash(strings.Join(e.GetPolicies(), ",")), group(e.GetDrops()))
		}
	case observerv1.TopKind_TOP_KIND_DNS_NAMES:
		fmt.Fprintln(tw, "NAME\tQUERIES\tERRORS\tNXDOMAIN\tP50\tP99")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", dnsName(e), group(e.GetDnsQueries()), group(e.GetDnsErrors()), group(e.GetDnsNxdomain()),
				latency(e.GetDnsLatencyP50()), latency(e.GetDnsLatencyP99()))
		}
	case observerv1.TopKind_TOP_KIND_DNS_NXDOMAIN_CLIENTS:
		fmt.Fprintln(tw, "CLIENT\tNXDOMAIN\tQUERIES\tTOP NAME")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.GetSource(), group(e.GetDnsNxdomain()), group(e.GetDnsQueries()), dash(e.GetReason()))
		}
	case observerv1.TopKind_TOP_KIND_DNS_SLOW_NAMES:
		fmt.Fprintln(tw, "NAME\tP99\tP50\tQUERIES\tERRORS")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dnsName(e), latency(e.GetDnsLatencyP99()), latency(e.GetDnsLatencyP50()),
				group(e.GetDnsQueries()), group(e.GetDnsErrors()))
		}
	case observerv1.TopKind_TOP_KIND_TCP_SLOWEST:
		fmt.Fprintln(tw, "CLIENT\tSERVER\tP99 RTT\tP50 RTT\tCONNECTIONS\tRETRANS\tRESETS\tTIMEOUTS")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.GetSource(), dash(e.GetDestination()), rtt(e.GetTcpRttP99()), rtt(e.GetTcpRttP50()),
				group(e.GetTcpConnections()), group(e.GetTcpRetransmits()), group(e.GetTcpResets()), group(e.GetTcpTimeouts()))
		}
	case observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS:
		fmt.Fprintln(tw, "CLIENT\tSERVER\tRETRANS\tCONNECTIONS\tP99 RTT\tRESETS\tTIMEOUTS")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.GetSource(), dash(e.GetDestination()), group(e.GetTcpRetransmits()),
				group(e.GetTcpConnections()), rtt(e.GetTcpRttP99()), group(e.GetTcpResets()), group(e.GetTcpTimeouts()))
		}
	default:
		fmt.Fprintln(tw, "SOURCE\tNEW ENTRIES")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\n", e.GetSource(), group(e.GetConntrackEntries()))
		}
	}
	return tw.Flush()
}

// dnsName is a DNS entry's name: dns_query, else the source the relay put it in.
func dnsName(e *observerv1.TopEntry) string {
	if q := e.GetDnsQuery(); q != "" {
		return q
	}
	return dash(e.GetSource())
}

// rtt shows a handshake RTT quantile as observe does ("0.4ms"), "-" when
// the window measured no handshake of the pair.
func rtt(d *durationpb.Duration) string {
	if d == nil || d.AsDuration() <= 0 {
		return "-"
	}
	return output.RTT(d.AsDuration())
}

// latency shows a quantile, "-" when the window had no matched response.
func latency(d *durationpb.Duration) string {
	if d == nil || d.AsDuration() <= 0 {
		return "-"
	}
	return output.Latency(d.AsDuration())
}
