package hubble

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"unsafe"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Hubble's metric context options (Cilium's documentation, "Context
// Options"): sourceContext/destinationContext (and their Ingress/Egress
// variants) add a "source"/"destination" label holding the first non-empty
// of the listed identifiers; labelsContext adds one label per listed name.

type ctxID uint8

const (
	ctxIdentity ctxID = iota + 1
	ctxNamespace
	ctxPod
	ctxPodName
	ctxDNS
	ctxIP
	ctxReservedIdentity
	ctxWorkload
	ctxWorkloadName
	ctxApp
)

var ctxIDs = map[string]ctxID{
	"identity": ctxIdentity, "namespace": ctxNamespace, "pod": ctxPod, "pod-name": ctxPodName,
	"dns": ctxDNS, "ip": ctxIP, "reserved-identity": ctxReservedIdentity, "workload": ctxWorkload,
	"workload-name": ctxWorkloadName, "app": ctxApp,
}

// contextLabels are labelsContext's names, in the order the labels appear.
var contextLabels = []string{
	"source_ip", "source_pod", "source_namespace", "source_workload", "source_workload_kind", "source_app",
	"destination_ip", "destination_pod", "destination_namespace", "destination_workload", "destination_workload_kind", "destination_app",
	"traffic_direction",
}

// appLabels are the pod labels the app context reads, in order.
var appLabels = []string{"k8s:app.kubernetes.io/name", "k8s:k8s-app", "k8s:app"}

type contextOptions struct {
	labels                              []string // labelsContext, in contextLabels order
	source, sourceIngress, sourceEgress []ctxID
	dest, destIngress, destEgress       []ctxID
	hasSource, hasDest                  bool
	// names interns the "namespace/name" values of pod and workload
	// contexts; one for all metrics (see joinedNames). Nil: not joined
	// through it.
	names *joinedNames
}

// joinedNames interns "namespace/name" values, so that counting a record
// does not allocate them again, and so that every metric's label values
// are the same strings in memory: what seriesCache finds fastest.
type joinedNames struct {
	m map[[2]string]string // bounded by maxJoined
	// recent is a direct-mapped cache in front of m, indexed by the
	// addresses of namespace and name, as seriesCache and for the same
	// reason: the map hashes both strings on every record. Nil: not used.
	recent *joinCache
}

func newJoinedNames() *joinedNames {
	return &joinedNames{recent: newJoinCache(recentJoinedSlots)}
}

type joinCache struct {
	slots []joinedValue
	shift uint // 64 - log2(len(slots))
}

type joinedValue struct{ ns, name, v string }

// recentJoinedSlots is the size of a joinCache: a few hundred workloads or
// pods per side of a record are common; 48 B a slot.
const recentJoinedSlots = 1024

func newJoinCache(slots int) *joinCache {
	return &joinCache{slots: make([]joinedValue, slots), shift: uint(64 - bits.TrailingZeros(uint(slots)))}
}

// slot is where ns/name is cached; its content says whether it is.
func (c *joinCache) slot(ns, name string) *joinedValue {
	const mul = 0x9e3779b97f4a7c15
	h := (uint64(uintptr(unsafe.Pointer(unsafe.StringData(ns)))) ^ uint64(len(ns))<<48) * mul
	h = (h ^ uint64(uintptr(unsafe.Pointer(unsafe.StringData(name)))) ^ uint64(len(name))<<48) * mul
	return &c.slots[h>>c.shift]
}

// maxJoined bounds joinedNames.m; a full map is started afresh.
const maxJoined = 1 << 14

// join is ns + "/" + name, interned.
func (o *contextOptions) join(ns, name string) string {
	n := o.names
	if n == nil {
		return ns + "/" + name
	}
	var e *joinedValue
	if n.recent != nil {
		// A hint only: the strings are compared (see seriesCache.find).
		e = n.recent.slot(ns, name)
		if e.v != "" && e.ns == ns && e.name == name {
			return e.v
		}
	}
	k := [2]string{ns, name}
	v, ok := n.m[k]
	if !ok {
		if n.m == nil || len(n.m) >= maxJoined {
			n.m = make(map[[2]string]string)
		}
		v = ns + "/" + name
		n.m[k] = v
	}
	if e != nil {
		*e = joinedValue{ns, name, v}
	}
	return v
}

// setOption applies one context option; ok is false when key is not one.
func (o *contextOptions) setOption(key, value string) (ok bool, err error) {
	var dst *[]ctxID
	switch strings.ToLower(key) {
	case "sourcecontext":
		dst = &o.source
	case "sourceingresscontext":
		dst = &o.sourceIngress
	case "sourceegresscontext":
		dst = &o.sourceEgress
	case "destinationcontext":
		dst = &o.dest
	case "destinationingresscontext":
		dst = &o.destIngress
	case "destinationegresscontext":
		dst = &o.destEgress
	case "labelscontext":
		want := map[string]bool{}
		for _, l := range strings.Split(value, ",") {
			if !slices.Contains(contextLabels, l) {
				return true, fmt.Errorf("labelsContext: unknown label %q (want %s)", l, strings.Join(contextLabels, ", "))
			}
			want[l] = true
		}
		o.labels = nil
		for _, l := range contextLabels {
			if want[l] {
				o.labels = append(o.labels, l)
			}
		}
		return true, nil
	default:
		return false, nil
	}
	*dst = nil
	for _, v := range strings.Split(value, "|") {
		id, ok := ctxIDs[strings.ToLower(v)]
		if !ok {
			return true, fmt.Errorf("%s: unknown context %q (want identity, namespace, pod, pod-name, dns, ip, reserved-identity, workload, workload-name or app)", key, v)
		}
		*dst = append(*dst, id)
	}
	o.hasSource = len(o.source)+len(o.sourceIngress)+len(o.sourceEgress) > 0
	o.hasDest = len(o.dest)+len(o.destIngress)+len(o.destEgress) > 0
	return true, nil
}

// labelNames are the label names the options add, after a metric's own.
func (o *contextOptions) labelNames() []string {
	out := append([]string(nil), o.labels...)
	if o.hasSource {
		out = append(out, "source")
	}
	if o.hasDest {
		out = append(out, "destination")
	}
	return out
}

// appendValues appends the context label values of f.
func (o *contextOptions) appendValues(vals []string, f *flowv1.Flow) []string {
	for _, l := range o.labels {
		vals = append(vals, labelValue(l, f))
	}
	dir := f.GetTrafficDirection()
	if o.hasSource {
		ids := o.source
		if o.sourceIngress != nil && dir == flowv1.TrafficDirection_INGRESS {
			ids = o.sourceIngress
		} else if o.sourceEgress != nil && dir == flowv1.TrafficDirection_EGRESS {
			ids = o.sourceEgress
		}
		vals = append(vals, o.firstValue(ids, f, true))
	}
	if o.hasDest {
		ids := o.dest
		if o.destIngress != nil && dir == flowv1.TrafficDirection_INGRESS {
			ids = o.destIngress
		} else if o.destEgress != nil && dir == flowv1.TrafficDirection_EGRESS {
			ids = o.destEgress
		}
		vals = append(vals, o.firstValue(ids, f, false))
	}
	return vals
}

func (o *contextOptions) firstValue(ids []ctxID, f *flowv1.Flow, source bool) string {
	for _, id := range ids {
		if v := o.contextValue(id, f, source); v != "" {
			return v
		}
	}
	return ""
}

func (o *contextOptions) contextValue(id ctxID, f *flowv1.Flow, source bool) string {
	ep := f.GetDestination()
	if source {
		ep = f.GetSource()
	}
	switch id {
	case ctxNamespace:
		return ep.GetNamespace()
	case ctxIdentity:
		return strings.Join(ep.GetLabels(), ",")
	case ctxPod:
		if ep.GetNamespace() != "" {
			return o.join(ep.GetNamespace(), ep.GetPodName())
		}
		return ep.GetPodName()
	case ctxPodName:
		return ep.GetPodName()
	case ctxDNS:
		if source {
			return strings.Join(f.GetSourceNames(), ",")
		}
		return strings.Join(f.GetDestinationNames(), ",")
	case ctxIP:
		if source {
			return f.GetIP().GetSource()
		}
		return f.GetIP().GetDestination()
	case ctxReservedIdentity:
		return reservedIdentity(ep.GetLabels())
	case ctxWorkload:
		name := workloadName(ep)
		if name != "" && ep.GetNamespace() != "" {
			return o.join(ep.GetNamespace(), name)
		}
		return name
	case ctxWorkloadName:
		return workloadName(ep)
	case ctxApp:
		return appName(ep.GetLabels())
	}
	return ""
}

func workloadName(ep *flowv1.Endpoint) string {
	if ws := ep.GetWorkloads(); len(ws) > 0 {
		return ws[0].GetName()
	}
	return ""
}

func workloadKind(ep *flowv1.Endpoint) string {
	if ws := ep.GetWorkloads(); len(ws) > 0 {
		return ws[0].GetKind()
	}
	return ""
}

// reservedIdentity is the endpoint's reserved label; kube-apiserver wins
// over the host, remote-node or world label it comes with.
func reservedIdentity(labels []string) string {
	for _, l := range labels {
		if l == "reserved:kube-apiserver" {
			return l
		}
	}
	for _, l := range labels {
		if strings.HasPrefix(l, "reserved:") {
			return l
		}
	}
	return ""
}

// appName is the value of the first of the endpoint's labels that is one
// of appLabels and has a value.
func appName(labels []string) string {
	for _, l := range labels {
		for _, key := range appLabels {
			if v, ok := strings.CutPrefix(l, key+"="); ok && v != "" {
				return v
			}
		}
	}
	return ""
}

func labelValue(name string, f *flowv1.Flow) string {
	src, dst := f.GetSource(), f.GetDestination()
	switch name {
	case "source_ip":
		return f.GetIP().GetSource()
	case "source_pod":
		return src.GetPodName()
	case "source_namespace":
		return src.GetNamespace()
	case "source_workload":
		return workloadName(src)
	case "source_workload_kind":
		return workloadKind(src)
	case "source_app":
		return appName(src.GetLabels())
	case "destination_ip":
		return f.GetIP().GetDestination()
	case "destination_pod":
		return dst.GetPodName()
	case "destination_namespace":
		return dst.GetNamespace()
	case "destination_workload":
		return workloadName(dst)
	case "destination_workload_kind":
		return workloadKind(dst)
	case "destination_app":
		return appName(dst.GetLabels())
	case "traffic_direction":
		switch f.GetTrafficDirection() {
		case flowv1.TrafficDirection_INGRESS:
			return "ingress"
		case flowv1.TrafficDirection_EGRESS:
			return "egress"
		}
		return "unknown"
	}
	return ""
}
