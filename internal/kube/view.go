package kube

import (
	"hash/fnv"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trawl-dev/trawl/internal/policy"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Cilium's reserved identities, so numbers read the same to Hubble users.
const (
	IdentityHost       = 1
	IdentityWorld      = 2
	IdentityRemoteNode = 6
)

// EndpointKind says what an address belongs to.
type EndpointKind uint8

const (
	KindWorld EndpointKind = iota // no pod, node or service of the cluster
	KindPod
	KindNode // a node address, or a host-network pod
)

// Endpoint is what an address resolved to at some time. Immutable: the
// flowv1 messages it hands out are shared between flows, read only.
type Endpoint struct {
	Kind EndpointKind
	// Pod is the policy engine's view of the pod (nil for nodes and world).
	Pod *policy.Pod
	// Node is the node name (the pod's node, or the node owning the address).
	Node string
	// UID of the pod, to tell a reused address from the same pod.
	UID string

	// idx is Pod's index in engine, the engine of the View that built this
	// Endpoint: verdicts for it take the integer path.
	idx    int32
	engine *policy.Engine

	proto        *flowv1.Endpoint // pods
	host, remote *flowv1.Endpoint // nodes: seen from that node / from another
	fingerprint  string
}

// Proto is the flow endpoint to attach to a flow seen on localNode: a node's
// address is reserved:host on itself and reserved:remote-node elsewhere.
// Index is the endpoint's pod index in eng (policy.Engine.EvaluateIndex),
// -1 when it is not a pod or eng is not the engine it was built with.
func (e *Endpoint) Index(eng *policy.Engine) int32 {
	if e.engine == eng && e.Pod != nil {
		return e.idx
	}
	return -1
}

func (e *Endpoint) Proto(localNode string) *flowv1.Endpoint {
	if e.Kind == KindNode {
		if localNode != "" && localNode == e.Node {
			return e.host
		}
		return e.remote
	}
	return e.proto
}

var worldEndpoint = &Endpoint{Kind: KindWorld, proto: &flowv1.Endpoint{Identity: IdentityWorld, Labels: []string{"reserved:world"}}}

// World is the endpoint of addresses outside the cluster.
func World() *Endpoint { return worldEndpoint }

type svcKey struct {
	ip    netip.Addr
	port  uint16
	proto policy.Protocol
}

type histEntry struct {
	from, to time.Time // to is zero while the address still has this owner
	ep       *Endpoint
}

// View is one immutable state of the cluster. Safe for concurrent use.
type View struct {
	version     uint64
	built       time.Time
	grace       time.Duration
	engine      *policy.Engine
	engineErr   error
	pods        map[string]*Endpoint // "ns/name" → pod endpoint
	history     map[netip.Addr][]histEntry
	hist4       map[uint32]v4Hist          // the IPv4 part of history, on the fast map path
	services    map[svcKey]*flowv1.Service // ClusterIP:port
	backends    map[svcKey]*flowv1.Service // EndpointSlice address:port
	svc4        map[uint64]*flowv1.Service // IPv4 services then backends, packed keys
	policyCount int
}

// Engine is the NetworkPolicy engine compiled from this view.
func (v *View) Engine() *policy.Engine { return v.engine }

// EngineError reports policies that could not be compiled (they are skipped).
func (v *View) EngineError() error { return v.engineErr }

// Built is when this view was published.
func (v *View) Built() time.Time { return v.built }

// Pod returns the pod endpoint "namespace/name", or nil.
func (v *View) Pod(ns, name string) *Endpoint { return v.pods[ns+"/"+name] }

// PodKeys lists "namespace/name" of every pod with an address, sorted.
func (v *View) PodKeys() []string {
	out := make([]string, 0, len(v.pods))
	for k := range v.pods {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Lookup returns what ip belonged to at time t (the flow's time): the owner
// whose tenure covers t, or, when t falls after an owner left, that owner
// for Grace after. An address reused by a new pod thus keeps naming the old
// pod for flows from before the change. Unknown addresses are World().
func (v *View) Lookup(ip netip.Addr, t time.Time) *Endpoint {
	if ip.Is4() {
		return v.LookupV4(v4(ip), t)
	}
	return v.lookup(v.history[ip], t)
}

// LookupV4 is Lookup for an IPv4 address as a big-endian integer.
func (v *View) LookupV4(ip uint32, t time.Time) *Endpoint {
	e := v.hist4[ip]
	if e.only != nil {
		return e.only
	}
	return v.lookup(e.h, t)
}

// v4Hist is an IPv4 address's history; only is set when the address has
// had a single owner that still holds it (the common case: one load less).
type v4Hist struct {
	only *Endpoint
	h    []histEntry
}

func v4(ip netip.Addr) uint32 {
	b := ip.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func svc4Key(ip uint32, port uint16, proto policy.Protocol) uint64 {
	return uint64(ip)<<24 | uint64(port)<<8 | uint64(proto)
}

// ServiceV4 is Service for an IPv4 address as a big-endian integer.
func (v *View) ServiceV4(ip uint32, port uint16, proto policy.Protocol) *flowv1.Service {
	return v.svc4[svc4Key(ip, port, proto)]
}

func (v *View) lookup(h []histEntry, t time.Time) *Endpoint {
	for i := len(h) - 1; i >= 0; i-- {
		e := &h[i]
		if !t.Before(e.from) || i == 0 {
			if e.to.IsZero() || t.Before(e.to.Add(v.grace)) {
				return e.ep
			}
			return worldEndpoint
		}
	}
	return worldEndpoint
}

// Service returns the service behind ip:port/proto: a ClusterIP, or an
// address and port of one of the service's EndpointSlices. Nil otherwise.
func (v *View) Service(ip netip.Addr, port uint16, proto policy.Protocol) *flowv1.Service {
	if ip.Is4() {
		return v.ServiceV4(v4(ip), port, proto)
	}
	k := svcKey{ip, port, proto}
	if s := v.services[k]; s != nil {
		return s
	}
	return v.backends[k]
}

// IsClusterIP reports whether ip is a service's ClusterIP.
func (v *View) IsClusterIP(ip netip.Addr, port uint16, proto policy.Protocol) bool {
	return v.services[svcKey{ip, port, proto}] != nil
}

func (s *Store) build(prev *View, o *objects, version uint64) *View {
	now := s.cfg.Now()
	v := &View{
		version:  version,
		built:    now,
		grace:    s.cfg.Grace,
		pods:     map[string]*Endpoint{},
		services: map[svcKey]*flowv1.Service{},
		backends: map[svcKey]*flowv1.Service{},
	}
	current := map[netip.Addr]*Endpoint{}

	// Nodes first: a host-network pod's address is its node's.
	for _, n := range o.nodes {
		ep := nodeEndpoint(n.Name, n.Labels)
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				current[ip.Unmap()] = ep
			}
		}
	}

	var pods []*policy.Pod
	podEps := map[*policy.Pod]*Endpoint{}
	keys := make([]string, 0, len(o.pods))
	for k := range o.pods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := o.pods[k]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue // terminated pods release their address
		}
		if p.Spec.HostNetwork {
			for _, ip := range podIPs(p) {
				if _, ok := current[ip]; !ok {
					current[ip] = nodeEndpoint(p.Spec.NodeName, nil)
				}
			}
			continue
		}
		pp := policy.PodFromObject(p)
		if pp == nil {
			continue
		}
		ep := &Endpoint{Kind: KindPod, Node: p.Spec.NodeName, UID: string(p.UID)}
		ep.proto = podProto(p, o)
		ep.fingerprint = string(p.UID) + "|" + strings.Join(ep.proto.Labels, ",") + "|" + workloadsString(ep.proto.Workloads) + "|" + p.Spec.NodeName
		pods = append(pods, pp)
		podEps[pp] = ep
	}

	var nss []policy.Namespace
	for _, n := range o.namespaces {
		nss = append(nss, policy.Namespace{Name: n.Name, Labels: n.Labels})
	}
	pols := make([]*networkingv1.NetworkPolicy, 0, len(o.policies))
	for _, p := range o.policies {
		pols = append(pols, p)
	}
	v.policyCount = len(pols)
	v.engine, v.engineErr = policy.New(policy.Input{Pods: pods, Namespaces: nss, Policies: pols})
	if v.engineErr != nil {
		s.cfg.Log.Warn("NetworkPolicies skipped", "err", v.engineErr)
	}
	for i, ep := range v.engine.Pods() {
		src := podEps[pods[i]]
		src.Pod, src.idx, src.engine = ep, v.engine.Index(ep), v.engine
		v.pods[ep.Key()] = src
		for _, ip := range ep.IPs {
			current[ip] = src
		}
	}

	for _, svc := range o.services {
		ref := &flowv1.Service{Name: svc.Name, Namespace: svc.Namespace}
		ips := svc.Spec.ClusterIPs
		if len(ips) == 0 && svc.Spec.ClusterIP != "" {
			ips = []string{svc.Spec.ClusterIP}
		}
		for _, s := range ips {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				continue // "None" for headless services
			}
			for _, p := range svc.Spec.Ports {
				proto := p.Protocol
				v.services[svcKey{ip.Unmap(), uint16(p.Port), protoOf(proto)}] = ref
			}
		}
	}
	for _, sl := range o.slices {
		name := sl.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		ref := &flowv1.Service{Name: name, Namespace: sl.Namespace}
		for _, ep := range sl.Endpoints {
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				for _, p := range sl.Ports {
					if p.Port == nil {
						continue
					}
					proto := corev1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					v.backends[svcKey{ip.Unmap(), uint16(*p.Port), protoOf(proto)}] = ref
				}
			}
		}
	}

	v.history = mergeHistory(prev, current, now, s.cfg.History)
	v.hist4 = make(map[uint32]v4Hist, len(v.history))
	for ip, h := range v.history {
		if ip.Is4() {
			if len(h) == 1 && h[0].to.IsZero() {
				v.hist4[v4(ip)] = v4Hist{only: h[0].ep}
			} else {
				v.hist4[v4(ip)] = v4Hist{h: h}
			}
		}
	}
	v.svc4 = make(map[uint64]*flowv1.Service, len(v.services)+len(v.backends))
	for _, m := range []map[svcKey]*flowv1.Service{v.backends, v.services} { // ClusterIPs win
		for k, svc := range m {
			if k.ip.Is4() {
				v.svc4[svc4Key(v4(k.ip), k.port, k.proto)] = svc
			}
		}
	}
	return v
}

// mergeHistory carries the address history forward: an address whose owner
// is unchanged keeps its entry (pointing at the new Endpoint), a new or
// changed owner closes the old entry and opens one from now, and closed
// entries older than keep are forgotten. The first view's owners are
// open-ended into the past: nothing was known before them.
func mergeHistory(prev *View, current map[netip.Addr]*Endpoint, now time.Time, keep time.Duration) map[netip.Addr][]histEntry {
	out := make(map[netip.Addr][]histEntry, len(current))
	var from time.Time // zero: the beginning of time, for the first view
	if prev != nil && prev.version > 0 {
		from = now
	}
	var old map[netip.Addr][]histEntry
	if prev != nil {
		old = prev.history
	}
	for ip, h := range old {
		var kept []histEntry
		for _, e := range h {
			if !e.to.IsZero() && now.Sub(e.to) > keep {
				continue
			}
			kept = append(kept, e)
		}
		if n := len(kept); n > 0 && kept[n-1].to.IsZero() {
			last := &kept[n-1]
			if ep, ok := current[ip]; ok && ep.fingerprint == last.ep.fingerprint {
				last.ep = ep
			} else {
				last.to = now
			}
		}
		if len(kept) > 0 {
			out[ip] = kept
		}
	}
	for ip, ep := range current {
		h := out[ip]
		if n := len(h); n > 0 && h[n-1].to.IsZero() {
			continue // unchanged owner, carried over above
		}
		out[ip] = append(h, histEntry{from: from, ep: ep})
	}
	return out
}

func protoOf(p corev1.Protocol) policy.Protocol {
	switch p {
	case corev1.ProtocolUDP:
		return policy.ProtoUDP
	case corev1.ProtocolSCTP:
		return policy.ProtoSCTP
	}
	return policy.ProtoTCP
}

func podIPs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(s string) {
		if ip, err := netip.ParseAddr(s); err == nil && !seen[ip.Unmap()] {
			seen[ip.Unmap()] = true
			out = append(out, ip.Unmap())
		}
	}
	add(p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	return out
}

func nodeEndpoint(name string, labels map[string]string) *Endpoint {
	var l []string
	for k, v := range labels {
		l = append(l, "k8s:"+k+"="+v)
	}
	sort.Strings(l)
	host := &flowv1.Endpoint{Identity: IdentityHost, Labels: append([]string{"reserved:host"}, l...), NodeName: name}
	remote := &flowv1.Endpoint{Identity: IdentityRemoteNode, Labels: append([]string{"reserved:remote-node"}, l...), NodeName: name}
	return &Endpoint{Kind: KindNode, Node: name, host: host, remote: remote, fingerprint: "node|" + name}
}

// PodLabels renders a pod's labels as Hubble does: "k8s:key=value", sorted,
// plus "k8s:io.kubernetes.pod.namespace=<namespace>".
func PodLabels(namespace string, labels map[string]string) []string {
	out := make([]string, 0, len(labels)+1)
	for k, v := range labels {
		out = append(out, "k8s:"+k+"="+v)
	}
	out = append(out, "k8s:io.kubernetes.pod.namespace="+namespace)
	sort.Strings(out)
	return out
}

func podProto(p *corev1.Pod, o *objects) *flowv1.Endpoint {
	l := PodLabels(p.Namespace, p.Labels)
	h := fnv.New32a()
	for _, s := range l {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	id := h.Sum32()
	if id < 256 {
		id += 256 // stay clear of the reserved identities
	}
	return &flowv1.Endpoint{
		Identity:  id,
		Namespace: p.Namespace,
		Labels:    l,
		PodName:   p.Name,
		Workloads: workloads(p, o),
		NodeName:  p.Spec.NodeName,
	}
}

// workloads follows the pod's controller reference: ReplicaSet→Deployment,
// Job→CronJob, StatefulSet and DaemonSet as they are. An owner whose
// metadata is unknown is named as it is (a ReplicaSet stays a ReplicaSet):
// guessing the Deployment from the name would be wrong for bare ReplicaSets.
func workloads(p *corev1.Pod, o *objects) []*flowv1.Workload {
	ref := controllerOf(p.OwnerReferences)
	if ref == nil {
		return nil
	}
	switch ref.Kind {
	case KindReplicaSet:
		if rs := o.replicaSets[p.Namespace+"/"+ref.Name]; rs != nil {
			if up := controllerOf(rs.OwnerReferences); up != nil {
				return []*flowv1.Workload{{Name: up.Name, Kind: up.Kind}}
			}
		}
	case KindJob:
		if j := o.jobs[p.Namespace+"/"+ref.Name]; j != nil {
			if up := controllerOf(j.OwnerReferences); up != nil {
				return []*flowv1.Workload{{Name: up.Name, Kind: up.Kind}}
			}
		}
	}
	return []*flowv1.Workload{{Name: ref.Name, Kind: ref.Kind}}
}

func controllerOf(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	if len(refs) > 0 {
		return &refs[0]
	}
	return nil
}

func workloadsString(ws []*flowv1.Workload) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString(w.Kind + "/" + w.Name + ";")
	}
	return b.String()
}
