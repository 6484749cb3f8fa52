package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/cli/client"
	"github.com/trawl-dev/trawl/cli/jsonl"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// runObserve runs `trawl observe args...` in-process and returns stdout and stderr.
func runObserve(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	conn := client.DefaultOptions()
	c, cmd := New(&conn)
	c.Now = func() time.Time { return fixedNow }
	c.Stdin = strings.NewReader(stdin)
	c.IsTerminal = func() bool { return false }
	if err := cmd.ParseFlags(args); err != nil {
		return "", "", err
	}
	var out, errOut bytes.Buffer
	err := c.Run(context.Background(), &out, &errOut)
	return out.String(), errOut.String(), err
}

// selected lists the time of each record printed as JSON, conntrack
// samples left out (Hubble has none).
func selected(t *testing.T, out string) []string {
	t.Helper()
	var times []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			Flow      *struct{ Time string } `json:"flow"`
			Time      string                 `json:"time"`
			Conntrack json.RawMessage        `json:"conntrack"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad JSON line %s: %v", line, err)
		}
		switch {
		case r.Conntrack != nil:
		case r.Flow != nil:
			times = append(times, r.Flow.Time)
		default:
			times = append(times, "other@"+r.Time)
		}
	}
	return times
}

func TestInputFileSelectsTheSameFromHubbleAndTrawlLines(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int // records expected from each file, so an empty selection cannot pass
	}{
		{"everything", []string{"--all"}, 12},
		{"drops", []string{"--verdict", "DROPPED"}, 4},
		{"not forwarded (node status passes a flow-only deny filter)", []string{"--not", "--verdict", "FORWARDED"}, 5},
		{"a source pod", []string{"--from-pod", "shop/web"}, 8},
		{"a pod at either end", []string{"--pod", "shop/api"}, 5},
		{"a namespace", []string{"-n", "batch"}, 2},
		{"a destination port", []string{"--to-port", "8080"}, 3},
		{"IPv6", []string{"-6"}, 3},
		{"ICMP of both versions", []string{"--protocol", "icmp"}, 3},
		{"a drop reason", []string{"--drop-reason-desc", "POLICY_DENIED"}, 3},
		{"drop events", []string{"--type", "drop"}, 3},
		{"policy verdicts", []string{"--type", "policy-verdict"}, 3},
		{"a direction", []string{"--traffic-direction", "ingress"}, 4},
		{"a reserved label", []string{"--to-label", "reserved:world"}, 4},
		{"a workload", []string{"--from-workload", "Deployment/web"}, 2},
		{"a service", []string{"--to-service", "kube-system/kube-dns"}, 2},
		{"a CIDR", []string{"--ip", "fd00::/64"}, 3},
		{"TCP flags", []string{"--tcp-flags", "syn"}, 5},
		{"a denying policy", []string{"--policy", "shop/deny-all"}, 2},
		{"a node", []string{"--node-name", "node-b"}, 3},
		{"a window", []string{"--since", "2026-11-27T10:00:02Z", "--until", "2026-11-27 10:00:06"}, 5},
		{"the first two", []string{"--first", "2"}, 2},
		{"the last three drops", []string{"--last", "3", "--verdict", "DROPPED"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var results [2][]string
			for i, file := range []string{"testdata/trawl.jsonl", "testdata/hubble.jsonl"} {
				args := append([]string{"--input-file", file, "-o", "json"}, tt.args...)
				out, errOut, err := runObserve(t, "", args...)
				if err != nil {
					t.Fatalf("%v: %v", args, err)
				}
				if errOut != "" {
					t.Fatalf("%v: unexpected warnings: %s", args, errOut)
				}
				results[i] = selected(t, out)
			}
			if strings.Join(results[0], " ") != strings.Join(results[1], " ") {
				t.Fatalf("%v selects differently\ntrawl:  %v\nhubble: %v", tt.args, results[0], results[1])
			}
			if len(results[0]) != tt.want {
				t.Fatalf("%v selected %d records, want %d: %v", tt.args, len(results[0]), tt.want, results[0])
			}
		})
	}
}

// DNS records as `hubble observe -o jsonpb` prints them (event type L7,
// from Cilium's DNS proxy) and as Trawl writes them select alike.
func TestInputFileSelectsDNSTheSameFromHubbleAndTrawlLines(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"everything", []string{"--all"}, 5},
		{"L7 records", []string{"--type", "l7"}, 4},
		{"not L7 records", []string{"--not", "--type", "l7"}, 1},
		{"DNS records", []string{"--protocol", "dns"}, 4},
		{"a query's name and a flow's destination name", []string{"--to-fqdn", "api.example.com"}, 2},
		{"an answer's name", []string{"--from-fqdn", "api.example.com"}, 1},
		{"a name pattern at either end", []string{"--fqdn", "*.example.com"}, 3},
		{"a query regex", []string{"--dns-query", `cluster\.local\.$`}, 2},
		{"a response code", []string{"--dns-rcode", "NXDOMAIN"}, 1},
		{"queries of one pod", []string{"--type", "l7", "--from-pod", "shop/web"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var results [2][]string
			for i, file := range []string{"testdata/trawl-dns.jsonl", "testdata/hubble-dns.jsonl"} {
				args := append([]string{"--input-file", file, "-o", "json"}, tt.args...)
				out, errOut, err := runObserve(t, "", args...)
				if err != nil {
					t.Fatalf("%v: %v", args, err)
				}
				if errOut != "" {
					t.Fatalf("%v: unexpected warnings: %s", args, errOut)
				}
				results[i] = selected(t, out)
			}
			if strings.Join(results[0], " ") != strings.Join(results[1], " ") {
				t.Fatalf("%v selects differently\ntrawl:  %v\nhubble: %v", tt.args, results[0], results[1])
			}
			if len(results[0]) != tt.want {
				t.Fatalf("%v selected %d records, want %d: %v", tt.args, len(results[0]), tt.want, results[0])
			}
		})
	}
}

func TestInputFileReadsStdinAndPrintsHubbleRecordsAsSuch(t *testing.T) {
	hubble := mustRead(t, "testdata/hubble.jsonl")
	out, errOut, err := runObserve(t, hubble, "--input-file", "-", "--color", "never")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"batch/job-xyz:40001 (ID:40003) -> shop/db-0:5432 (ID:4711) POLICY_DENIED DROPPED (TCP Flags: SYN)",
		"shop/web-7d9f-abc12:41000 (ID:40001) -> 203.0.113.7:25 (world) policy-verdict:EGRESS DENIED (TCP Flags: SYN)",
		"[node-b] EVENTS LOST: UNKNOWN_LOST_EVENT_SOURCE CPU(1) 42",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "Node node-c is unavailable") {
		t.Errorf("node status not printed on stderr: %q", errOut)
	}
}

func TestInputFileCountsLinesItCannotRead(t *testing.T) {
	in := "not json\n" + strings.SplitN(mustRead(t, "testdata/trawl.jsonl"), "\n", 2)[0] + "\n{\"flow\":5}\n"
	out, errOut, err := runObserve(t, in, "--input-file", "-", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(selected(t, out)); n != 1 {
		t.Fatalf("%d records printed, want the 1 good one", n)
	}
	if !strings.Contains(errOut, "line 1 skipped") {
		t.Fatalf("bad line not reported: %q", errOut)
	}
}

func TestInputFileThatDoesNotExist(t *testing.T) {
	_, _, err := runObserve(t, "", "--input-file", "testdata/nope.jsonl")
	if err == nil || !strings.Contains(err.Error(), "nope.jsonl") {
		t.Fatalf("err = %v, want one naming the file", err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := osReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var osReadFile = os.ReadFile

// The TCP filters select from a file what they select from the relay:
// filtertest's TCP records written as JSON lines and read back.
func TestInputFileSelectsTCPHealthLikeTheFilter(t *testing.T) {
	var in []byte
	for _, f := range filtertest.TCPFlows() {
		line, err := jsonl.Append(nil, &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}})
		if err != nil {
			t.Fatal(err)
		}
		in = append(append(in, line...), '\n')
	}
	at := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, filtertest.TCPFlows()[i].GetTime().AsTime().Format(time.RFC3339))
		}
		return out
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"--min-rtt", []string{"--min-rtt", "10ms"}, at(2, 9)},
		{"--min-rtt 0 selects the handshakes", []string{"--min-rtt", "0s"}, at(0, 2, 6, 9)},
		{"--retransmits", []string{"--retransmits"}, at(1, 2)},
		{"--tcp-reset", []string{"--tcp-reset"}, at(3, 5)},
		{"--tcp-timeout", []string{"--tcp-timeout"}, at(4)},
		{"--type connect-timeout", []string{"--type", "connect-timeout"}, at(4)},
		{"--not --tcp-timeout with --to-port", []string{"--to-port", "5432", "--not", "--tcp-timeout"}, at(0, 5, 6, 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--input-file", "-", "-o", "json"}, tt.args...)
			out, errOut, err := runObserve(t, string(in), args...)
			if err != nil || errOut != "" {
				t.Fatalf("%v: %v %s", args, err, errOut)
			}
			var got []string
			for _, ts := range selected(t, out) {
				p, err := time.Parse(time.RFC3339Nano, ts)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, p.Format(time.RFC3339))
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("%v selected %v, want %v", tt.args, got, tt.want)
			}
		})
	}
}
