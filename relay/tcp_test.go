package relay_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/dev/chtest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay"
)

// TCP health sent by the agent's shipper, through enrichment (deploy/demo's
// pods): stored field for field, ranked by GetTop from tcp_1m with the
// client and server of the connection, and counted by the tcp-health
// metrics with the client as source whatever the record's direction.
func TestTCPHealthThroughTheRelay(t *testing.T) {
	dsn := chtest.Database(t)
	r := startRelay(t, dsn, func(c *relay.Config) { c.Manifests = "../deploy/demo" })
	s := startShipper(t, r.IngestAddr(), "node-a", nil)
	at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	// api-gateway (10.244.1.11) -> payment-service (10.244.1.12:8080).
	rec := func(i int, kind flowv1.EventKind, reply bool, h *flowv1.TCPHealth) *flowv1.Flow {
		f := realisticFlow(i, at.Add(time.Duration(i)*time.Millisecond))
		f.EventKind, f.IsReply, f.TcpHealth = kind, wrapperspb.Bool(reply), h
		f.IP.Source, f.IP.Destination = "10.244.1.11", "10.244.1.12"
		f.L4.GetTCP().SourcePort, f.L4.GetTCP().DestinationPort = 40000, 8080
		if reply {
			f.IP.Source, f.IP.Destination = f.IP.Destination, f.IP.Source
			f.L4.GetTCP().SourcePort, f.L4.GetTCP().DestinationPort = 8080, 40000
		}
		return f
	}
	sent := []*flowv1.Flow{
		rec(0, flowv1.EventKind_AGGREGATE, false, &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(2 * time.Millisecond), HandshakeAck: durationpb.New(500 * time.Microsecond)}),
		rec(1, flowv1.EventKind_AGGREGATE, true, &flowv1.TCPHealth{Retransmits: 2, ZeroWindows: 1}),
		rec(2, flowv1.EventKind_AGGREGATE, false, &flowv1.TCPHealth{ResetBy: flowv1.TCPSide_CLIENT}),
		rec(3, flowv1.EventKind_CONNECT_TIMEOUT, false, nil),
	}
	sent[3].IP.Destination = "192.0.2.1" // a blackholed address: the world
	for _, f := range sent {
		publish(s, proto.Clone(f).(*flowv1.Flow))
	}
	s.Flush()
	waitFor(t, "every batch acked", 30*time.Second, func() bool { return acked(s) })

	c := observerClient(t, r)
	got := history(t, c, &observerv1.GetFlowsRequest{Since: timestamppb.New(at.Add(-time.Minute))})
	if len(got) != len(sent) {
		t.Fatalf("%d records stored, want %d", len(got), len(sent))
	}
	for _, want := range sent {
		found := false
		for _, g := range got {
			if g.GetPackets() == want.GetPackets() {
				found = true
				if !proto.Equal(g.GetTcpHealth(), want.GetTcpHealth()) || g.GetEventKind() != want.GetEventKind() {
					t.Errorf("record %d: tcp_health %v kind %s, want %v %s", want.GetPackets(), g.GetTcpHealth(), g.GetEventKind(), want.GetTcpHealth(), want.GetEventKind())
				}
				if g.GetSource().GetNamespace() == "" {
					t.Errorf("record %d not enriched: %v", want.GetPackets(), g.GetSource())
				}
			}
		}
		if !found {
			t.Errorf("record %d not stored", want.GetPackets())
		}
	}

	client, server := "api-gateway/api-gateway", "payments/payment-service"
	for _, kind := range []observerv1.TopKind{observerv1.TopKind_TOP_KIND_TCP_SLOWEST, observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS} {
		top, err := c.GetTop(context.Background(), &observerv1.GetTopRequest{Kind: kind, Since: timestamppb.New(at.Add(-time.Hour))})
		if err != nil {
			t.Fatal(err)
		}
		e := top.GetEntries()
		if len(e) != 1 || e[0].GetSource() != client || e[0].GetDestination() != server || e[0].GetTcpConnections() != 1 ||
			e[0].GetTcpRetransmits() != 2 || e[0].GetTcpResets() != 1 || e[0].GetTcpRttP99().AsDuration() != 2500*time.Microsecond {
			t.Errorf("top %s: %v, want %s -> %s with 1 connection, p99 2.5ms, 2 retransmits, 1 reset", kind, e, client, server)
		}
	}

	mfs, err := r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			key := mf.GetName() + " " + l["source"] + " -> " + l["destination"] + " " + l["reset_by"]
			counts[key] += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	for key, want := range map[string]float64{
		"trawl_tcp_handshake_rtt_seconds " + client + " -> " + server + " ":  1,
		"trawl_tcp_retransmits_total " + client + " -> " + server + " ":      2,
		"trawl_tcp_packets_total " + client + " -> " + server + " ":          1 + 2 + 3,
		"trawl_tcp_resets_total " + client + " -> " + server + " client":     1,
		"trawl_tcp_connect_timeouts_total " + client + " -> reserved:world ": 1,
	} {
		if counts[key] != want {
			t.Errorf("%s = %v, want %v", key, counts[key], want)
		}
	}
}
