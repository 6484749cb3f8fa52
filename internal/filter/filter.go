// Package filter is Trawl's one implementation of Hubble's FlowFilter
// semantics. Compile validates and precompiles allow/deny lists once; Match
// then decides per record without allocating, for the live hub. The same
// compiled clauses are exported so relay/store can translate them to SQL with
// exactly the same meaning (a test there proves the two agree).
//
// Semantics, as Hubble's:
//   - a record is selected when it matches any allow filter (or the allow list
//     is empty) and no deny filter;
//   - within one FlowFilter every set field must match (AND); within one
//     repeated field any value may match (OR); an empty FlowFilter matches all.
//
// DNS (docs/dns.md): a DNS record is an L7 record with l7.dns. protocol
// "dns" selects them (OR-ed with the L4 protocols, which they also have);
// dns_query is an RE2 expression on the query as recorded ("example.com.");
// dns_rcode selects responses by code; source_fqdn/destination_fqdn match
// source_names/destination_names and, on DNS records, the queried name: it is
// a destination name of a query and a source name of a response. FQDN
// patterns and names are compared canonical (see CanonicalName).
//
// TCP health (docs/tcp-health.md): min_handshake_rtt selects records whose
// handshake RTT (tcp_health.handshake_syn_ack + handshake_ack) is at least
// the value; a record has a handshake when that sum is positive, and records
// without one never match (so a zero minimum selects the records that carry a
// handshake). tcp_retransmits selects records with retransmitted segments,
// tcp_reset records whose reset_by names a side (CLIENT or SERVER),
// tcp_timeout CONNECT_TIMEOUT records. False booleans select nothing extra:
// `--not` (the deny list) expresses "without".
//
// Records that are not flows (lost_events, node_status, conntrack) carry no
// endpoints, ports or verdicts, so flow-specific fields cannot be judged on
// them. The rule:
//   - lost_events pass an allow filter whose node_name (if set) matches, whatever
//     flow-specific fields it sets: lost data is never hidden by a flow filter
//     (`--from-pod x` still shows that events were lost on the node);
//   - node_status and conntrack pass an allow filter only when it sets no
//     flow-specific field and its node_name (if set) matches;
//   - any non-flow record is denied by a deny filter only when that filter sets
//     no flow-specific field and its node_name (if set) matches.
package filter

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trawl-dev/trawl/internal/dnscodes"
	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Filter is a compiled allow/deny pair. It is immutable and safe for
// concurrent use.
type Filter struct {
	Allow []*Clause
	Deny  []*Clause
}

// Clause is one compiled FlowFilter. Empty slices mean "not set".
type Clause struct {
	UUID                                []string
	SourceIP, DestinationIP             []IPRange
	SourcePod, DestinationPod           []NamePrefix
	SourceFQDN, DestinationFQDN         []Glob
	SourceLabel, DestinationLabel       []Selector
	SourceService, DestinationService   []NamePrefix
	SourceWorkload, DestinationWorkload []Workload
	TrafficDirection                    []flowv1.TrafficDirection
	Verdict                             []flowv1.Verdict
	DropReasonDesc                      []string
	Interface                           []Interface
	Protocol                            []uint8 // IP protocol numbers
	// ProtocolDNS: protocol "dns" was asked for (OR-ed with Protocol): the
	// record is a DNS message (see IsDNS).
	ProtocolDNS                 bool
	SourcePort, DestinationPort []PortRange
	Reply                       []bool
	TCPFlags                    []uint16 // bit masks, see l4.FlagBits
	NodeName                    []Glob
	IPVersion                   []flowv1.IPVersion
	DropReasonKernel            []string
	Policy                      []PolicyRef
	EventKind                   []flowv1.EventKind
	DropClass                   []string // canonical names (dropclass.Class)
	Type                        []flowv1.FlowType
	// DNSQuery are RE2 expressions on l7.dns.query of DNS records, as
	// Hubble's dns_query (unanchored, the name as recorded: "example.com.").
	DNSQuery []Regexp
	// DNSRcode are response codes of DNS responses (dnscodes numbers).
	DNSRcode []uint32
	// MinHandshakeRTT: records with a handshake RTT of at least this many
	// nanoseconds (see HandshakeRTT); -1 when not set.
	MinHandshakeRTT int64
	// TCPRetransmits, TCPReset, TCPTimeout: records with retransmitted
	// segments, with a reset, CONNECT_TIMEOUT records.
	TCPRetransmits, TCPReset, TCPTimeout bool
	flowSpecific                         bool
}

// Regexp is a compiled dns_query expression with its source text (for SQL).
type Regexp struct {
	Pattern string
	re      *regexp.Regexp
}

// FlowSpecific reports whether the clause sets any field other than node_name.
func (c *Clause) FlowSpecific() bool { return c.flowSpecific }

// IPRange is an inclusive range of addresses in 16-byte form (IPv4 as
// IPv4-mapped IPv6), the form relay/store keeps addresses in.
type IPRange struct{ Lo, Hi [16]byte }

// NamePrefix is "namespace/name-prefix"; an empty Prefix means the whole
// namespace. Without a slash the namespace is empty, as in Hubble's server
// (clients such as `trawl observe` fill in "default/").
type NamePrefix struct{ Namespace, Prefix string }

// Workload matches an endpoint workload; an empty field is not compared.
type Workload struct{ Name, Kind string }

// Interface matches the observation interface; zero fields are not compared.
type Interface struct {
	Index uint32
	Name  string
}

// PortRange is an inclusive port range.
type PortRange struct{ Lo, Hi uint16 }

// PolicyRef is "namespace/name"; an empty Name means every policy of the
// namespace.
type PolicyRef struct{ Namespace, Name string }

// Compile validates allow and deny lists and precompiles them. Errors name
// the field and the offending value.
func Compile(allow, deny []*observerv1.FlowFilter) (*Filter, error) {
	f := &Filter{}
	for i, ff := range allow {
		c, err := compileClause(ff)
		if err != nil {
			return nil, fmt.Errorf("allowlist[%d]: %w", i, err)
		}
		f.Allow = append(f.Allow, c)
	}
	for i, ff := range deny {
		c, err := compileClause(ff)
		if err != nil {
			return nil, fmt.Errorf("denylist[%d]: %w", i, err)
		}
		f.Deny = append(f.Deny, c)
	}
	return f, nil
}

// MustCompile is Compile for tests and constants; it panics on error.
func MustCompile(allow, deny []*observerv1.FlowFilter) *Filter {
	f, err := Compile(allow, deny)
	if err != nil {
		panic(err)
	}
	return f
}

func compileClause(ff *observerv1.FlowFilter) (*Clause, error) {
	c := &Clause{MinHandshakeRTT: -1}
	if ff == nil {
		return c, nil
	}
	var err error
	for _, u := range ff.GetUuid() {
		if u == "" {
			return nil, fmt.Errorf("uuid: empty value")
		}
		c.UUID = append(c.UUID, u)
	}
	if c.SourceIP, err = compileIPs("source_ip", ff.GetSourceIp()); err != nil {
		return nil, err
	}
	if c.DestinationIP, err = compileIPs("destination_ip", ff.GetDestinationIp()); err != nil {
		return nil, err
	}
	if c.SourcePod, err = compileNames("source_pod", ff.GetSourcePod()); err != nil {
		return nil, err
	}
	if c.DestinationPod, err = compileNames("destination_pod", ff.GetDestinationPod()); err != nil {
		return nil, err
	}
	if c.SourceService, err = compileNames("source_service", ff.GetSourceService()); err != nil {
		return nil, err
	}
	if c.DestinationService, err = compileNames("destination_service", ff.GetDestinationService()); err != nil {
		return nil, err
	}
	if c.SourceFQDN, err = compileFQDNs("source_fqdn", ff.GetSourceFqdn()); err != nil {
		return nil, err
	}
	if c.DestinationFQDN, err = compileFQDNs("destination_fqdn", ff.GetDestinationFqdn()); err != nil {
		return nil, err
	}
	if c.SourceLabel, err = compileSelectors("source_label", ff.GetSourceLabel()); err != nil {
		return nil, err
	}
	if c.DestinationLabel, err = compileSelectors("destination_label", ff.GetDestinationLabel()); err != nil {
		return nil, err
	}
	if c.SourceWorkload, err = compileWorkloads("source_workload", ff.GetSourceWorkload()); err != nil {
		return nil, err
	}
	if c.DestinationWorkload, err = compileWorkloads("destination_workload", ff.GetDestinationWorkload()); err != nil {
		return nil, err
	}
	for _, d := range ff.GetTrafficDirection() {
		if _, ok := flowv1.TrafficDirection_name[int32(d)]; !ok {
			return nil, fmt.Errorf("traffic_direction: unknown value %d", int32(d))
		}
		c.TrafficDirection = append(c.TrafficDirection, d)
	}
	for _, v := range ff.GetVerdict() {
		if _, ok := flowv1.Verdict_name[int32(v)]; !ok {
			return nil, fmt.Errorf("verdict: unknown value %d", int32(v))
		}
		c.Verdict = append(c.Verdict, v)
	}
	for _, v := range ff.GetIpVersion() {
		if _, ok := flowv1.IPVersion_name[int32(v)]; !ok {
			return nil, fmt.Errorf("ip_version: unknown value %d", int32(v))
		}
		c.IPVersion = append(c.IPVersion, v)
	}
	for _, v := range ff.GetEventKind() {
		if _, ok := flowv1.EventKind_name[int32(v)]; !ok {
			return nil, fmt.Errorf("event_kind: unknown value %d", int32(v))
		}
		c.EventKind = append(c.EventKind, v)
	}
	for _, s := range ff.GetDropReasonDesc() {
		if s == "" {
			return nil, fmt.Errorf("drop_reason_desc: empty value")
		}
		c.DropReasonDesc = append(c.DropReasonDesc, s)
	}
	for _, s := range ff.GetDropReasonKernel() {
		if s == "" {
			return nil, fmt.Errorf("drop_reason_kernel: empty value")
		}
		c.DropReasonKernel = append(c.DropReasonKernel, s)
	}
	for _, s := range ff.GetDropClass() {
		dc, err := dropclass.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("drop_class: %w", err)
		}
		c.DropClass = append(c.DropClass, string(dc))
	}
	for _, ifc := range ff.GetInterface() {
		if ifc.GetIndex() == 0 && ifc.GetName() == "" {
			return nil, fmt.Errorf("interface: needs an index or a name")
		}
		c.Interface = append(c.Interface, Interface{Index: ifc.GetIndex(), Name: ifc.GetName()})
	}
	for _, t := range ff.GetType() {
		if _, ok := flowv1.FlowType_name[int32(t)]; !ok {
			return nil, fmt.Errorf("type: unknown value %d", int32(t))
		}
		c.Type = append(c.Type, t)
	}
	for _, q := range ff.GetDnsQuery() {
		re, err := regexp.Compile(q)
		if err != nil {
			return nil, fmt.Errorf("dns_query: bad regular expression %q: %v", q, err)
		}
		c.DNSQuery = append(c.DNSQuery, Regexp{Pattern: q, re: re})
	}
	for _, r := range ff.GetDnsRcode() {
		code, err := dnscodes.ParseRcode(r)
		if err != nil {
			return nil, fmt.Errorf("dns_rcode: %w", err)
		}
		c.DNSRcode = append(c.DNSRcode, code)
	}
	if d := ff.GetMinHandshakeRtt(); d != nil {
		if d.CheckValid() != nil {
			return nil, fmt.Errorf("min_handshake_rtt: invalid duration (seconds %d, nanos %d)", d.GetSeconds(), d.GetNanos())
		}
		if d.AsDuration() < 0 {
			return nil, fmt.Errorf("min_handshake_rtt: negative duration %s", d.AsDuration())
		}
		c.MinHandshakeRTT = int64(d.AsDuration())
	}
	c.TCPRetransmits, c.TCPReset, c.TCPTimeout = ff.GetTcpRetransmits(), ff.GetTcpReset(), ff.GetTcpTimeout()
	for _, p := range ff.GetProtocol() {
		switch strings.ToLower(strings.TrimSpace(p)) {
		case "dns":
			c.ProtocolDNS = true
		case "tcp":
			c.Protocol = append(c.Protocol, l4.TCP)
		case "udp":
			c.Protocol = append(c.Protocol, l4.UDP)
		case "sctp":
			c.Protocol = append(c.Protocol, l4.SCTP)
		case "icmp":
			c.Protocol = append(c.Protocol, l4.ICMPv4, l4.ICMPv6)
		case "icmpv4":
			c.Protocol = append(c.Protocol, l4.ICMPv4)
		case "icmpv6":
			c.Protocol = append(c.Protocol, l4.ICMPv6)
		default:
			return nil, fmt.Errorf("protocol: unknown protocol %q (want tcp, udp, sctp, icmp, icmpv4, icmpv6 or dns)", p)
		}
	}
	if c.SourcePort, err = compilePorts("source_port", ff.GetSourcePort()); err != nil {
		return nil, err
	}
	if c.DestinationPort, err = compilePorts("destination_port", ff.GetDestinationPort()); err != nil {
		return nil, err
	}
	c.Reply = append(c.Reply, ff.GetReply()...)
	for _, tf := range ff.GetTcpFlags() {
		c.TCPFlags = append(c.TCPFlags, l4.FlagBits(tf))
	}
	for _, p := range ff.GetPolicy() {
		ns, name, ok := strings.Cut(p, "/")
		if !ok || strings.Contains(name, "/") {
			return nil, fmt.Errorf("policy: %q is not namespace/name", p)
		}
		c.Policy = append(c.Policy, PolicyRef{Namespace: ns, Name: name})
	}
	c.flowSpecific = len(c.UUID)+len(c.SourceIP)+len(c.DestinationIP)+len(c.SourcePod)+len(c.DestinationPod)+
		len(c.SourceFQDN)+len(c.DestinationFQDN)+len(c.SourceLabel)+len(c.DestinationLabel)+
		len(c.SourceService)+len(c.DestinationService)+len(c.SourceWorkload)+len(c.DestinationWorkload)+
		len(c.TrafficDirection)+len(c.Verdict)+len(c.DropReasonDesc)+len(c.Interface)+len(c.Protocol)+
		len(c.SourcePort)+len(c.DestinationPort)+len(c.Reply)+len(c.TCPFlags)+len(c.IPVersion)+
		len(c.DropReasonKernel)+len(c.Policy)+len(c.EventKind)+len(c.DropClass)+
		len(c.Type)+len(c.DNSQuery)+len(c.DNSRcode) > 0 || c.ProtocolDNS ||
		c.MinHandshakeRTT >= 0 || c.TCPRetransmits || c.TCPReset || c.TCPTimeout
	if c.NodeName, err = compileGlobs("node_name", ff.GetNodeName()); err != nil {
		return nil, err
	}
	return c, nil
}

func compileIPs(field string, vals []string) ([]IPRange, error) {
	var out []IPRange
	for _, v := range vals {
		s := strings.TrimSpace(v)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s: bad CIDR %q", field, v)
			}
			out = append(out, prefixRange(p))
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%s: bad IP address %q", field, v)
		}
		b := a.As16()
		out = append(out, IPRange{Lo: b, Hi: b})
	}
	return out, nil
}

// prefixRange turns a prefix into its first and last address in 16-byte form.
func prefixRange(p netip.Prefix) IPRange {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	lo := p.Addr().As16()
	hi := lo
	for i := bits; i < 128; i++ {
		hi[i/8] |= 1 << (7 - uint(i%8))
	}
	return IPRange{Lo: lo, Hi: hi}
}

func compileNames(field string, vals []string) ([]NamePrefix, error) {
	var out []NamePrefix
	for _, v := range vals {
		ns, name, ok := strings.Cut(v, "/")
		if !ok {
			ns, name = "", v
		}
		if ns == "" && name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("%s: %q is not [namespace/][name-prefix]", field, v)
		}
		out = append(out, NamePrefix{Namespace: ns, Prefix: name})
	}
	return out, nil
}

func compileWorkloads(field string, vals []*flowv1.Workload) ([]Workload, error) {
	var out []Workload
	for _, w := range vals {
		if w.GetName() == "" && w.GetKind() == "" {
			return nil, fmt.Errorf("%s: needs a name or a kind", field)
		}
		out = append(out, Workload{Name: w.GetName(), Kind: w.GetKind()})
	}
	return out, nil
}

func compilePorts(field string, vals []string) ([]PortRange, error) {
	var out []PortRange
	for _, v := range vals {
		s := strings.TrimSpace(v)
		lo, hi, isRange := strings.Cut(s, "-")
		l, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%s: bad port %q (want 0-65535 or lo-hi)", field, v)
		}
		h := l
		if isRange {
			h, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
			if err != nil || h < l {
				return nil, fmt.Errorf("%s: bad port range %q (want lo-hi with lo <= hi <= 65535)", field, v)
			}
		}
		out = append(out, PortRange{Lo: uint16(l), Hi: uint16(h)})
	}
	return out, nil
}

// Match reports whether a GetFlows record is selected (see the package
// comment for records other than flows).
func (f *Filter) Match(r *observerv1.GetFlowsResponse) bool {
	if fl := r.GetFlow(); fl != nil {
		return f.MatchFlow(fl)
	}
	node := r.GetNodeName()
	if node == "" {
		switch {
		case r.GetLostEvents() != nil:
			node = r.GetLostEvents().GetNodeName()
		case r.GetNodeStatus() != nil:
			node = r.GetNodeStatus().GetNodeName()
		case r.GetConntrack() != nil:
			node = r.GetConntrack().GetNodeName()
		}
	}
	return f.MatchOther(r.GetLostEvents() != nil, node)
}

// MatchOther decides for a record that is not a flow: lost says whether it
// is a lost-events record, node is the node it comes from.
func (f *Filter) MatchOther(lost bool, node string) bool {
	if len(f.Allow) > 0 {
		ok := false
		for _, c := range f.Allow {
			if (lost || !c.flowSpecific) && matchGlobs(c.NodeName, node) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, c := range f.Deny {
		if !c.flowSpecific && matchGlobs(c.NodeName, node) {
			return false
		}
	}
	return true
}

// MatchFlow reports whether a flow is selected.
func (f *Filter) MatchFlow(fl *flowv1.Flow) bool {
	if len(f.Allow) > 0 {
		ok := false
		for _, c := range f.Allow {
			if c.MatchFlow(fl) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, c := range f.Deny {
		if c.MatchFlow(fl) {
			return false
		}
	}
	return true
}

// MatchFlow reports whether one clause matches a flow.
func (c *Clause) MatchFlow(fl *flowv1.Flow) bool {
	if len(c.UUID) > 0 && !slices.Contains(c.UUID, fl.GetUuid()) {
		return false
	}
	if len(c.NodeName) > 0 && !matchGlobs(c.NodeName, fl.GetNodeName()) {
		return false
	}
	if len(c.Verdict) > 0 && !slices.Contains(c.Verdict, fl.GetVerdict()) {
		return false
	}
	if len(c.EventKind) > 0 && !slices.Contains(c.EventKind, fl.GetEventKind()) {
		return false
	}
	if len(c.TrafficDirection) > 0 && !slices.Contains(c.TrafficDirection, fl.GetTrafficDirection()) {
		return false
	}
	if len(c.IPVersion) > 0 && !slices.Contains(c.IPVersion, fl.GetIP().GetIpVersion()) {
		return false
	}
	if len(c.DropReasonDesc) > 0 && !slices.Contains(c.DropReasonDesc, fl.GetDropReasonDesc()) {
		return false
	}
	if len(c.DropReasonKernel) > 0 && !slices.Contains(c.DropReasonKernel, fl.GetDropReasonKernel()) {
		return false
	}
	if len(c.DropClass) > 0 && !slices.Contains(c.DropClass, fl.GetDropClass()) {
		return false
	}
	if len(c.SourceIP) > 0 && !matchIP(c.SourceIP, fl.GetIP().GetSource()) {
		return false
	}
	if len(c.DestinationIP) > 0 && !matchIP(c.DestinationIP, fl.GetIP().GetDestination()) {
		return false
	}
	if len(c.SourcePod) > 0 && !matchNames(c.SourcePod, fl.GetSource().GetNamespace(), fl.GetSource().GetPodName()) {
		return false
	}
	if len(c.DestinationPod) > 0 && !matchNames(c.DestinationPod, fl.GetDestination().GetNamespace(), fl.GetDestination().GetPodName()) {
		return false
	}
	if len(c.SourceService) > 0 && !matchNames(c.SourceService, fl.GetSourceService().GetNamespace(), fl.GetSourceService().GetName()) {
		return false
	}
	if len(c.DestinationService) > 0 && !matchNames(c.DestinationService, fl.GetDestinationService().GetNamespace(), fl.GetDestinationService().GetName()) {
		return false
	}
	if len(c.SourceFQDN) > 0 && !matchAnyName(c.SourceFQDN, fl.GetSourceNames()) &&
		!(IsDNS(fl) && fl.GetL7().GetType() == flowv1.L7FlowType_RESPONSE && matchFQDN(c.SourceFQDN, fl.GetL7().GetDns().GetQuery())) {
		return false
	}
	if len(c.DestinationFQDN) > 0 && !matchAnyName(c.DestinationFQDN, fl.GetDestinationNames()) &&
		!(IsDNS(fl) && fl.GetL7().GetType() == flowv1.L7FlowType_REQUEST && matchFQDN(c.DestinationFQDN, fl.GetL7().GetDns().GetQuery())) {
		return false
	}
	if len(c.Type) > 0 && !slices.Contains(c.Type, fl.GetType()) {
		return false
	}
	if len(c.DNSQuery) > 0 {
		if !IsDNS(fl) {
			return false
		}
		q := fl.GetL7().GetDns().GetQuery()
		ok := false
		for i := range c.DNSQuery {
			if c.DNSQuery[i].re.MatchString(q) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(c.DNSRcode) > 0 && !(IsDNS(fl) && fl.GetL7().GetType() == flowv1.L7FlowType_RESPONSE && slices.Contains(c.DNSRcode, fl.GetL7().GetDns().GetRcode())) {
		return false
	}
	if c.MinHandshakeRTT >= 0 {
		rtt := HandshakeRTT(fl.GetTcpHealth())
		if rtt == 0 || int64(rtt) < c.MinHandshakeRTT {
			return false
		}
	}
	if c.TCPRetransmits && fl.GetTcpHealth().GetRetransmits() == 0 {
		return false
	}
	if c.TCPReset && !IsReset(fl.GetTcpHealth().GetResetBy()) {
		return false
	}
	if c.TCPTimeout && fl.GetEventKind() != flowv1.EventKind_CONNECT_TIMEOUT {
		return false
	}
	if len(c.SourceLabel) > 0 && !matchSelectors(c.SourceLabel, fl.GetSource().GetLabels()) {
		return false
	}
	if len(c.DestinationLabel) > 0 && !matchSelectors(c.DestinationLabel, fl.GetDestination().GetLabels()) {
		return false
	}
	if len(c.SourceWorkload) > 0 && !matchWorkloads(c.SourceWorkload, fl.GetSource().GetWorkloads()) {
		return false
	}
	if len(c.DestinationWorkload) > 0 && !matchWorkloads(c.DestinationWorkload, fl.GetDestination().GetWorkloads()) {
		return false
	}
	if len(c.Interface) > 0 && !matchInterface(c.Interface, fl.GetInterface()) {
		return false
	}
	if len(c.Protocol) > 0 || c.ProtocolDNS {
		p := l4.Protocol(fl)
		ok := c.ProtocolDNS && IsDNS(fl)
		for _, want := range c.Protocol {
			if p == want {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(c.SourcePort) > 0 || len(c.DestinationPort) > 0 {
		sp, dp, ok := FlowPorts(fl)
		if !ok {
			return false
		}
		if len(c.SourcePort) > 0 && !matchPorts(c.SourcePort, sp) {
			return false
		}
		if len(c.DestinationPort) > 0 && !matchPorts(c.DestinationPort, dp) {
			return false
		}
	}
	if len(c.Reply) > 0 {
		r := fl.GetIsReply()
		if r == nil {
			return false
		}
		ok := false
		for _, want := range c.Reply {
			if want == r.GetValue() {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(c.TCPFlags) > 0 {
		tcp := fl.GetL4().GetTCP()
		if tcp == nil {
			return false
		}
		have := l4.FlagBits(tcp.GetFlags())
		ok := false
		for _, m := range c.TCPFlags {
			if have&m == m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(c.Policy) > 0 {
		if !matchPolicies(c.Policy, fl.GetEgressAllowedBy()) && !matchPolicies(c.Policy, fl.GetIngressAllowedBy()) &&
			!matchPolicies(c.Policy, fl.GetEgressDeniedBy()) && !matchPolicies(c.Policy, fl.GetIngressDeniedBy()) {
			return false
		}
	}
	return true
}

// FlowPorts returns the ports of a TCP, UDP or SCTP flow; ok is false for
// other protocols (port filters never match them, as in Hubble).
func FlowPorts(fl *flowv1.Flow) (src, dst uint32, ok bool) {
	layer := fl.GetL4()
	switch {
	case layer.GetTCP() != nil:
		return layer.GetTCP().GetSourcePort(), layer.GetTCP().GetDestinationPort(), true
	case layer.GetUDP() != nil:
		return layer.GetUDP().GetSourcePort(), layer.GetUDP().GetDestinationPort(), true
	case layer.GetSCTP() != nil:
		return layer.GetSCTP().GetSourcePort(), layer.GetSCTP().GetDestinationPort(), true
	}
	return 0, 0, false
}

// AddrBytes converts a flow address string to the 16-byte form storage uses:
// IPv4 as IPv4-mapped IPv6; empty or unparsable addresses as all zeros ("::").
func AddrBytes(s string) [16]byte {
	if s == "" {
		return [16]byte{} // ParseAddr's error would allocate on this common case
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return [16]byte{}
	}
	return a.As16()
}

func matchIP(rs []IPRange, s string) bool {
	b := AddrBytes(s)
	for i := range rs {
		if bytesLE(rs[i].Lo[:], b[:]) && bytesLE(b[:], rs[i].Hi[:]) {
			return true
		}
	}
	return false
}

func bytesLE(a, b []byte) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return true
}

func matchNames(ns []NamePrefix, namespace, name string) bool {
	for _, n := range ns {
		if n.Namespace == namespace && strings.HasPrefix(name, n.Prefix) {
			return true
		}
	}
	return false
}

func matchWorkloads(ws []Workload, have []*flowv1.Workload) bool {
	for _, w := range ws {
		for _, h := range have {
			if (w.Name == "" || w.Name == h.GetName()) && (w.Kind == "" || w.Kind == h.GetKind()) {
				return true
			}
		}
	}
	return false
}

func matchInterface(is []Interface, have *flowv1.NetworkInterface) bool {
	for _, i := range is {
		if (i.Index == 0 || i.Index == have.GetIndex()) && (i.Name == "" || i.Name == have.GetName()) {
			return true
		}
	}
	return false
}

func matchPorts(ps []PortRange, p uint32) bool {
	for _, r := range ps {
		if uint32(r.Lo) <= p && p <= uint32(r.Hi) {
			return true
		}
	}
	return false
}

func matchPolicies(refs []PolicyRef, ps []*flowv1.Policy) bool {
	for _, p := range ps {
		for _, r := range refs {
			if r.Namespace == p.GetNamespace() && (r.Name == "" || r.Name == p.GetName()) {
				return true
			}
		}
	}
	return false
}

// HandshakeRTT is a record's handshake RTT: the SYN -> SYN-ACK and SYN-ACK ->
// ACK halves added (docs/tcp-health.md), a missing or negative half counting
// as 0 as relay/store stores it, the sum saturating; 0 means the record
// carries no handshake. relay/store's twin is tcp_syn_ack_ns + tcp_ack_ns.
func HandshakeRTT(h *flowv1.TCPHealth) time.Duration {
	if h == nil {
		return 0
	}
	half := func(d interface{ AsDuration() time.Duration }, set bool) time.Duration {
		if v := d.AsDuration(); set && v > 0 {
			return v
		}
		return 0
	}
	a := half(h.GetHandshakeSynAck(), h.GetHandshakeSynAck() != nil)
	b := half(h.GetHandshakeAck(), h.GetHandshakeAck() != nil)
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// IsReset reports whether a reset_by value names a side: CLIENT or SERVER
// (relay/store's twin: tcp_reset_by IN ('CLIENT', 'SERVER')).
func IsReset(s flowv1.TCPSide) bool {
	return s == flowv1.TCPSide_CLIENT || s == flowv1.TCPSide_SERVER
}

// IsDNS reports whether a record is a DNS message (an L7 record with a DNS
// part). relay/store's twin is a non-empty l7_type.
func IsDNS(fl *flowv1.Flow) bool { return fl.GetL7().GetDns() != nil }

func matchAnyName(gs []Glob, names []string) bool {
	for _, n := range names {
		if matchFQDN(gs, n) {
			return true
		}
	}
	return false
}

// matchFQDN matches a name in its canonical form (see CanonicalName)
// against FQDN patterns, which are canonical already.
func matchFQDN(gs []Glob, name string) bool {
	return matchGlobs(gs, CanonicalName(name))
}

// CanonicalName is a DNS name as FQDN patterns are matched against it: one
// trailing dot dropped and ASCII letters in lower case ("Example.COM." is
// "example.com"), as Hubble canonicalises its patterns. It allocates only
// when the name has upper-case letters.
func CanonicalName(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// matchGlobs is true when gs is empty or any glob matches s.
func matchGlobs(gs []Glob, s string) bool {
	if len(gs) == 0 {
		return true
	}
	for i := range gs {
		if gs[i].Match(s) {
			return true
		}
	}
	return false
}
