package collect

import (
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/agent/datapath"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

func addrOf(family uint8, b [16]uint8) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3]})
	}
	return netip.AddrFrom16(b)
}

// fillTuple sets IP and l4 of a flow from a kernel tuple.
func fillTuple(f *flowv1.Flow, t bpf.FlowFlowTuple, flags uint32) {
	ver := flowv1.IPVersion_IPv4
	if t.Family == 6 {
		ver = flowv1.IPVersion_IPv6
	}
	f.IP = &flowv1.IP{
		Source:      addrOf(t.Family, t.Saddr).String(),
		Destination: addrOf(t.Family, t.Daddr).String(),
		IpVersion:   ver,
	}
	sp, dp := uint32(t.Sport), uint32(t.Dport)
	switch t.Proto {
	case l4.TCP:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: sp, DestinationPort: dp, Flags: l4.Flags(uint16(flags))}}}
	case l4.UDP:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: sp, DestinationPort: dp}}}
	case l4.SCTP:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_SCTP{SCTP: &flowv1.SCTP{SourcePort: sp, DestinationPort: dp}}}
	case l4.ICMPv4:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{Type: sp, Code: dp}}}
	case l4.ICMPv6:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv6{ICMPv6: &flowv1.ICMPv6{Type: sp, Code: dp}}}
	}
}

// isReply tells a reply from a request only when the flow's first packet
// said so (SYN vs SYN-ACK); otherwise it stays unknown (nil).
func isReply(proto uint8, firstFlags uint32) *wrapperspb.BoolValue {
	if proto != l4.TCP || firstFlags&uint32(l4.SYN) == 0 {
		return nil
	}
	return wrapperspb.Bool(firstFlags&uint32(l4.ACK) != 0)
}

// direction of a packet seen at a hook of a watched interface, relative to
// the pod (or the node for node interfaces). See datapath.Role.
func direction(role datapath.Role, known bool, hook uint8) flowv1.TrafficDirection {
	if !known {
		return flowv1.TrafficDirection_TRAFFIC_DIRECTION_UNKNOWN
	}
	ingressHook := hook == uint8(bpf.FlowHookHOOK_INGRESS)
	if role == datapath.RolePod {
		ingressHook = !ingressHook
	}
	if ingressHook {
		return flowv1.TrafficDirection_INGRESS
	}
	return flowv1.TrafficDirection_EGRESS
}

// clock converts CLOCK_MONOTONIC nanoseconds from the kernel to wall time.
type clock struct {
	offset time.Duration // wall - monotonic
}

func (c clock) wall(ns uint64) time.Time { return time.Unix(0, int64(ns)).Add(c.offset) }

func (c clock) ts(ns uint64) *timestamppb.Timestamp { return timestamppb.New(c.wall(ns)) }
