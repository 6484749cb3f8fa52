package enrich

import (
	"strings"
	"testing"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

func TestDropFieldsGiveEveryDropItsClass(t *testing.T) {
	drop := func(kernel, desc, class string) *flowv1.Flow {
		return &flowv1.Flow{Verdict: flowv1.Verdict_DROPPED, EventKind: flowv1.EventKind_DROP, DropReasonKernel: kernel, DropReasonDesc: desc, DropClass: class}
	}
	for _, tc := range []struct {
		name            string
		f               *flowv1.Flow
		desc, wantClass string
	}{
		{"an older agent's teardown drop", drop("QUEUE_PURGE", "", ""), "QUEUE_PURGE", "teardown"},
		{"an older agent's closed port", drop("NO_SOCKET", "NO_SOCKET", ""), "NO_SOCKET", "no-socket"},
		{"the kernel's name with its prefix", drop("SKB_DROP_REASON_TCP_OLD_SEQUENCE", "", ""), "SKB_DROP_REASON_TCP_OLD_SEQUENCE", "teardown"},
		{"a reason the table does not know", drop("A_REASON_OF_2030", "", ""), "A_REASON_OF_2030", "other"},
		{"no reason at all", drop("", "", ""), "", "other"},
		{"only a description", drop("", "SOCKET_RCVBUFF", ""), "SOCKET_RCVBUFF", "overload"},
		{"the agent's class is kept", drop("NO_SOCKET", "", "no-socket"), "NO_SOCKET", "no-socket"},
		{"the agent's class spelt otherwise is made canonical", drop("NO_SOCKET", "", "No_Socket"), "NO_SOCKET", "no-socket"},
		{"a class no one knows is replaced by the table's", drop("IP_RPFILTER", "", "weird"), "IP_RPFILTER", "routing"},
		{"a POLICY_DENIED record is a policy drop", drop("NETFILTER_DROP", "POLICY_DENIED", "other"), "POLICY_DENIED", "policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			DropFields(tc.f)
			if tc.f.DropReasonDesc != tc.desc || tc.f.DropClass != tc.wantClass {
				t.Errorf("desc %q class %q, want %q %q", tc.f.DropReasonDesc, tc.f.DropClass, tc.desc, tc.wantClass)
			}
		})
	}
	for _, v := range []flowv1.Verdict{flowv1.Verdict_FORWARDED, flowv1.Verdict_AUDIT, flowv1.Verdict_VERDICT_UNKNOWN} {
		f := &flowv1.Flow{Verdict: v, EventKind: flowv1.EventKind_AGGREGATE}
		DropFields(f)
		if f.DropClass != "" || f.DropReasonDesc != "" {
			t.Errorf("a %s record got drop fields %q %q", v, f.DropReasonDesc, f.DropClass)
		}
	}
}

func TestEnrichedDropsAndTheirPolicyVerdictsCarryTheClass(t *testing.T) {
	e := newDemo(t)
	for _, tc := range []struct {
		name   string
		f      *flowv1.Flow
		desc   string
		class  string
		naming int // policy-verdict records derived
	}{
		{"a policy drop", tcpFlow(frontend, postgres, 5432, flowv1.Verdict_DROPPED, "NETFILTER_DROP"), "POLICY_DENIED", "policy", 1},
		{"a netfilter drop the policies do not explain", tcpFlow(gateway, frontend, 80, flowv1.Verdict_DROPPED, "NETFILTER_DROP"), "NETFILTER_DROP", "policy", 0},
		{"a closed port", tcpFlow(frontend, postgres, 5433, flowv1.Verdict_DROPPED, "NO_SOCKET"), "NO_SOCKET", "no-socket", 0},
		{"a queue purged at close", tcpFlow(payments, postgres, 5432, flowv1.Verdict_DROPPED, "QUEUE_PURGE"), "QUEUE_PURGE", "teardown", 0},
		{"a forwarded flow", tcpFlow(payments, postgres, 5432, flowv1.Verdict_FORWARDED, ""), "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.DropReasonDesc = "" // as an older agent sends it
			tc.f.EventKind = flowv1.EventKind_DROP
			e.Enrich(tc.f)
			if tc.f.DropReasonDesc != tc.desc || tc.f.DropClass != tc.class {
				t.Errorf("desc %q class %q, want %q %q", tc.f.DropReasonDesc, tc.f.DropClass, tc.desc, tc.class)
			}
			pvs := PolicyVerdictRecords(tc.f)
			if len(pvs) != tc.naming {
				t.Fatalf("%d policy-verdict records, want %d", len(pvs), tc.naming)
			}
			for _, pv := range pvs {
				if pv.DropClass != tc.class {
					t.Errorf("policy verdict class %q, want %q", pv.DropClass, tc.class)
				}
			}
		})
	}
}

// The node's own namespace is reserved:host (identity 1) and stays so;
// reserved:world (identity 2) is only for addresses that can be outside the
// cluster.
func TestHostStaysHostAndWorldIsOnlyOutside(t *testing.T) {
	e := newDemo(t)
	agentHost := func() *flowv1.Endpoint {
		return &flowv1.Endpoint{Identity: 1, Labels: []string{"reserved:host"}}
	}
	label := func(ep *flowv1.Endpoint) string {
		switch {
		case ep == nil:
			return "none"
		case ep.PodName != "":
			return ep.Namespace + "/" + ep.PodName
		}
		var reserved []string
		for _, l := range ep.Labels {
			if strings.HasPrefix(l, "reserved:") {
				reserved = append(reserved, l)
			}
		}
		if len(reserved) == 0 {
			return "no reserved label"
		}
		return strings.Join(reserved, ",")
	}
	for _, tc := range []struct {
		name               string
		src, dst           string
		srcAgent, dstAgent *flowv1.Endpoint
		wantSrc, wantDst   string
		srcIdentity        uint32
	}{
		{name: "loopback the agent saw in the node's namespace is the host on both ends",
			src: "127.0.0.1", dst: "127.0.0.1", srcAgent: agentHost(), dstAgent: agentHost(),
			wantSrc: "reserved:host", wantDst: "reserved:host", srcIdentity: 1},
		{name: "an IPv6 loopback likewise",
			src: "::1", dst: "::1", srcAgent: agentHost(), dstAgent: agentHost(), wantSrc: "reserved:host", wantDst: "reserved:host", srcIdentity: 1},
		{name: "loopback without the agent's label is not the world",
			src: "127.0.0.1", dst: "127.0.0.53", wantSrc: "none", wantDst: "none"},
		{name: "a link-local address is not the world",
			src: "169.254.1.1", dst: "169.254.1.2", wantSrc: "none", wantDst: "none"},
		{name: "a host address the cluster does not list stays the host, the internet is the world",
			src: "192.0.2.10", dst: "1.1.1.1", srcAgent: agentHost(),
			wantSrc: "reserved:host", wantDst: "reserved:world", srcIdentity: 1},
		{name: "the node's listed address labelled by the agent gets the node's labels",
			src: nodeIP, dst: "1.1.1.1", srcAgent: agentHost(),
			wantSrc: "reserved:host", wantDst: "reserved:world", srcIdentity: 1},
		{name: "an address the view knows as a pod is the pod",
			src: nodeIP, dst: postgres, srcAgent: agentHost(), dstAgent: agentHost(),
			wantSrc: "reserved:host", wantDst: "databases/postgres-0", srcIdentity: 1},
		{name: "without the agent's label an unknown public address is the world",
			src: frontend, dst: "8.8.8.8", wantSrc: "frontend/frontend-85b6f9d7c4-h8n3w", wantDst: "reserved:world"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tcpFlow(tc.src, tc.dst, 5432, flowv1.Verdict_DROPPED, "NO_SOCKET")
			if strings.Contains(tc.src, ":") {
				f.IP.IpVersion = flowv1.IPVersion_IPv6
			}
			f.Source, f.Destination = tc.srcAgent, tc.dstAgent
			e.Enrich(f)
			if got := label(f.Source); got != tc.wantSrc {
				t.Errorf("source %s is %q, want %q", tc.src, got, tc.wantSrc)
			}
			if got := label(f.Destination); got != tc.wantDst {
				t.Errorf("destination %s is %q, want %q", tc.dst, got, tc.wantDst)
			}
			if tc.srcIdentity != 0 && f.Source.GetIdentity() != tc.srcIdentity {
				t.Errorf("source identity %d, want %d", f.Source.GetIdentity(), tc.srcIdentity)
			}
			for _, ep := range []*flowv1.Endpoint{f.Source, f.Destination} {
				if label(ep) == "reserved:world" && ep.GetIdentity() != 2 {
					t.Errorf("world with identity %d", ep.GetIdentity())
				}
			}
		})
	}
	// The node's listed address carries the node's labels once resolved.
	f := tcpFlow(nodeIP, "1.1.1.1", 443, flowv1.Verdict_FORWARDED, "")
	f.Source = agentHost()
	e.Enrich(f)
	if !strings.Contains(strings.Join(f.Source.GetLabels(), ","), "k8s:kubernetes.io/hostname=trawl-demo-node") {
		t.Errorf("the node's address lacks the node's labels: %v", f.Source.GetLabels())
	}
}
