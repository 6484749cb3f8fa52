package hubble

import (
	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/wrapperspb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// FromHubble translates a Hubble flow back to a Trawl flow: the inverse of
// Flow for flows Trawl served (their extensions restore what Hubble's flow
// has no field for), and the fields both have for flows from Hubble itself
// (their kind is then derived from the Cilium event type: traces are
// EVENT_KIND_UNSPECIFIED, Trawl has no equal of a per-packet trace).
func FromHubble(h *flowpb.Flow) (*flowv1.Flow, error) {
	f := &flowv1.Flow{
		Time:             h.GetTime(),
		Uuid:             h.GetUuid(),
		Verdict:          flowv1.Verdict(h.GetVerdict()),
		Type:             flowv1.FlowType(h.GetType()),
		NodeName:         h.GetNodeName(),
		SourceNames:      h.GetSourceNames(),
		DestinationNames: h.GetDestinationNames(),
		TrafficDirection: flowv1.TrafficDirection(h.GetTrafficDirection()),
		Source:           endpointFrom(h.GetSource()),
		Destination:      endpointFrom(h.GetDestination()),
		EgressAllowedBy:  policiesFrom(h.GetEgressAllowedBy()),
		IngressAllowedBy: policiesFrom(h.GetIngressAllowedBy()),
		EgressDeniedBy:   policiesFrom(h.GetEgressDeniedBy()),
		IngressDeniedBy:  policiesFrom(h.GetIngressDeniedBy()),
	}
	if s := h.GetSourceService(); s != nil {
		f.SourceService = &flowv1.Service{Name: s.GetName(), Namespace: s.GetNamespace()}
	}
	if s := h.GetDestinationService(); s != nil {
		f.DestinationService = &flowv1.Service{Name: s.GetName(), Namespace: s.GetNamespace()}
	}
	if r := h.GetIsReply(); r != nil {
		f.IsReply = wrapperspb.Bool(r.GetValue())
	}
	if e := h.GetEthernet(); e != nil {
		f.Ethernet = &flowv1.Ethernet{Source: e.GetSource(), Destination: e.GetDestination()}
	}
	if ip := h.GetIP(); ip != nil {
		f.IP = &flowv1.IP{Source: ip.GetSource(), Destination: ip.GetDestination(), IpVersion: flowv1.IPVersion(ip.GetIpVersion()), Encrypted: ip.GetEncrypted()}
	}
	switch p := h.GetL4().GetProtocol().(type) {
	case *flowpb.Layer4_TCP:
		t := &flowv1.TCP{SourcePort: p.TCP.GetSourcePort(), DestinationPort: p.TCP.GetDestinationPort()}
		if fl := p.TCP.GetFlags(); fl != nil {
			t.Flags = &flowv1.TCPFlags{FIN: fl.FIN, SYN: fl.SYN, RST: fl.RST, PSH: fl.PSH, ACK: fl.ACK, URG: fl.URG, ECE: fl.ECE, CWR: fl.CWR, NS: fl.NS}
		}
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: t}}
	case *flowpb.Layer4_UDP:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: p.UDP.GetSourcePort(), DestinationPort: p.UDP.GetDestinationPort()}}}
	case *flowpb.Layer4_SCTP:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_SCTP{SCTP: &flowv1.SCTP{SourcePort: p.SCTP.GetSourcePort(), DestinationPort: p.SCTP.GetDestinationPort()}}}
	case *flowpb.Layer4_ICMPv4:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{Type: p.ICMPv4.GetType(), Code: p.ICMPv4.GetCode()}}}
	case *flowpb.Layer4_ICMPv6:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv6{ICMPv6: &flowv1.ICMPv6{Type: p.ICMPv6.GetType(), Code: p.ICMPv6.GetCode()}}}
	}
	if i := h.GetInterface(); i != nil {
		f.Interface = &flowv1.NetworkInterface{Index: i.GetIndex(), Name: i.GetName()}
	}
	f.L7 = layer7From(h.GetL7())
	if err := decodeExtensions(h.GetExtensions(), f); err != nil {
		return nil, err
	}
	if f.EventKind == flowv1.EventKind_EVENT_KIND_UNSPECIFIED {
		switch h.GetEventType().GetType() {
		case msgTypeDrop:
			f.EventKind = flowv1.EventKind_DROP
		case msgTypePolicyVerdict:
			f.EventKind = flowv1.EventKind_POLICY_VERDICT
		case msgTypeAccessLog:
			f.EventKind = flowv1.EventKind_L7_EVENT
		}
	}
	if f.Verdict == flowv1.Verdict_DROPPED {
		if r := h.GetDropReasonDesc(); r != flowpb.DropReason_DROP_REASON_UNKNOWN {
			f.DropReasonDesc = TrawlDropReason(r)
		} else {
			f.DropReasonDesc = f.DropReasonKernel
		}
	}
	return f, nil
}

// layer7From keeps Hubble's DNS records; other L7 records (HTTP, Kafka)
// keep their type and latency only, Trawl has no field for their content.
func layer7From(l *flowpb.Layer7) *flowv1.Layer7 {
	if l == nil {
		return nil
	}
	out := &flowv1.Layer7{Type: flowv1.L7FlowType(l.GetType()), LatencyNs: l.GetLatencyNs()}
	if d := l.GetDns(); d != nil {
		out.Record = &flowv1.Layer7_Dns{Dns: &flowv1.DNS{
			Query: d.GetQuery(), Ips: d.GetIps(), Ttl: d.GetTtl(), Cnames: d.GetCnames(),
			ObservationSource: d.GetObservationSource(), Rcode: d.GetRcode(), Qtypes: d.GetQtypes(), Rrtypes: d.GetRrtypes(),
		}}
	}
	return out
}

func endpointFrom(e *flowpb.Endpoint) *flowv1.Endpoint {
	if e == nil {
		return nil
	}
	out := &flowv1.Endpoint{ID: e.GetID(), Identity: e.GetIdentity(), ClusterName: e.GetClusterName(), Namespace: e.GetNamespace(), Labels: e.GetLabels(), PodName: e.GetPodName()}
	for _, w := range e.GetWorkloads() {
		out.Workloads = append(out.Workloads, &flowv1.Workload{Name: w.GetName(), Kind: w.GetKind()})
	}
	return out
}

func policiesFrom(ps []*flowpb.Policy) []*flowv1.Policy {
	var out []*flowv1.Policy
	for _, p := range ps {
		out = append(out, &flowv1.Policy{Name: p.GetName(), Namespace: p.GetNamespace(), Labels: p.GetLabels(), Revision: p.GetRevision(), Kind: p.GetKind()})
	}
	return out
}
