package hubble

import (
	"strconv"
	"strings"
	"sync"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"github.com/gopacket/gopacket/layers"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/internal/l4"
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

// eventType is the Cilium event a record is shown as: L7 (DNS) records as
// Hubble's L7 events (type 129, the proxy's access log: Hubble has no other
// source of them), whatever their verdict; Trawl's policy
// verdicts as policy-verdict events, every other DROPPED record (drop
// records, and new flows whose first packet was dropped) as a drop event
// with Hubble's reason code as sub-type, the rest (aggregates, new and
// close events) as trace events at their observation point.
func eventType(f *flowv1.Flow) (typ, subType int32, point flowpb.TraceObservationPoint) {
	switch {
	case f.GetEventKind() == flowv1.EventKind_L7_EVENT || f.GetEventKind() == flowv1.EventKind_EVENT_KIND_UNSPECIFIED && f.GetL7() != nil:
		return msgTypeAccessLog, 0, flowpb.TraceObservationPoint_UNKNOWN_POINT
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
	if d := f.GetL7().GetDns(); d != nil {
		return dnsSummary(f.GetL7().GetType(), d)
	}
	var s string
	layer := f.GetL4()
	switch {
	case layer.GetTCP() != nil:
		s = tcpSummaries[l4.FlagBits(layer.GetTCP().GetFlags())]
	case layer.GetUDP() != nil:
		s = "UDP"
	case layer.GetSCTP() != nil:
		s = "SCTP"
	case layer.GetICMPv4() != nil:
		s = "ICMPv4 " + icmpTypeName(false, layer.GetICMPv4().GetType(), layer.GetICMPv4().GetCode())
	case layer.GetICMPv6() != nil:
		s = "ICMPv6 " + icmpTypeName(true, layer.GetICMPv6().GetType(), layer.GetICMPv6().GetCode())
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

// dnsSummary describes a DNS record as Cilium's L7 parser does: "DNS Query
// example.com. A" for a query; for a response "DNS Answer "1.2.3.4"
// CNAMEs: "a.example." TTL: 300 (Query example.com. A)", or "RCode:
// Non-Existent Domain" instead of the answer when it is an error. The
// source word is "Proxy" for Hubble's DNS proxy and "Query" for any other
// observation source, which is what Trawl's records are.
func dnsSummary(t flowv1.L7FlowType, d *flowv1.DNS) string {
	qtypes := strings.Join(d.GetQtypes(), ",")
	switch t {
	case flowv1.L7FlowType_REQUEST:
		return "DNS Query " + d.GetQuery() + " " + qtypes
	case flowv1.L7FlowType_RESPONSE:
		var answer string
		if rc := d.GetRcode(); rc != 0 {
			answer = "RCode: " + layers.DNSResponseCode(rc).String()
		} else {
			var parts []string
			if len(d.GetIps()) > 0 {
				parts = append(parts, strconv.Quote(strings.Join(d.GetIps(), ",")))
			}
			if len(d.GetCnames()) > 0 {
				parts = append(parts, "CNAMEs: "+strconv.Quote(strings.Join(d.GetCnames(), ",")))
			}
			answer = strings.Join(parts, " ")
		}
		source := "Query"
		if d.GetObservationSource() == "proxy" {
			source = "Proxy"
		}
		return "DNS Answer " + answer + " TTL: " + strconv.FormatUint(uint64(d.GetTtl()), 10) + " (" + source + " " + d.GetQuery() + " " + qtypes + ")"
	}
	return ""
}

// tcpFlagNames are the flags in the order Cilium's summary lists them.
var tcpFlagNames = [9]struct {
	name string
	bit  uint16
}{{"SYN", l4.SYN}, {"ACK", l4.ACK}, {"RST", l4.RST}, {"FIN", l4.FIN}, {"PSH", l4.PSH}, {"URG", l4.URG}, {"ECE", l4.ECE}, {"CWR", l4.CWR}, {"NS", l4.NS}}

// tcpSummaries is the summary of a TCP flow for each set of flags (indexed
// by l4.FlagBits).
var tcpSummaries = func() (out [1 << 9]string) {
	for bits := range out {
		var names []string
		for _, f := range tcpFlagNames {
			if uint16(bits)&f.bit != 0 {
				names = append(names, f.name)
			}
		}
		out[bits] = "TCP Flags: " + strings.Join(names, ", ")
	}
	return out
}()

// ToHubble translates one record of Trawl's GetFlows stream to Hubble's.
// Records Hubble has no kind for (conntrack samples) give nil.
func ToHubble(r *observerv1.GetFlowsResponse) *observerpb.GetFlowsResponse {
	switch x := r.GetResponseTypes().(type) {
	case *observerv1.GetFlowsResponse_Flow:
		p := new(flowParts)
		p.respFlow.Flow = flowInto(p, x.Flow)
		p.resp.ResponseTypes = &p.respFlow
		p.resp.NodeName = nodeOf(r.GetNodeName(), x.Flow.GetNodeName())
		p.resp.Time = timeOf(r, x.Flow.GetTime())
		return &p.resp
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

// flowParts holds a translated flow and the messages it points to, so a
// translation allocates once for all of them (the GC keeps the whole block
// while any part is referenced).
type flowParts struct {
	resp      observerpb.GetFlowsResponse
	respFlow  observerpb.GetFlowsResponse_Flow
	flow      flowpb.Flow
	eventType flowpb.CiliumEventType
	ip        flowpb.IP
	l4        flowpb.Layer4
	tcp       flowpb.TCP
	l4tcp     flowpb.Layer4_TCP
	tcpFlags  flowpb.TCPFlags
	udp       flowpb.UDP
	l4udp     flowpb.Layer4_UDP
	src, dst  flowpb.Endpoint
	iface     flowpb.NetworkInterface
	reply     wrapperspb.BoolValue
	ext       anypb.Any
	l7        flowpb.Layer7
	l7dns     flowpb.Layer7_Dns
	dns       flowpb.DNS
}

// Flow translates a Trawl flow record to Hubble's flow.Flow. The result
// shares read-only parts (timestamps, label slices, the emitter) with f
// and other flows: do not modify it in place.
func Flow(f *flowv1.Flow) *flowpb.Flow { return flowInto(new(flowParts), f) }

func flowInto(p *flowParts, f *flowv1.Flow) *flowpb.Flow {
	typ, sub, point := eventType(f)
	out := &p.flow
	out.Time = f.GetTime()
	out.Uuid = f.GetUuid()
	out.Emitter = emitter
	out.Verdict = flowpb.Verdict(f.GetVerdict())
	out.Type = flowpb.FlowType(f.GetType())
	out.NodeName = f.GetNodeName()
	out.SourceNames = f.GetSourceNames()
	out.DestinationNames = f.GetDestinationNames()
	out.TrafficDirection = flowpb.TrafficDirection(f.GetTrafficDirection())
	p.eventType.Type, p.eventType.SubType = typ, sub
	out.EventType = &p.eventType
	out.TraceObservationPoint = point
	out.Source = endpointInto(&p.src, f.GetSource())
	out.Destination = endpointInto(&p.dst, f.GetDestination())
	out.SourceService = service(f.GetSourceService())
	out.DestinationService = service(f.GetDestinationService())
	out.EgressAllowedBy = policies(f.GetEgressAllowedBy())
	out.IngressAllowedBy = policies(f.GetIngressAllowedBy())
	out.EgressDeniedBy = policies(f.GetEgressDeniedBy())
	out.IngressDeniedBy = policies(f.GetIngressDeniedBy())
	var reason flowpb.DropReason
	if f.GetVerdict() == flowv1.Verdict_DROPPED {
		reason = DropReason(f.GetDropReasonDesc())
		out.DropReasonDesc = reason
		//lint:ignore SA1019 deprecated, still read by older clients
		out.DropReason = uint32(reason)
	}
	if r := f.GetIsReply(); r != nil {
		p.reply.Value = r.GetValue()
		out.IsReply = &p.reply
		//lint:ignore SA1019 deprecated, still read by older clients
		out.Reply = r.GetValue()
	}
	if e := f.GetEthernet(); e != nil {
		out.Ethernet = &flowpb.Ethernet{Source: e.GetSource(), Destination: e.GetDestination()}
	}
	if ip := f.GetIP(); ip != nil {
		p.ip.Source, p.ip.Destination = ip.GetSource(), ip.GetDestination()
		p.ip.IpVersion, p.ip.Encrypted = flowpb.IPVersion(ip.GetIpVersion()), ip.GetEncrypted()
		out.IP = &p.ip
	}
	out.L4 = layer4(p, f.GetL4())
	if l7 := f.GetL7(); l7 != nil {
		p.l7.Type, p.l7.LatencyNs = flowpb.L7FlowType(l7.GetType()), l7.GetLatencyNs()
		if d := l7.GetDns(); d != nil {
			p.dns = flowpb.DNS{Query: d.GetQuery(), Ips: d.GetIps(), Ttl: d.GetTtl(), Cnames: d.GetCnames(),
				ObservationSource: d.GetObservationSource(), Rcode: d.GetRcode(), Qtypes: d.GetQtypes(), Rrtypes: d.GetRrtypes()}
			p.l7dns.Dns = &p.dns
			p.l7.Record = &p.l7dns
		}
		out.L7 = &p.l7
	}
	if i := f.GetInterface(); i != nil {
		p.iface.Index, p.iface.Name = i.GetIndex(), i.GetName()
		out.Interface = &p.iface
	}
	//lint:ignore SA1019 deprecated, still printed by `hubble observe`
	out.Summary = summary(f, reason)
	if b := appendExtensions(nil, f); len(b) > 0 {
		p.ext.TypeUrl, p.ext.Value = structTypeURL, b
		out.Extensions = &p.ext
	}
	return out
}

func layer4(p *flowParts, l4 *flowv1.Layer4) *flowpb.Layer4 {
	switch x := l4.GetProtocol().(type) {
	case *flowv1.Layer4_TCP:
		p.tcp.SourcePort, p.tcp.DestinationPort = x.TCP.GetSourcePort(), x.TCP.GetDestinationPort()
		if fl := x.TCP.GetFlags(); fl != nil {
			p.tcpFlags = flowpb.TCPFlags{FIN: fl.FIN, SYN: fl.SYN, RST: fl.RST, PSH: fl.PSH, ACK: fl.ACK, URG: fl.URG, ECE: fl.ECE, CWR: fl.CWR, NS: fl.NS}
			p.tcp.Flags = &p.tcpFlags
		}
		p.l4tcp.TCP = &p.tcp
		p.l4.Protocol = &p.l4tcp
		return &p.l4
	case *flowv1.Layer4_UDP:
		p.udp.SourcePort, p.udp.DestinationPort = x.UDP.GetSourcePort(), x.UDP.GetDestinationPort()
		p.l4udp.UDP = &p.udp
		p.l4.Protocol = &p.l4udp
		return &p.l4
	case *flowv1.Layer4_SCTP:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_SCTP{SCTP: &flowpb.SCTP{SourcePort: x.SCTP.GetSourcePort(), DestinationPort: x.SCTP.GetDestinationPort()}}}
	case *flowv1.Layer4_ICMPv4:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{Type: x.ICMPv4.GetType(), Code: x.ICMPv4.GetCode()}}}
	case *flowv1.Layer4_ICMPv6:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv6{ICMPv6: &flowpb.ICMPv6{Type: x.ICMPv6.GetType(), Code: x.ICMPv6.GetCode()}}}
	}
	return nil
}

func endpointInto(out *flowpb.Endpoint, e *flowv1.Endpoint) *flowpb.Endpoint {
	if e == nil {
		return nil
	}
	out.ID, out.Identity, out.ClusterName = e.GetID(), e.GetIdentity(), e.GetClusterName()
	out.Namespace, out.Labels, out.PodName = e.GetNamespace(), e.GetLabels(), e.GetPodName()
	if ws := e.GetWorkloads(); len(ws) > 0 {
		vals := make([]flowpb.Workload, len(ws))
		out.Workloads = make([]*flowpb.Workload, len(ws))
		for i, w := range ws {
			vals[i].Name, vals[i].Kind = w.GetName(), w.GetKind()
			out.Workloads[i] = &vals[i]
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
	vals := make([]flowpb.Policy, len(ps))
	out := make([]*flowpb.Policy, len(ps))
	for i, p := range ps {
		vals[i].Name, vals[i].Namespace, vals[i].Labels, vals[i].Revision, vals[i].Kind = p.GetName(), p.GetNamespace(), p.GetLabels(), p.GetRevision(), p.GetKind()
		out[i] = &vals[i]
	}
	return out
}

// The flow's extensions carry what Trawl knows and Hubble's flow has no
// field for (the record kind, packet and byte totals, the aggregation
// window, the kernel's drop reason, ...) as a google.protobuf.Struct: every
// Hubble client can decode that well-known type (see extensions.go).
