package kubernetes_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// rendered is one kustomization, rendered and decoded.
type rendered struct {
	objects []any
}

func (r *rendered) get(kind, name string) any {
	for _, o := range r.objects {
		k, n := kindName(o)
		if k == kind && n == name {
			return o
		}
	}
	return nil
}

func kindName(o any) (string, string) {
	switch v := o.(type) {
	case *corev1.Namespace:
		return "Namespace", v.Name
	case *corev1.ServiceAccount:
		return "ServiceAccount", v.Name
	case *corev1.Service:
		return "Service", v.Name
	case *corev1.Secret:
		return "Secret", v.Name
	case *corev1.ConfigMap:
		return "ConfigMap", v.Name
	case *appsv1.DaemonSet:
		return "DaemonSet", v.Name
	case *appsv1.Deployment:
		return "Deployment", v.Name
	case *appsv1.StatefulSet:
		return "StatefulSet", v.Name
	case *policyv1.PodDisruptionBudget:
		return "PodDisruptionBudget", v.Name
	case *rbacv1.ClusterRole:
		return "ClusterRole", v.Name
	case *rbacv1.ClusterRoleBinding:
		return "ClusterRoleBinding", v.Name
	case *serviceMonitor:
		return "ServiceMonitor", v.Name
	case *prometheusRule:
		return "PrometheusRule", v.Name
	case *certificate:
		return "Certificate", v.Name
	case *issuer:
		return "Issuer", v.Name
	}
	return fmt.Sprintf("%T", o), ""
}

// newObject returns the Go type a manifest of this apiVersion and kind must
// decode into; objects of any other type are not expected in Trawl's
// manifests.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}, nil
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, nil
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &serviceMonitor{}, nil
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &prometheusRule{}, nil
	case "cert-manager.io/v1/Certificate":
		return &certificate{}, nil
	case "cert-manager.io/v1/Issuer":
		return &issuer{}, nil
	}
	return nil, fmt.Errorf("unexpected object %s %s", apiVersion, kind)
}

// render runs `kubectl kustomize dir` and decodes every object strictly into
// its Go type: an unknown or misplaced field fails the test.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl not found in PATH: install Debian's kubernetes-client package (`make deps` does)")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	r := &rendered{}
	for i, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%s: object %d: %v", dir, i, err)
		}
		obj, err := newObject(tm.APIVersion, tm.Kind)
		if err != nil {
			t.Fatalf("%s: object %d: %v", dir, i, err)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %s: strict decode: %v\n%s", dir, tm.Kind, err, doc)
		}
		r.objects = append(r.objects, obj)
	}
	if len(r.objects) == 0 {
		t.Fatalf("kubectl kustomize %s rendered nothing", dir)
	}
	return r
}
