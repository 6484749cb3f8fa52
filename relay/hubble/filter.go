package hubble

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/filter"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Hubble's FlowFilter is translated into Trawl's, so that one filter
// implementation (internal/filter for live records, its SQL translation in
// relay/store for history) decides both APIs. Every field Trawl can
// evaluate exactly is translated; any other set field is refused with
// InvalidArgument naming it, never ignored. Where Hubble's meaning needs
// more than one Trawl filter, a Hubble filter becomes several (their union):
// an event_type list mixing kinds, and reply=false, which Hubble also
// matches on drops of unknown direction.

// neverUUID is a uuid no Trawl record has (flow ids are UUID v5/v8 and
// carry version bits): a filter on it matches no flow. A Hubble allow
// filter that no Trawl record can match becomes this filter, so the allow
// list still excludes every flow (lost-events records still pass it, as
// every allow filter lets them: lost data is never hidden).
const neverUUID = "00000000-0000-0000-0000-000000000000"

// supportedFields are the FlowFilter fields translated (by proto name).
var supportedFields = map[protoreflect.Name]bool{
	"uuid": true, "source_ip": true, "source_pod": true, "source_fqdn": true, "source_label": true,
	"source_service": true, "source_workload": true, "destination_ip": true, "destination_pod": true,
	"destination_fqdn": true, "destination_label": true, "destination_service": true,
	"destination_workload": true, "traffic_direction": true, "verdict": true, "drop_reason_desc": true,
	"interface": true, "event_type": true, "protocol": true, "source_port": true, "destination_port": true,
	"reply": true, "tcp_flags": true, "node_name": true, "ip_version": true, "dns_query": true,
}

// unsupportedWhy explains the fields Trawl refuses.
var unsupportedWhy = map[protoreflect.Name]string{
	"source_ip_xlated":         "Trawl records no SNAT-translated source address",
	"source_cluster_name":      "Trawl records no cluster names",
	"destination_cluster_name": "Trawl records no cluster names",
	"http_status_code":         "Trawl records no HTTP (L7) flows",
	"http_method":              "Trawl records no HTTP (L7) flows",
	"http_path":                "Trawl records no HTTP (L7) flows",
	"http_url":                 "Trawl records no HTTP (L7) flows",
	"http_header":              "Trawl records no HTTP (L7) flows",
	"source_identity":          "Trawl's filter has no numeric identities; use source_label (e.g. reserved:world) or source_pod",
	"destination_identity":     "Trawl's filter has no numeric identities; use destination_label (e.g. reserved:world) or destination_pod",
	"node_labels":              "Trawl records no node labels on flows",
	"trace_id":                 "Trawl records no trace context",
	"ip_trace_id":              "Trawl records no IP trace ids",
	"encrypted":                "Trawl cannot filter on encryption",
	"experimental":             "Trawl does not evaluate CEL expressions",
}

func invalid(list string, i int, field, format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s[%d].%s: %s", list, i, field, fmt.Sprintf(format, a...))
}

// TranslateFilters translates Hubble's whitelist and blacklist into Trawl's
// allow and deny lists. Errors are gRPC InvalidArgument statuses naming the
// list, the filter's index and the field.
func TranslateFilters(whitelist, blacklist []*flowpb.FlowFilter) (allow, deny []*observerv1.FlowFilter, err error) {
	for i, ff := range whitelist {
		fs, err := translateFilter("whitelist", i, ff)
		if err != nil {
			return nil, nil, err
		}
		if err := check("whitelist", i, fs); err != nil {
			return nil, nil, err
		}
		if len(fs) == 0 {
			fs = []*observerv1.FlowFilter{{Uuid: []string{neverUUID}}}
		}
		allow = append(allow, fs...)
	}
	for i, ff := range blacklist {
		fs, err := translateFilter("blacklist", i, ff)
		if err != nil {
			return nil, nil, err
		}
		if err := check("blacklist", i, fs); err != nil {
			return nil, nil, err
		}
		deny = append(deny, fs...) // a filter that matches nothing excludes nothing
	}
	return allow, deny, nil
}

// check compiles the translation of a Hubble filter with Trawl's filter,
// so that a value Trawl refuses (a bad address, port or selector) is named
// with Hubble's list and index, not the translated list's.
func check(list string, i int, fs []*observerv1.FlowFilter) error {
	for _, f := range fs {
		if _, err := filter.Compile([]*observerv1.FlowFilter{f}, nil); err != nil {
			if inner := errors.Unwrap(err); inner != nil {
				err = inner
			}
			return status.Errorf(codes.InvalidArgument, "%s[%d].%v", list, i, err)
		}
	}
	return nil
}

// translateFilter returns the Trawl filters whose union is ff; none when
// no Trawl record can match ff.
func translateFilter(list string, i int, ff *flowpb.FlowFilter) ([]*observerv1.FlowFilter, error) {
	if ff == nil {
		return []*observerv1.FlowFilter{{}}, nil
	}
	var bad error
	ff.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := fd.Name()
		if supportedFields[name] {
			return true
		}
		why, ok := unsupportedWhy[name]
		if !ok {
			why = "not supported by Trawl"
		}
		bad = invalid(list, i, string(name), "%s", why)
		return false
	})
	if bad != nil {
		return nil, bad
	}
	t := &observerv1.FlowFilter{
		Uuid:             ff.GetUuid(),
		SourceIp:         ff.GetSourceIp(),
		DestinationIp:    ff.GetDestinationIp(),
		SourceLabel:      ff.GetSourceLabel(),
		DestinationLabel: ff.GetDestinationLabel(),
		SourcePort:       ff.GetSourcePort(),
		DestinationPort:  ff.GetDestinationPort(),
		Reply:            ff.GetReply(),
		DnsQuery:         ff.GetDnsQuery(),
	}
	var err error
	if t.SourcePod, err = namespacedNames(list, i, "source_pod", ff.GetSourcePod()); err != nil {
		return nil, err
	}
	if t.DestinationPod, err = namespacedNames(list, i, "destination_pod", ff.GetDestinationPod()); err != nil {
		return nil, err
	}
	if t.SourceService, err = namespacedNames(list, i, "source_service", ff.GetSourceService()); err != nil {
		return nil, err
	}
	if t.DestinationService, err = namespacedNames(list, i, "destination_service", ff.GetDestinationService()); err != nil {
		return nil, err
	}
	t.SourceFqdn = fqdnPatterns(ff.GetSourceFqdn())
	t.DestinationFqdn = fqdnPatterns(ff.GetDestinationFqdn())
	t.SourceWorkload = workloads(ff.GetSourceWorkload())
	t.DestinationWorkload = workloads(ff.GetDestinationWorkload())
	for _, d := range ff.GetTrafficDirection() {
		t.TrafficDirection = append(t.TrafficDirection, flowv1.TrafficDirection(d))
	}
	for _, v := range ff.GetVerdict() {
		t.Verdict = append(t.Verdict, flowv1.Verdict(v))
	}
	for _, v := range ff.GetIpVersion() {
		t.IpVersion = append(t.IpVersion, flowv1.IPVersion(v))
	}
	for _, r := range ff.GetDropReasonDesc() {
		if r == flowpb.DropReason_DROP_REASON_UNKNOWN {
			return nil, invalid(list, i, "drop_reason_desc", "DROP_REASON_UNKNOWN also matches every flow that is not a drop in Hubble; give a reason")
		}
		t.DropReasonDesc = append(t.DropReasonDesc, TrawlDropReason(r))
	}
	for _, ifc := range ff.GetInterface() {
		t.Interface = append(t.Interface, &flowv1.NetworkInterface{Index: ifc.GetIndex(), Name: ifc.GetName()})
	}
	for _, p := range ff.GetProtocol() {
		switch q := strings.ToLower(strings.TrimSpace(p)); q {
		case "tcp", "udp", "sctp", "icmp", "icmpv4", "icmpv6", "dns":
			t.Protocol = append(t.Protocol, q)
		case "http", "kafka":
			return nil, invalid(list, i, "protocol", "%q: Trawl records no %s (L7) flows", p, strings.ToUpper(q))
		case "vrrp", "igmp":
			return nil, invalid(list, i, "protocol", "%q: Trawl does not decode %s", p, strings.ToUpper(q))
		default:
			return nil, invalid(list, i, "protocol", "unknown protocol %q", p)
		}
	}
	for _, tf := range ff.GetTcpFlags() {
		t.TcpFlags = append(t.TcpFlags, &flowv1.TCPFlags{FIN: tf.FIN, SYN: tf.SYN, RST: tf.RST, PSH: tf.PSH, ACK: tf.ACK, URG: tf.URG, ECE: tf.ECE, CWR: tf.CWR, NS: tf.NS})
	}
	nodes, never, err := nodeNames(list, i, ff.GetNodeName())
	if err != nil {
		return nil, err
	}
	if never {
		return nil, nil
	}
	t.NodeName = nodes

	// event_type: each entry selects record kinds, and for drops with a
	// sub-type a drop reason; entries needing different reasons become
	// separate filters.
	alts := []*observerv1.FlowFilter{t}
	if ets := ff.GetEventType(); len(ets) > 0 {
		alts, err = eventTypeAlternatives(list, i, t, ets)
		if err != nil {
			return nil, err
		}
	}
	// reply=false: Hubble also matches DROPPED flows whose direction is
	// unknown (is_reply unset), which Trawl's drop records are; Trawl's
	// filter matches reply only where is_reply is set, so those drops get a
	// filter of their own.
	if hasFalse(ff.GetReply()) {
		var more []*observerv1.FlowFilter
		for _, a := range alts {
			if d := droppedUnknownReply(a); d != nil {
				more = append(more, d)
			}
		}
		alts = append(alts, more...)
	}
	return alts, nil
}

func hasFalse(bs []bool) bool {
	for _, b := range bs {
		if !b {
			return true
		}
	}
	return false
}

// droppedUnknownReply is a without its reply condition, restricted to
// DROPPED (nil when a excludes DROPPED). Trawl's drop records never say
// they are replies (is_reply unset), so this is "DROPPED with is_reply
// false or unknown" as Hubble means it.
func droppedUnknownReply(a *observerv1.FlowFilter) *observerv1.FlowFilter {
	if len(a.GetVerdict()) > 0 && !slices.Contains(a.GetVerdict(), flowv1.Verdict_DROPPED) {
		return nil
	}
	d := proto.Clone(a).(*observerv1.FlowFilter)
	d.Reply = nil
	d.Verdict = []flowv1.Verdict{flowv1.Verdict_DROPPED}
	return d
}

// eventTypeAlternatives turns an event_type list into the filters whose
// union it selects. A record is shown as a Cilium policy-verdict event when
// it is Trawl's POLICY_VERDICT record, else as a drop event when DROPPED,
// else as a trace event (see eventType). A drop sub-type is Hubble's drop
// reason code; a trace sub-type is an observation point, which Trawl's
// filter cannot select (refused). L7 (access log) events are Trawl's
// L7_EVENT records (DNS messages, sub-type 0), which are neither traces nor
// drops, whatever their verdict. Types Trawl never produces (debug, capture,
// trace-sock, agent) are refused.
func eventTypeAlternatives(list string, i int, base *observerv1.FlowFilter, ets []*flowpb.EventTypeFilter) ([]*observerv1.FlowFilter, error) {
	var trace, drop, verdicts, l7, anyType bool
	var reasons []string // drop sub-types
	for _, et := range ets {
		switch et.GetType() {
		case 0:
			if et.GetMatchSubType() {
				return nil, invalid(list, i, "event_type", "a sub-type needs a type")
			}
			anyType = true
		case msgTypeTrace:
			if et.GetMatchSubType() {
				return nil, invalid(list, i, "event_type", "trace sub-type %d (an observation point) is not supported by Trawl's filter; use traffic_direction", et.GetSubType())
			}
			trace = true
		case msgTypeDrop:
			if !et.GetMatchSubType() {
				drop = true
				continue
			}
			if et.GetSubType() == 0 {
				return nil, invalid(list, i, "event_type", "drop sub-type 0 (no reason) is not supported")
			}
			reasons = append(reasons, TrawlDropReason(flowpb.DropReason(et.GetSubType())))
		case msgTypePolicyVerdict:
			if et.GetMatchSubType() && et.GetSubType() != 0 {
				continue // Trawl's policy verdicts all have sub-type 0
			}
			verdicts = true
		case msgTypeAccessLog:
			if et.GetMatchSubType() && et.GetSubType() != 0 {
				continue // Trawl's L7 records all have sub-type 0
			}
			l7 = true
		case msgTypeDebug, msgTypeCapture, msgTypeTraceSock, msgTypeAgent:
			return nil, invalid(list, i, "event_type", "type %d: Trawl records no such events", et.GetType())
		default:
			return nil, invalid(list, i, "event_type", "unknown type %d", et.GetType())
		}
	}
	if anyType {
		return []*observerv1.FlowFilter{base}, nil // every record has an event type
	}
	// Every kind but policy verdicts and L7 records (eventType's rule): the
	// aggregates, new, close, drop and connect-timeout records, and kinds
	// added later.
	var notPolicyVerdict []flowv1.EventKind
	for k := range flowv1.EventKind_name {
		if k := flowv1.EventKind(k); k != flowv1.EventKind_POLICY_VERDICT && k != flowv1.EventKind_L7_EVENT {
			notPolicyVerdict = append(notPolicyVerdict, k)
		}
	}
	slices.Sort(notPolicyVerdict)
	var notDropped []flowv1.Verdict
	for v := range flowv1.Verdict_name {
		if flowv1.Verdict(v) != flowv1.Verdict_DROPPED {
			notDropped = append(notDropped, flowv1.Verdict(v))
		}
	}
	slices.Sort(notDropped)
	var out []*observerv1.FlowFilter
	// alt is base restricted to kinds and verdicts (nil when base's own
	// verdicts leave none).
	alt := func(kinds []flowv1.EventKind, vs []flowv1.Verdict) *observerv1.FlowFilter {
		a := proto.Clone(base).(*observerv1.FlowFilter)
		a.EventKind = kinds
		if vs != nil {
			if len(a.Verdict) > 0 {
				vs = intersect(a.Verdict, vs)
				if len(vs) == 0 {
					return nil
				}
			}
			a.Verdict = vs
		}
		return a
	}
	add := func(a *observerv1.FlowFilter) {
		if a != nil {
			out = append(out, a)
		}
	}
	if trace {
		add(alt(notPolicyVerdict, notDropped))
	}
	if drop {
		add(alt(notPolicyVerdict, []flowv1.Verdict{flowv1.Verdict_DROPPED}))
	} else if len(reasons) > 0 {
		if a := alt(notPolicyVerdict, []flowv1.Verdict{flowv1.Verdict_DROPPED}); a != nil {
			if len(a.DropReasonDesc) > 0 {
				a.DropReasonDesc = intersect(a.DropReasonDesc, reasons)
			} else {
				a.DropReasonDesc = reasons
			}
			if len(a.DropReasonDesc) > 0 {
				out = append(out, a)
			}
		}
	}
	if verdicts {
		add(alt([]flowv1.EventKind{flowv1.EventKind_POLICY_VERDICT}, nil))
	}
	if l7 {
		add(alt([]flowv1.EventKind{flowv1.EventKind_L7_EVENT}, nil))
	}
	return out, nil
}

func intersect[T comparable](a, b []T) []T {
	var out []T
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
				break
			}
		}
	}
	return out
}

// namespacedNames checks Hubble's "namespace/name-prefix" values. Hubble
// reads a value without a namespace as "any namespace"; Trawl's filter has
// no such form, so those are refused.
func namespacedNames(list string, i int, field string, vals []string) ([]string, error) {
	for _, v := range vals {
		ns, _, ok := strings.Cut(v, "/")
		if !ok || ns == "" {
			return nil, invalid(list, i, field, "%q has no namespace: Trawl cannot match a name in any namespace; give namespace/name", v)
		}
	}
	return vals, nil
}

// fqdnPatterns canonicalises Hubble's FQDN patterns as Hubble does
// (trimmed, one trailing dot dropped, lower case); '*' is a wildcard in
// both.
func fqdnPatterns(vals []string) []string {
	if len(vals) == 0 {
		return nil
	}
	out := make([]string, len(vals))
	for j, v := range vals {
		out[j] = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(v), "."))
	}
	return out
}

func workloads(ws []*flowpb.Workload) []*flowv1.Workload {
	var out []*flowv1.Workload
	for _, w := range ws {
		out = append(out, &flowv1.Workload{Name: w.GetName(), Kind: w.GetKind()})
	}
	return out
}

// clusterName is the cluster Trawl's nodes belong to in Hubble's
// "cluster/node" names: Cilium's default.
const clusterName = "default"

// nodeNames translates Hubble's node name patterns ("node", "cluster/node",
// "cluster/"; '*' a wildcard) to Trawl's node globs. never is true when
// every pattern names another cluster.
func nodeNames(list string, i int, vals []string) (globs []string, never bool, err error) {
	if len(vals) == 0 {
		return nil, false, nil
	}
	for _, v := range vals {
		if v == "" {
			return nil, false, invalid(list, i, "node_name", "empty pattern")
		}
		cluster, node, hasCluster := strings.Cut(v, "/")
		if !hasCluster {
			cluster, node = "", v
		} else if strings.Contains(node, "/") {
			return nil, false, invalid(list, i, "node_name", "%q has too many slashes", v)
		}
		if cluster != "" && !globMatch(strings.ToLower(cluster), clusterName) {
			continue
		}
		node = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(node), "."))
		if node == "" {
			node = "*"
		}
		globs = append(globs, node)
	}
	return globs, len(globs) == 0, nil
}

// globMatch matches s against a pattern where '*' is any run of characters.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return s == pattern
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		k := strings.Index(s, mid)
		if k < 0 {
			return false
		}
		s = s[k+len(mid):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

var timeZero = time.Unix(0, 0)

// TranslateRequest translates a Hubble GetFlows request to Trawl's.
//
// As Hubble's server does: first with follow is refused; since takes
// precedence over number (with a number, the first number flows from
// since; with follow, everything from since, then live); number = 2^64-1 (`hubble observe --all`) is everything, read
// oldest first (Trawl streams that without holding it in memory).
func TranslateRequest(req *observerpb.GetFlowsRequest) (*observerv1.GetFlowsRequest, error) {
	if req.GetFirst() && req.GetFollow() {
		return nil, status.Error(codes.InvalidArgument, "first cannot be specified with follow")
	}
	allow, deny, err := TranslateFilters(req.GetWhitelist(), req.GetBlacklist())
	if err != nil {
		return nil, err
	}
	out := &observerv1.GetFlowsRequest{
		Number: req.GetNumber(), First: req.GetFirst(), Follow: req.GetFollow(),
		Allowlist: allow, Denylist: deny, Since: req.GetSince(), Until: req.GetUntil(),
	}
	if out.Since != nil && out.Number > 0 {
		if out.Follow {
			out.Number = 0 // Hubble streams everything from since, then follows
		} else {
			out.First = true
		}
	}
	if out.Number == math.MaxUint64 {
		out.Number = 0
		if out.Since == nil {
			out.Since = timestamppb.New(timeZero) // all of history, then (with follow) live
		}
	}
	return out, nil
}
