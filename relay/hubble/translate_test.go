package hubble

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// The golden file was checked by hand against Hubble's flow.proto and the
// mapping in docs/hubble.md. Regenerate it only to review the difference:
// go test ./relay/hubble -run TestTranslateGolden -update, then read the diff.
var update = flag.Bool("update", false, "rewrite testdata/translate.golden.json (review the diff by hand)")

// A fixed date is safe: translation stores nothing, and the golden file needs it.
var at = time.Date(2026, 12, 5, 10, 0, 0, 123456789, time.UTC)

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(at.Add(d)) }

func pol(ns, name string) *flowv1.Policy {
	return &flowv1.Policy{Namespace: ns, Name: name, Kind: "NetworkPolicy"}
}

var (
	webEP = &flowv1.Endpoint{Identity: 48213, Namespace: "shop", PodName: "web-7d9f-abcde", NodeName: "node-a",
		Labels:    []string{"k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"},
		Workloads: []*flowv1.Workload{{Name: "web", Kind: "Deployment"}}}
	dbEP = &flowv1.Endpoint{Identity: 9120, Namespace: "shop", PodName: "db-0", NodeName: "node-b",
		Labels:    []string{"k8s:app.kubernetes.io/name=postgres", "k8s:io.kubernetes.pod.namespace=shop"},
		Workloads: []*flowv1.Workload{{Name: "db", Kind: "StatefulSet"}}}
	worldEP = &flowv1.Endpoint{Identity: 2, Labels: []string{"reserved:world"}}
	hostEP  = &flowv1.Endpoint{Identity: 1, Labels: []string{"reserved:host"}, NodeName: "node-a"}
	dnsEP   = &flowv1.Endpoint{Identity: 102, Namespace: "kube-system", PodName: "coredns-5d78c-x7k2p", NodeName: "node-b",
		Labels: []string{"k8s:k8s-app=kube-dns", "k8s:io.kubernetes.pod.namespace=kube-system"}, Workloads: []*flowv1.Workload{{Name: "coredns", Kind: "Deployment"}}}
)

func tcp(sp, dp uint32, fl *flowv1.TCPFlags) *flowv1.Layer4 {
	return &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: sp, DestinationPort: dp, Flags: fl}}}
}

func flowRec(f *flowv1.Flow) *observerv1.GetFlowsResponse {
	return &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}, NodeName: f.NodeName, Time: f.Time}
}

// goldenRecords has one record of every kind Trawl serves.
func goldenRecords() []struct {
	name string
	rec  *observerv1.GetFlowsResponse
} {
	return []struct {
		name string
		rec  *observerv1.GetFlowsResponse
	}{
		{"aggregate: pod to pod through a service, seen leaving the source pod", flowRec(&flowv1.Flow{
			Time: ts(0), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e5f6", Verdict: flowv1.Verdict_FORWARDED,
			IP: &flowv1.IP{Source: "10.244.1.5", Destination: "10.244.2.9", IpVersion: flowv1.IPVersion_IPv4},
			L4: tcp(40312, 5432, &flowv1.TCPFlags{SYN: true, ACK: true, PSH: true}), Source: webEP, Destination: dbEP,
			Type: flowv1.FlowType_L3_L4, NodeName: "node-a", IsReply: wrapperspb.Bool(false),
			DestinationService: &flowv1.Service{Name: "db", Namespace: "shop"}, TrafficDirection: flowv1.TrafficDirection_EGRESS,
			Interface:       &flowv1.NetworkInterface{Index: 17, Name: "lxc1a2b3c"},
			EgressAllowedBy: []*flowv1.Policy{pol("shop", "web-egress")},
			EventKind:       flowv1.EventKind_AGGREGATE, FirstSeen: ts(-5 * time.Second), LastSeen: ts(0),
			Packets: 42, Bytes: 61234, Netns: 4026531993, ObservationPoint: "tcx-ingress",
		})},
		{"new: first packet of a connection, delivered to the destination pod", flowRec(&flowv1.Flow{
			Time: ts(time.Second), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e5f7", Verdict: flowv1.Verdict_FORWARDED,
			IP: &flowv1.IP{Source: "10.244.1.5", Destination: "10.244.2.9", IpVersion: flowv1.IPVersion_IPv4},
			L4: tcp(40313, 5432, &flowv1.TCPFlags{SYN: true}), Source: webEP, Destination: dbEP,
			Type: flowv1.FlowType_L3_L4, NodeName: "node-b", IsReply: wrapperspb.Bool(false),
			TrafficDirection: flowv1.TrafficDirection_INGRESS, Interface: &flowv1.NetworkInterface{Index: 9, Name: "lxc9f8e7d"},
			IngressAllowedBy: []*flowv1.Policy{pol("shop", "db-from-web")},
			EventKind:        flowv1.EventKind_FLOW_NEW, FirstSeen: ts(time.Second), LastSeen: ts(time.Second),
			Packets: 1, Bytes: 60, ObservationPoint: "tcx-egress", Conntrack: &flowv1.ConntrackInfo{NewEntry: true},
		})},
		{"close: FIN leaving the node toward the world", flowRec(&flowv1.Flow{
			Time: ts(2 * time.Second), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e5f8", Verdict: flowv1.Verdict_FORWARDED,
			IP: &flowv1.IP{Source: "192.168.10.4", Destination: "93.184.216.34", IpVersion: flowv1.IPVersion_IPv4},
			L4: tcp(51000, 443, &flowv1.TCPFlags{FIN: true, ACK: true}), Source: hostEP, Destination: worldEP,
			Type: flowv1.FlowType_L3_L4, NodeName: "node-a", IsReply: wrapperspb.Bool(false),
			TrafficDirection: flowv1.TrafficDirection_EGRESS, Interface: &flowv1.NetworkInterface{Index: 2, Name: "eth0"},
			EventKind: flowv1.EventKind_FLOW_CLOSE, FirstSeen: ts(2 * time.Second), LastSeen: ts(2 * time.Second),
			Packets: 1, Bytes: 52, ObservationPoint: "tcx-egress",
		})},
		{"drop: denied by NetworkPolicy (Hubble's POLICY_DENIED)", flowRec(&flowv1.Flow{
			Time: ts(3 * time.Second), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e5f9", Verdict: flowv1.Verdict_DROPPED,
			DropReasonDesc: "POLICY_DENIED", DropReasonKernel: "NETFILTER_DROP", DropClass: "policy",
			IP:          &flowv1.IP{Source: "10.244.3.7", Destination: "10.244.2.9", IpVersion: flowv1.IPVersion_IPv4},
			L4:          tcp(41000, 5432, &flowv1.TCPFlags{SYN: true}),
			Source:      &flowv1.Endpoint{Identity: 777, Namespace: "attacker", PodName: "evil-1", Labels: []string{"k8s:app=evil"}},
			Destination: dbEP, Type: flowv1.FlowType_L3_L4, NodeName: "node-b",
			TrafficDirection: flowv1.TrafficDirection_INGRESS, Interface: &flowv1.NetworkInterface{Index: 9, Name: "lxc9f8e7d"},
			IngressDeniedBy: []*flowv1.Policy{pol("shop", "default-deny")},
			EventKind:       flowv1.EventKind_DROP, FirstSeen: ts(time.Second), LastSeen: ts(3 * time.Second),
			Packets: 3, Bytes: 180, Netns: 4026532201, ObservationPoint: "kfree_skb",
		})},
		{"drop: a kernel reason Hubble has no equal of (kept in Summary and extensions)", flowRec(&flowv1.Flow{
			Time: ts(4 * time.Second), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e5fa", Verdict: flowv1.Verdict_DROPPED,
			DropReasonDesc: "NO_SOCKET", DropReasonKernel: "NO_SOCKET", DropClass: "no-socket",
			IP:     &flowv1.IP{Source: "10.244.1.5", Destination: "10.244.2.9", IpVersion: flowv1.IPVersion_IPv4},
			L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: 53001, DestinationPort: 9999}}},
			Source: webEP, Destination: dbEP, Type: flowv1.FlowType_L3_L4, NodeName: "node-b",
			TrafficDirection: flowv1.TrafficDirection_INGRESS,
			EventKind:        flowv1.EventKind_DROP, FirstSeen: ts(4 * time.Second), LastSeen: ts(4 * time.Second),
			Packets: 1, Bytes: 84, ObservationPoint: "kfree_skb",
		})},
		{"policy verdict: the destination's ingress policies allowed a new connection", flowRec(&flowv1.Flow{
			Time: ts(time.Second), Uuid: "0192c3a4-5b6c-5d7e-8f90-a1b2c3d4e5fb", Verdict: flowv1.Verdict_FORWARDED,
			IP: &flowv1.IP{Source: "10.244.1.5", Destination: "10.244.2.9", IpVersion: flowv1.IPVersion_IPv4},
			L4: tcp(40313, 5432, &flowv1.TCPFlags{SYN: true}), Source: webEP, Destination: dbEP,
			Type: flowv1.FlowType_L3_L4, NodeName: "node-b", IsReply: wrapperspb.Bool(false),
			TrafficDirection: flowv1.TrafficDirection_INGRESS,
			IngressAllowedBy: []*flowv1.Policy{pol("shop", "db-from-web")},
			EventKind:        flowv1.EventKind_POLICY_VERDICT, FirstSeen: ts(time.Second), LastSeen: ts(time.Second),
			Packets: 1, Bytes: 60, ObservationPoint: "tcx-egress",
		})},
		{"aggregate: ICMPv6 echo arriving from the network", flowRec(&flowv1.Flow{
			Time: ts(5 * time.Second), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e5fc", Verdict: flowv1.Verdict_FORWARDED,
			IP:     &flowv1.IP{Source: "2001:db8::1", Destination: "fd00:10:244::5", IpVersion: flowv1.IPVersion_IPv6},
			L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv6{ICMPv6: &flowv1.ICMPv6{Type: 128}}},
			Source: worldEP, Destination: webEP, Type: flowv1.FlowType_L3_L4, NodeName: "node-a",
			TrafficDirection: flowv1.TrafficDirection_INGRESS, Interface: &flowv1.NetworkInterface{Index: 2, Name: "eth0"},
			EventKind: flowv1.EventKind_AGGREGATE, FirstSeen: ts(0), LastSeen: ts(5 * time.Second),
			Packets: 5, Bytes: 520, ObservationPoint: "tcx-ingress",
		})},
		{"DNS query: a pod asks the cluster DNS (L7 record, Hubble's L7 event)", flowRec(&flowv1.Flow{
			Time: ts(5500 * time.Millisecond), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e600", Verdict: flowv1.Verdict_FORWARDED,
			IP:     &flowv1.IP{Source: "10.244.1.5", Destination: "10.96.0.10", IpVersion: flowv1.IPVersion_IPv4},
			L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: 41234, DestinationPort: 53}}},
			Source: webEP, Destination: dnsEP, Type: flowv1.FlowType_L7, NodeName: "node-a", IsReply: wrapperspb.Bool(false),
			TrafficDirection: flowv1.TrafficDirection_EGRESS, EventKind: flowv1.EventKind_L7_EVENT, ObservationPoint: "tcx-ingress",
			L7: &flowv1.Layer7{Type: flowv1.L7FlowType_REQUEST, Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{
				Query: "api.example.com.", Qtypes: []string{"A"}, ObservationSource: "tcx-ingress"}}},
		})},
		{"DNS response: the answer, with CNAMEs and its latency", flowRec(&flowv1.Flow{
			Time: ts(5501 * time.Millisecond), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e601", Verdict: flowv1.Verdict_FORWARDED,
			IP:     &flowv1.IP{Source: "10.96.0.10", Destination: "10.244.1.5", IpVersion: flowv1.IPVersion_IPv4},
			L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: 53, DestinationPort: 41234}}},
			Source: dnsEP, Destination: webEP, Type: flowv1.FlowType_L7, NodeName: "node-a", IsReply: wrapperspb.Bool(true),
			TrafficDirection: flowv1.TrafficDirection_INGRESS, EventKind: flowv1.EventKind_L7_EVENT, ObservationPoint: "tcx-egress",
			L7: &flowv1.Layer7{Type: flowv1.L7FlowType_RESPONSE, LatencyNs: 1_250_000, Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{
				Query: "api.example.com.", Qtypes: []string{"A"}, Ips: []string{"93.184.216.34", "93.184.216.35"}, Ttl: 300,
				Cnames: []string{"api.edge.example.net."}, Rrtypes: []string{"CNAME", "A", "A"}, ObservationSource: "tcx-egress"}}},
		})},
		{"DNS response: NXDOMAIN", flowRec(&flowv1.Flow{
			Time: ts(5502 * time.Millisecond), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e602", Verdict: flowv1.Verdict_FORWARDED,
			IP:     &flowv1.IP{Source: "10.96.0.10", Destination: "10.244.1.5", IpVersion: flowv1.IPVersion_IPv4},
			L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: 53, DestinationPort: 41235}}},
			Source: dnsEP, Destination: webEP, Type: flowv1.FlowType_L7, NodeName: "node-a", IsReply: wrapperspb.Bool(true),
			TrafficDirection: flowv1.TrafficDirection_INGRESS, EventKind: flowv1.EventKind_L7_EVENT, ObservationPoint: "tcx-egress",
			L7: &flowv1.Layer7{Type: flowv1.L7FlowType_RESPONSE, LatencyNs: 700_000, Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{
				Query: "db.shop.svc.cluster.local.", Qtypes: []string{"AAAA"}, Rcode: 3, Rrtypes: []string{"SOA"}, ObservationSource: "tcx-egress"}}},
		})},
		{"aggregate: a connection to an address the pod resolved (destination_names)", flowRec(&flowv1.Flow{
			Time: ts(5600 * time.Millisecond), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e603", Verdict: flowv1.Verdict_FORWARDED,
			IP: &flowv1.IP{Source: "10.244.1.5", Destination: "93.184.216.34", IpVersion: flowv1.IPVersion_IPv4},
			L4: tcp(40200, 443, &flowv1.TCPFlags{SYN: true, ACK: true}), Source: webEP, Destination: worldEP,
			Type: flowv1.FlowType_L3_L4, NodeName: "node-a", IsReply: wrapperspb.Bool(false), DestinationNames: []string{"api.example.com"},
			TrafficDirection: flowv1.TrafficDirection_EGRESS, EventKind: flowv1.EventKind_AGGREGATE, FirstSeen: ts(5501 * time.Millisecond),
			LastSeen: ts(5600 * time.Millisecond), Packets: 12, Bytes: 4000, ObservationPoint: "tcx-ingress",
		})},
		{"aggregate: TCP health of a connection (handshake halves, retransmits, zero windows: a Trawl extension)", flowRec(&flowv1.Flow{
			Time: ts(5700 * time.Millisecond), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e604", Verdict: flowv1.Verdict_FORWARDED,
			IP: &flowv1.IP{Source: "10.244.1.5", Destination: "10.244.2.9", IpVersion: flowv1.IPVersion_IPv4},
			L4: tcp(40400, 5432, &flowv1.TCPFlags{SYN: true, ACK: true, PSH: true}), Source: webEP, Destination: dbEP,
			Type: flowv1.FlowType_L3_L4, NodeName: "node-a", IsReply: wrapperspb.Bool(false),
			TrafficDirection: flowv1.TrafficDirection_EGRESS, EventKind: flowv1.EventKind_AGGREGATE, FirstSeen: ts(5600 * time.Millisecond),
			LastSeen: ts(5700 * time.Millisecond), Packets: 9, Bytes: 2100, ObservationPoint: "tcx-ingress",
			TcpHealth: &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(310 * time.Microsecond), HandshakeAck: durationpb.New(95 * time.Microsecond),
				Retransmits: 2, ZeroWindows: 1},
		})},
		{"aggregate: the server's reset on the reply direction", flowRec(&flowv1.Flow{
			Time: ts(5800 * time.Millisecond), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e605", Verdict: flowv1.Verdict_FORWARDED,
			IP: &flowv1.IP{Source: "10.244.2.9", Destination: "10.244.1.5", IpVersion: flowv1.IPVersion_IPv4},
			L4: tcp(9999, 40500, &flowv1.TCPFlags{RST: true, ACK: true}), Source: dbEP, Destination: webEP,
			Type: flowv1.FlowType_L3_L4, NodeName: "node-a", IsReply: wrapperspb.Bool(true),
			TrafficDirection: flowv1.TrafficDirection_INGRESS, EventKind: flowv1.EventKind_AGGREGATE, FirstSeen: ts(5800 * time.Millisecond),
			LastSeen: ts(5800 * time.Millisecond), Packets: 1, Bytes: 40, ObservationPoint: "tcx-egress",
			TcpHealth: &flowv1.TCPHealth{ResetBy: flowv1.TCPSide_SERVER},
		})},
		{"connect timeout: a SYN without an answer (a trace event; the kind is in the extensions)", flowRec(&flowv1.Flow{
			Time: ts(5900 * time.Millisecond), Uuid: "0192c3a4-5b6c-8d7e-8f90-a1b2c3d4e606", Verdict: flowv1.Verdict_FORWARDED,
			IP: &flowv1.IP{Source: "10.244.1.5", Destination: "192.0.2.1", IpVersion: flowv1.IPVersion_IPv4},
			L4: tcp(40600, 443, &flowv1.TCPFlags{SYN: true}), Source: webEP, Destination: worldEP,
			Type: flowv1.FlowType_L3_L4, NodeName: "node-a", IsReply: wrapperspb.Bool(false),
			TrafficDirection: flowv1.TrafficDirection_EGRESS, EventKind: flowv1.EventKind_CONNECT_TIMEOUT, FirstSeen: ts(2900 * time.Millisecond),
			LastSeen: ts(4900 * time.Millisecond), Packets: 3, Bytes: 180, ObservationPoint: "tcx-ingress",
		})},
		{"lost events: the agent's ring buffer was full", &observerv1.GetFlowsResponse{
			ResponseTypes: &observerv1.GetFlowsResponse_LostEvents{LostEvents: &flowv1.LostEvent{
				Source: flowv1.LostEventSource_RINGBUF_RESERVE_FAILED, NumEventsLost: 17, Cpu: wrapperspb.Int32(1),
				NodeName: "node-a", Time: ts(6 * time.Second), Detail: "drop_events ring buffer"}},
			NodeName: "node-a", Time: ts(6 * time.Second)}},
		{"lost events: a cause Hubble has no source for", &observerv1.GetFlowsResponse{
			ResponseTypes: &observerv1.GetFlowsResponse_LostEvents{LostEvents: &flowv1.LostEvent{
				Source: flowv1.LostEventSource_MAP_FULL, NumEventsLost: 3, NodeName: "node-b", Time: ts(7 * time.Second), Detail: "flows map"}},
			NodeName: "node-b", Time: ts(7 * time.Second)}},
		{"node status: an agent went silent", &observerv1.GetFlowsResponse{
			ResponseTypes: &observerv1.GetFlowsResponse_NodeStatus{NodeStatus: &flowv1.NodeStatus{
				NodeName: "node-c", State: flowv1.NodeState_NODE_UNAVAILABLE, Message: "no heartbeat for 2m0s", Version: "v0.9.0"}},
			NodeName: "node-c", Time: ts(8 * time.Second)}},
	}
}

// canonicalJSON renders m as protojson with proto names (as Hubble's
// clients print it), normalised: protojson's whitespace is not stable.
func canonicalJSON(t *testing.T, m proto.Message) json.RawMessage {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTranslateGolden(t *testing.T) {
	type entry struct {
		Name   string          `json:"name"`
		Trawl  json.RawMessage `json:"trawl"`
		Hubble json.RawMessage `json:"hubble"`
	}
	var got []entry
	for _, c := range goldenRecords() {
		h := ToHubble(c.rec)
		if h == nil {
			t.Fatalf("%s: no translation", c.name)
		}
		got = append(got, entry{c.name, canonicalJSON(t, c.rec), canonicalJSON(t, h)})
	}
	out, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, '\n')
	path := filepath.Join("testdata", "translate.golden.json")
	if *update {
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with -update and check it by hand)", err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("translation differs from %s; got:\n%s", path, out)
	}
}

// Trawl flows survive the trip to Hubble's flow and back.
func TestFromHubbleInvertsFlow(t *testing.T) {
	for _, c := range goldenRecords() {
		f := c.rec.GetFlow()
		if f == nil {
			continue
		}
		back, err := FromHubble(Flow(f))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !proto.Equal(back, f) {
			t.Errorf("%s: round trip differs:\n got %v\nwant %v", c.name, back, f)
		}
	}
}

// Every Trawl-only flow field reaches the extensions, whatever its type
// (so a field added to Trawl's Flow is carried without a change here).
func TestExtensionsCarryEveryTrawlField(t *testing.T) {
	f := &flowv1.Flow{}
	m := f.ProtoReflect()
	for _, fd := range extFields {
		switch fd.Kind() {
		case protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString("x-"+string(fd.Name())))
		case protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(fd.Enum().Values().Get(fd.Enum().Values().Len()-1).Number()))
		case protoreflect.Uint64Kind:
			m.Set(fd, protoreflect.ValueOfUint64(1<<40+7))
		case protoreflect.MessageKind:
			switch fd.Message().FullName() {
			case "google.protobuf.Timestamp":
				m.Set(fd, protoreflect.ValueOfMessage(ts(time.Duration(fd.Number())).ProtoReflect()))
			case "google.protobuf.Duration":
				m.Set(fd, protoreflect.ValueOfMessage(durationpb.New(1500*time.Millisecond).ProtoReflect()))
			default:
				sub := m.NewField(fd).Message()
				sfd := sub.Descriptor().Fields().Get(0)
				if sfd.Kind() == protoreflect.BoolKind {
					sub.Set(sfd, protoreflect.ValueOfBool(true))
				}
				m.Set(fd, protoreflect.ValueOfMessage(sub))
			}
		default:
			t.Fatalf("extension field %s has kind %v: teach the test a value", fd.Name(), fd.Kind())
		}
	}
	h := Flow(f)
	back := &flowv1.Flow{}
	if err := decodeExtensions(h.GetExtensions(), back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, f) {
		t.Errorf("extensions lost fields:\n got %v\nwant %v", back, f)
	}
}

// Trawl's enums have Hubble's numbers (the translation converts by number).
func TestEnumsAgree(t *testing.T) {
	pairs := []struct{ trawl, hubble protoreflect.EnumDescriptor }{
		{flowv1.Verdict(0).Descriptor(), flowpb.Verdict(0).Descriptor()},
		{flowv1.TrafficDirection(0).Descriptor(), flowpb.TrafficDirection(0).Descriptor()},
		{flowv1.IPVersion(0).Descriptor(), flowpb.IPVersion(0).Descriptor()},
		{flowv1.FlowType(0).Descriptor(), flowpb.FlowType(0).Descriptor()},
	}
	for _, p := range pairs {
		vs := p.trawl.Values()
		for i := range vs.Len() {
			v := vs.Get(i)
			hv := p.hubble.Values().ByNumber(v.Number())
			if hv == nil || hv.Name() != v.Name() {
				t.Errorf("%s %s = %d: Hubble's %s has %v", p.trawl.FullName(), v.Name(), v.Number(), p.hubble.FullName(), hv)
			}
		}
	}
	for s, want := range map[flowv1.NodeState]string{
		flowv1.NodeState_NODE_CONNECTED: "NODE_CONNECTED", flowv1.NodeState_NODE_UNAVAILABLE: "NODE_UNAVAILABLE",
		flowv1.NodeState_NODE_GONE: "NODE_GONE", flowv1.NodeState_NODE_ERROR: "NODE_ERROR",
	} {
		if got := NodeState(s).String(); got != want {
			t.Errorf("NodeState(%v) = %s", s, got)
		}
	}
}

// A conntrack sample has no Hubble equal and is not sent.
func TestConntrackIsNotTranslated(t *testing.T) {
	r := &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Conntrack{Conntrack: &flowv1.ConntrackSample{NodeName: "n"}}}
	if h := ToHubble(r); h != nil {
		t.Fatalf("got %v", h)
	}
}

// The default field mask of `hubble observe` keeps what it prints and
// leaves shared parts of the record untouched.
func TestFieldMask(t *testing.T) {
	rec := goldenRecords()[0].rec
	before := proto.Clone(rec)
	fm, err := newFieldMask(mask("time", "verdict", "IP", "l4", "source.identity", "source.namespace", "source.pod_name",
		"destination.identity", "destination.namespace", "destination.pod_name", "Type", "node_name", "event_type", "is_reply", "Summary", "time.seconds"))
	if err != nil {
		t.Fatal(err)
	}
	h := ToHubble(rec)
	fm.prune(h.GetFlow().ProtoReflect())
	f := h.GetFlow()
	if f.GetSource().GetLabels() != nil || f.GetExtensions() != nil || f.GetEmitter() != nil || f.GetUuid() != "" {
		t.Errorf("masked fields kept: %v", f)
	}
	//lint:ignore SA1019 Summary is what hubble prints
	printed := f.GetSummary()
	if f.GetSource().GetPodName() != "web-7d9f-abcde" || f.GetL4().GetTCP().GetDestinationPort() != 5432 || f.GetTime() == nil ||
		printed == "" || f.GetEventType().GetType() != msgTypeTrace {
		t.Errorf("kept fields lost: %v", f)
	}
	if !proto.Equal(rec, before) || emitter.GetName() != "Trawl" {
		t.Errorf("pruning changed the Trawl record or the shared emitter")
	}
	if _, err := newFieldMask(mask("source.nonsense")); err == nil {
		t.Error("a mask naming no flow field was accepted")
	}
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
