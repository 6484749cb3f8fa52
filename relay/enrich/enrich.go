// Package enrich adds Kubernetes meaning to flows in the relay: who the
// source and destination are (pod, namespace, labels, workload, node), which
// service a ClusterIP:port is, and which NetworkPolicies allowed or denied
// the connection. It runs once, centrally, per relay replica.
package enrich

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/kube"
	"github.com/trawl-dev/trawl/internal/policy"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Config chooses the metadata source. With none set, New returns an
// Enricher that leaves flows as they are (no Kubernetes, no guesses).
type Config struct {
	// Manifests is a YAML file or directory of Kubernetes objects, reloaded
	// on change.
	Manifests string
	// Kubeconfig is a kubeconfig file for client-go informers.
	Kubeconfig string
	// InCluster uses the pod's service account.
	InCluster bool
	Log       *slog.Logger
}

// Drop reason names (see the flow contract).
const (
	ReasonNetfilterDrop = "NETFILTER_DROP"
	ReasonPolicyDenied  = "POLICY_DENIED"
)

// Enricher fills flows from the current Kubernetes view. Safe for
// concurrent use. The Endpoint, Service and Policy messages it attaches are
// shared between flows: treat them as read only.
type Enricher struct {
	store *kube.Store
}

// New opens the configured source and waits for its initial state.
// Background work stops when ctx ends.
func New(ctx context.Context, cfg Config) (*Enricher, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := kube.Open(ctx, kube.Config{Manifests: cfg.Manifests, Kubeconfig: cfg.Kubeconfig, InCluster: cfg.InCluster, Log: log})
	if errors.Is(err, kube.ErrNoSource) {
		log.Info("no Kubernetes metadata source: flows are not enriched")
		return &Enricher{}, nil
	}
	if err != nil {
		return nil, err
	}
	return &Enricher{store: s}, nil
}

// NewFromStore enriches from an existing store (tests, the CLI).
func NewFromStore(s *kube.Store) *Enricher { return &Enricher{store: s} }

// Store is the metadata store, nil when enrichment is off.
func (e *Enricher) Store() *kube.Store { return e.store }

func parseIP(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// parseIPv4 reads a dotted quad into a big-endian integer; anything else
// (IPv6, mapped forms, junk) returns false for the general parser to judge.
func parseIPv4(s string) (uint32, bool) {
	var ip, part uint32
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && part == 0 {
				return 0, false // leading zero
			}
			part = part*10 + uint32(c-'0')
			digits++
			if part > 255 || digits > 3 {
				return 0, false
			}
		case c == '.':
			if digits == 0 || dots == 3 {
				return 0, false
			}
			ip, part, digits = ip<<8|part, 0, 0
			dots++
		default:
			return 0, false
		}
	}
	if digits == 0 || dots != 3 {
		return 0, false
	}
	return ip<<8 | part, true
}

func be4(ip uint32) [4]byte { return [4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)} }

func flowTime(f *flowv1.Flow) time.Time {
	if f.Time != nil {
		return f.Time.AsTime()
	}
	return time.Now()
}

func l4(f *flowv1.Flow) (port uint16, proto policy.Protocol) {
	switch p := f.GetL4().GetProtocol().(type) {
	case *flowv1.Layer4_TCP:
		return uint16(p.TCP.GetDestinationPort()), policy.ProtoTCP
	case *flowv1.Layer4_UDP:
		return uint16(p.UDP.GetDestinationPort()), policy.ProtoUDP
	case *flowv1.Layer4_SCTP:
		return uint16(p.SCTP.GetDestinationPort()), policy.ProtoSCTP
	}
	return 0, policy.ProtoOther
}

// DropFields completes the drop fields of a DROPPED record as the flow
// contract wants them, whatever sent it: drop_reason_desc is the kernel's
// reason unless the policies explained the drop (POLICY_DENIED), and
// drop_class is the class of the reason (internal/dropclass) — policy for a
// POLICY_DENIED record, the table's class when the agent sent none (agents
// before drop classes), the canonical name when it sent one spelt otherwise.
// Records that are not drops are left alone. Enrich calls it; the ingest
// path calls it for every record, with or without enrichment.
func DropFields(f *flowv1.Flow) {
	if f.Verdict != flowv1.Verdict_DROPPED {
		return
	}
	if f.DropReasonDesc == "" {
		f.DropReasonDesc = f.DropReasonKernel
	}
	if f.DropReasonDesc == ReasonPolicyDenied {
		f.DropClass = string(dropclass.Policy)
		return
	}
	for _, c := range dropclass.All {
		if f.DropClass == string(c) {
			return // the usual case: the agent's class, canonical
		}
	}
	// An agent before drop classes sends none: nothing to parse (Parse
	// builds its error message, a cost per drop record).
	if f.DropClass != "" {
		if c, err := dropclass.Parse(f.DropClass); err == nil {
			f.DropClass = string(c)
			return
		}
	}
	reason := f.DropReasonKernel
	if reason == "" {
		reason = f.DropReasonDesc
	}
	f.DropClass = string(dropclass.Of(reason))
}

// Enrich fills f.Source, f.Destination, f.DestinationService, the policy
// verdict fields and the drop fields (DropFields).
//
// Endpoints: the view names pods, nodes and services; an address it does
// not know is reserved:world only when it can be outside the cluster, and
// never replaces an endpoint the agent labelled reserved:host (the node's
// own namespace; see endpointOf).
//
// Policy attribution (only for flows in the connection's original direction,
// not replies): a FORWARDED flow gets ingress_allowed_by / egress_allowed_by
// from the policies that allowed it. A DROPPED flow whose kernel reason is
// NETFILTER_DROP and that the policies deny becomes drop_reason_desc
// POLICY_DENIED (class policy) with ingress_denied_by / egress_denied_by;
// one the policies allow keeps its kernel reason and blames no policy.
func (e *Enricher) Enrich(f *flowv1.Flow) {
	DropFields(f)
	if e.store == nil || f.GetIP() == nil {
		return
	}
	v := e.store.View()
	t := flowTime(f)
	port, proto := l4(f)
	var srcIP, dstIP netip.Addr
	var src, dst *kube.Endpoint
	s4, okS := parseIPv4(f.IP.Source)
	d4, okD := parseIPv4(f.IP.Destination)
	if okS && okD {
		// The fast path: integer keys, no netip parsing.
		srcIP, dstIP = netip.AddrFrom4(be4(s4)), netip.AddrFrom4(be4(d4))
		src, dst = v.LookupV4(s4, t), v.LookupV4(d4, t)
		if proto != policy.ProtoOther {
			if svc := v.ServiceV4(d4, port, proto); svc != nil {
				f.DestinationService = svc
			}
		}
	} else {
		if srcIP, okS = parseIP(f.IP.Source); !okS {
			return
		}
		if dstIP, okD = parseIP(f.IP.Destination); !okD {
			return
		}
		src, dst = v.Lookup(srcIP, t), v.Lookup(dstIP, t)
		if proto != policy.ProtoOther {
			if svc := v.Service(dstIP, port, proto); svc != nil {
				f.DestinationService = svc
			}
		}
	}
	f.Source = endpointOf(src, f.Source, srcIP, f.NodeName)
	f.Destination = endpointOf(dst, f.Destination, dstIP, f.NodeName)
	if f.GetIsReply().GetValue() {
		return // policies judge connections by their first direction
	}
	switch f.Verdict {
	case flowv1.Verdict_FORWARDED:
		if src.Pod == nil && dst.Pod == nil {
			return
		}
		vd := verdict(v.Engine(), src, dst, srcIP, dstIP, port, proto)
		// A forwarded flow that the policies would deny is most likely a
		// reply the agent could not mark; never attach a contradiction.
		if vd.Allowed() {
			f.IngressAllowedBy = vd.Ingress.AllowedBy
			f.EgressAllowedBy = vd.Egress.AllowedBy
		}
	case flowv1.Verdict_DROPPED:
		if f.DropReasonKernel != ReasonNetfilterDrop || (src.Pod == nil && dst.Pod == nil) {
			return
		}
		vd := verdict(v.Engine(), src, dst, srcIP, dstIP, port, proto)
		if vd.Allowed() {
			return // the policies do not explain this drop: keep the kernel's reason
		}
		f.DropReasonDesc = ReasonPolicyDenied
		f.DropClass = string(dropclass.Policy)
		if !vd.Ingress.Allowed {
			f.IngressDeniedBy = vd.Ingress.DeniedBy
		}
		if !vd.Egress.Allowed {
			f.EgressDeniedBy = vd.Egress.DeniedBy
		}
	}
}

// endpointOf is the endpoint to attach for an address the view resolved to
// ep, where the agent sent agent (nil when it sent none) on node.
//
//   - An endpoint the agent labelled reserved:host (identity 1: the node's
//     own network namespace, as in Hubble) stays the host unless the view
//     names the address more precisely: a pod, or this node with its labels.
//     In particular it is never relabelled reserved:world.
//   - An address the view does not know is reserved:world (identity 2) only
//     if it can be outside the cluster: loopback, link-local and unspecified
//     addresses never leave the node, so they keep what the agent sent (or
//     stay without an endpoint) rather than being called the world.
func endpointOf(ep *kube.Endpoint, agent *flowv1.Endpoint, ip netip.Addr, node string) *flowv1.Endpoint {
	if isHost(agent) {
		if ep.Kind == kube.KindPod || ep.Kind == kube.KindNode && ep.Node == node {
			return ep.Proto(node)
		}
		return agent
	}
	if ep.Kind == kube.KindWorld && !canBeOutside(ip) {
		return agent
	}
	return ep.Proto(node)
}

func isHost(ep *flowv1.Endpoint) bool {
	if ep == nil {
		return false
	}
	if ep.Identity == kube.IdentityHost {
		return true
	}
	for _, l := range ep.Labels {
		if l == "reserved:host" {
			return true
		}
	}
	return false
}

// canBeOutside tells whether an address may belong to something outside
// the cluster.
func canBeOutside(ip netip.Addr) bool {
	return !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() && !ip.IsInterfaceLocalMulticast() && !ip.IsLinkLocalMulticast()
}

// verdict takes the integer path when both ends are pods of the current
// engine (or no pods at all), the general one for pods that have gone.
func verdict(eng *policy.Engine, src, dst *kube.Endpoint, srcIP, dstIP netip.Addr, port uint16, proto policy.Protocol) *policy.Verdict {
	si, di := src.Index(eng), dst.Index(eng)
	if (si >= 0 || src.Pod == nil) && (di >= 0 || dst.Pod == nil) {
		return eng.EvaluateIndex(si, di, srcIP, dstIP, port, proto)
	}
	return eng.Evaluate(policy.Endpoint{Pod: src.Pod, IP: srcIP}, policy.Endpoint{Pod: dst.Pod, IP: dstIP}, port, proto)
}

// EnrichConntrack names the endpoints of the sample's top creators.
func (e *Enricher) EnrichConntrack(s *flowv1.ConntrackSample) {
	if e.store == nil {
		return
	}
	v := e.store.View()
	t := time.Now()
	if s.Time != nil {
		t = s.Time.AsTime()
	}
	for _, c := range s.TopCreators {
		if ip, ok := parseIP(c.Ip); ok {
			c.Endpoint = v.Lookup(ip, t).Proto(s.NodeName)
		}
	}
}

// PolicyDrops calls fn for every policy a flow's drop is attributed to, with
// the flow's packet count: the relay's trawl_relay_policy_drops_total
// {namespace,policy} is fed from it after Enrich.
func PolicyDrops(f *flowv1.Flow, fn func(namespace, policy string, packets uint64)) {
	if f.DropReasonDesc != ReasonPolicyDenied {
		return
	}
	n := f.Packets
	if n == 0 {
		n = 1
	}
	for _, p := range f.IngressDeniedBy {
		fn(p.Namespace, p.Name, n)
	}
	for _, p := range f.EgressDeniedBy {
		fn(p.Namespace, p.Name, n)
	}
}

// PolicyVerdicts implements the relay's PolicyVerdicter with
// PolicyVerdictRecords.
func (e *Enricher) PolicyVerdicts(f *flowv1.Flow) []*flowv1.Flow { return PolicyVerdictRecords(f) }

// PolicyVerdictRecords derives the policy-verdict events of an enriched
// flow (never of an L7 record), like Hubble's PolicyVerdict events: for the first packet of a
// connection (FLOW_NEW) that policies allowed, and for a drop the policies
// explain (POLICY_DENIED), one record per side that decided — EGRESS for
// the source pod's egress policies, INGRESS for the destination's ingress
// policies — carrying that side's policies, with event kind POLICY_VERDICT,
// which `observe --type policy-verdict` selects. A record's uuid is derived
// from the flow's and the side, so a resend derives the same ones; like
// every instant event they are never added to byte or packet totals.
func PolicyVerdictRecords(f *flowv1.Flow) []*flowv1.Flow {
	var egress, ingress []*flowv1.Policy
	switch {
	case f.EventKind == flowv1.EventKind_L7_EVENT:
		return nil // a DNS message's packet is in its flow's records, which carry the verdict
	case f.EventKind == flowv1.EventKind_FLOW_NEW && f.Verdict == flowv1.Verdict_FORWARDED:
		egress, ingress = f.EgressAllowedBy, f.IngressAllowedBy
	case f.Verdict == flowv1.Verdict_DROPPED && f.DropReasonDesc == ReasonPolicyDenied:
		egress, ingress = f.EgressDeniedBy, f.IngressDeniedBy
	default:
		return nil
	}
	var out []*flowv1.Flow
	side := func(dir flowv1.TrafficDirection) {
		pv := proto.Clone(f).(*flowv1.Flow)
		pv.EventKind = flowv1.EventKind_POLICY_VERDICT
		pv.TrafficDirection = dir
		if dir == flowv1.TrafficDirection_EGRESS {
			pv.IngressAllowedBy, pv.IngressDeniedBy = nil, nil
		} else {
			pv.EgressAllowedBy, pv.EgressDeniedBy = nil, nil
		}
		if f.Uuid != "" {
			pv.Uuid = flowid.PolicyVerdict(f.Uuid, dir.String())
		}
		out = append(out, pv)
	}
	if len(egress) > 0 {
		side(flowv1.TrafficDirection_EGRESS)
	}
	if len(ingress) > 0 {
		side(flowv1.TrafficDirection_INGRESS)
	}
	return out
}
