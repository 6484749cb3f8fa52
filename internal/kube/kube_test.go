package kube

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/dev/cputest"
	"github.com/trawl-dev/trawl/internal/policy"
)

const clusterYAML = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: payments}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {zone: a}}
status: {addresses: [{type: InternalIP, address: 192.168.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-7d9f
  namespace: shop
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: d1, controller: true}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: report-123
  namespace: shop
  ownerReferences: [{apiVersion: batch/v1, kind: CronJob, name: report, uid: c1, controller: true}]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-7d9f-abcde
    namespace: shop
    uid: p1
    labels: {app: web, pod-template-hash: 7d9f}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d9f, uid: r1, controller: true}]
  spec:
    nodeName: node-1
    containers: [{name: web, image: x, ports: [{name: http, containerPort: 8080}]}]
  status: {podIP: 10.244.1.10, podIPs: [{ip: 10.244.1.10}]}
- apiVersion: v1
  kind: Pod
  metadata:
    name: db-0
    namespace: shop
    uid: p2
    labels: {app: db}
    ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: s1, controller: true}]
  spec: {nodeName: node-2, containers: [{name: db, image: x}]}
  status: {podIP: 10.244.2.10}
- apiVersion: v1
  kind: Pod
  metadata:
    name: report-123-xyz
    namespace: shop
    uid: p3
    ownerReferences: [{apiVersion: batch/v1, kind: Job, name: report-123, uid: j1, controller: true}]
  spec: {nodeName: node-1, containers: [{name: r, image: x}]}
  status: {podIP: 10.244.1.11}
- apiVersion: v1
  kind: Pod
  metadata:
    name: agent-x
    namespace: shop
    uid: p4
    ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: ds1, controller: true}]
  spec: {nodeName: node-1, hostNetwork: true, containers: [{name: a, image: x}]}
  status: {podIP: 192.168.0.1}
- apiVersion: v1
  kind: Pod
  metadata: {name: orphan-rs-pod, namespace: shop, uid: p5,
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: gone-rs, uid: r9, controller: true}]}
  spec: {nodeName: node-1, containers: [{name: a, image: x}]}
  status: {podIP: 10.244.1.12}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.10, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.10]}]
ports: [{port: 8080, protocol: TCP}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored, namespace: shop}
data: {a: b}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
`

func writeManifests(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func openManifests(t *testing.T, dir string, cfg StoreConfig) *Store {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := OpenSource(ctx, &ManifestSource{Path: dir, Interval: 20 * time.Millisecond}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestManifestsResolveAddressesToEndpoints(t *testing.T) {
	s := openManifests(t, writeManifests(t, clusterYAML), StoreConfig{})
	v := s.View()
	now := time.Now()
	cases := []struct {
		name, ip, local string
		wantPod         string
		wantLabels      string
		wantWorkload    string
		wantNode        string
	}{
		{name: "a Deployment's pod names the Deployment through its ReplicaSet", ip: "10.244.1.10", local: "node-1",
			wantPod: "shop/web-7d9f-abcde", wantWorkload: "Deployment/web", wantNode: "node-1",
			wantLabels: "k8s:app=web,k8s:io.kubernetes.pod.namespace=shop,k8s:pod-template-hash=7d9f"},
		{name: "a StatefulSet's pod names the StatefulSet", ip: "10.244.2.10", local: "node-1",
			wantPod: "shop/db-0", wantWorkload: "StatefulSet/db", wantNode: "node-2",
			wantLabels: "k8s:app=db,k8s:io.kubernetes.pod.namespace=shop"},
		{name: "a Job's pod names the CronJob", ip: "10.244.1.11", local: "node-1",
			wantPod: "shop/report-123-xyz", wantWorkload: "CronJob/report", wantNode: "node-1",
			wantLabels: "k8s:io.kubernetes.pod.namespace=shop"},
		{name: "a ReplicaSet whose metadata is unknown stays a ReplicaSet", ip: "10.244.1.12", local: "node-1",
			wantPod: "shop/orphan-rs-pod", wantWorkload: "ReplicaSet/gone-rs", wantNode: "node-1",
			wantLabels: "k8s:io.kubernetes.pod.namespace=shop"},
		{name: "the local node's address is reserved:host", ip: "192.168.0.1", local: "node-1",
			wantNode: "node-1", wantLabels: "reserved:host,k8s:zone=a"},
		{name: "another node's address is reserved:remote-node", ip: "192.168.0.1", local: "node-2",
			wantNode: "node-1", wantLabels: "reserved:remote-node,k8s:zone=a"},
		{name: "an address outside the cluster is reserved:world", ip: "8.8.8.8", local: "node-1",
			wantLabels: "reserved:world"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ep := v.Lookup(netip.MustParseAddr(tc.ip), now).Proto(tc.local)
			got := ep.Namespace + "/" + ep.PodName
			if ep.PodName == "" {
				got = ""
			}
			if got != tc.wantPod {
				t.Errorf("pod %q, want %q", got, tc.wantPod)
			}
			if l := strings.Join(ep.Labels, ","); l != tc.wantLabels {
				t.Errorf("labels %q, want %q", l, tc.wantLabels)
			}
			var w string
			for _, x := range ep.Workloads {
				w += x.Kind + "/" + x.Name
			}
			if w != tc.wantWorkload {
				t.Errorf("workload %q, want %q", w, tc.wantWorkload)
			}
			if ep.NodeName != tc.wantNode {
				t.Errorf("node %q, want %q", ep.NodeName, tc.wantNode)
			}
		})
	}
	t.Run("ClusterIP and backend address name the service", func(t *testing.T) {
		for _, c := range []struct {
			ip   string
			port uint16
			want string
		}{{"10.96.0.10", 80, "shop/web"}, {"10.244.1.10", 8080, "shop/web"}, {"10.96.0.10", 81, ""}, {"10.244.2.10", 8080, ""}} {
			got := ""
			if s := v.Service(netip.MustParseAddr(c.ip), c.port, policy.ProtoTCP); s != nil {
				got = s.Namespace + "/" + s.Name
			}
			if got != c.want {
				t.Errorf("%s:%d → %q, want %q", c.ip, c.port, got, c.want)
			}
		}
	})
	t.Run("policies are compiled from the manifests", func(t *testing.T) {
		web, db := v.Pod("shop", "web-7d9f-abcde"), v.Pod("shop", "db-0")
		vd := v.Engine().Evaluate(policy.Endpoint{Pod: web.Pod}, policy.Endpoint{Pod: db.Pod}, 5432, policy.ProtoTCP)
		if !vd.Allowed() || len(vd.Ingress.AllowedBy) != 1 || vd.Ingress.AllowedBy[0].Name != "db-from-web" {
			t.Errorf("web → db:5432 verdict %+v", vd.Ingress)
		}
	})
}

func TestBadManifestsAreOneClearError(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"broken YAML names the file and document", "apiVersion: v1\nkind: Pod\n---\nkind: [\n", "document 2"},
		{"an object without kind is refused", "metadata: {name: x}\n", "without kind"},
		{"a wrongly typed field is refused", "apiVersion: v1\nkind: Pod\nmetadata: {name: 3}\n", "v1 Pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeManifests(t, tc.content)
			_, err := OpenSource(context.Background(), &ManifestSource{Path: dir}, StoreConfig{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "cluster.yaml") {
				t.Errorf("error %v, want one naming cluster.yaml and %q", err, tc.want)
			}
		})
	}
	if _, err := OpenSource(context.Background(), &ManifestSource{Path: "/nonexistent/trawl"}, StoreConfig{}); err == nil {
		t.Error("no error for a missing path")
	}
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func waitView(t *testing.T, s *Store, ok func(*View) bool) *View {
	t.Helper()
	deadline := time.After(time.Second)
	for {
		ch := s.Changed()
		if v := s.View(); ok(v) {
			return v
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("the change was not visible within 1 s")
		}
	}
}

func TestAReusedAddressKeepsNamingTheOldPodForEarlierFlows(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	dir := writeManifests(t, `
apiVersion: v1
kind: Pod
metadata: {name: old, namespace: shop, uid: u1}
status: {podIP: 10.244.1.50}
`)
	s := openManifests(t, dir, StoreConfig{Now: clk.now, Grace: time.Minute})
	ip := netip.MustParseAddr("10.244.1.50")

	// At t0+10s the old pod goes and a new one takes the address at t0+20s.
	clk.set(t0.Add(10 * time.Second))
	writeFile(t, dir, `apiVersion: v1
kind: Namespace
metadata: {name: shop}
`)
	waitView(t, s, func(v *View) bool { return v.Pod("shop", "old") == nil })
	clk.set(t0.Add(20 * time.Second))
	writeFile(t, dir, `apiVersion: v1
kind: Pod
metadata: {name: new, namespace: shop, uid: u2}
status: {podIP: 10.244.1.50}
`)
	v := waitView(t, s, func(v *View) bool { return v.Pod("shop", "new") != nil })

	for _, tc := range []struct {
		name string
		at   time.Time
		want string
	}{
		{"a flow from before the change names the old pod", t0.Add(5 * time.Second), "old"},
		{"a flow from before the first load names the first owner", t0.Add(-time.Hour), "old"},
		{"a late flow in the gap names the pod that just left", t0.Add(15 * time.Second), "old"},
		{"a flow after the reuse names the new pod", t0.Add(25 * time.Second), "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := v.Lookup(ip, tc.at).Proto("").PodName; got != tc.want {
				t.Errorf("pod %q, want %q", got, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, dir, content string) {
	t.Helper()
	// A new size or mtime is how the poller notices; rewrite via rename so a
	// reader never sees half a file.
	tmp := filepath.Join(dir, ".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Duration(len(content)) * time.Millisecond)
	_ = os.Chtimes(tmp, future, future)
	if err := os.Rename(tmp, filepath.Join(dir, "cluster.yaml")); err != nil {
		t.Fatal(err)
	}
}

func TestABrokenReloadKeepsTheLastGoodState(t *testing.T) {
	dir := writeManifests(t, clusterYAML)
	s := openManifests(t, dir, StoreConfig{})
	writeFile(t, dir, "apiVersion: v1\nkind: Pod\nmetadata: [not, a, map]\n")
	// Give the poller several rounds; the state must not change.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if s.View().Pod("shop", "db-0") == nil {
			t.Fatal("a manifest that does not parse replaced the state")
		}
		time.Sleep(20 * time.Millisecond)
	}
	writeFile(t, dir, clusterYAML+"\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: late, namespace: shop}\nstatus: {podIP: 10.244.9.9}\n")
	waitView(t, s, func(v *View) bool { return v.Pod("shop", "late") != nil })
}

func TestDualStackPodsAreFoundByEitherAddress(t *testing.T) {
	s := openManifests(t, writeManifests(t, `
apiVersion: v1
kind: Pod
metadata: {name: ds, namespace: shop, uid: d1}
status: {podIP: 10.244.3.3, podIPs: [{ip: 10.244.3.3}, {ip: "fd00::3"}]}
`), StoreConfig{})
	v := s.View()
	for _, ip := range []string{"10.244.3.3", "fd00::3", "::ffff:10.244.3.3"} {
		if got := v.Lookup(netip.MustParseAddr(ip).Unmap(), time.Now()).Proto("").PodName; got != "ds" {
			t.Errorf("%s → %q, want ds", ip, got)
		}
	}
}

// BenchmarkRebuild: publishing a new View (IP index, history merge, services
// and the policy engine) for 10,000 pods and 1,000 policies.
func BenchmarkRebuild(b *testing.B) {
	s := NewStore(StoreConfig{})
	s.ReplaceAll(Synthetic(100, 100, 10))
	s.Rebuild()
	cpu := cputest.Start(b)
	for i := 0; i < b.N; i++ {
		s.Rebuild()
	}
	cpu.Report(b)
}
