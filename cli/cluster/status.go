package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// ErrUnhealthy is returned (exit 1) after printing a status whose
// ClickHouse is unhealthy, so scripts can check `trawl status`.
var ErrUnhealthy = errors.New("the relay reports ClickHouse unhealthy")

// NewStatusCommand returns `trawl status`.
func NewStatusCommand(d Deps) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the relay's health: ClickHouse, flows stored, rate, nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return d.status(cmd.Context(), cmd.OutOrStdout(), format)
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	return cmd
}

func (d Deps) status(ctx context.Context, w io.Writer, format string) error {
	conn, c, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	uctx, cancel := conn.Unary(ctx)
	defer cancel()
	st, err := c.ServerStatus(uctx, &observerv1.ServerStatusRequest{})
	if err != nil {
		return callError(conn.Server(), "status", err)
	}
	if format == "json" {
		if err := writeJSON(w, st); err != nil {
			return err
		}
	} else if err := WriteStatus(w, conn.Server(), st, d.Now()); err != nil {
		return err
	}
	if !st.GetClickhouse().GetHealthy() {
		return ErrUnhealthy
	}
	return nil
}

// WriteStatus prints a status in Hubble's "Key: value" style.
func WriteStatus(w io.Writer, server string, st *observerv1.ServerStatusResponse, now time.Time) error {
	ch := st.GetClickhouse()
	health := "Ok"
	if !ch.GetHealthy() {
		health = "UNHEALTHY"
		if e := ch.GetError(); e != "" {
			health += ": " + e
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Healthcheck (via %s): Ok\n", server)
	fmt.Fprintf(&b, "Relay version: %s\n", st.GetVersion())
	fmt.Fprintf(&b, "Uptime: %s\n", human(time.Duration(st.GetUptimeNs())))
	fmt.Fprintf(&b, "ClickHouse: %s", health)
	var extra []string
	if v := ch.GetVersion(); v != "" {
		extra = append(extra, "version "+v)
	}
	extra = append(extra, fmt.Sprintf("%s rows pending", group(ch.GetPendingRows())))
	if li := ch.GetLastInsert(); li != nil {
		extra = append(extra, "last insert "+ago(now, li.AsTime()))
	}
	fmt.Fprintf(&b, " (%s)\n", strings.Join(extra, ", "))
	fmt.Fprintf(&b, "Stored Flows: %s\n", group(st.GetNumFlows()))
	fmt.Fprintf(&b, "Seen Flows: %s\n", group(st.GetSeenFlows()))
	fmt.Fprintf(&b, "Flows/s: %.2f\n", st.GetFlowsRate())
	conn, un := st.GetNumConnectedNodes(), st.GetNumUnavailableNodes()
	fmt.Fprintf(&b, "Connected Nodes: %d/%d\n", conn, conn+un)
	if un > 0 {
		fmt.Fprintf(&b, "Unavailable Nodes: %d\n", un)
		for _, n := range st.GetUnavailableNodes() {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// NewNodesCommand returns `trawl nodes`.
func NewNodesCommand(d Deps) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "nodes",
		Aliases: []string{"node"},
		Short:   "List the agents the relay knows and their state",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			conn, c, err := d.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			uctx, cancel := conn.Unary(cmd.Context())
			defer cancel()
			res, err := c.GetNodes(uctx, &observerv1.GetNodesRequest{})
			if err != nil {
				return callError(conn.Server(), "nodes", err)
			}
			if format == "json" {
				for _, n := range res.GetNodes() {
					if err := writeJSON(cmd.OutOrStdout(), n); err != nil {
						return err
					}
				}
				return nil
			}
			return WriteNodes(cmd.OutOrStdout(), res.GetNodes(), d.Now())
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	return cmd
}

// WriteNodes prints one row per node, like `hubble list nodes`.
func WriteNodes(w io.Writer, nodes []*flowv1.NodeStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 2, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tAGE\tLAST SEEN\tVERSION\tKERNEL\tADDRESS\tFEATURES OFF")
	for _, n := range nodes {
		age := "-"
		if s := n.GetStartedAt(); s != nil {
			age = human(now.Sub(s.AsTime()))
		}
		last := "-"
		if l := n.GetLastSeen(); l != nil {
			last = ago(now, l.AsTime())
		}
		var off []string
		for _, f := range n.GetFeatures() {
			if !f.GetEnabled() {
				off = append(off, f.GetName())
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.GetNodeName(), nodeState(n.GetState()), age, last,
			dash(n.GetVersion()), dash(n.GetKernel()), dash(n.GetAddress()), dash(strings.Join(off, ",")))
	}
	return tw.Flush()
}

func nodeState(s flowv1.NodeState) string {
	switch s {
	case flowv1.NodeState_NODE_CONNECTED:
		return "Connected"
	case flowv1.NodeState_NODE_UNAVAILABLE:
		return "Unavailable"
	case flowv1.NodeState_NODE_GONE:
		return "Gone"
	case flowv1.NodeState_NODE_ERROR:
		return "Error"
	}
	return "Unknown"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
