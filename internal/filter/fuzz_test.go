package filter_test

import (
	"testing"

	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// FuzzCompile feeds arbitrary strings into every string field: Compile must
// either fail cleanly or produce a filter that matches without panicking.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{"shop/", "shop/web", "10.0.0.0/8", "fd00::1", "80", "1-1024", "tcp", "icmp",
		"k8s:app=web", "app in (a,b),!x", "a notin (b)", "node-*", "*", "x'; DROP TABLE flows; --", `\%_`, "(", ")", "a/b/c", "-", "65535-0", "teardown", "no_socket", "dns", "*.example.com", "Example.COM.", `^api\.`, "NXDOMAIN", "3", "Non-Existent Domain"} {
		f.Add(s)
	}
	flows := append(filtertest.Flows(), filtertest.DNSFlows()...)
	f.Fuzz(func(t *testing.T, s string) {
		ff := &observerv1.FlowFilter{
			Uuid: []string{s}, SourceIp: []string{s}, SourcePod: []string{s}, SourceFqdn: []string{s},
			SourceLabel: []string{s}, SourceService: []string{s}, DropReasonDesc: []string{s},
			Protocol: []string{s}, SourcePort: []string{s}, NodeName: []string{s}, DropReasonKernel: []string{s}, Policy: []string{s},
			DropClass: []string{s}, DnsQuery: []string{s}, DnsRcode: []string{s}, DestinationFqdn: []string{s},
		}
		fields := []*observerv1.FlowFilter{ff,
			{SourceIp: []string{s}}, {DestinationPod: []string{s}}, {DestinationLabel: []string{s}},
			{DestinationPort: []string{s}}, {Protocol: []string{s}}, {NodeName: []string{s}}, {Policy: []string{s}},
			{DnsQuery: []string{s}}, {DnsRcode: []string{s}}, {SourceFqdn: []string{s}}, {Protocol: []string{s, "dns"}},
		}
		for _, one := range fields {
			flt, err := filter.Compile([]*observerv1.FlowFilter{one}, []*observerv1.FlowFilter{one})
			if err != nil {
				continue
			}
			for _, fl := range flows {
				if flt.MatchFlow(fl) {
					t.Fatalf("a record matched both allow and deny of the same filter")
				}
			}
		}
	})
}
