package store

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/internal/dnscodes"
	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Presence bits: which optional messages a flow had, so that reading a row
// rebuilds the same message (nil and empty differ in protobuf).
const (
	hasTime uint16 = 1 << iota
	hasIP
	hasL4
	hasSource
	hasDestination
	hasSourceService
	hasDestinationService
	hasInterface
	hasFirstSeen
	hasLastSeen
	hasTCPFlags
	hasL7
	hasDNS
	// dnsSourceIsPoint: l7.dns.observation_source equals the flow's
	// observation_point (the usual case), so it needs no storage of its own.
	dnsSourceIsPoint
	// hasTCPHealth: the flow had a TCPHealth message (schema version 5).
	hasTCPHealth
	// tcpHandshakeSet: both handshake halves were set (a zero half is then
	// still a set Duration); without it a half is set when its column is not 0.
	tcpHandshakeSet
)

// flowColumnNames is the column order of inserts and of flow reads.
var flowColumnNames = []string{
	"time", "id_hi", "id_lo", "uuid_raw", "node", "verdict", "event_kind", "flow_type", "direction",
	"drop_reason_desc", "drop_reason_kernel", "ip_version", "src_ip", "dst_ip", "proto", "src_port", "dst_port", "tcp_flags",
	"src_namespace", "src_pod", "src_workload", "src_workload_kind", "src_labels", "src_more_workload_names", "src_more_workload_kinds",
	"src_service_namespace", "src_service", "src_names",
	"dst_namespace", "dst_pod", "dst_workload", "dst_workload_kind", "dst_labels", "dst_more_workload_names", "dst_more_workload_kinds",
	"dst_service_namespace", "dst_service", "dst_names",
	"is_reply", "iface_index", "iface_name", "allowed_by", "denied_by", "packets", "bytes",
	"first_seen_offset", "last_seen_offset", "netns", "observation_point", "present", "extra", "drop_class",
	"l7_type", "l7_latency_ns", "dns_query", "dns_rcode", "dns_qtypes", "dns_rrtypes", "dns_ips", "dns_cnames", "dns_ttl",
	"tcp_syn_ack_ns", "tcp_ack_ns", "tcp_retransmits", "tcp_reset_by", "tcp_zero_windows",
	"policy_egress",
}

type endpointColumns struct {
	ns, pod, wl, wlKind         []string
	labels, moreNames, moreKind [][]string
	svcNS, svc                  []string
	names                       [][]string
}

// flowColumns holds a batch of flows column by column, the form the native
// protocol sends; slices are reused between inserts.
type flowColumns struct {
	time                       []time.Time
	idHi, idLo                 []uint64
	uuidRaw, node              []string
	verdict, kind, direction   []int8
	flowType, ipVersion, proto []uint8
	dropDesc, dropKernel       []string
	srcIP, dstIP               [][16]byte
	srcPort, dstPort, tcpFlags []uint16
	src, dst                   endpointColumns
	isReply                    []uint8
	ifIndex                    []uint32
	ifName                     []string
	allowedBy, deniedBy        [][]string
	packets, bytes, netns      []uint64
	firstOff, lastOff          []int64
	obsPoint, extra, dropClass []string
	present, policyEgress      []uint16
	dns                        dnsColumnsOf
	tcp                        tcpColumnsOf
	batch                      []uint64 // BatchID per row; inserted, never read back

	// Per-insert cache: the enrichment hands many flows the same policy
	// slices, so their names and encoding are computed once per insert.
	// Keys are pointers that the flows of this insert keep alive.
	policyCache map[policyKey]policyEnc
}

// dnsColumnsOf are the L7 columns (schema version 4).
type dnsColumnsOf struct {
	l7Type, query, rcode []string
	latency              []uint64
	qtypes, rrtypes      [][]string
	ips, cnames          [][]string
	ttl                  []uint32
}

func (d *dnsColumnsOf) reset() {
	d.l7Type, d.query, d.rcode, d.latency = trunc(d.l7Type), trunc(d.query), trunc(d.rcode), trunc(d.latency)
	d.qtypes, d.rrtypes, d.ips, d.cnames, d.ttl = trunc(d.qtypes), trunc(d.rrtypes), trunc(d.ips), trunc(d.cnames), trunc(d.ttl)
}

// l7TypeName is the l7_type column of a record's Layer7 type: ” for none
// (and for UNKNOWN_L7_TYPE; the presence bit tells them apart).
func l7TypeName(t flowv1.L7FlowType) string {
	if t == flowv1.L7FlowType_UNKNOWN_L7_TYPE {
		return ""
	}
	if n, ok := flowv1.L7FlowType_name[int32(t)]; ok {
		return n
	}
	return ""
}

// add appends the L7 columns of f and returns its presence bits.
func (d *dnsColumnsOf) add(f *flowv1.Flow) (present uint16) {
	l7 := f.GetL7()
	dns := l7.GetDns()
	if l7 != nil {
		present |= hasL7
	}
	if dns != nil {
		present |= hasDNS
		if dns.GetObservationSource() == f.GetObservationPoint() {
			present |= dnsSourceIsPoint
		}
	}
	rcode := ""
	if dns != nil && (l7.GetType() == flowv1.L7FlowType_RESPONSE || dns.GetRcode() != 0) {
		rcode = dnscodes.RcodeName(dns.GetRcode())
	}
	d.l7Type = append(d.l7Type, l7TypeName(l7.GetType()))
	d.latency = append(d.latency, l7.GetLatencyNs())
	d.query = append(d.query, dns.GetQuery())
	d.rcode = append(d.rcode, rcode)
	d.qtypes = append(d.qtypes, nonNil(dns.GetQtypes()))
	d.rrtypes = append(d.rrtypes, nonNil(dns.GetRrtypes()))
	d.ips = append(d.ips, nonNil(dns.GetIps()))
	d.cnames = append(d.cnames, nonNil(dns.GetCnames()))
	d.ttl = append(d.ttl, dns.GetTtl())
	return present
}

// tcpColumnsOf are the TCP health columns (schema version 5).
type tcpColumnsOf struct {
	synAck, ack              []uint64
	retransmits, zeroWindows []uint32
	resetBy                  []string
}

func (t *tcpColumnsOf) reset() {
	t.synAck, t.ack, t.retransmits, t.zeroWindows, t.resetBy = trunc(t.synAck), trunc(t.ack), trunc(t.retransmits), trunc(t.zeroWindows), trunc(t.resetBy)
}

// durationNs is a Duration in nanoseconds, 0 for nil or negative.
func durationNs(d interface{ AsDuration() time.Duration }, set bool) uint64 {
	if !set {
		return 0
	}
	if v := d.AsDuration(); v > 0 {
		return uint64(v)
	}
	return 0
}

// tcpSideName is the tcp_reset_by column of a side: ” for none or unknown.
func tcpSideName(s flowv1.TCPSide) string {
	if s == flowv1.TCPSide_CLIENT || s == flowv1.TCPSide_SERVER {
		return s.String()
	}
	return ""
}

// add appends the TCP health columns of f and returns its presence bits.
func (t *tcpColumnsOf) add(f *flowv1.Flow) (present uint16) {
	h := f.GetTcpHealth()
	if h != nil {
		present |= hasTCPHealth
		if h.HandshakeSynAck != nil && h.HandshakeAck != nil {
			present |= tcpHandshakeSet
		}
	}
	t.synAck = append(t.synAck, durationNs(h.GetHandshakeSynAck(), h.GetHandshakeSynAck() != nil))
	t.ack = append(t.ack, durationNs(h.GetHandshakeAck(), h.GetHandshakeAck() != nil))
	t.retransmits = append(t.retransmits, h.GetRetransmits())
	t.resetBy = append(t.resetBy, tcpSideName(h.GetResetBy()))
	t.zeroWindows = append(t.zeroWindows, h.GetZeroWindows())
	return present
}

type policyKey struct {
	p [4]*flowv1.Policy
	n [4]int
}

type policyEnc struct {
	lists           [4][]*flowv1.Policy
	allowed, denied []string
	extra           string
	egress          uint16
}

// policiesByName tells whether f's policies can be stored as their names
// alone (schema version 6): allowed_by and denied_by hold "namespace/name",
// egress policies first, and policy_egress counts the egress ones of
// allowed_by in its low byte and of denied_by in its high byte. That holds
// when every policy is a NetworkPolicy without labels or revision. Other
// policies are stored in extra, as every policy was before version 6; a
// row whose extra holds no policy but whose names columns do is read as
// names (rowPolicies).
func policiesByName(f *flowv1.Flow) (egress uint16, ok bool) {
	if len(f.EgressAllowedBy) > 0xff || len(f.EgressDeniedBy) > 0xff {
		return 0, false
	}
	for _, list := range [][]*flowv1.Policy{f.EgressAllowedBy, f.IngressAllowedBy, f.EgressDeniedBy, f.IngressDeniedBy} {
		for _, p := range list {
			if p.GetKind() != "NetworkPolicy" || len(p.GetLabels()) > 0 || p.GetRevision() != 0 ||
				strings.Contains(p.GetNamespace(), "/") || len(p.ProtoReflect().GetUnknown()) > 0 {
				return 0, false
			}
		}
	}
	return uint16(len(f.EgressAllowedBy)) | uint16(len(f.EgressDeniedBy))<<8, true
}

// namedPolicies rebuilds the egress and ingress policies of a names column
// (policiesByName).
func namedPolicies(names []string, egress int) (eg, in []*flowv1.Policy) {
	for i, n := range names {
		ns, name, _ := strings.Cut(n, "/")
		p := &flowv1.Policy{Namespace: ns, Name: name, Kind: "NetworkPolicy"}
		if i < egress {
			eg = append(eg, p)
		} else {
			in = append(in, p)
		}
	}
	return eg, in
}

func samePolicies(a, b [4][]*flowv1.Policy) bool {
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

func (c *flowColumns) len() int { return len(c.time) }

// trunc empties a reused column. The elements are cleared first: strings
// and label slices of the last insert's flows would otherwise stay
// reachable from the column until overwritten.
func trunc[T any](s []T) []T {
	clear(s)
	return s[:0]
}

func (e *endpointColumns) reset() {
	e.ns, e.pod, e.wl, e.wlKind = trunc(e.ns), trunc(e.pod), trunc(e.wl), trunc(e.wlKind)
	e.labels, e.moreNames, e.moreKind = trunc(e.labels), trunc(e.moreNames), trunc(e.moreKind)
	e.svcNS, e.svc, e.names = trunc(e.svcNS), trunc(e.svc), trunc(e.names)
}

func (c *flowColumns) reset() {
	c.time, c.idHi, c.idLo, c.uuidRaw, c.node = trunc(c.time), trunc(c.idHi), trunc(c.idLo), trunc(c.uuidRaw), trunc(c.node)
	c.verdict, c.kind, c.direction = trunc(c.verdict), trunc(c.kind), trunc(c.direction)
	c.flowType, c.ipVersion, c.proto = trunc(c.flowType), trunc(c.ipVersion), trunc(c.proto)
	c.dropDesc, c.dropKernel, c.srcIP, c.dstIP = trunc(c.dropDesc), trunc(c.dropKernel), trunc(c.srcIP), trunc(c.dstIP)
	c.srcPort, c.dstPort, c.tcpFlags = trunc(c.srcPort), trunc(c.dstPort), trunc(c.tcpFlags)
	c.src.reset()
	c.dst.reset()
	c.isReply, c.ifIndex, c.ifName = trunc(c.isReply), trunc(c.ifIndex), trunc(c.ifName)
	c.allowedBy, c.deniedBy = trunc(c.allowedBy), trunc(c.deniedBy)
	c.packets, c.bytes, c.netns = trunc(c.packets), trunc(c.bytes), trunc(c.netns)
	c.firstOff, c.lastOff, c.obsPoint, c.extra, c.present = trunc(c.firstOff), trunc(c.lastOff), trunc(c.obsPoint), trunc(c.extra), trunc(c.present)
	c.dropClass, c.policyEgress = trunc(c.dropClass), trunc(c.policyEgress)
	c.dns.reset()
	c.tcp.reset()
	c.batch = trunc(c.batch)
	clear(c.policyCache)
}

func first(ps []*flowv1.Policy) *flowv1.Policy {
	if len(ps) == 0 {
		return nil
	}
	return ps[0]
}

// policies returns the allowed/denied name lists of a flow, its
// policy_egress and, when the policies are all the flow needs beyond its
// columns and the names cannot rebuild them, its extra encoding.
func (c *flowColumns) policies(f *flowv1.Flow) (allowed, denied []string, extra string, egress uint16) {
	// The key is the first element and length of each list; a hit counts
	// only when every element is the same pointer.
	k := policyKey{
		p: [4]*flowv1.Policy{first(f.EgressAllowedBy), first(f.IngressAllowedBy), first(f.EgressDeniedBy), first(f.IngressDeniedBy)},
		n: [4]int{len(f.EgressAllowedBy), len(f.IngressAllowedBy), len(f.EgressDeniedBy), len(f.IngressDeniedBy)},
	}
	if k.n == [4]int{} {
		return empty, empty, "", 0
	}
	lists := [4][]*flowv1.Policy{f.EgressAllowedBy, f.IngressAllowedBy, f.EgressDeniedBy, f.IngressDeniedBy}
	if e, ok := c.policyCache[k]; ok && samePolicies(e.lists, lists) {
		return e.allowed, e.denied, e.extra, e.egress
	}
	e := policyEnc{lists: lists,
		allowed: nonNil(policyNames(nil, f.EgressAllowedBy, f.IngressAllowedBy)),
		denied:  nonNil(policyNames(nil, f.EgressDeniedBy, f.IngressDeniedBy)),
	}
	var byName bool
	if e.egress, byName = policiesByName(f); !byName {
		x := flowv1.Flow{EgressAllowedBy: f.EgressAllowedBy, IngressAllowedBy: f.IngressAllowedBy, EgressDeniedBy: f.EgressDeniedBy, IngressDeniedBy: f.IngressDeniedBy}
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&x)
		e.extra = string(b)
	}
	if c.policyCache == nil {
		c.policyCache = map[policyKey]policyEnc{}
	}
	c.policyCache[k] = e
	return e.allowed, e.denied, e.extra, e.egress
}

// columns lists the slices in flowColumnNames order.
func (c *flowColumns) columns() []any {
	return []any{
		c.time, c.idHi, c.idLo, c.uuidRaw, c.node, c.verdict, c.kind, c.flowType, c.direction,
		c.dropDesc, c.dropKernel, c.ipVersion, c.srcIP, c.dstIP, c.proto, c.srcPort, c.dstPort, c.tcpFlags,
		c.src.ns, c.src.pod, c.src.wl, c.src.wlKind, c.src.labels, c.src.moreNames, c.src.moreKind, c.src.svcNS, c.src.svc, c.src.names,
		c.dst.ns, c.dst.pod, c.dst.wl, c.dst.wlKind, c.dst.labels, c.dst.moreNames, c.dst.moreKind, c.dst.svcNS, c.dst.svc, c.dst.names,
		c.isReply, c.ifIndex, c.ifName, c.allowedBy, c.deniedBy, c.packets, c.bytes,
		c.firstOff, c.lastOff, c.netns, c.obsPoint, c.present, c.extra, c.dropClass,
		c.dns.l7Type, c.dns.latency, c.dns.query, c.dns.rcode, c.dns.qtypes, c.dns.rrtypes, c.dns.ips, c.dns.cnames, c.dns.ttl,
		c.tcp.synAck, c.tcp.ack, c.tcp.retransmits, c.tcp.resetBy, c.tcp.zeroWindows,
		c.policyEgress,
	}
}

// enum8 keeps enum values the schema knows; unknown ones (a newer agent)
// are stored as 0 rather than failing the whole insert.
func enumValue(v int32, names map[int32]string) int8 {
	if _, ok := names[v]; ok && v >= -128 && v <= 127 {
		return int8(v)
	}
	return 0
}

// ParseUUID splits a canonical lower-case UUID string into two integers.
// Trawl's flow ids share their first half per agent boot and count up in the
// second, so two UInt64 columns compress far better than the string.
func ParseUUID(s string) (hi, lo uint64, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return 0, 0, false
	}
	var b [16]byte
	j := 0
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i--
			continue
		}
		h, l := unhex(s[i]), unhex(s[i+1])
		if h > 15 || l > 15 {
			return 0, 0, false
		}
		b[j] = h<<4 | l
		j++
	}
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	if hi == 0 && lo == 0 {
		return 0, 0, false // kept as a raw string: (0,0) means "see uuid_raw"
	}
	return hi, lo, true
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 255 // upper case is not canonical: stored raw so it round-trips
}

// FormatUUID is the inverse of ParseUUID.
func FormatUUID(hi, lo uint64) string { return flowid.FromHalves(hi, lo) }

func policyNames(dst []string, ps ...[]*flowv1.Policy) []string {
	for _, list := range ps {
		for _, p := range list {
			dst = append(dst, p.GetNamespace()+"/"+p.GetName())
		}
	}
	return dst
}

func (e *endpointColumns) add(ep *flowv1.Endpoint, svc *flowv1.Service, names []string) {
	e.ns = append(e.ns, ep.GetNamespace())
	e.pod = append(e.pod, ep.GetPodName())
	e.labels = append(e.labels, nonNil(ep.GetLabels()))
	wls := ep.GetWorkloads()
	var wl, kind string
	var moreN, moreK []string
	if len(wls) > 0 {
		wl, kind = wls[0].GetName(), wls[0].GetKind()
		for _, w := range wls[1:] {
			moreN = append(moreN, w.GetName())
			moreK = append(moreK, w.GetKind())
		}
	}
	e.wl, e.wlKind = append(e.wl, wl), append(e.wlKind, kind)
	e.moreNames, e.moreKind = append(e.moreNames, nonNil(moreN)), append(e.moreKind, nonNil(moreK))
	e.svcNS, e.svc = append(e.svcNS, svc.GetNamespace()), append(e.svc, svc.GetName())
	e.names = append(e.names, nonNil(names))
}

var empty = []string{}

func nonNil(s []string) []string {
	if s == nil {
		return empty
	}
	return s
}

// add appends one flow.
func (c *flowColumns) add(f *flowv1.Flow) {
	var present uint16
	t := time.Unix(0, 0).UTC()
	if f.Time != nil {
		present |= hasTime
		t = f.Time.AsTime()
	}
	c.time = append(c.time, t)
	if hi, lo, ok := ParseUUID(f.GetUuid()); ok {
		c.idHi, c.idLo, c.uuidRaw = append(c.idHi, hi), append(c.idLo, lo), append(c.uuidRaw, "")
	} else {
		c.idHi, c.idLo, c.uuidRaw = append(c.idHi, 0), append(c.idLo, 0), append(c.uuidRaw, f.GetUuid())
	}
	c.node = append(c.node, f.GetNodeName())
	c.verdict = append(c.verdict, enumValue(int32(f.GetVerdict()), flowv1.Verdict_name))
	c.kind = append(c.kind, enumValue(int32(f.GetEventKind()), eventKinds))
	c.direction = append(c.direction, enumValue(int32(f.GetTrafficDirection()), flowv1.TrafficDirection_name))
	c.flowType = append(c.flowType, uint8(f.GetType()))
	c.dropDesc, c.dropKernel = append(c.dropDesc, f.GetDropReasonDesc()), append(c.dropKernel, f.GetDropReasonKernel())
	c.dropClass = append(c.dropClass, f.GetDropClass())
	if f.IP != nil {
		present |= hasIP
	}
	c.ipVersion = append(c.ipVersion, uint8(f.GetIP().GetIpVersion()))
	c.srcIP = append(c.srcIP, filter.AddrBytes(f.GetIP().GetSource()))
	c.dstIP = append(c.dstIP, filter.AddrBytes(f.GetIP().GetDestination()))
	if f.L4 != nil {
		present |= hasL4
	}
	var sp, dp uint32
	var flags uint16
	switch layer := f.GetL4(); {
	case layer.GetTCP() != nil:
		sp, dp = layer.GetTCP().GetSourcePort(), layer.GetTCP().GetDestinationPort()
		if layer.GetTCP().Flags != nil {
			present |= hasTCPFlags
			flags = l4.FlagBits(layer.GetTCP().Flags)
		}
	case layer.GetUDP() != nil:
		sp, dp = layer.GetUDP().GetSourcePort(), layer.GetUDP().GetDestinationPort()
	case layer.GetSCTP() != nil:
		sp, dp = layer.GetSCTP().GetSourcePort(), layer.GetSCTP().GetDestinationPort()
	case layer.GetICMPv4() != nil:
		sp, dp = layer.GetICMPv4().GetType(), layer.GetICMPv4().GetCode()
	case layer.GetICMPv6() != nil:
		sp, dp = layer.GetICMPv6().GetType(), layer.GetICMPv6().GetCode()
	}
	c.proto = append(c.proto, l4.Protocol(f))
	c.srcPort, c.dstPort, c.tcpFlags = append(c.srcPort, uint16(sp)), append(c.dstPort, uint16(dp)), append(c.tcpFlags, flags)
	if f.Source != nil {
		present |= hasSource
	}
	if f.Destination != nil {
		present |= hasDestination
	}
	if f.SourceService != nil {
		present |= hasSourceService
	}
	if f.DestinationService != nil {
		present |= hasDestinationService
	}
	c.src.add(f.Source, f.SourceService, f.SourceNames)
	c.dst.add(f.Destination, f.DestinationService, f.DestinationNames)
	var reply uint8
	if f.IsReply != nil {
		reply = 1
		if f.IsReply.GetValue() {
			reply = 2
		}
	}
	c.isReply = append(c.isReply, reply)
	if f.Interface != nil {
		present |= hasInterface
	}
	c.ifIndex, c.ifName = append(c.ifIndex, f.GetInterface().GetIndex()), append(c.ifName, f.GetInterface().GetName())
	allowed, denied, polExtra, egress := c.policies(f)
	c.allowedBy, c.deniedBy = append(c.allowedBy, allowed), append(c.deniedBy, denied)
	c.packets, c.bytes = append(c.packets, f.GetPackets()), append(c.bytes, f.GetBytes())
	var fo, lo int64
	if f.FirstSeen != nil {
		present |= hasFirstSeen
		fo = t.Sub(f.FirstSeen.AsTime()).Nanoseconds()
	}
	if f.LastSeen != nil {
		present |= hasLastSeen
		lo = t.Sub(f.LastSeen.AsTime()).Nanoseconds()
	}
	c.firstOff, c.lastOff = append(c.firstOff, fo), append(c.lastOff, lo)
	c.netns, c.obsPoint = append(c.netns, f.GetNetns()), append(c.obsPoint, f.GetObservationPoint())
	present |= c.dns.add(f)
	present |= c.tcp.add(f)
	c.present = append(c.present, present)
	if ex := extraOf(f, false); ex != "" {
		c.extra = append(c.extra, ex)
		egress = 0 // ex holds the policies too
	} else {
		c.extra = append(c.extra, polExtra) // policies are the only extra fields
	}
	c.policyEgress = append(c.policyEgress, egress)
}

// extraOf encodes, as a partial Flow in protobuf, what has no column: rare
// or wide fields that are only displayed, never filtered or grouped on.
// With withPolicies false it returns "" when the policies would be the only
// content (the caller has them encoded already).
func extraOf(f *flowv1.Flow, withPolicies bool) string {
	// Decided before building anything: most flows have no extra, and the
	// partial Flow would be a heap allocation per row.
	encrypted := f.GetIP().GetEncrypted()
	src := f.GetL7().GetDns().GetObservationSource()
	otherSource := src != "" && src != f.GetObservationPoint()
	set := f.Ethernet != nil || encrypted || hasEndpointExtra(f.Source) || hasEndpointExtra(f.Destination) || f.Conntrack != nil || otherSource
	policies := len(f.EgressAllowedBy)+len(f.IngressAllowedBy)+len(f.EgressDeniedBy)+len(f.IngressDeniedBy) > 0
	if !set && (!withPolicies || !policies) {
		return ""
	}
	x := flowv1.Flow{Ethernet: f.Ethernet, Source: endpointExtra(f.Source), Destination: endpointExtra(f.Destination), Conntrack: f.Conntrack}
	if encrypted {
		x.IP = &flowv1.IP{Encrypted: true}
	}
	if otherSource {
		x.L7 = &flowv1.Layer7{Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{ObservationSource: src}}}
	}
	if policies {
		x.EgressAllowedBy, x.IngressAllowedBy, x.EgressDeniedBy, x.IngressDeniedBy = f.EgressAllowedBy, f.IngressAllowedBy, f.EgressDeniedBy, f.IngressDeniedBy
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&x)
	if err != nil {
		return ""
	}
	return string(b)
}

func hasEndpointExtra(e *flowv1.Endpoint) bool {
	return e != nil && (e.ID != 0 || e.Identity != 0 || e.ClusterName != "" || e.NodeName != "")
}

func endpointExtra(e *flowv1.Endpoint) *flowv1.Endpoint {
	if !hasEndpointExtra(e) {
		return nil
	}
	return &flowv1.Endpoint{ID: e.ID, Identity: e.Identity, ClusterName: e.ClusterName, NodeName: e.NodeName}
}

// flowRow is one row read back; Scan targets in flowColumnNames order.
type flowRow struct {
	time                       time.Time
	idHi, idLo                 uint64
	uuidRaw, node              string
	verdict, kind, direction   int8
	flowType, ipVersion, proto uint8
	dropDesc, dropKernel       string
	srcIP, dstIP               netip.Addr
	srcPort, dstPort, tcpFlags uint16
	src, dst                   endpointRow
	isReply                    uint8
	ifIndex                    uint32
	ifName                     string
	allowedBy, deniedBy        []string
	packets, bytes, netns      uint64
	firstOff, lastOff          int64
	obsPoint, extra, dropClass string
	present, policyEgress      uint16
	dns                        dnsRow
	tcp                        tcpRow
}

type tcpRow struct {
	synAck, ack              uint64
	retransmits, zeroWindows uint32
	resetBy                  string
}

// tcpHealth rebuilds the TCPHealth message of a row with hasTCPHealth (nil
// without).
func (r *flowRow) tcpHealth() *flowv1.TCPHealth {
	if r.present&hasTCPHealth == 0 {
		return nil
	}
	t := &r.tcp
	h := &flowv1.TCPHealth{Retransmits: t.retransmits, ZeroWindows: t.zeroWindows,
		ResetBy: flowv1.TCPSide(flowv1.TCPSide_value[t.resetBy])}
	both := r.present&tcpHandshakeSet != 0
	if both || t.synAck > 0 {
		h.HandshakeSynAck = durationpb.New(time.Duration(t.synAck))
	}
	if both || t.ack > 0 {
		h.HandshakeAck = durationpb.New(time.Duration(t.ack))
	}
	return h
}

type dnsRow struct {
	l7Type, query, rcode string
	latency              uint64
	qtypes, rrtypes      []string
	ips, cnames          []string
	ttl                  uint32
}

// layer7 rebuilds the Layer7 message of a row with hasL7 (nil without).
func (r *flowRow) layer7() *flowv1.Layer7 {
	if r.present&hasL7 == 0 {
		return nil
	}
	d := &r.dns
	l7 := &flowv1.Layer7{Type: flowv1.L7FlowType(flowv1.L7FlowType_value[d.l7Type]), LatencyNs: d.latency}
	if r.present&hasDNS == 0 {
		return l7
	}
	dns := &flowv1.DNS{Query: d.query, Ttl: d.ttl}
	if d.rcode != "" {
		if code, err := dnscodes.ParseRcode(d.rcode); err == nil {
			dns.Rcode = code
		}
	}
	if r.present&dnsSourceIsPoint != 0 {
		dns.ObservationSource = r.obsPoint
	}
	if len(d.qtypes) > 0 {
		dns.Qtypes = d.qtypes
	}
	if len(d.rrtypes) > 0 {
		dns.Rrtypes = d.rrtypes
	}
	if len(d.ips) > 0 {
		dns.Ips = d.ips
	}
	if len(d.cnames) > 0 {
		dns.Cnames = d.cnames
	}
	l7.Record = &flowv1.Layer7_Dns{Dns: dns}
	return l7
}

type endpointRow struct {
	ns, pod, wl, wlKind         string
	labels, moreNames, moreKind []string
	svcNS, svc                  string
	names                       []string
}

func (r *flowRow) targets() []any {
	return []any{
		&r.time, &r.idHi, &r.idLo, &r.uuidRaw, &r.node, &r.verdict, &r.kind, &r.flowType, &r.direction,
		&r.dropDesc, &r.dropKernel, &r.ipVersion, &r.srcIP, &r.dstIP, &r.proto, &r.srcPort, &r.dstPort, &r.tcpFlags,
		&r.src.ns, &r.src.pod, &r.src.wl, &r.src.wlKind, &r.src.labels, &r.src.moreNames, &r.src.moreKind, &r.src.svcNS, &r.src.svc, &r.src.names,
		&r.dst.ns, &r.dst.pod, &r.dst.wl, &r.dst.wlKind, &r.dst.labels, &r.dst.moreNames, &r.dst.moreKind, &r.dst.svcNS, &r.dst.svc, &r.dst.names,
		&r.isReply, &r.ifIndex, &r.ifName, &r.allowedBy, &r.deniedBy, &r.packets, &r.bytes,
		&r.firstOff, &r.lastOff, &r.netns, &r.obsPoint, &r.present, &r.extra, &r.dropClass,
		&r.dns.l7Type, &r.dns.latency, &r.dns.query, &r.dns.rcode, &r.dns.qtypes, &r.dns.rrtypes, &r.dns.ips, &r.dns.cnames, &r.dns.ttl,
		&r.tcp.synAck, &r.tcp.ack, &r.tcp.retransmits, &r.tcp.resetBy, &r.tcp.zeroWindows,
		&r.policyEgress,
	}
}

func addrString(a netip.Addr, v flowv1.IPVersion) string {
	if !a.IsValid() || a == netip.IPv6Unspecified() {
		return ""
	}
	if v != flowv1.IPVersion_IPv6 && a.Is4In6() {
		return a.Unmap().String()
	}
	return a.String()
}

func (e *endpointRow) endpoint() *flowv1.Endpoint {
	ep := &flowv1.Endpoint{Namespace: e.ns, PodName: e.pod}
	if len(e.labels) > 0 {
		ep.Labels = e.labels
	}
	if e.wl != "" || e.wlKind != "" || len(e.moreNames) > 0 {
		ep.Workloads = append(ep.Workloads, &flowv1.Workload{Name: e.wl, Kind: e.wlKind})
		for i := range e.moreNames {
			k := ""
			if i < len(e.moreKind) {
				k = e.moreKind[i]
			}
			ep.Workloads = append(ep.Workloads, &flowv1.Workload{Name: e.moreNames[i], Kind: k})
		}
	}
	return ep
}

// flow rebuilds the Flow message.
func (r *flowRow) flow() (*flowv1.Flow, error) {
	f := &flowv1.Flow{
		NodeName: r.node, Verdict: flowv1.Verdict(r.verdict), EventKind: flowv1.EventKind(r.kind),
		Type: flowv1.FlowType(r.flowType), TrafficDirection: flowv1.TrafficDirection(r.direction),
		DropReasonDesc: r.dropDesc, DropReasonKernel: r.dropKernel, DropClass: r.dropClass, Packets: r.packets, Bytes: r.bytes,
		Netns: r.netns, ObservationPoint: r.obsPoint,
	}
	if r.uuidRaw != "" || (r.idHi == 0 && r.idLo == 0) {
		f.Uuid = r.uuidRaw
	} else {
		f.Uuid = FormatUUID(r.idHi, r.idLo)
	}
	p := r.present
	if p&hasTime != 0 {
		f.Time = timestamppb.New(r.time)
	}
	if p&hasIP != 0 {
		v := flowv1.IPVersion(r.ipVersion)
		f.IP = &flowv1.IP{Source: addrString(r.srcIP, v), Destination: addrString(r.dstIP, v), IpVersion: v}
	}
	if p&hasL4 != 0 {
		f.L4 = &flowv1.Layer4{}
		sp, dp := uint32(r.srcPort), uint32(r.dstPort)
		switch r.proto {
		case l4.TCP:
			t := &flowv1.TCP{SourcePort: sp, DestinationPort: dp}
			if p&hasTCPFlags != 0 {
				t.Flags = l4.Flags(r.tcpFlags)
			}
			f.L4.Protocol = &flowv1.Layer4_TCP{TCP: t}
		case l4.UDP:
			f.L4.Protocol = &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: sp, DestinationPort: dp}}
		case l4.SCTP:
			f.L4.Protocol = &flowv1.Layer4_SCTP{SCTP: &flowv1.SCTP{SourcePort: sp, DestinationPort: dp}}
		case l4.ICMPv4:
			f.L4.Protocol = &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{Type: sp, Code: dp}}
		case l4.ICMPv6:
			f.L4.Protocol = &flowv1.Layer4_ICMPv6{ICMPv6: &flowv1.ICMPv6{Type: sp, Code: dp}}
		}
	}
	if p&hasSource != 0 {
		f.Source = r.src.endpoint()
	}
	if p&hasDestination != 0 {
		f.Destination = r.dst.endpoint()
	}
	if p&hasSourceService != 0 {
		f.SourceService = &flowv1.Service{Namespace: r.src.svcNS, Name: r.src.svc}
	}
	if p&hasDestinationService != 0 {
		f.DestinationService = &flowv1.Service{Namespace: r.dst.svcNS, Name: r.dst.svc}
	}
	if len(r.src.names) > 0 {
		f.SourceNames = r.src.names
	}
	if len(r.dst.names) > 0 {
		f.DestinationNames = r.dst.names
	}
	switch r.isReply {
	case 1:
		f.IsReply = wrapperspb.Bool(false)
	case 2:
		f.IsReply = wrapperspb.Bool(true)
	}
	if p&hasInterface != 0 {
		f.Interface = &flowv1.NetworkInterface{Index: r.ifIndex, Name: r.ifName}
	}
	if p&hasFirstSeen != 0 {
		f.FirstSeen = timestamppb.New(r.time.Add(-time.Duration(r.firstOff)))
	}
	if p&hasLastSeen != 0 {
		f.LastSeen = timestamppb.New(r.time.Add(-time.Duration(r.lastOff)))
	}
	f.L7 = r.layer7()
	f.TcpHealth = r.tcpHealth()
	if r.extra != "" {
		var x flowv1.Flow
		if err := proto.Unmarshal([]byte(r.extra), &x); err != nil {
			return nil, fmt.Errorf("decode extra fields of flow %s: %w", f.Uuid, err)
		}
		proto.Merge(f, &x)
	}
	if len(f.EgressAllowedBy)+len(f.IngressAllowedBy)+len(f.EgressDeniedBy)+len(f.IngressDeniedBy) == 0 {
		// Not in extra: stored as their names (policiesByName).
		f.EgressAllowedBy, f.IngressAllowedBy = namedPolicies(r.allowedBy, int(r.policyEgress&0xff))
		f.EgressDeniedBy, f.IngressDeniedBy = namedPolicies(r.deniedBy, int(r.policyEgress>>8))
	}
	return f, nil
}

func selectFlowColumns() string { return strings.Join(flowColumnNames, ", ") }

// Columns is a batch of flows in the columnar form the writer inserts. It is
// exported for benchmarks that compare the writer with a raw clickhouse-go
// columnar insert of the same rows (dev/cmd/bench-relay).
type Columns struct{ c flowColumns }

// Add appends a flow.
func (c *Columns) Add(f *flowv1.Flow) { c.c.add(f) }

// Len is the number of rows.
func (c *Columns) Len() int { return c.c.len() }

// Values are the column slices, in FlowColumnNames order, for
// driver.Batch.Column(i).Append.
func (c *Columns) Values() []any { return c.c.columns() }

// FlowColumnNames are the flows table's inserted columns, in order.
func FlowColumnNames() []string { return append([]string(nil), flowColumnNames...) }
