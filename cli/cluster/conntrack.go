package cluster

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trawl-dev/trawl/cli/output"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// NewConntrackCommand returns `trawl conntrack`.
func NewConntrackCommand(d Deps) *cobra.Command {
	var (
		nodes  []string
		follow bool
		format string
		top    int
	)
	cmd := &cobra.Command{
		Use:   "conntrack",
		Short: "Show conntrack table pressure per node: entries/max, new/s, drops, top creators",
		Long: `Show the latest conntrack sample of each node: entries against the
table's max (nf_conntrack_max is global, the count per network namespace),
new entries per second and drops over the sample's interval, and the sources
creating the most entries. With --follow, new samples print as they arrive.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return d.conntrack(cmd.Context(), cmd.OutOrStdout(), &observerv1.GetConntrackRequest{NodeName: nodes, Follow: follow}, format, top)
		},
	}
	cmd.Flags().StringSliceVar(&nodes, "node-name", nil, "only these nodes (repeatable)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new samples")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	cmd.Flags().IntVar(&top, "top", 3, "how many top creators to show per node")
	return cmd
}

func (d Deps) conntrack(ctx context.Context, w io.Writer, req *observerv1.GetConntrackRequest, format string, top int) error {
	conn, c, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := c.GetConntrack(ctx, req)
	if err != nil {
		return callError(conn.Server(), "conntrack", err)
	}
	header := false
	for {
		res, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return callError(conn.Server(), "conntrack", err)
		}
		if format == "json" {
			if err := writeJSON(w, res.GetSample()); err != nil {
				return err
			}
			continue
		}
		if !header {
			if _, err := io.WriteString(w, ConntrackHeader); err != nil {
				return err
			}
			header = true
		}
		if _, err := io.WriteString(w, ConntrackRow(res.GetSample(), top)); err != nil {
			return err
		}
	}
}

// ConntrackHeader heads the fixed-width rows; fixed widths (not a
// tabwriter) keep --follow rows aligned as they stream.
const ConntrackHeader = "NODE                 ENTRIES/MAX          UTILIZATION                 NEW/S    DROPS  EARLY-DROPS  TOP CREATORS\n"

// ConntrackRow formats one sample.
func ConntrackRow(s *flowv1.ConntrackSample, top int) string {
	util := s.GetUtilization()
	if util == 0 && s.GetMax() > 0 {
		util = float64(s.GetEntries()) / float64(s.GetMax())
	}
	rate := "-"
	if iv := s.GetInterval().AsDuration(); iv > 0 {
		rate = fmt.Sprintf("%.1f", float64(s.GetDeltas().GetNew())/iv.Seconds())
	}
	var creators []string
	for i, cr := range s.GetTopCreators() {
		if i >= top {
			break
		}
		creators = append(creators, fmt.Sprintf("%s (%d)", output.CreatorName(cr), cr.GetNewEntries()))
	}
	c := strings.Join(creators, ", ")
	if c == "" {
		c = "-"
	}
	return fmt.Sprintf("%-20s %-20s %s %5.1f%%  %7s  %7d  %11d  %s\n",
		s.GetNodeName(), fmt.Sprintf("%d/%d", s.GetEntries(), s.GetMax()), bar(util, 20), 100*util,
		rate, s.GetDeltas().GetDrop(), s.GetDeltas().GetEarlyDrop(), c)
}
