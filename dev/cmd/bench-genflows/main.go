// Command genflows writes N varied flow records as Trawl JSON lines, the
// input of the CLI formatting benchmark.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/cli/jsonl"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func main() {
	n := flag.Int("n", 1_000_000, "records to write")
	out := flag.String("o", "flows.jsonl", "output file")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(1, 1))
	base := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	namespaces := []string{"shop", "batch", "kube-system", "payments", "default"}
	var buf []byte
	for i := range *n {
		at := base.Add(time.Duration(i) * time.Millisecond)
		ns := namespaces[rng.IntN(len(namespaces))]
		fl := &flowv1.Flow{
			Time: timestamppb.New(at), Uuid: fmt.Sprintf("00000000-0000-0000-0001-%012x", i),
			Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4,
			IP:          &flowv1.IP{Source: fmt.Sprintf("10.1.%d.%d", rng.IntN(4), rng.IntN(250)), Destination: fmt.Sprintf("10.2.%d.%d", rng.IntN(4), rng.IntN(250)), IpVersion: flowv1.IPVersion_IPv4},
			Source:      &flowv1.Endpoint{Namespace: ns, PodName: fmt.Sprintf("web-%d-abcde", rng.IntN(20)), Labels: []string{"k8s:app=web"}, Workloads: []*flowv1.Workload{{Name: "web", Kind: "Deployment"}}},
			Destination: &flowv1.Endpoint{Namespace: "shop", PodName: fmt.Sprintf("api-%d-fghij", rng.IntN(20)), Labels: []string{"k8s:app=api"}},
			NodeName:    fmt.Sprintf("node-%d", rng.IntN(8)), IsReply: wrapperspb.Bool(rng.IntN(2) == 0),
			TrafficDirection: flowv1.TrafficDirection_EGRESS, FirstSeen: timestamppb.New(at.Add(-time.Second)), LastSeen: timestamppb.New(at),
			Packets: uint64(1 + rng.IntN(100)), Bytes: uint64(60 + rng.IntN(100000)), ObservationPoint: "tcx-egress",
		}
		switch rng.IntN(10) {
		case 0:
			fl.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: uint32(30000 + rng.IntN(30000)), DestinationPort: 53}}}
		case 1:
			fl.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{Type: 8}}}
		default:
			fl.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(30000 + rng.IntN(30000)), DestinationPort: 8080, Flags: &flowv1.TCPFlags{SYN: rng.IntN(4) == 0, ACK: true}}}}
		}
		if rng.IntN(20) == 0 {
			fl.Verdict, fl.EventKind = flowv1.Verdict_DROPPED, flowv1.EventKind_DROP
			fl.DropReasonDesc, fl.DropReasonKernel = "POLICY_DENIED", "NETFILTER_DROP"
			fl.EgressDeniedBy = []*flowv1.Policy{{Name: "deny-all", Namespace: "shop", Kind: "NetworkPolicy"}}
		}
		r := &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: fl}, NodeName: fl.NodeName, Time: fl.Time}
		buf, err = jsonl.Append(buf[:0], r)
		if err != nil {
			log.Fatal(err)
		}
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
