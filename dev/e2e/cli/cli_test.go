// Package cli holds the CLI's end-to-end tests: the `trawl` command tree against an
// in-process relay backed by the embedded ClickHouse, fed by the agent's real shipper.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/agent/shipper/shippertest"
	"github.com/trawl-dev/trawl/cli/app"
	"github.com/trawl-dev/trawl/dev/chtest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay"
	"github.com/trawl-dev/trawl/relay/relaytest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func startRelay(t *testing.T) *relay.Relay {
	t.Helper()
	return relaytest.Start(t, chtest.Database(t), func(c *relay.Config) { c.MetricsAddr = "" })
}

func startShipper(t *testing.T, addr, node string) *shipper.Shipper {
	t.Helper()
	return shippertest.Start(t, addr, shipper.Config{NodeName: node, BatchRecords: 50}, nil)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

func trawl(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut syncBuffer
	code := app.Run(ctx, args, app.IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return code, out.String(), errOut.String()
}

// flow builds a TCP flow from ns/pod to 10.0.0.<dst>:port at time at.
func flow(ns, pod string, dst int, port uint32, verdict flowv1.Verdict, at time.Time) *flowv1.Flow {
	f := &flowv1.Flow{
		Time: timestamppb.New(at), Verdict: verdict, EventKind: flowv1.EventKind_AGGREGATE, Type: flowv1.FlowType_L3_L4,
		IP:     &flowv1.IP{Source: "10.1.0.5", Destination: fmt.Sprintf("10.0.0.%d", dst), IpVersion: flowv1.IPVersion_IPv4},
		L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: 40000, DestinationPort: port, Flags: &flowv1.TCPFlags{SYN: true}}}},
		Source: &flowv1.Endpoint{Namespace: ns, PodName: pod}, FirstSeen: timestamppb.New(at), LastSeen: timestamppb.New(at),
		Packets: 2, Bytes: 120,
	}
	if verdict == flowv1.Verdict_DROPPED {
		f.EventKind = flowv1.EventKind_DROP
		f.DropReasonDesc, f.DropReasonKernel = "NO_SOCKET", "NO_SOCKET"
	}
	return f
}

func publishFlow(s *shipper.Shipper, f *flowv1.Flow) {
	s.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}})
}

// dstOctets returns the last octet of each printed flow's destination.
func dstOctets(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			Flow *struct {
				IP struct{ Destination string } `json:"IP"`
			} `json:"flow"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		if r.Flow != nil {
			got = append(got, r.Flow.IP.Destination[strings.LastIndexByte(r.Flow.IP.Destination, '.')+1:])
		}
	}
	return got
}

func TestObserveHistoryFollowAndTheOtherCommandsAgainstARealRelay(t *testing.T) {
	r := startRelay(t)
	s := startShipper(t, r.IngestAddr(), "node-e2e")
	base := time.Now().Add(-3 * 24 * time.Hour).Truncate(time.Second)
	// Ten flows, one per hour starting three days ago; odd ones dropped,
	// those to port 53 from namespace "dns", the rest from "shop".
	for i := 1; i <= 10; i++ {
		v, ns, port := flowv1.Verdict_FORWARDED, "shop", uint32(8080)
		if i%2 == 1 {
			v = flowv1.Verdict_DROPPED
		}
		if i%3 == 0 {
			ns, port = "dns", 53
		}
		publishFlow(s, flow(ns, fmt.Sprintf("pod-%d", i), i, port, v, base.Add(time.Duration(i)*time.Hour)))
	}
	s.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Conntrack{Conntrack: &flowv1.ConntrackSample{
		Time: timestamppb.Now(), Entries: 900, Max: 1000, Utilization: 0.9, Interval: durationpb.New(5 * time.Second),
		Deltas: &flowv1.ConntrackStats{New: 50, Drop: 3}, TopCreators: []*flowv1.ConntrackCreator{{Ip: "10.1.0.5", NewEntries: 40}}}}})
	s.Flush()
	waitFor(t, "the shipper's batches to be stored", func() bool { q, _ := s.Stats(); return q == 0 })
	srv := r.ObserverAddr()
	ctx := context.Background()
	rfc := func(tm time.Time) string { return tm.UTC().Format(time.RFC3339) }

	history := []struct {
		name string
		args []string
		want string
	}{
		{"the last 20 by default, oldest first", nil, "1 2 3 4 5 6 7 8 9 10"},
		{"--last", []string{"--last", "3"}, "8 9 10"},
		{"--all", []string{"--all"}, "1 2 3 4 5 6 7 8 9 10"},
		{"--all with filters", []string{"--all", "--to-ip", "10.0.0.0/29", "--not", "--verdict", "DROPPED"}, "2 4 6"},
		{"--first", []string{"--first", "2"}, "1 2"},
		{"--since a duration reaches back days", []string{"--since", "4d"}, "1 2 3 4 5 6 7 8 9 10"},
		{"--since and --until as RFC 3339", []string{"--since", rfc(base.Add(3 * time.Hour)), "--until", rfc(base.Add(6 * time.Hour))}, "3 4 5 6"},
		{"--until as a plain date-time", []string{"--until", base.Add(2 * time.Hour).UTC().Format("2006-01-02 15:04:05")}, "1 2"},
		{"--verdict", []string{"--verdict", "DROPPED"}, "1 3 5 7 9"},
		{"--not --verdict", []string{"--not", "--verdict", "DROPPED"}, "2 4 6 8 10"},
		{"--from-namespace with --verdict", []string{"--from-namespace", "dns", "--verdict", "DROPPED"}, "3 9"},
		{"--to-port", []string{"--to-port", "53"}, "3 6 9"},
		{"--drop-reason (kernel)", []string{"--drop-reason", "no_socket", "--since", rfc(base.Add(5 * time.Hour))}, "5 7 9"},
		{"--type drop", []string{"--type", "drop", "--last", "2"}, "7 9"},
		{"--from-pod prefix in a namespace", []string{"--from-pod", "shop/pod-1"}, "1 10"},
	}
	for _, tt := range history {
		t.Run("history "+tt.name, func(t *testing.T) {
			args := append([]string{"observe", "--server", srv, "-o", "json"}, tt.args...)
			code, out, errOut := trawl(t, ctx, args...)
			if code != app.ExitOK {
				t.Fatalf("%v: exit %d: %s", args, code, errOut)
			}
			if got := strings.Join(dstOctets(t, out), " "); got != tt.want {
				t.Fatalf("%v printed flows %q, want %q", tt.args, got, tt.want)
			}
		})
	}

	t.Run("compact output of a stored drop", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "observe", "--server", srv, "--last", "1", "--verdict", "DROPPED", "--print-node-name", "--color", "never")
		if code != 0 || !strings.Contains(out, "[node-e2e]: dns/pod-9:40000 -> 10.0.0.9:8080") && !strings.Contains(out, "[node-e2e]: dns/pod-9:40000 -> 10.0.0.9:53") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if !strings.Contains(out, "NO_SOCKET DROPPED (TCP Flags: SYN) 2 pkts 120 B") {
			t.Fatalf("line lacks the drop: %s", out)
		}
	})

	t.Run("follow prints a flow ingested after the call", func(t *testing.T) {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var out, errOut syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- app.Run(fctx, []string{"observe", "--server", srv, "-f", "--from-namespace", "late", "-o", "json"}, app.IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
		}()
		// The subscription starts asynchronously; keep publishing until one arrives.
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; len(dstOctets(t, out.String())) == 0; i++ {
			if time.Now().After(deadline) {
				t.Fatalf("no live flow printed; stderr %q", errOut.String())
			}
			if i%20 == 0 {
				publishFlow(s, flow("late", "comer", 77, 80, flowv1.Verdict_FORWARDED, time.Now()))
				s.Flush()
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := dstOctets(t, out.String()); got[0] != "77" {
			t.Fatalf("followed %v", got)
		}
		cancel()
		if code := <-done; code != app.ExitOK {
			t.Fatalf("exit %d after cancel: %s", code, errOut.String())
		}
	})

	t.Run("status", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "status", "--server", srv)
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		for _, w := range []string{"Healthcheck (via " + srv + "): Ok", "ClickHouse: Ok", "Connected Nodes: 1/1"} {
			if !strings.Contains(out, w) {
				t.Errorf("status lacks %q:\n%s", w, out)
			}
		}
		if strings.Contains(out, "Stored Flows: 0\n") {
			t.Errorf("no stored flows reported:\n%s", out)
		}
	})

	t.Run("nodes", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "nodes", "--server", srv)
		if code != 0 || !strings.Contains(out, "node-e2e") || !strings.Contains(out, "Connected") {
			t.Fatalf("exit %d:\n%s%s", code, out, errOut)
		}
	})

	t.Run("conntrack", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "conntrack", "--server", srv)
		if code != 0 || !strings.Contains(out, "node-e2e") || !strings.Contains(out, "900/1000") || !strings.Contains(out, "90.0%") {
			t.Fatalf("exit %d:\n%s%s", code, out, errOut)
		}
	})

	t.Run("top", func(t *testing.T) {
		code, out, errOut := trawl(t, ctx, "top", "--server", srv, "--since", "4d")
		if code != 0 {
			t.Fatalf("exit %d:\n%s%s", code, out, errOut)
		}
		for _, w := range []string{"Top talkers", "Top droppers", "NO_SOCKET", "Top denied pairs", "Top conntrack creators"} {
			if !strings.Contains(out, w) {
				t.Errorf("top lacks %q:\n%s", w, out)
			}
		}
	})
}
