package demo_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/trawl-dev/trawl/dev/demo"
)

// tcpRecord is the part of a flow with TCP health that the TCP checks read.
type tcpRecord struct {
	Flow *struct {
		Time        time.Time `json:"time"`
		EventKind   string    `json:"event_kind"`
		Verdict     string    `json:"verdict"`
		IsReply     *bool     `json:"is_reply"`
		Source      endpoint  `json:"source"`
		Destination endpoint  `json:"destination"`
		IP          struct {
			Source      string `json:"source"`
			Destination string `json:"destination"`
		} `json:"IP"`
		L4 struct {
			TCP *struct {
				SourcePort      int `json:"source_port"`
				DestinationPort int `json:"destination_port"`
			} `json:"TCP"`
		} `json:"l4"`
		Packets   jsonU64 `json:"packets"`
		TCPHealth *struct {
			HandshakeSynAck string `json:"handshake_syn_ack"`
			HandshakeAck    string `json:"handshake_ack"`
			Retransmits     uint32 `json:"retransmits"`
			ResetBy         string `json:"reset_by"`
		} `json:"tcp_health"`
	} `json:"flow"`
}

// rtt is the record's handshake RTT (both halves), 0 without a handshake.
func (r tcpRecord) rtt() time.Duration {
	if r.Flow == nil || r.Flow.TCPHealth == nil {
		return 0
	}
	parse := func(s string) time.Duration {
		d, _ := time.ParseDuration(s)
		return d
	}
	return parse(r.Flow.TCPHealth.HandshakeSynAck) + parse(r.Flow.TCPHealth.HandshakeAck)
}

func medianDuration(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// checkTCP runs the TCP health story of the demo (issue 14) through `trawl
// observe`, `trawl top --tcp`, ClickHouse's tcp_1m and Prometheus: the slow
// link's handshake RTT against what the client measured, the closed port
// reset by the server, the blackholed partner's connect timeouts and their
// alert, and the retransmits of a short lossy period (which comes last: its
// drops are the node's).
func checkTCP(t *testing.T, ctx context.Context, s *demo.Stack, trawl func(args ...string) (string, error)) {
	gw, pay, pg, fe := s.PodByApp(demo.AppGateway), s.PodByApp(demo.AppPayments), s.PodByApp(demo.SlowLinkApp), s.PodByApp(demo.AppFrontend)
	dark := s.PodByApp(demo.DarkApp)
	observe := func(t *testing.T, args ...string) []tcpRecord {
		t.Helper()
		return observeJSON(t, trawl, func(r tcpRecord) bool { return r.Flow != nil }, args...)
	}
	slowPair := func(r tcpRecord) bool {
		return r.Flow.Source.id() == demo.ID(pay) && r.Flow.Destination.id() == demo.ID(pg)
	}
	darkAttempt := func(r tcpRecord) bool {
		return r.Flow.Source.id() == demo.ID(dark) && r.Flow.IP.Destination == demo.DarkAddr.String()
	}

	// Wait until the story's TCP health is in the history: a handshake on
	// the slow link and a timed-out attempt to the blackholed partner
	// (judged after the agent's SYN timeout and fate wait, ~4 s).
	deadline := time.Now().Add(60 * time.Second)
	for {
		s.Round(ctx)
		var slowSeen, darkSeen bool
		for _, r := range observe(t, "--min-rtt", "0s", "--since", "10m", "--last", "2000") {
			slowSeen = slowSeen || slowPair(r)
		}
		for _, r := range observe(t, "--tcp-timeout", "--since", "10m", "--last", "2000") {
			darkSeen = darkSeen || darkAttempt(r)
		}
		if slowSeen && darkSeen || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}

	// What the client measured on the slow link: its connects' median.
	var clientRTTs []time.Duration
	var darkAttempts int
	for _, c := range s.TCPConnects() {
		if c.From == demo.ID(pay) && c.To == demo.ID(pg) && c.Err == nil {
			clientRTTs = append(clientRTTs, c.Handshake)
		}
		if c.From == demo.ID(dark) && c.To == demo.DarkAddr.String() {
			darkAttempts++
			if c.Err == nil {
				t.Errorf("the blackholed %s:%d answered a connect at %s", demo.DarkAddr, demo.DarkPort, c.At)
			}
		}
	}
	if len(clientRTTs) == 0 || darkAttempts == 0 {
		t.Fatalf("the clients made %d connections on the slow link and %d attempts to the blackholed partner; want some of each", len(clientRTTs), darkAttempts)
	}
	clientMedian := medianDuration(clientRTTs)
	within := func(t *testing.T, what string, got time.Duration) {
		t.Helper()
		t.Logf("%s: handshake RTT %s, the client's median connect %s", what, got, clientMedian)
		if d := got - clientMedian; d*10 > clientMedian || -d*10 > clientMedian {
			t.Errorf("%s: handshake RTT %s, the client's median connect %s (delay %s plus the base): more than 10 %% apart", what, got, clientMedian, demo.SlowLinkDelay)
		}
	}

	t.Run("observe --min-rtt selects the slow link's handshakes, at the client's measured RTT within 10 %", func(t *testing.T) {
		recs := observe(t, "--min-rtt", (demo.SlowLinkDelay * 3 / 4).String(), "--since", "10m", "--last", "2000")
		var rtts []time.Duration
		for _, r := range recs {
			if r.rtt() < demo.SlowLinkDelay*3/4 {
				t.Errorf("--min-rtt %s printed a record with handshake RTT %s: %+v", demo.SlowLinkDelay*3/4, r.rtt(), r.Flow)
			}
			if r.Flow.Source.id() == demo.ID(gw) && r.Flow.Destination.id() == demo.ID(pay) {
				t.Errorf("--min-rtt %s printed the fast pair api-gateway -> payment-service (%s)", demo.SlowLinkDelay*3/4, r.rtt())
			}
			if slowPair(r) {
				rtts = append(rtts, r.rtt())
			}
		}
		if len(rtts) == 0 {
			t.Fatalf("no %s -> %s handshake among %d records of --min-rtt", demo.ID(pay), demo.ID(pg), len(recs))
		}
		within(t, "observe's median", medianDuration(rtts))
		var fast int
		for _, r := range observe(t, "--min-rtt", "0s", "--since", "10m", "--last", "2000") {
			if r.Flow.Source.id() == demo.ID(gw) && r.Flow.Destination.id() == demo.ID(pay) {
				fast++
				if r.rtt() >= demo.SlowLinkDelay/2 {
					t.Errorf("api-gateway -> payment-service handshake RTT %s; only postgres' link is slow", r.rtt())
				}
			}
		}
		if fast == 0 {
			t.Error("no api-gateway -> payment-service handshake with --min-rtt 0s")
		}
	})

	t.Run("observe --tcp-reset shows the closed port reset by the server", func(t *testing.T) {
		recs := observe(t, "--tcp-reset", "--since", "10m", "--last", "2000")
		var closed int
		for _, r := range recs {
			h := r.Flow.TCPHealth
			if h == nil || h.ResetBy == "" {
				t.Errorf("--tcp-reset printed a record without reset_by: %+v", r.Flow)
				continue
			}
			if tcp := r.Flow.L4.TCP; tcp != nil && tcp.SourcePort == demo.ClosedPort && r.Flow.Source.id() == demo.ID(fe) && r.Flow.Destination.id() == demo.ID(gw) {
				closed++
				if h.ResetBy != "SERVER" {
					t.Errorf("the closed port's RST is reset_by %q, want SERVER", h.ResetBy)
				}
			}
		}
		if closed == 0 {
			t.Errorf("no RST record from %s:%d to %s among %d --tcp-reset records", demo.ID(fe), demo.ClosedPort, demo.ID(gw), len(recs))
		}
	})

	t.Run("observe --tcp-timeout shows the blackholed partner's attempts and never a policy-dropped SYN", func(t *testing.T) {
		recs := observe(t, "--tcp-timeout", "--since", "10m", "--last", "2000")
		var n int
		for _, r := range recs {
			if r.Flow.EventKind != "CONNECT_TIMEOUT" {
				t.Errorf("--tcp-timeout printed a %s record", r.Flow.EventKind)
			}
			if r.Flow.Destination.id() == demo.ID(pg) || r.Flow.Destination.id() == demo.ID(fe) {
				t.Errorf("a policy-dropped or refused SYN reported as a timeout: %+v", r.Flow)
			}
			if darkAttempt(r) {
				n++
				if r.Flow.Verdict != "FORWARDED" || r.Flow.L4.TCP == nil || r.Flow.L4.TCP.DestinationPort != demo.DarkPort || r.Flow.Packets == 0 {
					t.Errorf("timeout record %+v: want FORWARDED to port %d with its SYNs", r.Flow, demo.DarkPort)
				}
			}
		}
		if n == 0 || n > darkAttempts {
			t.Errorf("%d timeout records of %s to %s; the client made %d attempts (want at least one record, at most one per attempt)", n, demo.ID(dark), demo.DarkAddr, darkAttempts)
		}
	})

	t.Run("trawl top --tcp ranks the slow link's pair first by p99", func(t *testing.T) {
		out, err := trawl("top", "--tcp", "slowest", "--since", "30m", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var first struct {
			Source         string  `json:"source"`
			Destination    string  `json:"destination"`
			P99            string  `json:"tcp_rtt_p99"`
			P50            string  `json:"tcp_rtt_p50"`
			TCPConnections jsonU64 `json:"tcp_connections"`
		}
		line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
		if err := json.Unmarshal([]byte(line), &first); err != nil {
			t.Fatalf("top --tcp -o json: %q: %v", line, err)
		}
		if first.Source != pay.Namespace+"/"+demo.AppPayments || first.Destination != pg.Namespace+"/"+demo.SlowLinkApp || first.TCPConnections == 0 {
			t.Errorf("slowest pair %+v, want %s/%s -> %s/%s with its connections", first, pay.Namespace, demo.AppPayments, pg.Namespace, demo.SlowLinkApp)
		}
		p50, err := time.ParseDuration(first.P50)
		if err != nil {
			t.Fatalf("tcp_rtt_p50 %q: %v", first.P50, err)
		}
		within(t, "top's p50", p50)
		table, err := trawl("top", "--tcp", "--since", "30m")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(table, "Slowest TCP pairs") || !strings.Contains(table, "reserved:world") {
			t.Errorf("top --tcp does not show the slowest pairs or the blackholed partner's pair:\n%s", table)
		}
	})

	t.Run("the tcp_1m rollup holds the slow link at the client's RTT, the closed port's reset and the partner's timeouts", func(t *testing.T) {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{strings.TrimPrefix(s.ClickHouseDSN, "clickhouse://")}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var connections uint64
		var p50 float64
		if err := conn.QueryRow(ctx, `SELECT sum(connections), toFloat64(quantilesTDigestMergeIf(0.5, 0.9, 0.99)(rtt, connections > 0)[1]) FROM trawl.tcp_1m
			WHERE client_namespace = ? AND client_workload = ? AND server_namespace = ? AND server_workload = ? AND server_port = 5432`,
			pay.Namespace, demo.AppPayments, pg.Namespace, demo.SlowLinkApp).Scan(&connections, &p50); err != nil {
			t.Fatal(err)
		}
		if connections == 0 || connections > uint64(len(s.TCPConnects())) {
			t.Errorf("tcp_1m counts %d connections on the slow link; the clients made %d attempts in all", connections, len(s.TCPConnects()))
		} else {
			within(t, "tcp_1m's p50", time.Duration(p50))
		}
		var resets uint64
		if err := conn.QueryRow(ctx, `SELECT sum(resets) FROM trawl.tcp_1m WHERE client_workload = ? AND server_workload = ? AND server_port = ?`,
			demo.AppGateway, demo.AppFrontend, demo.ClosedPort).Scan(&resets); err != nil {
			t.Fatal(err)
		}
		if resets == 0 {
			// Say where the rollup put the closed port's RST instead.
			var where []string
			rows, err := conn.Query(ctx, `SELECT concat(client_workload, ' -> ', server_workload, ':', toString(server_port), ' resets ', toString(sum(resets)))
				FROM trawl.tcp_1m WHERE resets > 0 GROUP BY client_workload, server_workload, server_port`)
			if err == nil {
				for rows.Next() {
					var w string
					if rows.Scan(&w) == nil {
						where = append(where, w)
					}
				}
				rows.Close()
			}
			t.Errorf("tcp_1m has no reset of %s -> %s:%d (the closed port, reset by the server); its resets: %v", demo.AppGateway, demo.AppFrontend, demo.ClosedPort, where)
		}
		var timeouts uint64
		if err := conn.QueryRow(ctx, `SELECT sum(timeouts) FROM trawl.tcp_1m WHERE client_workload = ? AND server_workload = 'reserved:world' AND server_port = ?`,
			demo.DarkApp, demo.DarkPort).Scan(&timeouts); err != nil {
			t.Fatal(err)
		}
		if timeouts == 0 || timeouts > uint64(darkAttempts) {
			t.Errorf("tcp_1m counts %d timeouts of %s -> reserved:world:%d; the client made %d attempts", timeouts, demo.DarkApp, demo.DarkPort, darkAttempts)
		}
	})

	t.Run("the relay exports the TCP health metrics and the partner's timeouts make the timeout alert active", func(t *testing.T) {
		exported := scrapeFamilies(t, ctx, s.RelayMetrics)
		for _, name := range []string{"trawl_tcp_handshake_rtt_seconds_bucket", "trawl_tcp_packets_total", "trawl_tcp_resets_total", "trawl_tcp_connect_timeouts_total"} {
			if !exported[name] {
				t.Errorf("the relay does not export %s", name)
			}
		}
		// The closed port's RST: reset by the server, the client
		// api-gateway the source and the server frontend the destination.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.RelayMetrics+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var resetLines []string
		var closedPortReset bool
		for _, line := range strings.Split(string(body), "\n") {
			if !strings.HasPrefix(line, "trawl_tcp_resets_total{") {
				continue
			}
			resetLines = append(resetLines, line)
			closedPortReset = closedPortReset || strings.Contains(line, `reset_by="server"`) &&
				strings.Contains(line, `source="`+gw.Namespace+"/"+demo.AppGateway+`"`) && strings.Contains(line, `destination="`+fe.Namespace+"/"+demo.AppFrontend+`"`)
		}
		if !closedPortReset {
			t.Errorf("no trawl_tcp_resets_total{reset_by=\"server\"} from %s/%s to %s/%s (the closed port); the relay's reset series:\n%s",
				gw.Namespace, demo.AppGateway, fe.Namespace, demo.AppFrontend, strings.Join(resetLines, "\n"))
		}
		if s.Prom == nil {
			t.Fatal("no Prometheus in the stack")
		}
		var last []demo.Alert
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			s.Round(ctx)
			alerts, err := s.Prom.ActiveAlerts(ctx)
			if err != nil {
				t.Fatalf("prometheus alerts: %v", err)
			}
			last = alerts
			for _, a := range alerts {
				if a.Labels["alertname"] == "TrawlTCPConnectTimeouts" && (a.State == "pending" || a.State == "firing") {
					if a.Labels["destination"] != "reserved:world" {
						t.Errorf("TrawlTCPConnectTimeouts is active for %q, want reserved:world", a.Labels["destination"])
					}
					return
				}
			}
			time.Sleep(2 * time.Second)
		}
		t.Errorf("TrawlTCPConnectTimeouts never became active; active alerts: %+v", last)
	})

	t.Run("a lossy period on the slow link shows in observe --retransmits on that pair", func(t *testing.T) {
		lossDone := make(chan error, 1)
		lctx, lcancel := context.WithTimeout(ctx, time.Minute)
		defer lcancel()
		go func() { lossDone <- s.LossFor(lctx, demo.SlowLinkApp, 20, 10*time.Second) }()
		stop := time.After(10 * time.Second)
	load:
		for {
			select {
			case <-stop:
				break load
			default:
			}
			_ = demo.RequestTCP(ctx, pay.Netns, pg.IP, 5432, 2*time.Second)
		}
		if err := <-lossDone; err != nil {
			t.Fatalf("lossy period: %v", err)
		}
		var recs []tcpRecord
		var n int
		deadline := time.Now().Add(30 * time.Second)
		for n == 0 && time.Now().Before(deadline) {
			time.Sleep(2 * time.Second)
			recs = observe(t, "--retransmits", "--since", "5m", "--last", "2000")
			for _, r := range recs {
				if r.Flow.TCPHealth == nil || r.Flow.TCPHealth.Retransmits == 0 {
					t.Fatalf("--retransmits printed a record without retransmits: %+v", r.Flow)
				}
				ids := []string{r.Flow.Source.id(), r.Flow.Destination.id()}
				sort.Strings(ids)
				if want := []string{demo.ID(pg), demo.ID(pay)}; ids[0] == want[0] && ids[1] == want[1] {
					n++
				}
			}
		}
		if n == 0 {
			t.Errorf("no record with retransmits between %s and %s after 20 %% loss; %d --retransmits records", demo.ID(pay), demo.ID(pg), len(recs))
		}
	})
}
