package store

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	gproto "google.golang.org/protobuf/proto"
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
	ns, pod, wl, wlKind *lowCardinality[string]
	labels              *lowCardinalityArray
	moreNames, moreKind *stringArray
	svcNS, svc          *lowCardinality[string]
	names               *stringArray
}

func newEndpointColumns() endpointColumns {
	return endpointColumns{
		ns: newLowCardinalityString(), pod: newLowCardinalityString(), wl: newLowCardinalityString(), wlKind: newLowCardinalityString(),
		labels: newLowCardinalityArray(), moreNames: newStringArray(), moreKind: newStringArray(),
		svcNS: newLowCardinalityString(), svc: newLowCardinalityString(), names: newStringArray(),
	}
}

// flowColumns holds the flows of one insert column by column, in ch-go's
// native form (chcols.go). reset empties them for the next insert and keeps
// their memory; they copy what they keep, so the stored flows can be freed
// as soon as they are added.
type flowColumns struct {
	time                        *proto.ColDateTime64
	idHi, idLo                  *proto.ColUInt64
	uuidRaw                     *proto.ColStr
	node                        *lowCardinality[string]
	verdict, kind, direction    *enumColumn
	flowType, ipVersion, l4Kind *proto.ColUInt8
	dropDesc, dropKernel        *lowCardinality[string]
	srcIP, dstIP                *lowCardinality[proto.IPv6]
	srcPort, dstPort, tcpFlags  *proto.ColUInt16
	src, dst                    endpointColumns
	isReply                     *proto.ColUInt8
	ifIndex                     *proto.ColUInt32
	ifName                      *lowCardinality[string]
	allowedBy, deniedBy         *lowCardinalityArray
	packets, bytes, netns       *proto.ColUInt64
	firstOff, lastOff           *proto.ColInt64
	obsPoint, dropClass         *lowCardinality[string]
	extra                       *proto.ColStr
	present, policyEgress       *proto.ColUInt16
	dns                         dnsColumnsOf
	tcp                         tcpColumnsOf
	batch                       *proto.ColUInt64 // BatchID per row; inserted, never read back

	// input names the columns in flowColumnNames order, then batch.
	input proto.Input

	// Per-insert cache: many flows carry the same policies, so their names
	// and encoding are computed once per insert and distinct policy set
	// (appendPolicyKey); policyKey is the reused key buffer.
	policyCache map[string]policyEnc
	policyKey   []byte
}

func newFlowColumns() *flowColumns {
	c := &flowColumns{
		time: dateTime64(), idHi: new(proto.ColUInt64), idLo: new(proto.ColUInt64), uuidRaw: new(proto.ColStr),
		node: newLowCardinalityString(), verdict: new(enumColumn), kind: new(enumColumn), direction: new(enumColumn),
		flowType: new(proto.ColUInt8), ipVersion: new(proto.ColUInt8), l4Kind: new(proto.ColUInt8),
		dropDesc: newLowCardinalityString(), dropKernel: newLowCardinalityString(),
		srcIP: newLowCardinalityIPv6(), dstIP: newLowCardinalityIPv6(),
		srcPort: new(proto.ColUInt16), dstPort: new(proto.ColUInt16), tcpFlags: new(proto.ColUInt16),
		src: newEndpointColumns(), dst: newEndpointColumns(),
		isReply: new(proto.ColUInt8), ifIndex: new(proto.ColUInt32), ifName: newLowCardinalityString(),
		allowedBy: newLowCardinalityArray(), deniedBy: newLowCardinalityArray(),
		packets: new(proto.ColUInt64), bytes: new(proto.ColUInt64), netns: new(proto.ColUInt64),
		firstOff: new(proto.ColInt64), lastOff: new(proto.ColInt64),
		obsPoint: newLowCardinalityString(), dropClass: newLowCardinalityString(), extra: new(proto.ColStr),
		present: new(proto.ColUInt16), policyEgress: new(proto.ColUInt16),
		dns: dnsColumnsOf{
			l7Type: newLowCardinalityString(), query: new(proto.ColStr), rcode: newLowCardinalityString(), latency: new(proto.ColUInt64),
			qtypes: newLowCardinalityArray(), rrtypes: newLowCardinalityArray(), ips: newStringArray(), cnames: newStringArray(),
			ttl: new(proto.ColUInt32),
		},
		tcp: tcpColumnsOf{
			synAck: new(proto.ColUInt64), ack: new(proto.ColUInt64), retransmits: new(proto.ColUInt32),
			zeroWindows: new(proto.ColUInt32), resetBy: newLowCardinalityString(),
		},
		batch: new(proto.ColUInt64),
	}
	c.input = namedInput(flowInsertNames,
		c.time, c.idHi, c.idLo, c.uuidRaw, c.node, c.verdict, c.kind, c.flowType, c.direction,
		c.dropDesc, c.dropKernel, c.ipVersion, c.srcIP, c.dstIP, c.l4Kind, c.srcPort, c.dstPort, c.tcpFlags,
		c.src.ns, c.src.pod, c.src.wl, c.src.wlKind, c.src.labels, c.src.moreNames, c.src.moreKind, c.src.svcNS, c.src.svc, c.src.names,
		c.dst.ns, c.dst.pod, c.dst.wl, c.dst.wlKind, c.dst.labels, c.dst.moreNames, c.dst.moreKind, c.dst.svcNS, c.dst.svc, c.dst.names,
		c.isReply, c.ifIndex, c.ifName, c.allowedBy, c.deniedBy, c.packets, c.bytes,
		c.firstOff, c.lastOff, c.netns, c.obsPoint, c.present, c.extra, c.dropClass,
		c.dns.l7Type, c.dns.latency, c.dns.query, c.dns.rcode, c.dns.qtypes, c.dns.rrtypes, c.dns.ips, c.dns.cnames, c.dns.ttl,
		c.tcp.synAck, c.tcp.ack, c.tcp.retransmits, c.tcp.resetBy, c.tcp.zeroWindows,
		c.policyEgress,
		c.batch,
	)
	return c
}

// dnsColumnsOf are the L7 columns (schema version 4).
type dnsColumnsOf struct {
	l7Type, rcode   *lowCardinality[string]
	query           *proto.ColStr
	latency         *proto.ColUInt64
	qtypes, rrtypes *lowCardinalityArray
	ips, cnames     *stringArray
	ttl             *proto.ColUInt32
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
	d.l7Type.add(l7TypeName(l7.GetType()))
	d.latency.Append(l7.GetLatencyNs())
	d.query.Append(dns.GetQuery())
	d.rcode.add(rcode)
	d.qtypes.add(dns.GetQtypes())
	d.rrtypes.add(dns.GetRrtypes())
	d.ips.add(dns.GetIps())
	d.cnames.add(dns.GetCnames())
	d.ttl.Append(dns.GetTtl())
	return present
}

// tcpColumnsOf are the TCP health columns (schema version 5).
type tcpColumnsOf struct {
	synAck, ack              *proto.ColUInt64
	retransmits, zeroWindows *proto.ColUInt32
	resetBy                  *lowCardinality[string]
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
	t.synAck.Append(durationNs(h.GetHandshakeSynAck(), h.GetHandshakeSynAck() != nil))
	t.ack.Append(durationNs(h.GetHandshakeAck(), h.GetHandshakeAck() != nil))
	t.retransmits.Append(h.GetRetransmits())
	t.resetBy.add(tcpSideName(h.GetResetBy()))
	t.zeroWindows.Append(h.GetZeroWindows())
	return present
}

// appendPolicyKey appends a key that two flows share only when their four
// policy lists are equal field by field (unknown fields included), which is
// all that their names, policy_egress and extra depend on. A content key,
// not the policies' addresses: flows decoded from the wire carry their own
// Policy messages, so addresses would miss on every flow.
func appendPolicyKey(key []byte, lists *[4][]*flowv1.Policy) []byte {
	for _, list := range lists {
		key = binary.AppendUvarint(key, uint64(len(list)))
		for _, p := range list {
			key = appendPolicyKeyEntry(key, p.GetName(), p.GetNamespace(), p.GetKind(), p.GetRevision(), p.GetLabels(), p.ProtoReflect().GetUnknown())
		}
	}
	return key
}

// appendPolicyKeyEntry appends one policy to a key (appendPolicyKey).
func appendPolicyKeyEntry(key []byte, name, namespace, kind string, revision uint64, labels []string, unknown []byte) []byte {
	str := func(s string) {
		key = binary.AppendUvarint(key, uint64(len(s)))
		key = append(key, s...)
	}
	str(name)
	str(namespace)
	str(kind)
	key = binary.AppendUvarint(key, revision)
	key = binary.AppendUvarint(key, uint64(len(labels)))
	for _, l := range labels {
		str(l)
	}
	str(string(unknown))
	return key
}

type policyEnc struct {
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

func (c *flowColumns) len() int { return c.time.Rows() }

func (c *flowColumns) reset() {
	for _, col := range c.input {
		col.Data.(proto.Resettable).Reset()
	}
	clear(c.policyCache)
}

// policies returns the allowed/denied name lists of a flow, its
// policy_egress and, when the policies are all the flow needs beyond its
// columns and the names cannot rebuild them, its extra encoding.
func (c *flowColumns) policies(f *flowv1.Flow) (allowed, denied []string, extra string, egress uint16) {
	lists := [4][]*flowv1.Policy{f.EgressAllowedBy, f.IngressAllowedBy, f.EgressDeniedBy, f.IngressDeniedBy}
	if len(lists[0])+len(lists[1])+len(lists[2])+len(lists[3]) == 0 {
		return nil, nil, "", 0
	}
	c.policyKey = appendPolicyKey(c.policyKey[:0], &lists)
	if e, ok := c.policyCache[string(c.policyKey)]; ok {
		return e.allowed, e.denied, e.extra, e.egress
	}
	e := policyEnc{
		allowed: policyNames(nil, f.EgressAllowedBy, f.IngressAllowedBy),
		denied:  policyNames(nil, f.EgressDeniedBy, f.IngressDeniedBy),
	}
	var byName bool
	if e.egress, byName = policiesByName(f); !byName {
		x := flowv1.Flow{EgressAllowedBy: f.EgressAllowedBy, IngressAllowedBy: f.IngressAllowedBy, EgressDeniedBy: f.EgressDeniedBy, IngressDeniedBy: f.IngressDeniedBy}
		b, _ := gproto.MarshalOptions{Deterministic: true}.Marshal(&x)
		e.extra = string(b)
	}
	if c.policyCache == nil {
		c.policyCache = map[string]policyEnc{}
	}
	c.policyCache[string(c.policyKey)] = e
	return e.allowed, e.denied, e.extra, e.egress
}

// values are the columns as the Go slices clickhouse-go takes, in
// flowColumnNames order: for benchmarks that compare the writer with a raw
// clickhouse-go insert of the same rows (Columns). Not on the insert path.
func (c *flowColumns) values() []any {
	out := make([]any, 0, len(flowColumnNames))
	for _, col := range c.input[:len(flowColumnNames)] {
		out = append(out, goValues(col.Data))
	}
	return out
}

func goValues(col proto.ColInput) any {
	switch c := col.(type) {
	case *proto.ColDateTime64:
		out := make([]time.Time, len(c.Data))
		for i, v := range c.Data {
			out[i] = v.Time(proto.PrecisionNano).UTC()
		}
		return out
	case *proto.ColUInt8:
		return []uint8(*c)
	case *proto.ColUInt16:
		return []uint16(*c)
	case *proto.ColUInt32:
		return []uint32(*c)
	case *proto.ColUInt64:
		return []uint64(*c)
	case *proto.ColInt64:
		return []int64(*c)
	case *enumColumn:
		out := make([]int8, len(c.ColEnum8))
		for i, v := range c.ColEnum8 {
			out[i] = int8(v)
		}
		return out
	case *proto.ColStr:
		out := make([]string, c.Rows())
		for i := range out {
			out[i] = c.Row(i)
		}
		return out
	case *lowCardinality[string]:
		out := make([]string, c.Rows())
		for i := range out {
			out[i] = c.value(i)
		}
		return out
	case *lowCardinality[proto.IPv6]:
		out := make([][16]byte, c.Rows())
		for i := range out {
			out[i] = c.value(i)
		}
		return out
	case *lowCardinalityArray:
		out := make([][]string, c.Rows())
		for i := range out {
			out[i] = c.value(i)
		}
		return out
	case *stringArray:
		out := make([][]string, c.Rows())
		for i := range out {
			out[i] = c.value(i)
		}
		return out
	}
	panic(fmt.Sprintf("no Go slice for column type %T", col))
}

// enumValue keeps enum values the schema knows; unknown ones (a newer agent)
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
	e.ns.add(ep.GetNamespace())
	e.pod.add(ep.GetPodName())
	e.labels.add(ep.GetLabels())
	wls := ep.GetWorkloads()
	var wl, kind string
	if len(wls) > 0 {
		wl, kind = wls[0].GetName(), wls[0].GetKind()
		for _, w := range wls[1:] {
			e.moreNames.push(w.GetName())
			e.moreKind.push(w.GetKind())
		}
	}
	e.moreNames.endRow()
	e.moreKind.endRow()
	e.wl.add(wl)
	e.wlKind.add(kind)
	e.svcNS.add(svc.GetNamespace())
	e.svc.add(svc.GetName())
	e.names.add(names)
}

// add appends one flow.
func (c *flowColumns) add(f *flowv1.Flow) {
	var present uint16
	t := time.Unix(0, 0).UTC()
	if f.Time != nil {
		present |= hasTime
		t = f.Time.AsTime()
	}
	c.time.Append(t)
	if hi, lo, ok := ParseUUID(f.GetUuid()); ok {
		c.idHi.Append(hi)
		c.idLo.Append(lo)
		c.uuidRaw.Append("")
	} else {
		c.idHi.Append(0)
		c.idLo.Append(0)
		c.uuidRaw.Append(f.GetUuid())
	}
	c.node.add(f.GetNodeName())
	c.verdict.Append(proto.Enum8(enumValue(int32(f.GetVerdict()), flowv1.Verdict_name)))
	c.kind.Append(proto.Enum8(enumValue(int32(f.GetEventKind()), eventKinds)))
	c.direction.Append(proto.Enum8(enumValue(int32(f.GetTrafficDirection()), flowv1.TrafficDirection_name)))
	c.flowType.Append(uint8(f.GetType()))
	c.dropDesc.add(f.GetDropReasonDesc())
	c.dropKernel.add(f.GetDropReasonKernel())
	c.dropClass.add(f.GetDropClass())
	if f.IP != nil {
		present |= hasIP
	}
	c.ipVersion.Append(uint8(f.GetIP().GetIpVersion()))
	c.srcIP.add(filter.AddrBytes(f.GetIP().GetSource()))
	c.dstIP.add(filter.AddrBytes(f.GetIP().GetDestination()))
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
	c.l4Kind.Append(l4.Protocol(f))
	c.srcPort.Append(uint16(sp))
	c.dstPort.Append(uint16(dp))
	c.tcpFlags.Append(flags)
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
	c.isReply.Append(reply)
	if f.Interface != nil {
		present |= hasInterface
	}
	c.ifIndex.Append(f.GetInterface().GetIndex())
	c.ifName.add(f.GetInterface().GetName())
	allowed, denied, polExtra, egress := c.policies(f)
	c.allowedBy.add(allowed)
	c.deniedBy.add(denied)
	c.packets.Append(f.GetPackets())
	c.bytes.Append(f.GetBytes())
	var fo, lo int64
	if f.FirstSeen != nil {
		present |= hasFirstSeen
		fo = t.Sub(f.FirstSeen.AsTime()).Nanoseconds()
	}
	if f.LastSeen != nil {
		present |= hasLastSeen
		lo = t.Sub(f.LastSeen.AsTime()).Nanoseconds()
	}
	c.firstOff.Append(fo)
	c.lastOff.Append(lo)
	c.netns.Append(f.GetNetns())
	c.obsPoint.add(f.GetObservationPoint())
	present |= c.dns.add(f)
	present |= c.tcp.add(f)
	c.present.Append(present)
	if ex := extraOf(f, false); ex != "" {
		c.extra.Append(ex)
		egress = 0 // ex holds the policies too
	} else {
		c.extra.Append(polExtra) // policies are the only extra fields
	}
	c.policyEgress.Append(egress)
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
	b, err := gproto.MarshalOptions{Deterministic: true}.Marshal(&x)
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
		if err := gproto.Unmarshal([]byte(r.extra), &x); err != nil {
			return nil, fmt.Errorf("decode extra fields of flow %s: %w", f.Uuid, err)
		}
		gproto.Merge(f, &x)
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
type Columns struct{ c *flowColumns }

// Add appends a flow.
func (c *Columns) Add(f *flowv1.Flow) {
	if c.c == nil {
		c.c = newFlowColumns()
	}
	c.c.add(f)
}

// Len is the number of rows.
func (c *Columns) Len() int {
	if c.c == nil {
		return 0
	}
	return c.c.len()
}

// Values are the columns as Go slices, in FlowColumnNames order, for
// clickhouse-go's driver.Batch.Column(i).Append.
func (c *Columns) Values() []any {
	if c.c == nil {
		c.c = newFlowColumns()
	}
	return c.c.values()
}

// FlowColumnNames are the flows table's inserted columns, in order.
func FlowColumnNames() []string { return append([]string(nil), flowColumnNames...) }

// copyRows appends rows [start, end) of src (the writer's insert of batches
// some of which turned out to be stored already: the rest are inserted
// alone). Not on the usual insert path.
func (c *flowColumns) copyRows(src *flowColumns, start, end int) {
	for i, col := range c.input {
		copyColumnRows(col.Data, src.input[i].Data, start, end)
	}
}

func copyColumnRows(dst, src proto.ColInput, start, end int) {
	switch d := dst.(type) {
	case *proto.ColDateTime64:
		d.Data = append(d.Data, src.(*proto.ColDateTime64).Data[start:end]...)
	case *proto.ColUInt8:
		*d = append(*d, (*src.(*proto.ColUInt8))[start:end]...)
	case *proto.ColUInt16:
		*d = append(*d, (*src.(*proto.ColUInt16))[start:end]...)
	case *proto.ColUInt32:
		*d = append(*d, (*src.(*proto.ColUInt32))[start:end]...)
	case *proto.ColUInt64:
		*d = append(*d, (*src.(*proto.ColUInt64))[start:end]...)
	case *proto.ColInt64:
		*d = append(*d, (*src.(*proto.ColInt64))[start:end]...)
	case *enumColumn:
		d.ColEnum8 = append(d.ColEnum8, src.(*enumColumn).ColEnum8[start:end]...)
		d.t = src.(*enumColumn).t
	case *proto.ColStr:
		s := src.(*proto.ColStr)
		for i := start; i < end; i++ {
			d.AppendBytes(s.RowBytes(i))
		}
	case *lowCardinality[string]:
		s := src.(*lowCardinality[string])
		for i := start; i < end; i++ {
			d.add(s.value(i))
		}
	case *lowCardinality[proto.IPv6]:
		s := src.(*lowCardinality[proto.IPv6])
		for i := start; i < end; i++ {
			d.add(s.value(i))
		}
	case *lowCardinalityArray:
		s := src.(*lowCardinalityArray)
		for i := start; i < end; i++ {
			from, to := s.row(i)
			for j := from; j < to; j++ {
				d.push(s.elems.value(j))
			}
			d.endRow()
		}
	case *stringArray:
		s := src.(*stringArray)
		for i := start; i < end; i++ {
			from, to := s.row(i)
			for j := from; j < to; j++ {
				d.push(s.elems.Row(j))
			}
			d.endRow()
		}
	default:
		panic(fmt.Sprintf("no row copy for column type %T", dst))
	}
}

// memBytes is about the memory the columns hold (their capacity).
func (c *flowColumns) memBytes() int {
	n := 0
	for _, col := range c.input {
		n += columnBytes(col.Data)
	}
	return n
}

func columnBytes(col proto.ColInput) int {
	switch c := col.(type) {
	case *proto.ColDateTime64:
		return 8 * cap(c.Data)
	case *proto.ColUInt8:
		return cap(*c)
	case *proto.ColUInt16:
		return 2 * cap(*c)
	case *proto.ColUInt32:
		return 4 * cap(*c)
	case *proto.ColUInt64:
		return 8 * cap(*c)
	case *proto.ColInt64:
		return 8 * cap(*c)
	case *proto.ColIPv6:
		return 16 * cap(*c)
	case *enumColumn:
		return cap(c.ColEnum8)
	case *proto.ColStr:
		return cap(c.Buf) + 16*cap(c.Pos)
	case *lowCardinality[string]:
		return c.memBytes()
	case *lowCardinality[proto.IPv6]:
		return c.memBytes()
	case *lowCardinalityArray:
		return 8*cap(c.offsets) + c.elems.memBytes()
	case *stringArray:
		return 8*cap(c.offsets) + columnBytes(c.elems)
	}
	panic(fmt.Sprintf("no size for column type %T", col))
}
