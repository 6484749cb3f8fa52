package cluster

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/cli/usage"
	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/timeparse"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// topKinds maps `trawl top` arguments to the rollup the relay reads.
var topKinds = []struct {
	arg   string
	kind  observerv1.TopKind
	title string
}{
	{"talkers", observerv1.TopKind_TOP_KIND_TALKERS, "Top talkers (bytes)"},
	{"droppers", observerv1.TopKind_TOP_KIND_DROPPERS, "Top droppers"},
	{"denied", observerv1.TopKind_TOP_KIND_DENIED_PAIRS, "Top denied pairs"},
	{"conntrack", observerv1.TopKind_TOP_KIND_CONNTRACK_CREATORS, "Top conntrack creators"},
}

// NewTopCommand returns `trawl top`.
func NewTopCommand(d Deps) *cobra.Command {
	var (
		since, until string
		limit        uint32
		namespaces   []string
		format       string
		dropClasses  []string
	)
	cmd := &cobra.Command{
		Use:       "top [talkers|droppers|denied|conntrack]",
		Short:     "Show top talkers, droppers, denied pairs or conntrack creators over a window",
		Long:      "Show the top entries of the rollups over a window (default the last hour); without an argument, all four.\nDroppers rank every drop class but teardown (protocol-normal drops, counted but not worth a look) unless --drop-class says otherwise.",
		ValidArgs: []string{"talkers", "droppers", "denied", "conntrack"},
		Args:      cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			kinds := topKinds
			if len(args) == 1 {
				kinds = nil
				for _, k := range topKinds {
					if k.arg == args[0] {
						kinds = append(kinds, k)
					}
				}
				if kinds == nil {
					return usage.Error(fmt.Errorf("unknown top kind %q: want talkers, droppers, denied or conntrack", args[0]))
				}
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

func (d Deps) top(ctx context.Context, w io.Writer, base *observerv1.GetTopRequest, kinds []struct {
	arg   string
	kind  observerv1.TopKind
	title string
}, format string) error {
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
	default:
		fmt.Fprintln(tw, "SOURCE\tNEW ENTRIES")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\n", e.GetSource(), group(e.GetConntrackEntries()))
		}
	}
	return tw.Flush()
}
