package kubernetes_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/trawl-dev/trawl/deploy/kubernetes"
	"github.com/trawl-dev/trawl/deploy/prometheus"
)

var update = flag.Bool("update", false, "rewrite the generated manifests")

// The two installations: with the in-cluster ClickHouse, and with an
// external DSN.
var installs = []string{".", "external-clickhouse"}

func TestGeneratedManifestsAreUpToDate(t *testing.T) {
	rules, err := os.ReadFile("../prometheus/trawl-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	grafana, err := kubernetes.GrafanaConfigMaps("../grafana")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]byte{
		"base/prometheusrule.yaml": kubernetes.PrometheusRule(rules),
		"base/grafana.yaml":        grafana,
	} {
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run go test ./deploy/kubernetes -run TestGeneratedManifestsAreUpToDate -update", path)
		}
	}
}

func TestEveryInstallationRendersAndDecodesStrictly(t *testing.T) {
	for _, dir := range installs {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			want := []struct{ kind, name string }{
				{"Namespace", "trawl"},
				{"DaemonSet", "trawl-agent"},
				{"Service", "trawl-agent"},
				{"Deployment", "trawl-relay"},
				{"Service", "trawl-relay"},
				{"Service", "trawl-relay-peers"},
				{"PodDisruptionBudget", "trawl-relay"},
				{"ClusterRole", "trawl-relay"},
				{"ClusterRoleBinding", "trawl-relay"},
				{"Secret", "trawl-clickhouse"},
				{"ServiceMonitor", "trawl-agent"},
				{"ServiceMonitor", "trawl-relay"},
				{"PrometheusRule", "trawl"},
				{"Certificate", "trawl-relay"},
				{"Certificate", "trawl-agent"},
				{"ConfigMap", "trawl-grafana-datasources"},
			}
			if dir == "." {
				want = append(want, struct{ kind, name string }{"StatefulSet", "clickhouse"}, struct{ kind, name string }{"Service", "clickhouse"})
			} else if r.get("StatefulSet", "clickhouse") != nil {
				t.Error("the external-DSN installation still runs a ClickHouse StatefulSet")
			}
			for _, w := range want {
				if r.get(w.kind, w.name) == nil {
					t.Errorf("no %s %s", w.kind, w.name)
				}
			}
		})
	}
}

func TestThePrometheusRuleHoldsExactlyTheRulesFile(t *testing.T) {
	file, err := prometheus.ReadRules("../prometheus/trawl-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := render(t, ".").get("PrometheusRule", "trawl").(*prometheusRule)
	if pr == nil {
		t.Fatal("no PrometheusRule trawl")
	}
	if !reflect.DeepEqual(pr.Spec, *file) {
		t.Errorf("PrometheusRule spec differs from deploy/prometheus/trawl-rules.yaml:\n got %+v\nwant %+v", pr.Spec, *file)
	}
}

func TestTheGrafanaConfigMapsHoldTheGrafanaFiles(t *testing.T) {
	r := render(t, ".")
	files, _ := filepath.Glob("../grafana/dashboards/*.json")
	ds, _ := filepath.Glob("../grafana/provisioning/datasources/*.yaml")
	if len(files) == 0 || len(ds) == 0 {
		t.Fatalf("deploy/grafana has %d dashboards and %d datasource files", len(files), len(ds))
	}
	check := func(cm string, path string) {
		c, _ := r.get("ConfigMap", cm).(*corev1.ConfigMap)
		if c == nil {
			t.Errorf("no ConfigMap %s for %s", cm, path)
			return
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Data[filepath.Base(path)]; strings.TrimRight(got, "\n") != strings.TrimRight(string(want), "\n") {
			t.Errorf("ConfigMap %s key %s differs from %s", cm, filepath.Base(path), path)
		}
	}
	for _, f := range files {
		check("trawl-grafana-dashboard-"+strings.TrimSuffix(filepath.Base(f), ".json"), f)
	}
	for _, f := range ds {
		check("trawl-grafana-datasources", f)
	}
}

func TestTheAgentRunsOnTheHostNetworkWithOnlyTheCapabilitiesItNeeds(t *testing.T) {
	ds, _ := render(t, ".").get("DaemonSet", "trawl-agent").(*appsv1.DaemonSet)
	if ds == nil {
		t.Fatal("no agent DaemonSet")
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("agent is not on the host network")
	}
	if len(pod.Tolerations) == 0 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
		t.Errorf("agent does not tolerate every taint: %+v", pod.Tolerations)
	}
	c := container(t, pod, "agent")
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("agent has no security context")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("agent is privileged")
	}
	var added []string
	for _, c := range sc.Capabilities.Add {
		added = append(added, string(c))
	}
	slices.Sort(added)
	if want := []string{"BPF", "NET_ADMIN", "PERFMON"}; !slices.Equal(added, want) {
		t.Errorf("agent capabilities %v, want exactly %v", added, want)
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("agent does not drop all other capabilities: %v", sc.Capabilities.Drop)
	}
	hostPaths := map[string]string{} // host path -> mount path
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.HostPath != nil {
				hostPaths[v.HostPath.Path] = m.MountPath
			}
		}
	}
	for _, p := range []string{"/sys/fs/bpf", "/sys/kernel/tracing", "/sys/kernel/btf", "/proc"} {
		if _, ok := hostPaths[p]; !ok {
			t.Errorf("agent does not mount the host's %s", p)
		}
	}
	checkResources(t, "agent", c)
}

func TestTheRelayRunsTwoReplicasBehindAServiceAndADisruptionBudget(t *testing.T) {
	r := render(t, ".")
	d, _ := r.get("Deployment", "trawl-relay").(*appsv1.Deployment)
	if d == nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Fatalf("relay Deployment missing or not 2 replicas: %+v", d)
	}
	checkResources(t, "relay", container(t, d.Spec.Template.Spec, "relay"))
	svc, _ := r.get("Service", "trawl-relay").(*corev1.Service)
	ports := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if want := map[string]int32{"observer": 4245, "ingest": 4246, "metrics": 9966}; !reflect.DeepEqual(ports, want) {
		t.Errorf("relay Service ports %v, want %v", ports, want)
	}
	pdb, _ := r.get("PodDisruptionBudget", "trawl-relay").(*policyv1.PodDisruptionBudget)
	sel, err := metav1LabelSelector(pdb)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the PodDisruptionBudget does not select the relay pods (%v)", err)
	}
}

func TestEveryServiceSelectsPodsThatHaveItsTargetPorts(t *testing.T) {
	for _, dir := range installs {
		r := render(t, dir)
		var pods []corev1.PodTemplateSpec
		for _, o := range r.objects {
			switch w := o.(type) {
			case *appsv1.DaemonSet:
				pods = append(pods, w.Spec.Template)
			case *appsv1.Deployment:
				pods = append(pods, w.Spec.Template)
			case *appsv1.StatefulSet:
				pods = append(pods, w.Spec.Template)
			}
		}
		for _, o := range r.objects {
			svc, ok := o.(*corev1.Service)
			if !ok {
				continue
			}
			var matched []corev1.PodTemplateSpec
			for _, p := range pods {
				if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.Labels)) {
					matched = append(matched, p)
				}
			}
			if len(matched) == 0 {
				t.Errorf("%s: Service %s selects no pods", dir, svc.Name)
				continue
			}
			for _, sp := range svc.Spec.Ports {
				for _, p := range matched {
					if !podHasPort(p.Spec, sp.TargetPort.String()) {
						t.Errorf("%s: Service %s port %s: pod %v has no port %s", dir, svc.Name, sp.Name, p.Labels, sp.TargetPort.String())
					}
				}
			}
		}
	}
}

func TestEveryServiceMonitorScrapesAMetricsPortOfAService(t *testing.T) {
	r := render(t, ".")
	for _, o := range r.objects {
		sm, ok := o.(*serviceMonitor)
		if !ok {
			continue
		}
		sel, err := labelSelector(&sm.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		var found []string
		for _, o := range r.objects {
			if svc, ok := o.(*corev1.Service); ok && sel.Matches(labels.Set(svc.Labels)) {
				found = append(found, svc.Name)
				for _, ep := range sm.Spec.Endpoints {
					if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
						t.Errorf("ServiceMonitor %s: Service %s has no port %s", sm.Name, svc.Name, ep.Port)
					}
				}
			}
		}
		// The alert rules select job="trawl-agent"/"trawl-relay": the job
		// label is the Service's name, so exactly that Service must match.
		if !slices.Equal(found, []string{sm.Name}) {
			t.Errorf("ServiceMonitor %s selects Services %v, want exactly [%s] (the alert rules' job name)", sm.Name, found, sm.Name)
		}
	}
}

func TestCertificatesIssueTheSecretsThePodsMount(t *testing.T) {
	r := render(t, ".")
	issued := map[string]bool{}
	issuers := map[string]bool{}
	for _, o := range r.objects {
		switch v := o.(type) {
		case *certificate:
			issued[v.Spec.SecretName] = true
		case *issuer:
			issuers[v.Name] = true
		}
	}
	for _, o := range r.objects {
		if c, ok := o.(*certificate); ok && (c.Spec.IssuerRef.Kind != "Issuer" || !issuers[c.Spec.IssuerRef.Name]) {
			t.Errorf("Certificate %s: issuer %+v is not in the manifests", c.Name, c.Spec.IssuerRef)
		}
	}
	for _, w := range []struct{ kind, name, container string }{{"DaemonSet", "trawl-agent", "agent"}, {"Deployment", "trawl-relay", "relay"}} {
		pod := podSpec(r.get(w.kind, w.name))
		mountsTLS := false
		for _, v := range pod.Volumes {
			if v.Secret == nil {
				continue
			}
			if !issued[v.Secret.SecretName] {
				t.Errorf("%s mounts Secret %s, which no Certificate issues", w.name, v.Secret.SecretName)
			}
			mountsTLS = true
		}
		if !mountsTLS {
			t.Errorf("%s mounts no certificate", w.name)
		}
	}
}

func TestSecretsReferencedByEnvironmentExist(t *testing.T) {
	for _, dir := range installs {
		r := render(t, dir)
		for _, o := range r.objects {
			pod := podSpec(o)
			if pod == nil {
				continue
			}
			for _, c := range pod.Containers {
				for _, e := range c.Env {
					if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						continue
					}
					ref := e.ValueFrom.SecretKeyRef
					s, _ := r.get("Secret", ref.Name).(*corev1.Secret)
					if s == nil {
						t.Errorf("%s: %s needs Secret %s, not in the manifests", dir, c.Name, ref.Name)
						continue
					}
					if _, ok := s.StringData[ref.Key]; !ok {
						if _, ok := s.Data[ref.Key]; !ok {
							t.Errorf("%s: %s needs key %s of Secret %s", dir, c.Name, ref.Key, ref.Name)
						}
					}
				}
			}
		}
	}
}

func container(t *testing.T, pod corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range pod.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func checkResources(t *testing.T, what string, c corev1.Container) {
	t.Helper()
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("%s: no %s request", what, res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("%s: no %s limit", what, res)
		}
	}
}

func podSpec(o any) *corev1.PodSpec {
	switch w := o.(type) {
	case *appsv1.DaemonSet:
		return &w.Spec.Template.Spec
	case *appsv1.Deployment:
		return &w.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return &w.Spec.Template.Spec
	}
	return nil
}

func podHasPort(pod corev1.PodSpec, port string) bool {
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			if p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port {
				return true
			}
		}
	}
	return false
}

func labelSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}

func metav1LabelSelector(pdb *policyv1.PodDisruptionBudget) (labels.Selector, error) {
	if pdb == nil {
		return nil, errors.New("no PodDisruptionBudget")
	}
	return metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
}
