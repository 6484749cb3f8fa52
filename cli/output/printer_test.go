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

	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files (then check them by hand)")

// fixture reads testdata/flows.jsonl: TCP/UDP/ICMPv4/ICMPv6, IPv4/IPv6, a
// reply, drops explained and unexplained by policy, a teardown drop (whose
// class compact output shows), policy verdicts both ways, endpoints with and
// without pods, a service, reserved and unknown endpoints, DNS queries and
// answers (NOERROR with addresses and CNAMEs, NXDOMAIN, SERVFAIL, with and
// without latency, a dropped query), flows carrying resolved names, lost
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
