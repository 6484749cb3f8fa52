package policy_test

import (
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/trawl-dev/trawl/dev/cputest"
	"github.com/trawl-dev/trawl/internal/kube"
	"github.com/trawl-dev/trawl/internal/policy"
)

// The benchmark cluster: 100 namespaces × 100 pods = 10,000 pods and
// 100 × 10 = 1,000 policies (kube.Synthetic).
func benchInput(cacheSize int) policy.Input {
	in := policy.Input{CacheSize: cacheSize}
	for _, o := range kube.Synthetic(100, 100, 10) {
		switch x := o.(type) {
		case *corev1.Namespace:
			in.Namespaces = append(in.Namespaces, policy.Namespace{Name: x.Name, Labels: x.Labels})
		case *corev1.Pod:
			in.Pods = append(in.Pods, policy.PodFromObject(x))
		case *networkingv1.NetworkPolicy:
			in.Policies = append(in.Policies, x)
		}
	}
	return in
}

type conn struct {
	src, dst policy.Endpoint
	port     uint16
}

// workingSet is the connections a cluster's flows keep asking about: a few
// thousand distinct (source, destination, port) triples.
func workingSet(e *policy.Engine, n int) []conn {
	r := rand.New(rand.NewPCG(1, 2))
	pods := e.Pods()
	ports := []uint16{8080, 5432, 53, 443}
	out := make([]conn, n)
	for i := range out {
		out[i] = conn{policy.Endpoint{Pod: pods[r.IntN(len(pods))]}, policy.Endpoint{Pod: pods[r.IntN(len(pods))]}, ports[r.IntN(len(ports))]}
	}
	return out
}

func benchEvaluate(b *testing.B, cacheSize int) {
	e, err := policy.New(benchInput(cacheSize))
	if err != nil {
		b.Fatal(err)
	}
	ws := workingSet(e, 4096)
	for _, c := range ws { // warm the cache
		e.Evaluate(c.src, c.dst, c.port, policy.ProtoTCP)
	}
	b.ReportAllocs()
	cpu := cputest.Start(b)
	for i := 0; i < b.N; i++ {
		c := &ws[i&4095]
		e.Evaluate(c.src, c.dst, c.port, policy.ProtoTCP)
	}
	cpu.Report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verdicts/s")
}

// BenchmarkEvaluateCached: the relay's steady state.
func BenchmarkEvaluateCached(b *testing.B) { benchEvaluate(b, 0) }

// BenchmarkEvaluateUncached: every verdict computed from the precomputed
// selections (first sight of a connection, or right after a change).
func BenchmarkEvaluateUncached(b *testing.B) { benchEvaluate(b, -1) }

// BenchmarkBaselineMapLookup is the floor: one Go map lookup per verdict
// with the same working set, no locking, no policy logic.
func BenchmarkBaselineMapLookup(b *testing.B) {
	e, _ := policy.New(benchInput(-1))
	ws := workingSet(e, 4096)
	type key struct {
		s, d *policy.Pod
		p    uint16
	}
	m := map[key]*policy.Verdict{}
	for _, c := range ws {
		m[key{c.src.Pod, c.dst.Pod, c.port}] = &policy.Verdict{}
	}
	var hits int
	cpu := cputest.Start(b)
	for i := 0; i < b.N; i++ {
		c := &ws[i&4095]
		if m[key{c.src.Pod, c.dst.Pod, c.port}] != nil {
			hits++
		}
	}
	cpu.Report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verdicts/s")
	if hits != b.N {
		b.Fatal("baseline missed")
	}
}

// BenchmarkCompile: building the engine for 10k pods and 1k policies, which
// bounds how fast a change reaches verdicts.
func BenchmarkCompile(b *testing.B) {
	in := benchInput(0)
	cpu := cputest.Start(b)
	for i := 0; i < b.N; i++ {
		if _, err := policy.New(in); err != nil {
			b.Fatal(err)
		}
	}
	cpu.Report(b)
}
