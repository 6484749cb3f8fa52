package kube

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Synthetic builds a cluster for benchmarks: namespaces × podsPerNS pods
// (labels app=app-<i%20>, tier=<i%3>, named port http=8080) and
// policiesPerNS policies per namespace, in the shapes real clusters use:
// a default deny, same-namespace allows by app, cross-namespace allows by
// namespace label and app, port lists, and an ipBlock egress.
func Synthetic(namespaces, podsPerNS, policiesPerNS int) []any {
	var out []any
	n := 0
	for i := 0; i < namespaces; i++ {
		ns := fmt.Sprintf("ns-%03d", i)
		out = append(out, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
			"kubernetes.io/metadata.name": ns, "team": fmt.Sprintf("team-%d", i%10)}}})
		for j := 0; j < podsPerNS; j++ {
			ip := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			n++
			out = append(out, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pod-%04d", j), UID: "u",
					Labels: map[string]string{"app": fmt.Sprintf("app-%d", j%20), "tier": fmt.Sprintf("%d", j%3)}},
				Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", n%100), Containers: []corev1.Container{{Name: "c",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String()},
			})
		}
		for k := 0; k < policiesPerNS; k++ {
			out = append(out, syntheticPolicy(ns, k))
		}
	}
	return out
}

func syntheticPolicy(ns string, k int) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := func(p int) []networkingv1.NetworkPolicyPort {
		v := intstr.FromInt32(int32(p))
		return []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &v}}
	}
	named := intstr.FromString("http")
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pol-%02d", k)}}
	app := func(i int) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", i%20)}}
	}
	switch k % 5 {
	case 0:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 1:
		np.Spec.PodSelector = *app(k)
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: app(k + 1)}}, Ports: port(8080)}}
	case 2:
		np.Spec.PodSelector = *app(k)
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"team-1", "team-2"}}}},
				PodSelector:       app(k + 2)}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &named}}}}
	case 3:
		np.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"0"}}}}
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}, Ports: port(8080)},
			{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}}}}},
		}
	case 4:
		np.Spec.PodSelector = *app(k)
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}
	}
	return np
}
