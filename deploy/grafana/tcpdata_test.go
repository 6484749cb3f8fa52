package grafana_test

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// tcpRecord is one TCP record with TCP health as the agent sends it
// (docs/tcp-health.md): an AGGREGATE of one direction with the handshake
// halves, retransmits or a reset, or a CONNECT_TIMEOUT attempt.
type tcpRecord struct {
	ago                  time.Duration
	node, kind, dir      string
	reply                bool // the server -> client direction
	replyUnknown         bool // a direction whose first packet was a RST: is_reply unset
	srcIP, dstIP         string
	srcPort, dstPort     int
	srcNS, srcPod, srcWL string
	dstNS, dstPod, dstWL string
	dstLabels            []string
	synAck, ack          time.Duration
	retransmits          int
	resetBy              string
	packets              int
}

// Seeded TCP traffic, and what the TCP health panels must show for it over
// the last hour (all nodes and namespaces):
//
//   - shop/frontend -> web/api:8080 (node-a), 40, 20 and 5 minutes ago: one
//     connection each with a 1 ms handshake (0.6 + 0.4); 2 segments
//     retransmitted by the client 20 minutes ago; 12 minutes ago a
//     connection the client reset.
//   - web/api -> db/postgres:5432 (node-b), at the same times: one
//     connection each with a 40 ms handshake (30 + 10), and 5 segments
//     retransmitted by the server each time (on the reply direction's
//     record: 15 in all); 10 minutes ago a connection the server reset
//     (on the reply).
//   - web/api:9999 (node-a), 7 minutes ago: a closed port's RST answering
//     shop/frontend's SYN, reset by the server; the RST's direction starts
//     with the RST, so its record has no is_reply.
//   - shop/frontend -> 198.51.100.1:443 (reserved:world, node-a), 8 and 3
//     minutes ago: a connect timeout after 3 SYNs each.
func tcpTestRecords() []tcpRecord {
	frontend := tcpRecord{node: "node-a", kind: "AGGREGATE", dir: "EGRESS", srcIP: "10.1.0.5", dstIP: "10.2.0.7", srcPort: 43000, dstPort: 8080,
		srcNS: "shop", srcPod: "frontend-7d9f-abcde", srcWL: "frontend", dstNS: "web", dstPod: "api-5c6b-xyz12", dstWL: "api", packets: 12}
	api := tcpRecord{node: "node-b", kind: "AGGREGATE", dir: "EGRESS", srcIP: "10.2.0.7", dstIP: "10.3.0.9", srcPort: 53000, dstPort: 5432,
		srcNS: "web", srcPod: "api-5c6b-xyz12", srcWL: "api", dstNS: "db", dstPod: "postgres-0", dstWL: "postgres", packets: 20}
	reply := func(r tcpRecord) tcpRecord {
		r.reply, r.dir = true, "INGRESS"
		r.srcIP, r.dstIP, r.srcPort, r.dstPort = r.dstIP, r.srcIP, r.dstPort, r.srcPort
		r.srcNS, r.srcPod, r.srcWL, r.dstNS, r.dstPod, r.dstWL = r.dstNS, r.dstPod, r.dstWL, r.srcNS, r.srcPod, r.srcWL
		return r
	}
	var out []tcpRecord
	for i, ago := range []time.Duration{40 * time.Minute, 20 * time.Minute, 5 * time.Minute} {
		c := frontend
		c.ago, c.srcPort, c.synAck, c.ack = ago, 43000+i, 600*time.Microsecond, 400*time.Microsecond
		if ago == 20*time.Minute {
			c.retransmits = 2
		}
		out = append(out, c)
		s := api
		s.ago, s.srcPort, s.synAck, s.ack = ago, 53000+i, 30*time.Millisecond, 10*time.Millisecond
		out = append(out, s)
		r := reply(s)
		r.synAck, r.ack, r.retransmits = 0, 0, 5
		out = append(out, r)
	}
	clientReset := frontend
	clientReset.ago, clientReset.srcPort, clientReset.resetBy = 12*time.Minute, 43100, "CLIENT"
	serverReset := reply(api)
	serverReset.ago, serverReset.dstPort, serverReset.resetBy = 10*time.Minute, 53100, "SERVER"
	closedPort := reply(frontend)
	closedPort.ago, closedPort.replyUnknown, closedPort.srcPort, closedPort.dstPort, closedPort.resetBy, closedPort.packets = 7*time.Minute, true, 9999, 45000, "SERVER", 1
	out = append(out, clientReset, serverReset, closedPort)
	for i, ago := range []time.Duration{8 * time.Minute, 3 * time.Minute} {
		out = append(out, tcpRecord{ago: ago, node: "node-a", kind: "CONNECT_TIMEOUT", dir: "EGRESS", srcIP: "10.1.0.5", dstIP: "198.51.100.1",
			srcPort: 44000 + i, dstPort: 443, srcNS: "shop", srcPod: "frontend-7d9f-abcde", srcWL: "frontend", dstLabels: []string{"reserved:world"}, packets: 3})
	}
	return out
}

// insertTCPTestData writes the records into flows' TCP health columns; the
// tcp_1m rollup fills through the schema's materialized view.
func insertTCPTestData(ctx context.Context, exec execFunc, now time.Time) error {
	var values []string
	for _, r := range tcpTestRecords() {
		isReply := 1
		if r.reply {
			isReply = 2
		}
		if r.replyUnknown {
			isReply = 0
		}
		values = append(values, fmt.Sprintf("(fromUnixTimestamp64Nano(CAST(%d AS Int64)), %s, 'FORWARDED', %s, %s, 4, toIPv6(%s), toIPv6(%s), 6, %d, %d, %s, %s, %s, %s, %s, %s, %s, %d, %d, %d, 'tcx-egress', %d, %d, %d, %s)",
			now.Add(-r.ago).UnixNano(), q(r.node), q(r.kind), q(r.dir), q("::ffff:"+r.srcIP), q("::ffff:"+r.dstIP), r.srcPort, r.dstPort,
			q(r.srcNS), q(r.srcPod), q(r.srcWL), q(r.dstNS), q(r.dstPod), q(r.dstWL), arr(r.dstLabels), isReply, r.packets, 100*r.packets,
			r.synAck.Nanoseconds(), r.ack.Nanoseconds(), r.retransmits, q(r.resetBy)))
	}
	return exec(ctx, `INSERT INTO flows (time, node, verdict, event_kind, direction, ip_version, src_ip, dst_ip, proto, src_port, dst_port,
  src_namespace, src_pod, src_workload, dst_namespace, dst_pod, dst_workload, dst_labels, is_reply, packets, bytes, observation_point,
  tcp_syn_ack_ns, tcp_ack_ns, tcp_retransmits, tcp_reset_by) VALUES `+strings.Join(values, ",\n"))
}
