package store_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// Every DNS filter case selects in ClickHouse exactly what the in-memory
// filter selects, on the DNS data set stored beside the flows' data set and
// on records mixing the DNS set's fields at random.
func TestSQLSelectsExactlyWhatTheFilterSelectsOnDNSRecords(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := runWriter(t, s)
	dns := filtertest.DNSFlows()
	flows := slices.Concat(dns, filtertest.Flows(), mixedDNSFlows(300), oddQueries())
	write(t, w, &store.Batch{Key: "k/dns", Flows: flows})
	cases := append(filtertest.DNSCases(),
		filtertest.Case{Name: "dns_query: a dot does not match a newline, as in Go", Allow: []*observerv1.FlowFilter{{DnsQuery: []string{`^a.b\.$`}}}},
		filtertest.Case{Name: "dns_query: unless the expression says so", Allow: []*observerv1.FlowFilter{{DnsQuery: []string{`(?s)^a.b\.$`}}}},
		filtertest.Case{Name: "fqdn: capitals in a query", Allow: []*observerv1.FlowFilter{{DestinationFqdn: []string{"cafe.example.com"}}}},
	)
	checkAgreement(t, s, flows, len(dns), "DNS", cases)
}

// oddQueries are DNS records whose names hold what DNS allows and names
// rarely do: a newline, capitals. (Not bytes that are not UTF-8: a proto
// string cannot carry them, so no such name reaches the relay.)
func oddQueries() []*flowv1.Flow {
	var out []*flowv1.Flow
	for i, q := range []string{"a\nb.", "CAFE.example.COM."} {
		f := filtertest.DNSFlows()[0]
		f.L7.GetDns().Query = q
		f.Uuid = store.FormatUUID(0x0dd, uint64(i+1))
		out = append(out, f)
	}
	return out
}

// mixedDNSFlows builds n records whose fields come from different records
// of the DNS data set: DNS parts on records of either type and direction,
// names on DNS records, queries with other response codes.
func mixedDNSFlows(n int) []*flowv1.Flow {
	r := rand.New(rand.NewPCG(5, 3))
	set := filtertest.DNSFlows
	var out []*flowv1.Flow
	for i := range n {
		pick := func() *flowv1.Flow { return set()[r.IntN(len(set()))] }
		f := pick()
		f.Type, f.EventKind = pick().Type, pick().EventKind
		f.SourceNames, f.DestinationNames = pick().SourceNames, pick().DestinationNames
		f.L4, f.IsReply, f.Source, f.Destination = pick().L4, pick().IsReply, pick().Source, pick().Destination
		if l7 := pick().L7; l7 != nil {
			if d := pick().L7.GetDns(); d != nil {
				l7.GetDns().Query = d.Query
			}
			if d := pick().L7.GetDns(); d != nil && l7.GetType() == flowv1.L7FlowType_RESPONSE {
				l7.GetDns().Rcode = d.Rcode
			}
			f.L7 = l7
		} else {
			f.L7 = nil
		}
		f.Time = timestamppb.New(filtertest.Base.Add(3*time.Minute + time.Duration(i)*time.Millisecond))
		f.Uuid = store.FormatUUID(0xd25, uint64(i+1))
		out = append(out, f)
	}
	return out
}

// Every TCP health filter case selects in ClickHouse exactly what the
// in-memory filter selects, on the TCP data set stored beside the others
// and on records mixing the TCP set's fields at random.
func TestSQLSelectsExactlyWhatTheFilterSelectsOnTCPRecords(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := runWriter(t, s)
	tcp := filtertest.TCPFlows()
	flows := slices.Concat(tcp, filtertest.Flows(), filtertest.DNSFlows(), mixedTCPFlows(300), oddHandshakes())
	write(t, w, &store.Batch{Key: "k/tcp", Flows: flows})
	rtt := func(d time.Duration) []*observerv1.FlowFilter {
		return []*observerv1.FlowFilter{{MinHandshakeRtt: durationpb.New(d)}}
	}
	cases := append(filtertest.TCPCases(),
		filtertest.Case{Name: "min_handshake_rtt of one nanosecond", Allow: rtt(time.Nanosecond), Want: []int{0, 2, 6, 9}},
		filtertest.Case{Name: "min_handshake_rtt of an hour", Allow: rtt(time.Hour)},
		filtertest.Case{Name: "reset or retransmits, not a timeout", Allow: []*observerv1.FlowFilter{{TcpReset: true}, {TcpRetransmits: true}},
			Deny: []*observerv1.FlowFilter{{TcpTimeout: true}}, Want: []int{1, 2, 3, 5}},
	)
	checkAgreement(t, s, flows, len(tcp), "TCP", cases)
}

// oddHandshakes are records whose handshake halves are what a proto can
// carry and a handshake never is: a negative half (stored as 0), halves of
// 10,000 years (a sum past time.Duration's range), one half alone.
func oddHandshakes() []*flowv1.Flow {
	var out []*flowv1.Flow
	for i, h := range []*flowv1.TCPHealth{
		{HandshakeSynAck: durationpb.New(30 * time.Millisecond), HandshakeAck: durationpb.New(-20 * time.Millisecond)},
		{HandshakeSynAck: durationpb.New(-time.Millisecond), HandshakeAck: durationpb.New(-time.Millisecond)},
		{HandshakeSynAck: &durationpb.Duration{Seconds: 315576000000}, HandshakeAck: &durationpb.Duration{Seconds: 315576000000}},
		{HandshakeAck: durationpb.New(12 * time.Millisecond)},
	} {
		f := filtertest.TCPFlows()[0]
		f.TcpHealth = h
		f.Uuid = store.FormatUUID(0x0dd7c9, uint64(i+1))
		out = append(out, f)
	}
	return out
}

// mixedTCPFlows builds n records whose fields come from different records
// of the TCP data set: TCP health on records of any kind and direction,
// handshake halves, retransmits and resets from different records.
func mixedTCPFlows(n int) []*flowv1.Flow {
	r := rand.New(rand.NewPCG(14, 2))
	set := filtertest.TCPFlows
	var out []*flowv1.Flow
	for i := range n {
		pick := func() *flowv1.Flow { return set()[r.IntN(len(set()))] }
		f := pick()
		f.EventKind, f.IsReply, f.Source, f.L4 = pick().EventKind, pick().IsReply, pick().Source, pick().L4
		if h := pick().GetTcpHealth(); h != nil {
			h.HandshakeAck = pick().GetTcpHealth().GetHandshakeAck()
			h.Retransmits = pick().GetTcpHealth().GetRetransmits()
			h.ResetBy = pick().GetTcpHealth().GetResetBy()
			f.TcpHealth = h
		} else {
			f.TcpHealth = nil
		}
		f.Time = timestamppb.New(filtertest.Base.Add(5*time.Minute + time.Duration(i)*time.Millisecond))
		f.Uuid = store.FormatUUID(0x7c9, uint64(i+1))
		out = append(out, f)
	}
	return out
}

// checkAgreement runs each case through the in-memory filter and through
// ClickHouse over the stored flows: both must select the same records, and
// on the first fixed records (the named data set) the filter must select
// what the case expects.
func checkAgreement(t *testing.T, s *store.Store, flows []*flowv1.Flow, fixed int, set string, cases []filtertest.Case) {
	t.Helper()
	index := map[string]int{}
	for i, f := range flows {
		index[f.Uuid] = i
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			flt, err := filter.Compile(tc.Allow, tc.Deny)
			if err != nil {
				t.Fatal(err)
			}
			var want, wantFixed []int
			for i, f := range flows {
				if flt.MatchFlow(f) {
					want = append(want, i)
					if i < fixed {
						wantFixed = append(wantFixed, i)
					}
				}
			}
			if fmt.Sprint(wantFixed) != fmt.Sprint(tc.Want) {
				t.Fatalf("filter selects %v of the %s set, the case expects %v", wantFixed, set, tc.Want)
			}
			var got []int
			for _, r := range query(t, s, &observerv1.GetFlowsRequest{Allowlist: tc.Allow, Denylist: tc.Deny}) {
				got = append(got, index[r.GetFlow().GetUuid()])
			}
			slices.Sort(got)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("ClickHouse selected %d records, the filter %d\n got %v\nwant %v", len(got), len(want), got, want)
			}
		})
	}
}
