package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// richTCPFlows are filtertest's TCP records plus the edge cases of the
// TCPHealth message: both halves set to zero, an empty message, one with
// only the ACK half, and every field at once.
func richTCPFlows() []*flowv1.Flow {
	fs := filtertest.TCPFlows()
	extra := func(i int, h *flowv1.TCPHealth) *flowv1.Flow {
		f := proto.Clone(fs[0]).(*flowv1.Flow)
		f.TcpHealth = h
		f.Uuid = filtertest.UUID(160 + i)
		f.Time = timestamppb.New(fs[len(fs)-1].Time.AsTime().Add(time.Duration(i+1) * time.Second))
		return f
	}
	return append(fs,
		extra(0, &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(0), HandshakeAck: durationpb.New(0)}),
		extra(1, &flowv1.TCPHealth{}),
		extra(2, &flowv1.TCPHealth{HandshakeAck: durationpb.New(70 * time.Microsecond)}),
		extra(3, &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(1234567 * time.Nanosecond), HandshakeAck: durationpb.New(89 * time.Nanosecond),
			Retransmits: 4000000000, ResetBy: flowv1.TCPSide_SERVER, ZeroWindows: 17}),
	)
}

func TestTCPHealthRoundTripsFieldForField(t *testing.T) {
	dsn := chtest.Database(t)
	s := openStore(t, dsn)
	w := runWriter(t, s)
	want := richTCPFlows()
	write(t, w, &store.Batch{Key: "node-a/boot/1", Flows: want})
	got := query(t, s, &observerv1.GetFlowsRequest{})
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	withHealth := 0
	for i := range want {
		if want[i].TcpHealth != nil {
			withHealth++
		}
		if !proto.Equal(got[i].GetFlow(), want[i]) {
			t.Errorf("flow %d differs:\n got %v\nwant %v", i, got[i].GetFlow(), want[i])
		}
	}
	if withHealth < 10 {
		t.Fatalf("only %d records with TCP health: the test covers too little", withHealth)
	}
	// The columns hold the contract's values.
	conn := chtest.Open(t, dsn)
	var synAck, ack uint64
	var retrans, zw uint32
	var resetBy, kind string
	if err := conn.QueryRow(context.Background(), "SELECT tcp_syn_ack_ns, tcp_ack_ns, tcp_retransmits, tcp_reset_by, tcp_zero_windows, toString(event_kind) FROM "+s.Database()+
		".flows WHERE id_lo = ? ", idLo(t, want[len(want)-1].Uuid)).Scan(&synAck, &ack, &retrans, &resetBy, &zw, &kind); err != nil {
		t.Fatal(err)
	}
	if synAck != 1234567 || ack != 89 || retrans != 4000000000 || resetBy != "SERVER" || zw != 17 || kind != "AGGREGATE" {
		t.Errorf("columns: syn_ack %d ack %d retransmits %d reset_by %q zero_windows %d kind %s", synAck, ack, retrans, resetBy, zw, kind)
	}
	if err := conn.QueryRow(context.Background(), "SELECT toString(event_kind) FROM "+s.Database()+".flows WHERE id_lo = ?", idLo(t, want[4].Uuid)).Scan(&kind); err != nil || kind != "CONNECT_TIMEOUT" {
		t.Errorf("a connect timeout is stored as %q (%v)", kind, err)
	}
}

func idLo(t *testing.T, uuid string) uint64 {
	t.Helper()
	_, lo, ok := store.ParseUUID(uuid)
	if !ok {
		t.Fatalf("bad uuid %q", uuid)
	}
	return lo
}

// tcpTop renders a TCP ranking for comparison.
func tcpTop(t *testing.T, s *store.Store, kind observerv1.TopKind, ns ...string) string {
	t.Helper()
	resp, err := s.Top(context.Background(), &observerv1.GetTopRequest{Kind: kind, Namespace: ns,
		Since: timestamppb.New(filtertest.Base), Until: timestamppb.New(filtertest.Base.Add(10 * time.Minute))})
	if err != nil {
		t.Fatalf("top %s: %v", kind, err)
	}
	var out []string
	for _, e := range resp.Entries {
		rtt := "-"
		if e.TcpRttP99 != nil {
			rtt = fmt.Sprintf("p50 %s p99 %s", e.TcpRttP50.AsDuration().Round(time.Microsecond), e.TcpRttP99.AsDuration().Round(time.Microsecond))
		}
		out = append(out, fmt.Sprintf("%s -> %s conns %d rtx %d rst %d tmo %d %s", e.Source, e.Destination, e.TcpConnections, e.TcpRetransmits, e.TcpResets, e.TcpTimeouts, rtt))
	}
	return strings.Join(out, "\n")
}

// tcpTwice is filtertest's TCP set written twice (ids of their own), the
// second copy a minute later, in two batches: the rollup merges parts.
func tcpTwice(t *testing.T, s *store.Store) {
	a, b := filtertest.TCPFlows(), filtertest.TCPFlows()
	for i, f := range b {
		f.Uuid = store.FormatUUID(0x7c7, uint64(i+1))
		f.Time = timestamppb.New(f.Time.AsTime().Add(time.Minute))
	}
	w := runWriter(t, s)
	write(t, w, &store.Batch{Key: "n/b/1", Flows: a})
	write(t, w, &store.Batch{Key: "n/b/2", Flows: b})
}

// The two TCP rankings of GetTop from tcp_1m: client/server workload pairs
// by p99 handshake RTT and by retransmitted segments. The client is the
// record's source unless it is a reply (the db's retransmits on its reply
// count for web -> db); resets count from aggregates only (the FLOW_CLOSE
// of the closed port repeats a reset its aggregate would carry); the
// timeout's server is the world; records without TCP health, UDP and
// drops add nothing.
func TestTopTCPFromTheRollup(t *testing.T) {
	dsn := chtest.Database(t)
	s := openStore(t, dsn)
	tcpTwice(t, s)
	for _, tc := range []struct {
		kind observerv1.TopKind
		ns   []string
		want string
	}{
		{observerv1.TopKind_TOP_KIND_TCP_SLOWEST, nil, strings.Join([]string{
			"shop/web -> telco/api conns 2 rtx 2 rst 0 tmo 0 p50 21ms p99 21ms",
			"telco/api -> shop/web conns 2 rtx 0 rst 0 tmo 0 p50 10ms p99 10ms",
			"telco/api -> shop/db conns 2 rtx 0 rst 0 tmo 0 p50 5ms p99 5ms",
			"shop/web -> shop/db conns 2 rtx 6 rst 2 tmo 0 p50 400µs p99 400µs",
		}, "\n")},
		{observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS, nil, strings.Join([]string{
			"shop/web -> shop/db conns 2 rtx 6 rst 2 tmo 0 p50 400µs p99 400µs",
			"shop/web -> telco/api conns 2 rtx 2 rst 0 tmo 0 p50 21ms p99 21ms",
		}, "\n")},
		{observerv1.TopKind_TOP_KIND_TCP_SLOWEST, []string{"telco"}, strings.Join([]string{
			"shop/web -> telco/api conns 2 rtx 2 rst 0 tmo 0 p50 21ms p99 21ms",
			"telco/api -> shop/web conns 2 rtx 0 rst 0 tmo 0 p50 10ms p99 10ms",
			"telco/api -> shop/db conns 2 rtx 0 rst 0 tmo 0 p50 5ms p99 5ms",
		}, "\n")},
		{observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS, []string{"kube-system"}, ""},
	} {
		if got := tcpTop(t, s, tc.kind, tc.ns...); got != tc.want {
			t.Errorf("top %s %v:\n got\n%s\nwant\n%s", tc.kind, tc.ns, got, tc.want)
		}
	}
	// The rollup's rows: the timeout to the world and the reset on the
	// client's aggregate are there, the FLOW_CLOSE's reset is not.
	conn := chtest.Open(t, dsn)
	var timeouts, resets, rows uint64
	var server string
	if err := conn.QueryRow(context.Background(), "SELECT sum(timeouts), anyIf(server_workload, timeouts > 0), sum(resets), count() FROM "+s.Database()+".tcp_1m").Scan(&timeouts, &server, &resets, &rows); err != nil {
		t.Fatal(err)
	}
	if timeouts != 2 || server != "reserved:world" || resets != 2 {
		t.Errorf("tcp_1m: %d timeouts (server %q), %d resets; want 2 to reserved:world, 2 resets", timeouts, server, resets)
	}
	// Outside the window: nothing.
	resp, err := s.Top(context.Background(), &observerv1.GetTopRequest{Kind: observerv1.TopKind_TOP_KIND_TCP_SLOWEST,
		Since: timestamppb.New(filtertest.Base.Add(time.Hour)), Until: timestamppb.New(filtertest.Base.Add(2 * time.Hour))})
	if err != nil || len(resp.Entries) != 0 {
		t.Errorf("slowest pairs of an empty window: %v, %v", resp.GetEntries(), err)
	}
}

// A retried insert is de-duplicated in tcp_1m as in flows.
func TestRetriedInsertIsCountedOnceInTheTCPRollup(t *testing.T) {
	s := openStore(t, chtest.Database(t))
	fs := filtertest.TCPFlows()
	for range 3 {
		if err := store.WriteGroupForTest(context.Background(), s, []*store.Batch{{Key: "n/b/1", Flows: fs}}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := tcpTop(t, s, observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS), "shop/web -> shop/db conns 1 rtx 3 rst 1 tmo 0 p50 400µs p99 400µs\n"+
		"shop/web -> telco/api conns 1 rtx 1 rst 0 tmo 0 p50 21ms p99 21ms"; got != want {
		t.Errorf("after three identical inserts:\n%s\nwant\n%s", got, want)
	}
}

// A database a version 4 relay wrote: its rows read back without TCP
// health, the enum takes CONNECT_TIMEOUT, TCP health is stored and rolled
// up, and the step runs again without harm.
func TestMigrateAddsTCPHealthToADatabaseAtVersion4(t *testing.T) {
	ctx := context.Background()
	// A version 4 relay's records, DNS records included.
	s := migrateFrom(t, 4, "CONNECT_TIMEOUT", append(filtertest.Flows()[:3], richDNSFlows()[:2]...))
	tcp := filtertest.TCPFlows()
	if err := store.WriteGroupForTest(ctx, s, []*store.Batch{{Key: "n/b/1", Flows: tcp}}); err != nil {
		t.Fatal(err)
	}
	if got := tcpTop(t, s, observerv1.TopKind_TOP_KIND_TCP_SLOWEST); !strings.HasPrefix(got, "shop/web -> telco/api conns 1 rtx 1 rst 0 tmo 0 p50 21ms p99 21ms\n") {
		t.Errorf("slowest pairs after the migration:\n%s", got)
	}
	back := query(t, s, &observerv1.GetFlowsRequest{Allowlist: []*observerv1.FlowFilter{{EventKind: []flowv1.EventKind{flowv1.EventKind_CONNECT_TIMEOUT}}}})
	if len(back) != 1 || !proto.Equal(back[0].GetFlow(), tcp[4]) {
		t.Errorf("read %d CONNECT_TIMEOUT records after the migration (want 1): %v", len(back), back)
	}
}
