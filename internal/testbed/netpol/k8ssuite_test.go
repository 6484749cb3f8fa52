package netpol

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/trawl-dev/trawl/internal/kube"
	"github.com/trawl-dev/trawl/internal/policy"
	"github.com/trawl-dev/trawl/internal/testbed"
)

// The e2e suite's cluster (namespaces x, y, z; pods a, b, c) on real
// namespaces: for each policy set, every ordered pair of pods and every probe
// must connect exactly when the engine says so. The rules come from the
// policy objects (Generate), the verdicts from the engine: two independent
// readings of the same manifests.
func e2eCluster(ip map[string]netip.Addr) string {
	var b strings.Builder
	for _, ns := range []string{"x", "y", "z"} {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata: {name: %q, labels: {ns: %q}}\n---\n", ns, ns)
		for _, p := range []string{"a", "b", "c"} {
			fmt.Fprintf(&b, `apiVersion: v1
kind: Pod
metadata: {name: %q, namespace: %q, labels: {pod: %q}}
spec:
  containers:
  - name: c
    image: x
    ports: [{name: serve-80-tcp, containerPort: 80}, {name: serve-81-tcp, containerPort: 81}, {name: serve-80-udp, containerPort: 80, protocol: UDP}]
status: {podIP: %s}
---
`, p, ns, p, ip[ns+p])
		}
	}
	return b.String()
}

var e2ePolicySets = []struct{ name, yaml string }{
	{"default deny ingress and egress in x", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: "x"}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}`},
	{"podSelector AND namespaceSelector with In and NotIn", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bc-not-x, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: ["x"]}]}
      podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}`},
	{"podSelector OR namespaceSelector on one named port", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-or-z-on-81, namespace: "y"}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}, {namespaceSelector: {matchLabels: {ns: "z"}}}]
    ports: [{port: serve-81-tcp}]`},
	{"egress to a CIDR with an except, and UDP anywhere", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-cidr, namespace: "z"}
spec:
  podSelector: {matchExpressions: [{key: pod, operator: Exists}]}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.244.0.0/16, except: [EXCEPT/32]}}]
    ports: [{port: 80, endPort: 81, protocol: TCP}]
  - ports: [{protocol: UDP}]`},
	{"policies adding up across namespaces and directions", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: "y"}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-x-80, namespace: "y"}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "x"}}}], ports: [{port: 80}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all-to-c, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: c}}
  ingress: [{}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-egress-udp-only, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{ports: [{port: serve-80-udp, protocol: UDP}]}]`},
}

func TestGeneratedRulesMatchTheEngineOnTheE2ECluster(t *testing.T) {
	var names []string
	for _, ns := range []string{"x", "y", "z"} {
		for _, p := range []string{"a", "b", "c"} {
			names = append(names, ns+p)
		}
	}
	bed := newBed(t, names...)
	ips := map[string]netip.Addr{}
	pods := map[string]*testbed.Pod{}
	for _, p := range bed.Pods {
		ips[p.PodName] = p.IP
		pods[p.PodName[:1]+"/"+p.PodName[1:]] = p
	}
	serve(t, bed)
	ctx := context.Background()
	table := "trawl_np_" + bed.ID
	t.Cleanup(func() { _ = Remove(ctx, bed.Node.Name, table) })
	probes := []probe{{80, policy.ProtoTCP}, {81, policy.ProtoTCP}, {80, policy.ProtoUDP}}

	for _, set := range e2ePolicySets {
		t.Run(set.name, func(t *testing.T) {
			manifests := e2eCluster(ips) + strings.ReplaceAll(set.yaml, "EXCEPT", ips["yb"].String())
			objs, err := kube.DecodeManifests([]byte(manifests))
			if err != nil {
				t.Fatal(err)
			}
			script, err := Generate(objs, Options{Table: table})
			if err != nil {
				t.Fatal(err)
			}
			if err := Apply(ctx, bed.Node.Name, script); err != nil {
				t.Fatalf("%v\n%s", err, script)
			}
			store := kube.NewStore(kube.StoreConfig{})
			store.ReplaceAll(objs)
			view := store.Rebuild()
			var mu sync.Mutex
			var wg sync.WaitGroup
			var wrong []string
			allowed, denied := 0, 0
			for from, src := range pods {
				for to, dst := range pods {
					if from == to {
						continue
					}
					for _, pr := range probes {
						wg.Add(1)
						go func() {
							defer wg.Done()
							v := view.Engine().Evaluate(policy.Endpoint{Pod: view.Pod(split(from)).Pod}, policy.Endpoint{Pod: view.Pod(split(to)).Pod}, pr.port, pr.proto)
							real := reaches(src, dst.IP, pr, v.Allowed())
							mu.Lock()
							defer mu.Unlock()
							if real {
								allowed++
							} else {
								denied++
							}
							if real != v.Allowed() {
								wrong = append(wrong, fmt.Sprintf("%s -> %s %d/%s: connected %v, engine allowed %v", from, to, pr.port, pr.proto, real, v.Allowed()))
							}
						}()
					}
				}
			}
			wg.Wait()
			if len(wrong) > 0 {
				t.Errorf("%d of %d probes differ:\n%s\nrules:\n%s", len(wrong), allowed+denied, strings.Join(wrong, "\n"), script)
			}
			if denied == 0 {
				t.Errorf("nothing was denied: the rules enforced nothing")
			}
		})
	}
}
