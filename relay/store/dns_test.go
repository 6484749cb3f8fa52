package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// dnsGen builds DNS records for the rollup tests, one second apart from
// start, with ids of its own.
type dnsGen struct {
	start time.Time
	out   []*flowv1.Flow
}

var (
	genWeb  = &flowv1.Endpoint{Namespace: "shop", PodName: "web-1", Workloads: []*flowv1.Workload{{Name: "web", Kind: "Deployment"}}}
	genAPI  = &flowv1.Endpoint{Namespace: "shop", PodName: "api-1", Workloads: []*flowv1.Workload{{Name: "api", Kind: "Deployment"}}}
	genAMF  = &flowv1.Endpoint{Namespace: "telco", PodName: "amf-1"} // a pod without a workload
	genHost = &flowv1.Endpoint{Labels: []string{"reserved:host"}}
	genDNS  = &flowv1.Endpoint{Namespace: "kube-system", PodName: "coredns-1", Workloads: []*flowv1.Workload{{Name: "coredns", Kind: "Deployment"}}}
)

// exchange adds a query from client for name and, unless rcode < 0, its
// response with rcode after latency (0: not matched to the query).
func (g *dnsGen) exchange(client *flowv1.Endpoint, name string, rcode int, latency time.Duration) {
	rec := func(typ flowv1.L7FlowType, src, dst *flowv1.Endpoint, d *flowv1.DNS, lat time.Duration) {
		g.out = append(g.out, &flowv1.Flow{
			Time: timestamppb.New(g.start.Add(time.Duration(len(g.out)) * time.Millisecond)), Uuid: store.FormatUUID(0xd25, uint64(len(g.out)+1)),
			NodeName: "node-a", Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_L7_EVENT, Type: flowv1.FlowType_L7,
			IP: &flowv1.IP{Source: "10.0.0.1", Destination: "10.96.0.10", IpVersion: flowv1.IPVersion_IPv4}, Source: src, Destination: dst,
			IsReply: wrapperspb.Bool(typ == flowv1.L7FlowType_RESPONSE),
			L7:      &flowv1.Layer7{Type: typ, LatencyNs: uint64(lat), Record: &flowv1.Layer7_Dns{Dns: d}},
		})
	}
	rec(flowv1.L7FlowType_REQUEST, client, genDNS, &flowv1.DNS{Query: name, Qtypes: []string{"A"}}, 0)
	if rcode >= 0 {
		rec(flowv1.L7FlowType_RESPONSE, genDNS, client, &flowv1.DNS{Query: name, Qtypes: []string{"A"}, Rcode: uint32(rcode)}, latency)
	}
}

func dnsData(start time.Time) []*flowv1.Flow {
	g := &dnsGen{start: start}
	ms := time.Millisecond
	for i := 0; i < 5; i++ {
		g.exchange(genWeb, "api.example.com.", 0, time.Duration(1+i)*ms)
	}
	g.exchange(genWeb, "api.example.com.", 2, 0) // SERVFAIL, not matched
	for i := 0; i < 3; i++ {
		g.exchange(genWeb, "db.shop.svc.cluster.local.shop.svc.cluster.local.", 3, ms/2)
	}
	g.exchange(genWeb, "db.shop.", 3, ms/2)
	g.exchange(genAPI, "db.shop.", 3, ms)
	g.exchange(genAPI, "slow.example.net.", 0, 800*ms)
	g.exchange(genAPI, "slow.example.net.", 0, 900*ms)
	g.exchange(genAMF, "typo.", 3, 0)
	g.exchange(genHost, "typo.", 3, 0)
	g.exchange(genHost, "unanswered.", -1, 0)
	// Not DNS: an aggregate rolls nothing into dns_1m.
	g.out = append(g.out, &flowv1.Flow{Time: timestamppb.New(start), Uuid: store.FormatUUID(0xd25, 9999), NodeName: "node-a",
		Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Source: genWeb, Destination: genDNS, Packets: 2, Bytes: 200})
	return g.out
}

func dnsTop(t *testing.T, s *store.Store, kind observerv1.TopKind, start time.Time, ns ...string) string {
	t.Helper()
	resp, err := s.Top(context.Background(), &observerv1.GetTopRequest{Kind: kind, Namespace: ns,
		Since: timestamppb.New(start.Add(-time.Minute)), Until: timestamppb.New(start.Add(time.Minute))})
	if err != nil {
		t.Fatalf("top %s: %v", kind, err)
	}
	return formatDNSTop(resp)
}

func formatDNSTop(resp *observerv1.GetTopResponse) string {
	var out []string
	for _, e := range resp.Entries {
		lat := "-"
		if e.DnsLatencyP99 != nil {
			lat = fmt.Sprintf("p50 %s p99 %s", e.DnsLatencyP50.AsDuration().Round(100*time.Microsecond), e.DnsLatencyP99.AsDuration().Round(100*time.Microsecond))
		}
		out = append(out, fmt.Sprintf("%s [%s] q%d e%d nx%d %s", e.Source, e.DnsQuery, e.DnsQueries, e.DnsErrors, e.DnsNxdomain, lat))
	}
	return strings.Join(out, "\n")
}

// The three DNS rankings of GetTop from dns_1m: names by queries, client
// workloads by NXDOMAIN answers with the name each asked most, names by
// p99 latency of matched responses.
func TestTopDNSFromTheRollup(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := runWriter(t, s)
	start := filtertest.Base.Add(10 * time.Minute)
	fs := dnsData(start)
	// Two batches, so the rollup has several parts (sums and digests merge).
	write(t, w, &store.Batch{Key: "n/b/1", Flows: fs[:11]})
	write(t, w, &store.Batch{Key: "n/b/2", Flows: fs[11:]})

	for _, tc := range []struct {
		kind observerv1.TopKind
		ns   []string
		want string
	}{
		{observerv1.TopKind_TOP_KIND_DNS_NAMES, nil, strings.Join([]string{
			"api.example.com. [api.example.com.] q6 e1 nx0 p50 3ms p99 5ms",
			"db.shop.svc.cluster.local.shop.svc.cluster.local. [db.shop.svc.cluster.local.shop.svc.cluster.local.] q3 e3 nx3 p50 500µs p99 500µs",
			"db.shop. [db.shop.] q2 e2 nx2 p50 500µs p99 1ms",
			"slow.example.net. [slow.example.net.] q2 e0 nx0 p50 800ms p99 900ms",
			"typo. [typo.] q2 e2 nx2 -",
			"unanswered. [unanswered.] q1 e0 nx0 -",
		}, "\n")},
		{observerv1.TopKind_TOP_KIND_DNS_NXDOMAIN_CLIENTS, nil, strings.Join([]string{
			"shop/web [db.shop.svc.cluster.local.shop.svc.cluster.local.] q10 e5 nx4 p50 1ms p99 5ms",
			"reserved:host [typo.] q2 e1 nx1 -",
			"shop/api [db.shop.] q3 e1 nx1 p50 800ms p99 900ms",
			"telco [typo.] q1 e1 nx1 -",
		}, "\n")},
		{observerv1.TopKind_TOP_KIND_DNS_SLOW_NAMES, nil, strings.Join([]string{
			"slow.example.net. [slow.example.net.] q2 e0 nx0 p50 800ms p99 900ms",
			"api.example.com. [api.example.com.] q6 e1 nx0 p50 3ms p99 5ms",
			"db.shop. [db.shop.] q2 e2 nx2 p50 500µs p99 1ms",
			"db.shop.svc.cluster.local.shop.svc.cluster.local. [db.shop.svc.cluster.local.shop.svc.cluster.local.] q3 e3 nx3 p50 500µs p99 500µs",
		}, "\n")},
		{observerv1.TopKind_TOP_KIND_DNS_NXDOMAIN_CLIENTS, []string{"telco"}, "telco [typo.] q1 e1 nx1 -"},
	} {
		if got := dnsTop(t, s, tc.kind, start, tc.ns...); got != tc.want {
			t.Errorf("top %s %v:\n got\n%s\nwant\n%s", tc.kind, tc.ns, got, tc.want)
		}
	}
	// Outside the window: nothing.
	resp, err := s.Top(context.Background(), &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_DNS_NAMES,
		Since: timestamppb.New(start.Add(time.Hour)), Until: timestamppb.New(start.Add(2 * time.Hour))})
	if err != nil || len(resp.Entries) != 0 {
		t.Errorf("top names of an empty window: %v, %v", resp.GetEntries(), err)
	}
}

// A retried insert is de-duplicated in dns_1m as in flows.
func TestRetriedInsertIsCountedOnceInTheDNSRollup(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	start := filtertest.Base.Add(20 * time.Minute)
	fs := dnsData(start)
	for range 3 {
		if err := store.WriteGroupForTest(context.Background(), s, []*store.Batch{{Key: "n/b/1", Flows: fs}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := dnsTop(t, s, observerv1.TopKind_TOP_KIND_DNS_NAMES, start); !strings.HasPrefix(got, "api.example.com. [api.example.com.] q6 e1 nx0") {
		t.Errorf("after three identical inserts the top name reads\n%s", got)
	}
}

// A database a version 3 relay wrote: its rows read back without l7, the
// enum takes L7_EVENT, DNS records are stored and rolled up, and the step
// runs again without harm.
func TestMigrateAddsDNSToADatabaseAtVersion3(t *testing.T) {
	ctx := context.Background()
	old := filtertest.Flows()[:3]
	s := migrateFrom(t, 3, "L7_EVENT", old)
	start := time.Now().Truncate(time.Minute).Add(-2 * time.Minute)
	dns := dnsData(start)
	if err := store.WriteGroupForTest(ctx, s, []*store.Batch{{Key: "n/b/1", Flows: dns}}); err != nil {
		t.Fatal(err)
	}
	if got := dnsTop(t, s, observerv1.TopKind_TOP_KIND_DNS_SLOW_NAMES, start); !strings.HasPrefix(got, "slow.example.net. [slow.example.net.] q2 e0 nx0 p50 800ms p99 900ms") {
		t.Errorf("slowest names after the migration:\n%s", got)
	}
	back := query(t, s, &observerv1.GetFlowsRequest{Allowlist: []*observerv1.FlowFilter{{EventKind: []flowv1.EventKind{flowv1.EventKind_L7_EVENT}}}})
	if len(back) != len(dns)-1 || !proto.Equal(back[1].GetFlow(), dns[1]) {
		t.Errorf("read %d L7 records after the migration (want %d); second:\n%v\nwant\n%v", len(back), len(dns)-1, back[1].GetFlow(), dns[1])
	}
}

// A kind the schema does not know (a newer agent or proto) is stored as 0
// rather than failing the insert of its whole batch.
func TestAnEventKindTheSchemaLacksIsStoredAsUnspecified(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	fs := filtertest.Flows()[:2]
	fs[1].EventKind = flowv1.EventKind(99)
	if err := store.WriteGroupForTest(context.Background(), s, []*store.Batch{{Key: "n/b/1", Flows: fs}}); err != nil {
		t.Fatalf("insert with an unknown kind: %v", err)
	}
	got := query(t, s, &observerv1.GetFlowsRequest{})
	if len(got) != 2 || got[1].GetFlow().GetEventKind() != flowv1.EventKind_EVENT_KIND_UNSPECIFIED || got[0].GetFlow().GetEventKind() != flowv1.EventKind_AGGREGATE {
		t.Errorf("kinds read back: %v", got)
	}
}

// migrateFrom makes a database at version from whose event_kind refuses
// newKind, writes old as a relay of that version would (its column list),
// migrates it to the latest version twice and runs step from+1 once more.
// The step must be recorded once and old read back unchanged. The returned
// store is closed when the test ends.
func migrateFrom(t *testing.T, from int, newKind string, old []*flowv1.Flow) *store.Store {
	t.Helper()
	ctx := context.Background()
	s, conn := storeAtVersion(t, from)
	if err := conn.Exec(ctx, "INSERT INTO flows (time, id_hi, id_lo, node, event_kind, present) VALUES (now64(9), 1, 99, 'old', ?, 1)", newKind); err == nil {
		t.Fatalf("a version %d flows table took event_kind %s: the migration test would test nothing", from, newKind)
	}
	for i, f := range old {
		f.Time = timestamppb.New(time.Now().Add(-time.Minute + time.Duration(i)*time.Millisecond))
	}
	if err := store.WriteColumnsForTest(ctx, s, old, from); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate a version %d database: %v", from, err)
		}
	}
	if err := store.RerunMigrationForTest(ctx, s, from+1); err != nil {
		t.Fatalf("run step %d again: %v", from+1, err)
	}
	var applied uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM schema_migrations FINAL WHERE version = ?", from+1).Scan(&applied); err != nil || applied != 1 {
		t.Errorf("version %d recorded %d times (err %v), want once", from+1, applied, err)
	}
	got := query(t, s, &observerv1.GetFlowsRequest{})
	if len(got) != len(old) {
		t.Fatalf("read %d version %d flows, want %d", len(got), from, len(old))
	}
	for i := range old {
		if !proto.Equal(got[i].GetFlow(), old[i]) {
			t.Errorf("version %d flow %d reads back as\n%v\nwant\n%v", from, i, got[i].GetFlow(), old[i])
		}
	}
	return s
}
