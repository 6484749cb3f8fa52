// Package benchdata is the synthetic flow data set of the relay's
// benchmarks (dev/cmd/bench-relay, and the Go benchmarks of the relay's
// per-flow path), so that both measure the same flows.
package benchdata

import (
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/internal/flowid"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// The synthetic cluster of clickhouse-measured.md: 20 namespaces, 200 pods
// on 4 nodes, 5,000 5-tuples, ~2 % drop records.
const (
	namespaces = 20
	pods       = 200
	nodes      = 4
	tuples     = 5000
	BatchSize  = 1000 // records per agent batch
)

// Nodes is the data set's node count. A relay takes a stream's batches only
// from the node the stream named, so the gRPC path needs one agent per node.
const Nodes = nodes

type pod struct {
	ns, name, ip, node, wl, veth string
	labels                       []string
	netns                        uint64
}

type tuple struct {
	src, dst     int
	proto        uint8
	sport, dport uint32
}

func world(r *rand.Rand) ([]pod, []tuple) {
	ps := make([]pod, pods)
	for i := range ps {
		ns := fmt.Sprintf("team-%02d", i%namespaces)
		wl := fmt.Sprintf("svc-%d", (i/namespaces)%5)
		ps[i] = pod{ns: ns, wl: wl, name: fmt.Sprintf("%s-7d9f%04x-%05x", wl, i, r.IntN(1<<20)),
			ip: fmt.Sprintf("10.%d.%d.%d", 1+i%nodes, i/250, 2+i%250), node: fmt.Sprintf("node-%d", i%nodes),
			veth:   fmt.Sprintf("cali%08x", r.Uint32()),
			labels: []string{"k8s:app=" + wl, "k8s:io.kubernetes.pod.namespace=" + ns, "k8s:pod-template-hash=7d9f" + fmt.Sprint(i%7)},
			netns:  4026532000 + uint64(i)}
	}
	ports := []uint32{80, 443, 5432, 6379, 8080, 53, 9090, 3306}
	ts := make([]tuple, tuples)
	for i := range ts {
		t := tuple{src: r.IntN(pods), dst: r.IntN(pods), proto: 6, sport: 32768 + uint32(r.IntN(28000)), dport: ports[r.IntN(len(ports))]}
		if t.dport == 53 || r.IntN(10) == 0 {
			t.proto = 17
		}
		ts[i] = t
	}
	return ps, ts
}

// Batch is one agent batch.
type Batch struct {
	Node, Boot string
	Seq        uint64
	Flows      []*flowv1.Flow
}

// Generate makes n flow records over the hour before end, in batches of
// BatchSize per node, with ids derived as the agent derives them.
func Generate(n int, end time.Time) []Batch {
	return GenerateSpan(n, end, time.Hour)
}

// GenerateSpan is Generate with the flows' time stamps spread evenly over
// span before end instead of the hour: the same records otherwise. An hour
// holds 1M flows ~500 times more sparsely than a cluster at 150k flows/s
// makes them, and the rollups aggregate only what shares a minute, so
// n / rate gives a data set as dense in time as that rate.
func GenerateSpan(n int, end time.Time, span time.Duration) []Batch {
	r := rand.New(rand.NewPCG(1, 2))
	hr := rand.New(rand.NewPCG(3, 4)) // TCP health: its own stream, the other fields stay as before
	ps, ts := world(r)
	start := end.Add(-span)
	step := span / time.Duration(max(n, 1))
	seqs := make([]uint64, nodes)
	var out []Batch
	for i := 0; i < n; {
		nodeIdx := len(out) % nodes
		seqs[nodeIdx]++
		b := Batch{Node: fmt.Sprintf("node-%d", nodeIdx), Boot: fmt.Sprintf("boot-%d", nodeIdx), Seq: seqs[nodeIdx]}
		for j := 0; j < BatchSize && i < n; j, i = j+1, i+1 {
			f := record(r, ps, ts, start.Add(time.Duration(i)*step))
			tcpHealth(hr, f)
			f.NodeName = b.Node
			f.Uuid = flowid.Derive(b.Node, b.Boot, b.Seq, j)
			b.Flows = append(b.Flows, f)
		}
		out = append(out, b)
	}
	return out
}

func record(r *rand.Rand, ps []pod, ts []tuple, at time.Time) *flowv1.Flow {
	// A skewed choice of tuple: a few pairs talk a lot.
	t := ts[int(float64(tuples)*r.Float64()*r.Float64())]
	src, dst := ps[t.src], ps[t.dst]
	f := &flowv1.Flow{Time: timestamppb.New(at), Verdict: flowv1.Verdict_FORWARDED, Type: flowv1.FlowType_L3_L4,
		IP:               &flowv1.IP{Source: src.ip, Destination: dst.ip, IpVersion: flowv1.IPVersion_IPv4},
		Source:           &flowv1.Endpoint{Namespace: src.ns, PodName: src.name, Labels: src.labels, Workloads: []*flowv1.Workload{{Name: src.wl, Kind: "Deployment"}}},
		Destination:      &flowv1.Endpoint{Namespace: dst.ns, PodName: dst.name, Labels: dst.labels, Workloads: []*flowv1.Workload{{Name: dst.wl, Kind: "Deployment"}}},
		TrafficDirection: flowv1.TrafficDirection_EGRESS, Interface: &flowv1.NetworkInterface{Index: uint32(10 + t.src), Name: src.veth},
		ObservationPoint: "tcx-ingress", Netns: src.netns, IsReply: wrapperspb.Bool(false), LastSeen: timestamppb.New(at),
	}
	if r.IntN(2) == 0 {
		f.TrafficDirection, f.ObservationPoint, f.Interface.Name = flowv1.TrafficDirection_INGRESS, "tcx-egress", dst.veth
	}
	pk := uint64(1 + r.IntN(100))
	f.Packets, f.Bytes = pk, pk*uint64(60+r.IntN(1400))
	f.FirstSeen = timestamppb.New(at.Add(-time.Duration(r.IntN(5000)) * time.Millisecond))
	switch k := r.IntN(100); {
	case k < 90:
		f.EventKind = flowv1.EventKind_AGGREGATE
	case k < 94:
		f.EventKind, f.Packets, f.Bytes, f.FirstSeen = flowv1.EventKind_FLOW_NEW, 1, 60, f.LastSeen
	case k < 98:
		f.EventKind, f.Packets, f.Bytes, f.FirstSeen = flowv1.EventKind_FLOW_CLOSE, 1, 52, f.LastSeen
	default:
		f.EventKind, f.Verdict, f.FirstSeen = flowv1.EventKind_DROP, flowv1.Verdict_DROPPED, f.LastSeen
		f.Packets = uint64(1 + r.IntN(3))
		if r.IntN(3) > 0 {
			f.DropReasonKernel, f.DropReasonDesc = "NETFILTER_DROP", "POLICY_DENIED"
			f.IngressDeniedBy = []*flowv1.Policy{{Namespace: dst.ns, Name: "default-deny", Kind: "NetworkPolicy"}}
		} else {
			f.DropReasonKernel, f.DropReasonDesc = "NO_SOCKET", "NO_SOCKET"
		}
	}
	if f.EventKind != flowv1.EventKind_DROP && r.IntN(10) < 4 {
		f.IngressAllowedBy = []*flowv1.Policy{{Namespace: dst.ns, Name: "allow-" + dst.wl, Kind: "NetworkPolicy"}}
	}
	switch t.proto {
	case 6:
		fl := &flowv1.TCPFlags{ACK: true, PSH: r.IntN(2) == 0}
		switch f.EventKind {
		case flowv1.EventKind_FLOW_NEW, flowv1.EventKind_DROP:
			fl = &flowv1.TCPFlags{SYN: true}
		case flowv1.EventKind_FLOW_CLOSE:
			fl = &flowv1.TCPFlags{FIN: true, ACK: true}
		}
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: t.sport, DestinationPort: t.dport, Flags: fl}}}
	default:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: t.sport, DestinationPort: t.dport}}}
	}
	return f
}

// tcpHealth gives TCP aggregates what fillSQL gives them: 10 % a handshake
// RTT (SYN-ACK half 30-730 us, ACK half 10-110 us), 5 % 1-4 retransmits,
// 1 % a reset, 1 % zero windows.
func tcpHealth(r *rand.Rand, f *flowv1.Flow) {
	if f.GetEventKind() != flowv1.EventKind_AGGREGATE || f.GetL4().GetTCP() == nil {
		return
	}
	switch x := r.IntN(100); {
	case x < 10:
		f.TcpHealth = &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(time.Duration(30000 + r.IntN(10)*50000 + r.IntN(200000))),
			HandshakeAck: durationpb.New(time.Duration(10000 + r.IntN(100000)))}
	case x < 15:
		f.TcpHealth = &flowv1.TCPHealth{Retransmits: uint32(1 + r.IntN(4))}
	case x == 15:
		f.TcpHealth = &flowv1.TCPHealth{ResetBy: flowv1.TCPSide(1 + r.IntN(2))}
	case x == 16:
		f.TcpHealth = &flowv1.TCPHealth{ZeroWindows: 1}
	}
}
