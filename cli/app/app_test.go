package app

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/cli/internal/fakerelay"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func run(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut syncBuffer
	code = Run(ctx, args, IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return code, out.String(), errOut.String()
}

func history(t *testing.T) []*observerv1.GetFlowsResponse {
	t.Helper()
	f, err := os.Open("../observe/testdata/trawl.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*observerv1.GetFlowsResponse
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r := &observerv1.GetFlowsResponse{}
		if err := protojson.Unmarshal(sc.Bytes(), r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func newFake(t *testing.T) (*fakerelay.Server, string) {
	t.Helper()
	now := time.Now()
	s := &fakerelay.Server{
		History: history(t),
		Status: &observerv1.ServerStatusResponse{
			NumFlows: 1234567, SeenFlows: 890, UptimeNs: uint64(3 * time.Hour), NumConnectedNodes: 2,
			NumUnavailableNodes: 1, UnavailableNodes: []string{"node-c"}, Version: "v9.9.9", FlowsRate: 12.5,
			Clickhouse: &observerv1.ClickHouseStatus{Healthy: true, Version: "26.7.3", PendingRows: 10, LastInsert: timestamppb.New(now.Add(-2 * time.Second))},
		},
		Nodes: &observerv1.GetNodesResponse{Nodes: []*flowv1.NodeStatus{
			{NodeName: "node-a", State: flowv1.NodeState_NODE_CONNECTED, Version: "v9.9.9", Kernel: "6.18.0", Address: "10.0.0.1",
				LastSeen: timestamppb.New(now.Add(-time.Second)), StartedAt: timestamppb.New(now.Add(-2 * time.Hour)),
				Features: []*flowv1.KernelFeature{{Name: "tcx", Enabled: true}, {Name: "kprobe", Enabled: false, Detail: "no tracefs"}}},
			{NodeName: "node-c", State: flowv1.NodeState_NODE_UNAVAILABLE},
		}},
		Conntrack: []*observerv1.GetConntrackResponse{{Sample: &flowv1.ConntrackSample{
			NodeName: "node-a", Entries: 235930, Max: 262144, Utilization: 0.9, Interval: durationpb.New(5 * time.Second),
			Deltas:      &flowv1.ConntrackStats{New: 1200, Drop: 7},
			TopCreators: []*flowv1.ConntrackCreator{{Ip: "10.1.0.7", NewEntries: 900, Endpoint: &flowv1.Endpoint{Namespace: "batch", PodName: "job-xyz"}}},
		}}},
		Top: map[observerv1.TopKind]*observerv1.GetTopResponse{
			observerv1.TopKind_TOP_KIND_TALKERS:  {Entries: []*observerv1.TopEntry{{Source: "shop/web", Destination: "shop/api", Bytes: 123456789, Packets: 1000, Flows: 10}}},
			observerv1.TopKind_TOP_KIND_DROPPERS: {Entries: []*observerv1.TopEntry{{Source: "batch/job", Destination: "shop/db", Reason: "POLICY_DENIED", Drops: 42}}},
		},
	}
	return s, fakerelay.Start(t, s)
}

func TestObserveAgainstARelay(t *testing.T) {
	s, addr := newFake(t)
	code, out, errOut := run(context.Background(), "observe", "--server", addr, "--verdict", "DROPPED", "--color", "never")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"batch/job-xyz:40001 -> shop/db-0:5432 (ID:4711) POLICY_DENIED DROPPED", "NO_SOCKET DROPPED", "EVENTS LOST"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FORWARDED") {
		t.Errorf("forwarded flows printed despite --verdict DROPPED:\n%s", out)
	}
	req := s.Requests()[0].(*observerv1.GetFlowsRequest)
	if req.GetNumber() != 20 || req.GetFollow() || len(req.GetAllowlist()) != 1 {
		t.Fatalf("request %v, want last 20 with one allow filter", req)
	}
}

func TestFollowPrintsARecordThatArrivesLaterAndCtrlCExitsZero(t *testing.T) {
	s, addr := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"observe", "--server", addr, "-f", "--from-pod", "late/", "-o", "json"}, IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	}()
	select {
	case <-s.Following:
	case <-time.After(10 * time.Second):
		t.Fatal("follow stream never started")
	}
	s.Live <- &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{
		Time: timestamppb.Now(), Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_FLOW_NEW,
		Source: &flowv1.Endpoint{Namespace: "late", PodName: "comer"},
	}}}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), `"comer"`) {
		if time.Now().After(deadline) {
			t.Fatalf("live record not printed; output so far: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // what Ctrl-C does through signal.NotifyContext
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("exit %d after Ctrl-C, want 0: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("observe -f did not stop on cancel")
	}
}

func TestStatusNodesConntrackTop(t *testing.T) {
	_, addr := newFake(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"status"}, []string{"Healthcheck (via " + addr + "): Ok", "ClickHouse: Ok (version 26.7.3, 10 rows pending, last insert 2s ago)", "Stored Flows: 1,234,567", "Flows/s: 12.50", "Connected Nodes: 2/3", "  - node-c"}},
		{[]string{"status", "-o", "json"}, []string{`"num_flows":"1234567"`, `"healthy":true`}},
		{[]string{"nodes"}, []string{"NAME", "node-a   Connected", "6.18.0", "kprobe", "node-c   Unavailable"}},
		{[]string{"conntrack"}, []string{"ENTRIES/MAX", "node-a", "235930/262144", "[##################--]  90.0%", "240.0", "batch/job-xyz (900)"}},
		{[]string{"top"}, []string{"Top talkers", "shop/web", "123,456,789", "Top droppers", "POLICY_DENIED", "Top denied pairs", "(none in this window)", "Top conntrack creators"}},
		{[]string{"top", "droppers", "--since", "2d"}, []string{"Top droppers", "42"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := run(context.Background(), append(tt.args, "--server", addr)...)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestTopDroppersLeaveTeardownOutUnlessAsked(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // the request's drop classes
	}{
		{nil, "[]"}, // the relay's default: every class but teardown
		{[]string{"--drop-class", "teardown,No_Socket"}, "[teardown no-socket]"},
		{[]string{"--drop-class", "all"}, "[policy no-socket overload malformed routing teardown other]"},
	} {
		s, addr := newFake(t)
		code, out, errOut := run(context.Background(), append([]string{"top", "droppers", "--server", addr}, tt.args...)...)
		if code != ExitOK {
			t.Fatalf("%v: exit %d: %s", tt.args, code, errOut)
		}
		req := s.Requests()[0].(*observerv1.GetTopRequest)
		if got := fmt.Sprint(req.GetDropClass()); got != tt.want {
			t.Errorf("%v: asked for classes %s, want %s", tt.args, got, tt.want)
		}
		if !strings.Contains(out, "CLASS") {
			t.Errorf("%v: no CLASS column:\n%s", tt.args, out)
		}
	}
}

// `trawl top --dns` asks for the three DNS tables with the window and
// namespaces of the other top tables, and prints each.
func TestTopDNSAsksForTheDNSKindsAndPrintsTheirTables(t *testing.T) {
	s, addr := newFake(t)
	s.Top[observerv1.TopKind_TOP_KIND_DNS_NAMES] = &observerv1.GetTopResponse{Entries: []*observerv1.TopEntry{
		{Source: "api.example.com.", DnsQuery: "api.example.com.", DnsQueries: 12000, DnsErrors: 3, DnsLatencyP50: durationpb.New(900 * time.Microsecond), DnsLatencyP99: durationpb.New(4 * time.Millisecond)}}}
	s.Top[observerv1.TopKind_TOP_KIND_DNS_NXDOMAIN_CLIENTS] = &observerv1.GetTopResponse{Entries: []*observerv1.TopEntry{
		{Source: "shop/web", Reason: "paymnts.shop.svc.cluster.local.", DnsNxdomain: 4500, DnsQueries: 9000}}}
	s.Top[observerv1.TopKind_TOP_KIND_DNS_SLOW_NAMES] = &observerv1.GetTopResponse{Entries: []*observerv1.TopEntry{
		{Source: "slow.example.net.", DnsQuery: "slow.example.net.", DnsQueries: 40, DnsLatencyP50: durationpb.New(time.Second), DnsLatencyP99: durationpb.New(2500 * time.Millisecond)}}}
	code, out, errOut := run(context.Background(), "top", "--dns", "-n", "shop", "--since", "2h", "--limit", "5", "--server", addr)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{"Top DNS names (queries)", "api.example.com.", "12,000", "900µs", "4ms",
		"Top NXDOMAIN clients", "shop/web", "4,500", "paymnts.shop.svc.cluster.local.",
		"Slowest DNS names (p99 latency)", "slow.example.net.", "2.5s"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "Top talkers") {
		t.Errorf("--dns also printed the traffic tables:\n%s", out)
	}
	var kinds []string
	for _, r := range s.Requests() {
		req := r.(*observerv1.GetTopRequest)
		kinds = append(kinds, req.GetKind().String())
		if fmt.Sprint(req.GetNamespace()) != "[shop]" || req.GetLimit() != 5 || req.GetSince() == nil || len(req.GetDropClass()) != 0 {
			t.Errorf("request %v: want namespace shop, limit 5, a since and no drop classes", req)
		}
	}
	if got := strings.Join(kinds, " "); got != "TOP_KIND_DNS_NAMES TOP_KIND_DNS_NXDOMAIN_CLIENTS TOP_KIND_DNS_SLOW_NAMES" {
		t.Errorf("asked for %s", got)
	}

	s2, addr2 := newFake(t)
	code, out, errOut = run(context.Background(), "top", "--dns", "slow", "-o", "json", "--server", addr2)
	if code != ExitOK || len(s2.Requests()) != 1 || s2.Requests()[0].(*observerv1.GetTopRequest).GetKind() != observerv1.TopKind_TOP_KIND_DNS_SLOW_NAMES {
		t.Fatalf("top --dns slow: exit %d, requests %v: %s", code, s2.Requests(), errOut)
	}
	if out != "" {
		t.Errorf("no entries, yet JSON output %q", out)
	}
	code, _, errOut = run(context.Background(), "top", "--dns", "talkers", "--server", addr2)
	if code != ExitUsage || !strings.Contains(errOut, `unknown DNS top kind "talkers"`) {
		t.Errorf("top --dns talkers: exit %d, stderr %q", code, errOut)
	}
}

// `trawl top --tcp` asks for the two TCP tables with the window and
// namespaces of the other top tables, and prints each; --tcp slowest or
// retransmits asks for one, -o json prints its entries as JSON lines.
func TestTopTCPAsksForTheTCPKindsAndPrintsTheirTables(t *testing.T) {
	s, addr := newFake(t)
	s.Top[observerv1.TopKind_TOP_KIND_TCP_SLOWEST] = &observerv1.GetTopResponse{Entries: []*observerv1.TopEntry{
		{Source: "shop/web", Destination: "telco/api", TcpRttP50: durationpb.New(18 * time.Millisecond), TcpRttP99: durationpb.New(21 * time.Millisecond), TcpConnections: 1200, TcpRetransmits: 30},
		{Source: "shop/web", Destination: "shop/db", TcpRttP50: durationpb.New(300 * time.Microsecond), TcpRttP99: durationpb.New(400 * time.Microsecond), TcpConnections: 56000, TcpResets: 4}}}
	s.Top[observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS] = &observerv1.GetTopResponse{Entries: []*observerv1.TopEntry{
		{Source: "shop/web", Destination: "telco/api", TcpRetransmits: 4500, TcpConnections: 1200, TcpRttP99: durationpb.New(21 * time.Millisecond), TcpTimeouts: 3}}}
	code, out, errOut := run(context.Background(), "top", "--tcp", "-n", "shop", "--since", "2h", "--limit", "5", "--server", addr)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	tables := strings.Split(out, "\n\n")
	if len(tables) != 2 {
		t.Fatalf("want two tables:\n%s", out)
	}
	for i, want := range [][]string{
		{"Slowest TCP pairs (p99 handshake RTT)", "CLIENT SERVER P99 RTT P50 RTT CONNECTIONS RETRANS RESETS TIMEOUTS", "shop/web telco/api 21ms 18ms 1,200 30 0 0", "shop/web shop/db 0.4ms 0.3ms 56,000 0 4 0"},
		{"Most retransmitting TCP pairs", "CLIENT SERVER RETRANS CONNECTIONS P99 RTT RESETS TIMEOUTS", "shop/web telco/api 4,500 1,200 21ms 0 3"},
	} {
		lines := strings.Split(strings.TrimSpace(tables[i]), "\n")
		if lines[0] != want[0] || strings.Join(strings.Fields(lines[1]), " ") != want[1] || len(lines) != len(want) {
			t.Errorf("table %d:\n%s", i, tables[i])
			continue
		}
		for j, row := range want[2:] {
			if got := strings.Join(strings.Fields(lines[2+j]), " "); got != row {
				t.Errorf("table %d row %d: %q, want %q", i, j, got, row)
			}
		}
	}
	var kinds []string
	for _, r := range s.Requests() {
		req := r.(*observerv1.GetTopRequest)
		kinds = append(kinds, req.GetKind().String())
		if fmt.Sprint(req.GetNamespace()) != "[shop]" || req.GetLimit() != 5 || req.GetSince() == nil || len(req.GetDropClass()) != 0 {
			t.Errorf("request %v: want namespace shop, limit 5, a since and no drop classes", req)
		}
	}
	if got := strings.Join(kinds, " "); got != "TOP_KIND_TCP_SLOWEST TOP_KIND_TCP_RETRANSMITS" {
		t.Errorf("asked for %s", got)
	}

	s2, addr2 := newFake(t)
	s2.Top[observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS] = s.Top[observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS]
	code, out, errOut = run(context.Background(), "top", "--tcp", "retransmits", "-o", "json", "--server", addr2)
	if code != ExitOK || len(s2.Requests()) != 1 || s2.Requests()[0].(*observerv1.GetTopRequest).GetKind() != observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS {
		t.Fatalf("top --tcp retransmits: exit %d, requests %v: %s", code, s2.Requests(), errOut)
	}
	if want := `{"destination":"telco/api","source":"shop/web","tcp_connections":"1200","tcp_retransmits":"4500","tcp_rtt_p99":"0.021s","tcp_timeouts":"3"}` + "\n"; out != want {
		t.Errorf("JSON output\n%s\nwant\n%s", out, want)
	}
	code, _, errOut = run(context.Background(), "top", "--tcp", "--dns", "--server", addr2)
	if code != ExitUsage || !strings.Contains(errOut, "--dns and --tcp cannot be combined") {
		t.Errorf("top --tcp --dns: exit %d, stderr %q", code, errOut)
	}
}

func TestTokenIsSentAsBearer(t *testing.T) {
	s, addr := newFake(t)
	s.Token = "s3cret"
	if code, _, errOut := run(context.Background(), "status", "--server", addr); code != ExitFailure || !strings.Contains(errOut, "Unauthenticated") {
		t.Fatalf("without token: exit %d %q, want 1 and Unauthenticated", code, errOut)
	}
	if code, _, errOut := run(context.Background(), "status", "--server", addr, "--token", "s3cret"); code != ExitOK {
		t.Fatalf("with token: exit %d %q", code, errOut)
	}
}

func TestExitCodes(t *testing.T) {
	_, addr := newFake(t)
	// A port nobody listens on.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"an unknown flag", []string{"observe", "--frobnicate"}, ExitUsage, "unknown flag: --frobnicate"},
		{"an unknown command", []string{"obsrve"}, ExitUsage, `unknown command "obsrve"`},
		{"a bad IP", []string{"observe", "--to-ip", "300.1.1.1"}, ExitUsage, "not an address or CIDR"},
		{"a bad CIDR", []string{"observe", "--ip", "10.0.0.0/40"}, ExitUsage, "not an address or CIDR"},
		{"a bad port", []string{"observe", "--port", "http"}, ExitUsage, "port"},
		{"a bad verdict", []string{"observe", "--verdict", "OK"}, ExitUsage, "FORWARDED"},
		{"a bad duration", []string{"observe", "--since", "5 mins"}, ExitUsage, "invalid time"},
		{"a bad drop class", []string{"observe", "--drop-class", "boring"}, ExitUsage, `unknown drop class "boring"`},
		{"a bad drop class of top", []string{"top", "droppers", "--drop-class", "policy,boring"}, ExitUsage, `unknown drop class "boring"`},
		{"a bad DNS response code", []string{"observe", "--dns-rcode", "NXDOMIAN"}, ExitUsage, `unknown DNS response code "NXDOMIAN"`},
		{"a bad DNS query expression", []string{"observe", "--dns-query", "*.example.com"}, ExitUsage, "not a regular expression: missing argument to repetition operator"},
		{"a round-trip time without a unit", []string{"observe", "--min-rtt", "10"}, ExitUsage,
			`invalid argument "10" for "--min-rtt" flag: want a duration such as 10ms, 500us or 1.5s`},
		{"a negative round-trip time", []string{"observe", "--min-rtt=-1ms"}, ExitUsage, `invalid argument "-1ms" for "--min-rtt" flag: a round-trip time is not negative`},
		{"a TCP filter with a value it does not take", []string{"observe", "--tcp-reset=server"}, ExitUsage, `invalid argument "server" for "--tcp-reset" flag: want true or false`},
		{"a bad TCP top kind", []string{"top", "--tcp", "dns-names"}, ExitUsage, `unknown TCP top kind "dns-names": want slowest or retransmits`},
		{"conflicting flags", []string{"observe", "--first", "1", "--follow"}, ExitUsage, "cannot set both --first and --follow"},
		{"conflicting filters", []string{"observe", "--port", "1", "--from-port", "2"}, ExitUsage, "cannot be combined"},
		{"a bad output format", []string{"observe", "-o", "yaml", "--server", addr}, ExitUsage, "invalid output format"},
		{"a bad colour", []string{"observe", "--color", "sometimes"}, ExitUsage, "--color"},
		{"a bad time format", []string{"observe", "--time-format", "iso"}, ExitUsage, "unknown time format"},
		{"table with follow", []string{"observe", "-o", "table", "-f"}, ExitUsage, "not compatible with follow"},
		{"an argument observe does not take", []string{"observe", "pods"}, ExitUsage, "unknown command"},
		{"an unreachable relay names its address", []string{"observe", "--server", dead}, ExitFailure, "cannot reach the Trawl relay at " + dead},
		{"status of an unreachable relay", []string{"status", "--server", dead}, ExitFailure, dead},
		{"the server from the environment", []string{"nodes"}, ExitFailure, dead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "the server from the environment" {
				t.Setenv("TRAWL_SERVER", dead)
			}
			code, _, errOut := run(context.Background(), tt.args...)
			if code != tt.code {
				t.Fatalf("%v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, errOut)
			}
			if !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("%v: stderr %q lacks %q", tt.args, errOut, tt.stderr)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if tt.code == ExitUsage && (len(lines) != 2 || !strings.Contains(lines[1], "--help")) {
				t.Fatalf("%v: want one line naming the problem and a usage hint, got %q", tt.args, errOut)
			}
			if tt.code == ExitFailure && len(lines) != 1 {
				t.Fatalf("%v: want one line, got %q", tt.args, errOut)
			}
		})
	}
}

func TestUnhealthyClickHouseFailsStatus(t *testing.T) {
	s, addr := newFake(t)
	s.Status.Clickhouse = &observerv1.ClickHouseStatus{Healthy: false, Error: "connection refused"}
	code, out, errOut := run(context.Background(), "status", "--server", addr)
	if code != ExitFailure || !strings.Contains(out, "ClickHouse: UNHEALTHY: connection refused") || !strings.Contains(errOut, "unhealthy") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	code, out, _ := run(context.Background(), "version")
	if code != ExitOK || !strings.HasPrefix(out, "trawl ") {
		t.Fatalf("version: %d %q", code, out)
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := run(context.Background(), "completion", shell)
		if code != ExitOK || !strings.Contains(out, "trawl") {
			t.Fatalf("completion %s: exit %d, %d bytes, %s", shell, code, len(out), errOut)
		}
	}
}

func TestPolicyCommandIsWired(t *testing.T) {
	code, _, errOut := run(context.Background(), "policy")
	if code != ExitUsage || !strings.Contains(errOut, "trawl policy check") {
		t.Fatalf("trawl policy: exit %d, %q", code, errOut)
	}
	code, out, _ := run(context.Background(), "policy", "check", "--help")
	if code != ExitOK || !strings.Contains(out, "--all-pairs") {
		t.Fatalf("trawl policy check --help: exit %d", code)
	}
}
