package policy

import (
	"net/netip"
	"strings"
	"testing"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

func names(ps []*flowv1.Policy) string {
	var s []string
	for _, p := range ps {
		if p.Kind != "NetworkPolicy" {
			s = append(s, "bad-kind:"+p.Kind)
		}
		s = append(s, p.Namespace+"/"+p.Name)
	}
	return strings.Join(s, ",")
}

const demoPolicies = `
metadata: {name: default-deny, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
metadata: {name: a-from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}], ports: [{port: 80}]}]
---
metadata: {name: a-from-y-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}]}]
---
metadata: {name: a-to-world, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]}]
`

func TestVerdictsNameTheDecidingPolicies(t *testing.T) {
	pods, nss := e2eCluster()
	eng, err := New(Input{Pods: pods, Namespaces: nss, Policies: parsePolicies(t, demoPolicies)})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(k string) Endpoint { return Endpoint{Pod: eng.PodByKey(split(k))} }
	ext := func(ip string) Endpoint { return Endpoint{IP: netip.MustParseAddr(ip)} }
	cases := []struct {
		name                 string
		src, dst             Endpoint
		port                 uint16
		proto                Protocol
		inAllowed, egAllowed bool
		inAllow, inDeny      string
		egAllow, egDeny      string
	}{
		{name: "allowed ingress lists every policy that allows it", src: pod("y/b"), dst: pod("x/a"), port: 80, proto: ProtoTCP,
			inAllowed: true, egAllowed: true, inAllow: "x/a-from-y,x/a-from-y-b"},
		{name: "allowed ingress lists only the policies whose rules match", src: pod("y/b"), dst: pod("x/a"), port: 81, proto: ProtoTCP,
			inAllowed: true, egAllowed: true, inAllow: "x/a-from-y-b"},
		{name: "denied ingress lists every policy isolating the pod", src: pod("y/c"), dst: pod("x/a"), port: 81, proto: ProtoTCP,
			egAllowed: true, inDeny: "x/a-from-y,x/a-from-y-b,x/default-deny"},
		{name: "denied egress lists the egress-isolating policies only", src: pod("x/b"), dst: pod("y/a"), port: 80, proto: ProtoTCP,
			inAllowed: true, egDeny: "x/default-deny"},
		{name: "egress to the world through an ipBlock", src: pod("x/a"), dst: ext("1.1.1.1"), port: 443, proto: ProtoTCP,
			inAllowed: true, egAllowed: true, egAllow: "x/a-to-world"},
		{name: "egress to an excepted address is denied", src: pod("x/a"), dst: ext("10.9.9.9"), port: 443, proto: ProtoTCP,
			inAllowed: true, egDeny: "x/a-to-world,x/default-deny"},
		{name: "ingress from the world into an isolated pod is denied", src: ext("1.1.1.1"), dst: pod("x/b"), port: 80, proto: ProtoTCP,
			egAllowed: true, inDeny: "x/default-deny"},
		{name: "traffic between non-isolated pods names no policy", src: pod("y/a"), dst: pod("z/b"), port: 80, proto: ProtoTCP,
			inAllowed: true, egAllowed: true},
		{name: "ICMP passes a rule without ports", src: pod("y/b"), dst: pod("x/a"), proto: ProtoOther,
			inAllowed: true, egAllowed: true, inAllow: "x/a-from-y-b"},
		{name: "ICMP never matches a rule with ports", src: pod("y/a"), dst: pod("x/a"), proto: ProtoOther,
			egAllowed: true, inDeny: "x/a-from-y,x/a-from-y-b,x/default-deny"},
		{name: "address-only source that is a pod's address gets no pod treatment", src: ext("10.0.2.11"), dst: pod("x/a"), port: 81, proto: ProtoTCP,
			egAllowed: true, inDeny: "x/a-from-y,x/a-from-y-b,x/default-deny"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := eng.Evaluate(tc.src, tc.dst, tc.port, tc.proto)
			if v.Ingress.Allowed != tc.inAllowed || v.Egress.Allowed != tc.egAllowed {
				t.Errorf("allowed: ingress %v egress %v, want %v %v", v.Ingress.Allowed, v.Egress.Allowed, tc.inAllowed, tc.egAllowed)
			}
			for _, c := range []struct{ what, got, want string }{
				{"ingress_allowed_by", names(v.Ingress.AllowedBy), tc.inAllow},
				{"ingress_denied_by", names(v.Ingress.DeniedBy), tc.inDeny},
				{"egress_allowed_by", names(v.Egress.AllowedBy), tc.egAllow},
				{"egress_denied_by", names(v.Egress.DeniedBy), tc.egDeny},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			// The cached answer is the same.
			if v2 := eng.Evaluate(tc.src, tc.dst, tc.port, tc.proto); v2 != v {
				t.Errorf("second evaluation was not served from the cache")
			}
		})
	}
}

func TestNamedPortsResolveAgainstEachDestinationPod(t *testing.T) {
	web := &Pod{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"},
		IPs: []netip.Addr{netip.MustParseAddr("10.1.0.1")}, Ports: []NamedPort{{"http", 8080, ProtoTCP}}}
	legacy := &Pod{Namespace: "shop", Name: "legacy", Labels: map[string]string{"app": "web"},
		IPs: []netip.Addr{netip.MustParseAddr("10.1.0.2")}, Ports: []NamedPort{{"http", 80, ProtoTCP}}}
	client := &Pod{Namespace: "shop", Name: "client", Labels: map[string]string{"app": "client"},
		IPs: []netip.Addr{netip.MustParseAddr("10.1.0.3")}}
	pols := parsePolicies(t, `
metadata: {name: web-http, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: http}]}]
---
metadata: {name: client-http, namespace: shop}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{ports: [{port: http}]}]`)
	eng, err := New(Input{Pods: []*Pod{web, legacy, client}, Policies: pols})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		dst   string
		port  uint16
		proto Protocol
		want  bool
	}{
		{"http on web is 8080", "web", 8080, ProtoTCP, true},
		{"port 80 on web is not its http port", "web", 80, ProtoTCP, false},
		{"http on legacy is 80", "legacy", 80, ProtoTCP, true},
		{"8080 on legacy is not its http port", "legacy", 8080, ProtoTCP, false},
		{"the named port's protocol must match", "web", 8080, ProtoUDP, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := eng.Evaluate(Endpoint{Pod: eng.PodByKey("shop", "client")}, Endpoint{Pod: eng.PodByKey("shop", tc.dst)}, tc.port, tc.proto)
			if v.Ingress.Allowed != tc.want || v.Egress.Allowed != tc.want {
				t.Errorf("ingress %v egress %v, want both %v", v.Ingress.Allowed, v.Egress.Allowed, tc.want)
			}
		})
	}
	t.Run("egress by named port to an address that is no pod never matches", func(t *testing.T) {
		v := eng.Evaluate(Endpoint{Pod: eng.PodByKey("shop", "client")}, Endpoint{IP: netip.MustParseAddr("192.0.2.1")}, 8080, ProtoTCP)
		if v.Egress.Allowed {
			t.Errorf("egress allowed by a named port to a non-pod")
		}
	})
}

func TestPodsUnknownToTheEngineAreJudgedLikeKnownOnes(t *testing.T) {
	pods, nss := e2eCluster()
	eng, err := New(Input{Pods: pods, Namespaces: nss, Policies: parsePolicies(t, demoPolicies)})
	if err != nil {
		t.Fatal(err)
	}
	// A pod that has gone since the engine was built: same labels as y/b.
	gone := &Pod{Namespace: "y", Name: "b-old", Labels: map[string]string{"pod": "b"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.2.99")}}
	goneX := &Pod{Namespace: "x", Name: "a-old", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.99")}}
	for _, port := range []uint16{80, 81} {
		known := eng.Evaluate(Endpoint{Pod: eng.PodByKey("y", "b")}, Endpoint{Pod: eng.PodByKey("x", "a")}, port, ProtoTCP)
		slow := eng.Evaluate(Endpoint{Pod: gone}, Endpoint{Pod: goneX}, port, ProtoTCP)
		if names(known.Ingress.AllowedBy) != names(slow.Ingress.AllowedBy) || known.Allowed() != slow.Allowed() {
			t.Errorf("port %d: unknown pods judged %v %s, known %v %s", port,
				slow.Allowed(), names(slow.Ingress.AllowedBy), known.Allowed(), names(known.Ingress.AllowedBy))
		}
	}
	unknownNS := &Pod{Namespace: "w", Name: "q", Labels: map[string]string{"pod": "b"}}
	if v := eng.Evaluate(Endpoint{Pod: unknownNS}, Endpoint{Pod: eng.PodByKey("x", "a")}, 81, ProtoTCP); v.Ingress.Allowed {
		t.Errorf("a pod of an unknown namespace matched a namespaceSelector")
	}
}

func TestBrokenPoliciesAreReportedAndSkipped(t *testing.T) {
	pods, nss := e2eCluster()
	pols := parsePolicies(t, `
metadata: {name: bad-cidr, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: not-a-cidr}}]}]
---
metadata: {name: bad-endport, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 90, endPort: 80}]}]
---
metadata: {name: bad-operator, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: a, operator: Near}]}
---
metadata: {name: good, namespace: "y"}
spec: {podSelector: {}}`)
	eng, err := New(Input{Pods: pods, Namespaces: nss, Policies: pols})
	if err == nil {
		t.Fatal("no error for three broken policies")
	}
	for _, n := range []string{"x/bad-cidr", "x/bad-endport", "x/bad-operator"} {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name %s", err, n)
		}
	}
	if v := eng.Evaluate(Endpoint{Pod: eng.PodByKey("x", "a")}, Endpoint{Pod: eng.PodByKey("y", "a")}, 80, ProtoTCP); v.Ingress.Allowed || names(v.Ingress.DeniedBy) != "y/good" {
		t.Errorf("the good policy did not apply: %+v", v.Ingress)
	}
	if v := eng.Evaluate(Endpoint{Pod: eng.PodByKey("y", "a")}, Endpoint{Pod: eng.PodByKey("x", "a")}, 80, ProtoTCP); !v.Allowed() {
		t.Errorf("a skipped policy isolated a pod: %+v", v)
	}
}

func TestANewEngineSeesRelabelledPods(t *testing.T) {
	pods, nss := e2eCluster()
	pols := parsePolicies(t, `
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]`)
	eng, _ := New(Input{Pods: pods, Namespaces: nss, Policies: pols})
	if !eng.Evaluate(Endpoint{Pod: eng.PodByKey("x", "b")}, Endpoint{Pod: eng.PodByKey("x", "a")}, 80, ProtoTCP).Allowed() {
		t.Fatal("x/b -> x/a denied before relabelling")
	}
	for _, p := range pods {
		if p.Key() == "x/b" {
			p.Labels = map[string]string{"pod": "bb"}
		}
	}
	eng2, _ := New(Input{Pods: pods, Namespaces: nss, Policies: pols})
	if eng2.Evaluate(Endpoint{Pod: eng2.PodByKey("x", "b")}, Endpoint{Pod: eng2.PodByKey("x", "a")}, 80, ProtoTCP).Allowed() {
		t.Error("x/b -> x/a still allowed after x/b lost its label")
	}
}

func TestTheCacheStaysBounded(t *testing.T) {
	pods, nss := e2eCluster()
	eng, _ := New(Input{Pods: pods, Namespaces: nss, Policies: parsePolicies(t, demoPolicies), CacheSize: 64})
	for port := 1; port < 5000; port++ {
		eng.Evaluate(Endpoint{Pod: eng.PodByKey("y", "b")}, Endpoint{Pod: eng.PodByKey("x", "a")}, uint16(port), ProtoTCP)
	}
	total := 0
	for i := range eng.cache.shards {
		total += len(eng.cache.shards[i].m) + len(eng.cache.shards[i].pods)
	}
	if total > 64+cacheShards {
		t.Errorf("cache holds %d entries, bound is 64", total)
	}
}
