// Package filtertest holds one small, varied set of flows and one filter
// case per FlowFilter field with the flows each case selects. The filter's
// own tests check Match against the expectations; relay/store's tests check
// that the SQL translation selects exactly what Match selects on the same
// records.
package filtertest

import (
	"fmt"
	"os"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// EpochEnv names the variable that moves Base: an RFC 3339 time. `make test`
// runs the ClickHouse tests a second time with Base a year in the past, which
// fails any test that forgets that the tables expire rows (TTL).
const EpochEnv = "TRAWL_TEST_EPOCH"

// Base is the time of the first flow; flow i is at Base + i seconds. By
// default it is the start of the hour before the test binary started, so the
// data set is recent on any day.
var Base = epoch()

func epoch() time.Time {
	if v := os.Getenv(EpochEnv); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			panic(fmt.Sprintf("%s=%q: not an RFC 3339 time: %v", EpochEnv, v, err))
		}
		return t.UTC()
	}
	return time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
}

// Retention is a table retention that keeps every row of the data set: tests
// that store it in ClickHouse use it instead of the 7-day default.
func Retention() time.Duration {
	return time.Since(Base) + 30*24*time.Hour
}

func ep(ns, pod string, labels []string, wl ...*flowv1.Workload) *flowv1.Endpoint {
	return &flowv1.Endpoint{Namespace: ns, PodName: pod, Labels: labels, Workloads: wl}
}

func tcp(sp, dp uint32, f *flowv1.TCPFlags) *flowv1.Layer4 {
	return &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: sp, DestinationPort: dp, Flags: f}}}
}

func udp(sp, dp uint32) *flowv1.Layer4 {
	return &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: sp, DestinationPort: dp}}}
}

func ip4(s, d string) *flowv1.IP {
	return &flowv1.IP{Source: s, Destination: d, IpVersion: flowv1.IPVersion_IPv4}
}

func pol(ns, name string) *flowv1.Policy {
	return &flowv1.Policy{Namespace: ns, Name: name, Kind: "NetworkPolicy"}
}

// Flows returns the data set (fresh copies each call).
func Flows() []*flowv1.Flow {
	web := []string{"k8s:app=web", "k8s:tier=frontend", "k8s:io.kubernetes.pod.namespace=shop"}
	db := []string{"k8s:app=db", "k8s:tier=backend", "k8s:app.kubernetes.io/name=postgres"}
	fs := []*flowv1.Flow{
		0: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, NodeName: "node-a",
			IP: ip4("10.0.1.5", "10.0.2.7"), L4: tcp(40000, 5432, &flowv1.TCPFlags{SYN: true, ACK: true}),
			Source:           ep("shop", "web-7d9f-abcde", web, &flowv1.Workload{Name: "web", Kind: "Deployment"}),
			Destination:      ep("shop", "db-0", db, &flowv1.Workload{Name: "db", Kind: "StatefulSet"}),
			TrafficDirection: flowv1.TrafficDirection_EGRESS, IsReply: wrapperspb.Bool(false),
			Interface: &flowv1.NetworkInterface{Index: 7, Name: "cali1234"}, Packets: 10, Bytes: 1500,
			EgressAllowedBy: []*flowv1.Policy{pol("shop", "allow-db")}, ObservationPoint: "tcx-ingress", Type: flowv1.FlowType_L3_L4},
		1: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, NodeName: "node-a",
			IP: ip4("10.0.2.7", "10.0.1.5"), L4: tcp(5432, 40000, &flowv1.TCPFlags{ACK: true, PSH: true}),
			Source:           ep("shop", "db-0", db, &flowv1.Workload{Name: "db", Kind: "StatefulSet"}),
			Destination:      ep("shop", "web-7d9f-abcde", web, &flowv1.Workload{Name: "web", Kind: "Deployment"}),
			TrafficDirection: flowv1.TrafficDirection_INGRESS, IsReply: wrapperspb.Bool(true), Packets: 8, Bytes: 9000,
			Interface: &flowv1.NetworkInterface{Index: 7, Name: "cali1234"}},
		2: {Verdict: flowv1.Verdict_DROPPED, EventKind: flowv1.EventKind_DROP, NodeName: "node-b",
			DropReasonDesc: "POLICY_DENIED", DropReasonKernel: "NETFILTER_DROP", DropClass: "policy",
			IP: ip4("10.0.3.9", "10.0.2.7"), L4: tcp(41000, 5432, &flowv1.TCPFlags{SYN: true}),
			Source: ep("attacker", "evil-1", []string{"k8s:app=evil"}), Destination: ep("shop", "db-0", db, &flowv1.Workload{Name: "db", Kind: "StatefulSet"}),
			TrafficDirection: flowv1.TrafficDirection_INGRESS, Packets: 3, Bytes: 180,
			IngressDeniedBy: []*flowv1.Policy{pol("shop", "default-deny"), pol("shop", "db-only-web")}},
		3: {Verdict: flowv1.Verdict_DROPPED, EventKind: flowv1.EventKind_DROP, NodeName: "node-b",
			DropReasonDesc: "NO_SOCKET", DropReasonKernel: "NO_SOCKET", DropClass: "no-socket",
			IP: ip4("10.0.1.5", "10.0.9.9"), L4: udp(53000, 53),
			Source:      ep("shop", "web-7d9f-abcde", web, &flowv1.Workload{Name: "web", Kind: "Deployment"}),
			Destination: ep("", "", []string{"reserved:world"}), TrafficDirection: flowv1.TrafficDirection_EGRESS, Packets: 1, Bytes: 80,
			DestinationNames: []string{"api.example.com"}},
		4: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_FLOW_NEW, NodeName: "node-a",
			IP:          &flowv1.IP{Source: "fd00::1", Destination: "fd00:0:0:1::20", IpVersion: flowv1.IPVersion_IPv6},
			L4:          &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv6{ICMPv6: &flowv1.ICMPv6{Type: 128}}},
			Source:      ep("kube-system", "coredns-abc", []string{"k8s:k8s-app=kube-dns"}, &flowv1.Workload{Name: "coredns", Kind: "Deployment"}),
			Destination: ep("monitoring", "prom-0", []string{"k8s:app=prometheus"}), TrafficDirection: flowv1.TrafficDirection_EGRESS},
		5: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_FLOW_CLOSE, NodeName: "node-c.example",
			IP: ip4("192.168.0.1", "10.0.2.8"), L4: tcp(33000, 80, &flowv1.TCPFlags{FIN: true, ACK: true}),
			Source: ep("", "", []string{"reserved:host"}), Destination: ep("shop", "web-7d9f-xyz", web, &flowv1.Workload{Name: "web", Kind: "Deployment"}),
			DestinationService: &flowv1.Service{Namespace: "shop", Name: "web-svc"}, TrafficDirection: flowv1.TrafficDirection_INGRESS,
			IsReply: wrapperspb.Bool(false), IngressAllowedBy: []*flowv1.Policy{pol("shop", "allow-web")}},
		6: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, NodeName: "node-c.example",
			IP: ip4("10.0.4.1", "10.0.5.1"), L4: &flowv1.Layer4{Protocol: &flowv1.Layer4_SCTP{SCTP: &flowv1.SCTP{SourcePort: 9000, DestinationPort: 9001}}},
			Source: ep("telco", "amf-1", []string{"k8s:app=amf", "k8s:env=prod"}), Destination: ep("telco", "smf-1", []string{"k8s:app=smf", "k8s:env"}),
			SourceService: &flowv1.Service{Namespace: "telco", Name: "amf"}, TrafficDirection: flowv1.TrafficDirection_EGRESS, Packets: 100, Bytes: 64000,
			Interface: &flowv1.NetworkInterface{Index: 2, Name: "eth0"}, EgressDeniedBy: []*flowv1.Policy{pol("", "global-audit")}},
		7: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, NodeName: "node-a",
			IP: ip4("10.0.1.6", "8.8.8.8"), L4: &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{Type: 8}}},
			Source:      ep("shop", "web-7d9f-fghij", web, &flowv1.Workload{Name: "web", Kind: "Deployment"}, &flowv1.Workload{Name: "shop-operator", Kind: "Operator"}),
			Destination: ep("", "", []string{"reserved:world"}), TrafficDirection: flowv1.TrafficDirection_EGRESS, Packets: 2, Bytes: 196},
		8: {Verdict: flowv1.Verdict_AUDIT, EventKind: flowv1.EventKind_POLICY_VERDICT, NodeName: "node-b",
			IP: ip4("10.0.2.7", "10.0.3.9"), L4: tcp(5432, 41000, &flowv1.TCPFlags{RST: true, ACK: true}),
			Source: ep("shop", "db-0", db), Destination: ep("attacker", "evil-1", []string{"k8s:app=evil", "k8s:team=red"}),
			TrafficDirection: flowv1.TrafficDirection_EGRESS, IsReply: wrapperspb.Bool(true),
			SourceNames: []string{"db.shop.svc.cluster.local"}},
		9: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, NodeName: "node-d",
			Source: ep("shop", "", nil), Destination: ep("", "", nil), Uuid: "9b0c2e2a-0000-4000-8000-000000000009"},
		// A teardown drop: a receive queue purged when a socket closed.
		10: {Verdict: flowv1.Verdict_DROPPED, EventKind: flowv1.EventKind_DROP, NodeName: "node-e",
			DropReasonDesc: "QUEUE_PURGE", DropReasonKernel: "QUEUE_PURGE", DropClass: "teardown",
			IP: ip4("10.0.6.1", "10.0.6.2"), L4: tcp(8080, 45000, nil), Packets: 1, Bytes: 52},
	}
	for i, f := range fs {
		t := timestamppb.New(Base.Add(time.Duration(i) * time.Second))
		f.Time = t
		if f.Uuid == "" {
			f.Uuid = UUID(i)
		}
	}
	return fs
}

// UUID is the id of flow i in the data set.
func UUID(i int) string {
	const hex = "0123456789abcdef"
	return "00000000-0000-4000-8000-0000000000" + string([]byte{hex[i/16], hex[i%16]})
}

// Case is one filter with the flows it selects (indices into Flows()).
type Case struct {
	Name        string
	Allow, Deny []*observerv1.FlowFilter
	Want        []int
}

func ff(f *observerv1.FlowFilter) []*observerv1.FlowFilter { return []*observerv1.FlowFilter{f} }

// Cases covers every FlowFilter field at least once.
func Cases() []Case {
	return []Case{
		{Name: "no filter selects everything", Want: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{Name: "uuid selects one flow", Allow: ff(&observerv1.FlowFilter{Uuid: []string{UUID(3), "9b0c2e2a-0000-4000-8000-000000000009"}}), Want: []int{3, 9}},
		{Name: "source_ip exact", Allow: ff(&observerv1.FlowFilter{SourceIp: []string{"10.0.1.5"}}), Want: []int{0, 3}},
		{Name: "source_ip CIDR", Allow: ff(&observerv1.FlowFilter{SourceIp: []string{"10.0.0.0/22"}}), Want: []int{0, 1, 2, 3, 7, 8}},
		{Name: "source_ip IPv6 CIDR", Allow: ff(&observerv1.FlowFilter{SourceIp: []string{"fd00::/16"}}), Want: []int{4}},
		{Name: "destination_ip exact or CIDR", Allow: ff(&observerv1.FlowFilter{DestinationIp: []string{"8.8.8.8", "10.0.5.0/24", "fd00:0:0:1::20"}}), Want: []int{4, 6, 7}},
		{Name: "source_pod namespace and prefix", Allow: ff(&observerv1.FlowFilter{SourcePod: []string{"shop/web-"}}), Want: []int{0, 3, 7}},
		{Name: "source_pod whole namespace", Allow: ff(&observerv1.FlowFilter{SourcePod: []string{"shop/"}}), Want: []int{0, 1, 3, 7, 8, 9}},
		{Name: "destination_pod two values OR", Allow: ff(&observerv1.FlowFilter{DestinationPod: []string{"shop/db", "monitoring/"}}), Want: []int{0, 2, 4}},
		{Name: "source_fqdn glob", Allow: ff(&observerv1.FlowFilter{SourceFqdn: []string{"*.shop.svc.cluster.local"}}), Want: []int{8}},
		{Name: "destination_fqdn exact", Allow: ff(&observerv1.FlowFilter{DestinationFqdn: []string{"api.example.com"}}), Want: []int{3}},
		{Name: "source_label with k8s prefix", Allow: ff(&observerv1.FlowFilter{SourceLabel: []string{"k8s:app=web"}}), Want: []int{0, 3, 7}},
		{Name: "source_label without prefix and in set", Allow: ff(&observerv1.FlowFilter{SourceLabel: []string{"app in (db, amf)"}}), Want: []int{1, 6, 8}},
		{Name: "source_label notin keeps flows without the key", Allow: ff(&observerv1.FlowFilter{SourceLabel: []string{"app notin (web,db)"}}), Want: []int{2, 4, 5, 6, 9, 10}},
		{Name: "destination_label reserved world", Allow: ff(&observerv1.FlowFilter{DestinationLabel: []string{"reserved:world"}}), Want: []int{3, 7}},
		{Name: "destination_label exists and not-equal", Allow: ff(&observerv1.FlowFilter{DestinationLabel: []string{"k8s:app,app!=web,!team"}}), Want: []int{0, 2, 4, 6}},
		{Name: "destination_label key with prefix and slash", Allow: ff(&observerv1.FlowFilter{DestinationLabel: []string{"app.kubernetes.io/name==postgres"}}), Want: []int{0, 2}},
		{Name: "destination_label key without value", Allow: ff(&observerv1.FlowFilter{DestinationLabel: []string{"k8s:env"}}), Want: []int{6}},
		{Name: "source_service prefix", Allow: ff(&observerv1.FlowFilter{SourceService: []string{"telco/am"}}), Want: []int{6}},
		{Name: "destination_service namespace", Allow: ff(&observerv1.FlowFilter{DestinationService: []string{"shop/"}}), Want: []int{5}},
		{Name: "source_workload by name and kind", Allow: ff(&observerv1.FlowFilter{SourceWorkload: []*flowv1.Workload{{Name: "web", Kind: "Deployment"}}}), Want: []int{0, 3, 7}},
		{Name: "source_workload matches a second workload", Allow: ff(&observerv1.FlowFilter{SourceWorkload: []*flowv1.Workload{{Kind: "Operator"}}}), Want: []int{7}},
		{Name: "destination_workload by name", Allow: ff(&observerv1.FlowFilter{DestinationWorkload: []*flowv1.Workload{{Name: "db"}}}), Want: []int{0, 2}},
		{Name: "traffic_direction ingress", Allow: ff(&observerv1.FlowFilter{TrafficDirection: []flowv1.TrafficDirection{flowv1.TrafficDirection_INGRESS}}), Want: []int{1, 2, 5}},
		{Name: "verdict dropped or audit", Allow: ff(&observerv1.FlowFilter{Verdict: []flowv1.Verdict{flowv1.Verdict_DROPPED, flowv1.Verdict_AUDIT}}), Want: []int{2, 3, 8, 10}},
		{Name: "drop_reason_desc", Allow: ff(&observerv1.FlowFilter{DropReasonDesc: []string{"POLICY_DENIED"}}), Want: []int{2}},
		{Name: "drop_reason_kernel", Allow: ff(&observerv1.FlowFilter{DropReasonKernel: []string{"NETFILTER_DROP", "NO_SOCKET"}}), Want: []int{2, 3}},
		{Name: "drop_class", Allow: ff(&observerv1.FlowFilter{DropClass: []string{"policy", "no-socket"}}), Want: []int{2, 3}},
		{Name: "drop_class as users type it", Allow: ff(&observerv1.FlowFilter{DropClass: []string{"TEARDOWN", "no_socket"}}), Want: []int{3, 10}},
		{Name: "dropped without teardown (the default DROPPED view)", Allow: ff(&observerv1.FlowFilter{Verdict: []flowv1.Verdict{flowv1.Verdict_DROPPED}}),
			Deny: ff(&observerv1.FlowFilter{DropClass: []string{"teardown"}}), Want: []int{2, 3}},
		{Name: "interface by name", Allow: ff(&observerv1.FlowFilter{Interface: []*flowv1.NetworkInterface{{Name: "cali1234"}}}), Want: []int{0, 1}},
		{Name: "interface by index and name", Allow: ff(&observerv1.FlowFilter{Interface: []*flowv1.NetworkInterface{{Index: 2, Name: "eth0"}, {Index: 7, Name: "eth0"}}}), Want: []int{6}},
		{Name: "protocol tcp", Allow: ff(&observerv1.FlowFilter{Protocol: []string{"tcp"}}), Want: []int{0, 1, 2, 5, 8, 10}},
		{Name: "protocol icmp covers both versions", Allow: ff(&observerv1.FlowFilter{Protocol: []string{"ICMP"}}), Want: []int{4, 7}},
		{Name: "protocol udp sctp icmpv6", Allow: ff(&observerv1.FlowFilter{Protocol: []string{"udp", "sctp", "icmpv6"}}), Want: []int{3, 4, 6}},
		{Name: "protocol icmpv4", Allow: ff(&observerv1.FlowFilter{Protocol: []string{"icmpv4"}}), Want: []int{7}},
		{Name: "source_port number", Allow: ff(&observerv1.FlowFilter{SourcePort: []string{"5432"}}), Want: []int{1, 8}},
		{Name: "destination_port range skips icmp", Allow: ff(&observerv1.FlowFilter{DestinationPort: []string{"0-100", "9001"}}), Want: []int{3, 5, 6}},
		{Name: "reply true", Allow: ff(&observerv1.FlowFilter{Reply: []bool{true}}), Want: []int{1, 8}},
		{Name: "reply false ignores unknown", Allow: ff(&observerv1.FlowFilter{Reply: []bool{false}}), Want: []int{0, 5}},
		{Name: "tcp_flags SYN", Allow: ff(&observerv1.FlowFilter{TcpFlags: []*flowv1.TCPFlags{{SYN: true}}}), Want: []int{0, 2}},
		{Name: "tcp_flags all of one entry", Allow: ff(&observerv1.FlowFilter{TcpFlags: []*flowv1.TCPFlags{{SYN: true, ACK: true}, {RST: true}}}), Want: []int{0, 8}},
		{Name: "node_name exact", Allow: ff(&observerv1.FlowFilter{NodeName: []string{"node-b"}}), Want: []int{2, 3, 8}},
		{Name: "node_name glob", Allow: ff(&observerv1.FlowFilter{NodeName: []string{"*.example", "node-d*"}}), Want: []int{5, 6, 9}},
		{Name: "ip_version", Allow: ff(&observerv1.FlowFilter{IpVersion: []flowv1.IPVersion{flowv1.IPVersion_IPv6, flowv1.IPVersion_IP_NOT_USED}}), Want: []int{4, 9}},
		{Name: "policy in any list", Allow: ff(&observerv1.FlowFilter{Policy: []string{"shop/default-deny", "shop/allow-web"}}), Want: []int{2, 5}},
		{Name: "policy whole namespace and cluster-wide", Allow: ff(&observerv1.FlowFilter{Policy: []string{"shop/", "/global-audit"}}), Want: []int{0, 2, 5, 6}},
		{Name: "event_kind", Allow: ff(&observerv1.FlowFilter{EventKind: []flowv1.EventKind{flowv1.EventKind_FLOW_NEW, flowv1.EventKind_FLOW_CLOSE}}), Want: []int{4, 5}},
		{Name: "fields in one filter AND", Allow: ff(&observerv1.FlowFilter{SourcePod: []string{"shop/"}, Verdict: []flowv1.Verdict{flowv1.Verdict_DROPPED}}), Want: []int{3}},
		{Name: "allow filters OR", Allow: []*observerv1.FlowFilter{{SourcePod: []string{"telco/"}}, {DestinationPod: []string{"telco/"}}, {NodeName: []string{"node-d"}}}, Want: []int{6, 9}},
		{Name: "deny removes from allow", Allow: ff(&observerv1.FlowFilter{SourcePod: []string{"shop/"}}), Deny: ff(&observerv1.FlowFilter{Protocol: []string{"tcp"}}), Want: []int{3, 7, 9}},
		{Name: "deny alone", Deny: []*observerv1.FlowFilter{{NodeName: []string{"node-a"}}, {Verdict: []flowv1.Verdict{flowv1.Verdict_DROPPED}}}, Want: []int{5, 6, 8, 9}},
		{Name: "hostile strings select nothing", Allow: ff(&observerv1.FlowFilter{SourcePod: []string{"x'; DROP TABLE flows; --/"}, NodeName: []string{`%' OR 1=1 --`}, DropReasonDesc: []string{`\' OR ''='`}}), Want: nil},
		{Name: "like metacharacters are literal", Allow: ff(&observerv1.FlowFilter{NodeName: []string{"node_%"}}), Want: nil},
	}
}

func dnsRecord(typ flowv1.L7FlowType, latency uint64, d *flowv1.DNS) *flowv1.Layer7 {
	d.ObservationSource = "tcx-ingress"
	return &flowv1.Layer7{Type: typ, LatencyNs: latency, Record: &flowv1.Layer7_Dns{Dns: d}}
}

// DNSFlows returns the DNS data set (fresh copies each call): DNS queries
// and responses as the agent records them (Type L7, event kind L7_EVENT,
// the packet's addresses and ports), the L3/L4 flows that carry the names
// a client resolved, and a UDP flow to port 53 that is not a DNS record.
// Its times follow Flows' (flow i at Base + 100 s + i s) and its ids are
// UUID(64 + i), so both sets can be stored together.
func DNSFlows() []*flowv1.Flow {
	web := ep("shop", "web-7d9f-abcde", []string{"k8s:app=web"}, &flowv1.Workload{Name: "web", Kind: "Deployment"})
	amf := ep("telco", "amf-1", []string{"k8s:app=amf"})
	dns := ep("kube-system", "coredns-abc", []string{"k8s:k8s-app=kube-dns"}, &flowv1.Workload{Name: "coredns", Kind: "Deployment"})
	world := ep("", "", []string{"reserved:world"})
	l7 := func(f *flowv1.Flow) *flowv1.Flow {
		f.Type, f.EventKind, f.Verdict = flowv1.FlowType_L7, flowv1.EventKind_L7_EVENT, flowv1.Verdict_FORWARDED
		f.IsReply = wrapperspb.Bool(f.GetL7().GetType() == flowv1.L7FlowType_RESPONSE)
		return f
	}
	fs := []*flowv1.Flow{
		0: l7(&flowv1.Flow{NodeName: "node-a", IP: ip4("10.0.1.5", "10.96.0.10"), L4: udp(41234, 53), Source: web, Destination: dns,
			TrafficDirection: flowv1.TrafficDirection_EGRESS,
			L7:               dnsRecord(flowv1.L7FlowType_REQUEST, 0, &flowv1.DNS{Query: "api.example.com.", Qtypes: []string{"A"}})}),
		1: l7(&flowv1.Flow{NodeName: "node-a", IP: ip4("10.96.0.10", "10.0.1.5"), L4: udp(53, 41234), Source: dns, Destination: web,
			TrafficDirection: flowv1.TrafficDirection_INGRESS,
			L7: dnsRecord(flowv1.L7FlowType_RESPONSE, 1_250_000, &flowv1.DNS{Query: "api.example.com.", Qtypes: []string{"A"},
				Ips: []string{"93.184.216.34"}, Ttl: 300, Rrtypes: []string{"A"}})}),
		2: l7(&flowv1.Flow{NodeName: "node-c.example", IP: ip4("10.0.4.1", "10.96.0.10"), L4: udp(50000, 53), Source: amf, Destination: dns,
			TrafficDirection: flowv1.TrafficDirection_EGRESS,
			L7:               dnsRecord(flowv1.L7FlowType_REQUEST, 0, &flowv1.DNS{Query: "nope.example.org.", Qtypes: []string{"AAAA"}})}),
		3: l7(&flowv1.Flow{NodeName: "node-c.example", IP: ip4("10.96.0.10", "10.0.4.1"), L4: udp(53, 50000), Source: dns, Destination: amf,
			TrafficDirection: flowv1.TrafficDirection_INGRESS,
			L7: dnsRecord(flowv1.L7FlowType_RESPONSE, 800_000, &flowv1.DNS{Query: "nope.example.org.", Qtypes: []string{"AAAA"},
				Rcode: 3, Rrtypes: []string{"SOA"}})}),
		// SERVFAIL over TCP, not matched to a query (no latency).
		4: l7(&flowv1.Flow{NodeName: "node-b", IP: ip4("10.96.0.10", "10.0.1.6"), L4: tcp(53, 40100, &flowv1.TCPFlags{ACK: true, PSH: true}),
			Source: dns, Destination: ep("shop", "web-7d9f-fghij", []string{"k8s:app=web"}), TrafficDirection: flowv1.TrafficDirection_INGRESS,
			L7: dnsRecord(flowv1.L7FlowType_RESPONSE, 0, &flowv1.DNS{Query: "slow.example.net.", Qtypes: []string{"A"}, Rcode: 2})}),
		// The flow to the address api.example.com resolved to, and back.
		5: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4, NodeName: "node-a",
			IP: ip4("10.0.1.5", "93.184.216.34"), L4: tcp(40200, 443, &flowv1.TCPFlags{SYN: true}), Source: web, Destination: world,
			TrafficDirection: flowv1.TrafficDirection_EGRESS, IsReply: wrapperspb.Bool(false), Packets: 12, Bytes: 4000,
			DestinationNames: []string{"api.example.com"}},
		6: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4, NodeName: "node-a",
			IP: ip4("93.184.216.34", "10.0.1.5"), L4: tcp(443, 40200, &flowv1.TCPFlags{ACK: true}), Source: world, Destination: web,
			TrafficDirection: flowv1.TrafficDirection_INGRESS, IsReply: wrapperspb.Bool(true), Packets: 10, Bytes: 52000,
			SourceNames: []string{"api.example.com"}},
		// The DNS packets' own flow: UDP to port 53, not a DNS record.
		7: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4, NodeName: "node-a",
			IP: ip4("10.0.1.5", "10.96.0.10"), L4: udp(41234, 53), Source: web, Destination: dns,
			TrafficDirection: flowv1.TrafficDirection_EGRESS, IsReply: wrapperspb.Bool(false), Packets: 2, Bytes: 150},
		// A query written with the case randomisation some resolvers use.
		8: l7(&flowv1.Flow{NodeName: "node-b", IP: ip4("10.0.1.6", "10.96.0.10"), L4: udp(40300, 53),
			Source: ep("shop", "web-7d9f-fghij", []string{"k8s:app=web"}), Destination: dns, TrafficDirection: flowv1.TrafficDirection_EGRESS,
			L7: dnsRecord(flowv1.L7FlowType_REQUEST, 0, &flowv1.DNS{Query: "wWw.Example.COM.", Qtypes: []string{"A", "AAAA"}})}),
		// Names written with a trailing dot and capitals.
		9: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4, NodeName: "node-b",
			IP: ip4("10.0.4.1", "198.51.100.7"), L4: tcp(40400, 443, nil), Source: amf, Destination: world,
			TrafficDirection: flowv1.TrafficDirection_EGRESS, DestinationNames: []string{"cdn.Example.ORG.", "Example.org."}},
	}
	for i, f := range fs {
		f.Time = timestamppb.New(Base.Add(100*time.Second + time.Duration(i)*time.Second))
		f.Uuid = UUID(64 + i)
	}
	return fs
}

// DNSCases are the DNS filters (type, protocol dns, the FQDN filters on
// names and queries, dns_query, dns_rcode) with the flows of DNSFlows they
// select. A DNS query's queried name is a destination name, a response's a
// source name.
func DNSCases() []Case {
	dnsRecords := []int{0, 1, 2, 3, 4, 8}
	return []Case{
		{Name: "type l7 selects the DNS messages", Allow: ff(&observerv1.FlowFilter{Type: []flowv1.FlowType{flowv1.FlowType_L7}}), Want: dnsRecords},
		{Name: "type L3_L4 selects the flows", Allow: ff(&observerv1.FlowFilter{Type: []flowv1.FlowType{flowv1.FlowType_L3_L4}}), Want: []int{5, 6, 7, 9}},
		{Name: "event_kind L7_EVENT selects the DNS messages", Allow: ff(&observerv1.FlowFilter{EventKind: []flowv1.EventKind{flowv1.EventKind_L7_EVENT}}), Want: dnsRecords},
		{Name: "protocol dns selects DNS messages, not the UDP flow to port 53", Allow: ff(&observerv1.FlowFilter{Protocol: []string{"DNS"}}), Want: dnsRecords},
		{Name: "protocol udp selects DNS messages over UDP too", Allow: ff(&observerv1.FlowFilter{Protocol: []string{"udp"}}), Want: []int{0, 1, 2, 3, 7, 8}},
		{Name: "protocol dns or tcp", Allow: ff(&observerv1.FlowFilter{Protocol: []string{"tcp", "dns"}}), Want: []int{0, 1, 2, 3, 4, 5, 6, 8, 9}},
		{Name: "not protocol dns leaves the flows", Deny: ff(&observerv1.FlowFilter{Protocol: []string{"dns"}}), Want: []int{5, 6, 7, 9}},
		{Name: "destination_fqdn matches a query's name and a flow's destination names", Allow: ff(&observerv1.FlowFilter{DestinationFqdn: []string{"api.example.com"}}), Want: []int{0, 5}},
		{Name: "source_fqdn matches a response's name and a flow's source names", Allow: ff(&observerv1.FlowFilter{SourceFqdn: []string{"api.example.com"}}), Want: []int{1, 6}},
		{Name: "fqdn on either end (two filters)", Allow: []*observerv1.FlowFilter{{SourceFqdn: []string{"*.example.org"}}, {DestinationFqdn: []string{"*.example.org"}}}, Want: []int{2, 3, 9}},
		{Name: "destination_fqdn glob matches queries whatever their case", Allow: ff(&observerv1.FlowFilter{DestinationFqdn: []string{"*.example.com"}}), Want: []int{0, 5, 8}},
		{Name: "destination_fqdn pattern as typed (capitals, trailing dot)", Allow: ff(&observerv1.FlowFilter{DestinationFqdn: []string{" API.Example.com. "}}), Want: []int{0, 5}},
		{Name: "destination_fqdn matches names written with a trailing dot and capitals", Allow: ff(&observerv1.FlowFilter{DestinationFqdn: []string{"example.org"}}), Want: []int{9}},
		{Name: "fqdn glob characters of SQL LIKE are literal", Allow: ff(&observerv1.FlowFilter{DestinationFqdn: []string{"api_example%com"}}), Want: nil},
		{Name: "dns_query is a regular expression on the query as recorded", Allow: ff(&observerv1.FlowFilter{DnsQuery: []string{`example\.com\.$`}}), Want: []int{0, 1}},
		{Name: "dns_query is case sensitive like Hubble's", Allow: ff(&observerv1.FlowFilter{DnsQuery: []string{`^www\.example\.com\.$`}}), Want: nil},
		{Name: "dns_query takes RE2 flags", Allow: ff(&observerv1.FlowFilter{DnsQuery: []string{`(?i)^www\.example\.com\.$`}}), Want: []int{8}},
		{Name: "dns_query alternatives OR", Allow: ff(&observerv1.FlowFilter{DnsQuery: []string{`^nope\.`, `^slow`}}), Want: []int{2, 3, 4}},
		{Name: "dns_query matches only DNS messages", Allow: ff(&observerv1.FlowFilter{DnsQuery: []string{``}}), Want: dnsRecords},
		{Name: "dns_rcode NXDOMAIN", Allow: ff(&observerv1.FlowFilter{DnsRcode: []string{"NXDOMAIN"}}), Want: []int{3}},
		{Name: "dns_rcode as a number and in Hubble's words", Allow: ff(&observerv1.FlowFilter{DnsRcode: []string{"2", "non-existent domain"}}), Want: []int{3, 4}},
		{Name: "dns_rcode NOERROR selects responses, not queries", Allow: ff(&observerv1.FlowFilter{DnsRcode: []string{"noerror"}}), Want: []int{1}},
		{Name: "errors: every response but NOERROR", Allow: ff(&observerv1.FlowFilter{Protocol: []string{"dns"}, Reply: []bool{true}}),
			Deny: ff(&observerv1.FlowFilter{DnsRcode: []string{"NOERROR"}}), Want: []int{3, 4}},
		{Name: "DNS filters AND with the others", Allow: ff(&observerv1.FlowFilter{SourcePod: []string{"shop/"}, Protocol: []string{"dns"}, DestinationFqdn: []string{"*.com"}}), Want: []int{0, 8}},
	}
}

func health(synAck, ack time.Duration, retrans uint32, reset flowv1.TCPSide, zeroWindows uint32) *flowv1.TCPHealth {
	h := &flowv1.TCPHealth{Retransmits: retrans, ResetBy: reset, ZeroWindows: zeroWindows}
	if synAck > 0 {
		h.HandshakeSynAck = durationpb.New(synAck)
	}
	if ack > 0 {
		h.HandshakeAck = durationpb.New(ack)
	}
	return h
}

// TCPFlows returns the TCP health data set (fresh copies each call): records
// carrying a handshake (on the client -> server direction), retransmits,
// resets by either side, zero windows, a connection attempt that timed out,
// a SYN the kernel dropped (a drop, not a timeout) and records without TCP
// health. Its times follow DNSFlows' (flow i at Base + 200 s + i s) and its
// ids are UUID(128 + i), so the three sets can be stored together.
func TCPFlows() []*flowv1.Flow {
	web := ep("shop", "web-7d9f-abcde", []string{"k8s:app=web"}, &flowv1.Workload{Name: "web", Kind: "Deployment"})
	db := ep("shop", "db-0", []string{"k8s:app=db"}, &flowv1.Workload{Name: "db", Kind: "StatefulSet"})
	api := ep("telco", "api-1", []string{"k8s:app=api"}, &flowv1.Workload{Name: "api", Kind: "Deployment"})
	rec := func(kind flowv1.EventKind, reply bool, src, dst *flowv1.Endpoint, sip, dip string, sp, dp uint32, flags *flowv1.TCPFlags, h *flowv1.TCPHealth) *flowv1.Flow {
		return &flowv1.Flow{Verdict: flowv1.Verdict_FORWARDED, EventKind: kind, Type: flowv1.FlowType_L3_L4, NodeName: "node-a",
			IP: ip4(sip, dip), L4: tcp(sp, dp, flags), Source: src, Destination: dst, IsReply: wrapperspb.Bool(reply),
			TrafficDirection: flowv1.TrafficDirection_EGRESS, Packets: 4, Bytes: 400, TcpHealth: h}
	}
	fs := []*flowv1.Flow{
		// web -> db: the handshake (0.3 ms + 0.1 ms), then the reply
		// direction with the server's retransmits and zero windows.
		0: rec(flowv1.EventKind_AGGREGATE, false, web, db, "10.0.1.5", "10.0.2.7", 40000, 5432, &flowv1.TCPFlags{SYN: true, ACK: true},
			health(300*time.Microsecond, 100*time.Microsecond, 0, 0, 0)),
		1: rec(flowv1.EventKind_AGGREGATE, true, db, web, "10.0.2.7", "10.0.1.5", 5432, 40000, &flowv1.TCPFlags{ACK: true, PSH: true},
			health(0, 0, 3, 0, 2)),
		// web -> api across a slow path: 20 ms + 1 ms, one retransmit.
		2: rec(flowv1.EventKind_AGGREGATE, false, web, api, "10.0.1.5", "10.0.4.1", 40100, 8080, &flowv1.TCPFlags{SYN: true, ACK: true, PSH: true},
			health(20*time.Millisecond, time.Millisecond, 1, 0, 0)),
		// A closed port: the server answers the SYN with a RST.
		3: rec(flowv1.EventKind_FLOW_CLOSE, true, api, web, "10.0.4.1", "10.0.1.5", 9999, 40200, &flowv1.TCPFlags{RST: true, ACK: true},
			health(0, 0, 0, flowv1.TCPSide_SERVER, 0)),
		// A SYN to a blackholed address: no answer within the timeout.
		4: rec(flowv1.EventKind_CONNECT_TIMEOUT, false, web, ep("", "", []string{"reserved:world"}), "10.0.1.5", "10.0.9.9", 40300, 5432,
			&flowv1.TCPFlags{SYN: true}, nil),
		// The client resets.
		5: rec(flowv1.EventKind_AGGREGATE, false, web, db, "10.0.1.5", "10.0.2.7", 40400, 5432, &flowv1.TCPFlags{RST: true, ACK: true},
			health(0, 0, 0, flowv1.TCPSide_CLIENT, 0)),
		// Only the server's half of the handshake was seen.
		6: rec(flowv1.EventKind_AGGREGATE, false, api, db, "10.0.4.1", "10.0.2.7", 40500, 5432, &flowv1.TCPFlags{SYN: true, ACK: true},
			health(5*time.Millisecond, 0, 0, 0, 0)),
		// TCP health without a handshake: a zero window only.
		7: rec(flowv1.EventKind_AGGREGATE, false, web, db, "10.0.1.5", "10.0.2.7", 40000, 5432, &flowv1.TCPFlags{ACK: true},
			health(0, 0, 0, 0, 1)),
		8: {Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4, NodeName: "node-a",
			IP: ip4("10.0.1.5", "10.96.0.10"), L4: udp(41234, 53), Source: web, Packets: 2, Bytes: 150},
		// A handshake of exactly 10 ms.
		9: rec(flowv1.EventKind_AGGREGATE, false, api, web, "10.0.4.1", "10.0.1.5", 40600, 80, &flowv1.TCPFlags{SYN: true, ACK: true},
			health(9*time.Millisecond, time.Millisecond, 0, 0, 0)),
		// A SYN the kernel dropped: a drop record, never a timeout.
		10: {Verdict: flowv1.Verdict_DROPPED, EventKind: flowv1.EventKind_DROP, Type: flowv1.FlowType_L3_L4, NodeName: "node-a",
			DropReasonDesc: "NO_SOCKET", DropReasonKernel: "NO_SOCKET", DropClass: "no-socket",
			IP: ip4("10.0.1.5", "10.0.2.8"), L4: tcp(40700, 6000, &flowv1.TCPFlags{SYN: true}), Source: web, Packets: 1, Bytes: 60},
	}
	for i, f := range fs {
		f.Time = timestamppb.New(Base.Add(200*time.Second + time.Duration(i)*time.Second))
		f.Uuid = UUID(128 + i)
	}
	return fs
}

// TCPCases are the TCP health filters (min_handshake_rtt, tcp_retransmits,
// tcp_reset, tcp_timeout, event_kind CONNECT_TIMEOUT) with the flows of
// TCPFlows they select.
func TCPCases() []Case {
	rtt := func(d time.Duration) *observerv1.FlowFilter {
		return &observerv1.FlowFilter{MinHandshakeRtt: durationpb.New(d)}
	}
	return []Case{
		{Name: "min_handshake_rtt compares the sum of both halves", Allow: ff(rtt(10 * time.Millisecond)), Want: []int{2, 9}},
		{Name: "min_handshake_rtt is inclusive", Allow: ff(rtt(400 * time.Microsecond)), Want: []int{0, 2, 6, 9}},
		{Name: "min_handshake_rtt just above a handshake leaves it out", Allow: ff(rtt(400*time.Microsecond + time.Nanosecond)), Want: []int{2, 6, 9}},
		{Name: "min_handshake_rtt zero selects the records with a handshake", Allow: ff(rtt(0)), Want: []int{0, 2, 6, 9}},
		{Name: "not min_handshake_rtt keeps the records without a handshake", Deny: ff(rtt(10 * time.Millisecond)), Want: []int{0, 1, 3, 4, 5, 6, 7, 8, 10}},
		{Name: "tcp_retransmits selects records with any", Allow: ff(&observerv1.FlowFilter{TcpRetransmits: true}), Want: []int{1, 2}},
		{Name: "tcp_reset selects resets by either side", Allow: ff(&observerv1.FlowFilter{TcpReset: true}), Want: []int{3, 5}},
		{Name: "tcp_timeout selects connection attempts that timed out", Allow: ff(&observerv1.FlowFilter{TcpTimeout: true}), Want: []int{4}},
		{Name: "event_kind CONNECT_TIMEOUT is the same", Allow: ff(&observerv1.FlowFilter{EventKind: []flowv1.EventKind{flowv1.EventKind_CONNECT_TIMEOUT}}), Want: []int{4}},
		{Name: "not tcp_timeout leaves the timeout out", Deny: ff(&observerv1.FlowFilter{TcpTimeout: true}), Want: []int{0, 1, 2, 3, 5, 6, 7, 8, 9, 10}},
		{Name: "TCP filters AND in one filter", Allow: ff(&observerv1.FlowFilter{TcpRetransmits: true, MinHandshakeRtt: durationpb.New(time.Millisecond)}), Want: []int{2}},
		{Name: "TCP filters OR across filters", Allow: []*observerv1.FlowFilter{{TcpReset: true}, {TcpTimeout: true}}, Want: []int{3, 4, 5}},
		{Name: "TCP filters AND with the others", Allow: ff(&observerv1.FlowFilter{TcpRetransmits: true, SourcePod: []string{"shop/web"}}), Want: []int{2}},
		{Name: "false TCP booleans select everything", Allow: ff(&observerv1.FlowFilter{TcpRetransmits: false, TcpReset: false, TcpTimeout: false}), Want: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	}
}
