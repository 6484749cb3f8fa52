package enrich

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

var t0 = filtertest.Base // record time; the cache never reads the clock

// answer is a DNS response from the cluster DNS to client on node.
func answer(node, client string, at time.Duration, query string, ttl uint32, ips []string, cnames ...string) *flowv1.Flow {
	return &flowv1.Flow{NodeName: node, Time: timestamppb.New(t0.Add(at)), Type: flowv1.FlowType_L7, EventKind: flowv1.EventKind_L7_EVENT,
		Verdict: flowv1.Verdict_FORWARDED, IP: &flowv1.IP{Source: "10.96.0.10", Destination: client},
		L7: &flowv1.Layer7{Type: flowv1.L7FlowType_RESPONSE, Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{
			Query: query, Ttl: ttl, Ips: ips, Cnames: cnames, Qtypes: []string{"A"}}}}}
}

func conn(node, src, dst string, at time.Duration) *flowv1.Flow {
	return &flowv1.Flow{NodeName: node, Time: timestamppb.New(t0.Add(at)), Type: flowv1.FlowType_L3_L4, EventKind: flowv1.EventKind_AGGREGATE,
		Verdict: flowv1.Verdict_FORWARDED, IP: &flowv1.IP{Source: src, Destination: dst}}
}

// batch hands n the records as one batch of their (first record's) node.
func batch(n *Names, fs []*flowv1.Flow) { n.Batch(fs[0].NodeName, fs) }

func names(f *flowv1.Flow) string { return fmt.Sprint(f.SourceNames, f.DestinationNames) }

func TestNamesComeFromTheClientsOwnAnswersOnItsNode(t *testing.T) {
	n := NewNames(0)
	batch(n, []*flowv1.Flow{answer("node-a", "10.0.1.5", 0, "api.example.com.", 300, []string{"93.184.216.34", "2001:db8::34"})})
	for _, c := range []struct {
		name string
		f    *flowv1.Flow
		want string
	}{
		{"the client's flow to the address", conn("node-a", "10.0.1.5", "93.184.216.34", time.Second), "[] [api.example.com]"},
		{"the way back", conn("node-a", "93.184.216.34", "10.0.1.5", time.Second), "[api.example.com] []"},
		{"the IPv6 answer", conn("node-a", "10.0.1.5", "2001:db8::34", time.Second), "[] [api.example.com]"},
		{"another client", conn("node-a", "10.0.1.6", "93.184.216.34", time.Second), "[] []"},
		{"the same client address on another node", conn("node-b", "10.0.1.5", "93.184.216.34", time.Second), "[] []"},
		{"an address the answer did not have", conn("node-a", "10.0.1.5", "93.184.216.35", time.Second), "[] []"},
		{"within the TTL", conn("node-a", "10.0.1.5", "93.184.216.34", 299*time.Second), "[] [api.example.com]"},
		{"after the TTL", conn("node-a", "10.0.1.5", "93.184.216.34", 301*time.Second), "[] []"},
	} {
		batch(n, []*flowv1.Flow{c.f})
		if got := names(c.f); got != c.want {
			t.Errorf("%s: names %s, want %s", c.name, got, c.want)
		}
	}
}

func TestShortTTLsAreKeptAMinute(t *testing.T) {
	n := NewNames(0)
	batch(n, []*flowv1.Flow{answer("node-a", "10.0.1.5", 0, "fast.example.", 5, []string{"192.0.2.1"})})
	in, out := conn("node-a", "10.0.1.5", "192.0.2.1", 59*time.Second), conn("node-a", "10.0.1.5", "192.0.2.1", 61*time.Second)
	batch(n, []*flowv1.Flow{in, out})
	if names(in) != "[] [fast.example]" || names(out) != "[] []" {
		t.Errorf("TTL 5 s: at 59 s %s, at 61 s %s; want named, then not", names(in), names(out))
	}
}

func TestWhatIsNotAnAnswerTeachesNothing(t *testing.T) {
	n := NewNames(0)
	dropped := answer("node-a", "10.0.1.5", 0, "dropped.example.", 300, []string{"192.0.2.1"})
	dropped.Verdict = flowv1.Verdict_DROPPED
	query := answer("node-a", "10.0.1.5", 0, "query.example.", 300, []string{"192.0.2.2"})
	query.L7.Type = flowv1.L7FlowType_REQUEST
	nx := answer("node-a", "10.0.1.5", 0, "nx.example.", 300, nil)
	nx.L7.GetDns().Rcode = 3
	batch(n, []*flowv1.Flow{dropped, query, nx})
	if n.Len() != 0 {
		t.Errorf("%d entries from a dropped answer, a query and an NXDOMAIN", n.Len())
	}
}

// Answers are learned before the batch's flows are named: a connection
// reported before its answer in the same batch is named too; names a
// record already carries are kept.
func TestABatchLearnsFirstAndKeepsNamesItCarries(t *testing.T) {
	n := NewNames(0)
	early := conn("node-a", "10.0.1.5", "192.0.2.1", 2*time.Second)
	carried := conn("node-a", "10.0.1.5", "192.0.2.1", 2*time.Second)
	carried.DestinationNames = []string{"from.agent"}
	batch(n, []*flowv1.Flow{early, carried, answer("node-a", "10.0.1.5", time.Second, "svc.example.", 30, []string{"192.0.2.1"})})
	if names(early) != "[] [svc.example]" || names(carried) != "[] [from.agent]" {
		t.Errorf("named %s and %s", names(early), names(carried))
	}
}

// A CNAME makes its target an alias of the query for that client; all
// names of an address are listed, sorted.
func TestCNAMEsAliasTheQuery(t *testing.T) {
	n := NewNames(0)
	batch(n, []*flowv1.Flow{
		answer("node-a", "10.0.1.5", 0, "www.shop.example.", 300, nil, "shop.cdn.example."),
		answer("node-a", "10.0.1.5", time.Second, "shop.cdn.example.", 60, []string{"198.51.100.7"}),
		answer("node-a", "10.0.1.6", time.Second, "shop.cdn.example.", 60, []string{"198.51.100.7"}),
	})
	a, b := conn("node-a", "10.0.1.5", "198.51.100.7", 5*time.Second), conn("node-a", "10.0.1.6", "198.51.100.7", 5*time.Second)
	batch(n, []*flowv1.Flow{a, b})
	if names(a) != "[] [shop.cdn.example www.shop.example]" {
		t.Errorf("the client that asked through the CNAME: %s", names(a))
	}
	if names(b) != "[] [shop.cdn.example]" {
		t.Errorf("a client that asked the target directly: %s", names(b))
	}
}

// The cache holds at most its bound; the least recently used goes first.
func TestTheCacheIsBounded(t *testing.T) {
	n := NewNames(3)
	for i := range 5 {
		batch(n, []*flowv1.Flow{answer("node-a", "10.0.1.5", time.Duration(i)*time.Second, fmt.Sprintf("n%d.example.", i), 300, []string{fmt.Sprintf("192.0.2.%d", i)})})
	}
	if n.Len() != 3 {
		t.Fatalf("%d entries, want 3", n.Len())
	}
	first, last := conn("node-a", "10.0.1.5", "192.0.2.0", 10*time.Second), conn("node-a", "10.0.1.5", "192.0.2.4", 10*time.Second)
	batch(n, []*flowv1.Flow{first, last})
	if names(first) != "[] []" || names(last) != "[] [n4.example]" {
		t.Errorf("after eviction: oldest %s, newest %s", names(first), names(last))
	}
	// One address answered for many names keeps the newest few.
	m := NewNames(0)
	for i := range 12 {
		batch(m, []*flowv1.Flow{answer("node-a", "10.0.1.5", 0, fmt.Sprintf("n%02d.example.", i), 300, []string{"192.0.2.9"})})
	}
	f := conn("node-a", "10.0.1.5", "192.0.2.9", time.Second)
	batch(m, []*flowv1.Flow{f})
	if len(f.DestinationNames) != maxNamesPerEntry || f.DestinationNames[0] != "n04.example" {
		t.Errorf("names of a busy address: %v", f.DestinationNames)
	}
}

func BenchmarkNamesFlowsWithoutAnswers(b *testing.B) {
	n := NewNames(0)
	batch(n, []*flowv1.Flow{answer("node-a", "10.0.1.5", 0, "api.example.com.", 300, []string{"93.184.216.34"})})
	flows := make([]*flowv1.Flow, 1000)
	for i := range flows {
		flows[i] = conn("node-a", fmt.Sprintf("10.0.%d.%d", i/250, i%250), "10.0.9.9", time.Second)
	}
	b.ReportAllocs()
	for b.Loop() {
		n.Batch("node-a", flows)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/record")
}

// A DNS message dropped by policy derives no policy-verdict record: the
// drop record of the same packet does.
func TestL7RecordsDeriveNoPolicyVerdicts(t *testing.T) {
	f := answer("node-a", "10.0.1.5", 0, "x.example.", 30, nil)
	f.Verdict, f.DropReasonDesc = flowv1.Verdict_DROPPED, ReasonPolicyDenied
	f.IngressDeniedBy = []*flowv1.Policy{{Namespace: "shop", Name: "deny"}}
	if pv := PolicyVerdictRecords(f); pv != nil {
		t.Errorf("an L7 record derived %d policy verdicts", len(pv))
	}
	f.EventKind = flowv1.EventKind_DROP
	if pv := PolicyVerdictRecords(f); len(pv) != 1 {
		t.Errorf("the drop record derived %d policy verdicts, want 1", len(pv))
	}
}
