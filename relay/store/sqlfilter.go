package store

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/trawl-dev/trawl/internal/dnscodes"
	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// sqlBuilder collects bound parameters. Every value that came from a user
// becomes a {pN:Type} placeholder; only column names and constants written
// here are ever part of the SQL text.
type sqlBuilder struct {
	params clickhouse.Parameters
}

func newSQLBuilder() *sqlBuilder { return &sqlBuilder{params: clickhouse.Parameters{}} }

// paramEscaper escapes a value for ClickHouse's parameter parser, which
// reads values in the escaped (TSV-like) format: a raw backslash would start
// an escape sequence and a raw tab or newline would end the value.
var paramEscaper = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`, "\x00", `\0`)

func (b *sqlBuilder) bind(typ, v string) string {
	name := "p" + strconv.Itoa(len(b.params))
	b.params[name] = paramEscaper.Replace(v)
	return "{" + name + ":" + typ + "}"
}

func (b *sqlBuilder) str(v string) string { return b.bind("String", v) }

func or(parts []string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, " OR ") + ")"
}

func and(parts []string) string {
	if len(parts) == 0 {
		return "1"
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, " AND ") + ")"
}

func (b *sqlBuilder) inStrings(col string, vals []string) string {
	ps := make([]string, len(vals))
	for i, v := range vals {
		ps[i] = b.str(v)
	}
	return col + " IN (" + strings.Join(ps, ", ") + ")"
}

func inInts[T ~int32 | ~uint8](b *sqlBuilder, col, typ string, vals []T) string {
	ps := make([]string, len(vals))
	for i, v := range vals {
		ps[i] = b.bind(typ, strconv.FormatInt(int64(v), 10))
	}
	return col + " IN (" + strings.Join(ps, ", ") + ")"
}

// whereFlows translates a compiled filter to a condition on the flows table.
// It must select exactly what (*filter.Filter).MatchFlow selects; the
// equivalence test in this package checks it field by field.
func (b *sqlBuilder) whereFlows(f *filter.Filter) string {
	var parts []string
	if len(f.Allow) > 0 {
		var alts []string
		for _, c := range f.Allow {
			alts = append(alts, b.clause(c))
		}
		parts = append(parts, or(alts))
	}
	for _, c := range f.Deny {
		parts = append(parts, "NOT "+b.clause(c))
	}
	return and(parts)
}

// whereOther translates a filter for records that are not flows (lost
// events), following filter.MatchOther.
func (b *sqlBuilder) whereOther(f *filter.Filter, lost bool) string {
	var parts []string
	if len(f.Allow) > 0 {
		var alts []string
		for _, c := range f.Allow {
			if lost || !c.FlowSpecific() {
				alts = append(alts, b.globs("node", c.NodeName))
			}
		}
		if len(alts) == 0 {
			return "0"
		}
		parts = append(parts, or(alts))
	}
	for _, c := range f.Deny {
		if !c.FlowSpecific() {
			parts = append(parts, "NOT "+b.globs("node", c.NodeName))
		}
	}
	return and(parts)
}

func (b *sqlBuilder) globs(col string, gs []filter.Glob) string {
	if len(gs) == 0 {
		return "1"
	}
	var alts []string
	for i := range gs {
		if gs[i].Literal() {
			alts = append(alts, col+" = "+b.str(gs[i].Pattern))
		} else {
			alts = append(alts, col+" LIKE "+b.str(gs[i].LikePattern()))
		}
	}
	return or(alts)
}

// canonicalName is the SQL twin of filter.CanonicalName: one trailing dot
// dropped, ASCII letters in lower case (lower() leaves other bytes alone).
func canonicalName(x string) string {
	return "lower(if(endsWith(" + x + ", '.'), substring(" + x + ", 1, length(" + x + ") - 1), " + x + "))"
}

// fqdnGlobs matches the canonical form of the expression x against FQDN
// patterns (canonical already).
func (b *sqlBuilder) fqdnGlobs(x string, gs []filter.Glob) string {
	var alts []string
	for i := range gs {
		if gs[i].Literal() {
			alts = append(alts, canonicalName(x)+" = "+b.str(gs[i].Pattern))
		} else {
			alts = append(alts, canonicalName(x)+" LIKE "+b.str(gs[i].LikePattern()))
		}
	}
	return or(alts)
}

// fqdns is the SQL of a source_fqdn or destination_fqdn clause: a name in
// the names column, or the query of DNS records of l7Type (a query's name
// is a destination name, a response's a source name).
func (b *sqlBuilder) fqdns(namesCol, l7Type string, gs []filter.Glob) string {
	return "(arrayExists(x -> " + b.fqdnGlobs("x", gs) + ", " + namesCol + ") OR (l7_type = '" + l7Type + "' AND " + b.fqdnGlobs("dns_query", gs) + "))"
}

// handshakeRTT is the SQL twin of filter.HandshakeRTT, in nanoseconds.
const handshakeRTT = "(tcp_syn_ack_ns + tcp_ack_ns)"

// isDNS is the SQL twin of filter.IsDNS.
const isDNS = "l7_type != ''"

func addr16(a [16]byte) string { return netip.AddrFrom16(a).String() }

func (b *sqlBuilder) ips(col string, rs []filter.IPRange) string {
	var alts []string
	for _, r := range rs {
		if r.Lo == r.Hi {
			alts = append(alts, col+" = toIPv6("+b.str(addr16(r.Lo))+")")
		} else {
			alts = append(alts, col+" BETWEEN toIPv6("+b.str(addr16(r.Lo))+") AND toIPv6("+b.str(addr16(r.Hi))+")")
		}
	}
	return or(alts)
}

func (b *sqlBuilder) names(nsCol, nameCol string, ns []filter.NamePrefix) string {
	var alts []string
	for _, n := range ns {
		c := nsCol + " = " + b.str(n.Namespace)
		if n.Prefix != "" {
			c += " AND startsWith(" + nameCol + ", " + b.str(n.Prefix) + ")"
		}
		alts = append(alts, "("+c+")")
	}
	return or(alts)
}

func (b *sqlBuilder) workloads(p string, ws []filter.Workload) string {
	var alts []string
	for _, w := range ws {
		var first, more []string
		if w.Name != "" {
			v := b.str(w.Name)
			first = append(first, p+"_workload = "+v)
			more = append(more, "n = "+v)
		}
		if w.Kind != "" {
			v := b.str(w.Kind)
			first = append(first, p+"_workload_kind = "+v)
			more = append(more, "k = "+v)
		}
		alts = append(alts, "("+and(first)+" OR arrayExists((n, k) -> "+and(more)+", "+p+"_more_workload_names, "+p+"_more_workload_kinds))")
	}
	return or(alts)
}

// The SQL twin of filter.SplitLabel: source before a ':' that precedes any
// '=', key up to the first '=', value after it.
const (
	labelSourceSQL = `extract(l, '^([^:=]*):')`
	labelKeySQL    = `extract(l, '^(?:[^:=]*:)?([^=]*)')`
	labelValueSQL  = `extract(l, '(?s)^[^=]*=(.*)$')`
)

func (b *sqlBuilder) labels(col string, ss []filter.Selector) string {
	var alts []string
	for _, s := range ss {
		var reqs []string
		for _, r := range s.Requirements {
			reqs = append(reqs, b.requirement(col, r))
		}
		alts = append(alts, and(reqs))
	}
	return or(alts)
}

func (b *sqlBuilder) requirement(col string, r filter.Requirement) string {
	var found string
	if r.Source != "" && (r.Op == filter.OpIn || r.Op == filter.OpNotIn) {
		// Exact label strings: "source:key=value" (or "source:key" for an
		// empty value) are the only labels SplitLabel maps to these parts.
		var exact []string
		for _, v := range r.Values {
			exact = append(exact, b.str(r.Source+":"+r.Key+"="+v))
			if v == "" {
				exact = append(exact, b.str(r.Source+":"+r.Key))
			}
		}
		found = "hasAny(" + col + ", [" + strings.Join(exact, ", ") + "])"
	} else {
		conds := []string{labelKeySQL + " = " + b.str(r.Key)}
		if r.Source != "" {
			conds = append(conds, labelSourceSQL+" = "+b.str(r.Source))
		}
		if r.Op == filter.OpIn || r.Op == filter.OpNotIn {
			conds = append(conds, b.inStrings(labelValueSQL, r.Values))
		}
		found = "arrayExists(l -> " + strings.Join(conds, " AND ") + ", " + col + ")"
	}
	if r.Op == filter.OpNotIn || r.Op == filter.OpNotExists {
		return "NOT " + found
	}
	return found
}

func (b *sqlBuilder) ports(col string, ps []filter.PortRange) string {
	var alts []string
	for _, p := range ps {
		if p.Lo == p.Hi {
			alts = append(alts, col+" = "+b.bind("UInt16", strconv.Itoa(int(p.Lo))))
		} else {
			alts = append(alts, col+" BETWEEN "+b.bind("UInt16", strconv.Itoa(int(p.Lo)))+" AND "+b.bind("UInt16", strconv.Itoa(int(p.Hi))))
		}
	}
	return or(alts)
}

func (b *sqlBuilder) clause(c *filter.Clause) string {
	var p []string
	if len(c.UUID) > 0 {
		var alts []string
		for _, u := range c.UUID {
			if hi, lo, ok := ParseUUID(u); ok {
				alts = append(alts, "(id_hi = "+b.bind("UInt64", strconv.FormatUint(hi, 10))+" AND id_lo = "+b.bind("UInt64", strconv.FormatUint(lo, 10))+")")
			} else {
				alts = append(alts, "uuid_raw = "+b.str(u))
			}
		}
		p = append(p, or(alts))
	}
	if len(c.NodeName) > 0 {
		p = append(p, b.globs("node", c.NodeName))
	}
	if len(c.Verdict) > 0 {
		p = append(p, inInts(b, "toInt8(verdict)", "Int8", c.Verdict))
	}
	if len(c.EventKind) > 0 {
		p = append(p, inInts(b, "toInt8(event_kind)", "Int8", c.EventKind))
	}
	if len(c.TrafficDirection) > 0 {
		p = append(p, inInts(b, "toInt8(direction)", "Int8", c.TrafficDirection))
	}
	if len(c.IPVersion) > 0 {
		p = append(p, inInts(b, "ip_version", "UInt8", c.IPVersion))
	}
	if len(c.DropReasonDesc) > 0 {
		p = append(p, b.inStrings("drop_reason_desc", c.DropReasonDesc))
	}
	if len(c.DropReasonKernel) > 0 {
		p = append(p, b.inStrings("drop_reason_kernel", c.DropReasonKernel))
	}
	if len(c.DropClass) > 0 {
		p = append(p, b.inStrings("drop_class", c.DropClass))
	}
	if len(c.SourceIP) > 0 {
		p = append(p, b.ips("src_ip", c.SourceIP))
	}
	if len(c.DestinationIP) > 0 {
		p = append(p, b.ips("dst_ip", c.DestinationIP))
	}
	if len(c.SourcePod) > 0 {
		p = append(p, b.names("src_namespace", "src_pod", c.SourcePod))
	}
	if len(c.DestinationPod) > 0 {
		p = append(p, b.names("dst_namespace", "dst_pod", c.DestinationPod))
	}
	if len(c.SourceService) > 0 {
		p = append(p, b.names("src_service_namespace", "src_service", c.SourceService))
	}
	if len(c.DestinationService) > 0 {
		p = append(p, b.names("dst_service_namespace", "dst_service", c.DestinationService))
	}
	if len(c.SourceFQDN) > 0 {
		p = append(p, b.fqdns("src_names", "RESPONSE", c.SourceFQDN))
	}
	if len(c.DestinationFQDN) > 0 {
		p = append(p, b.fqdns("dst_names", "REQUEST", c.DestinationFQDN))
	}
	if len(c.Type) > 0 {
		p = append(p, inInts(b, "flow_type", "UInt8", c.Type))
	}
	if len(c.DNSQuery) > 0 {
		var alts []string
		for _, r := range c.DNSQuery {
			// ClickHouse's match() lets '.' match a newline unless told
			// otherwise; Go's regexp (Hubble's) does not.
			alts = append(alts, "match(dns_query, "+b.str("(?-s)"+r.Pattern)+")")
		}
		p = append(p, isDNS, or(alts))
	}
	if len(c.DNSRcode) > 0 {
		names := make([]string, len(c.DNSRcode))
		for i, code := range c.DNSRcode {
			names[i] = dnscodes.RcodeName(code)
		}
		p = append(p, "l7_type = 'RESPONSE'", b.inStrings("dns_rcode", names))
	}
	if c.MinHandshakeRTT >= 0 {
		// The twin of filter.HandshakeRTT: a record without a handshake
		// (both halves 0) never matches, whatever the minimum.
		p = append(p, handshakeRTT+" >= "+b.bind("UInt64", strconv.FormatInt(max(c.MinHandshakeRTT, 1), 10)))
	}
	if c.TCPRetransmits {
		p = append(p, "tcp_retransmits > 0")
	}
	if c.TCPReset {
		p = append(p, "tcp_reset_by IN ('CLIENT', 'SERVER')")
	}
	if c.TCPTimeout {
		p = append(p, fmt.Sprintf("toInt8(event_kind) = %d", flowv1.EventKind_CONNECT_TIMEOUT))
	}
	if len(c.SourceLabel) > 0 {
		p = append(p, b.labels("src_labels", c.SourceLabel))
	}
	if len(c.DestinationLabel) > 0 {
		p = append(p, b.labels("dst_labels", c.DestinationLabel))
	}
	if len(c.SourceWorkload) > 0 {
		p = append(p, b.workloads("src", c.SourceWorkload))
	}
	if len(c.DestinationWorkload) > 0 {
		p = append(p, b.workloads("dst", c.DestinationWorkload))
	}
	if len(c.Interface) > 0 {
		var alts []string
		for _, i := range c.Interface {
			var q []string
			if i.Index != 0 {
				q = append(q, "iface_index = "+b.bind("UInt32", strconv.FormatUint(uint64(i.Index), 10)))
			}
			if i.Name != "" {
				q = append(q, "iface_name = "+b.str(i.Name))
			}
			alts = append(alts, and(q))
		}
		p = append(p, or(alts))
	}
	switch {
	case len(c.Protocol) > 0 && c.ProtocolDNS:
		p = append(p, "("+inInts(b, "proto", "UInt8", c.Protocol)+" OR "+isDNS+")")
	case len(c.Protocol) > 0:
		p = append(p, inInts(b, "proto", "UInt8", c.Protocol))
	case c.ProtocolDNS:
		p = append(p, isDNS)
	}
	if len(c.SourcePort) > 0 || len(c.DestinationPort) > 0 {
		p = append(p, fmt.Sprintf("proto IN (%d, %d, %d)", l4.TCP, l4.UDP, l4.SCTP))
		if len(c.SourcePort) > 0 {
			p = append(p, b.ports("src_port", c.SourcePort))
		}
		if len(c.DestinationPort) > 0 {
			p = append(p, b.ports("dst_port", c.DestinationPort))
		}
	}
	if len(c.Reply) > 0 {
		var vals []uint8
		for _, r := range c.Reply {
			if r {
				vals = append(vals, 2)
			} else {
				vals = append(vals, 1)
			}
		}
		p = append(p, inInts(b, "is_reply", "UInt8", vals))
	}
	if len(c.TCPFlags) > 0 {
		var alts []string
		for _, m := range c.TCPFlags {
			v := b.bind("UInt16", strconv.Itoa(int(m)))
			alts = append(alts, "bitAnd(tcp_flags, "+v+") = "+v)
		}
		p = append(p, fmt.Sprintf("proto = %d", l4.TCP), or(alts))
	}
	if len(c.Policy) > 0 {
		var alts []string
		for _, r := range c.Policy {
			if r.Name == "" {
				alts = append(alts, "arrayExists(x -> startsWith(x, "+b.str(r.Namespace+"/")+"), arrayConcat(allowed_by, denied_by))")
			} else {
				v := b.str(r.Namespace + "/" + r.Name)
				alts = append(alts, "(has(allowed_by, "+v+") OR has(denied_by, "+v+"))")
			}
		}
		p = append(p, or(alts))
	}
	return and(p)
}
