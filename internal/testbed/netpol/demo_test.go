package netpol

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/trawl-dev/trawl/internal/kube"
	"github.com/trawl-dev/trawl/internal/policy"
	"github.com/trawl-dev/trawl/internal/testbed"
)

// The demo's pods in the bed order of deploy/demo/README.md.
var demoPods = []string{"coredns", "api-gateway", "payment-service", "postgres", "frontend", "loadgen"}

// loadDemo reads deploy/demo renumbered for slot.
func loadDemo(t *testing.T, slot int) []any {
	t.Helper()
	files, err := filepath.Glob("../../../deploy/demo/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("demo manifests: %v", err)
	}
	var objs []any
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o, err := kube.DecodeManifests(Renumber(data, slot))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		objs = append(objs, o...)
	}
	return objs
}

func TestTheDemoStoryHoldsOnRealNamespaces(t *testing.T) {
	bed := newBed(t, demoPods...)
	objs := loadDemo(t, bed.Slot)
	store := kube.NewStore(kube.StoreConfig{})
	store.ReplaceAll(objs)
	view := store.Rebuild()
	// The manifests put every pod where the bed put it.
	for _, p := range bed.Pods {
		ep := view.Lookup(p.IP, view.Built())
		if ep.Pod == nil || !containsPrefix(ep.Pod.Name, p.PodName) {
			t.Fatalf("bed pod %s at %s is %v in the manifests", p.PodName, p.IP, ep.Proto(""))
		}
	}
	script, err := Generate(objs, Options{Table: "trawl_np_" + bed.ID})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := Apply(ctx, bed.Node.Name, script); err != nil {
		t.Fatalf("%v\n%s", err, script)
	}
	t.Cleanup(func() { _ = Remove(ctx, bed.Node.Name, "trawl_np_"+bed.ID) })
	serveOn(t, bed, map[string][]probe{
		"coredns":         {{53, policy.ProtoUDP}},
		"payment-service": {{8080, policy.ProtoTCP}},
		"postgres":        {{5432, policy.ProtoTCP}},
		"frontend":        {{80, policy.ProtoTCP}},
	})
	for _, tc := range []struct {
		name     string
		from, to string
		pr       probe
		want     bool
	}{
		{"api-gateway calls payment-service", "api-gateway", "payment-service", probe{8080, policy.ProtoTCP}, true},
		{"payment-service queries postgres", "payment-service", "postgres", probe{5432, policy.ProtoTCP}, true},
		{"payment-service resolves names", "payment-service", "coredns", probe{53, policy.ProtoUDP}, true},
		{"the load generator hits the frontend", "loadgen", "frontend", probe{80, policy.ProtoTCP}, true},
		{"frontend cannot reach postgres", "frontend", "postgres", probe{5432, policy.ProtoTCP}, false},
		{"payment-service cannot leave for another namespace", "payment-service", "frontend", probe{80, policy.ProtoTCP}, false},
		{"frontend cannot call payment-service", "frontend", "payment-service", probe{8080, policy.ProtoTCP}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reaches(bed.Pod(tc.from), bed.Pod(tc.to).IP, tc.pr, tc.want); got != tc.want {
				t.Errorf("connected=%v, want %v", got, tc.want)
			}
		})
	}
}

func containsPrefix(name, prefix string) bool {
	return len(name) >= len(prefix) && name[:len(prefix)] == prefix
}

// serveOn answers the given ports in the named pods (TCP accept, UDP echo).
func serveOn(t *testing.T, bed *testbed.Bed, ports map[string][]probe) {
	t.Helper()
	for name, prs := range ports {
		p := bed.Pod(name)
		for _, pr := range prs {
			listen(t, p, pr)
		}
	}
}
