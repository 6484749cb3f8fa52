package hubble

import (
	"fmt"
	"slices"
	"strings"

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
	// joined interns "namespace/name" values (pod, workload contexts), so
	// counting a record does not allocate them again; bounded.
	joined map[[2]string]string
}

// maxJoined bounds contextOptions.joined; a full map is started afresh.
const maxJoined = 1 << 14

// join is ns + "/" + name, interned.
func (o *contextOptions) join(ns, name string) string {
	k := [2]string{ns, name}
	if v, ok := o.joined[k]; ok {
		return v
	}
	if o.joined == nil || len(o.joined) >= maxJoined {
		o.joined = make(map[[2]string]string)
	}
	v := ns + "/" + name
	o.joined[k] = v
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
