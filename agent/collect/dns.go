package collect

import (
	"time"
	"unsafe"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/agent/datapath"
	"github.com/trawl-dev/trawl/agent/dns"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// DNS records (docs/dns.md): the flow program copies every DNS message on
// the configured ports to the dns_events ring buffer (agent/bpf/dns.h); each
// message that parses becomes one L7 record, REQUEST or RESPONSE, and a
// response matched to its query carries the time between the two packets.
//
// Fate: an L7 record waits like a FLOW_NEW event (fate.go) and carries the
// number of drops its flow had when the program saw the packet. It goes out
// when its fate is known: a query when its response is seen (or any packet
// back on its flow), any record when a drop of its flow is seen or after
// FateWait. It is DROPPED, with the flow's drop reason, when the flow counted
// more undelivered packets by then than before it; FORWARDED otherwise. A
// dropped message is never FORWARDED; a delivered one is DROPPED only if a
// later packet of the same flow (same ports: usually the same query) was
// dropped within FateWait. When the flow map had no entry for the message
// (map full), the verdict is VERDICT_UNKNOWN: its drops cannot be counted.

// dnsState is the collector's DNS part; built in New.
type dnsState struct {
	matcher *dns.Matcher
}

func (c *Collector) initDNS() {
	for _, o := range dns.Outcomes {
		c.m.DNSMessages.WithLabelValues(string(o))
	}
	for _, r := range dns.MatchResults {
		c.m.DNSMatching.WithLabelValues(string(r))
	}
	matching := make(map[dns.MatchResult]func(), len(dns.MatchResults))
	for _, r := range dns.MatchResults {
		matching[r] = c.m.DNSMatching.WithLabelValues(string(r)).Inc
	}
	c.dns.matcher = dns.NewMatcher(c.cfg.DNSMatchSize, uint64(c.cfg.DNSMatchExpiry), func(r dns.MatchResult) { matching[r]() })
}

// dnsEvent is one message's record with what its fate needs.
type dnsEvent struct {
	f           *flowv1.Flow
	key         bpf.FlowFlowKey
	response    bool
	dropsBefore uint64
	hasFlow     bool
}

// buildDNS parses the messages of one captured payload and builds their
// records (parse, match, record: what BenchmarkDNSRecords measures).
func (c *Collector) buildDNS(ev *bpf.FlowDnsEvent, ifaces map[int]datapath.Interface, clk clock, out []dnsEvent) []dnsEvent {
	n := min(int(ev.Len), len(ev.Data))
	pl := dns.Payload{Data: ev.Data[:n], Len: int(ev.MsgLen), TCP: ev.Tuple.Proto == l4.TCP}
	var m dns.Message
	var outcomes [2]dns.Outcome
	got := pl.Each(&m, outcomes[:0], func(m *dns.Message) {
		out = append(out, c.dnsRecord(ev, m, ifaces, clk))
	})
	for _, o := range got {
		c.m.DNSMessages.WithLabelValues(string(o)).Inc()
	}
	return out
}

// dnsKey is the matching key of a message: client and server whichever way
// the packet went.
func dnsKey(t *bpf.FlowFlowTuple, id uint16, response bool) dns.Key {
	k := dns.Key{Client: t.Saddr, Server: t.Daddr, ClientPort: t.Sport, ServerPort: t.Dport, Proto: t.Proto, Family: t.Family, ID: id}
	if response {
		k.Client, k.Server, k.ClientPort, k.ServerPort = t.Daddr, t.Saddr, t.Dport, t.Sport
	}
	return k
}

func (c *Collector) dnsRecord(ev *bpf.FlowDnsEvent, m *dns.Message, ifaces map[int]datapath.Interface, clk clock) dnsEvent {
	key := bpf.FlowFlowKey{Tuple: ev.Tuple}
	f := c.flowRecord(key, ev.Ifindex, ev.Hook, ifaces, 0)
	f.Type = flowv1.FlowType_L7
	f.EventKind = flowv1.EventKind_L7_EVENT
	ts := clk.ts(ev.TsNs)
	f.Time, f.FirstSeen, f.LastSeen = ts, ts, ts
	f.IsReply = wrapperspb.Bool(m.Response)
	d := &flowv1.DNS{
		Query:             m.Query,
		Qtypes:            append([]string(nil), m.Qtypes...),
		ObservationSource: f.ObservationPoint,
	}
	l7 := &flowv1.Layer7{Type: flowv1.L7FlowType_REQUEST, Record: &flowv1.Layer7_Dns{Dns: d}}
	k := dnsKey(&ev.Tuple, m.ID, m.Response)
	if m.Response && ev.Nat != 0 {
		// Conntrack translated the query (a Service's DNAT, a
		// masquerade): match with the query as the client sent it, which
		// is how the program saw it.
		k.Client, k.ClientPort = ev.QuerySaddr, ev.QuerySport
		k.Server, k.ServerPort = ev.QueryDaddr, ev.QueryDport
	}
	if m.Response {
		l7.Type = flowv1.L7FlowType_RESPONSE
		d.Rcode = m.Rcode
		d.Ttl = m.TTL
		if len(m.IPs) > 0 {
			d.Ips = append([]string(nil), m.IPs...)
		}
		if len(m.CNAMEs) > 0 {
			d.Cnames = append([]string(nil), m.CNAMEs...)
		}
		if len(m.RRTypes) > 0 {
			d.Rrtypes = append([]string(nil), m.RRTypes...)
		}
		if lat, ok := c.dns.matcher.Response(k, ev.TsNs); ok {
			l7.LatencyNs = lat
		}
	} else {
		c.dns.matcher.Query(k, ev.TsNs)
	}
	f.L7 = l7
	return dnsEvent{f: f, key: key, response: m.Response, dropsBefore: ev.DropsBefore, hasFlow: ev.HasFlow != 0}
}

func (c *Collector) handleDNSEvent(raw []byte) {
	if len(raw) < int(unsafe.Sizeof(bpf.FlowDnsEvent{})) {
		return
	}
	ev := (*bpf.FlowDnsEvent)(unsafe.Pointer(&raw[0]))
	clk, _ := newClock()
	var buf [1]dnsEvent
	deadline := time.Now().Add(c.cfg.FateWait)
	for _, e := range c.buildDNS(ev, c.dp.Interfaces(), clk, buf[:0]) {
		kind := "dns_request"
		if e.response {
			kind = "dns_response"
		}
		c.hold(e.key, &pendingEvent{f: e.f, kind: kind, l7: true, dropsBefore: e.dropsBefore, hasFlow: e.hasFlow, deadline: deadline})
	}
}
