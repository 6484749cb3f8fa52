package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files (then check them by hand)")

// fixture reads testdata/flows.jsonl: TCP/UDP/ICMPv4/ICMPv6, IPv4/IPv6, a
// reply, drops explained and unexplained by policy, a teardown drop (whose
// class compact output shows), policy verdicts both ways, endpoints with and
// without pods, a service, reserved and unknown endpoints, DNS queries and
// answers (NOERROR with addresses and CNAMEs, NXDOMAIN, SERVFAIL, with and
// without latency, a dropped query), flows carrying resolved names, TCP
// health (a handshake RTT, retransmits and zero windows on the reply, resets
// by the server and by the client, a connection attempt that timed out), lost
// events, a conntrack sample and a node status.
func fixture(t *testing.T) []*observerv1.GetFlowsResponse {
	t.Helper()
	f, err := os.Open("testdata/flows.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*observerv1.GetFlowsResponse
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r := &observerv1.GetFlowsResponse{}
		if err := protojson.Unmarshal(sc.Bytes(), r); err != nil {
			t.Fatalf("fixture line %d: %v", len(out)+1, err)
		}
		out = append(out, r)
	}
	return out
}

func TestGoldenOutputs(t *testing.T) {
	tests := []struct {
		golden string
		opts   Options
	}{
		{"compact.txt", Options{Format: Compact, IPTranslation: true}},
		{"compact-node-policy.txt", Options{Format: Compact, IPTranslation: true, NodeName: true, PolicyNames: true}},
		{"compact-numeric.txt", Options{Format: Compact, IPTranslation: true, Numeric: true, TimeLayout: time.RFC3339Nano}},
		{"compact-color.txt", Options{Format: Compact, IPTranslation: true, Color: true}},
		{"dict.txt", Options{Format: Dict, IPTranslation: true, NodeName: true}},
		{"table.txt", Options{Format: Table, IPTranslation: true}},
		{"table-node.txt", Options{Format: "tab", IPTranslation: true, NodeName: true}},
		{"json.txt", Options{Format: JSON}},
	}
	records := fixture(t)
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var out, errOut bytes.Buffer
			p, err := New(&out, &errOut, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range records {
				if err := p.Write(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			got := out.String() + "--- stderr ---\n" + errOut.String()
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if tt.opts.Format == JSON {
				got, want := normalizeJSONLines(t, got), normalizeJSONLines(t, string(want))
				if got != want {
					t.Fatalf("json output differs from %s:\n%s", path, diff(got, want))
				}
				return
			}
			if got != string(want) {
				t.Fatalf("output differs from %s (run with -update and check by hand):\n%s", path, diff(got, string(want)))
			}
		})
	}
}

// normalizeJSONLines compacts each line: protojson varies its spacing on purpose.
func normalizeJSONLines(t *testing.T, s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "{") {
			b.WriteString(line + "\n")
			continue
		}
		var c bytes.Buffer
		if err := json.Compact(&c, []byte(line)); err != nil {
			t.Fatalf("not JSON: %s: %v", line, err)
		}
		b.WriteString(c.String() + "\n")
	}
	return b.String()
}

func diff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			b.WriteString("line " + strconv.Itoa(i+1) + "\n got: " + gl + "\nwant: " + wl + "\n")
		}
	}
	return b.String()
}

func TestJSONLinesAreThePinnedEnvelopeAndRoundTrip(t *testing.T) {
	records := fixture(t)
	var out bytes.Buffer
	p, _ := New(&out, &bytes.Buffer{}, Options{Format: JSONPB})
	for _, r := range records {
		if err := p.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	p.Flush()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(records) {
		t.Fatalf("%d lines for %d records: one object per line expected", len(lines), len(records))
	}
	for i, line := range lines {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &keys); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if _, ok := keys["flow"]; i < 10 && !ok {
			t.Fatalf("line %d has no \"flow\" key: %s", i+1, line)
		}
		if i == 0 && !strings.Contains(line, `"source_port"`) || i == 0 && !strings.Contains(line, `"pod_name"`) {
			t.Fatalf("line 1 does not use proto field names: %s", line)
		}
		back := &observerv1.GetFlowsResponse{}
		if err := protojson.Unmarshal([]byte(line), back); err != nil {
			t.Fatalf("line %d does not read back: %v", i+1, err)
		}
		if !proto.Equal(back, records[i]) {
			t.Fatalf("line %d does not round-trip", i+1)
		}
	}
}

func TestUnknownFormatIsRejected(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, &bytes.Buffer{}, Options{Format: "yaml"}); err == nil {
		t.Fatal("format yaml accepted")
	}
}

func TestLatencyIsShownToThreeSignificantPlaces(t *testing.T) {
	for d, want := range map[time.Duration]string{
		640 * time.Nanosecond:     "640ns",
		812_400 * time.Nanosecond: "812µs",
		999_999 * time.Nanosecond: "1000µs",
		time.Millisecond:          "1ms",
		1_250_000:                 "1.25ms",
		2500 * time.Millisecond:   "2.5s",
		61 * time.Second:          "61s",
	} {
		if got := string(appendLatency(nil, d)); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

// The DNS summary and type add no allocation to a compact line: each DNS
// record costs what the same record without its L7 part costs.
func TestCompactDNSLinesAllocateNoMoreThanL4Lines(t *testing.T) {
	p, err := New(io.Discard, io.Discard, Options{Format: Compact, IPTranslation: true})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 0, 1024)
	allocs := func(r *observerv1.GetFlowsResponse) float64 {
		return testing.AllocsPerRun(50, func() { b = p.compactFlow(b[:0], r) })
	}
	n := 0
	for _, r := range fixture(t) {
		if r.GetFlow().GetL7() == nil {
			continue
		}
		n++
		l4 := proto.Clone(r).(*observerv1.GetFlowsResponse)
		l4.GetFlow().L7 = nil
		if got, want := allocs(r), allocs(l4); got > want {
			t.Errorf("%s: %.0f allocations, %.0f without its L7 part", p.compactFlow(nil, r), got, want)
		}
	}
	if n < 5 {
		t.Fatalf("%d DNS records in the fixture", n)
	}
}

func TestRTTIsShownInMillisecondsUnderASecond(t *testing.T) {
	for d, want := range map[time.Duration]string{
		400 * time.Microsecond:     "0.4ms",
		12 * time.Microsecond:      "0.012ms",
		1_234_567:                  "1.235ms",
		21 * time.Millisecond:      "21ms",
		999_999_499:                "999.999ms",
		1250 * time.Millisecond:    "1.25s",
		640 * time.Nanosecond:      "640ns",
		3*time.Second + 1_000_000:  "3.001s",
		100*time.Second + 400_000:  "100s",
		50*time.Millisecond + 1000: "50.001ms",
	} {
		if got := RTT(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

// TCP health adds no allocation to a compact line either, and a record
// says nothing about it when it has none to say.
func TestCompactTCPHealthAllocatesNothing(t *testing.T) {
	p, err := New(io.Discard, io.Discard, Options{Format: Compact, IPTranslation: true})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 0, 1024)
	n := 0
	for _, r := range fixture(t) {
		f := r.GetFlow()
		if f.GetTcpHealth() == nil && f.GetEventKind() != flowv1.EventKind_CONNECT_TIMEOUT {
			if f != nil && strings.Contains(string(p.compactFlow(nil, r)), ") (") && f.GetL7() == nil {
				t.Errorf("a record without TCP health has a second group: %s", p.compactFlow(nil, r))
			}
			continue
		}
		n++
		plain := proto.Clone(r).(*observerv1.GetFlowsResponse)
		plain.GetFlow().TcpHealth = nil
		plain.GetFlow().EventKind = flowv1.EventKind_AGGREGATE
		got := testing.AllocsPerRun(50, func() { b = p.compactFlow(b[:0], r) })
		want := testing.AllocsPerRun(50, func() { b = p.compactFlow(b[:0], plain) })
		if got > want {
			t.Errorf("%s: %.0f allocations, %.0f without TCP health", p.compactFlow(nil, r), got, want)
		}
	}
	if n < 5 {
		t.Fatalf("%d records with TCP health in the fixture", n)
	}
}

// A connection attempt whose first SYN is unknown still reads as one that
// timed out; a handshake seen in half shows what was seen.
func TestTCPHealthWithoutSomeParts(t *testing.T) {
	p, _ := New(io.Discard, io.Discard, Options{Format: Compact, IPTranslation: true})
	timeout := &flowv1.Flow{EventKind: flowv1.EventKind_CONNECT_TIMEOUT, Verdict: flowv1.Verdict_FORWARDED,
		IP: &flowv1.IP{Source: "10.0.0.1", Destination: "10.0.0.2"}, L4: &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: 1, DestinationPort: 5432, Flags: &flowv1.TCPFlags{SYN: true}}}}}
	line := string(p.compactFlow(nil, &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: timeout}}))
	if !strings.HasSuffix(line, "10.0.0.1:1 -> 10.0.0.2:5432 connect-timeout FORWARDED (TCP Flags: SYN) (no answer)\n") {
		t.Errorf("timeout without first_seen: %q", line)
	}
	half := &flowv1.Flow{TcpHealth: &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(5 * time.Millisecond), ResetBy: flowv1.TCPSide(9)}}
	if got := string(dictTCP(nil, half)); got != "        RTT: 5ms (SYN to SYN-ACK 5ms, SYN-ACK to ACK -)\n" {
		t.Errorf("half a handshake (and a reset side not known) in dict: %q", got)
	}
}
