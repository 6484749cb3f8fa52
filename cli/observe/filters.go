package observe

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trawl-dev/trawl/internal/dnscodes"
	"github.com/trawl-dev/trawl/internal/dropclass"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// The filter flags follow Hubble's model: every flag value is dispatched, in
// command-line order, to one builder; `--not` sends the next filter to the
// deny list. A "both ends" flag (--pod, --ip, --label, ...) fills the source
// field of one FlowFilter and the destination field of a second one, and the
// two are OR-ed, so `--pod x` means "from x or to x". Everything else is set
// on both, so it is AND-ed with either side.

// side holds the filters of one list (allow or deny) as they are built.
type side struct {
	// src and dst are the two FlowFilters whose union is this side.
	src, dst *observerv1.FlowFilter
	// namespaces from -n, --from-namespace, --to-namespace and -A, applied to
	// the pod and service filters when the filters are finished.
	ns, srcNs, dstNs []string
	allNs            bool
	used             []string
	// record types asked for with --type conntrack/lost-events/node-status,
	// judged by the CLI because FlowFilter cannot express them.
	records []string
	// allClasses: --drop-class all.
	allClasses bool
}

func (s *side) both(f func(*observerv1.FlowFilter)) {
	s.onSrc(f)
	s.onDst(f)
}

func (s *side) onSrc(f func(*observerv1.FlowFilter)) {
	if s.src == nil {
		s.src = &observerv1.FlowFilter{}
	}
	f(s.src)
}

func (s *side) onDst(f func(*observerv1.FlowFilter)) {
	if s.dst == nil {
		s.dst = &observerv1.FlowFilter{}
	}
	f(s.dst)
}

// conflicts are groups of flags that cannot be used together on one side,
// because the combination would silently select nothing or something else
// than it says (Hubble's groups, without the L7 and identity flags Trawl does
// not have).
var conflicts = [][]string{
	{"from-fqdn", "from-ip", "ip", "fqdn", "from-namespace", "namespace", "from-all-namespaces", "all-namespaces"},
	{"from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"},
	{"to-fqdn", "to-ip", "ip", "fqdn", "to-namespace", "namespace", "to-all-namespaces", "all-namespaces"},
	{"to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"},
	{"to-pod", "namespace", "all-namespaces"},
	{"from-pod", "namespace", "all-namespaces"},
	{"to-service", "namespace", "all-namespaces"},
	{"from-service", "namespace", "all-namespaces"},
	{"label", "from-label"},
	{"label", "to-label"},
	{"service", "from-service"},
	{"service", "to-service"},
	{"port", "to-port"},
	{"port", "from-port"},
	{"workload", "to-workload"},
	{"workload", "from-workload"},
}

func (s *side) checkConflicts() error {
	for _, group := range conflicts {
		for _, a := range group {
			if !slices.Contains(s.used, a) {
				continue
			}
			for _, b := range group {
				if a != b && slices.Contains(s.used, b) {
					return fmt.Errorf("filters --%s and --%s cannot be combined", a, b)
				}
			}
		}
	}
	return nil
}

// withNamespace puts ns in front of names that have none.
func withNamespace(names, ns []string) []string {
	if len(ns) == 0 {
		return names
	}
	var out []string
	for _, n := range names {
		if strings.Contains(n, "/") {
			out = append(out, n)
			continue
		}
		for _, s := range ns {
			out = append(out, s+"/"+n)
		}
	}
	return out
}

// defaultNamespace gives names without a namespace Kubernetes' "default", as
// Hubble's help promises ("If namespace is not provided, 'default' is used").
func defaultNamespace(names []string) []string {
	for i, n := range names {
		if !strings.Contains(n, "/") {
			names[i] = "default/" + n
		}
	}
	return names
}

func applySrcNs(ff *observerv1.FlowFilter, ns []string) {
	if len(ff.SourcePod) == 0 && len(ff.SourceService) == 0 {
		ff.SourcePod = []string{""}
	}
	ff.SourcePod = withNamespace(ff.SourcePod, ns)
	ff.SourceService = withNamespace(ff.SourceService, ns)
}

func applyDstNs(ff *observerv1.FlowFilter, ns []string) {
	if len(ff.DestinationPod) == 0 && len(ff.DestinationService) == 0 {
		ff.DestinationPod = []string{""}
	}
	ff.DestinationPod = withNamespace(ff.DestinationPod, ns)
	ff.DestinationService = withNamespace(ff.DestinationService, ns)
}

// finish returns the side's FlowFilters: one when both halves are equal.
func (s *side) finish() ([]*observerv1.FlowFilter, error) {
	if s.src == nil && s.dst == nil && len(s.ns) == 0 && len(s.srcNs) == 0 && len(s.dstNs) == 0 {
		return nil, nil
	}
	if s.src == nil {
		s.src = &observerv1.FlowFilter{}
	}
	if s.dst == nil {
		s.dst = &observerv1.FlowFilter{}
	}
	for _, ff := range []*observerv1.FlowFilter{s.src, s.dst} {
		if len(s.srcNs) > 0 {
			applySrcNs(ff, s.srcNs)
		}
		if len(s.dstNs) > 0 {
			applyDstNs(ff, s.dstNs)
		}
	}
	if len(s.ns) > 0 {
		applySrcNs(s.src, s.ns)
		applyDstNs(s.dst, s.ns)
	}
	for _, ff := range []*observerv1.FlowFilter{s.src, s.dst} {
		if s.allNs {
			for _, n := range slices.Concat(ff.SourcePod, ff.DestinationPod, ff.SourceService, ff.DestinationService) {
				if !strings.Contains(n, "/") {
					return nil, fmt.Errorf("%q has no namespace: with --all-namespaces give pods and services as namespace/name", n)
				}
			}
		}
		ff.SourcePod = defaultNamespace(ff.SourcePod)
		ff.DestinationPod = defaultNamespace(ff.DestinationPod)
		ff.SourceService = defaultNamespace(ff.SourceService)
		ff.DestinationService = defaultNamespace(ff.DestinationService)
	}
	if proto.Equal(s.src, s.dst) {
		return []*observerv1.FlowFilter{s.src}, nil
	}
	return []*observerv1.FlowFilter{s.src, s.dst}, nil
}

// Filters collects the filter flags of one `trawl observe` command line.
type Filters struct {
	allow, deny side
	negate      bool
}

// filterFlag is the pflag.Value of one filter flag; every one dispatches to
// the shared Filters so that --not applies to the next flag, whatever it is.
type filterFlag struct {
	f    *Filters
	name string
	typ  string
}

func (v *filterFlag) String() string { return "" }
func (v *filterFlag) Type() string   { return v.typ }
func (v *filterFlag) Set(val string) error {
	return v.f.Set(v.name, val)
}

// filterFlagSpec describes one filter flag for registration and help.
type filterFlagSpec struct {
	name, short, typ, help string
	// noOpt is the value given when the flag has no argument (-A, -4, --not).
	noOpt string
}

var filterFlagSpecs = []filterFlagSpec{
	{name: "not", typ: "", noOpt: "true", help: "negate the next filter: --not --from-ip 10.0.0.1 hides flows from 10.0.0.1"},
	{name: "pod", typ: "[ns/]name", help: "flows from or to pods whose name starts with this ([namespace/]pod-prefix; namespace 'default' if none)"},
	{name: "from-pod", typ: "[ns/]name", help: "flows from pods whose name starts with this ([namespace/]pod-prefix)"},
	{name: "to-pod", typ: "[ns/]name", help: "flows to pods whose name starts with this ([namespace/]pod-prefix)"},
	{name: "namespace", short: "n", typ: "ns", help: "flows from or to pods and services of this namespace"},
	{name: "from-namespace", typ: "ns", help: "flows from pods and services of this namespace"},
	{name: "to-namespace", typ: "ns", help: "flows to pods and services of this namespace"},
	{name: "all-namespaces", short: "A", typ: "", noOpt: "true", help: "flows of any namespace (drops the namespace restriction)"},
	{name: "from-all-namespaces", typ: "", noOpt: "true", help: "flows from any namespace"},
	{name: "to-all-namespaces", typ: "", noOpt: "true", help: "flows to any namespace"},
	{name: "label", short: "l", typ: "selector", help: `flows from or to endpoints with these labels (e.g. "app=web", "k8s:app=web,tier in (a,b)", "reserved:world")`},
	{name: "from-label", typ: "selector", help: "flows from endpoints with these labels"},
	{name: "to-label", typ: "selector", help: "flows to endpoints with these labels"},
	{name: "workload", typ: "[kind/]name", help: `flows from or to endpoints of this workload ("Deployment/web" or "web")`},
	{name: "from-workload", typ: "[kind/]name", help: "flows from endpoints of this workload"},
	{name: "to-workload", typ: "[kind/]name", help: "flows to endpoints of this workload"},
	{name: "service", typ: "[ns/]name", help: "flows from or to this service's ClusterIP ([namespace/]service-prefix)"},
	{name: "from-service", typ: "[ns/]name", help: "flows from this service"},
	{name: "to-service", typ: "[ns/]name", help: "flows to this service"},
	{name: "fqdn", typ: "name", help: `flows from or to this DNS name (e.g. "*.example.com", "example.com"): names a client resolved, and the name a DNS query or answer is about`},
	{name: "from-fqdn", typ: "name", help: "flows from this DNS name, and DNS answers about it"},
	{name: "to-fqdn", typ: "name", help: "flows to this DNS name, and DNS queries for it"},
	{name: "ip", typ: "ip|cidr", help: "flows from or to this address or CIDR (e.g. 10.0.0.1, 10.0.0.0/24, fd00::/64)"},
	{name: "from-ip", typ: "ip|cidr", help: "flows from this address or CIDR"},
	{name: "to-ip", typ: "ip|cidr", help: "flows to this address or CIDR"},
	{name: "port", typ: "port", help: "flows with this source or destination port (or range lo-hi)"},
	{name: "from-port", typ: "port", help: "flows with this source port (or range lo-hi)"},
	{name: "to-port", typ: "port", help: "flows with this destination port (or range lo-hi)"},
	{name: "protocol", typ: "proto", help: "flows of this protocol: tcp, udp, sctp, icmp, icmpv4, icmpv6, or dns (DNS queries and answers)"},
	{name: "dns-query", typ: "regex", help: `DNS queries and answers whose name matches this regular expression (RE2, as Hubble's; names end in a dot: "example\.com\.$")`},
	{name: "dns-rcode", typ: "rcode", help: "DNS answers with this response code: a name (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...) or a number; comma-separated or repeated"},
	{name: "min-rtt", typ: "duration", help: "TCP records whose handshake RTT (SYN to SYN-ACK plus SYN-ACK to ACK, as seen on the node) is at least this long (e.g. 10ms, 500us, 1.5s); records without a handshake never match"},
	{name: "retransmits", typ: "", noOpt: "true", help: "TCP records with retransmitted segments (sent again by this node's own sockets)"},
	{name: "tcp-reset", typ: "", noOpt: "true", help: "TCP records of a connection reset (a RST from the client or the server)"},
	{name: "tcp-timeout", typ: "", noOpt: "true", help: "connection attempts that timed out: a SYN without an answer (the records of --type connect-timeout)"},
	{name: "verdict", typ: "verdict", help: "flows with this verdict: FORWARDED, DROPPED, ERROR, AUDIT, REDIRECTED, TRACED, TRANSLATED"},
	{name: "drop-reason-desc", typ: "reason", help: `drops with this reason: "POLICY_DENIED" when NetworkPolicies explain it, else the kernel's name (e.g. "NO_SOCKET")`},
	{name: "drop-reason", typ: "reason", help: `drops with this kernel drop reason (skb_drop_reason name, e.g. "NETFILTER_DROP", "NO_SOCKET")`},
	{name: "policy", typ: "ns/name", help: `flows allowed or denied by this NetworkPolicy ("ns/name", or "ns/" for any policy of ns)`},
	{name: "traffic-direction", typ: "dir", help: "flows in this direction relative to the pod: ingress or egress"},
	{name: "tcp-flags", typ: "flags", help: `flows with all these TCP flags (e.g. "syn", "syn,ack", "rst")`},
	{name: "node-name", typ: "glob", help: `flows seen on these nodes (e.g. "worker-*")`},
	{name: "interface", typ: "name", help: "flows seen on this network interface (e.g. eth0)"},
	{name: "ipv4", short: "4", typ: "", noOpt: "v4", help: "IPv4 flows only"},
	{name: "ipv6", short: "6", typ: "", noOpt: "v6", help: "IPv6 flows only"},
	{name: "ip-version", typ: "v4|v6", help: "flows of this IP version: v4 or v6"},
	{name: "drop-class", typ: "class", help: "drops of these classes (comma-separated, repeatable): policy, no-socket, overload, malformed, routing, teardown, other, or all. " +
		"Without it teardown drops (protocol-normal: queues purged at close, old TCP segments) are hidden"},
	{name: "type", short: "t", typ: "type", help: "records of this type: flow (aggregate), new, close, drop, policy-verdict, l7 (DNS queries and answers), connect-timeout (a SYN without an answer), " +
		"conntrack, lost-events, node-status; Hubble's trace is every flow kind but drops, policy verdicts and l7"},
	{name: "uuid", typ: "uuid", help: "the flow with this id"},
}

// AddFlags registers the filter flags on fs.
func (f *Filters) AddFlags(fs *pflag.FlagSet) {
	for _, spec := range filterFlagSpecs {
		flag := fs.VarPF(&filterFlag{f: f, name: spec.name, typ: spec.typ}, spec.name, spec.short, spec.help)
		if spec.noOpt != "" {
			flag.NoOptDefVal = spec.noOpt
		}
	}
}

// Set applies one filter flag; it is the single entry point of all of them.
func (f *Filters) Set(name, val string) error {
	if name == "not" {
		if val != "true" {
			return errors.New("--not takes no value; put it before the filter to negate")
		}
		if f.negate {
			return errors.New("--not given twice in a row")
		}
		f.negate = true
		return nil
	}
	s := &f.allow
	if f.negate {
		s = &f.deny
		f.negate = false
	}
	if !slices.Contains(s.used, name) {
		s.used = append(s.used, name)
	}
	if err := s.checkConflicts(); err != nil {
		return err
	}
	return s.set(name, val)
}

// EventKinds maps --type names to the record kinds they select.
var eventKinds = map[string][]flowv1.EventKind{
	"flow":            {flowv1.EventKind_AGGREGATE},
	"aggregate":       {flowv1.EventKind_AGGREGATE},
	"trace":           {flowv1.EventKind_AGGREGATE, flowv1.EventKind_FLOW_NEW, flowv1.EventKind_FLOW_CLOSE, flowv1.EventKind_CONNECT_TIMEOUT},
	"connect-timeout": {flowv1.EventKind_CONNECT_TIMEOUT},
	"new":             {flowv1.EventKind_FLOW_NEW},
	"close":           {flowv1.EventKind_FLOW_CLOSE},
	"drop":            {flowv1.EventKind_DROP},
	"policy-verdict":  {flowv1.EventKind_POLICY_VERDICT},
}

// recordTypes are --type names of records that are not flows.
var recordTypes = []string{"conntrack", "lost-events", "node-status"}

func (s *side) set(name, val string) error {
	switch name {
	case "pod":
		s.onSrc(func(ff *observerv1.FlowFilter) { ff.SourcePod = append(ff.SourcePod, val) })
		s.onDst(func(ff *observerv1.FlowFilter) { ff.DestinationPod = append(ff.DestinationPod, val) })
	case "from-pod":
		s.both(func(ff *observerv1.FlowFilter) { ff.SourcePod = append(ff.SourcePod, val) })
	case "to-pod":
		s.both(func(ff *observerv1.FlowFilter) { ff.DestinationPod = append(ff.DestinationPod, val) })

	case "namespace", "from-namespace", "to-namespace":
		if val == "" || strings.Contains(val, "/") {
			return errors.New("want a namespace name")
		}
		switch name {
		case "namespace":
			s.ns = append(s.ns, val)
		case "from-namespace":
			s.srcNs = append(s.srcNs, val)
		default:
			s.dstNs = append(s.dstNs, val)
		}
	case "all-namespaces", "from-all-namespaces", "to-all-namespaces":
		b, err := strconv.ParseBool(val)
		if err != nil {
			return errors.New("want true or false")
		}
		s.allNs = s.allNs || b

	case "label":
		s.onSrc(func(ff *observerv1.FlowFilter) { ff.SourceLabel = append(ff.SourceLabel, val) })
		s.onDst(func(ff *observerv1.FlowFilter) { ff.DestinationLabel = append(ff.DestinationLabel, val) })
	case "from-label":
		s.both(func(ff *observerv1.FlowFilter) { ff.SourceLabel = append(ff.SourceLabel, val) })
	case "to-label":
		s.both(func(ff *observerv1.FlowFilter) { ff.DestinationLabel = append(ff.DestinationLabel, val) })

	case "workload", "from-workload", "to-workload":
		w, err := parseWorkload(val)
		if err != nil {
			return err
		}
		switch name {
		case "workload":
			s.onSrc(func(ff *observerv1.FlowFilter) { ff.SourceWorkload = append(ff.SourceWorkload, w) })
			s.onDst(func(ff *observerv1.FlowFilter) { ff.DestinationWorkload = append(ff.DestinationWorkload, w) })
		case "from-workload":
			s.both(func(ff *observerv1.FlowFilter) { ff.SourceWorkload = append(ff.SourceWorkload, w) })
		default:
			s.both(func(ff *observerv1.FlowFilter) { ff.DestinationWorkload = append(ff.DestinationWorkload, w) })
		}

	case "service":
		s.onSrc(func(ff *observerv1.FlowFilter) { ff.SourceService = append(ff.SourceService, val) })
		s.onDst(func(ff *observerv1.FlowFilter) { ff.DestinationService = append(ff.DestinationService, val) })
	case "from-service":
		s.both(func(ff *observerv1.FlowFilter) { ff.SourceService = append(ff.SourceService, val) })
	case "to-service":
		s.both(func(ff *observerv1.FlowFilter) { ff.DestinationService = append(ff.DestinationService, val) })

	case "fqdn":
		s.onSrc(func(ff *observerv1.FlowFilter) { ff.SourceFqdn = append(ff.SourceFqdn, val) })
		s.onDst(func(ff *observerv1.FlowFilter) { ff.DestinationFqdn = append(ff.DestinationFqdn, val) })
	case "from-fqdn":
		s.both(func(ff *observerv1.FlowFilter) { ff.SourceFqdn = append(ff.SourceFqdn, val) })
	case "to-fqdn":
		s.both(func(ff *observerv1.FlowFilter) { ff.DestinationFqdn = append(ff.DestinationFqdn, val) })

	case "ip", "from-ip", "to-ip":
		if err := checkIP(val); err != nil {
			return err
		}
		switch name {
		case "ip":
			s.onSrc(func(ff *observerv1.FlowFilter) { ff.SourceIp = append(ff.SourceIp, val) })
			s.onDst(func(ff *observerv1.FlowFilter) { ff.DestinationIp = append(ff.DestinationIp, val) })
		case "from-ip":
			s.both(func(ff *observerv1.FlowFilter) { ff.SourceIp = append(ff.SourceIp, val) })
		default:
			s.both(func(ff *observerv1.FlowFilter) { ff.DestinationIp = append(ff.DestinationIp, val) })
		}

	case "port", "from-port", "to-port":
		if err := checkPort(val); err != nil {
			return err
		}
		switch name {
		case "port":
			s.onSrc(func(ff *observerv1.FlowFilter) { ff.SourcePort = append(ff.SourcePort, val) })
			s.onDst(func(ff *observerv1.FlowFilter) { ff.DestinationPort = append(ff.DestinationPort, val) })
		case "from-port":
			s.both(func(ff *observerv1.FlowFilter) { ff.SourcePort = append(ff.SourcePort, val) })
		default:
			s.both(func(ff *observerv1.FlowFilter) { ff.DestinationPort = append(ff.DestinationPort, val) })
		}

	case "protocol":
		p := strings.ToLower(strings.TrimSpace(val))
		switch p {
		case "tcp", "udp", "sctp", "icmp", "icmpv4", "icmpv6", "dns":
		default:
			return errors.New("want tcp, udp, sctp, icmp, icmpv4, icmpv6 or dns")
		}
		s.both(func(ff *observerv1.FlowFilter) { ff.Protocol = append(ff.Protocol, p) })

	case "verdict":
		v, ok := flowv1.Verdict_value[strings.ToUpper(strings.TrimSpace(val))]
		if !ok || v == 0 {
			return errors.New("want FORWARDED, DROPPED, ERROR, AUDIT, REDIRECTED, TRACED or TRANSLATED")
		}
		s.both(func(ff *observerv1.FlowFilter) { ff.Verdict = append(ff.Verdict, flowv1.Verdict(v)) })

	case "drop-reason-desc", "drop-reason":
		r := strings.ToUpper(strings.TrimSpace(val))
		r = strings.TrimPrefix(r, "SKB_DROP_REASON_")
		if r == "" || strings.ContainsFunc(r, func(c rune) bool { return !(c == '_' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') }) {
			return errors.New("want a reason name like POLICY_DENIED or NO_SOCKET")
		}
		if name == "drop-reason" {
			s.both(func(ff *observerv1.FlowFilter) { ff.DropReasonKernel = append(ff.DropReasonKernel, r) })
		} else {
			s.both(func(ff *observerv1.FlowFilter) { ff.DropReasonDesc = append(ff.DropReasonDesc, r) })
		}

	case "drop-class":
		for _, v := range strings.Split(val, ",") {
			v = strings.TrimSpace(v)
			if strings.EqualFold(v, "all") {
				s.allClasses = true
				continue
			}
			c, err := dropclass.Parse(v)
			if err != nil {
				return fmt.Errorf("unknown drop class %q: want %s or all", v, classNames())
			}
			s.both(func(ff *observerv1.FlowFilter) {
				if !slices.Contains(ff.DropClass, string(c)) {
					ff.DropClass = append(ff.DropClass, string(c))
				}
			})
		}

	case "policy":
		ns, pname, ok := strings.Cut(val, "/")
		if !ok || ns == "" || strings.Contains(pname, "/") {
			return errors.New("want namespace/name (or namespace/ for all of its policies)")
		}
		s.both(func(ff *observerv1.FlowFilter) { ff.Policy = append(ff.Policy, val) })

	case "traffic-direction":
		var d flowv1.TrafficDirection
		switch strings.ToLower(strings.TrimSpace(val)) {
		case "ingress":
			d = flowv1.TrafficDirection_INGRESS
		case "egress":
			d = flowv1.TrafficDirection_EGRESS
		default:
			return errors.New("want ingress or egress")
		}
		s.both(func(ff *observerv1.FlowFilter) { ff.TrafficDirection = append(ff.TrafficDirection, d) })

	case "tcp-flags":
		fl, err := parseTCPFlags(val)
		if err != nil {
			return err
		}
		s.both(func(ff *observerv1.FlowFilter) { ff.TcpFlags = append(ff.TcpFlags, fl) })

	case "node-name":
		if strings.TrimSpace(val) == "" {
			return errors.New("empty node name")
		}
		s.both(func(ff *observerv1.FlowFilter) { ff.NodeName = append(ff.NodeName, val) })

	case "interface":
		if strings.TrimSpace(val) == "" {
			return errors.New("empty interface name")
		}
		s.both(func(ff *observerv1.FlowFilter) {
			ff.Interface = append(ff.Interface, &flowv1.NetworkInterface{Name: val})
		})

	case "ipv4", "ipv6", "ip-version":
		var v flowv1.IPVersion
		switch strings.ToLower(strings.TrimSpace(val)) {
		case "4", "v4", "ipv4", "ip4":
			v = flowv1.IPVersion_IPv4
		case "6", "v6", "ipv6", "ip6":
			v = flowv1.IPVersion_IPv6
		default:
			return errors.New("want v4 or v6")
		}
		s.both(func(ff *observerv1.FlowFilter) { ff.IpVersion = append(ff.IpVersion, v) })

	case "type":
		t := strings.ToLower(strings.TrimSpace(val))
		if slices.Contains(recordTypes, t) {
			s.records = append(s.records, t)
			return nil
		}
		if t == "l7" {
			// FlowFilter.type alone (Flow.Type L7); beside other kinds, its
			// equal L7_EVENT, since the kinds are one OR-ed list.
			s.both(func(ff *observerv1.FlowFilter) {
				if len(ff.EventKind) > 0 {
					ff.EventKind = append(ff.EventKind, flowv1.EventKind_L7_EVENT)
				} else if !slices.Contains(ff.Type, flowv1.FlowType_L7) {
					ff.Type = append(ff.Type, flowv1.FlowType_L7)
				}
			})
			return nil
		}
		kinds, ok := eventKinds[t]
		if !ok {
			return errors.New("want flow, new, close, drop, policy-verdict, l7, connect-timeout, conntrack, lost-events or node-status")
		}
		s.both(func(ff *observerv1.FlowFilter) {
			if i := slices.Index(ff.Type, flowv1.FlowType_L7); i >= 0 {
				ff.Type = slices.Delete(ff.Type, i, i+1)
				ff.EventKind = append(ff.EventKind, flowv1.EventKind_L7_EVENT)
			}
			for _, k := range kinds {
				if !slices.Contains(ff.EventKind, k) {
					ff.EventKind = append(ff.EventKind, k)
				}
			}
		})

	case "dns-query":
		if _, err := regexp.Compile(val); err != nil {
			return fmt.Errorf("not a regular expression: %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
		s.both(func(ff *observerv1.FlowFilter) { ff.DnsQuery = append(ff.DnsQuery, val) })

	case "dns-rcode":
		for _, v := range strings.Split(val, ",") {
			code, err := dnscodes.ParseRcode(v)
			if err != nil {
				return err
			}
			name := dnscodes.RcodeName(code)
			s.both(func(ff *observerv1.FlowFilter) {
				if !slices.Contains(ff.DnsRcode, name) {
					ff.DnsRcode = append(ff.DnsRcode, name)
				}
			})
		}

	case "min-rtt":
		d, err := time.ParseDuration(strings.TrimSpace(val))
		if err != nil {
			return errors.New("want a duration such as 10ms, 500us or 1.5s")
		}
		if d < 0 {
			return errors.New("a round-trip time is not negative")
		}
		// Repeated, the values OR: the smallest minimum decides.
		s.both(func(ff *observerv1.FlowFilter) {
			if cur := ff.GetMinHandshakeRtt(); cur == nil || d < cur.AsDuration() {
				ff.MinHandshakeRtt = durationpb.New(d)
			}
		})

	case "retransmits", "tcp-reset", "tcp-timeout":
		b, err := strconv.ParseBool(val)
		if err != nil {
			return errors.New("want true or false")
		}
		if !b {
			return nil
		}
		s.both(func(ff *observerv1.FlowFilter) {
			switch name {
			case "retransmits":
				ff.TcpRetransmits = true
			case "tcp-reset":
				ff.TcpReset = true
			default:
				ff.TcpTimeout = true
			}
		})

	case "uuid":
		if strings.TrimSpace(val) == "" {
			return errors.New("empty uuid")
		}
		s.both(func(ff *observerv1.FlowFilter) { ff.Uuid = append(ff.Uuid, val) })

	default:
		return fmt.Errorf("unknown filter --%s", name)
	}
	return nil
}

func classNames() string {
	names := make([]string, len(dropclass.All))
	for i, c := range dropclass.All {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

// HidesTeardown tells whether the default drop view applies: the flags
// name no drop class (--drop-class), no drop reason and no record id, so
// teardown drops — protocol-normal, counted but not worth a look — are left
// out (Request adds TeardownDeny to the deny list). --drop-class all or
// naming teardown shows them.
func (f *Filters) HidesTeardown() bool {
	for _, name := range []string{"drop-class", "drop-reason", "drop-reason-desc", "uuid"} {
		if slices.Contains(f.allow.used, name) {
			return false
		}
	}
	return !slices.Contains(f.deny.used, "drop-class")
}

// TeardownDeny is the deny-list entry of the default drop view.
func TeardownDeny() *observerv1.FlowFilter {
	return &observerv1.FlowFilter{DropClass: []string{string(dropclass.Teardown)}}
}

func checkIP(val string) error {
	if strings.Contains(val, "/") {
		if _, err := netip.ParsePrefix(val); err != nil {
			return errors.New("not an address or CIDR")
		}
		return nil
	}
	if _, err := netip.ParseAddr(val); err != nil {
		return errors.New("not an address or CIDR")
	}
	return nil
}

func checkPort(val string) error {
	lo, hi, isRange := strings.Cut(val, "-")
	l, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return errors.New("want a port 0-65535 or a range lo-hi")
	}
	if isRange {
		h, err := strconv.ParseUint(hi, 10, 16)
		if err != nil || h < l {
			return errors.New("want a range lo-hi with lo <= hi <= 65535")
		}
	}
	return nil
}

func parseWorkload(val string) (*flowv1.Workload, error) {
	kind, name, ok := strings.Cut(val, "/")
	if !ok {
		kind, name = "", val
	}
	if name == "" || strings.Contains(name, "/") {
		return nil, errors.New(`want "kind/name" or "name"`)
	}
	return &flowv1.Workload{Kind: kind, Name: name}, nil
}

func parseTCPFlags(val string) (*flowv1.TCPFlags, error) {
	fl := &flowv1.TCPFlags{}
	for _, name := range strings.Split(val, ",") {
		switch strings.ToUpper(strings.TrimSpace(name)) {
		case "SYN":
			fl.SYN = true
		case "ACK":
			fl.ACK = true
		case "FIN":
			fl.FIN = true
		case "RST":
			fl.RST = true
		case "PSH":
			fl.PSH = true
		case "URG":
			fl.URG = true
		case "ECE":
			fl.ECE = true
		case "CWR":
			fl.CWR = true
		case "NS":
			fl.NS = true
		default:
			return nil, fmt.Errorf("unknown TCP flag %q (want syn, ack, fin, rst, psh, urg, ece, cwr, ns)", name)
		}
	}
	return fl, nil
}

// Lists finishes the filters into the request's allow and deny lists, and
// returns the record types the CLI must select itself.
func (f *Filters) Lists() (allow, deny []*observerv1.FlowFilter, records []string, err error) {
	if f.negate {
		return nil, nil, nil, errors.New("--not at the end: it must come before the filter it negates")
	}
	if f.deny.allClasses {
		return nil, nil, nil, errors.New("--not --drop-class all would hide every drop; name the classes to hide")
	}
	for _, ff := range []*observerv1.FlowFilter{f.allow.src, f.allow.dst} {
		if f.allow.allClasses && len(ff.GetDropClass()) > 0 {
			return nil, nil, nil, fmt.Errorf("--drop-class all cannot be combined with the classes %s", strings.Join(ff.GetDropClass(), ", "))
		}
	}
	if allow, err = f.allow.finish(); err != nil {
		return nil, nil, nil, err
	}
	if deny, err = f.deny.finish(); err != nil {
		return nil, nil, nil, err
	}
	if len(f.deny.records) > 0 {
		return nil, nil, nil, fmt.Errorf("--not --type %s is not supported; select the types you want instead", f.deny.records[0])
	}
	return allow, deny, f.allow.records, nil
}
