// Package kube holds what Trawl knows about a Kubernetes cluster: pods,
// namespaces, services, endpoint slices, network policies, nodes and the
// owners needed to name workloads. Sources (YAML manifests, or client-go
// informers) feed a Store; the Store publishes immutable Views that answer
// "which endpoint had this IP at time t", "which service is this IP:port" and
// hold the compiled NetworkPolicy engine.
package kube

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Owner kinds kept as metadata only, to follow ownerReferences to workloads.
const (
	KindReplicaSet = "ReplicaSet"
	KindJob        = "Job"
)

// StoreConfig tunes a Store. Zero values take the defaults.
type StoreConfig struct {
	// Debounce is how long a change waits for more before a new View is
	// built (a rolling update changes many pods at once). Default 50 ms.
	Debounce time.Duration
	// History is how long an address keeps the endpoints it had before, so
	// that late flows are labelled with the pod that sent them. Default 10 min.
	History time.Duration
	// Grace is how long after a pod is gone its address still names it when
	// no newer owner exists (flows are reported seconds after they happen).
	// Default 2 min.
	Grace time.Duration
	Log   *slog.Logger
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

func (c *StoreConfig) defaults() {
	if c.Debounce <= 0 {
		c.Debounce = 50 * time.Millisecond
	}
	if c.History <= 0 {
		c.History = 10 * time.Minute
	}
	if c.Grace <= 0 {
		c.Grace = 2 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// objects is the raw cluster state, keyed by "namespace/name" (or name).
type objects struct {
	pods        map[string]*corev1.Pod
	namespaces  map[string]*corev1.Namespace
	services    map[string]*corev1.Service
	slices      map[string]*discoveryv1.EndpointSlice
	policies    map[string]*networkingv1.NetworkPolicy
	nodes       map[string]*corev1.Node
	replicaSets map[string]*metav1.ObjectMeta
	jobs        map[string]*metav1.ObjectMeta
}

func newObjects() *objects {
	return &objects{
		pods:        map[string]*corev1.Pod{},
		namespaces:  map[string]*corev1.Namespace{},
		services:    map[string]*corev1.Service{},
		slices:      map[string]*discoveryv1.EndpointSlice{},
		policies:    map[string]*networkingv1.NetworkPolicy{},
		nodes:       map[string]*corev1.Node{},
		replicaSets: map[string]*metav1.ObjectMeta{},
		jobs:        map[string]*metav1.ObjectMeta{},
	}
}

func key(m *metav1.ObjectMeta) string {
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}

// Store is the cluster state fed by sources. Its Run loop turns changes into
// new Views; readers take the current View with View() and never lock.
type Store struct {
	cfg     StoreConfig
	mu      sync.Mutex
	objs    *objects
	version uint64 // bumped on every change, under mu
	dirty   chan struct{}
	view    atomic.Pointer[View]
	// built is closed and replaced each time a View is published, so
	// callers can wait for a change to be visible.
	builtMu sync.Mutex
	built   chan struct{}
}

// NewStore makes an empty store with an empty View.
func NewStore(cfg StoreConfig) *Store {
	cfg.defaults()
	s := &Store{cfg: cfg, objs: newObjects(), dirty: make(chan struct{}, 1), built: make(chan struct{})}
	s.view.Store(s.build(nil, newObjects(), 0))
	return s
}

// View is the current state. Never nil.
func (s *Store) View() *View { return s.view.Load() }

func (s *Store) markDirty() {
	s.version++
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// Upsert adds or replaces an object: *corev1.Pod, *corev1.Namespace,
// *corev1.Service, *discoveryv1.EndpointSlice, *networkingv1.NetworkPolicy,
// *corev1.Node. Other types are ignored (false).
func (s *Store) Upsert(obj any) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.objs.put(obj, false)
	if ok {
		s.markDirty()
	}
	return ok
}

// Delete removes an object of one of the types Upsert takes.
func (s *Store) Delete(obj any) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.objs.put(obj, true)
	if ok {
		s.markDirty()
	}
	return ok
}

// UpsertOwner records the metadata of a ReplicaSet or Job (KindReplicaSet,
// KindJob), which is all workload resolution needs.
func (s *Store) UpsertOwner(kind string, m *metav1.ObjectMeta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs.putOwner(kind, m, false) {
		s.markDirty()
	}
}

// DeleteOwner forgets a ReplicaSet or Job.
func (s *Store) DeleteOwner(kind string, m *metav1.ObjectMeta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs.putOwner(kind, m, true) {
		s.markDirty()
	}
}

// ReplaceAll swaps the whole state for objs (a manifest reload).
func (s *Store) ReplaceAll(objs []any) {
	o := newObjects()
	for _, obj := range objs {
		o.put(obj, false)
	}
	s.mu.Lock()
	s.objs = o
	s.markDirty()
	s.mu.Unlock()
}

func (o *objects) putOwner(kind string, m *metav1.ObjectMeta, del bool) bool {
	var mp map[string]*metav1.ObjectMeta
	switch kind {
	case KindReplicaSet:
		mp = o.replicaSets
	case KindJob:
		mp = o.jobs
	default:
		return false
	}
	if del {
		delete(mp, key(m))
	} else {
		mp[key(m)] = m
	}
	return true
}

func (o *objects) put(obj any, del bool) bool {
	switch x := obj.(type) {
	case *corev1.Pod:
		putMap(o.pods, key(&x.ObjectMeta), x, del)
	case *corev1.Namespace:
		putMap(o.namespaces, x.Name, x, del)
	case *corev1.Service:
		putMap(o.services, key(&x.ObjectMeta), x, del)
	case *discoveryv1.EndpointSlice:
		putMap(o.slices, key(&x.ObjectMeta), x, del)
	case *networkingv1.NetworkPolicy:
		putMap(o.policies, key(&x.ObjectMeta), x, del)
	case *corev1.Node:
		putMap(o.nodes, x.Name, x, del)
	case *metav1.PartialObjectMetadata:
		return o.putOwner(x.Kind, &x.ObjectMeta, del)
	default:
		return false
	}
	return true
}

func putMap[T any](m map[string]T, k string, v T, del bool) {
	if del {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// Rebuild builds and publishes a View from the current objects now.
func (s *Store) Rebuild() *View {
	s.mu.Lock()
	o := s.objs.clone()
	version := s.version
	s.mu.Unlock()
	v := s.build(s.view.Load(), o, version)
	s.view.Store(v)
	s.builtMu.Lock()
	close(s.built)
	s.built = make(chan struct{})
	s.builtMu.Unlock()
	return v
}

// Changed returns a channel closed when the next View is published.
func (s *Store) Changed() <-chan struct{} {
	s.builtMu.Lock()
	defer s.builtMu.Unlock()
	return s.built
}

// Run rebuilds the View after changes until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTimer(0)
	if !t.Stop() {
		<-t.C
	}
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.dirty:
			t.Reset(s.cfg.Debounce)
		case <-t.C:
			s.mu.Lock()
			same := s.version == s.view.Load().version
			s.mu.Unlock()
			if !same {
				start := time.Now()
				v := s.Rebuild()
				s.cfg.Log.Debug("kubernetes view rebuilt", "pods", len(v.pods), "policies", v.policyCount, "took", time.Since(start))
			}
		}
	}
}

// clone copies the maps (not the objects, which are never mutated).
func (o *objects) clone() *objects {
	return &objects{
		pods:        cloneMap(o.pods),
		namespaces:  cloneMap(o.namespaces),
		services:    cloneMap(o.services),
		slices:      cloneMap(o.slices),
		policies:    cloneMap(o.policies),
		nodes:       cloneMap(o.nodes),
		replicaSets: cloneMap(o.replicaSets),
		jobs:        cloneMap(o.jobs),
	}
}

func cloneMap[T any](m map[string]T) map[string]T {
	out := make(map[string]T, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
