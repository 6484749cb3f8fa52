// Package policy is the `trawl policy` command: it answers "would this
// connection be allowed, and by which NetworkPolicies?" from manifests or a
// live cluster, with the same engine the relay uses to attribute drops.
package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trawl-dev/trawl/cli/usage"
	"github.com/trawl-dev/trawl/internal/kube"
	"github.com/trawl-dev/trawl/internal/policy"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// NewCommand returns `trawl policy` with its `check` subcommand.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "evaluate Kubernetes NetworkPolicies for a connection or for every pair of pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usage.Error(fmt.Errorf("missing subcommand: try 'trawl policy check'"))
		},
	}
	cmd.AddCommand(newCheckCommand())
	return cmd
}

type checkOptions struct {
	manifests  string
	kubeconfig string
	inCluster  bool
	from, to   string
	port       string
	allPairs   bool
	ports      string
	output     string
}

func newCheckCommand() *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check (--manifests PATH | --kubeconfig FILE | --in-cluster) (--from NS/POD --to NS/POD --port PORT/PROTO | --all-pairs --ports PORT/PROTO,...)",
		Short: "say whether connections are ALLOWED or DENIED and which policies decide each direction",
		Example: `  trawl policy check --manifests deploy/demo --from frontend/frontend-85b6f9d7c4-h8n3w --to databases/postgres-0 --port 5432/TCP
  trawl policy check --manifests deploy/demo --all-pairs --ports 80/TCP,8080/TCP -o table
  trawl policy check --kubeconfig ~/.kube/config --all-pairs --ports 80/TCP,81/TCP -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.manifests, "manifests", "", "YAML file or directory of Kubernetes objects (pods, namespaces, policies)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster to read")
	f.BoolVar(&o.inCluster, "in-cluster", false, "use the pod's service account")
	f.StringVar(&o.from, "from", "", "source: NS/POD, or an IP address")
	f.StringVar(&o.to, "to", "", "destination: NS/POD, or an IP address")
	f.StringVar(&o.port, "port", "", "destination port and protocol, e.g. 5432/TCP (protocol defaults to TCP)")
	f.BoolVar(&o.allPairs, "all-pairs", false, "evaluate every ordered pair of distinct pods")
	f.StringVar(&o.ports, "ports", "", "with --all-pairs: comma-separated ports, e.g. 80/TCP,81/UDP")
	f.StringVarP(&o.output, "output", "o", "", "output: text (default for one check), json (one object per line), table (default for --all-pairs)")
	return cmd
}

type portProto struct {
	port  uint16
	proto policy.Protocol
}

func parsePort(s string) (portProto, error) {
	num, proto, found := strings.Cut(strings.TrimSpace(s), "/")
	p := portProto{proto: policy.ProtoTCP}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return p, fmt.Errorf("bad port %q: want NUMBER[/TCP|UDP|SCTP] with 1 <= NUMBER <= 65535", s)
	}
	p.port = uint16(n)
	if found {
		if p.proto, err = policy.ParseProtocol(proto); err != nil {
			return p, fmt.Errorf("bad port %q: %w", s, err)
		}
	}
	return p, nil
}

func (o *checkOptions) validate() ([]portProto, error) {
	srcs := 0
	for _, set := range []bool{o.manifests != "", o.kubeconfig != "", o.inCluster} {
		if set {
			srcs++
		}
	}
	if srcs != 1 {
		return nil, fmt.Errorf("give exactly one of --manifests, --kubeconfig or --in-cluster")
	}
	switch o.output {
	case "", "text", "json", "table":
	default:
		return nil, fmt.Errorf("bad --output %q: want text, json or table", o.output)
	}
	var ports []portProto
	if o.allPairs {
		if o.from != "" || o.to != "" || o.port != "" {
			return nil, fmt.Errorf("--all-pairs takes --ports, not --from, --to or --port")
		}
		if o.ports == "" {
			return nil, fmt.Errorf("--all-pairs needs --ports, e.g. --ports 80/TCP,81/TCP")
		}
		for _, s := range strings.Split(o.ports, ",") {
			p, err := parsePort(s)
			if err != nil {
				return nil, err
			}
			ports = append(ports, p)
		}
		return ports, nil
	}
	if o.ports != "" {
		return nil, fmt.Errorf("--ports goes with --all-pairs; for one connection use --port")
	}
	if o.from == "" || o.to == "" || o.port == "" {
		return nil, fmt.Errorf("give --from NS/POD, --to NS/POD and --port PORT/PROTO, or --all-pairs")
	}
	if o.output == "table" {
		return nil, fmt.Errorf("--output table goes with --all-pairs")
	}
	p, err := parsePort(o.port)
	if err != nil {
		return nil, err
	}
	return []portProto{p}, nil
}

// endpoint resolves "ns/pod" or an IP address in the view.
func endpoint(v *kube.View, s string) (policy.Endpoint, string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		ep := v.Lookup(ip.Unmap(), v.Built())
		if ep.Pod != nil {
			return policy.Endpoint{Pod: ep.Pod, IP: ip.Unmap()}, ep.Pod.Key(), nil
		}
		return policy.Endpoint{IP: ip.Unmap()}, ip.String(), nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" {
		return policy.Endpoint{}, "", fmt.Errorf("bad endpoint %q: want NAMESPACE/POD or an IP address", s)
	}
	ep := v.Pod(ns, name)
	if ep == nil {
		return policy.Endpoint{}, "", fmt.Errorf("pod %s not found (or it has no address yet)", s)
	}
	return policy.Endpoint{Pod: ep.Pod, IP: ep.Pod.IPs[0]}, s, nil
}

func runCheck(ctx context.Context, w, errw io.Writer, o checkOptions) error {
	ports, err := o.validate()
	if err != nil {
		return usage.Error(err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops informers
	store, err := kube.Open(ctx, kube.Config{Manifests: o.manifests, Kubeconfig: o.kubeconfig, InCluster: o.inCluster})
	if err != nil {
		if o.manifests != "" {
			return usage.Error(err)
		}
		return err
	}
	v := store.View()
	if err := v.EngineError(); err != nil {
		if o.manifests != "" {
			return usage.Error(err) // a policy the user wrote does not parse: say so, don't guess
		}
		// A live cluster's broken policy is not this command's input error:
		// report it and judge with the others, as the relay does.
		fmt.Fprintf(errw, "warning: %v\n", err)
	}
	if o.allPairs {
		return allPairs(w, v, ports, o.output)
	}
	src, srcName, err := endpoint(v, o.from)
	if err != nil {
		return usage.Error(err)
	}
	dst, dstName, err := endpoint(v, o.to)
	if err != nil {
		return usage.Error(err)
	}
	r := newResult(srcName, dstName, ports[0], v.Engine().Evaluate(src, dst, ports[0].port, ports[0].proto))
	if o.output == "json" {
		return writeJSON(w, r)
	}
	return writeText(w, r, src.Pod != nil, dst.Pod != nil)
}

// Result is one connection's verdict as printed by -o json.
type Result struct {
	From             string   `json:"from"`
	To               string   `json:"to"`
	Port             uint16   `json:"port"`
	Protocol         string   `json:"protocol"`
	Allowed          bool     `json:"allowed"`
	IngressAllowedBy []Policy `json:"ingress_allowed_by"`
	IngressDeniedBy  []Policy `json:"ingress_denied_by"`
	EgressAllowedBy  []Policy `json:"egress_allowed_by"`
	EgressDeniedBy   []Policy `json:"egress_denied_by"`
}

// Policy names a NetworkPolicy as flows do.
type Policy struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Kind      string `json:"kind"`
}

func policies(ps []*flowv1.Policy) []Policy {
	out := make([]Policy, 0, len(ps))
	for _, p := range ps {
		out = append(out, Policy{Namespace: p.Namespace, Name: p.Name, Kind: p.Kind})
	}
	return out
}

func newResult(from, to string, p portProto, v *policy.Verdict) Result {
	return Result{
		From: from, To: to, Port: p.port, Protocol: p.proto.String(), Allowed: v.Allowed(),
		IngressAllowedBy: policies(v.Ingress.AllowedBy), IngressDeniedBy: policies(v.Ingress.DeniedBy),
		EgressAllowedBy: policies(v.Egress.AllowedBy), EgressDeniedBy: policies(v.Egress.DeniedBy),
	}
}

func writeJSON(w io.Writer, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func names(ps []Policy) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Namespace + "/" + p.Name
	}
	return strings.Join(s, ", ")
}

func direction(allowed, denied []Policy, isPod bool, subject string) string {
	switch {
	case !isPod:
		return fmt.Sprintf("allowed (%s is not a pod: no policy applies)", subject)
	case len(allowed) > 0:
		return "allowed by " + names(allowed)
	case len(denied) > 0:
		return "denied: " + subject + " is isolated by " + names(denied) + " and none allows this"
	}
	return fmt.Sprintf("allowed (no policy selects %s)", subject)
}

func writeText(w io.Writer, r Result, srcPod, dstPod bool) error {
	verdict := "DENIED"
	if r.Allowed {
		verdict = "ALLOWED"
	}
	_, err := fmt.Fprintf(w, "%s %s -> %s %d/%s\n  egress:  %s\n  ingress: %s\n", verdict, r.From, r.To, r.Port, r.Protocol,
		direction(r.EgressAllowedBy, r.EgressDeniedBy, srcPod, r.From),
		direction(r.IngressAllowedBy, r.IngressDeniedBy, dstPod, r.To))
	return err
}

func allPairs(w io.Writer, v *kube.View, ports []portProto, output string) error {
	keys := v.PodKeys()
	eng := v.Engine()
	for _, p := range ports {
		matrix := make([][]bool, len(keys))
		for i, from := range keys {
			matrix[i] = make([]bool, len(keys))
			src := v.Pod(split(from)).Pod
			for j, to := range keys {
				if i == j {
					continue
				}
				dst := v.Pod(split(to)).Pod
				vd := eng.Evaluate(policy.Endpoint{Pod: src}, policy.Endpoint{Pod: dst}, p.port, p.proto)
				matrix[i][j] = vd.Allowed()
				if output == "json" {
					if err := writeJSON(w, newResult(from, to, p, vd)); err != nil {
						return err
					}
				}
			}
		}
		if output != "json" {
			if err := writeTable(w, keys, p, matrix); err != nil {
				return err
			}
		}
	}
	return nil
}

func split(k string) (string, string) {
	ns, name, _ := strings.Cut(k, "/")
	return ns, name
}

// writeTable prints the reachability matrix like the Kubernetes e2e suite:
// rows are sources, columns destinations (numbered, with a legend, because
// pod names are long), "." allowed, "X" denied, "-" the pod itself.
func writeTable(w io.Writer, keys []string, p portProto, m [][]bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%s (rows: from, columns: to; . allowed, X denied)\n", p.port, p.proto)
	width := len(strconv.Itoa(len(keys)))
	fmt.Fprintf(&b, "%*s ", width, "")
	for j := range keys {
		fmt.Fprintf(&b, " %*d", width, j+1)
	}
	b.WriteString("\n")
	for i := range keys {
		fmt.Fprintf(&b, "%*d ", width, i+1)
		for j := range keys {
			c := "."
			switch {
			case i == j:
				c = "-"
			case !m[i][j]:
				c = "X"
			}
			fmt.Fprintf(&b, " %*s", width, c)
		}
		fmt.Fprintf(&b, "  %s\n", keys[i])
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}
