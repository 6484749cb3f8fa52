package store_test

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// FuzzFilterSQL puts arbitrary strings into string filter fields: the query
// either fails with InvalidArgument (exactly when Compile rejects the
// filter) or returns what the in-memory filter selects. Its seeds run as
// ordinary tests.
func FuzzFilterSQL(f *testing.F) {
	for _, s := range []string{"shop/", "shop/web-", "10.0.0.0/22", "fd00::/16", "5432", "0-100", "tcp", "icmp",
		"k8s:app=web", "app in (db, amf)", "app notin (web,db)", "!team", "k8s:env", "node-*", "*.example", "shop/default-deny",
		"'", `\`, "\t", "x'; DROP TABLE flows; --", `%' OR 1=1 --`, "{p0:String}", "_", "%", "a/b/c", "POLICY_DENIED", "teardown", "No_Socket", filtertest.UUID(3)} {
		f.Add(s)
	}
	s := openStore(f, chtest.Database(f))
	w := runWriter(f, s)
	flows := filtertest.Flows()
	write(f, w, &store.Batch{Key: "k/1", Flows: flows})
	f.Fuzz(func(t *testing.T, v string) {
		for _, ff := range []*observerv1.FlowFilter{
			{SourcePod: []string{v}}, {DestinationService: []string{v}}, {SourceIp: []string{v}}, {DestinationLabel: []string{v}},
			{SourceLabel: []string{v, "k8s:" + v}}, {DestinationPort: []string{v}}, {Protocol: []string{v}}, {NodeName: []string{v}},
			{Policy: []string{v}}, {Uuid: []string{v}}, {DropReasonDesc: []string{v}}, {SourceFqdn: []string{v}},
			{DestinationWorkload: []*flowv1.Workload{{Name: v}, {Kind: v}}}, {Interface: []*flowv1.NetworkInterface{{Name: v}}},
			{DropClass: []string{v}},
		} {
			allow := []*observerv1.FlowFilter{ff}
			flt, cerr := filter.Compile(allow, nil)
			var got []string
			err := s.QueryFlows(context.Background(), &observerv1.GetFlowsRequest{Allowlist: allow}, func(r *observerv1.GetFlowsResponse) error {
				got = append(got, r.GetFlow().GetUuid())
				return nil
			})
			if cerr != nil {
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("filter %v: compile error %v but query error %v", ff, cerr, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("filter %v: %v", ff, err)
			}
			var want []string
			for _, fl := range flows {
				if flt.MatchFlow(fl) {
					want = append(want, fl.GetUuid())
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("filter %v: ClickHouse selected %v, filter selects %v", ff, got, want)
			}
		}
	})
}
