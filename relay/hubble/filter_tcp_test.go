package hubble

import (
	"slices"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// A connection attempt that timed out is served as a trace event (its SYN
// left the node), so Hubble's --type trace selects it and --type drop does
// not; Hubble has no TCP health filter, so nothing else maps to the new
// fields. The event_type filters agree with eventType on the TCP data set.
func TestConnectTimeoutsAreTraceEventsToHubbleFilters(t *testing.T) {
	flows := filtertest.TCPFlows()
	if served, _, _ := eventType(flows[4]); flows[4].GetEventKind() != flowv1.EventKind_CONNECT_TIMEOUT || served != msgTypeTrace {
		t.Fatalf("record 4 (%v) is served as event type %d, want a trace", flows[4].GetEventKind(), served)
	}
	for _, c := range []struct {
		name string
		typ  int32
		want []int
	}{
		{"--type trace", msgTypeTrace, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"--type drop", msgTypeDrop, []int{10}},
	} {
		allow, deny, err := TranslateFilters(ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: c.typ}}}), nil)
		if err != nil {
			t.Fatal(err)
		}
		f := filter.MustCompile(allow, deny)
		var got []int
		for i, fl := range flows {
			if f.MatchFlow(fl) {
				got = append(got, i)
			}
			if served, _, _ := eventType(fl); f.MatchFlow(fl) != (served == c.typ) {
				t.Errorf("%s: record %d served as type %d, filter says %v", c.name, i, served, f.MatchFlow(fl))
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s selected %v, want %v", c.name, got, c.want)
		}
	}
}
