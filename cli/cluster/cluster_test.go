package cluster

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func TestConntrackRow(t *testing.T) {
	tests := []struct {
		name   string
		sample *flowv1.ConntrackSample
		want   []string
	}{
		{"a full table with creators and a rate", &flowv1.ConntrackSample{NodeName: "n1", Entries: 1000, Max: 1000, Interval: durationpb.New(2 * time.Second),
			Deltas: &flowv1.ConntrackStats{New: 10, Drop: 4, EarlyDrop: 2}, TopCreators: []*flowv1.ConntrackCreator{{Ip: "10.0.0.1", NewEntries: 7}, {Ip: "10.0.0.2", NewEntries: 2}, {Ip: "10.0.0.3", NewEntries: 1}, {Ip: "10.0.0.4", NewEntries: 1}}},
			[]string{"n1", "1000/1000", "[####################] 100.0%", "5.0", "      4", "          2", "10.0.0.1 (7), 10.0.0.2 (2), 10.0.0.3 (1)"}},
		{"utilization computed when the agent sent none", &flowv1.ConntrackSample{NodeName: "n2", Entries: 250, Max: 1000},
			[]string{"[#####---------------]  25.0%", "-"}},
		{"an unknown max", &flowv1.ConntrackSample{NodeName: "n3", Entries: 5},
			[]string{"5/0", "[--------------------]   0.0%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := ConntrackRow(tt.sample, 3)
			for _, w := range tt.want {
				if !strings.Contains(row, w) {
					t.Errorf("row %q lacks %q", row, w)
				}
			}
			if strings.Count(row, "\n") != 1 {
				t.Errorf("row %q is not one line", row)
			}
		})
	}
	// Fixed widths keep followed rows aligned under the header.
	a := ConntrackRow(&flowv1.ConntrackSample{NodeName: "a", Entries: 1, Max: 10}, 3)
	b := ConntrackRow(&flowv1.ConntrackSample{NodeName: "much-longer-node", Entries: 123456, Max: 262144}, 3)
	if strings.Index(a, "[") != strings.Index(b, "[") || strings.Index(ConntrackHeader, "UTILIZATION") != strings.Index(a, "[") {
		t.Errorf("columns do not line up:\n%s%s%s", ConntrackHeader, a, b)
	}
}

func TestWriteTopShowsTheColumnsOfEachKind(t *testing.T) {
	e := []*observerv1.TopEntry{{Source: "a/x", Destination: "b/y", Reason: "NO_SOCKET", DropClass: "no-socket", Bytes: 1234567, Packets: 10, Flows: 2, Drops: 3, ConntrackEntries: 99, Policies: []string{"b/deny"},
		DnsQuery: "api.example.com.", DnsQueries: 4321, DnsErrors: 17, DnsNxdomain: 12, DnsLatencyP50: durationpb.New(812 * time.Microsecond), DnsLatencyP99: durationpb.New(2500 * time.Millisecond),
		TcpRttP50: durationpb.New(400 * time.Microsecond), TcpRttP99: durationpb.New(21 * time.Millisecond), TcpRetransmits: 54321, TcpResets: 7, TcpTimeouts: 5, TcpConnections: 8765}}
	tests := []struct {
		kind observerv1.TopKind
		want []string
	}{
		{observerv1.TopKind_TOP_KIND_TALKERS, []string{"BYTES", "1,234,567", "b/y"}},
		{observerv1.TopKind_TOP_KIND_DROPPERS, []string{"REASON", "CLASS", "NO_SOCKET", "no-socket", "3"}},
		{observerv1.TopKind_TOP_KIND_DENIED_PAIRS, []string{"POLICIES", "b/deny"}},
		{observerv1.TopKind_TOP_KIND_CONNTRACK_CREATORS, []string{"NEW ENTRIES", "99"}},
		{observerv1.TopKind_TOP_KIND_DNS_NAMES, []string{"NAME", "QUERIES", "ERRORS", "NXDOMAIN", "P50", "P99", "api.example.com.", "4,321", "17", "12", "812µs", "2.5s"}},
		{observerv1.TopKind_TOP_KIND_DNS_NXDOMAIN_CLIENTS, []string{"CLIENT", "NXDOMAIN", "TOP NAME", "a/x", "12", "4,321", "NO_SOCKET"}},
		{observerv1.TopKind_TOP_KIND_DNS_SLOW_NAMES, []string{"NAME", "P99", "api.example.com.", "2.5s", "812µs"}},
		{observerv1.TopKind_TOP_KIND_TCP_SLOWEST, []string{"CLIENT", "SERVER", "P99 RTT", "P50 RTT", "CONNECTIONS", "RETRANS", "RESETS", "TIMEOUTS", "a/x", "b/y", "21ms", "0.4ms", "8,765", "54,321"}},
		{observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS, []string{"CLIENT", "SERVER", "RETRANS", "CONNECTIONS", "P99 RTT", "a/x", "b/y", "54,321", "8,765", "21ms"}},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := WriteTop(&b, tt.kind, "T", e); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.kind, w, b.String())
			}
		}
	}
	var b bytes.Buffer
	_ = WriteTop(&b, observerv1.TopKind_TOP_KIND_TALKERS, "T", nil)
	if !strings.Contains(b.String(), "(none in this window)") {
		t.Errorf("empty table not said: %q", b.String())
	}
}

func TestDNSTablesSayWhenLatencyIsUnknown(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTop(&b, observerv1.TopKind_TOP_KIND_DNS_NAMES, "T", []*observerv1.TopEntry{{Source: "only.in.source.", DnsQueries: 3}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || strings.Fields(lines[2])[0] != "only.in.source." || strings.Count(lines[2], " -") != 2 {
		t.Errorf("want the name from source and '-' for both quantiles:\n%s", b.String())
	}
}

// The TCP tables rank pairs, client first: the slowest by p99 (then p50),
// the retransmitting ones by segments; a pair whose window measured no
// handshake shows "-" for its RTTs.
func TestTCPTablesPutTheRankingColumnFirst(t *testing.T) {
	e := []*observerv1.TopEntry{{Source: "shop/web", Destination: "shop/db", TcpRetransmits: 12, TcpResets: 1, TcpTimeouts: 2}}
	for kind, want := range map[observerv1.TopKind][]string{
		observerv1.TopKind_TOP_KIND_TCP_SLOWEST:     {"shop/web", "shop/db", "-", "-", "0", "12", "1", "2"},
		observerv1.TopKind_TOP_KIND_TCP_RETRANSMITS: {"shop/web", "shop/db", "12", "0", "-", "1", "2"},
	} {
		var b bytes.Buffer
		if err := WriteTop(&b, kind, "T", e); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		if len(lines) != 3 || strings.Join(strings.Fields(lines[2]), " ") != strings.Join(want, " ") {
			t.Errorf("%s: row %q, want %q:\n%s", kind, lines[len(lines)-1], strings.Join(want, " "), b.String())
		}
	}
}

func TestTopKindsFromTheCommandLine(t *testing.T) {
	for _, tt := range []struct {
		args []string
		dns  bool
		tcp  bool
		want string // kinds asked for, or the error
	}{
		{nil, false, false, "[TOP_KIND_TALKERS TOP_KIND_DROPPERS TOP_KIND_DENIED_PAIRS TOP_KIND_CONNTRACK_CREATORS]"},
		{nil, true, false, "[TOP_KIND_DNS_NAMES TOP_KIND_DNS_NXDOMAIN_CLIENTS TOP_KIND_DNS_SLOW_NAMES]"},
		{[]string{"slow"}, true, false, "[TOP_KIND_DNS_SLOW_NAMES]"},
		{[]string{"NXDOMAIN"}, true, false, "[TOP_KIND_DNS_NXDOMAIN_CLIENTS]"},
		{[]string{"dns-names"}, false, false, "[TOP_KIND_DNS_NAMES]"},
		{[]string{"dns-names"}, true, false, "[TOP_KIND_DNS_NAMES]"},
		{[]string{"droppers"}, false, false, "[TOP_KIND_DROPPERS]"},
		{[]string{"talkers"}, true, false, `unknown DNS top kind "talkers": want names, nxdomain or slow`},
		{[]string{"names"}, false, false, `unknown top kind "names"`},
		{nil, false, true, "[TOP_KIND_TCP_SLOWEST TOP_KIND_TCP_RETRANSMITS]"},
		{[]string{"retransmits"}, false, true, "[TOP_KIND_TCP_RETRANSMITS]"},
		{[]string{"Slowest"}, false, true, "[TOP_KIND_TCP_SLOWEST]"},
		{[]string{"tcp-slowest"}, false, false, "[TOP_KIND_TCP_SLOWEST]"},
		{[]string{"tcp-retransmits"}, false, true, "[TOP_KIND_TCP_RETRANSMITS]"},
		{[]string{"slowest"}, false, false, `unknown top kind "slowest": want talkers, droppers, denied, conntrack, dns-names, dns-nxdomain, dns-slow, tcp-slowest or tcp-retransmits`},
		{[]string{"slow"}, false, true, `unknown TCP top kind "slow": want slowest or retransmits`},
		{[]string{"dns-names"}, false, true, `unknown TCP top kind "dns-names"`},
		{[]string{"tcp-slowest"}, true, false, `unknown DNS top kind "tcp-slowest"`},
		{nil, true, true, "--dns and --tcp cannot be combined"},
	} {
		ks, err := pickTopKinds(tt.args, tt.dns, tt.tcp)
		var got string
		if err != nil {
			got = err.Error()
		} else {
			var names []string
			for _, k := range ks {
				names = append(names, k.kind.String())
			}
			got = "[" + strings.Join(names, " ") + "]"
		}
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("%v dns=%v tcp=%v: %s, want %s", tt.args, tt.dns, tt.tcp, got, tt.want)
		}
	}
}

func TestNumbersAndDurations(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{5 * time.Second: "5s", 90 * time.Second: "1m30s", 3*time.Hour + 5*time.Minute: "3h5m", 72 * time.Hour: "3d"} {
		if got := human(d); got != want {
			t.Errorf("human(%s) = %q, want %q", d, got, want)
		}
	}
}
