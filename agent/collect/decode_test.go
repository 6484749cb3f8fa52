package collect

import (
	"testing"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/agent/datapath"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

func TestDirectionIsRelativeToThePod(t *testing.T) {
	in, out := uint8(bpf.FlowHookHOOK_INGRESS), uint8(bpf.FlowHookHOOK_EGRESS)
	tests := []struct {
		name  string
		role  datapath.Role
		known bool
		hook  uint8
		want  flowv1.TrafficDirection
	}{
		{"received by the host on a pod veth leaves the pod", datapath.RolePod, true, in, flowv1.TrafficDirection_EGRESS},
		{"sent by the host into a pod veth enters the pod", datapath.RolePod, true, out, flowv1.TrafficDirection_INGRESS},
		{"received on a node NIC is ingress", datapath.RoleNode, true, in, flowv1.TrafficDirection_INGRESS},
		{"sent on a node NIC is egress", datapath.RoleNode, true, out, flowv1.TrafficDirection_EGRESS},
		{"an interface no longer watched is unknown", datapath.RolePod, false, in, flowv1.TrafficDirection_TRAFFIC_DIRECTION_UNKNOWN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := direction(tt.role, tt.known, tt.hook); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestTuplesDecodeToHubbleFields(t *testing.T) {
	v4 := bpf.FlowFlowTuple{Family: 4, Proto: 6, Sport: 40000, Dport: 443}
	copy(v4.Saddr[:], []byte{10, 244, 1, 10})
	copy(v4.Daddr[:], []byte{10, 244, 1, 11})
	f := &flowv1.Flow{}
	fillTuple(f, v4, uint32(l4.SYN|l4.ACK))
	if f.IP.Source != "10.244.1.10" || f.IP.Destination != "10.244.1.11" || f.IP.IpVersion != flowv1.IPVersion_IPv4 {
		t.Errorf("IP %v", f.IP)
	}
	tcp := f.L4.GetTCP()
	if tcp == nil || tcp.SourcePort != 40000 || tcp.DestinationPort != 443 || !tcp.Flags.SYN || !tcp.Flags.ACK || tcp.Flags.FIN {
		t.Errorf("l4 %v", f.L4)
	}

	v6 := bpf.FlowFlowTuple{Family: 6, Proto: 58, Sport: 128, Dport: 0}
	v6.Saddr[0], v6.Saddr[15] = 0xfd, 1
	v6.Daddr[0], v6.Daddr[15] = 0xfd, 2
	f = &flowv1.Flow{}
	fillTuple(f, v6, 0)
	if f.IP.Source != "fd00::1" || f.IP.IpVersion != flowv1.IPVersion_IPv6 || f.L4.GetICMPv6().GetType() != 128 {
		t.Errorf("IPv6 ICMP decoded as %v %v", f.IP, f.L4)
	}
}

func TestIsReplyOnlyWhenTheFirstPacketTellsIt(t *testing.T) {
	if r := isReply(l4.TCP, uint32(l4.SYN)); r == nil || r.Value {
		t.Errorf("SYN: %v, want false", r)
	}
	if r := isReply(6, uint32(l4.SYN|l4.ACK)); r == nil || !r.Value {
		t.Errorf("SYN-ACK: %v, want true", r)
	}
	if r := isReply(l4.TCP, uint32(l4.ACK)); r != nil {
		t.Errorf("mid-stream ACK: %v, want unknown", r)
	}
	if r := isReply(17, 0); r != nil {
		t.Errorf("UDP: %v, want unknown", r)
	}
}
