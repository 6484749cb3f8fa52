package enrich

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

const demoManifests = "../../deploy/demo"

func newDemo(t *testing.T) *Enricher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e, err := New(ctx, Config{Manifests: demoManifests})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func tcpFlow(src, dst string, dport uint32, verdict flowv1.Verdict, kernelReason string) *flowv1.Flow {
	f := &flowv1.Flow{
		Time:     timestamppb.Now(),
		Verdict:  verdict,
		NodeName: "trawl-demo-node",
		IP:       &flowv1.IP{Source: src, Destination: dst, IpVersion: flowv1.IPVersion_IPv4},
		L4:       &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: 40000, DestinationPort: dport}}},
		Packets:  1,
	}
	if verdict == flowv1.Verdict_DROPPED {
		f.DropReasonKernel, f.DropReasonDesc = kernelReason, kernelReason
	}
	return f
}

func policyNames(ps []*flowv1.Policy) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Namespace+"/"+p.Name)
	}
	return strings.Join(s, ",")
}

func workload(ep *flowv1.Endpoint) string {
	if ep == nil || len(ep.Workloads) == 0 {
		return ""
	}
	return ep.Workloads[0].Kind + "/" + ep.Workloads[0].Name
}

// Addresses from deploy/demo/README.md.
const (
	dns      = "10.244.1.10"
	gateway  = "10.244.1.11"
	payments = "10.244.1.12"
	postgres = "10.244.1.13"
	frontend = "10.244.1.14"
	loadgen  = "10.244.1.15"
	nodeIP   = "10.250.1.2"
)

func TestEnrichmentOfTheDemoStory(t *testing.T) {
	e := newDemo(t)
	udp := func(src, dst string, port uint32) *flowv1.Flow {
		f := tcpFlow(src, dst, 0, flowv1.Verdict_FORWARDED, "")
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: 5353, DestinationPort: port}}}
		return f
	}
	reply := tcpFlow(postgres, payments, 40000, flowv1.Verdict_FORWARDED, "")
	reply.IsReply = wrapperspb.Bool(true)
	cases := []struct {
		name               string
		flow               *flowv1.Flow
		srcPod, dstPod     string
		srcWorkload        string
		dstService         string
		desc               string
		inAllow, egAllow   string
		inDeny, egDeny     string
		srcLabel, dstLabel string
	}{
		{name: "api-gateway to payment-service is forwarded and allowed by the ingress policy",
			flow:   tcpFlow(gateway, payments, 8080, flowv1.Verdict_FORWARDED, ""),
			srcPod: "api-gateway/api-gateway-6c8d7f5b9-q4x9z", dstPod: "payments/payment-service-7d9f8b6c5-m2v8r",
			srcWorkload: "Deployment/api-gateway", dstService: "payments/payment-service",
			inAllow: "payments/payment-service-ingress", srcLabel: "k8s:app=api-gateway"},
		{name: "payment-service to postgres is allowed both ways",
			flow:   tcpFlow(payments, postgres, 5432, flowv1.Verdict_FORWARDED, ""),
			srcPod: "payments/payment-service-7d9f8b6c5-m2v8r", dstPod: "databases/postgres-0",
			srcWorkload: "Deployment/payment-service", dstService: "databases/postgres",
			inAllow: "databases/postgres-ingress", egAllow: "payments/payment-service-egress"},
		{name: "a DNS lookup of payment-service is allowed by its egress policy",
			flow:   udp(payments, dns, 53),
			srcPod: "payments/payment-service-7d9f8b6c5-m2v8r", dstPod: "kube-system/coredns-5d78c9869d-x7k2p",
			srcWorkload: "Deployment/payment-service", dstService: "kube-system/kube-dns",
			egAllow: "payments/payment-service-egress", dstLabel: "k8s:k8s-app=kube-dns"},
		{name: "frontend to postgres dropped by netfilter is a policy drop",
			flow:   tcpFlow(frontend, postgres, 5432, flowv1.Verdict_DROPPED, "NETFILTER_DROP"),
			srcPod: "frontend/frontend-85b6f9d7c4-h8n3w", dstPod: "databases/postgres-0",
			srcWorkload: "Deployment/frontend", dstService: "databases/postgres",
			desc: "POLICY_DENIED", inDeny: "databases/postgres-ingress"},
		{name: "payment-service to another namespace is denied by its egress policies",
			flow:   tcpFlow(payments, frontend, 80, flowv1.Verdict_DROPPED, "NETFILTER_DROP"),
			srcPod: "payments/payment-service-7d9f8b6c5-m2v8r", dstPod: "frontend/frontend-85b6f9d7c4-h8n3w",
			srcWorkload: "Deployment/payment-service", dstService: "frontend/frontend",
			desc: "POLICY_DENIED", egDeny: "payments/default-deny,payments/payment-service-egress"},
		{name: "a netfilter drop the policies allow keeps its kernel reason and blames nobody",
			flow:   tcpFlow(gateway, frontend, 80, flowv1.Verdict_DROPPED, "NETFILTER_DROP"),
			srcPod: "api-gateway/api-gateway-6c8d7f5b9-q4x9z", dstPod: "frontend/frontend-85b6f9d7c4-h8n3w",
			srcWorkload: "Deployment/api-gateway", dstService: "frontend/frontend",
			desc: "NETFILTER_DROP"},
		{name: "a closed port keeps NO_SOCKET even where policies would deny",
			flow:   tcpFlow(frontend, postgres, 5433, flowv1.Verdict_DROPPED, "NO_SOCKET"),
			srcPod: "frontend/frontend-85b6f9d7c4-h8n3w", dstPod: "databases/postgres-0",
			srcWorkload: "Deployment/frontend", desc: "NO_SOCKET"},
		{name: "a CronJob's pod names the CronJob and traffic without policies names none",
			flow:   tcpFlow(loadgen, frontend, 80, flowv1.Verdict_FORWARDED, ""),
			srcPod: "frontend/loadgen-29401200-t6c4d", dstPod: "frontend/frontend-85b6f9d7c4-h8n3w",
			srcWorkload: "CronJob/loadgen", dstService: "frontend/frontend"},
		{name: "a ClusterIP destination names its service",
			flow:   tcpFlow(gateway, "10.96.0.30", 8080, flowv1.Verdict_FORWARDED, ""),
			srcPod: "api-gateway/api-gateway-6c8d7f5b9-q4x9z", srcWorkload: "Deployment/api-gateway",
			dstService: "payments/payment-service", dstLabel: "reserved:world"},
		{name: "a reply is labelled but carries no policy",
			flow:   reply,
			srcPod: "databases/postgres-0", dstPod: "payments/payment-service-7d9f8b6c5-m2v8r", srcWorkload: "StatefulSet/postgres"},
		{name: "the node's own address is reserved:host and the world is reserved:world",
			flow:     tcpFlow(nodeIP, "1.1.1.1", 443, flowv1.Verdict_FORWARDED, ""),
			srcLabel: "reserved:host", dstLabel: "reserved:world"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.flow
			e.Enrich(f)
			check := func(what, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %q, want %q", what, got, want)
				}
			}
			pod := func(ep *flowv1.Endpoint) string {
				if ep.GetPodName() == "" {
					return ""
				}
				return ep.Namespace + "/" + ep.PodName
			}
			check("source pod", pod(f.Source), tc.srcPod)
			check("destination pod", pod(f.Destination), tc.dstPod)
			check("source workload", workload(f.Source), tc.srcWorkload)
			svc := ""
			if f.DestinationService != nil {
				svc = f.DestinationService.Namespace + "/" + f.DestinationService.Name
			}
			check("destination_service", svc, tc.dstService)
			if f.Verdict == flowv1.Verdict_DROPPED {
				check("drop_reason_desc", f.DropReasonDesc, tc.desc)
			}
			check("ingress_allowed_by", policyNames(f.IngressAllowedBy), tc.inAllow)
			check("egress_allowed_by", policyNames(f.EgressAllowedBy), tc.egAllow)
			check("ingress_denied_by", policyNames(f.IngressDeniedBy), tc.inDeny)
			check("egress_denied_by", policyNames(f.EgressDeniedBy), tc.egDeny)
			for _, l := range []struct {
				ep   *flowv1.Endpoint
				want string
			}{{f.Source, tc.srcLabel}, {f.Destination, tc.dstLabel}} {
				if l.want != "" && !strings.Contains(strings.Join(l.ep.GetLabels(), ","), l.want) {
					t.Errorf("labels %v lack %q", l.ep.GetLabels(), l.want)
				}
			}
			for _, p := range append(append(f.IngressAllowedBy, f.EgressAllowedBy...), append(f.IngressDeniedBy, f.EgressDeniedBy...)...) {
				if p.Kind != "NetworkPolicy" {
					t.Errorf("policy %s kind %q", p.Name, p.Kind)
				}
			}
		})
	}
}

func TestPolicyDropsFeedTheRelayCounter(t *testing.T) {
	e := newDemo(t)
	f := tcpFlow(payments, frontend, 80, flowv1.Verdict_DROPPED, "NETFILTER_DROP")
	f.Packets = 3
	e.Enrich(f)
	got := map[string]uint64{}
	PolicyDrops(f, func(ns, p string, n uint64) { got[ns+"/"+p] += n })
	if got["payments/default-deny"] != 3 || got["payments/payment-service-egress"] != 3 || len(got) != 2 {
		t.Errorf("policy drops %v", got)
	}
	ok := tcpFlow(gateway, frontend, 80, flowv1.Verdict_DROPPED, "NETFILTER_DROP")
	e.Enrich(ok)
	PolicyDrops(ok, func(ns, p string, n uint64) { t.Errorf("unexplained drop counted against %s/%s", ns, p) })
}

func TestConntrackTopCreatorsAreNamed(t *testing.T) {
	e := newDemo(t)
	s := &flowv1.ConntrackSample{NodeName: "trawl-demo-node", Time: timestamppb.Now(), TopCreators: []*flowv1.ConntrackCreator{
		{Ip: loadgen, NewEntries: 900}, {Ip: nodeIP, NewEntries: 5}, {Ip: "203.0.113.9", NewEntries: 1}, {Ip: "bogus"},
	}}
	e.EnrichConntrack(s)
	want := []string{"frontend/loadgen-29401200-t6c4d", "reserved:host", "reserved:world", ""}
	for i, c := range s.TopCreators {
		got := ""
		switch {
		case c.Endpoint == nil:
		case c.Endpoint.PodName != "":
			got = c.Endpoint.Namespace + "/" + c.Endpoint.PodName
		default:
			got = c.Endpoint.Labels[0]
		}
		if got != want[i] {
			t.Errorf("creator %s: %q, want %q", c.Ip, got, want[i])
		}
	}
}

func TestWithoutASourceFlowsAreLeftAlone(t *testing.T) {
	e, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	f := tcpFlow(frontend, postgres, 5432, flowv1.Verdict_DROPPED, "NETFILTER_DROP")
	e.Enrich(f)
	e.EnrichConntrack(&flowv1.ConntrackSample{TopCreators: []*flowv1.ConntrackCreator{{Ip: loadgen}}})
	if f.Source != nil || f.DropReasonDesc != "NETFILTER_DROP" || len(f.IngressDeniedBy) > 0 {
		t.Errorf("flow changed without a metadata source: %v", f)
	}
	bare := &flowv1.Flow{Verdict: flowv1.Verdict_DROPPED, DropReasonKernel: "NO_SOCKET"}
	e.Enrich(bare)
	if bare.DropReasonDesc != "NO_SOCKET" {
		t.Errorf("an empty drop_reason_desc was not filled with the kernel's reason: %q", bare.DropReasonDesc)
	}
	if _, err := New(context.Background(), Config{Manifests: demoManifests, Kubeconfig: "/x"}); err == nil {
		t.Error("manifests and kubeconfig together were accepted")
	}
}

func TestPolicyVerdictRecordsAreDerivedForDecidedConnections(t *testing.T) {
	e := newDemo(t)
	newConn := func(src, dst string, port uint32) *flowv1.Flow {
		f := tcpFlow(src, dst, port, flowv1.Verdict_FORWARDED, "")
		f.EventKind, f.Uuid = flowv1.EventKind_FLOW_NEW, "6f1c2a3b-0000-4000-8000-000000000001"
		return f
	}
	agg := tcpFlow(gateway, payments, 8080, flowv1.Verdict_FORWARDED, "")
	agg.EventKind = flowv1.EventKind_AGGREGATE
	drop := tcpFlow(frontend, postgres, 5432, flowv1.Verdict_DROPPED, "NETFILTER_DROP")
	drop.EventKind = flowv1.EventKind_DROP
	unexplained := tcpFlow(gateway, frontend, 80, flowv1.Verdict_DROPPED, "NETFILTER_DROP")
	// A SYN without an answer: its FLOW_NEW carries the verdict already.
	timeout := newConn(payments, postgres, 5432)
	timeout.EventKind = flowv1.EventKind_CONNECT_TIMEOUT
	for _, tc := range []struct {
		name string
		f    *flowv1.Flow
		want int // records: one per side whose policies decided
	}{
		{"a new connection the destination's policy allowed", newConn(gateway, payments, 8080), 1},
		{"a new connection both sides' policies allowed", newConn(payments, postgres, 5432), 2},
		{"a new connection no policy decided", newConn(loadgen, frontend, 80), 0},
		{"an aggregate record", agg, 0},
		{"a policy drop", drop, 1},
		{"a netfilter drop the policies do not explain", unexplained, 0},
		{"a connect timeout both sides' policies allowed", timeout, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.Enrich(tc.f)
			pvs := PolicyVerdictRecords(tc.f)
			if len(pvs) != tc.want {
				t.Fatalf("derived %d records %v, want %d", len(pvs), pvs, tc.want)
			}
			again := PolicyVerdictRecords(tc.f)
			for i, pv := range pvs {
				if pv.EventKind != flowv1.EventKind_POLICY_VERDICT || pv.Verdict != tc.f.Verdict {
					t.Errorf("derived record %v", pv)
				}
				// Each record speaks for one side, with that side's policies.
				switch pv.TrafficDirection {
				case flowv1.TrafficDirection_INGRESS:
					if len(pv.IngressAllowedBy)+len(pv.IngressDeniedBy) == 0 || len(pv.EgressAllowedBy)+len(pv.EgressDeniedBy) != 0 {
						t.Errorf("INGRESS verdict with policies in %v / %v / %v / %v", pv.IngressAllowedBy, pv.IngressDeniedBy, pv.EgressAllowedBy, pv.EgressDeniedBy)
					}
				case flowv1.TrafficDirection_EGRESS:
					if len(pv.EgressAllowedBy)+len(pv.EgressDeniedBy) == 0 || len(pv.IngressAllowedBy)+len(pv.IngressDeniedBy) != 0 {
						t.Errorf("EGRESS verdict with policies in %v / %v / %v / %v", pv.IngressAllowedBy, pv.IngressDeniedBy, pv.EgressAllowedBy, pv.EgressDeniedBy)
					}
				default:
					t.Errorf("verdict without a side: %v", pv.TrafficDirection)
				}
				if tc.f.Uuid != "" && (pv.Uuid == tc.f.Uuid || pv.Uuid != again[i].Uuid || len(pv.Uuid) != 36) {
					t.Errorf("uuid %q from %q: want a distinct, stable UUID", pv.Uuid, tc.f.Uuid)
				}
			}
			if len(pvs) == 2 && pvs[0].Uuid == pvs[1].Uuid && pvs[0].Uuid != "" {
				t.Errorf("both sides got the uuid %q", pvs[0].Uuid)
			}
			if tc.f.EventKind == flowv1.EventKind_POLICY_VERDICT {
				t.Error("the original flow was changed")
			}
		})
	}
}
