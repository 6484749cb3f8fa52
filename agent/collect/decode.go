package collect

import (
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/agent/datapath"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

const (
	tcpFIN = 0x001
	tcpSYN = 0x002
	tcpRST = 0x004
	tcpPSH = 0x008
	tcpACK = 0x010
	tcpURG = 0x020
	tcpECE = 0x040
	tcpCWR = 0x080
	tcpNS  = 0x100
)

func addrOf(family uint8, b [16]uint8) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3]})
	}
	return netip.AddrFrom16(b)
}

func tcpFlags(f uint32) *flowv1.TCPFlags {
	return &flowv1.TCPFlags{
		FIN: f&tcpFIN != 0, SYN: f&tcpSYN != 0, RST: f&tcpRST != 0, PSH: f&tcpPSH != 0,
		ACK: f&tcpACK != 0, URG: f&tcpURG != 0, ECE: f&tcpECE != 0, CWR: f&tcpCWR != 0, NS: f&tcpNS != 0,
	}
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
	case 6:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: sp, DestinationPort: dp, Flags: tcpFlags(flags)}}}
	case 17:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: sp, DestinationPort: dp}}}
	case 132:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_SCTP{SCTP: &flowv1.SCTP{SourcePort: sp, DestinationPort: dp}}}
	case 1:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{Type: sp, Code: dp}}}
	case 58:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv6{ICMPv6: &flowv1.ICMPv6{Type: sp, Code: dp}}}
	}
}

// isReply tells a reply from a request only when the flow's first packet
// said so (SYN vs SYN-ACK); otherwise it stays unknown (nil).
func isReply(proto uint8, firstFlags uint32) *wrapperspb.BoolValue {
	if proto != 6 || firstFlags&tcpSYN == 0 {
		return nil
	}
	return wrapperspb.Bool(firstFlags&tcpACK != 0)
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
