package hubble

import (
	"slices"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Hubble's DNS filters (event type L7, protocol dns, dns_query, the FQDN
// filters) select in filtertest's DNS data set what Hubble's semantics
// select: an L7 record is an L7 event, never a trace or a drop.
func TestTranslatedDNSFiltersMatchHubbleSemantics(t *testing.T) {
	dns := []int{0, 1, 2, 3, 4, 8}
	l7 := func(sub int32, match bool) []*flowpb.EventTypeFilter {
		return []*flowpb.EventTypeFilter{{Type: msgTypeAccessLog, SubType: sub, MatchSubType: match}}
	}
	for _, c := range []struct {
		name   string
		wl, bl []*flowpb.FlowFilter
		want   []int
	}{
		{name: "--type l7", wl: ff(&flowpb.FlowFilter{EventType: l7(0, false)}), want: dns},
		{name: "--type l7:0", wl: ff(&flowpb.FlowFilter{EventType: l7(0, true)}), want: dns},
		{name: "an L7 sub-type Trawl never records", wl: ff(&flowpb.FlowFilter{EventType: l7(3, true)}), want: nil},
		{name: "--type trace leaves L7 records out", wl: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeTrace}}}), want: []int{5, 6, 7, 9}},
		{name: "--type l7 --type trace", wl: ff(&flowpb.FlowFilter{EventType: append(l7(0, false), &flowpb.EventTypeFilter{Type: msgTypeTrace})}), want: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{name: "--type drop has no L7 record", wl: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeDrop}}}), want: nil},
		{name: "--protocol dns", wl: ff(&flowpb.FlowFilter{Protocol: []string{"DNS"}}), want: dns},
		{name: "--not --protocol dns", bl: ff(&flowpb.FlowFilter{Protocol: []string{"dns"}}), want: []int{5, 6, 7, 9}},
		{name: "dns_query regex", wl: ff(&flowpb.FlowFilter{DnsQuery: []string{`^api\.`, `^slow\.`}}), want: []int{0, 1, 4}},
		{name: "--to-fqdn '*.example.com'", wl: ff(&flowpb.FlowFilter{DestinationFqdn: []string{"*.example.com"}}), want: []int{0, 5, 8}},
		{name: "--from-fqdn as typed", wl: ff(&flowpb.FlowFilter{SourceFqdn: []string{"API.example.com."}}), want: []int{1, 6}},
		{name: "--type l7 --to-fqdn", wl: ff(&flowpb.FlowFilter{EventType: l7(0, false), DestinationFqdn: []string{"api.example.com"}}), want: []int{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			allow, deny, err := TranslateFilters(c.wl, c.bl)
			if err != nil {
				t.Fatal(err)
			}
			f, err := filter.Compile(allow, deny)
			if err != nil {
				t.Fatalf("Trawl refuses the translation: %v", err)
			}
			var got []int
			for i, fl := range filtertest.DNSFlows() {
				if f.MatchFlow(fl) {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("selected %v, want %v\nallow %v\ndeny %v", got, c.want, allow, deny)
			}
		})
	}
}

// A DNS record from Hubble (hubble observe -o jsonpb of Cilium's proxy)
// becomes Trawl's L7 record: kind from the event type, the DNS part field
// for field.
func TestFromHubbleKeepsDNSRecords(t *testing.T) {
	h := &flowpb.Flow{
		Verdict: flowpb.Verdict_FORWARDED, Type: flowpb.FlowType_L7, EventType: &flowpb.CiliumEventType{Type: msgTypeAccessLog},
		DestinationNames: []string{"api.example.com"},
		L7: &flowpb.Layer7{Type: flowpb.L7FlowType_RESPONSE, LatencyNs: 1_250_000, Record: &flowpb.Layer7_Dns{Dns: &flowpb.DNS{
			Query: "api.example.com.", Ips: []string{"93.184.216.34"}, Ttl: 300, Cnames: []string{"edge.example.net."},
			ObservationSource: "proxy", Rcode: 3, Qtypes: []string{"A"}, Rrtypes: []string{"CNAME", "A"}}}},
	}
	got, err := FromHubble(h)
	if err != nil {
		t.Fatal(err)
	}
	want := &flowv1.Flow{
		Verdict: flowv1.Verdict_FORWARDED, Type: flowv1.FlowType_L7, EventKind: flowv1.EventKind_L7_EVENT,
		DestinationNames: []string{"api.example.com"},
		L7: &flowv1.Layer7{Type: flowv1.L7FlowType_RESPONSE, LatencyNs: 1_250_000, Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{
			Query: "api.example.com.", Ips: []string{"93.184.216.34"}, Ttl: 300, Cnames: []string{"edge.example.net."},
			ObservationSource: "proxy", Rcode: 3, Qtypes: []string{"A"}, Rrtypes: []string{"CNAME", "A"}}}},
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	http := &flowpb.Flow{Type: flowpb.FlowType_L7, L7: &flowpb.Layer7{Type: flowpb.L7FlowType_REQUEST, Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{Code: 200}}}}
	if got, err := FromHubble(http); err != nil || got.GetL7().GetType() != flowv1.L7FlowType_REQUEST || got.GetL7().GetRecord() != nil {
		t.Errorf("an HTTP record: got %v (%v), want its L7 type without a record", got.GetL7(), err)
	}
}

// An event_type filter selects exactly the records Trawl serves with that
// event type (eventType), on both data sets: the filter translation and the
// flow translation agree about what an L7 record is.
func TestEventTypeFiltersSelectTheRecordsServedWithThatType(t *testing.T) {
	flows := append(filtertest.Flows(), filtertest.DNSFlows()...)
	for _, typ := range []int32{msgTypeTrace, msgTypeDrop, msgTypePolicyVerdict, msgTypeAccessLog} {
		allow, deny, err := TranslateFilters(ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: typ}}}), nil)
		if err != nil {
			t.Fatal(err)
		}
		f := filter.MustCompile(allow, deny)
		n := 0
		for i, fl := range flows {
			served, _, _ := eventType(fl)
			if f.MatchFlow(fl) != (served == typ) {
				t.Errorf("type %d, record %d (served as %d): filter says %v", typ, i, served, f.MatchFlow(fl))
			}
			if served == typ {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no record of type %d in the data sets", typ)
		}
	}
}
