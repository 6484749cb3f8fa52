package netpol

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/kube"
	"github.com/trawl-dev/trawl/internal/policy"
	"github.com/trawl-dev/trawl/internal/testbed"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	"github.com/trawl-dev/trawl/relay/enrich"
)

// scenario is a small cluster for the real-namespace test: x/a, x/b, y/a,
// y/b on the bed's addresses, with policies that use named ports, endPort,
// ipBlock with except, namespace and pod selectors, UDP and egress.
func scenario(ip map[string]netip.Addr) string {
	var b strings.Builder
	for _, ns := range []string{"x", "y"} {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata: {name: %q, labels: {ns: %q}}\n---\n", ns, ns)
		for _, p := range []string{"a", "b"} {
			fmt.Fprintf(&b, `apiVersion: v1
kind: Pod
metadata: {name: %q, namespace: %q, labels: {pod: %q}}
spec:
  containers:
  - name: c
    image: x
    ports: [{name: http, containerPort: 80}, {name: alt, containerPort: 81}, {name: dns, containerPort: 80, protocol: UDP}]
status: {podIP: %s}
---
`, p, ns, p, ip[ns+p])
		}
	}
	fmt.Fprintf(&b, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: "x"}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-y-http, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}], ports: [{port: http}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a-81, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}], ports: [{port: 81, protocol: TCP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-egress, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.244.0.0/16, except: [%s/32]}}]
    ports: [{port: 80, endPort: 81, protocol: TCP}]
  - ports: [{port: dns, protocol: UDP}]
`, ip["xb"])
	return b.String()
}

type probe struct {
	port  uint16
	proto policy.Protocol
}

// serve answers TCP 80/81 (accept and close) and UDP 80 (echo) in every pod.
func serve(t *testing.T, bed *testbed.Bed) {
	for _, p := range bed.Pods {
		for _, pr := range []probe{{80, policy.ProtoTCP}, {81, policy.ProtoTCP}, {80, policy.ProtoUDP}} {
			listen(t, p, pr)
		}
	}
}

// listen serves one port in a pod until the test ends: TCP connections are
// accepted and closed, UDP datagrams echoed.
func listen(t *testing.T, p *testbed.Pod, pr probe) {
	t.Helper()
	addr := ":" + strconv.Itoa(int(pr.port))
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	if pr.proto == policy.ProtoTCP {
		ln, err := p.Listen("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return
	}
	pc, err := p.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// newBed builds a bed without the uplink to the root namespace. Proxy ARP
// answers the pods' gateway 169.254.1.1 only when the node has a route to
// it; without the uplink the node has none, so give it a default route into
// a spare veth (removed with the node namespace).
func newBed(t *testing.T, pods ...string) *testbed.Bed {
	t.Helper()
	bed := testbed.NewT(t, testbed.Config{Pods: pods, NoUplink: true})
	for _, step := range [][]string{
		{"ip", "link", "add", "np0", "type", "veth", "peer", "name", "np1"},
		{"ip", "link", "set", "np0", "up"},
		{"ip", "link", "set", "np1", "up"},
		{"ip", "route", "add", "default", "dev", "np0"},
	} {
		if _, err := bed.Node.Run(context.Background(), step[0], step[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	return bed
}

// connect reports whether a real connection (TCP handshake, or a UDP echo)
// from src to dst succeeds.
func connect(src *testbed.Pod, dst netip.Addr, pr probe) bool {
	return connectWithin(src, dst, pr, 400*time.Millisecond)
}

// reaches is connect when the expected answer is known: a failure where
// success is expected is retried with a generous timeout, so that a loaded
// machine (slow thread or ARP) is not read as a policy drop. A success is
// never retried: a connection that went through was not dropped.
func reaches(src *testbed.Pod, dst netip.Addr, pr probe, expect bool) bool {
	if connectWithin(src, dst, pr, 400*time.Millisecond) {
		return true
	}
	return expect && connectWithin(src, dst, pr, 3*time.Second)
}

func connectWithin(src *testbed.Pod, dst netip.Addr, pr probe, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addr := net.JoinHostPort(dst.String(), strconv.Itoa(int(pr.port)))
	if pr.proto == policy.ProtoTCP {
		c, err := src.Dial(ctx, "tcp4", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	c, err := src.Dial(ctx, "udp4", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	buf := make([]byte, 8)
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == "ping"
}

var counterRE = regexp.MustCompile(`counter packets (\d+)`)

// dropped sums the packets counted by the drop rules of chain.
func dropped(t *testing.T, bed *testbed.Bed, table, chain string) int {
	t.Helper()
	out, err := bed.Node.Run(context.Background(), "nft", "list", "chain", "ip", table, chain)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range counterRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

func TestGeneratedRulesEnforceWhatTheEngineDecides(t *testing.T) {
	bed := newBed(t, "xa", "xb", "ya", "yb")
	ips := map[string]netip.Addr{}
	pods := map[string]*testbed.Pod{}
	for _, p := range bed.Pods {
		ips[p.PodName] = p.IP
		pods[p.PodName[:1]+"/"+p.PodName[1:]] = p
	}
	objs, err := kube.DecodeManifests([]byte(scenario(ips)))
	if err != nil {
		t.Fatal(err)
	}
	table := "trawl_np_" + bed.ID
	script, err := Generate(objs, Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := Apply(ctx, bed.Node.Name, script); err != nil {
		t.Fatalf("%v\n%s", err, script)
	}
	// Applying again replaces the table instead of failing or doubling it.
	if err := Apply(ctx, bed.Node.Name, script); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	t.Cleanup(func() { _ = Remove(ctx, bed.Node.Name, table) })
	serve(t, bed)

	store := kube.NewStore(kube.StoreConfig{})
	store.ReplaceAll(objs)
	view := store.Rebuild()
	eng := view.Engine()

	keys := []string{"x/a", "x/b", "y/a", "y/b"}
	probes := []probe{{80, policy.ProtoTCP}, {81, policy.ProtoTCP}, {80, policy.ProtoUDP}}
	type result struct {
		from, to string
		pr       probe
		real     bool
		engine   *policy.Verdict
	}
	var results []result
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, from := range keys {
		for _, to := range keys {
			if from == to {
				continue
			}
			for _, pr := range probes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					src, dst := view.Pod(split(from)), view.Pod(split(to))
					r := result{from: from, to: to, pr: pr,
						engine: eng.Evaluate(policy.Endpoint{Pod: src.Pod}, policy.Endpoint{Pod: dst.Pod}, pr.port, pr.proto)}
					r.real = reaches(pods[from], pods[to].IP, pr, r.engine.Allowed())
					mu.Lock()
					results = append(results, r)
					mu.Unlock()
				}()
			}
		}
	}
	wg.Wait()
	allowed, denied := 0, 0
	for _, r := range results {
		if r.real != r.engine.Allowed() {
			t.Errorf("%s -> %s %d/%s: real connection %v, engine says allowed=%v (ingress %+v egress %+v)",
				r.from, r.to, r.pr.port, r.pr.proto, r.real, r.engine.Allowed(), r.engine.Ingress, r.engine.Egress)
		}
		if r.real {
			allowed++
		} else {
			denied++
		}
	}
	if allowed < 5 || denied < 5 {
		t.Errorf("scenario too trivial: %d allowed, %d denied", allowed, denied)
	}
	if t.Failed() {
		t.Logf("rules:\n%s", script)
	}

	// What the relay makes of these connections.
	e := enrich.NewFromStore(store)
	flow := func(from, to string, port uint32, v flowv1.Verdict, reason string) *flowv1.Flow {
		f := &flowv1.Flow{Time: timestamppb.Now(), Verdict: v, DropReasonKernel: reason, DropReasonDesc: reason,
			IP: &flowv1.IP{Source: pods[from].IP.String(), Destination: pods[to].IP.String()},
			L4: &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: 40000, DestinationPort: port}}}}
		e.Enrich(f)
		return f
	}
	t.Run("a connection the rules dropped is reported as a policy drop with the isolating policies", func(t *testing.T) {
		before := dropped(t, bed, table, "pod_x__b_in")
		if connect(pods["y/a"], pods["x/b"].IP, probe{80, policy.ProtoTCP}) {
			t.Fatal("y/a -> x/b:80 connected")
		}
		if dropped(t, bed, table, "pod_x__b_in") <= before {
			t.Fatal("the pod's isolation chain did not count the drop")
		}
		f := flow("y/a", "x/b", 80, flowv1.Verdict_DROPPED, "NETFILTER_DROP")
		if f.DropReasonDesc != "POLICY_DENIED" || names(f.IngressDeniedBy) != "x/b-from-a-81,x/deny-ingress" {
			t.Errorf("desc %q ingress_denied_by %q", f.DropReasonDesc, names(f.IngressDeniedBy))
		}
	})
	t.Run("an allowed connection carries the policies that allowed it", func(t *testing.T) {
		if !reaches(pods["y/b"], pods["x/a"].IP, probe{80, policy.ProtoTCP}, true) {
			t.Fatal("y/b -> x/a:80 did not connect")
		}
		f := flow("y/b", "x/a", 80, flowv1.Verdict_FORWARDED, "")
		if names(f.IngressAllowedBy) != "x/a-from-y-http" || names(f.EgressAllowedBy) != "y/b-egress" {
			t.Errorf("ingress_allowed_by %q egress_allowed_by %q", names(f.IngressAllowedBy), names(f.EgressAllowedBy))
		}
	})
	t.Run("a netfilter drop no policy explains blames no policy", func(t *testing.T) {
		extra := "trawl_extra_" + bed.ID
		rule := fmt.Sprintf("table ip %s {\n\tchain forward {\n\t\ttype filter hook forward priority filter - 10; policy accept;\n\t\tip saddr %s ip daddr %s tcp dport 81 counter drop\n\t}\n}\n",
			extra, pods["y/a"].IP, pods["y/b"].IP)
		if err := Apply(ctx, bed.Node.Name, rule); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = Remove(ctx, bed.Node.Name, extra) })
		if connect(pods["y/a"], pods["y/b"].IP, probe{81, policy.ProtoTCP}) {
			t.Fatal("the extra rule did not drop y/a -> y/b:81")
		}
		if dropped(t, bed, extra, "forward") == 0 {
			t.Fatal("the extra rule counted no drop")
		}
		f := flow("y/a", "y/b", 81, flowv1.Verdict_DROPPED, "NETFILTER_DROP")
		if f.DropReasonDesc != "NETFILTER_DROP" || len(f.IngressDeniedBy)+len(f.EgressDeniedBy) > 0 {
			t.Errorf("desc %q, denied_by %q %q", f.DropReasonDesc, names(f.IngressDeniedBy), names(f.EgressDeniedBy))
		}
	})
}

func names(ps []*flowv1.Policy) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Namespace+"/"+p.Name)
	}
	return strings.Join(s, ",")
}

func TestGenerateRefusesWhatItCannotEnforce(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad selector", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: q}
spec: {podSelector: {matchExpressions: [{key: a, operator: Near}]}}`, "podSelector"},
		{"bad CIDR", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: q}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: nope}}]}]`, "ipBlock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := kube.DecodeManifests([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Generate(objs, Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one about %s", err, tc.want)
			}
		})
	}
	if _, err := Generate(nil, Options{Table: "bad-name"}); err == nil {
		t.Error("accepted a table name nft cannot parse")
	}
}

func split(k string) (string, string) {
	ns, name, _ := strings.Cut(k, "/")
	return ns, name
}
