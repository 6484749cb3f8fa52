package grafana_test

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// dnsExchange is one DNS query and its response as the agent records them
// (docs/dns.md): a REQUEST record from the client to the server and a
// RESPONSE record back, with the rcode and the matched latency.
type dnsExchange struct {
	ago                 time.Duration // of the query
	node                string
	clientIP, clientNS  string
	clientPod, clientWL string
	query, rcode        string
	latency             time.Duration
	answer              string // A record of a NOERROR answer
}

// The DNS server every test client asks.
const (
	dnsServerIP  = "10.4.0.2"
	dnsServerNS  = "kube-system"
	dnsServerPod = "coredns-6f7b-k2p4q"
	dnsServerWL  = "coredns"
)

// Seeded DNS traffic, and the numbers the DNS panels must show for it over
// the last hour (all nodes and namespaces):
//
//   - shop/frontend (node-a), at 40, 20 and 5 minutes ago: api.web.svc.cluster.local.
//     twice (NOERROR, 2 ms) and a misspelt "apii.web" through its whole
//     ndots:5 search list, four names, each NXDOMAIN (1 ms): 18 queries,
//     12 NXDOMAIN.
//   - web/api (node-b), at the same times: slow.partner.example. (NOERROR,
//     200 ms) and postgres.db.svc.cluster.local. (NOERROR, 3 ms); 10 minutes
//     ago broken.partner.example. (SERVFAIL, 50 ms): 7 queries.
//   - db/postgres (node-b), 15 minutes ago: backup.db.svc.cluster.local.
//     (NOERROR, 1 ms).
//
// 26 queries and 26 responses in all: 12 NXDOMAIN, 1 SERVFAIL.
func dnsTestExchanges() []dnsExchange {
	frontend := dnsExchange{node: "node-a", clientIP: "10.1.0.5", clientNS: "shop", clientPod: "frontend-7d9f-abcde", clientWL: "frontend"}
	api := dnsExchange{node: "node-b", clientIP: "10.2.0.7", clientNS: "web", clientPod: "api-5c6b-xyz12", clientWL: "api"}
	postgres := dnsExchange{node: "node-b", clientIP: "10.3.0.9", clientNS: "db", clientPod: "postgres-0", clientWL: "postgres"}
	with := func(base dnsExchange, ago time.Duration, query, rcode string, latency time.Duration, answer string) dnsExchange {
		e := base
		e.ago, e.query, e.rcode, e.latency, e.answer = ago, query, rcode, latency, answer
		return e
	}
	var out []dnsExchange
	for _, ago := range []time.Duration{40 * time.Minute, 20 * time.Minute, 5 * time.Minute} {
		for i := range 2 {
			out = append(out, with(frontend, ago+time.Duration(i)*time.Second, "api.web.svc.cluster.local.", "NOERROR", 2*time.Millisecond, "10.2.0.7"))
		}
		for i, q := range []string{"apii.web.shop.svc.cluster.local.", "apii.web.svc.cluster.local.", "apii.web.cluster.local.", "apii.web."} {
			out = append(out, with(frontend, ago-time.Duration(10+10*i)*time.Millisecond, q, "NXDOMAIN", time.Millisecond, ""))
		}
		out = append(out, with(api, ago, "slow.partner.example.", "NOERROR", 200*time.Millisecond, "198.51.100.20"))
		out = append(out, with(api, ago+time.Second, "postgres.db.svc.cluster.local.", "NOERROR", 3*time.Millisecond, "10.3.0.9"))
	}
	out = append(out, with(api, 10*time.Minute, "broken.partner.example.", "SERVFAIL", 50*time.Millisecond, ""))
	out = append(out, with(postgres, 15*time.Minute, "backup.db.svc.cluster.local.", "NOERROR", time.Millisecond, "10.3.0.21"))
	return out
}

// insertDNSTestData writes the exchanges as the agent's L7 records into
// flows; the dns_1m rollup fills through the schema's materialized view.
func insertDNSTestData(ctx context.Context, exec execFunc, now time.Time) error {
	var values []string
	for i, e := range dnsTestExchanges() {
		sent := now.Add(-e.ago)
		port := 40000 + i
		var ips []string
		var ttl int
		if e.answer != "" {
			ips, ttl = []string{e.answer}, 30
		}
		// The query: client -> server, egress of the client's pod.
		values = append(values, fmt.Sprintf("(fromUnixTimestamp64Nano(CAST(%d AS Int64)), %s, 'FORWARDED', 'L7_EVENT', 'EGRESS', 4, toIPv6(%s), toIPv6(%s), 17, %d, 53, %s, %s, %s, %s, %s, %s, 1, 1, 80, 'tcx-egress', 'REQUEST', 0, %s, '', ['A'], [], [], [], 0)",
			sent.UnixNano(), q(e.node), q("::ffff:"+e.clientIP), q("::ffff:"+dnsServerIP), port,
			q(e.clientNS), q(e.clientPod), q(e.clientWL), q(dnsServerNS), q(dnsServerPod), q(dnsServerWL), q(e.query)))
		// The response: server -> client, ingress of the client's pod.
		rrtypes := []string{}
		if e.answer != "" {
			rrtypes = []string{"A"}
		}
		values = append(values, fmt.Sprintf("(fromUnixTimestamp64Nano(CAST(%d AS Int64)), %s, 'FORWARDED', 'L7_EVENT', 'INGRESS', 4, toIPv6(%s), toIPv6(%s), 17, 53, %d, %s, %s, %s, %s, %s, %s, 2, 1, 96, 'tcx-ingress', 'RESPONSE', %d, %s, %s, ['A'], %s, %s, [], %d)",
			sent.Add(e.latency).UnixNano(), q(e.node), q("::ffff:"+dnsServerIP), q("::ffff:"+e.clientIP), port,
			q(dnsServerNS), q(dnsServerPod), q(dnsServerWL), q(e.clientNS), q(e.clientPod), q(e.clientWL),
			e.latency.Nanoseconds(), q(e.query), q(e.rcode), arr(rrtypes), arr(ips), ttl))
	}
	return exec(ctx, `INSERT INTO flows (time, node, verdict, event_kind, direction, ip_version, src_ip, dst_ip, proto, src_port, dst_port,
  src_namespace, src_pod, src_workload, dst_namespace, dst_pod, dst_workload, is_reply, packets, bytes, observation_point,
  l7_type, l7_latency_ns, dns_query, dns_rcode, dns_qtypes, dns_rrtypes, dns_ips, dns_cnames, dns_ttl) VALUES `+strings.Join(values, ",\n"))
}
