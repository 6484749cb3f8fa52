package jsonl

import (
	"bytes"
	"encoding/json"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

var slowMarshal = protojson.MarshalOptions{UseProtoNames: true}

// Append appends r as one compact JSON object (no newline), exactly as
// protojson with proto names writes it, minus its varying spaces.
func Append(b []byte, r *observerv1.GetFlowsResponse) ([]byte, error) {
	e := encoder{b: b}
	if e.response(r) {
		return e.b, nil
	}
	// Something the fast path leaves to protojson (an escaped string, a
	// conntrack or node-status record): its output, compacted.
	out, err := slowMarshal.Marshal(r)
	if err != nil {
		return b, err
	}
	var c bytes.Buffer
	c.Grow(len(out))
	if err := json.Compact(&c, out); err != nil {
		return b, err
	}
	return append(b, c.Bytes()...), nil
}

type encoder struct {
	b     []byte
	first bool // no member written yet in the current object
	ok    bool
}

func (e *encoder) open() {
	e.b = append(e.b, '{')
	e.first = true
}

func (e *encoder) close() {
	e.b = append(e.b, '}')
	e.first = false
}

func (e *encoder) key(k string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

// plain reports whether s can be written between quotes as is.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

func (e *encoder) strVal(s string) {
	if !plain(s) {
		e.ok = false
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, s...)
	e.b = append(e.b, '"')
}

func (e *encoder) str(k, v string) {
	if v != "" {
		e.key(k)
		e.strVal(v)
	}
}

func (e *encoder) strs(k string, vs []string) {
	if len(vs) == 0 {
		return
	}
	e.key(k)
	e.b = append(e.b, '[')
	for i, v := range vs {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.strVal(v)
	}
	e.b = append(e.b, ']')
}

func (e *encoder) u32(k string, v uint32) {
	if v != 0 {
		e.key(k)
		e.b = strconv.AppendUint(e.b, uint64(v), 10)
	}
}

func (e *encoder) u64(k string, v uint64) {
	if v != 0 {
		e.key(k)
		e.b = append(e.b, '"')
		e.b = strconv.AppendUint(e.b, v, 10)
		e.b = append(e.b, '"')
	}
}

func (e *encoder) boolean(k string, v bool) {
	if v {
		e.key(k)
		e.b = append(e.b, "true"...)
	}
}

func (e *encoder) enum(k string, v int32, names map[int32]string) {
	if v == 0 {
		return
	}
	e.key(k)
	if n, ok := names[v]; ok {
		e.b = append(e.b, '"')
		e.b = append(e.b, n...)
		e.b = append(e.b, '"')
		return
	}
	e.b = strconv.AppendInt(e.b, int64(v), 10)
}

// timestamp writes RFC 3339 in UTC with 0, 3, 6 or 9 fraction digits, as protojson.
func (e *encoder) timestamp(k string, t *timestamppb.Timestamp) {
	if t == nil {
		return
	}
	if !t.IsValid() {
		e.ok = false // protojson reports the error
		return
	}
	e.key(k)
	e.b = append(e.b, '"')
	e.b = t.AsTime().AppendFormat(e.b, "2006-01-02T15:04:05")
	e.b = appendFraction(e.b, t.GetNanos())
	e.b = append(e.b, 'Z', '"')
}

// maxDurationSeconds is the largest Duration protojson writes (10,000 years).
const maxDurationSeconds = 315576000000

// duration writes seconds with 0, 3, 6 or 9 fraction digits and an "s", as
// protojson ("0.000400s", "-1.500s", "3s"); it leaves durations protojson
// refuses (out of range, mixed signs) to protojson.
func (e *encoder) duration(k string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	secs, nanos := d.GetSeconds(), d.GetNanos()
	if secs < -maxDurationSeconds || secs > maxDurationSeconds || nanos <= -1e9 || nanos >= 1e9 ||
		secs > 0 && nanos < 0 || secs < 0 && nanos > 0 {
		e.ok = false
		return
	}
	e.key(k)
	e.b = append(e.b, '"')
	if secs < 0 || nanos < 0 {
		e.b = append(e.b, '-')
		secs, nanos = -secs, -nanos
	}
	e.b = strconv.AppendInt(e.b, secs, 10)
	e.b = appendFraction(e.b, nanos)
	e.b = append(e.b, 's', '"')
}

// appendFraction writes ".ddd", ".dddddd" or ".ddddddddd" for non-zero
// nanoseconds (the fewest groups of three that hold them), nothing for 0.
func appendFraction(b []byte, n int32) []byte {
	if n == 0 {
		return b
	}
	var frac [10]byte
	digits := strconv.AppendInt(frac[:0], int64(n)+1e9, 10)[1:] // nine digits
	switch {
	case n%1e6 == 0:
		digits = digits[:3]
	case n%1e3 == 0:
		digits = digits[:6]
	}
	b = append(b, '.')
	return append(b, digits...)
}

func (e *encoder) response(r *observerv1.GetFlowsResponse) bool {
	e.ok = true
	e.open()
	switch {
	case r.GetFlow() != nil:
		e.key("flow")
		e.flow(r.GetFlow())
	case r.GetLostEvents() != nil:
		e.key("lost_events")
		e.lost(r.GetLostEvents())
	case r.ResponseTypes != nil:
		return false
	}
	e.str("node_name", r.GetNodeName())
	e.timestamp("time", r.GetTime())
	e.close()
	return e.ok
}

func (e *encoder) lost(l *flowv1.LostEvent) {
	e.open()
	e.enum("source", int32(l.GetSource()), flowv1.LostEventSource_name)
	e.u64("num_events_lost", l.GetNumEventsLost())
	if c := l.GetCpu(); c != nil {
		e.key("cpu")
		e.b = strconv.AppendInt(e.b, int64(c.GetValue()), 10)
	}
	e.str("node_name", l.GetNodeName())
	e.timestamp("time", l.GetTime())
	e.str("detail", l.GetDetail())
	e.close()
}

func (e *encoder) flow(f *flowv1.Flow) {
	e.open()
	e.timestamp("time", f.GetTime())
	e.str("uuid", f.GetUuid())
	e.enum("verdict", int32(f.GetVerdict()), flowv1.Verdict_name)
	e.str("drop_reason_desc", f.GetDropReasonDesc())
	if eth := f.GetEthernet(); eth != nil {
		e.key("ethernet")
		e.open()
		e.str("source", eth.GetSource())
		e.str("destination", eth.GetDestination())
		e.close()
	}
	if ip := f.GetIP(); ip != nil {
		e.key("IP")
		e.open()
		e.str("source", ip.GetSource())
		e.str("destination", ip.GetDestination())
		e.enum("ipVersion", int32(ip.GetIpVersion()), flowv1.IPVersion_name)
		e.boolean("encrypted", ip.GetEncrypted())
		e.close()
	}
	if l4 := f.GetL4(); l4 != nil {
		e.key("l4")
		e.l4(l4)
	}
	if ep := f.GetSource(); ep != nil {
		e.key("source")
		e.endpoint(ep)
	}
	if ep := f.GetDestination(); ep != nil {
		e.key("destination")
		e.endpoint(ep)
	}
	e.enum("Type", int32(f.GetType()), flowv1.FlowType_name)
	e.str("node_name", f.GetNodeName())
	if l7 := f.GetL7(); l7 != nil {
		e.key("l7")
		e.l7(l7)
	}
	e.strs("source_names", f.GetSourceNames())
	e.strs("destination_names", f.GetDestinationNames())
	if r := f.GetIsReply(); r != nil {
		e.key("is_reply")
		e.b = strconv.AppendBool(e.b, r.GetValue())
	}
	if s := f.GetSourceService(); s != nil {
		e.key("source_service")
		e.service(s)
	}
	if s := f.GetDestinationService(); s != nil {
		e.key("destination_service")
		e.service(s)
	}
	e.enum("traffic_direction", int32(f.GetTrafficDirection()), flowv1.TrafficDirection_name)
	if ifc := f.GetInterface(); ifc != nil {
		e.key("interface")
		e.open()
		e.u32("index", ifc.GetIndex())
		e.str("name", ifc.GetName())
		e.close()
	}
	e.policies("egress_allowed_by", f.GetEgressAllowedBy())
	e.policies("ingress_allowed_by", f.GetIngressAllowedBy())
	e.policies("egress_denied_by", f.GetEgressDeniedBy())
	e.policies("ingress_denied_by", f.GetIngressDeniedBy())
	e.enum("event_kind", int32(f.GetEventKind()), flowv1.EventKind_name)
	e.timestamp("first_seen", f.GetFirstSeen())
	e.timestamp("last_seen", f.GetLastSeen())
	e.u64("packets", f.GetPackets())
	e.u64("bytes", f.GetBytes())
	e.str("drop_reason_kernel", f.GetDropReasonKernel())
	e.u64("netns", f.GetNetns())
	e.str("observation_point", f.GetObservationPoint())
	if c := f.GetConntrack(); c != nil {
		e.key("conntrack")
		e.open()
		e.boolean("new_entry", c.GetNewEntry())
		e.close()
	}
	e.str("drop_class", f.GetDropClass())
	if h := f.GetTcpHealth(); h != nil {
		e.key("tcp_health")
		e.open()
		e.duration("handshake_syn_ack", h.GetHandshakeSynAck())
		e.duration("handshake_ack", h.GetHandshakeAck())
		e.u32("retransmits", h.GetRetransmits())
		e.enum("reset_by", int32(h.GetResetBy()), flowv1.TCPSide_name)
		e.u32("zero_windows", h.GetZeroWindows())
		e.close()
	}
	e.close()
}

func (e *encoder) l4(l *flowv1.Layer4) {
	e.open()
	switch {
	case l.GetTCP() != nil:
		t := l.GetTCP()
		e.key("TCP")
		e.open()
		e.u32("source_port", t.GetSourcePort())
		e.u32("destination_port", t.GetDestinationPort())
		if fl := t.GetFlags(); fl != nil {
			e.key("flags")
			e.open()
			e.boolean("FIN", fl.GetFIN())
			e.boolean("SYN", fl.GetSYN())
			e.boolean("RST", fl.GetRST())
			e.boolean("PSH", fl.GetPSH())
			e.boolean("ACK", fl.GetACK())
			e.boolean("URG", fl.GetURG())
			e.boolean("ECE", fl.GetECE())
			e.boolean("CWR", fl.GetCWR())
			e.boolean("NS", fl.GetNS())
			e.close()
		}
		e.close()
	case l.GetUDP() != nil:
		e.key("UDP")
		e.open()
		e.u32("source_port", l.GetUDP().GetSourcePort())
		e.u32("destination_port", l.GetUDP().GetDestinationPort())
		e.close()
	case l.GetSCTP() != nil:
		e.key("SCTP")
		e.open()
		e.u32("source_port", l.GetSCTP().GetSourcePort())
		e.u32("destination_port", l.GetSCTP().GetDestinationPort())
		e.close()
	case l.GetICMPv4() != nil:
		e.key("ICMPv4")
		e.open()
		e.u32("type", l.GetICMPv4().GetType())
		e.u32("code", l.GetICMPv4().GetCode())
		e.close()
	case l.GetICMPv6() != nil:
		e.key("ICMPv6")
		e.open()
		e.u32("type", l.GetICMPv6().GetType())
		e.u32("code", l.GetICMPv6().GetCode())
		e.close()
	case l.Protocol != nil:
		e.ok = false // a oneof member set to nil: protojson's business
	}
	e.close()
}

func (e *encoder) l7(l *flowv1.Layer7) {
	e.open()
	e.enum("type", int32(l.GetType()), flowv1.L7FlowType_name)
	e.u64("latency_ns", l.GetLatencyNs())
	switch {
	case l.GetDns() != nil:
		d := l.GetDns()
		e.key("dns")
		e.open()
		e.str("query", d.GetQuery())
		e.strs("ips", d.GetIps())
		e.u32("ttl", d.GetTtl())
		e.strs("cnames", d.GetCnames())
		e.str("observation_source", d.GetObservationSource())
		e.u32("rcode", d.GetRcode())
		e.strs("qtypes", d.GetQtypes())
		e.strs("rrtypes", d.GetRrtypes())
		e.close()
	case l.Record != nil:
		e.ok = false // a oneof member set to nil: protojson's business
	}
	e.close()
}

func (e *encoder) endpoint(ep *flowv1.Endpoint) {
	e.open()
	e.u32("ID", ep.GetID())
	e.u32("identity", ep.GetIdentity())
	e.str("cluster_name", ep.GetClusterName())
	e.str("namespace", ep.GetNamespace())
	e.strs("labels", ep.GetLabels())
	e.str("pod_name", ep.GetPodName())
	if ws := ep.GetWorkloads(); len(ws) > 0 {
		e.key("workloads")
		e.b = append(e.b, '[')
		for i, w := range ws {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.open()
			e.str("name", w.GetName())
			e.str("kind", w.GetKind())
			e.close()
		}
		e.b = append(e.b, ']')
	}
	e.str("node_name", ep.GetNodeName())
	e.close()
}

func (e *encoder) service(s *flowv1.Service) {
	e.open()
	e.str("name", s.GetName())
	e.str("namespace", s.GetNamespace())
	e.close()
}

func (e *encoder) policies(k string, ps []*flowv1.Policy) {
	if len(ps) == 0 {
		return
	}
	e.key(k)
	e.b = append(e.b, '[')
	for i, p := range ps {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.open()
		e.str("name", p.GetName())
		e.str("namespace", p.GetNamespace())
		e.strs("labels", p.GetLabels())
		e.u64("revision", p.GetRevision())
		e.str("kind", p.GetKind())
		e.close()
	}
	e.b = append(e.b, ']')
}
