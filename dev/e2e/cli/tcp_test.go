package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/cli/app"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// tcpRecord builds a TCP record from src to dst as the agent writes them.
func tcpRecord(kind flowv1.EventKind, reply bool, src, dst *flowv1.Endpoint, sip, dip string, sp, dp uint32, flags *flowv1.TCPFlags, h *flowv1.TCPHealth, at time.Time) *flowv1.Flow {
	return &flowv1.Flow{
		Time: timestamppb.New(at), Verdict: flowv1.Verdict_FORWARDED, EventKind: kind, Type: flowv1.FlowType_L3_L4,
		IP:     &flowv1.IP{Source: sip, Destination: dip, IpVersion: flowv1.IPVersion_IPv4},
		L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: sp, DestinationPort: dp, Flags: flags}}},
		Source: src, Destination: dst, IsReply: wrapperspb.Bool(reply), TcpHealth: h,
		Packets: 6, Bytes: 900, FirstSeen: timestamppb.New(at.Add(-time.Second)), LastSeen: timestamppb.New(at),
	}
}

func handshake(synAck, ack time.Duration, retrans uint32) *flowv1.TCPHealth {
	return &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(synAck), HandshakeAck: durationpb.New(ack), Retransmits: retrans}
}

// TCP health goes through the real relay and ClickHouse: the TCP filters
// select it in history, compact output shows it, and `trawl top --tcp`
// ranks the workload pairs from the relay's tcp_1m rollup.
func TestTCPHealthThroughARealRelay(t *testing.T) {
	r := startRelay(t)
	s := startShipper(t, r.IngestAddr(), "node-tcp")
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	web := &flowv1.Endpoint{Namespace: "shop", PodName: "web-1", Workloads: []*flowv1.Workload{{Name: "web", Kind: "Deployment"}}}
	db := &flowv1.Endpoint{Namespace: "shop", PodName: "db-0", Workloads: []*flowv1.Workload{{Name: "db", Kind: "StatefulSet"}}}
	api := &flowv1.Endpoint{Namespace: "telco", PodName: "api-1", Workloads: []*flowv1.Workload{{Name: "api", Kind: "Deployment"}}}
	world := &flowv1.Endpoint{Labels: []string{"reserved:world"}}
	synAck := &flowv1.TCPFlags{SYN: true, ACK: true}
	ack := &flowv1.TCPFlags{ACK: true, PSH: true}
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	timeout := tcpRecord(flowv1.EventKind_CONNECT_TIMEOUT, false, web, world, "10.1.0.5", "10.0.9.9", 45000, 5432, &flowv1.TCPFlags{SYN: true}, nil, at(53))
	timeout.FirstSeen, timeout.Packets, timeout.Bytes = timestamppb.New(at(50)), 3, 180
	fs := []*flowv1.Flow{
		// web -> db: three fast handshakes, one retransmit by the server.
		tcpRecord(flowv1.EventKind_AGGREGATE, false, web, db, "10.1.0.5", "10.1.0.30", 44000, 5432, synAck, handshake(300*time.Microsecond, 100*time.Microsecond, 0), at(0)),
		tcpRecord(flowv1.EventKind_AGGREGATE, false, web, db, "10.1.0.5", "10.1.0.30", 44001, 5432, synAck, handshake(500*time.Microsecond, 100*time.Microsecond, 0), at(1)),
		tcpRecord(flowv1.EventKind_AGGREGATE, false, web, db, "10.1.0.5", "10.1.0.30", 44002, 5432, synAck, handshake(400*time.Microsecond, 200*time.Microsecond, 0), at(2)),
		tcpRecord(flowv1.EventKind_AGGREGATE, true, db, web, "10.1.0.30", "10.1.0.5", 5432, 44000, ack, &flowv1.TCPHealth{Retransmits: 1}, at(3)),
		// web -> api across a slow path: 21 and 23 ms, retransmits both ways.
		tcpRecord(flowv1.EventKind_AGGREGATE, false, web, api, "10.1.0.5", "10.2.0.9", 44100, 8080, synAck, handshake(20*time.Millisecond, time.Millisecond, 2), at(10)),
		tcpRecord(flowv1.EventKind_AGGREGATE, false, web, api, "10.1.0.5", "10.2.0.9", 44101, 8080, synAck, handshake(22*time.Millisecond, time.Millisecond, 0), at(11)),
		tcpRecord(flowv1.EventKind_AGGREGATE, true, api, web, "10.2.0.9", "10.1.0.5", 8080, 44100, ack, &flowv1.TCPHealth{Retransmits: 5, ZeroWindows: 1}, at(12)),
		// A closed port on db: the server's RST, on its aggregate and its close event.
		tcpRecord(flowv1.EventKind_AGGREGATE, true, db, web, "10.1.0.30", "10.1.0.5", 5433, 44300, &flowv1.TCPFlags{RST: true, ACK: true}, &flowv1.TCPHealth{ResetBy: flowv1.TCPSide_SERVER}, at(20)),
		tcpRecord(flowv1.EventKind_FLOW_CLOSE, true, db, web, "10.1.0.30", "10.1.0.5", 5433, 44300, &flowv1.TCPFlags{RST: true, ACK: true}, &flowv1.TCPHealth{ResetBy: flowv1.TCPSide_SERVER}, at(20)),
		// A blackholed address: three SYNs, no answer within 3 s.
		timeout,
		// A flow without TCP health.
		tcpRecord(flowv1.EventKind_AGGREGATE, false, web, db, "10.1.0.5", "10.1.0.30", 44400, 5432, ack, nil, at(60)),
	}
	for _, f := range fs {
		publishFlow(s, f)
	}
	s.Flush()
	waitFor(t, "the shipper's batches to be stored", func() bool { q, _ := s.Stats(); return q == 0 })
	srv := r.ObserverAddr()
	ctx := context.Background()

	for _, tt := range []struct {
		name string
		args []string
		want int
	}{
		{"--min-rtt 10ms: the slow handshakes", []string{"--min-rtt", "10ms"}, 2},
		{"--min-rtt 0s: every handshake", []string{"--min-rtt", "0s"}, 5},
		{"--min-rtt 550us: the sum counts", []string{"--min-rtt", "550us"}, 4},
		{"--not --min-rtt 10ms", []string{"--not", "--min-rtt", "10ms"}, 9},
		{"--retransmits", []string{"--retransmits"}, 3},
		{"--retransmits from the server's side", []string{"--retransmits", "--from-namespace", "telco"}, 1},
		{"--tcp-reset", []string{"--tcp-reset"}, 2},
		{"--tcp-timeout", []string{"--tcp-timeout"}, 1},
		{"--type connect-timeout", []string{"--type", "connect-timeout"}, 1},
		{"--type trace includes the timeout", []string{"--type", "trace", "--to-ip", "10.0.9.9"}, 1},
		{"--tcp-reset without the close events", []string{"--tcp-reset", "--not", "--type", "close"}, 1},
	} {
		t.Run("observe "+tt.name, func(t *testing.T) {
			args := append([]string{"observe", "--server", srv, "--all", "-o", "json"}, tt.args...)
			code, out, errOut := trawl(t, ctx, args...)
			if code != app.ExitOK {
				t.Fatalf("%v: exit %d: %s", args, code, errOut)
			}
			if n := records(t, out); n != tt.want {
				t.Fatalf("%v printed %d records, want %d:\n%s", tt.args, n, tt.want, out)
			}
		})
	}

	t.Run("compact lines", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "observe", "--server", srv, "--all", "--color", "never")
		if code != app.ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, w := range []string{
			"shop/web-1:44000 -> shop/db-0:5432 flow FORWARDED (TCP Flags: SYN, ACK) (RTT 0.4ms) 6 pkts 900 B",
			"shop/web-1:44100 -> telco/api-1:8080 flow FORWARDED (TCP Flags: SYN, ACK) (RTT 21ms, retrans 2) 6 pkts 900 B",
			"shop/web-1:44100 <- telco/api-1:8080 flow FORWARDED (TCP Flags: ACK, PSH) (retrans 5, zero-window 1) 6 pkts 900 B",
			"shop/web-1:44300 <- shop/db-0:5433 close FORWARDED (TCP Flags: ACK, RST) (RST by server)",
			"shop/web-1:45000 -> 10.0.9.9:5432 (world) connect-timeout FORWARDED (TCP Flags: SYN) (no answer in 3s) 3 pkts 180 B",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	})

	t.Run("top --tcp", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "top", "--tcp", "--server", srv, "--since", "1h")
		if code != app.ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		tables := strings.Split(out, "\n\n")
		if len(tables) != 2 {
			t.Fatalf("want two tables:\n%s", out)
		}
		// Slowest: web -> api (p99 of 21 and 23 ms) before web -> db (under a millisecond).
		rows := strings.Split(strings.TrimSpace(tables[0]), "\n")
		if len(rows) != 4 {
			t.Fatalf("want two pairs:\n%s", tables[0])
		}
		l := strings.Fields(rows[2])
		if l[0] != "shop/web" || l[1] != "telco/api" || !strings.HasSuffix(l[2], "ms") || l[4] != "2" || l[5] != "7" {
			t.Errorf("slowest pair row %v:\n%s", l, tables[0])
		}
		if p99, err := time.ParseDuration(l[2]); err != nil || p99 < 20*time.Millisecond || p99 > 24*time.Millisecond {
			t.Errorf("p99 of web -> api %q, want 21-23ms", l[2])
		}
		l = strings.Fields(rows[3])
		if l[0] != "shop/web" || l[1] != "shop/db" || !strings.HasPrefix(l[2], "0.") || l[4] != "3" || l[5] != "1" || l[6] != "1" {
			t.Errorf("second pair row %v:\n%s", l, tables[0])
		}
		// Retransmits: web -> api (2 + 5) before web -> db (1).
		rows = strings.Split(strings.TrimSpace(tables[1]), "\n")
		if l := strings.Fields(rows[2]); len(rows) != 4 || l[0] != "shop/web" || l[1] != "telco/api" || l[2] != "7" {
			t.Errorf("most retransmitting pairs:\n%s", tables[1])
		}
	})

	t.Run("top --tcp retransmits -n telco -o json", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "top", "--tcp", "retransmits", "-n", "telco", "-o", "json", "--server", srv, "--since", "1h")
		if code != app.ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], `"destination":"telco/api"`) || !strings.Contains(lines[0], `"tcp_retransmits":"7"`) ||
			!strings.Contains(lines[0], `"tcp_connections":"2"`) {
			t.Errorf("want web -> telco/api alone with 7 retransmits:\n%s", out)
		}
	})

	// Last: the records it publishes would change the counts above.
	t.Run("follow selects live slow handshakes with the same filter", func(t *testing.T) {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var out, errOut syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- app.Run(fctx, []string{"observe", "--server", srv, "-f", "--min-rtt", "25ms", "--color", "never"},
				app.IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
		}()
		// The subscription starts asynchronously; keep publishing until one arrives.
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; !strings.Contains(out.String(), "RTT"); i++ {
			if time.Now().After(deadline) {
				t.Fatalf("no live handshake printed; stderr %q", errOut.String())
			}
			if i%20 == 0 {
				now := time.Now()
				publishFlow(s, tcpRecord(flowv1.EventKind_AGGREGATE, false, web, api, "10.1.0.5", "10.2.0.9", 46000, 8080, synAck, handshake(24*time.Millisecond, 999*time.Microsecond, 0), now))
				publishFlow(s, tcpRecord(flowv1.EventKind_AGGREGATE, false, web, api, "10.1.0.5", "10.2.0.9", 46001, 8080, synAck, handshake(29*time.Millisecond, time.Millisecond, 0), now))
				s.Flush()
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		if code := <-done; code != app.ExitOK {
			t.Fatalf("exit %d after cancel: %s", code, errOut.String())
		}
		if got := out.String(); strings.Contains(got, ":46000 ") || !strings.Contains(got, "shop/web-1:46001 -> telco/api-1:8080 flow FORWARDED (TCP Flags: SYN, ACK) (RTT 30ms) 6 pkts 900 B") {
			t.Errorf("followed:\n%s", got)
		}
	})
}
