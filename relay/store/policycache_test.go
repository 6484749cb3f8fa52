package store

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// The per-insert policy cache is keyed by the policies' content: a flow
// must get from it exactly what it would get computed afresh, whatever
// flow with similar policies came before it in the insert.
func TestPolicyCacheGivesEachFlowWhatItsOwnPoliciesEncodeTo(t *testing.T) {
	np := func(ns, name string) *flowv1.Policy {
		return &flowv1.Policy{Namespace: ns, Name: name, Kind: "NetworkPolicy"}
	}
	withUnknown := np("team-01", "allow-web")
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7))
	for _, c := range []struct {
		name          string
		before, after *flowv1.Flow
	}{
		{"the same policy in another message is a hit",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}},
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}}},
		{"another name is not",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}},
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-db")}}},
		{"the same names on the other side are not",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}},
			&flowv1.Flow{EgressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}}},
		{"allowed and denied by the same policy differ",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "p")}},
			&flowv1.Flow{IngressDeniedBy: []*flowv1.Policy{np("team-01", "p")}}},
		{"a kind other than NetworkPolicy is not",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}},
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{{Namespace: "team-01", Name: "allow-web", Kind: "CiliumNetworkPolicy"}}}},
		{"labels are not",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}},
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{{Namespace: "team-01", Name: "allow-web", Kind: "NetworkPolicy", Labels: []string{"a=b"}}}}},
		{"a revision is not",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}},
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{{Namespace: "team-01", Name: "allow-web", Kind: "NetworkPolicy", Revision: 3}}}},
		{"unknown fields are not",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}},
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{withUnknown}}},
		{"names that concatenate alike are not",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-0", "1allow")}},
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow")}}},
		{"a second policy is not",
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web")}},
			&flowv1.Flow{IngressAllowedBy: []*flowv1.Policy{np("team-01", "allow-web"), np("team-01", "allow-all")}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cached := newFlowColumns()
			cached.policies(c.before)
			allowed, denied, extra, egress := cached.policies(c.after)
			wantAllowed, wantDenied, wantExtra, wantEgress := newFlowColumns().policies(c.after)
			if !slices.Equal(allowed, wantAllowed) || !slices.Equal(denied, wantDenied) || extra != wantExtra || egress != wantEgress {
				t.Errorf("after another flow: allowed %q denied %q extra %x egress %d; computed afresh: %q %q %x %d",
					allowed, denied, extra, egress, wantAllowed, wantDenied, wantExtra, wantEgress)
			}
		})
	}
}

// BenchmarkFlowColumns is the flow → insert columns encoding per flow, on
// flows decoded separately (each with its own Policy messages, as from the
// wire), 40 % of them allowed by a policy.
func BenchmarkFlowColumns(b *testing.B) {
	fs := labelledFlows(1000)
	c := newFlowColumns()
	b.ReportAllocs()
	for b.Loop() {
		c.reset()
		addFlows(c, fs, 1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(fs)), "ns/flow")
}
