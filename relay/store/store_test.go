package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func openStore(t testing.TB, dsn string) *store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: dsn, BatchInterval: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

// runWriter starts a writer and stops it when the test ends.
func runWriter(t testing.TB, s *store.Store) *store.Writer {
	w := s.NewWriter(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// write stores batches and waits until each is acknowledged.
func write(t testing.TB, w *store.Writer, batches ...*store.Batch) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(batches))
	for _, b := range batches {
		wg.Add(1)
		w.Enqueue(b, func(err error) { errs <- err; wg.Done() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("batch not stored: %v", err)
		}
	}
}

func query(t testing.TB, s *store.Store, req *observerv1.GetFlowsRequest) []*observerv1.GetFlowsResponse {
	t.Helper()
	var out []*observerv1.GetFlowsResponse
	if err := s.QueryFlows(context.Background(), req, func(r *observerv1.GetFlowsResponse) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("query flows: %v", err)
	}
	return out
}

func count(t testing.TB, s *store.Store) uint64 {
	t.Helper()
	n, err := s.CountFlows(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func richFlows() []*flowv1.Flow {
	fs := filtertest.Flows()
	t0 := fs[0].Time.AsTime()
	fs[0].FirstSeen = timestamppb.New(t0.Add(-5 * time.Second))
	fs[0].LastSeen = fs[0].Time
	fs[0].Ethernet = &flowv1.Ethernet{Source: "aa:bb:cc:dd:ee:ff", Destination: "11:22:33:44:55:66"}
	fs[0].IP.Encrypted = true
	fs[0].Source.ID, fs[0].Source.Identity, fs[0].Source.ClusterName, fs[0].Source.NodeName = 12, 3456, "prod", "node-a"
	fs[0].EgressAllowedBy[0].Labels = []string{"k8s:io.cilium.k8s.policy.name=allow-db"}
	fs[0].EgressAllowedBy[0].Revision = 7
	fs[0].Conntrack = &flowv1.ConntrackInfo{NewEntry: true}
	fs[0].Netns = 4026531840
	fs[1].L4.GetTCP().Flags = nil
	fs[1].FirstSeen = timestamppb.New(t0.Add(-time.Hour))
	fs[2].L4 = &flowv1.Layer4{}
	fs[3].IP = &flowv1.IP{Source: "::ffff:10.0.0.1", Destination: "2001:db8::1", IpVersion: flowv1.IPVersion_IPv6}
	fs[4].Destination.Workloads = []*flowv1.Workload{{Name: "prom", Kind: "StatefulSet"}, {Name: "prom-operator", Kind: "Deployment"}}
	fs[5].Uuid = "NOT-A-UUID'); DROP TABLE flows; --"
	fs[6].Type = flowv1.FlowType_L7
	fs[7].SourceNames = []string{"a.example", "b.example"}
	// Shared policy pointers, as the enrichment's verdict cache hands out:
	// the writer caches their encoding per insert and must not confuse
	// lists that only share their first element.
	p1, p2, p3 := &flowv1.Policy{Namespace: "shop", Name: "p1", Revision: 3}, &flowv1.Policy{Namespace: "shop", Name: "p2"}, &flowv1.Policy{Namespace: "shop", Name: "p3"}
	fs[7].IngressAllowedBy = []*flowv1.Policy{p1, p2}
	fs[8].IngressAllowedBy = []*flowv1.Policy{p1, p3}
	fs[9].IngressAllowedBy = fs[7].IngressAllowedBy
	return append(fs, richDNSFlows()...)
}

// richDNSFlows are filtertest's DNS records with every l7 field set
// somewhere: cnames, an observation source other than the record's
// observation point, a response code without a name, a request with a
// response code, a Layer7 without a DNS record and one of unknown type.
func richDNSFlows() []*flowv1.Flow {
	fs := filtertest.DNSFlows()
	for _, f := range fs {
		if f.L7 != nil {
			f.ObservationPoint = "tcx-ingress"
		}
	}
	d := fs[1].L7.GetDns()
	d.Cnames = []string{"api.edge.example.net.", "api.example.com.cdn.example."}
	d.Ips = append(d.Ips, "2001:db8::34")
	d.Rrtypes = []string{"CNAME", "CNAME", "A", "AAAA"}
	fs[3].L7.GetDns().ObservationSource = "tcx-egress" // not the record's point
	fs[4].L7.GetDns().Rcode = 23                       // no mnemonic: RCODE23
	fs[8].L7.GetDns().Rcode = 5                        // a request that says REFUSED
	fs[8].L7.Type = flowv1.L7FlowType_UNKNOWN_L7_TYPE
	fs[2].L7.GetDns().ObservationSource = ""
	fs[0].L7.LatencyNs = 7 // a request with a latency still reads back
	sample := proto.Clone(fs[0]).(*flowv1.Flow)
	sample.L7 = &flowv1.Layer7{Type: flowv1.L7FlowType_SAMPLE, LatencyNs: 42} // no DNS record
	sample.Uuid = filtertest.UUID(90)
	sample.Time = timestamppb.New(fs[len(fs)-1].Time.AsTime().Add(time.Second))
	empty := proto.Clone(sample).(*flowv1.Flow)
	empty.L7 = &flowv1.Layer7{Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{}}} // an empty DNS record
	empty.Uuid = filtertest.UUID(91)
	empty.Time = timestamppb.New(sample.Time.AsTime().Add(time.Second))
	return append(fs, sample, empty)
}

func TestFlowsRoundTripFieldForField(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := runWriter(t, s)
	want := richFlows()
	write(t, w, &store.Batch{Key: "node-a/boot/1", Flows: want[:5]}, &store.Batch{Key: "node-a/boot/2", Flows: want[5:]})
	got := query(t, s, &observerv1.GetFlowsRequest{})
	requireFlows(t, got, want)
	for i := range want {
		if got[i].GetNodeName() != want[i].NodeName || !proto.Equal(got[i].GetTime(), want[i].Time) {
			t.Errorf("flow %d: envelope node %q time %v", i, got[i].GetNodeName(), got[i].GetTime())
		}
	}
}

func TestMigrateTwiceIsANoOpAndRecordsTheVersion(t *testing.T) {
	dsn := chtest.Database(t)
	s := openStore(t, dsn)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	conn := chtest.Open(t, dsn)
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+s.Database()+".schema_migrations FINAL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != uint64(store.SchemaVersion()) {
		t.Errorf("schema_migrations has %d rows, want %d", n, store.SchemaVersion())
	}
	for _, table := range []string{"flows", "flows_1m", "policy_1m", "dns_1m", "tcp_1m", "conntrack", "lost_events", "nodes"} {
		var c uint64
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = ? AND name = ?", s.Database(), table).Scan(&c); err != nil || c != 1 {
			t.Errorf("table %s: count %d, err %v", table, c, err)
		}
	}
}

func TestLastNIsChronologicalAndFirstNIsTheOldest(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := runWriter(t, s)
	fs := filtertest.Flows()
	lost := &flowv1.LostEvent{Source: flowv1.LostEventSource_MAP_FULL, NumEventsLost: 5, NodeName: "node-a",
		Time: timestamppb.New(filtertest.Base.Add(8500 * time.Millisecond)), Cpu: wrapperspb.Int32(1), Detail: "flows map"}
	write(t, w, &store.Batch{Key: "k/1", Flows: fs, Lost: []*flowv1.LostEvent{lost}})
	ids := func(rs []*observerv1.GetFlowsResponse) string {
		var out []string
		for _, r := range rs {
			if r.GetLostEvents() != nil {
				out = append(out, "lost")
				if !proto.Equal(r.GetLostEvents(), lost) {
					t.Errorf("lost event differs: %v", r.GetLostEvents())
				}
				continue
			}
			out = append(out, r.GetFlow().GetUuid()[34:])
		}
		return fmt.Sprint(out)
	}
	cases := []struct {
		name string
		req  *observerv1.GetFlowsRequest
		want string
	}{
		{"last 3 in time order", &observerv1.GetFlowsRequest{Number: 3}, "[lost 09 0a]"},
		{"first 2", &observerv1.GetFlowsRequest{Number: 2, First: true}, "[00 01]"},
		{"since and until are inclusive", &observerv1.GetFlowsRequest{Since: timestamppb.New(filtertest.Base.Add(2 * time.Second)), Until: timestamppb.New(filtertest.Base.Add(4 * time.Second))}, "[02 03 04]"},
		{"last 2 before until", &observerv1.GetFlowsRequest{Number: 2, Until: timestamppb.New(filtertest.Base.Add(4 * time.Second))}, "[03 04]"},
		{"lost events pass a pod filter", &observerv1.GetFlowsRequest{Number: 2, Allowlist: []*observerv1.FlowFilter{{SourcePod: []string{"shop/db"}}}}, "[08 lost]"},
		{"lost events obey node filters", &observerv1.GetFlowsRequest{Allowlist: []*observerv1.FlowFilter{{NodeName: []string{"node-b"}}}}, "[02 03 08]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(query(t, s, tc.req)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// Every filter case selects in ClickHouse exactly what the in-memory
// filter selects on the same records: the hand-made data set, and a larger
// one mixing its fields at random.
func TestSQLSelectsExactlyWhatTheFilterSelects(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := runWriter(t, s)
	flows := append(filtertest.Flows(), mixedFlows(400)...)
	write(t, w, &store.Batch{Key: "k/1", Flows: flows})
	checkAgreement(t, s, flows, len(filtertest.Flows()), "fixed", filtertest.Cases())
}

// mixedFlows builds n flows whose fields come from different flows of the
// fixed data set, so that combinations the hand-made set lacks occur.
func mixedFlows(n int) []*flowv1.Flow {
	r := rand.New(rand.NewPCG(7, 7))
	var out []*flowv1.Flow
	for i := 0; i < n; i++ {
		pick := func() *flowv1.Flow { return filtertest.Flows()[r.IntN(len(filtertest.Flows()))] }
		f := pick()
		f.Source, f.SourceService, f.SourceNames = pick().Source, pick().SourceService, pick().SourceNames
		f.Destination, f.DestinationService = pick().Destination, pick().DestinationService
		f.IP, f.L4, f.IsReply, f.Interface = pick().IP, pick().L4, pick().IsReply, pick().Interface
		f.Verdict, f.DropReasonDesc, f.DropReasonKernel, f.DropClass = pick().Verdict, pick().DropReasonDesc, pick().DropReasonKernel, pick().DropClass
		f.NodeName, f.EventKind, f.TrafficDirection = pick().NodeName, pick().EventKind, pick().TrafficDirection
		p := pick()
		f.EgressAllowedBy, f.IngressAllowedBy, f.EgressDeniedBy, f.IngressDeniedBy = p.EgressAllowedBy, p.IngressAllowedBy, p.EgressDeniedBy, p.IngressDeniedBy
		f.Time = timestamppb.New(filtertest.Base.Add(time.Minute + time.Duration(i)*time.Millisecond))
		f.Uuid = store.FormatUUID(0xfeed, uint64(i+1))
		out = append(out, f)
	}
	return out
}

func TestHostileFilterStringsChangeNothing(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := runWriter(t, s)
	write(t, w, &store.Batch{Key: "k/1", Flows: filtertest.Flows()})
	hostile := []string{`'`, `"`, `\`, `'; DROP TABLE flows; --`, `') OR 1=1 --`, `{p0:String}`, `%`, `_`, "\x00", `*' OR ''='`, `shop/' OR '1'='1`}
	for _, h := range hostile {
		for _, ff := range []*observerv1.FlowFilter{
			{SourcePod: []string{h}}, {NodeName: []string{h}}, {DropReasonDesc: []string{h}}, {Uuid: []string{h}},
			{SourceLabel: []string{h}}, {SourceIp: []string{h}}, {Policy: []string{"a/" + h}}, {SourceFqdn: []string{h}},
			{SourceWorkload: []*flowv1.Workload{{Name: h}}}, {Interface: []*flowv1.NetworkInterface{{Name: h}}}, {DropClass: []string{h}},
		} {
			err := s.QueryFlows(context.Background(), &observerv1.GetFlowsRequest{Allowlist: []*observerv1.FlowFilter{ff}}, func(r *observerv1.GetFlowsResponse) error {
				return fmt.Errorf("hostile filter %v selected flow %s", ff, r.GetFlow().GetUuid())
			})
			if err != nil && status.Code(err) != codes.InvalidArgument {
				t.Errorf("filter %v: %v", ff, err)
			}
		}
	}
	if n, want := count(t, s), uint64(len(filtertest.Flows())); n != want {
		t.Errorf("flows table has %d rows after hostile queries, want %d", n, want)
	}
}

func TestRetriedInsertIsDeduplicatedInFlowsAndRollups(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	fs := filtertest.Flows()
	for i := 0; i < 3; i++ { // the same batch group inserted three times, as retries would
		if err := store.WriteGroupForTest(context.Background(), s, []*store.Batch{{Key: "n/b/1", Flows: fs[:5]}, {Key: "n/b/2", Flows: fs[5:]}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, want := count(t, s), uint64(len(fs)); n != want {
		t.Errorf("flows has %d rows, want %d", n, want)
	}
	top, err := s.Top(context.Background(), &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_TALKERS,
		Since: timestamppb.New(filtertest.Base.Add(-time.Minute)), Until: timestamppb.New(filtertest.Base.Add(time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	var bytes uint64
	for _, e := range top.Entries {
		bytes += e.Bytes
	}
	// AGGREGATE records only: 1500 + 9000 + 64000 + 196 + 0.
	if bytes != 74696 {
		t.Errorf("rollup bytes %d, want 74696 (counted once)", bytes)
	}
	// A different group is a different insert.
	if err := store.WriteGroupForTest(context.Background(), s, []*store.Batch{{Key: "n/b/3", Flows: fs[:1]}}); err != nil {
		t.Fatal(err)
	}
	if n, want := count(t, s), uint64(len(fs)+1); n != want {
		t.Errorf("flows has %d rows after a new batch, want %d", n, want)
	}
}

func TestTopComesFromTheRightRecordKinds(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := runWriter(t, s)
	write(t, w, &store.Batch{Key: "k/1", Flows: filtertest.Flows()})
	win := func(k observerv1.TopKind) *observerv1.GetTopRequest {
		return &observerv1.GetTopRequest{Kind: k, Since: timestamppb.New(filtertest.Base.Add(-time.Minute)), Until: timestamppb.New(filtertest.Base.Add(time.Minute))}
	}
	cases := []struct {
		name string
		req  *observerv1.GetTopRequest
		want string
	}{
		{"talkers by bytes from aggregates", win(observerv1.TopKind_TOP_KIND_TALKERS),
			"[telco→telco 64000 B; shop/db→shop/web 9000 B; shop/web→shop/db 1500 B; shop/web→world 196 B]"},
		{"droppers from drop records leave teardown out", win(observerv1.TopKind_TOP_KIND_DROPPERS),
			"[attacker→shop/db POLICY_DENIED policy 3 drops; shop/web→world NO_SOCKET no-socket 1 drops]"},
		{"droppers of the classes asked for", &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_DROPPERS, DropClass: []string{"teardown", "no_socket"},
			Since: timestamppb.New(filtertest.Base.Add(-time.Minute)), Until: timestamppb.New(filtertest.Base.Add(time.Minute))},
			"[shop/web→world NO_SOCKET no-socket 1 drops; world→world QUEUE_PURGE teardown 1 drops]"},
		{"denied pairs name the policies", win(observerv1.TopKind_TOP_KIND_DENIED_PAIRS),
			"[attacker→shop/db [shop/db-only-web shop/default-deny]; telco→telco [/global-audit]]"},
		{"namespace restricts", &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_TALKERS, Namespace: []string{"telco"}, Limit: 5,
			Since: timestamppb.New(filtertest.Base.Add(-time.Minute)), Until: timestamppb.New(filtertest.Base.Add(time.Minute))}, "[telco→telco 64000 B]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.Top(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range resp.Entries {
				switch tc.req.Kind {
				case observerv1.TopKind_TOP_KIND_DROPPERS:
					got = append(got, fmt.Sprintf("%s→%s %s %s %d drops", e.Source, e.Destination, e.Reason, e.DropClass, e.Drops))
				case observerv1.TopKind_TOP_KIND_DENIED_PAIRS:
					got = append(got, fmt.Sprintf("%s→%s %v", e.Source, e.Destination, e.Policies))
				default:
					got = append(got, fmt.Sprintf("%s→%s %d B", e.Source, e.Destination, e.Bytes))
				}
			}
			if g := "[" + strings.Join(got, "; ") + "]"; g != tc.want {
				t.Errorf("got  %s\nwant %s", g, tc.want)
			}
		})
	}
}

func TestConntrackNodesAndCreators(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := runWriter(t, s)
	ctx := context.Background()
	mk := func(node string, sec int, entries uint64) *flowv1.ConntrackSample {
		return &flowv1.ConntrackSample{NodeName: node, Time: timestamppb.New(filtertest.Base.Add(time.Duration(sec) * time.Second)),
			Entries: entries, Max: 1000, Utilization: float64(entries) / 1000, Interval: durationpb.New(10 * time.Second),
			Deltas: &flowv1.ConntrackStats{New: 5, Drop: 1}, Trigger: flowv1.ConntrackTrigger_PERIODIC,
			TopCreators: []*flowv1.ConntrackCreator{{Ip: "10.0.1.5", NewEntries: entries, Endpoint: &flowv1.Endpoint{Namespace: "shop", PodName: "web-1"}}}}
	}
	newest := mk("node-a", 20, 300)
	write(t, w, &store.Batch{Key: "k/1", Conntrack: []*flowv1.ConntrackSample{mk("node-a", 10, 100), newest, mk("node-b", 5, 50)}})
	got, err := s.LatestConntrack(ctx, []string{"node-a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !proto.Equal(got[0], newest) {
		t.Errorf("latest conntrack of node-a = %v, want %v", got, newest)
	}
	all, err := s.LatestConntrack(ctx, nil)
	if err != nil || len(all) != 2 {
		t.Errorf("latest conntrack of all nodes: %d samples, err %v", len(all), err)
	}
	top, err := s.Top(ctx, &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_CONNTRACK_CREATORS,
		Since: timestamppb.New(filtertest.Base.Add(-time.Minute)), Until: timestamppb.New(filtertest.Base.Add(time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Entries) != 1 || top.Entries[0].Source != "shop/web-1" || top.Entries[0].ConntrackEntries != 450 {
		t.Errorf("conntrack creators = %v, want shop/web-1 with 450", top.Entries)
	}

	old := &flowv1.NodeStatus{NodeName: "node-a", State: flowv1.NodeState_NODE_CONNECTED, Version: "v1", LastSeen: timestamppb.New(filtertest.Base)}
	cur := &flowv1.NodeStatus{NodeName: "node-a", State: flowv1.NodeState_NODE_UNAVAILABLE, Version: "v2", LastSeen: timestamppb.New(filtertest.Base.Add(time.Minute)),
		Features: []*flowv1.KernelFeature{{Name: "tcx", Enabled: true}}, Counters: map[string]uint64{"lost_ringbuf": 3}}
	other := &flowv1.NodeStatus{NodeName: "node-b", LastSeen: timestamppb.New(filtertest.Base)}
	for _, n := range []*flowv1.NodeStatus{cur, old, other} {
		if err := s.UpsertNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	nodes, err := s.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || !proto.Equal(nodes[0], cur) || !proto.Equal(nodes[1], other) {
		t.Errorf("nodes = %v, want the newest status of node-a and node-b", nodes)
	}
}

func TestQueryWithABadFilterIsInvalidArgument(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	err := s.QueryFlows(context.Background(), &observerv1.GetFlowsRequest{Allowlist: []*observerv1.FlowFilter{{SourcePort: []string{"http"}}}},
		func(*observerv1.GetFlowsResponse) error { return nil })
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("error %v, want InvalidArgument", err)
	}
}

func TestEnqueueAfterStopFailsTheBatch(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	w := s.NewWriter(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = w.Run(ctx)
	var got error
	w.Enqueue(&store.Batch{Key: "k", Flows: filtertest.Flows()}, func(err error) { got = err })
	if !errors.Is(got, store.ErrClosed) {
		t.Errorf("done(%v), want ErrClosed", got)
	}
}

// requireFlows fails unless the records read back are exactly the flows
// written, in order.
func requireFlows(t *testing.T, got []*observerv1.GetFlowsResponse, want []*flowv1.Flow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i].GetFlow(), want[i]) {
			t.Errorf("flow %d (node %s) reads back as\n%v\nwant\n%v", i, want[i].GetNodeName(), got[i].GetFlow(), want[i])
		}
	}
}
