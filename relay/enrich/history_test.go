package enrich

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trawl-dev/trawl/internal/kube"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

func TestFlowsFromBeforeAnAddressWasReusedKeepTheirPodAndVerdict(t *testing.T) {
	// Relative to today, on the store's injected clock: nothing here can
	// expire however the history's retention is set.
	t0 := time.Now().UTC().Truncate(time.Hour)
	now := t0
	s := kube.NewStore(kube.StoreConfig{Now: func() time.Time { return now }})
	shop := ns("shop", nil)
	db := pod("shop", "db-0", "10.1.0.2", map[string]string{"app": "db"}, ctrl("StatefulSet", "db"))
	pol := ingressFromNS("shop", "db-from-shop", map[string]string{"app": "db"}, map[string]string{"kubernetes.io/metadata.name": "shop"})
	pol.Spec.Ingress[0].From[0].PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	web := pod("shop", "web-1", "10.1.0.1", map[string]string{"app": "web"}, nil)
	s.ReplaceAll([]any{shop, db, pol, web})
	s.Rebuild()

	// At t0+10s web-1 is gone and intruder has its address.
	now = t0.Add(10 * time.Second)
	intruder := pod("shop", "intruder", "10.1.0.1", map[string]string{"app": "other"}, nil)
	s.ReplaceAll([]any{shop, db, pol, intruder})
	s.Rebuild()
	e := NewFromStore(s)

	at := func(f *flowv1.Flow, d time.Duration) *flowv1.Flow {
		f.Time = timestamppb.New(t0.Add(d))
		e.Enrich(f)
		return f
	}
	before := at(tcpFlow("10.1.0.1", "10.1.0.2", 5432, flowv1.Verdict_FORWARDED, ""), 5*time.Second)
	if before.Source.GetPodName() != "web-1" || policyNames(before.IngressAllowedBy) != "shop/db-from-shop" {
		t.Errorf("flow before the reuse: source %q ingress_allowed_by %q, want web-1 and shop/db-from-shop",
			before.Source.GetPodName(), policyNames(before.IngressAllowedBy))
	}
	after := at(tcpFlow("10.1.0.1", "10.1.0.2", 5432, flowv1.Verdict_DROPPED, "NETFILTER_DROP"), 15*time.Second)
	if after.Source.GetPodName() != "intruder" || after.DropReasonDesc != "POLICY_DENIED" || policyNames(after.IngressDeniedBy) != "shop/db-from-shop" {
		t.Errorf("flow after the reuse: source %q desc %q ingress_denied_by %q", after.Source.GetPodName(), after.DropReasonDesc, policyNames(after.IngressDeniedBy))
	}
	lateDrop := at(tcpFlow("10.1.0.1", "10.1.0.2", 5432, flowv1.Verdict_DROPPED, "NETFILTER_DROP"), 5*time.Second)
	if lateDrop.DropReasonDesc != "NETFILTER_DROP" {
		t.Errorf("a drop of the allowed old pod was blamed on policy: %q", lateDrop.DropReasonDesc)
	}
}
