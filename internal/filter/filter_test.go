package filter_test

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func TestEveryFieldSelectsTheExpectedFlows(t *testing.T) {
	checkCases(t, filtertest.Flows(), filtertest.Cases())
}

func TestDNSFiltersSelectTheExpectedRecords(t *testing.T) {
	checkCases(t, filtertest.DNSFlows(), filtertest.DNSCases())
}

func TestTCPFiltersSelectTheExpectedRecords(t *testing.T) {
	checkCases(t, filtertest.TCPFlows(), filtertest.TCPCases())
}

// The TCP filters judge flows only: a connection's health says nothing
// about lost events, node status or conntrack samples.
func TestTCPFiltersAreFlowSpecific(t *testing.T) {
	for _, ff := range []*observerv1.FlowFilter{{MinHandshakeRtt: durationpb.New(0)}, {TcpRetransmits: true}, {TcpReset: true}, {TcpTimeout: true}} {
		f := filter.MustCompile([]*observerv1.FlowFilter{ff}, nil)
		if f.MatchOther(false, "node-a") {
			t.Errorf("%v selects a node-status record", ff)
		}
		if !f.MatchOther(true, "node-a") {
			t.Errorf("%v hides lost events", ff)
		}
	}
	if f := filter.MustCompile([]*observerv1.FlowFilter{{TcpReset: false}}, nil); !f.MatchOther(false, "node-a") {
		t.Error("a filter with the TCP booleans false is flow-specific")
	}
}

func TestHandshakeRTTAddsBothHalves(t *testing.T) {
	fs := filtertest.TCPFlows()
	for i, want := range map[int]time.Duration{0: 400 * time.Microsecond, 1: 0, 2: 21 * time.Millisecond, 4: 0, 6: 5 * time.Millisecond, 8: 0} {
		if got := filter.HandshakeRTT(fs[i].GetTcpHealth()); got != want {
			t.Errorf("flow %d: HandshakeRTT %v, want %v", i, got, want)
		}
	}
	for _, tc := range []struct {
		name string
		h    *flowv1.TCPHealth
		want time.Duration
	}{
		{"a negative half counts as 0, as stored", &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(5 * time.Millisecond), HandshakeAck: durationpb.New(-time.Millisecond)}, 5 * time.Millisecond},
		{"two negative halves are no handshake", &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(-time.Millisecond), HandshakeAck: durationpb.New(-time.Millisecond)}, 0},
		{"the sum saturates", &flowv1.TCPHealth{HandshakeSynAck: &durationpb.Duration{Seconds: 315576000000}, HandshakeAck: &durationpb.Duration{Seconds: 315576000000}}, math.MaxInt64},
	} {
		if got := filter.HandshakeRTT(tc.h); got != tc.want {
			t.Errorf("%s: HandshakeRTT %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTCPMatchDoesNotAllocate(t *testing.T) {
	f := filter.MustCompile([]*observerv1.FlowFilter{
		{MinHandshakeRtt: durationpb.New(time.Millisecond), TcpRetransmits: true},
		{TcpReset: true}, {TcpTimeout: true},
	}, []*observerv1.FlowFilter{{MinHandshakeRtt: durationpb.New(time.Hour)}})
	flows := filtertest.TCPFlows()
	if !f.MatchFlow(flows[2]) || !f.MatchFlow(flows[4]) || f.MatchFlow(flows[0]) {
		t.Fatal("flows 2 and 4 should match, 0 not")
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, fl := range flows {
			f.MatchFlow(fl)
		}
	}); n != 0 {
		t.Errorf("MatchFlow allocates %.1f times per run", n)
	}
}

func checkCases(t *testing.T, flows []*flowv1.Flow, cases []filtertest.Case) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			f, err := filter.Compile(tc.Allow, tc.Deny)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			var got []int
			for i, fl := range flows {
				if f.MatchFlow(fl) != f.Match(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: fl}}) {
					t.Errorf("flow %d: Match and MatchFlow disagree", i)
				}
				if f.MatchFlow(fl) {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, tc.Want) {
				t.Errorf("selected flows %v, want %v", got, tc.Want)
			}
		})
	}
}

func TestCompileRejectsBadValuesNamingFieldAndValue(t *testing.T) {
	cases := []struct {
		name   string
		filter *observerv1.FlowFilter
		want   []string
	}{
		{"bad ip", &observerv1.FlowFilter{SourceIp: []string{"10.0.0.300"}}, []string{"source_ip", "10.0.0.300"}},
		{"bad cidr", &observerv1.FlowFilter{DestinationIp: []string{"10.0.0.0/33"}}, []string{"destination_ip", "10.0.0.0/33"}},
		{"bad port", &observerv1.FlowFilter{SourcePort: []string{"http"}}, []string{"source_port", "http"}},
		{"port too large", &observerv1.FlowFilter{DestinationPort: []string{"65536"}}, []string{"destination_port", "65536"}},
		{"reversed range", &observerv1.FlowFilter{DestinationPort: []string{"90-80"}}, []string{"destination_port", "90-80"}},
		{"unknown protocol", &observerv1.FlowFilter{Protocol: []string{"quic"}}, []string{"protocol", "quic"}},
		{"bad label selector", &observerv1.FlowFilter{SourceLabel: []string{"app in (a"}}, []string{"source_label", "app in (a"}},
		{"label with quote", &observerv1.FlowFilter{DestinationLabel: []string{"app='x'"}}, []string{"destination_label"}},
		{"label empty source", &observerv1.FlowFilter{SourceLabel: []string{":app"}}, []string{"source_label"}},
		{"pod with two slashes", &observerv1.FlowFilter{SourcePod: []string{"a/b/c"}}, []string{"source_pod", "a/b/c"}},
		{"empty pod", &observerv1.FlowFilter{DestinationPod: []string{""}}, []string{"destination_pod"}},
		{"service with two slashes", &observerv1.FlowFilter{SourceService: []string{"a/b/c"}}, []string{"source_service"}},
		{"policy without slash", &observerv1.FlowFilter{Policy: []string{"deny-all"}}, []string{"policy", "deny-all"}},
		{"unknown verdict", &observerv1.FlowFilter{Verdict: []flowv1.Verdict{99}}, []string{"verdict", "99"}},
		{"unknown direction", &observerv1.FlowFilter{TrafficDirection: []flowv1.TrafficDirection{7}}, []string{"traffic_direction"}},
		{"unknown event kind", &observerv1.FlowFilter{EventKind: []flowv1.EventKind{42}}, []string{"event_kind"}},
		{"unknown ip version", &observerv1.FlowFilter{IpVersion: []flowv1.IPVersion{9}}, []string{"ip_version"}},
		{"empty workload", &observerv1.FlowFilter{SourceWorkload: []*flowv1.Workload{{}}}, []string{"source_workload"}},
		{"empty interface", &observerv1.FlowFilter{Interface: []*flowv1.NetworkInterface{{}}}, []string{"interface"}},
		{"empty node", &observerv1.FlowFilter{NodeName: []string{""}}, []string{"node_name"}},
		{"empty uuid", &observerv1.FlowFilter{Uuid: []string{""}}, []string{"uuid"}},
		{"unknown drop class", &observerv1.FlowFilter{DropClass: []string{"boring"}}, []string{"drop_class", "boring"}},
		{"bad dns query expression", &observerv1.FlowFilter{DnsQuery: []string{"exa(mple"}}, []string{"dns_query", "exa(mple", "missing closing )"}},
		{"unknown dns response code", &observerv1.FlowFilter{DnsRcode: []string{"NXDOMIAN"}}, []string{"dns_rcode", "NXDOMIAN"}},
		{"dns response code out of range", &observerv1.FlowFilter{DnsRcode: []string{"5000"}}, []string{"dns_rcode", "5000"}},
		{"unknown flow type", &observerv1.FlowFilter{Type: []flowv1.FlowType{17}}, []string{"type", "17"}},
		{"negative min_handshake_rtt", &observerv1.FlowFilter{MinHandshakeRtt: durationpb.New(-time.Millisecond)}, []string{"min_handshake_rtt", "negative duration -1ms"}},
		{"invalid min_handshake_rtt", &observerv1.FlowFilter{MinHandshakeRtt: &durationpb.Duration{Seconds: 1, Nanos: -5}}, []string{"min_handshake_rtt", "invalid"}},
		{"fqdn pattern that is only a dot", &observerv1.FlowFilter{DestinationFqdn: []string{"."}}, []string{"destination_fqdn", `"."`}},
		{"fqdn pattern with two trailing dots", &observerv1.FlowFilter{SourceFqdn: []string{"example.com.."}}, []string{"source_fqdn", "example.com.."}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := filter.Compile(nil, []*observerv1.FlowFilter{tc.filter})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(tc.want, "denylist[0]") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestRecordsOtherThanFlows(t *testing.T) {
	lost := &observerv1.GetFlowsResponse{NodeName: "node-a", ResponseTypes: &observerv1.GetFlowsResponse_LostEvents{LostEvents: &flowv1.LostEvent{NodeName: "node-a", NumEventsLost: 3}}}
	status := &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_NodeStatus{NodeStatus: &flowv1.NodeStatus{NodeName: "node-a"}}}
	ct := &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Conntrack{Conntrack: &flowv1.ConntrackSample{NodeName: "node-b"}}}
	pod := &observerv1.FlowFilter{SourcePod: []string{"shop/"}}
	nodeA := &observerv1.FlowFilter{NodeName: []string{"node-a"}}
	podOnA := &observerv1.FlowFilter{SourcePod: []string{"shop/"}, NodeName: []string{"node-a"}}
	cases := []struct {
		name        string
		allow, deny []*observerv1.FlowFilter
		rec         *observerv1.GetFlowsResponse
		want        bool
	}{
		{"lost events pass without filters", nil, nil, lost, true},
		{"lost events pass a flow-specific allow filter", []*observerv1.FlowFilter{pod}, nil, lost, true},
		{"lost events obey the node of an allow filter", []*observerv1.FlowFilter{{NodeName: []string{"node-b"}}}, nil, lost, false},
		{"lost events pass a pod filter on their node", []*observerv1.FlowFilter{podOnA}, nil, lost, true},
		{"lost events are not denied by a flow-specific deny filter", nil, []*observerv1.FlowFilter{pod}, lost, true},
		{"lost events are denied by a node-only deny filter", nil, []*observerv1.FlowFilter{nodeA}, lost, false},
		{"node status fails a flow-specific allow filter", []*observerv1.FlowFilter{pod}, nil, status, false},
		{"node status passes a node allow filter", []*observerv1.FlowFilter{nodeA}, nil, status, true},
		{"conntrack uses its own node name", []*observerv1.FlowFilter{nodeA}, nil, ct, false},
		{"conntrack passes a node glob", []*observerv1.FlowFilter{{NodeName: []string{"node-*"}}}, nil, ct, true},
		{"conntrack is denied by an empty deny filter", nil, []*observerv1.FlowFilter{{}}, ct, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := filter.MustCompile(tc.allow, tc.deny)
			if got := f.Match(tc.rec); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCanonicalNameDropsOneTrailingDotAndLowersASCII(t *testing.T) {
	for in, want := range map[string]string{
		"example.com.": "example.com", "Example.COM": "example.com", "a..": "a.", "": "", ".": "", "ÄB.c": "Äb.c",
	} {
		if got := filter.CanonicalName(in); got != want {
			t.Errorf("CanonicalName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDNSMatchDoesNotAllocateOnLowerCaseNames(t *testing.T) {
	f := filter.MustCompile([]*observerv1.FlowFilter{
		{DestinationFqdn: []string{"*.example.com"}, Protocol: []string{"dns"}},
		{SourceFqdn: []string{"api.example.com"}, DnsRcode: []string{"NOERROR", "NXDOMAIN"}, Type: []flowv1.FlowType{flowv1.FlowType_L7}},
		{DnsQuery: []string{`^api\.`}},
	}, nil)
	flows := filtertest.DNSFlows()[:8] // flow 8's query has capitals
	if !f.MatchFlow(flows[0]) || !f.MatchFlow(flows[1]) {
		t.Fatal("flows 0 and 1 should match")
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, fl := range flows {
			f.MatchFlow(fl)
		}
	}); n != 0 {
		t.Errorf("MatchFlow allocates %.1f times per run", n)
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"node-a", "node-a", true},
		{"node-a", "node-ab", false},
		{"node-*", "node-", true},
		{"*", "", true},
		{"*-a", "node-a", true},
		{"n*d*a", "node-a", true},
		{"n*x*a", "node-a", false},
		{"ab*ba", "aba", false},
		{"a**b", "ab", true},
	}
	for _, tc := range cases {
		f := filter.MustCompile([]*observerv1.FlowFilter{{NodeName: []string{tc.pattern}}}, nil)
		if got := f.Allow[0].NodeName[0].Match(tc.s); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestLikePatternEscapesMetacharacters(t *testing.T) {
	f := filter.MustCompile([]*observerv1.FlowFilter{{NodeName: []string{`a_b%c\d*e`}}}, nil)
	if got, want := f.Allow[0].NodeName[0].LikePattern(), `a\_b\%c\\d%e`; got != want {
		t.Errorf("LikePattern = %q, want %q", got, want)
	}
}

func TestSplitLabel(t *testing.T) {
	cases := []struct{ in, src, key, val string }{
		{"k8s:app=web", "k8s", "app", "web"},
		{"reserved:world", "reserved", "world", ""},
		{"app=web", "", "app", "web"},
		{"a=b:c", "", "a", "b:c"},
		{"k8s:a=b=c", "k8s", "a", "b=c"},
	}
	for _, tc := range cases {
		s, k, v := filter.SplitLabel(tc.in)
		if s != tc.src || k != tc.key || v != tc.val {
			t.Errorf("SplitLabel(%q) = %q %q %q, want %q %q %q", tc.in, s, k, v, tc.src, tc.key, tc.val)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	f := filter.MustCompile([]*observerv1.FlowFilter{{
		SourcePod: []string{"shop/web"}, SourceIp: []string{"10.0.0.0/8"}, DestinationLabel: []string{"k8s:app in (db,web),!team"},
		DestinationPort: []string{"1-65535"}, NodeName: []string{"node-*"}, Protocol: []string{"tcp", "udp"},
	}}, []*observerv1.FlowFilter{{Verdict: []flowv1.Verdict{flowv1.Verdict_DROPPED}}})
	flows := filtertest.Flows()
	resp := &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: flows[0]}}
	if !f.Match(resp) {
		t.Fatal("flow 0 should match")
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, fl := range flows {
			f.MatchFlow(fl)
		}
		f.Match(resp)
	}); n != 0 {
		t.Errorf("Match allocates %.1f times per run", n)
	}
}

func BenchmarkMatchFlow(b *testing.B) {
	f := filter.MustCompile([]*observerv1.FlowFilter{{SourcePod: []string{"shop/web"}, DestinationLabel: []string{"k8s:app=db"}}}, nil)
	flows := filtertest.Flows()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.MatchFlow(flows[i%len(flows)])
	}
}
