package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// The classic cluster of the Kubernetes network-policy e2e suite: namespaces
// x, y, z (labelled ns=<name>), pods a, b, c in each (labelled pod=<name>),
// serving 80 and 81 over TCP, UDP and SCTP with named ports like the suite's
// "serve-80-tcp". Pod c also carries env=prod for the Exists/DoesNotExist
// cases. Addresses: x=10.0.1.0/24, y=10.0.2.0/24, z=10.0.3.0/24, a=.10, b=.11, c=.12.
var (
	e2eNamespaces = []string{"x", "y", "z"}
	e2ePodNames   = []string{"a", "b", "c"}
)

func e2eCluster() ([]*Pod, []Namespace) {
	var pods []*Pod
	var nss []Namespace
	for ni, ns := range e2eNamespaces {
		nss = append(nss, Namespace{Name: ns, Labels: map[string]string{"ns": ns, "kubernetes.io/metadata.name": ns}})
		for pi, name := range e2ePodNames {
			l := map[string]string{"pod": name}
			if name == "c" {
				l["env"] = "prod"
			}
			p := &Pod{Namespace: ns, Name: name, Labels: l,
				IPs: []netip.Addr{netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", ni+1, 10+pi))}}
			for _, port := range []uint16{80, 81} {
				for _, pr := range []Protocol{ProtoTCP, ProtoUDP, ProtoSCTP} {
					p.Ports = append(p.Ports, NamedPort{Name: fmt.Sprintf("serve-%d-%s", port, strings.ToLower(pr.String())), Port: port, Protocol: pr})
				}
			}
			pods = append(pods, p)
		}
	}
	return pods, nss
}

func parsePolicies(t *testing.T, docs string) []*networkingv1.NetworkPolicy {
	t.Helper()
	var out []*networkingv1.NetworkPolicy
	for _, doc := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var np networkingv1.NetworkPolicy
		if err := yaml.UnmarshalStrict([]byte(doc), &np); err != nil {
			t.Fatalf("policy manifest: %v\n%s", err, doc)
		}
		out = append(out, &np)
	}
	return out
}

// reach is a hand-written expected truth table: every ordered pair of
// distinct pods starts allowed, then the case's own statements flip cells.
type reach map[[2]string]bool

func newReach() reach {
	r := reach{}
	for _, f := range allPodKeys() {
		for _, t := range allPodKeys() {
			if f != t {
				r[[2]string{f, t}] = true
			}
		}
	}
	return r
}

func allPodKeys() []string {
	var out []string
	for _, ns := range e2eNamespaces {
		for _, p := range e2ePodNames {
			out = append(out, ns+"/"+p)
		}
	}
	return out
}

func (r reach) set(from, to string, v bool) {
	if from != to {
		r[[2]string{from, to}] = v
	}
}

// ingress sets every connection into pod to v.
func (r reach) ingress(pod string, v bool) {
	for _, f := range allPodKeys() {
		r.set(f, pod, v)
	}
}

// egress sets every connection out of pod to v.
func (r reach) egress(pod string, v bool) {
	for _, t := range allPodKeys() {
		r.set(pod, t, v)
	}
}

func (r reach) allow(from string, to ...string) {
	for _, t := range to {
		r.set(from, t, true)
	}
}

func (r reach) deny(from string, to ...string) {
	for _, t := range to {
		r.set(from, t, false)
	}
}

type probe struct {
	port  uint16
	proto Protocol
}

func (p probe) String() string { return fmt.Sprintf("%d/%s", p.port, p.proto) }

var (
	tcp80  = probe{80, ProtoTCP}
	tcp81  = probe{81, ProtoTCP}
	udp80  = probe{80, ProtoUDP}
	udp81  = probe{81, ProtoUDP}
	sctp80 = probe{80, ProtoSCTP}
)

type e2eCase struct {
	name     string
	policies string
	probes   []probe
	// expect writes the truth table by hand for one probe.
	expect func(r reach, p probe)
}

func TestKubernetesE2EScenariosMatchHandWrittenTruthTables(t *testing.T) {
	cases := []e2eCase{
		{
			name:     "no policies allow everything",
			probes:   []probe{tcp80, udp81},
			expect:   func(r reach, p probe) {},
			policies: ``,
		},
		{
			name: "default-deny-ingress isolates every pod of x",
			policies: `
metadata: {name: deny-ingress, namespace: x}
spec: {podSelector: {}}`,
			probes: []probe{tcp80, tcp81, udp80},
			expect: func(r reach, p probe) {
				for _, pod := range []string{"x/a", "x/b", "x/c"} {
					r.ingress(pod, false)
				}
			},
		},
		{
			name: "default-deny-all isolates x in both directions",
			policies: `
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}`,
			probes: []probe{tcp80, udp81},
			expect: func(r reach, p probe) {
				for _, pod := range []string{"x/a", "x/b", "x/c"} {
					r.ingress(pod, false)
					r.egress(pod, false)
				}
			},
		},
		{
			name: "ingress allowed from pods of the server namespace chosen by podSelector",
			policies: `
metadata: {name: allow-x-b-to-x-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]`,
			probes: []probe{tcp80, tcp81},
			expect: func(r reach, p probe) {
				r.ingress("x/a", false)
				r.allow("x/b", "x/a")
			},
		},
		{
			name: "ingress allowed from a namespace chosen by namespaceSelector",
			policies: `
metadata: {name: allow-ns-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.ingress("x/a", false)
				for _, f := range []string{"y/a", "y/b", "y/c"} {
					r.allow(f, "x/a")
				}
			},
		},
		{
			name: "namespaceSelector with NotIn matchExpressions admits every other namespace",
			policies: `
metadata: {name: allow-not-x, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.deny("x/b", "x/a")
				r.deny("x/c", "x/a")
			},
		},
		{
			name: "podSelector OR namespaceSelector as two peers",
			policies: `
metadata: {name: allow-b-or-not-x, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}
    - podSelector: {matchLabels: {pod: b}}`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.deny("x/c", "x/a")
			},
		},
		{
			name: "podSelector AND namespaceSelector in one peer",
			policies: `
metadata: {name: allow-b-in-not-x, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}
      podSelector: {matchExpressions: [{key: pod, operator: In, values: [b]}]}`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.ingress("x/a", false)
				r.allow("y/b", "x/a")
				r.allow("z/b", "x/a")
			},
		},
		{
			name: "multiple podSelector values and namespaceSelector in one peer",
			policies: `
metadata: {name: allow-bc-in-not-x, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}
      podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.ingress("x/a", false)
				for _, f := range []string{"y/b", "y/c", "z/b", "z/c"} {
					r.allow(f, "x/a")
				}
			},
		},
		{
			name: "podSelector with In over two values in the server namespace",
			policies: `
metadata: {name: allow-bc, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.ingress("x/a", false)
				r.allow("x/b", "x/a")
				r.allow("x/c", "x/a")
			},
		},
		{
			name: "ingress on port 81 only from namespace y denies port 80 to everyone",
			policies: `
metadata: {name: allow-81-from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]
    ports: [{port: 81, protocol: TCP}]`,
			probes: []probe{tcp80, tcp81},
			expect: func(r reach, p probe) {
				r.ingress("x/a", false)
				if p == tcp81 {
					r.allow("y/a", "x/a")
					r.allow("y/b", "x/a")
					r.allow("y/c", "x/a")
				}
			},
		},
		{
			name: "ingress on one named port",
			policies: `
metadata: {name: allow-serve-80-tcp, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: serve-80-tcp, protocol: TCP}]}]`,
			probes: []probe{tcp80, tcp81, udp80},
			expect: func(r reach, p probe) {
				if p != tcp80 {
					r.ingress("x/a", false)
				}
			},
		},
		{
			name: "egress on one named port resolved against the destination",
			policies: `
metadata: {name: allow-egress-serve-80-tcp, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{ports: [{port: serve-80-tcp}]}]`,
			probes: []probe{tcp80, tcp81},
			expect: func(r reach, p probe) {
				if p == tcp81 {
					r.egress("x/a", false)
				}
			},
		},
		{
			name: "two ingress policies add up",
			policies: `
metadata: {name: allow-from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]
---
metadata: {name: allow-from-z, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.deny("x/b", "x/a")
				r.deny("x/c", "x/a")
			},
		},
		{
			name: "policies on different ports add up",
			policies: `
metadata: {name: allow-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 80}]}]
---
metadata: {name: allow-81-from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}], ports: [{port: 81}]}]`,
			probes: []probe{tcp80, tcp81},
			expect: func(r reach, p probe) {
				if p == tcp81 {
					r.ingress("x/a", false)
					r.allow("y/a", "x/a")
					r.allow("y/b", "x/a")
					r.allow("y/c", "x/a")
				}
			},
		},
		{
			name: "egress allowed only to one namespace",
			policies: `
metadata: {name: egress-to-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]`,
			probes: []probe{tcp80, udp80},
			expect: func(r reach, p probe) {
				r.egress("x/a", false)
				r.allow("x/a", "y/a", "y/b", "y/c")
			},
		},
		{
			name: "default-deny-egress isolates x outbound only",
			policies: `
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				for _, pod := range []string{"x/a", "x/b", "x/c"} {
					r.egress(pod, false)
				}
			},
		},
		{
			name: "egress to a server in a CIDR block",
			policies: `
metadata: {name: egress-to-y-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.2.11/32}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.egress("x/a", false)
				r.allow("x/a", "y/b")
			},
		},
		{
			name: "egress to a CIDR block with an except clause",
			policies: `
metadata: {name: egress-except-y-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.2.11/32]}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.deny("x/a", "y/b")
			},
		},
		{
			name: "ingress from a CIDR block with an except clause",
			policies: `
metadata: {name: ingress-from-x-subnet, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.12/32]}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.ingress("y/a", false)
				r.allow("x/a", "y/a")
				r.allow("x/b", "y/a")
			},
		},
		{
			name: "ingress and egress rules in the same policy",
			policies: `
metadata: {name: a-talks-to-b-only, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
  egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.ingress("x/a", false)
				r.egress("x/a", false)
				r.allow("x/b", "x/a")
				r.allow("x/a", "x/b")
			},
		},
		{
			name: "endPort opens a port range",
			policies: `
metadata: {name: allow-80-to-81, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 80, endPort: 81, protocol: TCP}]}]`,
			probes: []probe{tcp80, tcp81, udp80},
			expect: func(r reach, p probe) {
				if p == udp80 {
					r.ingress("x/a", false)
				}
			},
		},
		{
			name: "endPort range that starts above the probed port",
			policies: `
metadata: {name: allow-81-to-90, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 81, endPort: 90}]}]`,
			probes: []probe{tcp80, tcp81},
			expect: func(r reach, p probe) {
				if p == tcp80 {
					r.ingress("x/a", false)
				}
			},
		},
		{
			name: "UDP-only rule denies TCP on the same port",
			policies: `
metadata: {name: allow-udp-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 80, protocol: UDP}]}]`,
			probes: []probe{tcp80, udp80, udp81},
			expect: func(r reach, p probe) {
				if p != udp80 {
					r.ingress("x/a", false)
				}
			},
		},
		{
			name: "SCTP-only rule denies TCP on the same port",
			policies: `
metadata: {name: allow-sctp-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 80, protocol: SCTP}]}]`,
			probes: []probe{tcp80, sctp80},
			expect: func(r reach, p probe) {
				if p != sctp80 {
					r.ingress("x/a", false)
				}
			},
		},
		{
			name: "port without a number allows every port of its protocol",
			policies: `
metadata: {name: allow-all-udp, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{protocol: UDP}]}]`,
			probes: []probe{tcp80, udp80, udp81},
			expect: func(r reach, p probe) {
				if p.proto == ProtoTCP {
					r.ingress("x/a", false)
				}
			},
		},
		{
			name: "allow-all rule '- {}' on top of default deny opens everything",
			policies: `
metadata: {name: deny-ingress, namespace: x}
spec: {podSelector: {}}
---
metadata: {name: allow-all, namespace: x}
spec:
  podSelector: {}
  ingress: [{}]`,
			probes: []probe{tcp80, udp81},
			expect: func(r reach, p probe) {},
		},
		{
			name: "empty namespaceSelector selects pods of every namespace",
			policies: `
metadata: {name: allow-b-anywhere, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.ingress("x/a", false)
				r.allow("x/b", "x/a")
				r.allow("y/b", "x/a")
				r.allow("z/b", "x/a")
			},
		},
		{
			name: "empty podSelector peer selects every pod of the policy's namespace only",
			policies: `
metadata: {name: allow-same-namespace, namespace: "y"}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				for _, pod := range []string{"y/a", "y/b", "y/c"} {
					r.ingress(pod, false)
					for _, f := range []string{"y/a", "y/b", "y/c"} {
						r.allow(f, pod)
					}
				}
			},
		},
		{
			name: "Exists and DoesNotExist select by label presence",
			policies: `
metadata: {name: prod-isolated, namespace: z}
spec:
  podSelector: {matchExpressions: [{key: env, operator: Exists}]}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: env, operator: DoesNotExist}]}}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.ingress("z/c", false)
				for _, f := range []string{"x/a", "x/b", "y/a", "y/b", "z/a", "z/b"} {
					r.allow(f, "z/c")
				}
			},
		},
		{
			name: "namespaceSelector In over two namespaces",
			policies: `
metadata: {name: allow-x-and-z, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [x, z]}]}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.deny("y/a", "y/b")
				r.deny("y/c", "y/b")
			},
		},
		{
			name: "Egress policyType without rules denies all egress of the selected pod",
			policies: `
metadata: {name: deny-egress-a, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]`,
			probes: []probe{udp80},
			expect: func(r reach, p probe) {
				r.egress("y/a", false)
			},
		},
		{
			name: "egress rules are ignored when policyTypes lists only Ingress",
			policies: `
metadata: {name: ingress-only, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress: [{}]
  egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {},
		},
		{
			name: "implied policyTypes include Egress when egress rules exist",
			policies: `
metadata: {name: implied-types, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: a}}
  egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.ingress("y/a", false)
				r.egress("y/a", false)
				r.allow("y/a", "y/b")
			},
		},
		{
			name: "egress deny in the source and ingress allow at the destination still deny",
			policies: `
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}
---
metadata: {name: allow-from-x-a, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]`,
			probes: []probe{tcp80},
			expect: func(r reach, p probe) {
				r.egress("x/a", false)
				r.ingress("y/a", false)
			},
		},
		{
			name: "egress port rule and ingress port rule must both match",
			policies: `
metadata: {name: egress-80, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{ports: [{port: 80}]}]
---
metadata: {name: ingress-81, namespace: "y"}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 81}]}]`,
			probes: []probe{tcp80, tcp81},
			expect: func(r reach, p probe) {
				for _, to := range []string{"y/a", "y/b", "y/c"} {
					if p == tcp80 {
						r.ingress(to, false)
					}
				}
				for _, from := range []string{"x/a", "x/b", "x/c"} {
					if p == tcp81 {
						r.egress(from, false)
					}
				}
			},
		},
	}
	pods, nss := e2eCluster()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := New(Input{Pods: pods, Namespaces: nss, Policies: parsePolicies(t, tc.policies)})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.probes {
				want := newReach()
				tc.expect(want, p)
				var wrong []string
				for _, from := range allPodKeys() {
					for _, to := range allPodKeys() {
						if from == to {
							continue
						}
						src, dst := eng.PodByKey(split(from)), eng.PodByKey(split(to))
						v := eng.Evaluate(Endpoint{Pod: src}, Endpoint{Pod: dst}, p.port, p.proto)
						if v.Allowed() != want[[2]string{from, to}] {
							wrong = append(wrong, fmt.Sprintf("%s -> %s: got allowed=%v", from, to, v.Allowed()))
						}
						checkLists(t, v)
					}
				}
				if len(wrong) > 0 {
					sort.Strings(wrong)
					t.Errorf("probe %s: %d cells differ from the expected truth table:\n%s", p, len(wrong), strings.Join(wrong, "\n"))
				}
			}
		})
	}
}

func split(key string) (string, string) {
	ns, name, _ := strings.Cut(key, "/")
	return ns, name
}

// checkLists asserts the invariants of the policy lists: allowed_by only
// when allowed by an isolating policy, denied_by only when denied, nothing
// when not isolated.
func checkLists(t *testing.T, v *Verdict) {
	t.Helper()
	for dir, d := range map[string]DirectionVerdict{"ingress": v.Ingress, "egress": v.Egress} {
		switch {
		case !d.Isolated && (len(d.AllowedBy) > 0 || len(d.DeniedBy) > 0 || !d.Allowed):
			t.Errorf("%s: not isolated but lists policies or denies: %+v", dir, d)
		case d.Isolated && d.Allowed && (len(d.AllowedBy) == 0 || len(d.DeniedBy) > 0):
			t.Errorf("%s: allowed but lists are wrong: %+v", dir, d)
		case d.Isolated && !d.Allowed && (len(d.DeniedBy) == 0 || len(d.AllowedBy) > 0):
			t.Errorf("%s: denied but lists are wrong: %+v", dir, d)
		}
	}
}
