// Package policy evaluates Kubernetes networking.k8s.io/v1 NetworkPolicies:
// for a connection between two endpoints it says whether the destination's
// ingress policies and the source's egress policies allow it, and which
// policies decided.
//
// An Engine is immutable: it is compiled from one set of pods, namespaces and
// policies. When the cluster changes, compile a new one (the caller swaps it in
// atomically); the verdict cache lives inside the engine, so a change
// invalidates it by construction.
package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Protocol is the L4 protocol of a connection. Only TCP, UDP and SCTP can be
// named in a NetworkPolicy port; other protocols (ICMP) are matched only by
// rules without ports.
type Protocol uint8

const (
	ProtoOther Protocol = iota
	ProtoTCP
	ProtoUDP
	ProtoSCTP
)

func (p Protocol) String() string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	}
	return "OTHER"
}

// ParseProtocol reads "TCP", "udp", "SCTP" (case-insensitive).
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "TCP":
		return ProtoTCP, nil
	case "UDP":
		return ProtoUDP, nil
	case "SCTP":
		return ProtoSCTP, nil
	}
	return ProtoOther, fmt.Errorf("unknown protocol %q (want TCP, UDP or SCTP)", s)
}

func protoOf(p *corev1.Protocol) Protocol {
	if p == nil {
		return ProtoTCP // the API's default
	}
	switch *p {
	case corev1.ProtocolUDP:
		return ProtoUDP
	case corev1.ProtocolSCTP:
		return ProtoSCTP
	}
	return ProtoTCP
}

// Pod is what the engine needs to know about a pod. Host-network pods must not
// be given to the engine as pods: policies never select them, and peers see
// them as their node's address.
type Pod struct {
	Namespace string
	Name      string
	Labels    map[string]string
	IPs       []netip.Addr
	// Container ports, for resolving named ports in policies.
	Ports []NamedPort

	idx    int32   // index in the engine that owns this Pod
	engine *Engine // the owner, nil for pods the engine was not built with
}

// NamedPort is a container port that has a name.
type NamedPort struct {
	Name     string
	Port     uint16
	Protocol Protocol
}

// Key is "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Endpoint is one end of a connection: a pod (Pod != nil) or just an address.
type Endpoint struct {
	Pod *Pod
	IP  netip.Addr
}

// Namespace is a namespace's name and labels.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Input is what an engine is compiled from.
type Input struct {
	Pods       []*Pod
	Namespaces []Namespace
	Policies   []*networkingv1.NetworkPolicy
	// CacheSize bounds the verdict cache (entries); 0 means DefaultCacheSize,
	// negative disables the cache (benchmarks, one-shot CLI use).
	CacheSize int
}

// DefaultCacheSize is the verdict cache bound when Input.CacheSize is 0.
const DefaultCacheSize = 1 << 18

// DirectionVerdict is the outcome of one direction of a connection.
type DirectionVerdict struct {
	// Allowed is true when the pod is not isolated in this direction or a
	// policy allows the connection.
	Allowed bool
	// Isolated is true when at least one policy selects the pod for this
	// direction.
	Isolated bool
	// AllowedBy lists the policies allowing the connection; DeniedBy lists the
	// policies isolating the pod when none allows it. Both are empty when the
	// pod is not isolated. The slices and their elements are shared: read only.
	AllowedBy []*flowv1.Policy
	DeniedBy  []*flowv1.Policy
}

// Verdict is the outcome of a connection: ingress is judged at the
// destination pod, egress at the source pod.
type Verdict struct {
	Ingress DirectionVerdict
	Egress  DirectionVerdict
}

// Allowed is true when both directions allow the connection.
func (v *Verdict) Allowed() bool { return v.Ingress.Allowed && v.Egress.Allowed }

// Engine is a compiled set of policies. Safe for concurrent use.
type Engine struct {
	pods     []*Pod
	nsLabels map[string]labels.Set
	nsPods   map[string][]int32 // namespace → pods in it
	policies []*compiledPolicy
	// per pod: policies that isolate it for ingress / egress (indices into policies)
	ingressOf [][]int32
	egressOf  [][]int32
	// per pod: the policy lists used when nothing allows (shared slices)
	ingressDenied [][]*flowv1.Policy
	egressDenied  [][]*flowv1.Policy
	byIP          map[netip.Addr]int32
	cache         *verdictCache
}

type compiledPolicy struct {
	ref      *flowv1.Policy
	ns       string
	podSel   labels.Selector
	ingress  bool
	egress   bool
	inRules  []compiledRule
	egRules  []compiledRule
	selected bitset
}

type compiledRule struct {
	anyPeer bool // no peers listed: every source/destination
	peers   []compiledPeer
	anyPort bool // no ports listed: every port and protocol
	ports   []compiledPort
}

type compiledPeer struct {
	// pod peers: the set of pods selected (nil for ipBlock peers)
	pods *bitset
	// selectors kept to judge pods the engine was not built with
	nsSel  labels.Selector // nil: the policy's namespace only
	podSel labels.Selector // nil: every pod
	// ipBlock peers
	isBlock bool
	cidr    netip.Prefix
	except  []netip.Prefix
}

type compiledPort struct {
	proto    Protocol
	anyPort  bool // protocol only
	name     string
	from, to uint16
}

// New compiles an engine. Policies that do not parse (bad selector, bad CIDR)
// are reported in the error but the engine is still built from the others:
// callers log the error and keep going.
func New(in Input) (*Engine, error) {
	e := &Engine{
		pods:     make([]*Pod, 0, len(in.Pods)),
		nsLabels: make(map[string]labels.Set, len(in.Namespaces)),
		nsPods:   make(map[string][]int32),
		byIP:     make(map[netip.Addr]int32, len(in.Pods)),
	}
	for _, ns := range in.Namespaces {
		e.nsLabels[ns.Name] = labels.Set(ns.Labels)
	}
	for _, p := range in.Pods {
		idx := int32(len(e.pods))
		cp := *p
		cp.idx, cp.engine = idx, e
		e.pods = append(e.pods, &cp)
		e.nsPods[p.Namespace] = append(e.nsPods[p.Namespace], idx)
		for _, ip := range p.IPs {
			e.byIP[ip] = idx
		}
		// A namespace that has pods exists even if its object is missing.
		if _, ok := e.nsLabels[p.Namespace]; !ok {
			e.nsLabels[p.Namespace] = labels.Set{}
		}
	}
	var errs []string
	pols := append([]*networkingv1.NetworkPolicy(nil), in.Policies...)
	sort.Slice(pols, func(i, j int) bool {
		if pols[i].Namespace != pols[j].Namespace {
			return pols[i].Namespace < pols[j].Namespace
		}
		return pols[i].Name < pols[j].Name
	})
	for _, np := range pols {
		cp, err := e.compile(np)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s/%s: %v", np.Namespace, np.Name, err))
			continue
		}
		e.policies = append(e.policies, cp)
	}
	n := len(e.pods)
	e.ingressOf = make([][]int32, n)
	e.egressOf = make([][]int32, n)
	e.ingressDenied = make([][]*flowv1.Policy, n)
	e.egressDenied = make([][]*flowv1.Policy, n)
	for pi, cp := range e.policies {
		cp.selected.each(func(pod int32) {
			if cp.ingress {
				e.ingressOf[pod] = append(e.ingressOf[pod], int32(pi))
				e.ingressDenied[pod] = append(e.ingressDenied[pod], cp.ref)
			}
			if cp.egress {
				e.egressOf[pod] = append(e.egressOf[pod], int32(pi))
				e.egressDenied[pod] = append(e.egressDenied[pod], cp.ref)
			}
		})
	}
	switch size := in.CacheSize; {
	case size == 0:
		e.cache = newVerdictCache(DefaultCacheSize)
	case size > 0:
		e.cache = newVerdictCache(size)
	}
	if len(errs) > 0 {
		return e, fmt.Errorf("skipped %d NetworkPolicies: %s", len(errs), strings.Join(errs, "; "))
	}
	return e, nil
}

// Pods returns the pods the engine was built with, in input order.
func (e *Engine) Pods() []*Pod { return e.pods }

// PodByIP returns the engine's pod that has ip, or nil.
func (e *Engine) PodByIP(ip netip.Addr) *Pod {
	if i, ok := e.byIP[ip]; ok {
		return e.pods[i]
	}
	return nil
}

// PodByKey returns the pod "namespace/name", or nil.
func (e *Engine) PodByKey(ns, name string) *Pod {
	for _, i := range e.nsPods[ns] {
		if e.pods[i].Name == name {
			return e.pods[i]
		}
	}
	return nil
}

// Own reports whether p is one of the engine's pods: those are judged with
// the precomputed sets and cached; any other pod (one that has gone since,
// but whose late flows still arrive) is judged on the slow path.
func (e *Engine) Own(p *Pod) bool { return p != nil && p.engine == e }

func (e *Engine) compile(np *networkingv1.NetworkPolicy) (*compiledPolicy, error) {
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		return nil, fmt.Errorf("podSelector: %w", err)
	}
	cp := &compiledPolicy{
		ref:    &flowv1.Policy{Name: np.Name, Namespace: np.Namespace, Kind: "NetworkPolicy"},
		ns:     np.Namespace,
		podSel: sel,
	}
	if len(np.Spec.PolicyTypes) == 0 {
		// Implied types: Ingress always, Egress when egress rules exist.
		cp.ingress = true
		cp.egress = len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			cp.ingress = true
		case networkingv1.PolicyTypeEgress:
			cp.egress = true
		default:
			return nil, fmt.Errorf("unknown policyType %q", t)
		}
	}
	cp.selected = newBitset(len(e.pods))
	for _, i := range e.nsPods[np.Namespace] {
		if sel.Matches(labels.Set(e.pods[i].Labels)) {
			cp.selected.set(i)
		}
	}
	if cp.ingress {
		for ri, r := range np.Spec.Ingress {
			cr, err := e.compileRule(np.Namespace, r.From, r.Ports)
			if err != nil {
				return nil, fmt.Errorf("ingress rule %d: %w", ri, err)
			}
			cp.inRules = append(cp.inRules, cr)
		}
	}
	if cp.egress {
		for ri, r := range np.Spec.Egress {
			cr, err := e.compileRule(np.Namespace, r.To, r.Ports)
			if err != nil {
				return nil, fmt.Errorf("egress rule %d: %w", ri, err)
			}
			cp.egRules = append(cp.egRules, cr)
		}
	}
	return cp, nil
}

func (e *Engine) compileRule(ns string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) (compiledRule, error) {
	var cr compiledRule
	cr.anyPeer = len(peers) == 0
	for pi, p := range peers {
		cpeer, err := e.compilePeer(ns, p)
		if err != nil {
			return cr, fmt.Errorf("peer %d: %w", pi, err)
		}
		cr.peers = append(cr.peers, cpeer)
	}
	cr.anyPort = len(ports) == 0
	for _, p := range ports {
		cport := compiledPort{proto: protoOf(p.Protocol)}
		switch {
		case p.Port == nil:
			cport.anyPort = true
		case p.Port.Type == intstr.String:
			if p.EndPort != nil {
				return cr, fmt.Errorf("endPort with named port %q", p.Port.StrVal)
			}
			cport.name = p.Port.StrVal
		default:
			v := p.Port.IntVal
			if v < 1 || v > 65535 {
				return cr, fmt.Errorf("port %d out of range", v)
			}
			cport.from, cport.to = uint16(v), uint16(v)
			if p.EndPort != nil {
				if *p.EndPort < v || *p.EndPort > 65535 {
					return cr, fmt.Errorf("endPort %d below port %d or out of range", *p.EndPort, v)
				}
				cport.to = uint16(*p.EndPort)
			}
		}
		cr.ports = append(cr.ports, cport)
	}
	return cr, nil
}

func (e *Engine) compilePeer(ns string, p networkingv1.NetworkPolicyPeer) (compiledPeer, error) {
	var cp compiledPeer
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return cp, fmt.Errorf("ipBlock combined with a selector")
		}
		pfx, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil {
			return cp, fmt.Errorf("ipBlock cidr: %w", err)
		}
		cp.isBlock, cp.cidr = true, pfx.Masked()
		for _, ex := range p.IPBlock.Except {
			xp, err := netip.ParsePrefix(ex)
			if err != nil {
				return cp, fmt.Errorf("ipBlock except: %w", err)
			}
			cp.except = append(cp.except, xp.Masked())
		}
		return cp, nil
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return cp, fmt.Errorf("peer without podSelector, namespaceSelector or ipBlock")
	}
	if p.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		if err != nil {
			return cp, fmt.Errorf("podSelector: %w", err)
		}
		cp.podSel = s
	}
	if p.NamespaceSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		if err != nil {
			return cp, fmt.Errorf("namespaceSelector: %w", err)
		}
		cp.nsSel = s
	}
	set := newBitset(len(e.pods))
	each := func(nsName string) {
		for _, i := range e.nsPods[nsName] {
			if cp.podSel == nil || cp.podSel.Matches(labels.Set(e.pods[i].Labels)) {
				set.set(i)
			}
		}
	}
	if cp.nsSel == nil {
		each(ns)
	} else {
		for nsName, l := range e.nsLabels {
			if cp.nsSel.Matches(l) {
				each(nsName)
			}
		}
	}
	cp.pods = &set
	return cp, nil
}

// Index is p's index in the engine, or -1 when p is not one of its pods.
func (e *Engine) Index(p *Pod) int32 {
	if e.Own(p) {
		return p.idx
	}
	return -1
}

// EvaluateIndex is Evaluate for ends given by engine index (from Index; -1
// for an end that is not a pod, judged by its address). It saves the hot
// path from touching the Pod structs when the verdict is cached.
func (e *Engine) EvaluateIndex(src, dst int32, srcIP, dstIP netip.Addr, port uint16, proto Protocol) *Verdict {
	if e.cache != nil {
		k := cacheKey{src: src, dst: dst, port: port, proto: proto}
		if src < 0 {
			k.srcIP = srcIP
		}
		if dst < 0 {
			k.dstIP = dstIP
		}
		if v := e.cache.get(k); v != nil {
			return v
		}
	}
	s, d := Endpoint{IP: srcIP}, Endpoint{IP: dstIP}
	if src >= 0 {
		s.Pod = e.pods[src]
	}
	if dst >= 0 {
		d.Pod = e.pods[dst]
	}
	return e.Evaluate(s, d, port, proto)
}

// Evaluate judges a connection from src to dst on port/proto (port 0 and
// ProtoOther for protocols without ports). Verdicts are cached per
// (source, destination, port, protocol).
func (e *Engine) Evaluate(src, dst Endpoint, port uint16, proto Protocol) *Verdict {
	cacheable := e.cache != nil && (src.Pod == nil || e.Own(src.Pod)) && (dst.Pod == nil || e.Own(dst.Pod))
	var k cacheKey
	if cacheable {
		k = cacheKey{src: -1, dst: -1, port: port, proto: proto}
		if src.Pod != nil {
			k.src = src.Pod.idx
		} else {
			k.srcIP = src.IP
		}
		if dst.Pod != nil {
			k.dst = dst.Pod.idx
		} else {
			k.dstIP = dst.IP
		}
		if v := e.cache.get(k); v != nil {
			return v
		}
	}
	v := &Verdict{
		Ingress: e.direction(dst.Pod, src, dst.Pod, port, proto, true),
		Egress:  e.direction(src.Pod, dst, dst.Pod, port, proto, false),
	}
	if cacheable {
		e.cache.put(k, v)
	}
	return v
}

// direction judges the policies of subject (the pod whose ingress or egress
// is evaluated) against peer; portPod is the destination pod that resolves
// named ports.
func (e *Engine) direction(subject *Pod, peer Endpoint, portPod *Pod, port uint16, proto Protocol, ingress bool) DirectionVerdict {
	if subject == nil {
		return DirectionVerdict{Allowed: true}
	}
	var pols []*compiledPolicy
	var denied []*flowv1.Policy
	if subject.engine == e {
		idx := e.egressOf[subject.idx]
		denied = e.egressDenied[subject.idx]
		if ingress {
			idx = e.ingressOf[subject.idx]
			denied = e.ingressDenied[subject.idx]
		}
		if len(idx) == 0 {
			return DirectionVerdict{Allowed: true}
		}
		pols = make([]*compiledPolicy, len(idx))
		for i, pi := range idx {
			pols[i] = e.policies[pi]
		}
	} else {
		for _, cp := range e.policies {
			if (ingress && !cp.ingress) || (!ingress && !cp.egress) {
				continue
			}
			if cp.ns == subject.Namespace && cp.podSel.Matches(labels.Set(subject.Labels)) {
				pols = append(pols, cp)
				denied = append(denied, cp.ref)
			}
		}
		if len(pols) == 0 {
			return DirectionVerdict{Allowed: true}
		}
	}
	var allowed []*flowv1.Policy
	for _, cp := range pols {
		rules := cp.egRules
		if ingress {
			rules = cp.inRules
		}
		for i := range rules {
			if e.ruleMatches(cp, &rules[i], peer, portPod, port, proto) {
				allowed = append(allowed, cp.ref)
				break
			}
		}
	}
	if len(allowed) > 0 {
		return DirectionVerdict{Allowed: true, Isolated: true, AllowedBy: allowed}
	}
	return DirectionVerdict{Isolated: true, DeniedBy: denied}
}

func (e *Engine) ruleMatches(cp *compiledPolicy, r *compiledRule, peer Endpoint, portPod *Pod, port uint16, proto Protocol) bool {
	if !r.anyPort && !portsMatch(r.ports, portPod, port, proto) {
		return false
	}
	if r.anyPeer {
		return true
	}
	for i := range r.peers {
		if e.peerMatches(cp, &r.peers[i], peer) {
			return true
		}
	}
	return false
}

func (e *Engine) peerMatches(cp *compiledPolicy, p *compiledPeer, peer Endpoint) bool {
	if p.isBlock {
		ip := peer.IP
		if !ip.IsValid() {
			if peer.Pod == nil || len(peer.Pod.IPs) == 0 {
				return false
			}
			ip = peer.Pod.IPs[0]
		}
		if !p.cidr.Contains(ip) {
			return false
		}
		for _, x := range p.except {
			if x.Contains(ip) {
				return false
			}
		}
		return true
	}
	if peer.Pod == nil {
		return false
	}
	if peer.Pod.engine == e {
		return p.pods.has(peer.Pod.idx)
	}
	// Slow path: a pod the engine was not built with (e.g. one that has gone
	// but whose late flows still arrive).
	if p.nsSel == nil {
		if peer.Pod.Namespace != cp.ns {
			return false
		}
	} else {
		nl, ok := e.nsLabels[peer.Pod.Namespace]
		if !ok || !p.nsSel.Matches(nl) {
			return false
		}
	}
	return p.podSel == nil || p.podSel.Matches(labels.Set(peer.Pod.Labels))
}

func portsMatch(ports []compiledPort, dst *Pod, port uint16, proto Protocol) bool {
	if proto == ProtoOther {
		return false // rules with ports never match port-less protocols
	}
	for i := range ports {
		p := &ports[i]
		if p.proto != proto {
			continue
		}
		switch {
		case p.anyPort:
			return true
		case p.name != "":
			if dst == nil {
				continue
			}
			for _, cp := range dst.Ports {
				if cp.Name == p.name && cp.Protocol == proto && cp.Port == port {
					return true
				}
			}
		default:
			if port >= p.from && port <= p.to {
				return true
			}
		}
	}
	return false
}

// PodFromObject converts a core/v1 Pod (labels, IPs from status, named
// container ports). It returns nil for host-network pods and pods without an
// address, which policies do not select.
func PodFromObject(p *corev1.Pod) *Pod {
	if p.Spec.HostNetwork {
		return nil
	}
	out := &Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels}
	seen := map[string]bool{}
	add := func(s string) {
		if s == "" || seen[s] {
			return
		}
		seen[s] = true
		if a, err := netip.ParseAddr(s); err == nil {
			out.IPs = append(out.IPs, a.Unmap())
		}
	}
	add(p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
		for _, cp := range c.Ports {
			if cp.Name == "" {
				continue
			}
			proto := cp.Protocol
			out.Ports = append(out.Ports, NamedPort{Name: cp.Name, Port: uint16(cp.ContainerPort), Protocol: protoOf(&proto)})
		}
	}
	if len(out.IPs) == 0 {
		return nil
	}
	return out
}
