package hubble

import (
	"strings"
	"sync"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"github.com/gopacket/gopacket/layers"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/internal/version"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Cilium's monitor message types, the values of flow.CiliumEventType.type
// (github.com/cilium/cilium/pkg/monitor/api, MessageType*). That package
// is not imported: it pulls in most of the Cilium agent.
const (
	msgTypeDrop          = 1
	msgTypeDebug         = 2
	msgTypeCapture       = 3
	msgTypeTrace         = 4
	msgTypePolicyVerdict = 5
	msgTypeTraceSock     = 7
	msgTypeAccessLog     = 129 // L7
	msgTypeAgent         = 130
)

// Trace sub-types, the values of flow.CiliumEventType.sub_type for trace
// events (pkg/monitor/api Trace*), for the observation points Trawl has.
const (
	traceToLxc       = 0  // "to-endpoint"
	traceFromLxc     = 5  // "from-endpoint"
	traceFromNetwork = 10 // "from-network"
	traceToNetwork   = 11 // "to-network"
)

// emitter names Trawl as the source of the flows it serves (read only,
// shared by every translated flow).
var emitter = &flowpb.Emitter{Name: "Trawl", Version: strings.TrimPrefix(version.Version, "v")}

// trawlToHubbleReason lists the drop reasons Hubble has an equal of. Trawl's
// drop_reason_desc is POLICY_DENIED when the NetworkPolicies explain a drop
// (Hubble's POLICY_DENIED: "Policy denied") and otherwise the kernel's
// skb_drop_reason name; of those only IPV6_BAD_EXTHDR means what a Cilium
// reason means. Every other kernel reason has no Hubble equal: the flow
// carries DROP_REASON_UNKNOWN and the kernel's name in its extensions and
// Summary, and metrics label it with the kernel's name.
var trawlToHubbleReason = map[string]flowpb.DropReason{
	"POLICY_DENIED":   flowpb.DropReason_POLICY_DENIED,
	"IPV6_BAD_EXTHDR": flowpb.DropReason_INVALID_IPV6_EXTENSION_HEADER,
}

// hubbleToTrawlReason is the inverse of trawlToHubbleReason.
var hubbleToTrawlReason = func() map[flowpb.DropReason]string {
	m := make(map[flowpb.DropReason]string, len(trawlToHubbleReason))
	for k, v := range trawlToHubbleReason {
		m[v] = k
	}
	return m
}()

// DropReason is Hubble's equal of a Trawl drop_reason_desc, or
// DROP_REASON_UNKNOWN when Hubble has none.
func DropReason(desc string) flowpb.DropReason { return trawlToHubbleReason[desc] }

// TrawlDropReason is the drop_reason_desc a Trawl record carries for a
// Hubble drop reason: its Trawl equal, else Hubble's own name (which no
// Trawl record carries).
func TrawlDropReason(r flowpb.DropReason) string {
	if s, ok := hubbleToTrawlReason[r]; ok {
		return s
	}
	return r.String()
}

// dropReasonLabel is the reason a drop is shown and counted under: Hubble's
// name where Hubble has an equal, the Trawl reason (kernel name) otherwise.
func dropReasonLabel(f *flowv1.Flow) string {
	desc := f.GetDropReasonDesc()
	if desc == "" {
		desc = f.GetDropReasonKernel()
	}
	if r, ok := trawlToHubbleReason[desc]; ok {
		return r.String()
	}
	if desc == "" {
		return flowpb.DropReason_DROP_REASON_UNKNOWN.String()
	}
	return desc
}

// tracePoint derives Hubble's trace observation point from the hook of the
// record (the suffix of observation_point) and its direction: the agent's
// tc/tcx programs on a pod's host-side veth see packets from the pod on the
// ingress hook (EGRESS of the pod) and to it on the egress hook (INGRESS),
// on a node interface the hook and the direction agree.
func tracePoint(f *flowv1.Flow) (flowpb.TraceObservationPoint, int32) {
	op := f.GetObservationPoint()
	ingressHook := strings.HasSuffix(op, "-ingress")
	egressHook := strings.HasSuffix(op, "-egress")
	switch dir := f.GetTrafficDirection(); {
	case ingressHook && dir == flowv1.TrafficDirection_EGRESS:
		return flowpb.TraceObservationPoint_FROM_ENDPOINT, traceFromLxc
	case egressHook && dir == flowv1.TrafficDirection_INGRESS:
		return flowpb.TraceObservationPoint_TO_ENDPOINT, traceToLxc
	case ingressHook && dir == flowv1.TrafficDirection_INGRESS:
		return flowpb.TraceObservationPoint_FROM_NETWORK, traceFromNetwork
	case egressHook && dir == flowv1.TrafficDirection_EGRESS:
		return flowpb.TraceObservationPoint_TO_NETWORK, traceToNetwork
	}
	return flowpb.TraceObservationPoint_UNKNOWN_POINT, traceToLxc
}

// traceSubtypeName is Hubble's name of a trace observation point (the
// subtype label of hubble_flows_processed_total), "" when unknown.
func traceSubtypeName(p flowpb.TraceObservationPoint) string {
	switch p {
	case flowpb.TraceObservationPoint_TO_ENDPOINT:
		return "to-endpoint"
	case flowpb.TraceObservationPoint_FROM_ENDPOINT:
		return "from-endpoint"
	case flowpb.TraceObservationPoint_FROM_NETWORK:
		return "from-network"
	case flowpb.TraceObservationPoint_TO_NETWORK:
		return "to-network"
	}
	return ""
}

// eventType is the Cilium event a record is shown as: Trawl's policy
// verdicts as policy-verdict events, every other DROPPED record (drop
// records, and new flows whose first packet was dropped) as a drop event
// with Hubble's reason code as sub-type, the rest (aggregates, new and
// close events) as trace events at their observation point.
func eventType(f *flowv1.Flow) (typ, subType int32, point flowpb.TraceObservationPoint) {
	switch {
	case f.GetEventKind() == flowv1.EventKind_POLICY_VERDICT:
		return msgTypePolicyVerdict, 0, flowpb.TraceObservationPoint_UNKNOWN_POINT
	case f.GetVerdict() == flowv1.Verdict_DROPPED:
		return msgTypeDrop, int32(DropReason(f.GetDropReasonDesc())), flowpb.TraceObservationPoint_UNKNOWN_POINT
	}
	p, st := tracePoint(f)
	return msgTypeTrace, st, p
}

// eventTypeName is the type label of hubble_flows_processed_total.
func eventTypeName(typ int32) string {
	switch typ {
	case msgTypeDrop:
		return "Drop"
	case msgTypeTrace:
		return "Trace"
	case msgTypePolicyVerdict:
		return "PolicyVerdict"
	case msgTypeCapture:
		return "Capture"
	case msgTypeAccessLog:
		return "L7"
	}
	return "Unknown"
}

// protocolName is Hubble's protocol label of a flow's L4 layer.
func protocolName(l4 *flowv1.Layer4) string {
	switch {
	case l4.GetTCP() != nil:
		return "TCP"
	case l4.GetUDP() != nil:
		return "UDP"
	case l4.GetICMPv4() != nil:
		return "ICMPv4"
	case l4.GetICMPv6() != nil:
		return "ICMPv6"
	case l4.GetSCTP() != nil:
		return "SCTP"
	}
	return "Unknown L4"
}

var icmpNames sync.Map // uint32 (v6<<16|type<<8|code) → string

// icmpTypeName is gopacket's name of an ICMP type and code, as Hubble
// labels hubble_icmp_total and summarises ICMP flows.
func icmpTypeName(v6 bool, typ, code uint32) string {
	k := typ&0xff<<8 | code&0xff
	if v6 {
		k |= 1 << 16
	}
	if s, ok := icmpNames.Load(k); ok {
		return s.(string)
	}
	var s string
	if v6 {
		s = layers.CreateICMPv6TypeCode(uint8(typ), uint8(code)).String()
	} else {
		s = layers.CreateICMPv4TypeCode(uint8(typ), uint8(code)).String()
	}
	icmpNames.Store(k, s)
	return s
}

// summary is the flow's one-line description, as Cilium's parser fills the
// (deprecated, still printed by `hubble observe`) Summary field; for drops
// Hubble has no reason for it starts with the kernel's reason.
func summary(f *flowv1.Flow, reason flowpb.DropReason) string {
	var s string
	l4 := f.GetL4()
	switch {
	case l4.GetTCP() != nil:
		s = "TCP Flags: " + tcpFlagsString(l4.GetTCP().GetFlags())
	case l4.GetUDP() != nil:
		s = "UDP"
	case l4.GetSCTP() != nil:
		s = "SCTP"
	case l4.GetICMPv4() != nil:
		s = "ICMPv4 " + icmpTypeName(false, l4.GetICMPv4().GetType(), l4.GetICMPv4().GetCode())
	case l4.GetICMPv6() != nil:
		s = "ICMPv6 " + icmpTypeName(true, l4.GetICMPv6().GetType(), l4.GetICMPv6().GetCode())
	}
	if f.GetVerdict() == flowv1.Verdict_DROPPED && reason == flowpb.DropReason_DROP_REASON_UNKNOWN {
		if k := f.GetDropReasonKernel(); k != "" {
			if s == "" {
				return "kernel drop reason " + k
			}
			return "kernel drop reason " + k + "; " + s
		}
	}
	return s
}

func tcpFlagsString(fl *flowv1.TCPFlags) string {
	if fl == nil {
		return ""
	}
	var b [40]byte
	out := b[:0]
	add := func(on bool, name string) {
		if !on {
			return
		}
		if len(out) > 0 {
			out = append(out, ", "...)
		}
		out = append(out, name...)
	}
	add(fl.SYN, "SYN")
	add(fl.ACK, "ACK")
	add(fl.RST, "RST")
	add(fl.FIN, "FIN")
	add(fl.PSH, "PSH")
	add(fl.URG, "URG")
	add(fl.ECE, "ECE")
	add(fl.CWR, "CWR")
	add(fl.NS, "NS")
	return string(out)
}

// ToHubble translates one record of Trawl's GetFlows stream to Hubble's.
// Records Hubble has no kind for (conntrack samples) give nil.
func ToHubble(r *observerv1.GetFlowsResponse) *observerpb.GetFlowsResponse {
	switch x := r.GetResponseTypes().(type) {
	case *observerv1.GetFlowsResponse_Flow:
		return &observerpb.GetFlowsResponse{
			ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: Flow(x.Flow)},
			NodeName:      nodeOf(r.GetNodeName(), x.Flow.GetNodeName()),
			Time:          timeOf(r, x.Flow.GetTime()),
		}
	case *observerv1.GetFlowsResponse_LostEvents:
		return &observerpb.GetFlowsResponse{
			ResponseTypes: &observerpb.GetFlowsResponse_LostEvents{LostEvents: LostEvent(x.LostEvents)},
			NodeName:      nodeOf(r.GetNodeName(), x.LostEvents.GetNodeName()),
			Time:          timeOf(r, x.LostEvents.GetTime()),
		}
	case *observerv1.GetFlowsResponse_NodeStatus:
		s := x.NodeStatus
		return &observerpb.GetFlowsResponse{
			ResponseTypes: &observerpb.GetFlowsResponse_NodeStatus{NodeStatus: &relaypb.NodeStatusEvent{
				StateChange: NodeState(s.GetState()), NodeNames: []string{s.GetNodeName()}, Message: s.GetMessage(),
			}},
			NodeName: nodeOf(r.GetNodeName(), s.GetNodeName()),
			Time:     r.GetTime(),
		}
	}
	return nil
}

func nodeOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func timeOf(r *observerv1.GetFlowsResponse, t *timestamppb.Timestamp) *timestamppb.Timestamp {
	if r.GetTime() != nil {
		return r.GetTime()
	}
	return t
}

// NodeState maps Trawl's node states to Hubble relay's (same meanings).
func NodeState(s flowv1.NodeState) relaypb.NodeState {
	switch s {
	case flowv1.NodeState_NODE_CONNECTED:
		return relaypb.NodeState_NODE_CONNECTED
	case flowv1.NodeState_NODE_UNAVAILABLE:
		return relaypb.NodeState_NODE_UNAVAILABLE
	case flowv1.NodeState_NODE_GONE:
		return relaypb.NodeState_NODE_GONE
	case flowv1.NodeState_NODE_ERROR:
		return relaypb.NodeState_NODE_ERROR
	}
	return relaypb.NodeState_UNKNOWN_NODE_STATE
}

// LostEventSource maps Trawl's causes of lost records to Hubble's: the
// agent's ring buffer reserve failures are Hubble's perf ring buffer
// losses, a slow follower's are the observer queue's, and the agent's
// overflowing send buffer is Hubble's ring buffer overwriting unread
// events. Trawl's other causes (rate limit, full map, rejected batch,
// malformed packets) have no Hubble source.
func LostEventSource(s flowv1.LostEventSource) flowpb.LostEventSource {
	switch s {
	case flowv1.LostEventSource_RINGBUF_RESERVE_FAILED:
		return flowpb.LostEventSource_PERF_EVENT_RING_BUFFER
	case flowv1.LostEventSource_OBSERVER_EVENTS_QUEUE:
		return flowpb.LostEventSource_OBSERVER_EVENTS_QUEUE
	case flowv1.LostEventSource_AGENT_BUFFER_OVERFLOW:
		return flowpb.LostEventSource_HUBBLE_RING_BUFFER
	}
	return flowpb.LostEventSource_UNKNOWN_LOST_EVENT_SOURCE
}

// LostEvent translates a lost-events record; its time is both the first
// and the last loss (Trawl reports losses per interval).
func LostEvent(l *flowv1.LostEvent) *flowpb.LostEvent {
	out := &flowpb.LostEvent{
		Source:        LostEventSource(l.GetSource()),
		NumEventsLost: l.GetNumEventsLost(),
		First:         l.GetTime(),
		Last:          l.GetTime(),
	}
	if c := l.GetCpu(); c != nil {
		out.Cpu = wrapperspb.Int32(c.GetValue())
	}
	return out
}

// Flow translates a Trawl flow record to Hubble's flow.Flow. The result
// shares read-only parts (timestamps, label slices) with f.
func Flow(f *flowv1.Flow) *flowpb.Flow {
	typ, sub, point := eventType(f)
	out := &flowpb.Flow{
		Time:                  f.GetTime(),
		Uuid:                  f.GetUuid(),
		Emitter:               emitter,
		Verdict:               flowpb.Verdict(f.GetVerdict()),
		Type:                  flowpb.FlowType(f.GetType()),
		NodeName:              f.GetNodeName(),
		SourceNames:           f.GetSourceNames(),
		DestinationNames:      f.GetDestinationNames(),
		TrafficDirection:      flowpb.TrafficDirection(f.GetTrafficDirection()),
		EventType:             &flowpb.CiliumEventType{Type: typ, SubType: sub},
		TraceObservationPoint: point,
		Source:                endpoint(f.GetSource()),
		Destination:           endpoint(f.GetDestination()),
		SourceService:         service(f.GetSourceService()),
		DestinationService:    service(f.GetDestinationService()),
		EgressAllowedBy:       policies(f.GetEgressAllowedBy()),
		IngressAllowedBy:      policies(f.GetIngressAllowedBy()),
		EgressDeniedBy:        policies(f.GetEgressDeniedBy()),
		IngressDeniedBy:       policies(f.GetIngressDeniedBy()),
	}
	var reason flowpb.DropReason
	if f.GetVerdict() == flowv1.Verdict_DROPPED {
		reason = DropReason(f.GetDropReasonDesc())
		out.DropReasonDesc = reason
		out.DropReason = uint32(reason) //nolint:staticcheck // deprecated, still read by older clients
	}
	if r := f.GetIsReply(); r != nil {
		out.IsReply = wrapperspb.Bool(r.GetValue())
		out.Reply = r.GetValue() //nolint:staticcheck // deprecated, still read by older clients
	}
	if e := f.GetEthernet(); e != nil {
		out.Ethernet = &flowpb.Ethernet{Source: e.GetSource(), Destination: e.GetDestination()}
	}
	if ip := f.GetIP(); ip != nil {
		out.IP = &flowpb.IP{Source: ip.GetSource(), Destination: ip.GetDestination(), IpVersion: flowpb.IPVersion(ip.GetIpVersion()), Encrypted: ip.GetEncrypted()}
	}
	out.L4 = layer4(f.GetL4())
	if i := f.GetInterface(); i != nil {
		out.Interface = &flowpb.NetworkInterface{Index: i.GetIndex(), Name: i.GetName()}
	}
	out.Summary = summary(f, reason) //nolint:staticcheck // deprecated, still printed by `hubble observe`
	out.Extensions = extensions(f)
	return out
}

func layer4(l4 *flowv1.Layer4) *flowpb.Layer4 {
	switch p := l4.GetProtocol().(type) {
	case *flowv1.Layer4_TCP:
		t := &flowpb.TCP{SourcePort: p.TCP.GetSourcePort(), DestinationPort: p.TCP.GetDestinationPort()}
		if fl := p.TCP.GetFlags(); fl != nil {
			t.Flags = &flowpb.TCPFlags{FIN: fl.FIN, SYN: fl.SYN, RST: fl.RST, PSH: fl.PSH, ACK: fl.ACK, URG: fl.URG, ECE: fl.ECE, CWR: fl.CWR, NS: fl.NS}
		}
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: t}}
	case *flowv1.Layer4_UDP:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{SourcePort: p.UDP.GetSourcePort(), DestinationPort: p.UDP.GetDestinationPort()}}}
	case *flowv1.Layer4_SCTP:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_SCTP{SCTP: &flowpb.SCTP{SourcePort: p.SCTP.GetSourcePort(), DestinationPort: p.SCTP.GetDestinationPort()}}}
	case *flowv1.Layer4_ICMPv4:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{Type: p.ICMPv4.GetType(), Code: p.ICMPv4.GetCode()}}}
	case *flowv1.Layer4_ICMPv6:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv6{ICMPv6: &flowpb.ICMPv6{Type: p.ICMPv6.GetType(), Code: p.ICMPv6.GetCode()}}}
	}
	return nil
}

func endpoint(e *flowv1.Endpoint) *flowpb.Endpoint {
	if e == nil {
		return nil
	}
	out := &flowpb.Endpoint{
		ID: e.GetID(), Identity: e.GetIdentity(), ClusterName: e.GetClusterName(),
		Namespace: e.GetNamespace(), Labels: e.GetLabels(), PodName: e.GetPodName(),
	}
	if ws := e.GetWorkloads(); len(ws) > 0 {
		out.Workloads = make([]*flowpb.Workload, len(ws))
		for i, w := range ws {
			out.Workloads[i] = &flowpb.Workload{Name: w.GetName(), Kind: w.GetKind()}
		}
	}
	return out
}

func service(s *flowv1.Service) *flowpb.Service {
	if s == nil {
		return nil
	}
	return &flowpb.Service{Name: s.GetName(), Namespace: s.GetNamespace()}
}

func policies(ps []*flowv1.Policy) []*flowpb.Policy {
	if len(ps) == 0 {
		return nil
	}
	out := make([]*flowpb.Policy, len(ps))
	for i, p := range ps {
		out[i] = &flowpb.Policy{Name: p.GetName(), Namespace: p.GetNamespace(), Labels: p.GetLabels(), Revision: p.GetRevision(), Kind: p.GetKind()}
	}
	return out
}

// extensions carries what Trawl knows and Hubble's flow has no field for
// (the record kind, packet and byte totals, the aggregation window, the
// kernel's drop reason, ...) as a google.protobuf.Struct in the flow's
// extensions: every Hubble client can decode that well-known type.
func extensions(f *flowv1.Flow) *anypb.Any {
	b := appendExtensions(nil, f)
	if len(b) == 0 {
		return nil
	}
	return &anypb.Any{TypeUrl: structTypeURL, Value: b}
}
