package enrich

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/trawl-dev/trawl/internal/kube"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

func ns(name string, labels map[string]string) *corev1.Namespace {
	l := map[string]string{"kubernetes.io/metadata.name": name}
	for k, v := range labels {
		l[k] = v
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func pod(namespace, name, ip string, labels map[string]string, owner *metav1.OwnerReference) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: "node-1"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p
}

func ctrl(kind, name string) *metav1.OwnerReference {
	t := true
	return &metav1.OwnerReference{Kind: kind, Name: name, Controller: &t, UID: types.UID("uid-" + name)}
}

func ingressFromNS(namespace, name string, target, fromNS map[string]string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: target},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: fromNS}}}}},
		},
	}
}

// eventually re-runs check on fresh flows until it passes or 1 s passes:
// the contract is that a change is visible within 1 s.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not visible within 1 s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInformerChangesReachEnrichmentAndVerdictsWithinOneSecond(t *testing.T) {
	client := fake.NewClientset(
		ns("payments", nil), ns("databases", nil), ns("frontend", nil),
		pod("payments", "payment-service-7d9f8b6c5-m2v8r", payments, map[string]string{"app": "payment-service"}, ctrl("ReplicaSet", "payment-service-7d9f8b6c5")),
		pod("databases", "postgres-0", postgres, map[string]string{"app": "postgres"}, ctrl("StatefulSet", "postgres")),
		pod("frontend", "frontend-1", frontend, map[string]string{"app": "frontend"}, nil),
		ingressFromNS("databases", "postgres-ingress", map[string]string{"app": "postgres"}, map[string]string{"kubernetes.io/metadata.name": "payments"}),
	)
	scheme := metadatafake.NewTestScheme()
	for _, add := range []func(*runtime.Scheme) error{metav1.AddMetaToScheme, appsv1.AddToScheme, batchv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	rs := &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "payment-service-7d9f8b6c5", OwnerReferences: []metav1.OwnerReference{*ctrl("Deployment", "payment-service")}},
	}
	meta := metadatafake.NewSimpleMetadataClient(scheme, rs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := kube.OpenSource(ctx, &kube.InformerSource{Client: client, Metadata: meta, SyncTimeout: 10 * time.Second},
		kube.StoreConfig{Grace: time.Millisecond, Debounce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := NewFromStore(store)
	cs := client.CoreV1()
	np := client.NetworkingV1()

	enrich := func(f *flowv1.Flow) *flowv1.Flow { e.Enrich(f); return f }
	denied := func() *flowv1.Flow {
		return enrich(tcpFlow(frontend, postgres, 5432, flowv1.Verdict_DROPPED, "NETFILTER_DROP"))
	}
	expectDrop := func(desc, inDeny string) func() error {
		return func() error {
			f := denied()
			if f.DropReasonDesc != desc || policyNames(f.IngressDeniedBy) != inDeny {
				return fmt.Errorf("drop_reason_desc %q ingress_denied_by %q, want %q %q", f.DropReasonDesc, policyNames(f.IngressDeniedBy), desc, inDeny)
			}
			return nil
		}
	}

	eventually(t, "initial state: workload through the ReplicaSet's metadata, policy drop", func() error {
		f := enrich(tcpFlow(payments, postgres, 5432, flowv1.Verdict_FORWARDED, ""))
		if workload(f.Source) != "Deployment/payment-service" || policyNames(f.IngressAllowedBy) != "databases/postgres-ingress" {
			return fmt.Errorf("source workload %q ingress_allowed_by %q", workload(f.Source), policyNames(f.IngressAllowedBy))
		}
		return expectDrop("POLICY_DENIED", "databases/postgres-ingress")()
	})

	if _, err := cs.Pods("frontend").Create(ctx, pod("frontend", "newcomer", "10.244.1.99", map[string]string{"app": "new"}, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an added pod is named", func() error {
		if f := enrich(tcpFlow("10.244.1.99", frontend, 80, flowv1.Verdict_FORWARDED, "")); f.Source.GetPodName() != "newcomer" {
			return fmt.Errorf("source %v", f.Source)
		}
		return nil
	})

	relabelled := pod("frontend", "frontend-1", frontend, map[string]string{"app": "web"}, nil)
	if _, err := cs.Pods("frontend").Update(ctx, relabelled, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a relabelled pod carries its new labels", func() error {
		if l := strings.Join(enrich(tcpFlow(frontend, postgres, 5432, flowv1.Verdict_FORWARDED, "")).Source.GetLabels(), ","); !strings.Contains(l, "k8s:app=web") {
			return fmt.Errorf("labels %s", l)
		}
		return nil
	})

	if _, err := np.NetworkPolicies("databases").Create(ctx, ingressFromNS("databases", "allow-trusted", map[string]string{"app": "postgres"}, map[string]string{"trusted": "yes"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an added policy isolates too", expectDrop("POLICY_DENIED", "databases/allow-trusted,databases/postgres-ingress"))

	if _, err := cs.Namespaces().Update(ctx, ns("frontend", map[string]string{"trusted": "yes"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a relabelled namespace is admitted and its drops are no longer blamed on policy", func() error {
		if err := expectDrop("NETFILTER_DROP", "")(); err != nil {
			return err
		}
		f := enrich(tcpFlow(frontend, postgres, 5432, flowv1.Verdict_FORWARDED, ""))
		if policyNames(f.IngressAllowedBy) != "databases/allow-trusted" {
			return fmt.Errorf("ingress_allowed_by %q", policyNames(f.IngressAllowedBy))
		}
		return nil
	})

	if err := cs.Namespaces().Delete(ctx, "frontend", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a deleted namespace's pods lose its labels", expectDrop("POLICY_DENIED", "databases/allow-trusted,databases/postgres-ingress"))

	for _, name := range []string{"allow-trusted", "postgres-ingress"} {
		if err := np.NetworkPolicies("databases").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "deleted policies no longer isolate", func() error {
		if err := expectDrop("NETFILTER_DROP", "")(); err != nil {
			return err
		}
		if f := enrich(tcpFlow(payments, postgres, 5432, flowv1.Verdict_FORWARDED, "")); len(f.IngressAllowedBy) > 0 {
			return fmt.Errorf("ingress_allowed_by %q on a pod no policy selects", policyNames(f.IngressAllowedBy))
		}
		return nil
	})

	if err := cs.Pods("frontend").Delete(ctx, "newcomer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a deleted pod's address is no longer named", func() error {
		if f := enrich(tcpFlow("10.244.1.99", frontend, 80, flowv1.Verdict_FORWARDED, "")); f.Source.GetPodName() != "" {
			return fmt.Errorf("source %v", f.Source)
		}
		return nil
	})
}
