package observe

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/cli/client"
	"github.com/trawl-dev/trawl/cli/usage"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

var fixedNow = time.Date(2026, 11, 27, 10, 30, 0, 0, time.UTC)

// parse runs the flag parser of `trawl observe` on args and builds the request.
func parse(t *testing.T, args ...string) (*observerv1.GetFlowsRequest, []string, error) {
	t.Helper()
	conn := client.DefaultOptions()
	c, cmd := New(&conn)
	c.Now = func() time.Time { return fixedNow }
	if err := cmd.ParseFlags(args); err != nil {
		return nil, nil, err
	}
	return c.Request()
}

// filters reads a list of FlowFilters written as JSON objects separated by " | ".
func filters(t *testing.T, s string) []*observerv1.FlowFilter {
	t.Helper()
	if s == "" {
		return nil
	}
	var out []*observerv1.FlowFilter
	for _, part := range strings.Split(s, " | ") {
		ff := &observerv1.FlowFilter{}
		if err := protojson.Unmarshal([]byte(part), ff); err != nil {
			t.Fatalf("bad expectation %s: %v", part, err)
		}
		out = append(out, ff)
	}
	return out
}

func sameFilters(a, b []*observerv1.FlowFilter) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func show(ffs []*observerv1.FlowFilter) string {
	var parts []string
	for _, ff := range ffs {
		b, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ff)
		parts = append(parts, string(b))
	}
	return strings.Join(parts, " | ")
}

func TestFlagsMapToFlowFilters(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		allow string
	}{
		{"--pod matches the pod at either end, default namespace", []string{"--pod", "web"},
			`{"source_pod":["default/web"]} | {"destination_pod":["default/web"]}`},
		{"--from-pod keeps its namespace", []string{"--from-pod", "shop/web"}, `{"source_pod":["shop/web"]}`},
		{"--to-pod", []string{"--to-pod", "shop/db"}, `{"destination_pod":["shop/db"]}`},
		{"--pod repeats as OR", []string{"--from-pod", "a/x", "--from-pod", "b/y"}, `{"source_pod":["a/x","b/y"]}`},
		{"-n selects the namespace at either end", []string{"-n", "shop"},
			`{"source_pod":["shop/"]} | {"destination_pod":["shop/"]}`},
		{"--namespace puts pods without a namespace in it", []string{"--namespace", "shop", "--pod", "web"},
			`{"source_pod":["shop/web"]} | {"destination_pod":["shop/web"]}`},
		{"--from-namespace", []string{"--from-namespace", "shop"}, `{"source_pod":["shop/"]}`},
		{"--to-namespace", []string{"--to-namespace", "shop"}, `{"destination_pod":["shop/"]}`},
		{"--to-namespace applies to --to-service", []string{"--to-namespace", "shop", "--to-service", "api"}, `{"destination_service":["shop/api"]}`},
		{"-A alone restricts nothing", []string{"-A"}, ``},
		{"-A keeps namespaced pods", []string{"-A", "--pod", "shop/web"},
			`{"source_pod":["shop/web"]} | {"destination_pod":["shop/web"]}`},
		{"-l matches labels at either end", []string{"-l", "app=web"},
			`{"source_label":["app=web"]} | {"destination_label":["app=web"]}`},
		{"--from-label", []string{"--from-label", "k8s:app=web"}, `{"source_label":["k8s:app=web"]}`},
		{"--to-label", []string{"--to-label", "reserved:world"}, `{"destination_label":["reserved:world"]}`},
		{"--workload with a kind", []string{"--workload", "Deployment/web"},
			`{"source_workload":[{"kind":"Deployment","name":"web"}]} | {"destination_workload":[{"kind":"Deployment","name":"web"}]}`},
		{"--from-workload with a name only", []string{"--from-workload", "web"}, `{"source_workload":[{"name":"web"}]}`},
		{"--to-workload", []string{"--to-workload", "StatefulSet/db"}, `{"destination_workload":[{"kind":"StatefulSet","name":"db"}]}`},
		{"--service at either end", []string{"--service", "shop/api"},
			`{"source_service":["shop/api"]} | {"destination_service":["shop/api"]}`},
		{"--from-service gets the default namespace", []string{"--from-service", "api"}, `{"source_service":["default/api"]}`},
		{"--to-service", []string{"--to-service", "kube-system/kube-dns"}, `{"destination_service":["kube-system/kube-dns"]}`},
		{"--ip takes an address at either end", []string{"--ip", "10.0.0.1"},
			`{"source_ip":["10.0.0.1"]} | {"destination_ip":["10.0.0.1"]}`},
		{"--from-ip takes a CIDR", []string{"--from-ip", "10.0.0.0/24"}, `{"source_ip":["10.0.0.0/24"]}`},
		{"--to-ip takes IPv6", []string{"--to-ip", "fd00::1"}, `{"destination_ip":["fd00::1"]}`},
		{"--port at either end", []string{"--port", "53"},
			`{"source_port":["53"]} | {"destination_port":["53"]}`},
		{"--from-port", []string{"--from-port", "1024-65535"}, `{"source_port":["1024-65535"]}`},
		{"--to-port", []string{"--to-port", "443"}, `{"destination_port":["443"]}`},
		{"--protocol is lower-cased", []string{"--protocol", "TCP"}, `{"protocol":["tcp"]}`},
		{"--verdict", []string{"--verdict", "DROPPED"}, `{"verdict":["DROPPED"]}`},
		{"--verdict is case-insensitive and repeats", []string{"--verdict", "dropped", "--verdict", "FORWARDED"}, `{"verdict":["DROPPED","FORWARDED"]}`},
		{"--drop-reason-desc", []string{"--drop-reason-desc", "POLICY_DENIED"}, `{"drop_reason_desc":["POLICY_DENIED"]}`},
		{"--drop-reason is the kernel name, prefix optional", []string{"--drop-reason", "SKB_DROP_REASON_no_socket"}, `{"drop_reason_kernel":["NO_SOCKET"]}`},
		{"--policy", []string{"--policy", "shop/deny-all"}, `{"policy":["shop/deny-all"]}`},
		{"--traffic-direction", []string{"--traffic-direction", "ingress"}, `{"traffic_direction":["INGRESS"]}`},
		{"--tcp-flags", []string{"--tcp-flags", "syn,ack"}, `{"tcp_flags":[{"SYN":true,"ACK":true}]}`},
		{"--node-name", []string{"--node-name", "worker-*"}, `{"node_name":["worker-*"]}`},
		{"--interface", []string{"--interface", "eth0"}, `{"interface":[{"name":"eth0"}]}`},
		{"-4", []string{"-4"}, `{"ip_version":["IPv4"]}`},
		{"-6", []string{"-6"}, `{"ip_version":["IPv6"]}`},
		{"--ip-version", []string{"--ip-version", "v6"}, `{"ip_version":["IPv6"]}`},
		{"--type drop", []string{"--type", "drop"}, `{"event_kind":["DROP"]}`},
		{"--type flow and new", []string{"-t", "flow", "-t", "new"}, `{"event_kind":["AGGREGATE","FLOW_NEW"]}`},
		{"--type trace is Hubble's alias for every flow kind", []string{"--type", "trace"}, `{"event_kind":["AGGREGATE","FLOW_NEW","FLOW_CLOSE","CONNECT_TIMEOUT"]}`},
		{"--type connect-timeout", []string{"--type", "connect-timeout"}, `{"event_kind":["CONNECT_TIMEOUT"]}`},
		{"--min-rtt", []string{"--min-rtt", "10ms"}, `{"min_handshake_rtt":"0.010s"}`},
		{"--min-rtt takes Go's units", []string{"--min-rtt", "1.5s"}, `{"min_handshake_rtt":"1.500s"}`},
		{"--min-rtt repeated keeps the smallest minimum (values OR)", []string{"--min-rtt", "10ms", "--min-rtt", "500us", "--min-rtt", "2s"}, `{"min_handshake_rtt":"0.000500s"}`},
		{"--retransmits", []string{"--retransmits"}, `{"tcp_retransmits":true}`},
		{"--tcp-reset", []string{"--tcp-reset"}, `{"tcp_reset":true}`},
		{"--tcp-timeout", []string{"--tcp-timeout"}, `{"tcp_timeout":true}`},
		{"TCP filters AND on each side", []string{"--pod", "shop/web", "--retransmits"},
			`{"source_pod":["shop/web"],"tcp_retransmits":true} | {"destination_pod":["shop/web"],"tcp_retransmits":true}`},
		{"--type policy-verdict", []string{"--type", "policy-verdict"}, `{"event_kind":["POLICY_VERDICT"]}`},
		{"--type close", []string{"--type", "close"}, `{"event_kind":["FLOW_CLOSE"]}`},
		{"--uuid", []string{"--uuid", "0a1b"}, `{"uuid":["0a1b"]}`},
		{"--from-fqdn", []string{"--from-fqdn", "*.example.com"}, `{"source_fqdn":["*.example.com"]}`},
		{"--to-fqdn", []string{"--to-fqdn", "example.com"}, `{"destination_fqdn":["example.com"]}`},
		{"--fqdn matches the name at either end", []string{"--fqdn", "*.example.com"},
			`{"source_fqdn":["*.example.com"]} | {"destination_fqdn":["*.example.com"]}`},
		{"--type l7 is the flow type", []string{"--type", "l7"}, `{"type":["L7"]}`},
		{"--type l7 beside other kinds is the L7 record kind", []string{"-t", "drop", "-t", "l7"}, `{"event_kind":["DROP","L7_EVENT"]}`},
		{"--type l7 before other kinds likewise", []string{"-t", "l7", "-t", "drop"}, `{"event_kind":["L7_EVENT","DROP"]}`},
		{"--protocol dns", []string{"--protocol", "DNS"}, `{"protocol":["dns"]}`},
		{"--dns-query is passed as written", []string{"--dns-query", `example\.com\.$`}, `{"dns_query":["example\\.com\\.$"]}`},
		{"--dns-rcode takes names, Hubble's words, numbers and lists", []string{"--dns-rcode", "nxdomain,Server Failure", "--dns-rcode", "5"},
			`{"dns_rcode":["NXDOMAIN","SERVFAIL","REFUSED"]}`},
		{"different kinds AND on each side", []string{"--pod", "shop/web", "--verdict", "DROPPED"},
			`{"source_pod":["shop/web"],"verdict":["DROPPED"]} | {"destination_pod":["shop/web"],"verdict":["DROPPED"]}`},
		{"--allowlist adds raw filters", []string{"--allowlist", `{"source_ip":["1.2.3.4"]}`}, `{"source_ip":["1.2.3.4"]}`},
		{"--allowlist may hold several objects", []string{"--allowlist", `{"source_ip":["1.2.3.4"]}{"verdict":["DROPPED"]}`},
			`{"source_ip":["1.2.3.4"]} | {"verdict":["DROPPED"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _, err := parse(t, tt.args...)
			if err != nil {
				t.Fatalf("%v: %v", tt.args, err)
			}
			if want := filters(t, tt.allow); !sameFilters(req.GetAllowlist(), want) {
				t.Fatalf("allowlist of %v\n got %s\nwant %s", tt.args, show(req.GetAllowlist()), show(want))
			}
			if deny := withoutDefault(req.GetDenylist()); len(deny) != 0 {
				t.Fatalf("denylist of %v = %s, want empty", tt.args, show(deny))
			}
			// --not puts the same filter in the deny list instead.
			notArgs := append([]string{"--not"}, tt.args...)
			if tt.args[0] == "--allowlist" {
				notArgs = []string{"--denylist", tt.args[1]}
			}
			if len(tt.args) > 2 && tt.args[0] != "--allowlist" {
				return // --not negates only the first flag of a combination
			}
			req, _, err = parse(t, notArgs...)
			if err != nil {
				t.Fatalf("%v: %v", notArgs, err)
			}
			if want := filters(t, tt.allow); !sameFilters(withoutDefault(req.GetDenylist()), want) {
				t.Fatalf("denylist of %v\n got %s\nwant %s", notArgs, show(req.GetDenylist()), show(want))
			}
			if len(req.GetAllowlist()) != 0 {
				t.Fatalf("allowlist of %v = %s, want empty", notArgs, show(req.GetAllowlist()))
			}
		})
	}
}

// withoutDefault drops the default view's teardown entry from the end of a
// deny list (TestDropClassFlagAndTheDefaultDropView checks where it goes).
func withoutDefault(deny []*observerv1.FlowFilter) []*observerv1.FlowFilter {
	if n := len(deny); n > 0 && proto.Equal(deny[n-1], TeardownDeny()) {
		return deny[:n-1]
	}
	return deny
}

func TestDropClassFlagAndTheDefaultDropView(t *testing.T) {
	const teardown = `{"drop_class":["teardown"]}`
	tests := []struct {
		name        string
		args        []string
		allow, deny string
	}{
		{"a plain observe hides teardown drops", nil, ``, teardown},
		{"--verdict DROPPED hides teardown drops", []string{"--verdict", "DROPPED"}, `{"verdict":["DROPPED"]}`, teardown},
		{"--type drop hides teardown drops", []string{"--type", "drop"}, `{"event_kind":["DROP"]}`, teardown},
		{"--follow hides teardown drops", []string{"-f", "--to-namespace", "shop"}, `{"destination_pod":["shop/"]}`, teardown},
		{"--drop-class selects classes", []string{"--verdict", "DROPPED", "--drop-class", "policy"},
			`{"verdict":["DROPPED"],"drop_class":["policy"]}`, ``},
		{"--drop-class takes a list, as users type it, and repeats", []string{"--drop-class", "No_Socket,overload", "--drop-class", "ROUTING"},
			`{"drop_class":["no-socket","overload","routing"]}`, ``},
		{"naming teardown shows teardown drops", []string{"--type", "drop", "--drop-class", "teardown"},
			`{"event_kind":["DROP"],"drop_class":["teardown"]}`, ``},
		{"--drop-class all shows every drop", []string{"--verdict", "DROPPED", "--drop-class", "all"}, `{"verdict":["DROPPED"]}`, ``},
		{"--not --drop-class hides exactly what it names", []string{"--verdict", "DROPPED", "--not", "--drop-class", "overload"},
			`{"verdict":["DROPPED"]}`, `{"drop_class":["overload"]}`},
		{"a kernel reason asked for is shown whatever its class", []string{"--drop-reason", "QUEUE_PURGE"}, `{"drop_reason_kernel":["QUEUE_PURGE"]}`, ``},
		{"a description asked for likewise", []string{"--drop-reason-desc", "TCP_OLD_SEQUENCE"}, `{"drop_reason_desc":["TCP_OLD_SEQUENCE"]}`, ``},
		{"a record asked for by id likewise", []string{"--uuid", "0a1b"}, `{"uuid":["0a1b"]}`, ``},
		{"raw lists are taken as given", []string{"--allowlist", `{"verdict":["DROPPED"]}`}, `{"verdict":["DROPPED"]}`, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _, err := parse(t, tt.args...)
			if err != nil {
				t.Fatalf("%v: %v", tt.args, err)
			}
			if want := filters(t, tt.allow); !sameFilters(req.GetAllowlist(), want) {
				t.Errorf("allowlist of %v\n got %s\nwant %s", tt.args, show(req.GetAllowlist()), show(want))
			}
			if want := filters(t, tt.deny); !sameFilters(req.GetDenylist(), want) {
				t.Errorf("denylist of %v\n got %s\nwant %s", tt.args, show(req.GetDenylist()), show(want))
			}
		})
	}
}

func TestNotAppliesToTheNextFilterOnly(t *testing.T) {
	req, _, err := parse(t, "--from-pod", "shop/web", "--not", "--to-port", "53", "--verdict", "DROPPED")
	if err != nil {
		t.Fatal(err)
	}
	if want := filters(t, `{"source_pod":["shop/web"],"verdict":["DROPPED"]}`); !sameFilters(req.GetAllowlist(), want) {
		t.Errorf("allowlist = %s", show(req.GetAllowlist()))
	}
	if want := filters(t, `{"destination_port":["53"]} | {"drop_class":["teardown"]}`); !sameFilters(req.GetDenylist(), want) {
		t.Errorf("denylist = %s", show(req.GetDenylist()))
	}
}

// A TCP boolean set to false asks for nothing (and so adds no filter).
func TestFalseTCPFlagsAddNoFilter(t *testing.T) {
	req, _, err := parse(t, "--retransmits=false", "--tcp-reset=false", "--tcp-timeout=false")
	if err != nil {
		t.Fatal(err)
	}
	if len(req.GetAllowlist()) != 0 {
		t.Errorf("allowlist = %s, want empty", show(req.GetAllowlist()))
	}
}

func TestTypeOfRecordsIsSelectedByTheCLI(t *testing.T) {
	req, records, err := parse(t, "--type", "conntrack", "--type", "lost-events")
	if err != nil {
		t.Fatal(err)
	}
	if len(req.GetAllowlist()) != 0 || strings.Join(records, ",") != "conntrack,lost-events" {
		t.Fatalf("allow %s records %v", show(req.GetAllowlist()), records)
	}
}

func TestBadFlagsAreUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"an IP that is not one", []string{"--from-ip", "10.0.0"}, "not an address or CIDR"},
		{"a CIDR that is not one", []string{"--ip", "10.0.0.0/33"}, "not an address or CIDR"},
		{"a port out of range", []string{"--port", "70000"}, "port"},
		{"a reversed port range", []string{"--to-port", "90-80"}, "range"},
		{"an unknown verdict", []string{"--verdict", "ALLOWED"}, "FORWARDED"},
		{"an unknown protocol", []string{"--protocol", "http"}, "tcp, udp"},
		{"a DNS query that is not a regular expression", []string{"--dns-query", "exa(mple"}, "not a regular expression: missing closing ): `exa(mple`"},
		{"an unknown DNS response code", []string{"--dns-rcode", "NXDOMIAN"}, `unknown DNS response code "NXDOMIAN"`},
		{"a DNS response code out of range", []string{"--dns-rcode", "NXDOMAIN,70000"}, `unknown DNS response code "70000"`},
		{"an FQDN pattern that is only a dot", []string{"--to-fqdn", "."}, "destination_fqdn: empty pattern"},
		{"an unknown direction", []string{"--traffic-direction", "up"}, "ingress or egress"},
		{"an unknown TCP flag", []string{"--tcp-flags", "syn,foo"}, "unknown TCP flag"},
		{"an unknown type", []string{"--type", "http"}, "policy-verdict, l7, connect-timeout"},
		{"a round-trip time without a unit", []string{"--min-rtt", "10"}, "want a duration such as 10ms, 500us or 1.5s"},
		{"a round-trip time that is not one", []string{"--min-rtt", "fast"}, "want a duration"},
		{"a negative round-trip time", []string{"--min-rtt", "-1ms"}, "not negative"},
		{"--retransmits with a value it does not take", []string{"--retransmits=3"}, "want true or false"},
		{"a policy without namespace", []string{"--policy", "deny-all"}, "namespace/name"},
		{"a workload with two slashes", []string{"--workload", "a/b/c"}, "kind/name"},
		{"a bad duration", []string{"--since", "3x"}, "unknown unit"},
		{"a bad date", []string{"--until", "2026-13-45"}, "invalid time"},
		{"since after until", []string{"--since", "1h", "--until", "2h"}, "after --until"},
		{"first and last", []string{"--first", "3", "--last", "2"}, "cannot set both --first and --last"},
		{"first and all", []string{"--first", "3", "--all"}, "cannot set both --first and --all"},
		{"first and follow", []string{"--first", "3", "-f"}, "cannot set both --first and --follow"},
		{"last and all", []string{"--last", "3", "--all"}, "cannot set both --last and --all"},
		{"conflicting pod filters", []string{"--pod", "a/x", "--from-pod", "a/y"}, "filters --from-pod and --pod cannot be combined"},
		{"ip and pod on one side", []string{"--from-ip", "1.2.3.4", "--from-pod", "a/x"}, "cannot be combined"},
		{"label and from-label", []string{"-l", "a=b", "--from-label", "c=d"}, "cannot be combined"},
		{"port and to-port", []string{"--port", "1", "--to-port", "2"}, "cannot be combined"},
		{"namespace and to-pod", []string{"-n", "a", "--to-pod", "x"}, "cannot be combined"},
		{"two --not in a row", []string{"--not", "--not", "--pod", "x"}, "--not given twice"},
		{"a trailing --not", []string{"--pod", "x", "--not"}, "--not at the end"},
		{"a bare pod with -A", []string{"-A", "--pod", "web"}, "has no namespace"},
		{"a bad raw allowlist", []string{"--allowlist", `{"source_ip":`}, "invalid --allowlist"},
		{"a raw filter the filter package rejects", []string{"--allowlist", `{"source_ip":["banana"]}`}, "invalid filter"},
		{"negating a record type", []string{"--not", "--type", "conntrack"}, "not supported"},
		{"an unknown drop class", []string{"--drop-class", "boring"}, `unknown drop class "boring": want policy, no-socket, overload, malformed, routing, teardown, other or all`},
		{"an unknown drop class in a list", []string{"--drop-class", "policy,,x"}, `unknown drop class ""`},
		{"all with named classes", []string{"--drop-class", "all", "--drop-class", "policy"}, "--drop-class all cannot be combined"},
		{"hiding every class", []string{"--not", "--drop-class", "all"}, "would hide every drop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parse(t, tt.args...)
			if err == nil {
				t.Fatalf("%v accepted, want an error", tt.args)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v: error %q does not mention %q", tt.args, err, tt.want)
			}
			// flag parse errors are marked by the root command; the rest here.
			if !usage.Is(err) && !strings.Contains(err.Error(), "invalid argument") {
				t.Fatalf("%v: error %q is not a usage error", tt.args, err)
			}
		})
	}
}

func TestSelection(t *testing.T) {
	sinceT := fixedNow.Add(-3 * time.Hour)
	tests := []struct {
		name   string
		args   []string
		number uint64
		first  bool
		follow bool
		since  bool
		until  bool
	}{
		{"a plain observe prints the last 20", nil, 20, false, false, false, false},
		{"--last", []string{"--last", "5"}, 5, false, false, false, false},
		{"--first", []string{"--first", "7"}, 7, true, false, false, false},
		{"--all asks for everything", []string{"--all"}, math.MaxUint64, false, false, false, false},
		{"--follow alone is live only", []string{"-f"}, 0, false, true, false, false},
		{"--follow with --last replays N first", []string{"-f", "--last", "3"}, 3, false, true, false, false},
		{"--since selects the whole window", []string{"--since", "3h"}, 0, false, false, true, false},
		{"--since with --last takes the newest N of the window", []string{"--since", "3h", "--last", "4"}, 4, false, false, true, false},
		{"--until with --follow is ignored, as Hubble", []string{"--since", "3h", "--until", "1h", "-f"}, 0, false, true, true, false},
		{"--since and --until", []string{"--since", "3h", "--until", "1h"}, 0, false, false, true, true},
		{"--all with --since is the whole window", []string{"--all", "--since", "3h"}, 0, false, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _, err := parse(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if req.GetNumber() != tt.number || req.GetFirst() != tt.first || req.GetFollow() != tt.follow ||
				(req.GetSince() != nil) != tt.since || (req.GetUntil() != nil) != tt.until {
				t.Fatalf("%v gave number=%d first=%v follow=%v since=%v until=%v", tt.args, req.GetNumber(), req.GetFirst(), req.GetFollow(), req.GetSince(), req.GetUntil())
			}
			if tt.since && !req.GetSince().AsTime().Equal(sinceT) {
				t.Fatalf("since = %s, want %s", req.GetSince().AsTime(), sinceT)
			}
		})
	}
}

func TestPrintRawFilters(t *testing.T) {
	req, _, err := parse(t, "--to-namespace", "shop", "--not", "--port", "53")
	if err != nil {
		t.Fatal(err)
	}
	got, err := RawFilters(req)
	if err != nil {
		t.Fatal(err)
	}
	want := `allowlist:
- '{"destination_pod":["shop/"]}'
denylist:
- '{"source_port":["53"]}'
- '{"destination_port":["53"]}'
- '{"drop_class":["teardown"]}'
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// What it prints is accepted back by --allowlist/--denylist.
	req2, _, err := parse(t, "--allowlist", `{"destination_pod":["shop/"]}`, "--denylist", `{"source_port":["53"]}`, "--denylist", `{"destination_port":["53"]}`,
		"--denylist", `{"drop_class":["teardown"]}`)
	if err != nil {
		t.Fatal(err)
	}
	if !sameFilters(req.GetAllowlist(), req2.GetAllowlist()) || !sameFilters(req.GetDenylist(), req2.GetDenylist()) {
		t.Fatal("raw filters do not round-trip")
	}
}
