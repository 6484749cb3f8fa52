// Package observe is `trawl observe`: Hubble's flags and selection rules
// over Trawl's relay (history from ClickHouse, live with --follow) or over a
// file of JSON lines (ours or Hubble's).
package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	"github.com/trawl-dev/trawl/cli/client"
	"github.com/trawl-dev/trawl/cli/output"
	"github.com/trawl-dev/trawl/cli/usage"
	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/timeparse"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// DefaultLast is how many records a plain `trawl observe` prints, as Hubble.
const DefaultLast = 20

// Options are the non-filter flags of `trawl observe`.
type Options struct {
	Last, First  uint64
	All, Follow  bool
	Since, Until string

	Output           string
	PrintNodeName    bool
	PrintPolicyNames bool
	TimeFormat       string
	Color            string
	Numeric          bool
	IPTranslation    bool

	Allowlist, Denylist []string
	PrintRawFilters     bool
	InputFile           string
}

// Command wires `trawl observe`. conn holds the connection flags shared with
// the other commands; now is the clock (tests fix it).
type Command struct {
	Opts    Options
	Filters Filters
	Conn    *client.Options
	Now     func() time.Time
	Stdin   io.Reader
	// IsTerminal says whether stdout is a terminal, for --color auto.
	IsTerminal func() bool
}

// NewCommand returns `trawl observe`.
func NewCommand(conn *client.Options) *cobra.Command {
	_, cmd := New(conn)
	return cmd
}

// New returns `trawl observe` and the state its flags fill.
func New(conn *client.Options) (*Command, *cobra.Command) {
	c := &Command{Conn: conn, Now: time.Now, Stdin: os.Stdin}
	c.Opts = Options{Output: output.Compact, Color: "auto", IPTranslation: true, TimeFormat: "StampMilli"}
	cmd := &cobra.Command{
		Use:   "observe",
		Short: "Observe flows, drops and policy verdicts: history, then live with --follow",
		Long: `Observe flows recorded by Trawl, with Hubble's flags.

Without selection flags the last 20 records are printed. Trawl keeps history,
so --since and --until reach as far back as the retention allows:
  trawl observe --since 3d --to-namespace shop --verdict DROPPED
  trawl observe -f --from-pod default/web --not --port 53
  trawl observe --input-file capture.json --drop-reason NO_SOCKET

Filters of one kind are OR-ed, different kinds AND-ed; --not negates the next
filter. --since/--until take durations (90s, 3h, 2d, 1w), RFC 3339 times and
dates (2026-11-27, "2026-11-27 10:00"); times without a zone are UTC.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.IsTerminal == nil {
				c.IsTerminal = func() bool { return isTerminal(cmd.OutOrStdout()) }
			}
			return c.Run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.Uint64Var(&c.Opts.Last, "last", 0, "print the last N records (default 20 when nothing else selects)")
	fs.Uint64Var(&c.Opts.First, "first", 0, "print the first N records (from --since, or the oldest kept)")
	fs.BoolVar(&c.Opts.All, "all", false, "print all records (use with filters: history can be large)")
	fs.StringVar(&c.Opts.Since, "since", "", "records since this time: 90s, 3h, 2d, 1w, RFC 3339 or 2026-11-27 [10:00]")
	fs.StringVar(&c.Opts.Until, "until", "", "records until this time (same forms as --since)")
	fs.BoolVarP(&c.Opts.Follow, "follow", "f", false, "after the history, keep printing new records as they arrive")
	c.Filters.AddFlags(fs)
	fs.StringArrayVar(&c.Opts.Allowlist, "allowlist", nil, "raw FlowFilter as JSON to allow (repeatable)")
	fs.StringArrayVar(&c.Opts.Denylist, "denylist", nil, "raw FlowFilter as JSON to deny (repeatable)")
	fs.BoolVar(&c.Opts.PrintRawFilters, "print-raw-filters", false, "print the allowlist/denylist the flags make and exit")
	fs.StringVarP(&c.Opts.Output, "output", "o", c.Opts.Output, "output format: compact, dict, json, jsonpb (same as json), table")
	fs.BoolVar(&c.Opts.PrintNodeName, "print-node-name", false, "print the node that saw each record")
	fs.BoolVar(&c.Opts.PrintPolicyNames, "print-policy-names", false, "print the NetworkPolicies that allowed or denied each flow")
	fs.StringVar(&c.Opts.TimeFormat, "time-format", c.Opts.TimeFormat, "time layout for compact, dict and table: "+strings.Join(timeparse.FormatNames, ", "))
	fs.StringVar(&c.Opts.Color, "color", c.Opts.Color, "colour compact and dict output: auto, always, never")
	fs.BoolVar(&c.Opts.Numeric, "numeric", false, "print addresses and identities as numbers (turns off --ip-translation)")
	fs.BoolVar(&c.Opts.IPTranslation, "ip-translation", c.Opts.IPTranslation, "show namespace/pod or service names instead of addresses where known")
	fs.StringVar(&c.Opts.InputFile, "input-file", "", "read JSON lines (Trawl's, or Hubble's from hubble observe -o jsonpb) from this file, or - for stdin, instead of the relay")

	_ = cmd.RegisterFlagCompletionFunc("output", fixed(output.Formats...))
	_ = cmd.RegisterFlagCompletionFunc("color", fixed("auto", "always", "never"))
	_ = cmd.RegisterFlagCompletionFunc("time-format", fixed(timeparse.FormatNames...))
	_ = cmd.RegisterFlagCompletionFunc("verdict", fixed("FORWARDED", "DROPPED", "ERROR", "AUDIT", "REDIRECTED", "TRACED", "TRANSLATED"))
	_ = cmd.RegisterFlagCompletionFunc("traffic-direction", fixed("ingress", "egress"))
	_ = cmd.RegisterFlagCompletionFunc("protocol", fixed("tcp", "udp", "sctp", "icmp", "icmpv4", "icmpv6", "dns"))
	_ = cmd.RegisterFlagCompletionFunc("drop-class", fixed(append([]string{"all"}, strings.Split(classNames(), ", ")...)...))
	_ = cmd.RegisterFlagCompletionFunc("type", fixed("flow", "new", "close", "drop", "policy-verdict", "l7", "connect-timeout", "conntrack", "lost-events", "node-status", "trace"))
	return c, cmd
}

func fixed(vals ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return vals, cobra.ShellCompDirectiveNoFileComp
	}
}

// Request builds the GetFlows request from the flags, applying Hubble's
// selection rules and rejections. records are the non-flow record types
// --type asked for, which the CLI selects itself.
func (c *Command) Request() (req *observerv1.GetFlowsRequest, records []string, err error) {
	o := c.Opts
	first, last := o.First > 0, o.Last > 0
	switch {
	case first && last:
		return nil, nil, usage.Error(errors.New("cannot set both --first and --last"))
	case first && o.All:
		return nil, nil, usage.Error(errors.New("cannot set both --first and --all"))
	case first && o.Follow:
		return nil, nil, usage.Error(errors.New("cannot set both --first and --follow"))
	case last && o.All:
		return nil, nil, usage.Error(errors.New("cannot set both --last and --all"))
	}
	now := c.Now()
	req = &observerv1.GetFlowsRequest{Follow: o.Follow, First: first}
	if o.Since != "" {
		t, err := timeparse.Parse(o.Since, now)
		if err != nil {
			return nil, nil, usage.Error(fmt.Errorf("--since: %w", err))
		}
		req.Since = timestamppb.New(t)
	}
	// As Hubble: with --follow there is no end, so --until is ignored.
	if o.Until != "" && !o.Follow {
		t, err := timeparse.Parse(o.Until, now)
		if err != nil {
			return nil, nil, usage.Error(fmt.Errorf("--until: %w", err))
		}
		req.Until = timestamppb.New(t)
	}
	if req.Since != nil && req.Until != nil && req.Since.AsTime().After(req.Until.AsTime()) {
		return nil, nil, usage.Error(fmt.Errorf("--since (%s) is after --until (%s)",
			req.Since.AsTime().Format(time.RFC3339), req.Until.AsTime().Format(time.RFC3339)))
	}
	req.Number = o.Last
	if first {
		req.Number = o.First
	}
	if req.Since == nil && req.Until == nil && !first {
		switch {
		case o.All:
			req.Number = math.MaxUint64
		case o.Last == 0 && !o.Follow && o.InputFile == "":
			req.Number = DefaultLast
		}
	}
	if o.All && (req.Since != nil || req.Until != nil) {
		req.Number = 0 // everything in the window
	}

	allow, deny, records, err := c.Filters.Lists()
	if err != nil {
		return nil, nil, usage.Error(err)
	}
	rawAllow, err := parseRaw(o.Allowlist)
	if err != nil {
		return nil, nil, usage.Error(fmt.Errorf("invalid --allowlist: %w", err))
	}
	rawDeny, err := parseRaw(o.Denylist)
	if err != nil {
		return nil, nil, usage.Error(fmt.Errorf("invalid --denylist: %w", err))
	}
	req.Allowlist = append(allow, rawAllow...)
	req.Denylist = append(deny, rawDeny...)
	// The default drop view leaves teardown drops out, unless the flags
	// name classes, reasons or a record, or raw lists say exactly what to
	// select.
	if c.Filters.HidesTeardown() && len(rawAllow)+len(rawDeny) == 0 {
		req.Denylist = append(req.Denylist, TeardownDeny())
	}
	// The one filter implementation judges the lists here too, so a bad
	// value fails before anything is sent.
	if _, err := filter.Compile(req.Allowlist, req.Denylist); err != nil {
		return nil, nil, usage.Error(fmt.Errorf("invalid filter: %w", err))
	}
	return req, records, nil
}

// parseRaw reads FlowFilters given as JSON; one flag value may hold several
// objects one after the other, as Hubble allows.
func parseRaw(vals []string) ([]*observerv1.FlowFilter, error) {
	var out []*observerv1.FlowFilter
	for _, v := range vals {
		dec := json.NewDecoder(strings.NewReader(v))
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%q: %v", v, err)
			}
			ff := &observerv1.FlowFilter{}
			if err := protojson.Unmarshal(raw, ff); err != nil {
				return nil, fmt.Errorf("%q: %v", v, err)
			}
			out = append(out, ff)
		}
	}
	return out, nil
}

// RawFilters renders the lists as YAML with one JSON FlowFilter per entry,
// the shape Hubble's --print-raw-filters has, ready for --allowlist.
func RawFilters(req *observerv1.GetFlowsRequest) (string, error) {
	enc := func(ffs []*observerv1.FlowFilter) ([]string, error) {
		var out []string
		for _, ff := range ffs {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ff)
			if err != nil {
				return nil, err
			}
			// protojson's spacing is deliberately unstable; normalise it.
			var buf strings.Builder
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				return nil, err
			}
			nb, _ := json.Marshal(v)
			buf.Write(nb)
			out = append(out, buf.String())
		}
		return out, nil
	}
	allow, err := enc(req.GetAllowlist())
	if err != nil {
		return "", err
	}
	deny, err := enc(req.GetDenylist())
	if err != nil {
		return "", err
	}
	b, err := yaml.Marshal(struct {
		Allowlist []string `json:"allowlist,omitempty"`
		Denylist  []string `json:"denylist,omitempty"`
	}{allow, deny})
	return string(b), err
}

// printerOptions checks the formatting flags.
func (c *Command) printerOptions() (output.Options, error) {
	o := c.Opts
	layout, err := timeparse.Layout(o.TimeFormat)
	if err != nil {
		return output.Options{}, usage.Error(fmt.Errorf("--time-format: %w", err))
	}
	var color bool
	switch strings.ToLower(o.Color) {
	case "always":
		color = true
	case "never":
		color = false
	case "auto", "":
		color = os.Getenv("NO_COLOR") == "" && c.IsTerminal != nil && c.IsTerminal()
	default:
		return output.Options{}, usage.Error(fmt.Errorf("invalid --color %q: want auto, always or never", o.Color))
	}
	format := strings.ToLower(o.Output)
	if (format == output.Table || format == "tab") && o.Follow {
		return output.Options{}, usage.Error(errors.New("table output format is not compatible with follow mode"))
	}
	return output.Options{
		Format:        format,
		TimeLayout:    layout,
		NodeName:      o.PrintNodeName,
		PolicyNames:   o.PrintPolicyNames,
		Color:         color,
		Numeric:       o.Numeric,
		IPTranslation: o.IPTranslation,
	}, nil
}

// Run executes the command with the flags already parsed.
func (c *Command) Run(ctx context.Context, stdout, stderr io.Writer) error {
	popts, err := c.printerOptions()
	if err != nil {
		return err
	}
	req, records, err := c.Request()
	if err != nil {
		return err
	}
	if c.Opts.PrintRawFilters {
		s, err := RawFilters(req)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, s)
		return err
	}
	p, err := output.New(stdout, stderr, popts)
	if err != nil {
		return usage.Error(err)
	}
	sel := recordSelector(records)
	emit := func(r *observerv1.GetFlowsResponse) error {
		if !sel(r) {
			return nil
		}
		return p.Write(r)
	}
	if c.Opts.InputFile != "" {
		err = c.runInput(ctx, req, emit, stderr)
	} else {
		err = c.runRemote(ctx, req, emit, p.Flush)
	}
	if ferr := p.Flush(); err == nil {
		err = ferr
	}
	return err
}

// recordSelector keeps the record types --type asked for. Lost events are
// always kept: lost data is never hidden by a filter.
func recordSelector(records []string) func(*observerv1.GetFlowsResponse) bool {
	if len(records) == 0 {
		return func(*observerv1.GetFlowsResponse) bool { return true }
	}
	return func(r *observerv1.GetFlowsResponse) bool {
		switch {
		case r.GetLostEvents() != nil:
			return true
		case r.GetConntrack() != nil:
			return slices.Contains(records, "conntrack")
		case r.GetNodeStatus() != nil:
			return slices.Contains(records, "node-status")
		}
		return false
	}
}

func (c *Command) runInput(ctx context.Context, req *observerv1.GetFlowsRequest, emit func(*observerv1.GetFlowsResponse) error, stderr io.Writer) error {
	var r io.Reader
	if c.Opts.InputFile == "-" {
		r = c.Stdin
	} else {
		f, err := os.Open(c.Opts.InputFile)
		if err != nil {
			return fmt.Errorf("--input-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	flt, err := filter.Compile(req.GetAllowlist(), req.GetDenylist())
	if err != nil {
		return usage.Error(err)
	}
	// Replaying a file allocates many short-lived records and keeps few, so
	// collecting rarely saves CPU; --last N keeps N records alive, so there
	// the heap may only grow moderately past them.
	gc := 2000
	if n := req.GetNumber(); !req.GetFirst() && n != 0 && n != math.MaxUint64 {
		gc = 200
	}
	defer debug.SetGCPercent(debug.SetGCPercent(gc))
	return ReadInput(ctx, r, req, flt, emit, stderr)
}

// runRemote streams from the relay. A receiver goroutine feeds a bounded
// channel so the printer can flush exactly when the stream goes quiet: lines
// appear at once when following, without a write per record under load.
func (c *Command) runRemote(ctx context.Context, req *observerv1.GetFlowsRequest, emit func(*observerv1.GetFlowsResponse) error, flush func() error) error {
	conn, err := client.Dial(ctx, *c.Conn)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := observerv1.NewObserverClient(conn).GetFlows(ctx, req)
	if err != nil {
		return callError(conn.Server(), err)
	}
	type item struct {
		r   *observerv1.GetFlowsResponse
		err error
	}
	ch := make(chan item, 1024)
	go func() {
		defer close(ch)
		for {
			r, err := stream.Recv()
			select {
			case ch <- item{r, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for it := range ch {
		if it.err != nil {
			if it.err == io.EOF || status.Code(it.err) == codes.Canceled || ctx.Err() != nil {
				return nil
			}
			return callError(conn.Server(), it.err)
		}
		if err := emit(it.r); err != nil {
			return err
		}
		if len(ch) == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// callError words a failed call: an unreachable relay names its address.
func callError(server string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable:
		return fmt.Errorf("%w at %s: %s", client.ErrUnreachable, server, status.Convert(err).Message())
	case codes.InvalidArgument:
		return usage.Error(fmt.Errorf("the relay rejected the request: %s", status.Convert(err).Message()))
	case codes.Unknown:
		return errors.New(status.Convert(err).Message())
	}
	return fmt.Errorf("relay %s: %s: %s", server, status.Code(err), status.Convert(err).Message())
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
