package demo_test

import (
	"context"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/trawl-dev/trawl/dev/demo"
)

// dnsRecord is the part of a DNS (L7) record, or of a flow with resolved
// names, that the DNS checks read.
type dnsRecord struct {
	Flow *struct {
		Time             time.Time `json:"time"`
		Type             string    `json:"Type"`
		EventKind        string    `json:"event_kind"`
		Verdict          string    `json:"verdict"`
		Source           endpoint  `json:"source"`
		Destination      endpoint  `json:"destination"`
		DestinationNames []string  `json:"destination_names"`
		L7               *struct {
			Type      string  `json:"type"`
			LatencyNs jsonU64 `json:"latency_ns"`
			DNS       *struct {
				Query  string   `json:"query"`
				IPs    []string `json:"ips"`
				TTL    uint32   `json:"ttl"`
				Rcode  uint32   `json:"rcode"`
				Qtypes []string `json:"qtypes"`
			} `json:"dns"`
		} `json:"l7"`
	} `json:"flow"`
}

// jsonU64 reads a uint64 written by protojson (a string) or as a number.
type jsonU64 uint64

func (u *jsonU64) UnmarshalJSON(b []byte) error {
	n, err := strconv.ParseUint(strings.Trim(string(b), `"`), 10, 64)
	*u = jsonU64(n)
	return err
}

func (r dnsRecord) dns() (query string, rcode uint32, ok bool) {
	if r.Flow == nil || r.Flow.L7 == nil || r.Flow.L7.DNS == nil {
		return "", 0, false
	}
	return r.Flow.L7.DNS.Query, r.Flow.L7.DNS.Rcode, true
}

func (r dnsRecord) response() bool {
	return r.Flow != nil && r.Flow.L7 != nil && r.Flow.L7.Type == "RESPONSE"
}

const rcodeNXDomain = 3

// checkDNS runs the DNS story of the demo (issue 13) through `trawl
// observe`, ClickHouse and Prometheus: the demo's names answered, the
// frontend's NXDOMAIN storm per client workload, the slow upstream's
// latency against what the client measured, and the NXDOMAIN alert.
func checkDNS(t *testing.T, ctx context.Context, s *demo.Stack, trawl func(args ...string) (string, error)) {
	gw, pay, pg, dnsPod, up := s.PodByApp(demo.AppGateway), s.PodByApp(demo.AppPayments), s.PodByApp(demo.AppPostgres), s.PodByApp(demo.AppDNS), s.PodByApp(demo.AppUpstreamDNS)
	storm, slow := s.PodByApp(demo.StormApp), s.PodByApp(demo.SlowApp)
	stormNames := demo.PodResolver("", storm.Namespace, nil).Names(demo.StormName)

	observe := func(t *testing.T, args ...string) []dnsRecord {
		t.Helper()
		return observeJSON(t, trawl, func(r dnsRecord) bool { return r.Flow != nil }, args...)
	}

	// Wait until the story's DNS is in the history: an answer for the
	// slow name to its client and the storm's last search-list name.
	var dnsRecs []dnsRecord
	deadline := time.Now().Add(60 * time.Second)
	for {
		s.Round(ctx)
		dnsRecs = observe(t, "--protocol", "dns", "--since", "10m", "--last", "5000")
		var slowSeen, stormSeen bool
		for _, r := range dnsRecs {
			q, rc, ok := r.dns()
			slowSeen = slowSeen || ok && r.response() && q == demo.SlowName && r.Flow.Destination.id() == demo.ID(slow)
			stormSeen = stormSeen || ok && r.response() && q == stormNames[len(stormNames)-1] && rc == rcodeNXDomain
		}
		if slowSeen && stormSeen || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}

	t.Run("observe --protocol dns prints only DNS records, and the demo's names are answered with their pods' addresses", func(t *testing.T) {
		if len(dnsRecs) == 0 {
			t.Fatal("observe --protocol dns printed nothing")
		}
		want := map[string]string{ // name -> address, each asked by its client
			demo.AppPayments + "." + pay.Namespace + ".svc.cluster.local.": pay.IP.String(),
			demo.AppPostgres + "." + pg.Namespace + ".svc.cluster.local.":  pg.IP.String(),
			demo.SlowName: demo.SlowAddr.String(),
		}
		clients := map[string]string{
			demo.AppPayments + "." + pay.Namespace + ".svc.cluster.local.": demo.ID(gw),
			demo.AppPostgres + "." + pg.Namespace + ".svc.cluster.local.":  demo.ID(pay),
			demo.SlowName: demo.ID(slow),
		}
		asked, answered := map[string]bool{}, map[string]bool{}
		for _, r := range dnsRecs {
			q, rc, ok := r.dns()
			if !ok || r.Flow.Type != "L7" || r.Flow.EventKind != "L7_EVENT" {
				t.Errorf("--protocol dns printed a record that is not an L7 DNS record: %+v", *r.Flow)
				continue
			}
			client := clients[q]
			switch {
			case client == "":
			case !r.response() && r.Flow.Source.id() == client && r.Flow.Destination.id() == demo.ID(dnsPod):
				asked[q] = true
			case r.response() && r.Flow.Destination.id() == client && r.Flow.Source.id() == demo.ID(dnsPod):
				if rc != 0 || !slices.Contains(r.Flow.L7.DNS.IPs, want[q]) || r.Flow.L7.DNS.TTL == 0 {
					t.Errorf("answer for %s: rcode %d, ips %v, ttl %d; want NOERROR with %s and a TTL", q, rc, r.Flow.L7.DNS.IPs, r.Flow.L7.DNS.TTL, want[q])
				}
				answered[q] = true
			}
		}
		for q := range want {
			if !asked[q] || !answered[q] {
				t.Errorf("%s: query from %s printed %v, answer from %s printed %v", q, clients[q], asked[q], demo.ID(dnsPod), answered[q])
			}
		}
	})

	t.Run("the misspelt name's search-list storm is NXDOMAIN for the frontend workload only", func(t *testing.T) {
		recs := observe(t, "--protocol", "dns", "--dns-rcode", "NXDOMAIN", "--since", "10m", "--last", "5000")
		seen := map[string]int{}
		for _, r := range recs {
			q, rc, ok := r.dns()
			if !ok || !r.response() || rc != rcodeNXDomain {
				t.Errorf("--dns-rcode NXDOMAIN printed %+v", *r.Flow)
				continue
			}
			d := r.Flow.Destination
			if d.id() != demo.ID(storm) || len(d.Workloads) == 0 || d.Workloads[0].Name != demo.StormApp {
				t.Errorf("an NXDOMAIN answer for %s to %s (workloads %+v); only %s storms", q, d.id(), d.Workloads, demo.ID(storm))
				continue
			}
			seen[q]++
		}
		for _, n := range stormNames {
			if seen[n] == 0 {
				t.Errorf("no NXDOMAIN answer for %s to %s; printed %v", n, demo.ID(storm), seen)
			}
		}
	})

	t.Run("observe --type l7 shows the client walking its search list in order", func(t *testing.T) {
		recs := observe(t, "--type", "l7", "--from-pod", demo.ID(storm), "--since", "10m", "--last", "400")
		var queries []string
		for _, r := range recs {
			if r.Flow.EventKind != "L7_EVENT" {
				t.Errorf("--type l7 printed a %s record", r.Flow.EventKind)
				continue
			}
			if q, _, ok := r.dns(); ok && !r.response() {
				queries = append(queries, q)
			}
		}
		joined := "|" + strings.Join(queries, "|") + "|"
		if !strings.Contains(joined, "|"+strings.Join(stormNames, "|")+"|") {
			t.Errorf("the queries of %s never follow its search list %v in order:\n%v", demo.ID(storm), stormNames, queries)
		}
	})

	t.Run("observe --to-fqdn selects the queries for a name and the flows to an address resolved from it", func(t *testing.T) {
		var queries int
		for _, r := range observe(t, "--to-fqdn", strings.TrimSuffix(demo.SlowName, "."), "--since", "10m", "--last", "500") {
			q, _, ok := r.dns()
			if !ok || q != demo.SlowName {
				t.Errorf("--to-fqdn %s printed a record about %q: %+v", demo.SlowName, q, *r.Flow)
				continue
			}
			queries++
		}
		if queries == 0 {
			t.Errorf("--to-fqdn %s printed no DNS record", demo.SlowName)
		}
		name := demo.AppPayments + "." + pay.Namespace + ".svc.cluster.local"
		var flows int
		for _, r := range observe(t, "--to-fqdn", name, "--from-pod", demo.ID(gw), "--since", "10m", "--last", "500") {
			if _, _, ok := r.dns(); ok {
				continue
			}
			if r.Flow.Destination.id() != demo.ID(pay) || !slices.ContainsFunc(r.Flow.DestinationNames, func(n string) bool { return strings.TrimSuffix(n, ".") == name }) {
				t.Errorf("--to-fqdn %s printed a flow to %s named %v", name, r.Flow.Destination.id(), r.Flow.DestinationNames)
				continue
			}
			flows++
		}
		if flows == 0 {
			t.Errorf("--to-fqdn %s printed no flow from %s to the address it resolved", name, demo.ID(gw))
		}
	})

	t.Run("trawl top ranks the storming workload first by NXDOMAIN and the slow name first by p99", func(t *testing.T) {
		for _, c := range []struct{ table, header, first string }{
			{"dns-nxdomain", "CLIENT", storm.Namespace + "/" + demo.StormApp},
			{"dns-slow", "NAME", demo.SlowName},
		} {
			out, err := trawl("top", c.table, "--since", "10m")
			if err != nil {
				t.Fatalf("trawl top %s: %v", c.table, err)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, c.header+" ") })
			var first []string
			if i >= 0 && i+1 < len(lines) {
				first = strings.Fields(lines[i+1])
			}
			if len(first) == 0 || first[0] != c.first {
				t.Errorf("trawl top %s: want %s in the first row:\n%s", c.table, c.first, out)
			}
		}
	})

	// The client's own measurements of the slow name, by when the answer
	// arrived.
	var measured []demo.Lookup
	for _, l := range s.DNSLookups() {
		if l.Name == demo.SlowName && l.From == demo.ID(slow) && l.Err == nil && l.Rcode == "NOERROR" {
			measured = append(measured, l)
		}
	}
	nearest := func(at time.Time) (demo.Lookup, bool) {
		i := sort.Search(len(measured), func(i int) bool { return !measured[i].Received.Before(at) })
		best, ok := demo.Lookup{}, false
		for _, j := range []int{i - 1, i} {
			if j < 0 || j >= len(measured) {
				continue
			}
			if d := measured[j].Received.Sub(at).Abs(); d < 100*time.Millisecond && (!ok || d < best.Received.Sub(at).Abs()) {
				best, ok = measured[j], true
			}
		}
		return best, ok
	}
	within10 := func(t *testing.T, what string, got time.Duration, l demo.Lookup) {
		t.Helper()
		if diff := (got - l.Latency()).Abs(); diff*10 > l.Latency() {
			t.Errorf("%s: Trawl recorded %s, the client measured %s (answer at %s): off by %s, more than 10 %%", what, got, l.Latency(), l.Received.Format(time.StampMilli), diff)
		}
	}

	t.Run("the slow upstream's latency in observe is within 10 % of what the client measured", func(t *testing.T) {
		if len(measured) == 0 {
			t.Fatalf("the client %s has no answered lookup of %s", demo.ID(slow), demo.SlowName)
		}
		var matched int
		var upstreamSeen bool
		for _, r := range observe(t, "--protocol", "dns", "--dns-query", "^"+regexp.QuoteMeta(strings.TrimSuffix(demo.SlowName, "."))+`\.?$`, "--since", "10m", "--last", "1000") {
			q, _, ok := r.dns()
			if !ok || q != demo.SlowName || !r.response() {
				continue
			}
			lat := time.Duration(r.Flow.L7.LatencyNs)
			if r.Flow.Source.id() == demo.ID(up) && r.Flow.Destination.id() == demo.ID(dnsPod) {
				// The cluster DNS's own exchange with its upstream.
				upstreamSeen = true
				if lat < demo.UpstreamDelay {
					t.Errorf("the upstream's answer to %s has latency %s, less than its %s delay", demo.ID(dnsPod), lat, demo.UpstreamDelay)
				}
				continue
			}
			if r.Flow.Destination.id() != demo.ID(slow) {
				continue
			}
			l, ok := nearest(r.Flow.Time)
			if !ok {
				continue // answered before the client's log or after this copy of it
			}
			matched++
			within10(t, "observe "+r.Flow.Time.Format(time.StampMilli), lat, l)
			if matched == 1 {
				t.Logf("%s: Trawl recorded %s, the client measured %s", demo.SlowName, lat, l.Latency())
			}
		}
		if matched == 0 {
			t.Errorf("no answer of %s to %s in observe matches a lookup the client measured (%d lookups)", demo.SlowName, demo.ID(slow), len(measured))
		}
		if !upstreamSeen {
			t.Errorf("no answer from %s to %s for %s: the forwarded exchange is missing", demo.ID(up), demo.ID(dnsPod), demo.SlowName)
		}
	})

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.CH.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	t.Run("ClickHouse flows hold the DNS columns and the slow answers' latency is the client's within 10 %", func(t *testing.T) {
		rows, err := conn.Query(ctx, `SELECT time, l7_latency_ns, dns_rcode, dns_ips, dns_ttl FROM trawl.flows
			WHERE l7_type = 'RESPONSE' AND dns_query = ? AND dst_namespace = ? AND dst_pod = ? AND src_pod = ?
			ORDER BY time`, demo.SlowName, slow.Namespace, slow.Name, dnsPod.Name)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var n, matched int
		for rows.Next() {
			var (
				at    time.Time
				lat   uint64
				rcode string
				ips   []string
				ttl   uint32
			)
			if err := rows.Scan(&at, &lat, &rcode, &ips, &ttl); err != nil {
				t.Fatal(err)
			}
			n++
			if rcode != "NOERROR" || !slices.Equal(ips, []string{demo.SlowAddr.String()}) || ttl == 0 {
				t.Errorf("row at %s: rcode %q, ips %v, ttl %d; want NOERROR, [%s] and a TTL", at, rcode, ips, ttl, demo.SlowAddr)
			}
			if l, ok := nearest(at); ok {
				matched++
				within10(t, "ClickHouse row "+at.Format(time.StampMilli), time.Duration(lat), l)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if n == 0 || matched == 0 {
			t.Errorf("%d response rows for %s to %s, %d matching a client lookup; want some of each", n, demo.SlowName, demo.ID(slow), matched)
		}
		for _, name := range stormNames {
			var nx uint64
			if err := conn.QueryRow(ctx, `SELECT count() FROM trawl.flows WHERE l7_type = 'RESPONSE' AND dns_query = ? AND dns_rcode = 'NXDOMAIN'
				AND dst_namespace = ? AND dst_workload = ?`, name, storm.Namespace, demo.StormApp).Scan(&nx); err != nil {
				t.Fatal(err)
			}
			if nx == 0 {
				t.Errorf("no NXDOMAIN response row for %s to workload %s/%s", name, storm.Namespace, demo.StormApp)
			}
		}
	})

	t.Run("the dns_1m rollup counts the storm per client workload, once per answer, and the slow name at the client's latency", func(t *testing.T) {
		var clientNX int
		var slowMs []float64
		for _, l := range s.DNSLookups() {
			if l.From == demo.ID(storm) && l.Rcode == "NXDOMAIN" {
				clientNX++
			}
			if l.From == demo.ID(slow) && l.Name == demo.SlowName && l.Rcode == "NOERROR" {
				slowMs = append(slowMs, float64(l.Latency())/float64(time.Millisecond))
			}
		}
		var nx, responses, names uint64
		if err := conn.QueryRow(ctx, `SELECT sumIf(responses, dns_rcode = 'NXDOMAIN'), sum(responses), uniqExactIf(dns_query, dns_rcode = 'NXDOMAIN')
			FROM trawl.dns_1m WHERE client_namespace = ? AND client_workload = ?`, storm.Namespace, demo.StormApp).Scan(&nx, &responses, &names); err != nil {
			t.Fatal(err)
		}
		if nx == 0 || names != uint64(len(stormNames)) || nx > uint64(clientNX) {
			t.Errorf("dns_1m for %s/%s: %d NXDOMAIN of %d responses over %d names; want some, over the %d search-list names, and at most the %d NXDOMAIN answers the client received",
				storm.Namespace, demo.StormApp, nx, responses, names, len(stormNames), clientNX)
		}
		var otherNX uint64
		if err := conn.QueryRow(ctx, `SELECT sumIf(responses, dns_rcode = 'NXDOMAIN') FROM trawl.dns_1m WHERE NOT (client_namespace = ? AND client_workload = ?)`,
			storm.Namespace, demo.StormApp).Scan(&otherNX); err != nil {
			t.Fatal(err)
		}
		if otherNX != 0 {
			t.Errorf("dns_1m counts %d NXDOMAIN answers to other clients; only %s/%s storms", otherNX, storm.Namespace, demo.StormApp)
		}
		var p50 float64
		var slowResponses uint64
		if err := conn.QueryRow(ctx, `SELECT sum(responses), quantilesTDigestMerge(0.5, 0.9, 0.99)(latency)[1] / 1e6 FROM trawl.dns_1m
			WHERE dns_query = ? AND client_namespace = ? AND client_workload = ?`, demo.SlowName, slow.Namespace, demo.SlowApp).Scan(&slowResponses, &p50); err != nil {
			t.Fatal(err)
		}
		if len(slowMs) == 0 || slowResponses == 0 {
			t.Fatalf("%d client lookups and %d dns_1m responses of %s", len(slowMs), slowResponses, demo.SlowName)
		}
		sort.Float64s(slowMs)
		median := slowMs[len(slowMs)/2]
		if d := p50 - median; d*10 > median || -d*10 > median {
			t.Errorf("dns_1m's median latency of %s is %.1f ms, the client's %.1f ms: more than 10 %% apart", demo.SlowName, p50, median)
		}
	})

	t.Run("the relay exports the DNS metrics and the storm makes the NXDOMAIN alert active for the frontend workload", func(t *testing.T) {
		exported := scrapeFamilies(t, ctx, s.RelayMetrics)
		for _, name := range []string{"hubble_dns_queries_total", "hubble_dns_responses_total", "trawl_dns_response_latency_seconds_bucket"} {
			if !exported[name] {
				t.Errorf("the relay does not export %s", name)
			}
		}
		if s.Prom == nil {
			t.Fatal("no Prometheus in the stack")
		}
		var last []demo.Alert
		deadline := time.Now().Add(150 * time.Second)
		for time.Now().Before(deadline) {
			s.Round(ctx)
			alerts, err := s.Prom.ActiveAlerts(ctx)
			if err != nil {
				t.Fatalf("prometheus alerts: %v", err)
			}
			last = alerts
			for _, a := range alerts {
				if a.Labels["alertname"] == "TrawlDNSNXDomainRatioHigh" && (a.State == "pending" || a.State == "firing") {
					if want := storm.Namespace + "/" + demo.StormApp; a.Labels["destination"] != want {
						t.Errorf("TrawlDNSNXDomainRatioHigh is active for %q, want %q", a.Labels["destination"], want)
					}
					return
				}
			}
			time.Sleep(2 * time.Second)
		}
		t.Errorf("TrawlDNSNXDomainRatioHigh never became active; active alerts: %+v", last)
	})
}
