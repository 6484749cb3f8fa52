package output

import (
	"strconv"
	"strings"
	"time"

	"github.com/trawl-dev/trawl/internal/dnscodes"
	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/filter"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Pieces of a flow as the human formats show them. Each appends to a byte
// slice so the compact printer formats without allocating per flow.

func ports(f *flowv1.Flow) (src, dst uint32) {
	l4 := f.GetL4()
	switch {
	case l4.GetTCP() != nil:
		return l4.GetTCP().GetSourcePort(), l4.GetTCP().GetDestinationPort()
	case l4.GetUDP() != nil:
		return l4.GetUDP().GetSourcePort(), l4.GetUDP().GetDestinationPort()
	case l4.GetSCTP() != nil:
		return l4.GetSCTP().GetSourcePort(), l4.GetSCTP().GetDestinationPort()
	}
	return 0, 0
}

// appendHost writes an endpoint as Hubble does: "namespace/pod" (or the
// service, or DNS names) when translation is on and they are known, else the
// address; then ":port" ("[addr]:port" for IPv6 addresses).
func (p *Printer) appendHost(b []byte, ip string, port uint32, ep *flowv1.Endpoint, svc *flowv1.Service, names []string) []byte {
	b = append(b, p.col.host...)
	bracket := false
	switch {
	case p.opts.IPTranslation && ep.GetPodName() != "":
		if ns := ep.GetNamespace(); ns != "" {
			b = append(b, ns...)
			b = append(b, '/')
		}
		b = append(b, ep.GetPodName()...)
	case p.opts.IPTranslation && svc.GetName() != "":
		if ns := svc.GetNamespace(); ns != "" {
			b = append(b, ns...)
			b = append(b, '/')
		}
		b = append(b, svc.GetName()...)
	case p.opts.IPTranslation && len(names) > 0:
		for i, n := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, n...)
		}
	case ip == "":
		b = append(b, "N/A"...)
	default:
		bracket = port != 0 && strings.IndexByte(ip, ':') >= 0
		if bracket {
			b = append(b, '[')
		}
		b = append(b, ip...)
		if bracket {
			b = append(b, ']')
		}
	}
	b = append(b, p.col.reset...)
	if port != 0 {
		b = append(b, ':')
		b = append(b, p.col.port...)
		b = strconv.AppendUint(b, uint64(port), 10)
		b = append(b, p.col.reset...)
	}
	return b
}

// appendIdentity writes Hubble's "(ID:n)" when the endpoint has a numeric
// identity, or the reserved name "(world)", "(host)", ... of endpoints outside
// any pod. Trawl has no security identities for pods, so pods get nothing.
func (p *Printer) appendIdentity(b []byte, ep *flowv1.Endpoint) []byte {
	r := reserved(ep)
	if id := ep.GetIdentity(); id != 0 && (r == "" || p.opts.Numeric) {
		b = append(b, " ("...)
		b = append(b, p.col.identity...)
		b = append(b, "ID:"...)
		b = strconv.AppendUint(b, uint64(id), 10)
		b = append(b, p.col.reset...)
		return append(b, ')')
	}
	if r != "" {
		b = append(b, " ("...)
		b = append(b, p.col.identity...)
		b = append(b, r...)
		b = append(b, p.col.reset...)
		return append(b, ')')
	}
	return b
}

// reserved returns the name of the first "reserved:" label.
func reserved(ep *flowv1.Endpoint) string {
	for _, l := range ep.GetLabels() {
		if rest, ok := strings.CutPrefix(l, "reserved:"); ok {
			if k, _, ok := strings.Cut(rest, "="); ok {
				return k
			}
			return rest
		}
	}
	return ""
}

// typeName is the TYPE column: the record kind, or for drops the reason
// (where Hubble shows its drop reason text), or the policy-verdict direction;
// L7 records are Hubble's "dns-request", "dns-response" (without Hubble's
// "proxy": Trawl reads DNS in the datapath).
func typeName(f *flowv1.Flow) string {
	if l7 := f.GetL7(); l7 != nil {
		return l7TypeName(l7)
	}
	switch f.GetEventKind() {
	case flowv1.EventKind_AGGREGATE:
		return "flow"
	case flowv1.EventKind_FLOW_NEW:
		return "new"
	case flowv1.EventKind_FLOW_CLOSE:
		return "close"
	case flowv1.EventKind_CONNECT_TIMEOUT:
		return "connect-timeout"
	case flowv1.EventKind_DROP:
		if r := f.GetDropReasonDesc(); r != "" {
			return r
		}
		if r := f.GetDropReasonKernel(); r != "" {
			return r
		}
		return "drop"
	case flowv1.EventKind_POLICY_VERDICT:
		switch f.GetTrafficDirection() {
		case flowv1.TrafficDirection_INGRESS:
			return "policy-verdict:INGRESS"
		case flowv1.TrafficDirection_EGRESS:
			return "policy-verdict:EGRESS"
		}
		return "policy-verdict"
	}
	if f.GetVerdict() == flowv1.Verdict_DROPPED && f.GetDropReasonDesc() != "" {
		return f.GetDropReasonDesc()
	}
	return "UNKNOWN"
}

func l7TypeName(l7 *flowv1.Layer7) string {
	dns := l7.GetDns() != nil
	switch l7.GetType() {
	case flowv1.L7FlowType_REQUEST:
		if dns {
			return "dns-request"
		}
		return "l7-request"
	case flowv1.L7FlowType_RESPONSE:
		if dns {
			return "dns-response"
		}
		return "l7-response"
	case flowv1.L7FlowType_SAMPLE:
		if dns {
			return "dns-sample"
		}
		return "l7-sample"
	}
	if dns {
		return "dns"
	}
	return "l7"
}

// classTokens are the drop classes as they appear in reason names
// ("no-socket" in NO_SOCKET, "policy" in POLICY_DENIED).
var classTokens = func() map[string]string {
	m := map[string]string{}
	for _, c := range dropclass.All {
		m[string(c)] = strings.ToUpper(strings.ReplaceAll(string(c), "-", "_"))
	}
	return m
}()

// classNote is the drop class to show beside a drop's reason in compact
// and table output, where it helps: not when the reason's name says it
// already (POLICY_DENIED, NO_SOCKET), and not on policy verdicts.
func classNote(f *flowv1.Flow, reason string) string {
	c := f.GetDropClass()
	if c == "" || f.GetVerdict() != flowv1.Verdict_DROPPED || f.GetEventKind() == flowv1.EventKind_POLICY_VERDICT {
		return ""
	}
	if tok, ok := classTokens[c]; ok && strings.Contains(reason, tok) {
		return ""
	}
	return c
}

// appendType writes the TYPE of compact and table output: typeName, and
// the drop class in parentheses where it helps (classNote).
func appendType(b []byte, f *flowv1.Flow) []byte {
	t := typeName(f)
	b = append(b, t...)
	if c := classNote(f, t); c != "" {
		b = append(b, " ("...)
		b = append(b, c...)
		b = append(b, ')')
	}
	return b
}

// appendVerdict writes the verdict (ALLOWED/DENIED for policy verdicts, as
// Hubble) and, with --print-policy-names, the policies behind it.
func (p *Printer) appendVerdict(b []byte, f *flowv1.Flow) []byte {
	v := f.GetVerdict()
	pv := f.GetEventKind() == flowv1.EventKind_POLICY_VERDICT
	var msg string
	var color string
	var allowed bool
	switch v {
	case flowv1.Verdict_FORWARDED, flowv1.Verdict_REDIRECTED:
		msg, color, allowed = v.String(), p.col.green, true
		if pv {
			msg = "ALLOWED"
		}
	case flowv1.Verdict_DROPPED, flowv1.Verdict_ERROR:
		msg, color = v.String(), p.col.red
		if pv {
			msg = "DENIED"
		}
	case flowv1.Verdict_AUDIT:
		msg, color = v.String(), p.col.yellow
		if pv {
			msg = "AUDITED"
		}
	default:
		msg = v.String()
	}
	b = append(b, color...)
	b = append(b, msg...)
	if p.opts.PolicyNames {
		b = appendPolicies(b, policiesFor(f, allowed))
	}
	return append(b, p.col.reset...)
}

// policiesFor picks the policies that explain the verdict. A pod-to-pod
// record carries both sides' verdicts (the source's egress, the
// destination's ingress), and either side may be the one that decided, so
// both are shown, egress first, whatever the record's direction.
func policiesFor(f *flowv1.Flow, allowed bool) []*flowv1.Policy {
	in, out := f.GetIngressDeniedBy(), f.GetEgressDeniedBy()
	if allowed {
		in, out = f.GetIngressAllowedBy(), f.GetEgressAllowedBy()
	}
	if len(out) == 0 {
		return in
	}
	if len(in) == 0 {
		return out
	}
	return append(append([]*flowv1.Policy(nil), out...), in...)
}

func appendPolicies(b []byte, ps []*flowv1.Policy) []byte {
	for i, pol := range ps {
		if i == 0 {
			b = append(b, " BY "...)
		} else {
			b = append(b, ", "...)
		}
		b = appendPolicyName(b, pol)
		kind := pol.GetKind()
		if kind == "" {
			kind = "NetworkPolicy"
		}
		b = append(b, " ("...)
		b = append(b, kind...)
		b = append(b, ')')
	}
	return b
}

func appendPolicyName(b []byte, pol *flowv1.Policy) []byte {
	if ns := pol.GetNamespace(); ns != "" {
		b = append(b, ns...)
		b = append(b, '/')
	}
	return append(b, pol.GetName()...)
}

// appendSummary writes the summary Hubble shows in parentheses: for L4
// "TCP Flags: SYN, ACK", "UDP", "ICMPv4 EchoRequest"; for DNS records
// Hubble's DNS summary (appendDNSSummary).
func appendSummary(b []byte, f *flowv1.Flow) []byte {
	if f.GetL7().GetDns() != nil {
		return appendDNSSummary(b, f.GetL7())
	}
	l4 := f.GetL4()
	switch {
	case l4.GetTCP() != nil:
		fl := l4.GetTCP().GetFlags()
		n := 0
		add := func(set bool, name string) {
			if !set {
				return
			}
			if n == 0 {
				b = append(b, "TCP Flags: "...)
			} else {
				b = append(b, ", "...)
			}
			b = append(b, name...)
			n++
		}
		add(fl.GetSYN(), "SYN")
		add(fl.GetACK(), "ACK")
		add(fl.GetFIN(), "FIN")
		add(fl.GetRST(), "RST")
		add(fl.GetPSH(), "PSH")
		add(fl.GetURG(), "URG")
		add(fl.GetECE(), "ECE")
		add(fl.GetCWR(), "CWR")
		add(fl.GetNS(), "NS")
		if n == 0 {
			b = append(b, "TCP"...)
		}
	case l4.GetUDP() != nil:
		b = append(b, "UDP"...)
	case l4.GetSCTP() != nil:
		b = append(b, "SCTP"...)
	case l4.GetICMPv4() != nil:
		b = append(b, "ICMPv4 "...)
		b = appendICMP(b, icmpv4Names, l4.GetICMPv4().GetType(), l4.GetICMPv4().GetCode())
	case l4.GetICMPv6() != nil:
		b = append(b, "ICMPv6 "...)
		b = appendICMP(b, icmpv6Names, l4.GetICMPv6().GetType(), l4.GetICMPv6().GetCode())
	default:
		if ip := f.GetIP(); ip != nil {
			b = append(b, ip.GetIpVersion().String()...)
		} else {
			b = append(b, "N/A"...)
		}
	}
	return b
}

// appendDNSSummary writes Hubble's DNS summary in Trawl's words (the
// answer is read off the wire, so its source is "Query", never "Proxy"):
//
//	DNS Query example.com. A
//	DNS Answer "93.184.216.34" TTL: 300 (Query example.com. A); latency 1.25ms
//	DNS Answer RCode: Non-Existent Domain TTL: 0 (Query nope.example. A)
//
// An answer of a NOERROR response lists its addresses, then its CNAMEs;
// the latency is shown when the response was matched to its query.
func appendDNSSummary(b []byte, l7 *flowv1.Layer7) []byte {
	d := l7.GetDns()
	appendQuery := func(b []byte) []byte {
		b = append(b, d.GetQuery()...)
		for i, t := range d.GetQtypes() {
			if i == 0 {
				b = append(b, ' ')
			} else {
				b = append(b, ',')
			}
			b = append(b, t...)
		}
		return b
	}
	if l7.GetType() != flowv1.L7FlowType_RESPONSE {
		b = append(b, "DNS Query "...)
		return appendQuery(b)
	}
	b = append(b, "DNS Answer "...)
	if rc := d.GetRcode(); rc != dnscodes.NoError {
		b = append(b, "RCode: "...)
		b = append(b, dnscodes.HubbleRcode(rc)...)
		b = append(b, ' ')
	} else {
		if ips := d.GetIps(); len(ips) > 0 {
			b = appendQuotedList(b, ips)
			b = append(b, ' ')
		}
		if cn := d.GetCnames(); len(cn) > 0 {
			b = append(b, "CNAMEs: "...)
			b = appendQuotedList(b, cn)
			b = append(b, ' ')
		}
	}
	b = append(b, "TTL: "...)
	b = strconv.AppendUint(b, uint64(d.GetTtl()), 10)
	b = append(b, " (Query "...)
	b = appendQuery(b)
	b = append(b, ')')
	if ns := l7.GetLatencyNs(); ns > 0 {
		b = append(b, "; latency "...)
		b = appendLatency(b, time.Duration(ns))
	}
	return b
}

// appendQuotedList writes values joined by commas as one quoted string.
func appendQuotedList(b []byte, vs []string) []byte {
	b = append(b, '"')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return append(b, '"')
}

// appendTCPHealth writes what the record says about its connection's
// health as a group after the summary: " (RTT 0.4ms, retrans 3, RST by
// server, zero-window 2)" with the parts it has, for a connection attempt
// that timed out " (no answer in 3s)"; nothing when it says nothing.
func appendTCPHealth(b []byte, f *flowv1.Flow) []byte {
	n := 0
	if f.GetEventKind() == flowv1.EventKind_CONNECT_TIMEOUT {
		b, n = groupSep(b, n), n+1
		b = append(b, "no answer"...)
		if d := waited(f); d > 0 {
			b = append(b, " in "...)
			b = appendLatency(b, d)
		}
	}
	h := f.GetTcpHealth()
	if rtt := filter.HandshakeRTT(h); rtt > 0 {
		b, n = groupSep(b, n), n+1
		b = append(b, "RTT "...)
		b = appendRTT(b, rtt)
	}
	if r := h.GetRetransmits(); r > 0 {
		b, n = groupSep(b, n), n+1
		b = append(b, "retrans "...)
		b = strconv.AppendUint(b, uint64(r), 10)
	}
	if side := h.GetResetBy(); filter.IsReset(side) {
		b, n = groupSep(b, n), n+1
		b = append(b, "RST by "...)
		b = append(b, sideName(side)...)
	}
	if z := h.GetZeroWindows(); z > 0 {
		b, n = groupSep(b, n), n+1
		b = append(b, "zero-window "...)
		b = strconv.AppendUint(b, uint64(z), 10)
	}
	if n > 0 {
		b = append(b, ')')
	}
	return b
}

func groupSep(b []byte, n int) []byte {
	if n == 0 {
		return append(b, " ("...)
	}
	return append(b, ", "...)
}

// sideName is a side of a connection in the outputs' words.
func sideName(s flowv1.TCPSide) string {
	switch s {
	case flowv1.TCPSide_CLIENT:
		return "client"
	case flowv1.TCPSide_SERVER:
		return "server"
	}
	return "unknown"
}

// waited is how long a connection attempt went unanswered: from its first
// SYN (first_seen) to the record (time, at the timeout); 0 when unknown.
func waited(f *flowv1.Flow) time.Duration {
	first, at := f.GetFirstSeen(), f.GetTime()
	if !first.IsValid() || !at.IsValid() {
		return 0
	}
	return at.AsTime().Sub(first.AsTime())
}

// RTT is a round-trip time as the outputs show it: milliseconds under a
// second, as ping does ("0.4ms", "21ms", "1.25ms"), else seconds ("1.5s").
func RTT(d time.Duration) string { return string(appendRTT(nil, d)) }

func appendRTT(b []byte, d time.Duration) []byte {
	if d < time.Microsecond || d >= time.Second {
		return appendLatency(b, d)
	}
	b = strconv.AppendFloat(b, float64(d.Round(time.Microsecond)/time.Microsecond)/1e3, 'f', -1, 64)
	return append(b, "ms"...)
}

// Latency is a DNS latency as the outputs show it ("812µs", "1.25ms", "2.5s").
func Latency(d time.Duration) string { return string(appendLatency(nil, d)) }

// appendLatency writes a duration to three significant places at most:
// "812µs", "1.25ms", "2.5s" (as time.Duration prints, without allocating).
func appendLatency(b []byte, d time.Duration) []byte {
	switch {
	case d < time.Microsecond:
		b = strconv.AppendInt(b, int64(d), 10)
		return append(b, "ns"...)
	case d < time.Millisecond:
		b = strconv.AppendInt(b, int64(d.Round(time.Microsecond)/time.Microsecond), 10)
		return append(b, "µs"...)
	case d < time.Second:
		b = strconv.AppendFloat(b, float64(d.Round(time.Microsecond)/time.Microsecond)/1e3, 'f', -1, 64)
		return append(b, "ms"...)
	}
	b = strconv.AppendFloat(b, float64(d.Round(time.Millisecond)/time.Millisecond)/1e3, 'f', -1, 64)
	return append(b, 's')
}

var icmpv4Names = map[uint32]string{
	0: "EchoReply", 3: "DestinationUnreachable", 5: "Redirect", 8: "EchoRequest",
	11: "TimeExceeded", 12: "ParameterProblem", 13: "TimestampRequest", 14: "TimestampReply",
}

var icmpv6Names = map[uint32]string{
	1: "DestinationUnreachable", 2: "PacketTooBig", 3: "TimeExceeded", 4: "ParameterProblem",
	128: "EchoRequest", 129: "EchoReply", 133: "RouterSolicitation", 134: "RouterAdvertisement",
	135: "NeighborSolicitation", 136: "NeighborAdvertisement",
}

func appendICMP(b []byte, names map[uint32]string, typ, code uint32) []byte {
	if n, ok := names[typ]; ok {
		b = append(b, n...)
	} else {
		b = append(b, "Type"...)
		b = strconv.AppendUint(b, uint64(typ), 10)
	}
	if code != 0 {
		b = append(b, " Code"...)
		b = strconv.AppendUint(b, uint64(code), 10)
	}
	return b
}

// appendCounts writes the record's totals, Trawl's addition to the line.
func appendCounts(b []byte, f *flowv1.Flow) []byte {
	pk, by := f.GetPackets(), f.GetBytes()
	if pk == 0 && by == 0 {
		return b
	}
	b = strconv.AppendUint(b, pk, 10)
	if pk == 1 {
		b = append(b, " pkt "...)
	} else {
		b = append(b, " pkts "...)
	}
	b = strconv.AppendUint(b, by, 10)
	return append(b, " B"...)
}
