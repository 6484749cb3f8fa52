// Package netpol turns Kubernetes NetworkPolicies into nftables rules the way
// an iptables/nftables-based CNI enforces them, for the test bed and the
// demo: the rules go into the node's network namespace, where routed
// pod-to-pod traffic crosses the forward hook.
//
// The rules are generated from the policy objects themselves, not from the
// policy engine's verdicts, so that comparing real connectivity with the
// engine checks both. Layout (one table):
//
//	forward (base chain, hook forward)
//	  ct state established,related accept
//	  clear the two verdict mark bits
//	  ip saddr <pod> jump <pod>_eg     for each egress-isolated pod
//	  ip daddr <pod> jump <pod>_in     for each ingress-isolated pod
//	<pod>_in / <pod>_eg (per isolated pod)
//	  jump <policy>_in ...             each policy isolating the pod
//	  mark bit set → return            some policy allowed it
//	  counter drop                     isolated and nothing allowed it
//	<policy>_in / <policy>_eg (per policy)
//	  one rule per (peer, port): match → set the direction's mark bit
//	  peers that are pods match a named set of pod addresses
//
// Drops by these rules reach the kernel's kfree_skb with NETFILTER_DROP.
// IPv4 only: the test bed is IPv4.
package netpol

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DefaultTable is the nftables table name when Options.Table is empty.
const DefaultTable = "trawl_netpol"

// Mark bits set by policy chains when a policy allows the packet.
const (
	markIngress = 0x10000
	markEgress  = 0x20000
)

// Options of Generate.
type Options struct {
	// Table is the nftables table (family ip) to create. Default DefaultTable.
	Table string
}

type pod struct {
	ns, name string
	labels   labels.Set
	ip       netip.Addr
	ports    []corev1.ContainerPort
	id       string // identifier-safe "ns__name"
}

// Generate renders an nft script (for `nft -f`) enforcing the policies among
// objs (as decoded by kube.LoadManifests: *corev1.Pod, *corev1.Namespace,
// *networkingv1.NetworkPolicy; other objects are ignored). The script first
// deletes a table of the same name, so applying it again replaces the rules.
func Generate(objs []any, opt Options) (string, error) {
	table := opt.Table
	if table == "" {
		table = DefaultTable
	}
	if !validIdent(table) {
		return "", fmt.Errorf("bad nft table name %q", table)
	}
	nsLabels := map[string]labels.Set{}
	var pods []*pod
	var pols []*networkingv1.NetworkPolicy
	for _, o := range objs {
		switch x := o.(type) {
		case *corev1.Namespace:
			nsLabels[x.Name] = labels.Set(x.Labels)
		case *corev1.Pod:
			if x.Spec.HostNetwork || x.Status.Phase == corev1.PodSucceeded || x.Status.Phase == corev1.PodFailed {
				continue
			}
			ip, err := netip.ParseAddr(x.Status.PodIP)
			if err != nil || !ip.Is4() {
				continue
			}
			p := &pod{ns: x.Namespace, name: x.Name, labels: labels.Set(x.Labels), ip: ip, id: ident(x.Namespace + "__" + x.Name)}
			for _, c := range x.Spec.Containers {
				p.ports = append(p.ports, c.Ports...)
			}
			pods = append(pods, p)
		case *networkingv1.NetworkPolicy:
			pols = append(pols, x)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].id < pods[j].id })
	sort.Slice(pols, func(i, j int) bool {
		return pols[i].Namespace+"/"+pols[i].Name < pols[j].Namespace+"/"+pols[j].Name
	})

	g := &gen{nsLabels: nsLabels, pods: pods}
	inPols := map[*pod][]string{} // pod → policy chains isolating it for ingress
	egPols := map[*pod][]string{}
	for _, np := range pols {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			return "", fmt.Errorf("policy %s/%s: podSelector: %w", np.Namespace, np.Name, err)
		}
		var selected []*pod
		for _, p := range pods {
			if p.ns == np.Namespace && sel.Matches(p.labels) {
				selected = append(selected, p)
			}
		}
		ingress, egress := len(np.Spec.PolicyTypes) == 0, len(np.Spec.PolicyTypes) == 0 && len(np.Spec.Egress) > 0
		for _, t := range np.Spec.PolicyTypes {
			ingress = ingress || t == networkingv1.PolicyTypeIngress
			egress = egress || t == networkingv1.PolicyTypeEgress
		}
		base := "np_" + ident(np.Namespace+"__"+np.Name)
		if ingress {
			chain := base + "_in"
			var rules []string
			for ri, r := range np.Spec.Ingress {
				rs, err := g.rule(np, fmt.Sprintf("%s_%d", chain, ri), "saddr", r.From, r.Ports, selected, markIngress)
				if err != nil {
					return "", fmt.Errorf("policy %s/%s ingress rule %d: %w", np.Namespace, np.Name, ri, err)
				}
				rules = append(rules, rs...)
			}
			g.chain(chain, rules)
			for _, p := range selected {
				inPols[p] = append(inPols[p], chain)
			}
		}
		if egress {
			chain := base + "_eg"
			var rules []string
			for ri, r := range np.Spec.Egress {
				rs, err := g.rule(np, fmt.Sprintf("%s_%d", chain, ri), "daddr", r.To, r.Ports, pods, markEgress)
				if err != nil {
					return "", fmt.Errorf("policy %s/%s egress rule %d: %w", np.Namespace, np.Name, ri, err)
				}
				rules = append(rules, rs...)
			}
			g.chain(chain, rules)
			for _, p := range selected {
				egPols[p] = append(egPols[p], chain)
			}
		}
	}

	var fwd []string
	fwd = append(fwd,
		"type filter hook forward priority filter; policy accept;",
		"ct state established,related accept",
		fmt.Sprintf("meta mark set meta mark and 0x%08x", ^uint32(markIngress|markEgress)))
	for _, p := range pods {
		if chains := egPols[p]; len(chains) > 0 {
			fwd = append(fwd, fmt.Sprintf("ip saddr %s jump pod_%s_eg", p.ip, p.id))
			g.podChain("pod_"+p.id+"_eg", chains, markEgress)
		}
	}
	for _, p := range pods {
		if chains := inPols[p]; len(chains) > 0 {
			fwd = append(fwd, fmt.Sprintf("ip daddr %s jump pod_%s_in", p.ip, p.id))
			g.podChain("pod_"+p.id+"_in", chains, markIngress)
		}
	}

	var b strings.Builder
	// "add" then "delete" makes a re-apply replace the table atomically
	// (nft -f runs the whole script as one transaction).
	fmt.Fprintf(&b, "add table ip %s\ndelete table ip %s\ntable ip %s {\n", table, table, table)
	for _, s := range g.sets {
		b.WriteString(s)
	}
	fmt.Fprintf(&b, "\tchain forward {\n")
	for _, r := range fwd {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n")
	for _, c := range g.chains {
		b.WriteString(c)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

type gen struct {
	nsLabels map[string]labels.Set
	pods     []*pod
	sets     []string
	chains   []string
}

func (g *gen) chain(name string, rules []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\tchain %s {\n", name)
	for _, r := range rules {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n")
	g.chains = append(g.chains, b.String())
}

func (g *gen) podChain(name string, policyChains []string, mark uint32) {
	var rules []string
	for _, c := range policyChains {
		rules = append(rules, "jump "+c)
	}
	rules = append(rules,
		fmt.Sprintf("meta mark and 0x%x == 0x%x return", mark, mark),
		"counter drop")
	g.chain(name, rules)
}

// rule renders one ingress/egress rule: the cross product of its peers and
// ports, each line setting mark. dir is "saddr" (ingress: the peer is the
// source) or "daddr" (egress). portPods are the pods a named port may be
// resolved on (the policy's selected pods for ingress, all pods for egress).
func (g *gen) rule(np *networkingv1.NetworkPolicy, setBase, dir string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, portPods []*pod, mark uint32) ([]string, error) {
	var peerMatches []string
	if len(peers) == 0 {
		peerMatches = []string{""}
	}
	for pi, peer := range peers {
		m, err := g.peer(np, fmt.Sprintf("%s_p%d", setBase, pi), dir, peer)
		if err != nil {
			return nil, err
		}
		if m != "" {
			peerMatches = append(peerMatches, m)
		}
	}
	var portMatches []string
	if len(ports) == 0 {
		portMatches = []string{""}
	}
	for _, p := range ports {
		proto := "tcp"
		if p.Protocol != nil {
			proto = strings.ToLower(string(*p.Protocol))
		}
		switch {
		case p.Port == nil:
			portMatches = append(portMatches, "meta l4proto "+proto)
		case p.Port.Type == intstr.String:
			// A named port is a number per destination pod.
			for _, pp := range portPods {
				for _, cp := range pp.ports {
					cproto := cp.Protocol
					if cproto == "" {
						cproto = corev1.ProtocolTCP
					}
					if cp.Name == p.Port.StrVal && strings.EqualFold(string(cproto), proto) {
						portMatches = append(portMatches, fmt.Sprintf("ip daddr %s meta l4proto %s th dport %d", pp.ip, proto, cp.ContainerPort))
					}
				}
			}
		default:
			if p.EndPort != nil {
				portMatches = append(portMatches, fmt.Sprintf("meta l4proto %s th dport %d-%d", proto, p.Port.IntVal, *p.EndPort))
			} else {
				portMatches = append(portMatches, fmt.Sprintf("meta l4proto %s th dport %d", proto, p.Port.IntVal))
			}
		}
	}
	var out []string
	for _, pm := range peerMatches {
		for _, po := range portMatches {
			out = append(out, strings.TrimSpace(strings.Join([]string{pm, po, fmt.Sprintf("meta mark set meta mark or 0x%x", mark)}, " ")))
		}
	}
	return out, nil
}

// peer renders the match of one peer, "" when it can match nothing (no pod
// selected): the caller drops it.
func (g *gen) peer(np *networkingv1.NetworkPolicy, setName, dir string, peer networkingv1.NetworkPolicyPeer) (string, error) {
	if b := peer.IPBlock; b != nil {
		if _, err := netip.ParsePrefix(b.CIDR); err != nil {
			return "", fmt.Errorf("ipBlock: %w", err)
		}
		m := fmt.Sprintf("ip %s %s", dir, b.CIDR)
		if len(b.Except) > 0 {
			m += fmt.Sprintf(" ip %s != { %s }", dir, strings.Join(b.Except, ", "))
		}
		return m, nil
	}
	var nsSel, podSel labels.Selector = nil, labels.Everything()
	var err error
	if peer.NamespaceSelector != nil {
		if nsSel, err = metav1.LabelSelectorAsSelector(peer.NamespaceSelector); err != nil {
			return "", fmt.Errorf("namespaceSelector: %w", err)
		}
	}
	if peer.PodSelector != nil {
		if podSel, err = metav1.LabelSelectorAsSelector(peer.PodSelector); err != nil {
			return "", fmt.Errorf("podSelector: %w", err)
		}
	}
	var ips []string
	for _, p := range g.pods {
		inNS := p.ns == np.Namespace
		if nsSel != nil {
			inNS = nsSel.Matches(g.nsLabels[p.ns])
		}
		if inNS && podSel.Matches(p.labels) {
			ips = append(ips, p.ip.String())
		}
	}
	if len(ips) == 0 {
		return "", nil
	}
	g.sets = append(g.sets, fmt.Sprintf("\tset %s {\n\t\ttype ipv4_addr\n\t\telements = { %s }\n\t}\n", setName, strings.Join(ips, ", ")))
	return fmt.Sprintf("ip %s @%s", dir, setName), nil
}

// ident makes a Kubernetes name usable as an nft identifier.
func ident(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

func validIdent(s string) bool { return s != "" && ident(s) == s }

// Apply loads script into the nftables of network namespace netns (a name
// under /run/netns; "" means the current namespace).
func Apply(ctx context.Context, netns, script string) error {
	cmd := nftCommand(ctx, netns, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f in netns %q: %v: %s", netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Remove deletes the table from the namespace; a missing table is not an
// error.
func Remove(ctx context.Context, netns, table string) error {
	if table == "" {
		table = DefaultTable
	}
	out, err := nftCommand(ctx, netns, "delete", "table", "ip", table).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("nft delete table %s in netns %q: %v: %s", table, netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func nftCommand(ctx context.Context, netns string, args ...string) *exec.Cmd {
	if netns == "" {
		return exec.CommandContext(ctx, "nft", args...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, "nft"}, args...)...)
}

// DemoSlot is the test bed slot the manifests under deploy/demo are written
// for: pods in 10.244.1.0/24, the node at 10.250.1.2.
const DemoSlot = 1

// Renumber rewrites manifests written for slot DemoSlot to the addresses of
// a test bed on another slot (10.244.1.x → 10.244.<slot>.x, 10.250.1.x →
// 10.250.<slot>.x). Service ClusterIPs (10.96.0.0/16) do not depend on the
// slot. The bed's pod i gets 10.244.<slot>.(10+i), so the demo's pods must be
// created in the order of deploy/demo/README.md.
func Renumber(manifests []byte, slot int) []byte {
	s := string(manifests)
	s = strings.ReplaceAll(s, "10.244.1.", fmt.Sprintf("10.244.%d.", slot))
	s = strings.ReplaceAll(s, "10.250.1.", fmt.Sprintf("10.250.%d.", slot))
	return []byte(s)
}
