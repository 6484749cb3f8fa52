package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// A database a version 2 relay wrote: its drop rows get their class when
// read, its rollup rows are ranked by class, new rows roll up per class, and
// the step runs again without harm.
func TestMigrateAddsDropClassesToADatabaseAtVersion2(t *testing.T) {
	ctx := context.Background()
	s, conn := storeAtVersion(t, 2)
	// A version 2 relay's insert: no drop_class column.
	if err := conn.Exec(ctx, `INSERT INTO flows (time, id_hi, id_lo, node, verdict, event_kind, drop_reason_desc, drop_reason_kernel, src_namespace, packets, present) VALUES
  (now64(9), 1, 1, 'old', 'DROPPED', 'DROP', 'QUEUE_PURGE', 'QUEUE_PURGE', 'a', 1, 1),
  (now64(9), 1, 2, 'old', 'DROPPED', 'DROP', 'POLICY_DENIED', 'NETFILTER_DROP', 'a', 2, 1),
  (now64(9), 1, 3, 'old', 'FORWARDED', 'AGGREGATE', '', '', 'a', 5, 1),
  (now64(9), 1, 4, 'old', 'DROPPED', 'DROP', 'A_FUTURE_REASON', 'A_FUTURE_REASON', 'a', 4, 1),
  (now64(9), 1, 5, 'old', 'DROPPED', 'DROP', 'NO_SOCKET', 'SKB_DROP_REASON_NO_SOCKET', 'b', 3, 1)`); err != nil {
		t.Fatal(err)
	}
	migrateTwiceAndRerun(ctx, t, s, conn, 3)
	var key string
	if err := conn.QueryRow(ctx, "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'flows_1m'").Scan(&key); err != nil || !strings.HasSuffix(key, "drop_class") {
		t.Errorf("flows_1m sorting key %q (err %v), want it to end in drop_class", key, err)
	}

	classes := func(key, where string) string {
		t.Helper()
		rows, err := conn.Query(ctx, "SELECT toString("+key+") AS k, drop_class FROM flows WHERE "+where+" ORDER BY "+key)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var k, c string
			if err := rows.Scan(&k, &c); err != nil {
				t.Fatal(err)
			}
			out = append(out, k+":"+c)
		}
		return strings.Join(out, " ")
	}
	if got, want := classes("id_lo", "node = 'old'"), "1:teardown 2:policy 3: 4:other 5:no-socket"; got != want {
		t.Errorf("version 2 rows read classes %q, want %q", got, want)
	}
	var ids []uint64
	err := s.QueryFlows(ctx, &observerv1.GetFlowsRequest{
		Allowlist: []*observerv1.FlowFilter{{NodeName: []string{"old"}, Verdict: []flowv1.Verdict{flowv1.Verdict_DROPPED}}},
		Denylist:  []*observerv1.FlowFilter{{DropClass: []string{"teardown"}}},
	}, func(r *observerv1.GetFlowsResponse) error {
		_, lo, _ := store.ParseUUID(r.GetFlow().GetUuid())
		ids = append(ids, lo)
		if r.GetFlow().GetDropClass() == "" {
			t.Errorf("flow %s read back without its class", r.GetFlow().GetUuid())
		}
		return nil
	})
	if err != nil || fmt.Sprint(ids) != "[2 4 5]" {
		t.Errorf("dropped without teardown selects %v (err %v), want [2 4 5]", ids, err)
	}

	// New rows carry their class into the rollup.
	if err := store.WriteGroupForTest(ctx, s, []*store.Batch{agentBatch(1)}); err != nil {
		t.Fatal(err)
	}
	if got, want := classes("drop_reason_kernel", "node = 'node-a' AND verdict = 'DROPPED'"), "NETFILTER_DROP:policy NO_SOCKET:no-socket QUEUE_PURGE:teardown"; got != want {
		t.Errorf("new drop rows have classes %q, want %q", got, want)
	}
	rollup := map[string]uint64{}
	rows, err := conn.Query(ctx, "SELECT drop_class, sum(drops) FROM flows_1m WHERE node = 'node-a' GROUP BY drop_class")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		var n uint64
		if err := rows.Scan(&c, &n); err != nil {
			t.Fatal(err)
		}
		rollup[c] = n
	}
	rows.Close()
	if fmt.Sprint(rollup) != "map[:0 no-socket:1 policy:3 teardown:1]" {
		t.Errorf("flows_1m drops per class of new rows: %v", rollup)
	}

	// Rollup rows of version 2 have no class: Top derives it.
	now := time.Now()
	win := func(classes ...string) *observerv1.GetTopRequest {
		return &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_DROPPERS, Namespace: []string{"a", "b"}, DropClass: classes,
			Since: timestamppb.New(now.Add(-time.Hour)), Until: timestamppb.New(now.Add(time.Minute))}
	}
	for _, tc := range []struct {
		req  *observerv1.GetTopRequest
		want string
	}{
		{win(), "[a→world A_FUTURE_REASON other 4; b→world NO_SOCKET no-socket 3; a→world POLICY_DENIED policy 2]"},
		{win("teardown"), "[a→world QUEUE_PURGE teardown 1]"},
	} {
		top, err := s.Top(ctx, tc.req)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range top.Entries {
			got = append(got, fmt.Sprintf("%s→%s %s %s %d", e.Source, e.Destination, e.Reason, e.DropClass, e.Drops))
		}
		if g := "[" + strings.Join(got, "; ") + "]"; g != tc.want {
			t.Errorf("top droppers %v: %s, want %s", tc.req.DropClass, g, tc.want)
		}
	}
	if _, err := s.Top(ctx, win("bogus")); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("top droppers of an unknown class: err %v", err)
	}
}

// policyMix are flows whose policies the names rebuild (egress and ingress
// in one record, a cluster-scoped one) and flows whose policies need extra
// (labels, a revision, another kind, extra's other fields beside them).
func policyMix() []*flowv1.Flow {
	np := func(ns, name string) *flowv1.Policy {
		return &flowv1.Policy{Namespace: ns, Name: name, Kind: "NetworkPolicy"}
	}
	fs := filtertest.Flows()
	fs[0].IngressAllowedBy = []*flowv1.Policy{np("shop", "allow-web"), np("", "cluster-wide")}
	fs[1].EgressDeniedBy = []*flowv1.Policy{{Namespace: "shop", Name: "labelled", Kind: "NetworkPolicy", Labels: []string{"k8s:team=a"}}}
	fs[1].IngressAllowedBy = []*flowv1.Policy{np("shop", "allow-web")}
	fs[3].IngressAllowedBy = []*flowv1.Policy{{Namespace: "shop", Name: "v2", Kind: "NetworkPolicy", Revision: 7}}
	fs[4].EgressAllowedBy = []*flowv1.Policy{{Namespace: "", Name: "baseline", Kind: "AdminNetworkPolicy"}}
	fs[7].EgressAllowedBy, fs[7].Conntrack = []*flowv1.Policy{np("shop", "allow-egress")}, &flowv1.ConntrackInfo{NewEntry: true}
	return fs
}

// A database a version 5 relay wrote (every policy in extra, IPv6 address
// columns) migrates to version 6 without losing or changing a row; the
// step runs again without harm; rows written after it read back the same,
// keep the policies the names rebuild out of extra, and IP filters select
// old and new rows alike.
func TestMigrateToVersion6KeepsEveryRowOfAVersion5Database(t *testing.T) {
	ctx := context.Background()
	s, conn := storeAtVersion(t, 5)
	at := func(fs []*flowv1.Flow, from time.Time, node string) []*flowv1.Flow {
		for i, f := range fs {
			f.Time, f.NodeName = timestamppb.New(from.Add(time.Duration(i)*time.Millisecond)), node
		}
		return fs
	}
	old := at(policyMix(), time.Now().Add(-2*time.Minute), "old")
	if err := store.WriteColumnsForTest(ctx, s, old, 5); err != nil {
		t.Fatal(err)
	}
	migrateTwiceAndRerun(ctx, t, s, conn, 6)
	// The address columns' new type is a mutation; wait until it has
	// rewritten the old part, then read the old rows from it.
	for i := 0; ; i++ {
		var pending uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = 'flows' AND NOT is_done").Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if i == 300 {
			t.Fatal("the version 6 mutation did not finish in 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var types string
	if err := conn.QueryRow(ctx, "SELECT arrayStringConcat(groupUniqArray(type), ',') FROM system.parts_columns WHERE database = currentDatabase() AND table = 'flows' AND active AND column IN ('src_ip', 'dst_ip')").Scan(&types); err != nil || types != "LowCardinality(IPv6)" {
		t.Errorf("stored address columns are %q (err %v), want LowCardinality(IPv6)", types, err)
	}

	fresh := at(policyMix(), time.Now().Add(-time.Minute), "new")
	if err := store.WriteGroupForTest(ctx, s, []*store.Batch{{Key: "new/boot/1", Flows: fresh}}); err != nil {
		t.Fatal(err)
	}
	got := query(t, s, &observerv1.GetFlowsRequest{})
	want := append(append([]*flowv1.Flow(nil), old...), fresh...)
	requireFlows(t, got, want)

	// New rows: only the policies the names cannot rebuild are in extra.
	rows, err := conn.Query(ctx, "SELECT node, toInt64(id_lo), policy_egress, extra != '' FROM flows ORDER BY node, time")
	if err != nil {
		t.Fatal(err)
	}
	var layouts []string
	for rows.Next() {
		var node string
		var lo int64
		var egress uint16
		var extra bool
		if err := rows.Scan(&node, &lo, &egress, &extra); err != nil {
			t.Fatal(err)
		}
		if node == "new" {
			layouts = append(layouts, fmt.Sprintf("%#x/%v", egress, extra))
		} else if egress != 0 {
			t.Errorf("a version 5 row has policy_egress %#x", egress)
		}
	}
	rows.Close()
	// Flow 0: one egress name and two ingress ones; 2 two ingress denials;
	// 5 one ingress; 6 one egress denial; 1, 3, 4 and 7 need extra.
	wantLayouts := "[0x1/false 0x0/true 0x0/false 0x0/true 0x0/true 0x0/false 0x100/false 0x0/true 0x0/false 0x0/false 0x0/false]"
	if fmt.Sprint(layouts) != wantLayouts {
		t.Errorf("new rows' policy_egress/extra:\n%v\nwant\n%s", layouts, wantLayouts)
	}

	for _, tc := range []struct {
		filter *observerv1.FlowFilter
		want   int
	}{
		{&observerv1.FlowFilter{SourceIp: []string{"10.0.1.5"}}, 4},
		{&observerv1.FlowFilter{DestinationIp: []string{"fd00:0:0:1::/64"}}, 2},
	} {
		if n := len(query(t, s, &observerv1.GetFlowsRequest{Allowlist: []*observerv1.FlowFilter{tc.filter}})); n != tc.want {
			t.Errorf("filter %v selects %d flows of old and new rows, want %d", tc.filter, n, tc.want)
		}
	}
}

// migrateTwiceAndRerun migrates a database at version-1 twice (the second
// run finds the version recorded and does nothing), runs that version's
// step once more (it must do no harm) and checks the version is recorded
// once.
func migrateTwiceAndRerun(ctx context.Context, t *testing.T, s *store.Store, conn driver.Conn, version int) {
	t.Helper()
	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate a version %d database: %v", version-1, err)
		}
	}
	if err := store.RerunMigrationForTest(ctx, s, version); err != nil {
		t.Fatalf("run step %d again: %v", version, err)
	}
	var applied uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM schema_migrations FINAL WHERE version = ?", version).Scan(&applied); err != nil || applied != 1 {
		t.Errorf("version %d recorded %d times (err %v), want once", version, applied, err)
	}
}

// storeAtVersion is a store on a database of its own, migrated only up to
// version (as an older relay left it), and a connection to that database;
// the store is closed when the test ends.
func storeAtVersion(t *testing.T, version int) (*store.Store, driver.Conn) {
	t.Helper()
	ctx := context.Background()
	dsn := chtest.Database(t)
	s, err := store.Open(ctx, store.Config{Retention: filtertest.Retention(), DSN: dsn, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := store.MigrateToForTest(ctx, s, version); err != nil {
		t.Fatalf("migrate to version %d: %v", version, err)
	}
	return s, chtest.Open(t, dsn)
}
